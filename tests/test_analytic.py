"""Analytic cost model: roofline per operator, device presets, error report, calibration."""

import math

import pytest

torch = pytest.importorskip("torch")

from hios import HiosError  # noqa: E402
from hios.cost.analytic import (DEVICE_SPECS, DeviceSpec, analytic_error, fit_spec, fit_spec_kernels,  # noqa: E402
                                    costed_graph, device_spec, operator_ms, operator_utilization,
                                    operator_work_share)
from hios.frontend.capture import capture  # noqa: E402

from test_capture import Branchy, make, one_thread  # noqa: E402,F401


@pytest.fixture(scope="module")
def captured():
    model, inputs = make(Branchy)
    return capture(model, inputs, "branchy")


SPEC = DeviceSpec("test", fp32_tflops=10.0, tensor_tflops=100.0, bandwidth_gbps=1000.0, sms=10,
                  compute_eff=0.5, memory_eff=0.5, kernel_overhead_us=2.0)


def test_memory_bound_operator():
    meta = {"flops": 0, "tensor_flops": 0, "bytes_moved": 10**6, "kernels": 3}
    # 1e6 B / (1000 GB/s * 0.5) = 2 us; plus 3 kernels x 2 us
    assert operator_ms(meta, SPEC) == pytest.approx(2e-3 + 6e-3)


def test_compute_bound_operator_uses_tensor_rate_for_tensor_flops():
    meta = {"flops": 10**9 + 10**8, "tensor_flops": 10**9, "bytes_moved": 1000, "kernels": 1}
    # 1e9 / 50e12 + 1e8 / 5e12 = 20 us + 20 us
    assert operator_ms(meta, SPEC) == pytest.approx(40e-3 + 2e-3)


def test_utilization_bounds():
    assert operator_utilization({"out_shapes": [[1, 1]]}, SPEC) == 0.05
    assert operator_utilization({"out_shapes": [[1, 64, 32, 32]]}, SPEC) == 1.0
    assert operator_utilization({"out_shapes": [[1, 1024]]}, SPEC) == pytest.approx(1024 / 20480)


def test_presets_and_ordering(captured):
    assert set(DEVICE_SPECS) == {"v100", "a100", "h100", "h200", "h200-fit"}
    graphs = {k: costed_graph(captured, k) for k in DEVICE_SPECS}
    g = graphs["h100"]
    assert g.names == captured.graph.names and g.edges == captured.graph.edges
    assert g.meta["cost_source"] == "analytic:h100"
    assert all(op.cost > 0 for op in g.ops)
    assert graphs["v100"].total_work() > graphs["a100"].total_work() > graphs["h100"].total_work()
    assert graphs["h200"].total_work() <= graphs["h100"].total_work()
    assert graphs["h200-fit"].total_work() < graphs["h200"].total_work()  # fitted: 1.4-4.3 us per kernel, not 4
    assert captured.graph.total_work() == 0  # capture itself is not modified


def test_unknown_device():
    with pytest.raises(HiosError, match="h100"):
        device_spec("tpu")


def test_error_report(captured):
    analytic = costed_graph(captured, "h100")
    measured = analytic.with_costs([2 * c for c in analytic.costs])
    rep = analytic_error(measured, analytic)
    assert rep.total.kind == "all" and rep.total.operators == len(analytic)
    for row in rep.rows:
        assert row.ratio == pytest.approx(0.5)
        assert row.median_rel_error == pytest.approx(0.5)
    assert sum(r.operators for r in rep.rows[:-1]) == len(analytic)
    text = rep.format()
    assert "all" in text and "conv" in text
    assert rep.to_dict()["rows"][-1]["kind"] == "all"


def test_error_report_names_mismatch(captured):
    from hios.graph import Graph, Operator

    analytic = costed_graph(captured, "h100")
    other = Graph([Operator("zzz", 1.0)], [], "other")
    with pytest.raises(HiosError, match=repr(analytic.names[0])):
        analytic_error(other, analytic)


def test_calibration_recovers_parameters(captured):
    truth = DeviceSpec("h100", 67.0, 494.7, 3350.0, 132, compute_eff=0.3, memory_eff=0.5, kernel_overhead_us=2.0)
    measured = costed_graph(captured, truth)
    fit = fit_spec(measured, captured.graph, "h100")
    assert fit.name == "h100-calibrated"
    refit = costed_graph(captured, fit)
    assert max(abs(math.log(a / b)) for a, b in zip(refit.costs, measured.costs)) < 1e-9
    assert fit.kernel_overhead_us == 2.0 and fit.memory_eff == 0.5


def test_per_kernel_roofline_sums_kernels():
    # a compute-bound kernel then a memory-bound one: the sum of both rooflines, not the max of totals
    meta = {"kernel_work": [[10**9, 10**9, 1000], [0, 10**3, 10**6]], "flops": 10**9 + 10**3,
            "tensor_flops": 10**9, "bytes_moved": 10**6 + 1000, "kernels": 2}
    assert operator_ms(meta, SPEC) == pytest.approx(20e-3 + 2e-3 + 2 * 2e-3)


def test_captured_operators_record_kernel_work(captured):
    for op in captured.graph.ops:
        work = op.meta["kernel_work"]
        assert len(work) == op.meta["kernels"]
        assert sum(w[2] for w in work) == op.meta["bytes_moved"]
        assert sum(w[0] for w in work) == op.meta["tensor_flops"]


def test_align_operators_matches_renamed_profile_by_structure_only():
    """A profile whose operators carry other names (torch.export counters under another torch
    version) is accepted when its structure is the same, and refused when it is not."""
    import pytest

    from hios.errors import HiosError
    from hios.cost.analytic import align_operators
    from hios.graph import Edge, Graph, Operator

    ref = Graph([Operator("a.conv", 0, "conv", 8), Operator("b.relu", 0, "relu", 8), Operator("c.add", 0, "add", 8)],
                [Edge("a.conv", "b.relu", 8), Edge("a.conv", "c.add", 8), Edge("b.relu", "c.add", 8)])
    prof = Graph([Operator("conv2d", 1.5, "conv", 8), Operator("relu", 0.5, "relu", 8), Operator("add", 0.25, "add", 8)],
                 [Edge("conv2d", "relu", 8), Edge("conv2d", "add", 8), Edge("relu", "add", 8)])
    out = align_operators(ref, prof)
    assert out.names == ref.names and out.costs == [1.5, 0.5, 0.25]
    assert {(e.src, e.dst) for e in out.edges} == {(e.src, e.dst) for e in ref.edges}
    assert align_operators(ref, out) is out  # same names: unchanged
    other = Graph(prof.ops, [Edge("conv2d", "relu", 8), Edge("relu", "add", 8)])  # one edge missing
    with pytest.raises(HiosError, match="operator 'a.conv' is missing"):
        align_operators(ref, other)


def test_tensor_kernel_overhead_and_fused_elementwise_runs():
    from dataclasses import replace
    meta = {"kernel_work": [[0, 10**3, 10**6], [0, 10**3, 10**6], [10**9, 10**9, 1000], [0, 0, 10**6]]}
    # unfused, one overhead: 3 memory kernels of 2 us, the conv 20 us, 4 kernels x 2 us
    assert operator_ms(meta, SPEC) == pytest.approx(3 * 2e-3 + 20e-3 + 4 * 2e-3)
    spec = replace(SPEC, tensor_kernel_overhead_us=5.0, fuse_elementwise=True)
    # the first two element-wise kernels fuse (4 us of bytes, one 2 us overhead); the conv pays 5 us
    assert operator_ms(meta, spec) == pytest.approx(4e-3 + 2e-3 + 20e-3 + 5e-3 + 2e-3 + 2e-3)
    # work share: the rooflines over the whole time
    assert operator_work_share(meta, spec) == pytest.approx((4 + 20 + 2) / (4 + 2 + 20 + 5 + 2 + 2))
    assert operator_work_share(meta, spec, cost_ms=1.0) == pytest.approx(0.026)
    assert operator_work_share(meta, spec, cost_ms=1e-6) == 1.0


def test_kernel_form_fit_recovers_parameters(captured):
    from dataclasses import replace
    truth = replace(DEVICE_SPECS["h100"], compute_eff=0.3, memory_eff=0.8, kernel_overhead_us=1.5,
                    tensor_kernel_overhead_us=5.0, fuse_elementwise=True)
    measured = costed_graph(captured, truth)
    fit = fit_spec_kernels([(measured, captured.graph)], "h100", min_intensity=None)  # the truth's form
    assert fit.name == "h100-calibrated" and fit.fuse_elementwise and fit.tensor_min_intensity is None
    refit = costed_graph(captured, fit)
    assert max(abs(math.log(a / b)) for a, b in zip(refit.costs, measured.costs)) < 0.01
    assert fit.tensor_kernel_overhead_us == pytest.approx(5.0, rel=0.02)
    assert fit.kernel_overhead_us == pytest.approx(1.5, rel=0.02)
    # the old form (one overhead, no fusion) cannot reproduce these times
    old = costed_graph(captured, fit_spec(measured, captured.graph, "h100"))
    assert max(abs(math.log(a / b)) for a, b in zip(old.costs, measured.costs)) > 0.05


def test_kernel_form_fit_needs_recorded_kernels():
    from hios.graph import Graph, Operator
    g = Graph([Operator("a", 1.0, "conv", 8, meta={"flops": 10})], [], "g")
    with pytest.raises(HiosError, match="recorded kernels"):
        fit_spec_kernels([(g, g)], "h100")


def test_preset_costs_keep_the_roofline_arithmetic_bit_for_bit():
    """The per-kernel refinements are off in the presets, and a preset's cost is computed in the
    same order as before them (planning ties break the same way: NASNet's plan depends on it)."""
    from hios.cost.analytic import DEVICE_SPECS, _roofline_s, operator_ms
    work = [[219542400, 219542400, 15044496], [0, 2613600, 20908800], [0, 1306800, 10454400]]
    for spec in (DEVICE_SPECS["h200"], DEVICE_SPECS["h100"]):
        old = sum(_roofline_s(t, f, b, spec) for t, f, b in work) * 1e3 + len(work) * spec.kernel_overhead_us * 1e-3
        assert operator_ms({"kernel_work": work}, spec) == old


def test_light_tensor_kernels_pay_the_elementwise_overhead():
    from dataclasses import replace
    # a depthwise-like kernel (1 tensor FLOP per byte) between two element-wise ones, then a dense one
    meta = {"kernel_work": [[0, 10**3, 10**6], [10**6, 10**6, 10**6], [0, 10**3, 10**6], [10**9, 10**9, 1000]]}
    spec = replace(SPEC, tensor_kernel_overhead_us=5.0, fuse_elementwise=True)
    busy = 2e-3 + 2e-3 + 2e-3 + 20e-3   # three memory kernels of 2 us (not fused across the light one), the conv
    assert operator_ms(meta, spec) == pytest.approx(busy + (2 + 5 + 2 + 5) * 1e-3)
    light = replace(spec, tensor_min_intensity=4.0)
    assert operator_ms(meta, light) == pytest.approx(busy + (2 + 2 + 2 + 5) * 1e-3)
    assert replace(spec, tensor_min_intensity=0.5).tensor_min_intensity == 0.5
    assert operator_ms(meta, replace(spec, tensor_min_intensity=0.5)) == pytest.approx(operator_ms(meta, spec))


def test_kernel_form_fit_tells_light_from_dense_tensor_kernels():
    from dataclasses import replace
    from hios.graph import Graph, Operator
    ops = []
    for k in range(12):  # dense only; element-wise, light, dense; element-wise only
        n = 10 ** (5 + k % 4)
        work = ([[30 * n, 30 * n, n]], [[0, n, 4 * n], [n, n, n], [40 * n, 40 * n, 2 * n]], [[0, n, 2 * n]])[k % 3]
        ops.append(Operator(f"o{k}", 1.0, "conv", 8, meta={"kernel_work": work}))
    g = Graph(ops, [], "g")
    truth = replace(DEVICE_SPECS["h100"], compute_eff=0.4, memory_eff=0.9, kernel_overhead_us=1.5,
                    tensor_kernel_overhead_us=5.0, fuse_elementwise=True, tensor_min_intensity=4.0)
    measured = costed_graph(g, truth)
    fit = fit_spec_kernels([(measured, g)], "h100")
    assert fit.tensor_min_intensity == 4.0
    assert max(abs(math.log(a / b)) for a, b in zip(costed_graph(g, fit).costs, measured.costs)) < 0.01
    # every kernel with tensor FLOPs paying the tensor overhead cannot reproduce these times
    dense = fit_spec_kernels([(measured, g)], "h100", min_intensity=None)
    assert max(abs(math.log(a / b)) for a, b in zip(costed_graph(g, dense).costs, measured.costs)) > 0.05
