"""Tests of hios.cost.profiler: pure helpers, the CPU path and the cache; GPU paths skip without CUDA."""

import json
import math
import warnings

import pytest

from hios.graph import Edge, Graph, Operator


def _diamond() -> Graph:
    ops = [Operator(n) for n in ("a", "b", "c", "d", "e")]
    edges = [Edge("a", "b"), Edge("a", "c"), Edge("a", "d"), Edge("b", "c"), Edge("c", "e"), Edge("d", "e")]
    return Graph(ops, edges, "diamond")


def test_sibling_groups_are_independent():
    from hios.cost.profiler import sibling_groups
    g = _diamond()
    groups = sibling_groups(g, 10, 4)
    anc = g.ancestors_mask()
    assert groups
    for grp in groups:
        assert 2 <= len(grp) <= 4
        for x in grp:
            for y in grp:
                assert x == y or not (anc[x] >> y) & 1
    names = [sorted(g.ops[i].name for i in grp) for grp in groups]
    assert ["b", "d"] in names  # b and c share a but depend on each other: only b, d (and c, d) pair
    assert all(n != ["b", "c"] for n in names)
    assert sibling_groups(g, 0, 4) == []
    assert len(sibling_groups(g, 1, 4)) == 1


def test_fit_alpha_recovers_known_alpha():
    from hios.cost.profiler import fit_alpha
    groups = []
    for costs in ([1.0, 2.0], [0.5, 0.5, 1.0], [3.0, 1.0], [0.2, 0.4, 0.6, 0.8]):
        s, m = sum(costs), max(costs)
        groups.append({"ops": [f"o{k}" for k in range(len(costs))], "costs": costs,
                       "time": 0.3 * s + 0.7 * m})
    fit = fit_alpha(groups, {})  # utilization 1 everywhere: falls back to max(w)
    assert fit["basis"] == "max"
    assert fit["alpha"] == pytest.approx(0.3)
    util = {f"o{k}": 0.25 for k in range(4)}
    g2 = [{**g, "time": 0.6 * sum(g["costs"]) + 0.4 * max(max(g["costs"]), 0.25 * sum(g["costs"]))}
          for g in groups]
    fit2 = fit_alpha(g2, util)
    assert fit2["basis"] == "utilization" and fit2["alpha"] == pytest.approx(0.6)
    assert fit_alpha([], {})["alpha"] is None
    over = fit_alpha([{"ops": ["a", "b"], "costs": [1.0, 1.0], "time": 5.0}], {})
    assert over["alpha"] == 1.0 and over["clipped_from"] > 1


def test_fit_transfer_recovers_line():
    from hios.cost.profiler import fit_transfer
    pts = [(b, 0.005 + b / 2e9) for b in (4096, 1 << 20, 1 << 24, 1 << 28)]  # 5 us + 2000 GB/s
    fit = fit_transfer(pts)
    assert fit["latency_us"] == pytest.approx(5.0, rel=1e-6)
    assert fit["bandwidth_gbps"] == pytest.approx(2000.0, rel=1e-6)
    assert fit_transfer(pts[:1]) is None


def test_cache_roundtrip_and_corruption(tmp_path):
    from hios.cost.profiler import cache_path, read_cache, write_cache
    g = Graph([Operator("a", 1.5), Operator("b", 2.0)], [Edge("a", "b", 8)], "m", {"profile": {"x": 1}})
    key = {"model": "m/odd name", "kernels": "eager", "device": "dev"}
    p = cache_path(tmp_path, key)
    assert "/" not in p.name and p.name.startswith("m_odd_name-eager-")
    assert read_cache(p, key) == (None, None)
    write_cache(p, key, g)
    got, why = read_cache(p, key)
    assert why is None and got.costs == [1.5, 2.0] and got.meta["profile"] == {"x": 1}
    _, why = read_cache(p, {**key, "device": "other"})
    assert "key" in why
    d = json.loads(p.read_text())
    d["graph"]["operators"][0]["cost"] = 0.1  # edited without updating the hash
    p.write_text(json.dumps(d))
    got, why = read_cache(p, key)
    assert got is None and "hash" in why
    p.write_text("{not json")
    got, why = read_cache(p, key)
    assert got is None and "unreadable" in why


torch = pytest.importorskip("torch")


class _Branchy(torch.nn.Module):
    """Stem, then three blocks of two sibling branches (3x3 and 1x1 conv) joined by cat + add."""

    def __init__(self, c=4):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, c, 3, padding=1)
        self.a = torch.nn.ModuleList([torch.nn.Conv2d(c, c, 3, padding=1) for _ in range(3)])
        self.b = torch.nn.ModuleList([torch.nn.Conv2d(c, c, 1) for _ in range(3)])

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for a, b in zip(self.a, self.b):
            x = torch.cat([torch.relu(a(x)), torch.relu(b(x))], 1)[:, ::2] + x
        return x


def _captured(size=12):
    from hios.frontend.capture import capture
    torch.manual_seed(0)
    return capture(_Branchy().eval(), (torch.randn(1, 3, size, size),), name="branchy")


def _settings(**kw):
    from hios.cost.profiler import ProfileSettings
    return ProfileSettings(warmup=1, repeats=3, **kw)


def test_cpu_eager_profile_costs_every_operator(tmp_path):
    from hios.formats import load_graph, save_graph
    from hios.cost.profiler import profile_detailed
    cap = _captured()
    res = profile_detailed(cap, "cpu", None, cache_dir=tmp_path, progress=False, settings=_settings())
    g = res.graph
    assert not res.from_cache
    assert g.names == cap.graph.names and len(g.edges) == len(cap.graph.edges)
    assert all(op.cost > 0 for op in g.ops)
    prof = g.meta["profile"]
    assert prof["kernels"] == "eager" and prof["method"] == "wall" and prof["device"].startswith("cpu")
    assert prof["sum_ms"] == pytest.approx(g.total_work())
    assert g.ops[0].meta["timing"]["median_ms"] == g.ops[0].cost
    assert "flops" in g.ops[0].meta  # capture meta kept
    # the model's parameters stay where they were
    assert all(p.device.type == "cpu" for p in cap.gm.parameters())
    out = tmp_path / "p.json"
    save_graph(g, out)
    back = load_graph(out)
    assert back.costs == g.costs and back.meta["profile"]["kernels"] == "eager"


def test_cpu_profile_cache_hit_and_corrupt_entry(tmp_path):
    from hios.cost.profiler import profile_detailed
    cap = _captured()
    first = profile_detailed(cap, "cpu", "eager", cache_dir=tmp_path, progress=False, settings=_settings())
    second = profile_detailed(cap, "cpu", "eager", cache_dir=tmp_path, progress=False, settings=_settings())
    assert second.from_cache and second.graph.costs == first.graph.costs
    path = first.cache_path
    d = json.loads(open(path).read())
    d["graph"]["operators"][0]["cost"] = 123.0
    open(path, "w").write(json.dumps(d))
    with pytest.warns(UserWarning, match="content hash mismatch"):
        third = profile_detailed(cap, "cpu", "eager", cache_dir=tmp_path, progress=False, settings=_settings())
    assert not third.from_cache and third.graph.ops[0].cost != 123.0
    # other settings: another key, measured anew without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fourth = profile_detailed(cap, "cpu", "eager", cache_dir=tmp_path, progress=False,
                                  settings=_settings(max_inner=2))
    assert not fourth.from_cache


def test_profile_rejects_bad_arguments():
    from hios.errors import HiosError
    from hios.cost.profiler import profile
    cap = _captured()
    with pytest.raises(HiosError, match="unknown kernels"):
        profile(cap, "cpu", "tvm", cache_dir=False, progress=False)
    with pytest.raises(HiosError, match="device"):
        profile(cap, "tpu:0", "eager", cache_dir=False, progress=False)
    if not torch.cuda.is_available():
        with pytest.raises(HiosError, match="no CUDA device"):
            profile(cap, "cuda:0", "eager", cache_dir=False, progress=False)


def test_lift_signature_shares_identical_operators():
    from hios.cost.profiler import lift, signature
    from hios.frontend.segments import build_segment
    cap = _captured()
    g = cap.graph
    env = dict(zip(cap.input_names, cap.example_inputs))
    sigs = {}
    with torch.inference_mode():
        for i in g.topo:
            seg = build_segment(cap, [g.ops[i].name])
            args = [env[n] for n in seg.inputs]
            gm, params = lift(seg.module, args)
            out = gm(*params, *args)
            ref = seg.module(*args)
            assert all(torch.allclose(a, b) for a, b in zip(out, ref))
            sigs[g.ops[i].name] = signature(gm, list(params) + args)
            env.update(zip(seg.outputs, ref))
    by_sig = {}
    for name, s in sigs.items():
        by_sig.setdefault(s, []).append(name)
    # the three blocks have identical shapes: their 3x3 branches share one signature, as do the 1x1 ones
    assert len(by_sig) < len(sigs)
    assert any(len(v) == 3 for v in by_sig.values())


def test_cli_profile_cpu(tmp_path, capsys):
    pytest.importorskip("torchvision")
    from hios.cli import main
    from hios.formats import load_graph
    out = tmp_path / "sq.json"
    rc = main(["profile", "--model", "squeezenet1_1", "--image-size", "48", "--device", "cpu", "--no-progress",
               "--repeats", "3", "--cache-dir", str(tmp_path / "cache"), "-o", str(out)])
    assert rc == 0
    g = load_graph(out)
    assert len(g) > 5 and all(op.cost > 0 for op in g.ops)
    assert g.meta["profile"]["kernels"] == "eager"
    rc = main(["profile", "--model", "squeezenet1_1", "--image-size", "48", "--device", "cpu", "--no-progress",
               "--cache-dir", str(tmp_path / "cache"), "--repeats", "3", "-o", str(tmp_path / "again.json")])
    assert rc == 0 and "from cache" in capsys.readouterr().err
    assert main(["profile", "--model", "squeezenet1_1", "--image-size", "48", "-o", str(tmp_path / "x.txt")]) == 2
    rc = main(["profile", "--model", "squeezenet1_1", "--image-size", "48", "--device", "cpu", "--no-progress",
               "--repeats", "3", "--no-cache", "--channels-last", "-o", str(tmp_path / "cl.json")])
    assert rc == 0 and load_graph(tmp_path / "cl.json").meta["profile"]["memory_format"] == "channels_last"


def _cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_gpu_eager_profile_matches_whole_graph():
    _cuda()
    from hios.cost.profiler import profile_detailed
    from hios.cost.timing import cuda_graph_time
    cap = _captured(size=256)
    res = profile_detailed(cap, "cuda:0", "eager", cache_dir=False, progress=False,
                           settings=_settings(groups=4))
    g = res.graph
    prof = g.meta["profile"]
    assert prof["method"] == "cuda_graph" and all(op.cost > 0 for op in g.ops)
    assert prof["launch_overhead"]["overhead_ms"] >= 0
    assert prof["transfer"]["d2d"]["bandwidth_gbps"] > 10
    assert res.groups and all(grp["time"] > 0 for grp in res.groups)
    gm = cap.gm.cuda()
    x = cap.example_inputs[0].cuda()
    with torch.inference_mode():
        whole = cuda_graph_time(gm, (x,), warmup=2, repeats=10).median_ms
    assert 0.5 * whole < g.total_work() < 2.0 * whole


def test_gpu_inductor_profile_runs():
    _cuda()
    from hios.cost.profiler import profile_detailed
    cap = _captured(size=64)
    res = profile_detailed(cap, "cuda:0", "inductor", cache_dir=False, progress=False,
                           settings=_settings(groups=2, transfer=False), compile_workers=0)
    comp = res.graph.meta["profile"]["compile"]
    assert comp["unique"] < comp["operators"]
    assert all(op.cost > 0 and math.isfinite(op.cost) for op in res.graph.ops)


def test_channels_last_profile_restores_layout():
    from hios.cost.profiler import profile_detailed
    cap = _captured()
    before = {n: p.stride() for n, p in cap.gm.named_parameters()}
    res = profile_detailed(cap, "cpu", "eager", cache_dir=False, progress=False,
                           settings=_settings(channels_last=True))
    assert res.graph.meta["profile"]["memory_format"] == "channels_last"
    assert {n: p.stride() for n, p in cap.gm.named_parameters()} == before


def test_calibrate_gives_measured_utilizations_and_refits_alpha():
    """Committed H100 profiles carry utilization 1 everywhere; calibrate derives utilizations from
    measured time vs. FLOPs/bytes, so small operators can share the GPU in the stage model."""
    from pathlib import Path

    from hios.formats import load_graph
    from hios.cost.profiler import calibrate

    path = Path(__file__).resolve().parents[1] / "benchmarks/profiles/inception_v3-1280-inductor-h100.json"
    g = load_graph(path)
    cal, stage = calibrate(g)
    utils = [op.utilization for op in cal.ops]
    assert all(0.02 <= u <= 1.0 for u in utils)
    assert min(utils) < 0.5 < max(utils)  # pooling/small ops far from the peak, big convolutions near it
    assert cal.costs == g.costs  # costs untouched
    assert 0.0 <= stage.alpha <= 1.0 and stage.groups
    assert cal.meta["profile"]["utilization"].startswith("measured:h100")
    again, _ = calibrate(cal)  # idempotent
    assert [op.utilization for op in again.ops] == utils
