"""The measured critical path and kernel statistics of ``benchmarks/compile_gap.py``
(:mod:`hios.runtime.measure.critical_path`), on synthetic data and on programs of random schedules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from hios.graph import Edge, Graph, Operator
from hios.program.segmenting import stream_program
from hios.runtime.measure.critical_path import (kernel_family, kernel_mix, kernel_stats, measured_critical_path,
                                                 segment_graph)
from hios.schedule import Schedule

from strategies import graph_and_schedule


def test_critical_path_of_a_diamond():
    deps = {0: [], 1: [0], 2: [0], 3: [1, 2]}
    cp = measured_critical_path({0: 1.0, 1: 5.0, 2: 2.0, 3: 1.0}, deps)
    assert cp.length == pytest.approx(7.0)
    assert cp.path == (0, 1, 3)
    assert cp.unmeasured == 0
    cp = measured_critical_path({0: 1.0, 1: 0.5, 2: 2.0, 3: 1.0}, deps)  # the other branch now
    assert cp.length == pytest.approx(4.0) and cp.path == (0, 2, 3)


def test_critical_path_counts_unmeasured_segments_and_refuses_bad_graphs():
    cp = measured_critical_path({0: 2.0}, {0: [], 1: [0], 2: []})
    assert cp.length == pytest.approx(2.0) and cp.unmeasured == 2
    assert measured_critical_path({}, {}).length == 0.0
    with pytest.raises(ValueError, match="cycle"):
        measured_critical_path({0: 1.0, 1: 1.0}, {0: [1], 1: [0]})
    with pytest.raises(ValueError, match="unknown"):
        measured_critical_path({0: 1.0}, {0: [7]})


def test_kernel_stats_busy_is_the_union_and_medians_are_over_calls():
    ks = kernel_stats([(0, 0.0, 1.0), (0, 0.5, 2.0), (0, 3.0, 4.0),      # call 0: busy 3, sum 3.5, span 4
                       (1, 0.0, 1.0), (1, 2.0, 3.0),                      # call 1: busy 2, sum 2, span 3
                       (2, 0.0, 4.0), (2, 1.0, 2.0), (2, 1.5, 2.5), (2, 5.0, 6.0)])  # busy 5, sum 7, span 6
    assert ks.calls == 3
    assert ks.kernels == 3
    assert ks.busy_ms == pytest.approx(3.0)
    assert ks.summed_ms == pytest.approx(3.5)
    assert ks.span_ms == pytest.approx(4.0)
    assert kernel_stats([]) is None


def test_segment_graph_follows_events_and_stream_order():
    g = Graph([Operator("a", 1.0), Operator("b", 3.0), Operator("c", 1.0), Operator("d", 1.0)],
              [Edge("a", "b"), Edge("a", "c"), Edge("b", "d"), Edge("c", "d")])
    prog = stream_program(g, Schedule([[("a",), ("b", "c"), ("d",)]]))
    deps = segment_graph(prog)
    seg = prog.segment_of
    assert seg["a"] in deps[seg["c"]] or seg["a"] == seg["c"]
    assert seg["c"] in deps[seg["d"]] or seg["c"] == seg["d"]
    # weights: the longest path is a -> b -> d, whatever the segments are
    dur = {st.id: sum(g[n].cost for n in st.ops) for st in prog.segments}
    assert measured_critical_path(dur, deps).length == pytest.approx(5.0)


@settings(max_examples=60, deadline=None)
@given(graph_and_schedule(max_nodes=12, max_gpus=2))
def test_segment_graph_orders_every_edge(case):
    """Every graph edge between two segments is a path of the segment graph, so the measured
    critical path (with segment weights = summed operator costs) is at least the graph's own."""
    graph, gpus, sched = case
    prog = stream_program(graph, sched)
    deps = segment_graph(prog)
    after = {}
    for st in prog.segments:  # issue order is a topological order of the segment graph
        after[st.id] = {st.id}.union(*(after[u] for u in deps[st.id]))
    for e in graph.edges:
        a, b = prog.segment_of[e.src], prog.segment_of[e.dst]
        assert a in after[b]
    dur = {st.id: sum(graph[n].cost for n in st.ops) for st in prog.segments}
    finish = {}
    for i in graph.topo:
        finish[i] = max((finish[p] for p in graph.preds[i]), default=0.0) + graph.ops[i].cost
    cp = measured_critical_path(dur, deps)
    assert cp.length >= max(finish.values(), default=0.0) - 1e-9


def test_kernel_family_by_name():
    assert kernel_family("triton_poi_fused_relu_0") == "triton"
    assert kernel_family("sm90_xmma_fprop_implicit_gemm_tf32f32_nhwc") == "conv/gemm"
    assert kernel_family("void cudnn::engines_precompiled::nchwToNhwcKernel") == "copy"
    assert kernel_family("cudnn_infer_ampere_scudnn_128x64_relu_small_nn_v1") == "conv/gemm"
    assert kernel_family("void at::native::elementwise_kernel<direct_copy_kernel_cuda>") == "copy"
    assert kernel_family("void at::native::(anonymous namespace)::CatArrayBatchedCopy<...>") == "copy"
    assert kernel_family("Memcpy DtoD (Device -> Device)") == "copy"
    assert kernel_family("void at::native::vectorized_elementwise_kernel<4, ...>") == "other"


def test_kernel_mix_counts_and_times_per_family_as_medians_over_calls():
    ks = [(0, "triton_a", 0.0, 1.0), (0, "triton_b", 1.0, 1.5), (0, "cudnn_conv", 1.5, 4.0),
          (1, "triton_a", 0.0, 2.0), (1, "cudnn_conv", 2.0, 3.0),
          (2, "triton_a", 0.0, 1.0), (2, "triton_b", 1.0, 2.0), (2, "cudnn_conv", 2.0, 5.0), (2, "Memset", 5, 5.5)]
    mix = kernel_mix(ks)
    assert list(mix) == ["triton", "conv/gemm", "copy"]
    assert mix["triton"] == (2, 2.0)            # counts 2, 1, 2; sums 1.5, 2.0, 2.0
    assert mix["conv/gemm"] == (1, 2.5)         # sums 2.5, 1.0, 3.0
    assert mix["copy"] == (0, 0.0)              # only call 2 has one: the median call has none
    assert kernel_mix([]) == {}
