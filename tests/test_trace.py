"""Real-run trace on CPU logical devices (each stream a thread): every segment of every call is
recorded and attributed, the simulator's trace sits beside it, the table compares both, a run
record feeds back into the profile; unwritable paths are refused before anything is written."""

from __future__ import annotations

import json
import os
import random

import pytest

torch = pytest.importorskip("torch")

from test_runtime import Branchy, random_stages  # noqa: E402

from hios.errors import HiosError  # noqa: E402
from hios.cost.feedback import feed_back, read_run_record, run_record, runtime_settings  # noqa: E402
from hios.machine import Machine  # noqa: E402
from hios.runtime.measure.trace import (SIM_PID, attribute_kernels, check_writable, chrome_trace, format_table,  # noqa: E402
                                record_run, segment_table, write_trace)
from hios.simulator import Simulator  # noqa: E402


@pytest.fixture(scope="module")
def traced():
    from hios.cost.analytic import costed_graph
    from hios.frontend.capture import capture
    from hios.runtime.local.executor import compile as hcompile
    torch.manual_seed(0)
    model = Branchy().eval()
    x = torch.randn(1, 3, 16, 16)
    cap = capture(model, (x,), "branchy")
    graph = costed_graph(cap, "h100")
    sched = random_stages(graph, 2, 3, random.Random(0))
    m = hcompile(model, (x,), sched, "cpu,cpu", captured=cap)
    tr = record_run(m, (x,), calls=3)
    res = Simulator(graph, Machine(2), None).simulate(sched)
    with torch.no_grad():
        ok = (m(x) - model(x)).abs().max().item() <= 1e-4 * model(x).abs().max().item()
    return m, x, graph, sched, tr, res, ok


def test_every_segment_of_every_call_is_recorded_on_its_stream(traced):
    m, x, graph, sched, tr, res, ok = traced
    assert ok and tr.clock == "wall" and tr.calls == 3 and max(m.program.streams) > 1
    steps = {s.id: s for s in m.program.segments}
    for call in range(3):
        recs = [r for r in tr.segments if r.call == call]
        assert sorted(r.step for r in recs) == sorted(steps)
        for r in recs:
            assert (r.device, r.stream) == (steps[r.step].device, steps[r.step].stream)
            assert 0 <= r.start_ms <= r.end_ms and r.mem == "cpu"
        # one stream is one thread: its segments never overlap and follow the program's order
        for lane in {(r.device, r.stream) for r in recs}:
            on = sorted((r for r in recs if (r.device, r.stream) == lane), key=lambda r: r.start_ms)
            assert all(a.end_ms <= b.start_ms for a, b in zip(on, on[1:]))
            assert [r.step for r in on] == [s.id for s in m.program.segments if (s.device, s.stream) == lane]
        # a segment starts after the segments whose events it waits for have ended
        rec_of = {r.step: r for r in recs}
        recorder = {s.record: s.id for s in m.program.segments if s.record is not None}
        for s in m.program.segments:
            for e in s.waits:
                if e in recorder:
                    assert rec_of[recorder[e]].end_ms <= rec_of[s.id].start_ms
    assert len(tr.call_ms()) == 3 and all(c > 0 for c in tr.call_ms())


def test_table_and_chrome_trace_with_the_simulation_beside(traced, tmp_path):
    m, x, graph, sched, tr, res, ok = traced
    rows = segment_table(tr, m.program, graph, res)
    assert len(rows) == len(m.program.segments) + 1 and rows[-1]["segment"] == "call"
    for r in rows[:-1]:
        assert r["measured_ms"] > 0 and r["predicted_ms"] >= 0 and r["alone_ms"] > 0
    assert rows[-1]["predicted_ms"] == pytest.approx(res.latency)
    text = format_table(rows)
    assert "meas/pred" in text and "(whole call)" in text
    data = chrome_trace(tr, m.program, graph, sched, res)
    evs = data["traceEvents"]
    measured = [e for e in evs if e.get("cat") == "segment"]
    assert len(measured) == len(m.program.segments)
    assert all(e["args"]["ops"] for e in measured)
    sim = [e for e in evs if e["ph"] == "X" and e["pid"] >= SIM_PID and e["cat"] != "transfer"]
    assert sorted(e["name"] for e in sim) == sorted(graph.names)
    path = tmp_path / "trace.json"
    write_trace(path, data)
    assert json.loads(path.read_text())["traceEvents"]
    assert [p.name for p in tmp_path.iterdir()] == ["trace.json"]  # no temporary left


def test_unwritable_trace_paths_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(HiosError, match="does not exist"):
        check_writable(tmp_path / "missing" / "t.json")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(HiosError, match="it is a folder"):
        write_trace(tmp_path / "dir.json", {"traceEvents": []})
    (tmp_path / "dir.json").rmdir()
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(HiosError, match="not writable"):
            write_trace(ro / "t.json", {"traceEvents": []})
        assert list(ro.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == (["ro"] if os.geteuid() != 0 else [])


def test_run_record_feeds_back_and_is_checked(traced, tmp_path):
    m, x, graph, sched, tr, res, ok = traced
    settings = runtime_settings("eager", False, "fp32", "cpu")
    rec = run_record(graph, m.program, tr, settings)
    assert len(rec["segments"]) == len(m.program.segments)
    assert all(s["concurrency"] >= 1.0 for s in rec["segments"])
    path = tmp_path / "t.json"
    write_trace(path, chrome_trace(tr, m.program, graph, sched, res, extra={"hiosRun": rec}))
    back = read_run_record(path, graph, settings)
    fed = feed_back(graph, back["segments"], 0.0, str(path))
    for s in back["segments"]:  # each segment's operators now cost what it measured
        assert sum(fed.ops[fed.index[n]].cost for n in s["ops"]) == pytest.approx(s["measured_ms"])
    with pytest.raises(HiosError, match="memory_format=contiguous"):
        read_run_record(path, graph, runtime_settings("eager", True, "fp32", "cpu"))
    other = graph.with_costs(graph.costs)
    other.name = "another"
    with pytest.raises(HiosError, match="not 'another'"):
        read_run_record(path, other)
    (tmp_path / "bad.json").write_text('{"format": "hios-plan"}')
    with pytest.raises(HiosError, match="not a hios run record"):
        read_run_record(tmp_path / "bad.json", graph)


def test_kernel_attribution_from_a_profiler_trace():
    """torch.profiler's exported JSON: kernels map to the segment range enclosing their launch."""
    evs = [
        {"ph": "X", "cat": "user_annotation", "name": "hios/seg3", "pid": 1, "tid": 7, "ts": 100, "dur": 50},
        {"ph": "X", "cat": "user_annotation", "name": "hios/seg4", "pid": 1, "tid": 7, "ts": 160, "dur": 50},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 7, "ts": 110, "dur": 5,
         "args": {"correlation": 11}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 7, "ts": 170, "dur": 5,
         "args": {"correlation": 12}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "pid": 1, "tid": 7, "ts": 300, "dur": 5,
         "args": {"correlation": 13}},
        {"ph": "X", "cat": "kernel", "name": "conv", "pid": 0, "tid": 20, "ts": 1000, "dur": 30,
         "args": {"correlation": 11, "device": 0, "stream": 20}},
        {"ph": "X", "cat": "kernel", "name": "relu", "pid": 0, "tid": 21, "ts": 1010, "dur": 10,
         "args": {"correlation": 12, "device": 0, "stream": 21}},
        {"ph": "X", "cat": "kernel", "name": "replayed", "pid": 0, "tid": 22, "ts": 1100, "dur": 10,
         "args": {"correlation": 13, "device": 0, "stream": 22}},
    ]
    ks = attribute_kernels({"traceEvents": evs}, "stream")
    assert [(k.name, k.segment, k.stream) for k in ks] == [("conv", 3, 20), ("relu", 4, 21), ("replayed", None, 22)]
    assert ks[0].start_ms == 0.0 and ks[0].end_ms == pytest.approx(0.03)


def test_segments_timed_as_built_become_the_profile_and_plans_are_checked_against_it(traced):
    from hios.plan import Plan
    from hios.runtime.local.executor import compile as hcompile
    from hios.runtime.measure.segment_profile import segment_profile
    m, x, graph, sched, tr, res, ok = traced
    g, times = segment_profile(m, (x,), graph, repeats=4)
    assert sorted(times) == sorted(s.id for s in m.program.segments)
    for s in m.program.segments:
        assert sum(g.ops[g.index[n]].cost for n in s.ops) == pytest.approx(times[s.id])
    prof = g.meta["profile"]
    assert (prof["kernels"], prof["memory_format"], prof["device_type"], prof["freezing"]) == \
        ("eager", "contiguous", "cpu", False)
    plan = Plan({"name": "branchy"}, "segments", Machine(2), g, sched, {}, {})
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hcompile(m.captured.gm, (x,), plan, "cpu,cpu", captured=m.captured)  # same settings: silent
    # other settings: the plan runs, with one warning that its predictions do not apply
    with pytest.warns(UserWarning, match="memory_format=contiguous, this run uses memory_format=channels_last; "
                                         "the plan runs as asked, but its predicted times do not apply"):
        other = hcompile(m.captured.gm, (x,), plan, "cpu,cpu", captured=m.captured, channels_last=True)
    with torch.no_grad():
        assert torch.allclose(other(x), m(x), rtol=1e-4, atol=1e-5)


def test_best_compile_baseline():
    from hios.runtime.measure.bench import best_compile
    assert best_compile({"compile": {"median_ms": 0.5}, "compile_freezing": {"median_ms": 0.46}})[0] == \
        "compile_freezing"
    assert best_compile({"compile": {"median_ms": 0.5}, "compile_freezing": {"error": "x"}})[0] == "compile"
    assert best_compile({"eager": {"median_ms": 1.0}}) is None


# -- graph replay: kernels attributed from synthetic profiler traces (what a GPU run exports) -------------

def _annotation(name, ts, dur, tid=7):
    return {"ph": "X", "cat": "user_annotation", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur}


def _launch(name, ts, corr, tid=7):
    return {"ph": "X", "cat": "cuda_runtime", "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": 1,
            "args": {"correlation": corr}}


def _kernel(name, ts, dur, corr, stream, grid=(1, 1, 1)):
    return {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": stream, "ts": ts, "dur": dur,
            "args": {"correlation": corr, "device": 0, "stream": stream, "grid": list(grid), "block": [128, 1, 1]}}


def _program():
    from hios.program.segmenting import ExecProgram, SegmentStep
    seg = (lambda i, s, waits=(), record=None: SegmentStep(i, 0, s, (f"op{i}a", f"op{i}b"), waits, record, (), (), 0))
    return ExecProgram(1, [2], [seg(0, 0, record=0), seg(1, 1, (0,)), seg(2, 0)], 1, ["cuda:0"])


#: segment -> its kernels (name, grid); seg0 and seg1 launch the same convolution kernel.
KERNELS = {0: [("conv", (4, 1, 1)), ("relu", (2, 1, 1))], 1: [("conv", (4, 1, 1))], 2: [("gemm", (8, 1, 1))]}
LANE = {0: 20, 1: 21, 2: 20}


def _stream_pass(calls=2):
    """The stream-mode issue: per call a hios/call range, the input copy, then each segment's range
    around its launches; kernels on the segments' own streams."""
    evs, corr, t = [], 100, 0.0
    for c in range(calls):
        evs.append(_annotation(f"hios/call{c}", t, 90))
        evs += [_launch("cudaLaunchKernel", t + 1, corr), _kernel("copy", 5000 + t, 2, corr, 20)]
        corr += 1
        for seg, ks in KERNELS.items():
            evs.append(_annotation(f"hios/seg{seg}", t + 10 + 20 * seg, 15))
            for j, (name, grid) in enumerate(ks):
                evs += [_launch("cudaLaunchKernel", t + 11 + 20 * seg + j, corr),
                        _kernel(name, 5000 + t + 10 + 20 * seg + 5 * j, 4, corr, LANE[seg], grid)]
                corr += 1
        t += 100
    return {"traceEvents": evs}


def _replay_pass(calls=2, names=None):
    """Graph replays: one cudaGraphLaunch per hios/call range; every kernel carries its correlation
    id and runs on the launch stream (7).  Per replay (µs from its start): copy 0-2, seg0 conv 2-12,
    relu 12-14; seg1 conv 15-25 (after seg0); seg2 gemm 14-20 (beside seg1)."""
    rows = [("copy", 0, 2, (1, 1, 1)), ("conv", 2, 10, (4, 1, 1)), ("relu", 12, 2, (2, 1, 1)),
            ("gemm", 14, 6, (8, 1, 1)), ("conv", 15, 10, (4, 1, 1))]
    evs = []
    for c in range(calls):
        t = 1000.0 * c
        evs += [_annotation(f"hios/call{c}", t, 50), _launch("cudaGraphLaunch", t + 1, 900 + c)]
        for name, a, d, grid in rows:
            evs.append(_kernel((names or {}).get(name, name), 9000 + t + a, d, 900 + c, 7, grid))
    return {"traceEvents": evs}


def test_kernels_are_tied_to_their_call_and_segment():
    ks = attribute_kernels(_stream_pass(), "stream")
    assert [(k.name, k.call, k.segment, k.outside) for k in ks[:5]] == [
        ("copy", 0, None, True), ("conv", 0, 0, False), ("relu", 0, 0, False), ("conv", 0, 1, False),
        ("gemm", 0, 2, False)]
    assert ks[0].shape == "grid [1, 1, 1] block [128, 1, 1]"
    rs = attribute_kernels(_replay_pass(), "graph")
    assert [k.call for k in rs] == [0] * 5 + [1] * 5 and all(k.segment is None for k in rs)


def test_replay_segments_from_the_replayed_kernels():
    from hios.runtime.measure.trace import RunTrace, chrome_trace, replay_segments
    prog = _program()
    stream = attribute_kernels(_stream_pass(), "stream")
    res = replay_segments(prog, ["cuda:0"], stream, attribute_kernels(_replay_pass(), "graph"), 2)
    assert res.why_not == "" and res.caveat == ""
    got = {(r.call, r.step): (r.start_ms, r.end_ms) for r in res.segments}
    for c in range(2):  # times from the replay's first kernel, in ms
        assert got[(c, 0)] == pytest.approx((0.002, 0.014))
        assert got[(c, 1)] == pytest.approx((0.015, 0.025))
        assert got[(c, 2)] == pytest.approx((0.014, 0.020))
    assert [(k.name, k.segment, k.outside) for k in res.kernels[:5]] == [
        ("copy", None, True), ("conv", 0, False), ("relu", 0, False), ("gemm", 2, False), ("conv", 1, False)]
    cov = res.coverage
    assert cov.replays == 2 and cov.kernels == 10 and cov.missing == 0
    assert cov.attributed == pytest.approx(28 / 30) and cov.to_dict()["outside_share"] == pytest.approx(2 / 30)
    assert cov.lane_ratio((0, 0)) == pytest.approx(1.0) and cov.lane_ratio((0, 1)) == pytest.approx(1.0)
    # the Chrome trace lays the last replay's kernels under its segments
    from hios.graph import Graph, Operator
    graph = Graph([Operator(n, 1.0) for st in prog.segments for n in st.ops], [], "g")
    tr = RunTrace(res.segments, 2, "graph_replay_kernels", "graph", stream + res.kernels, "n",
                  stream_segments=[], coverage=cov)
    data = chrome_trace(tr, prog, graph)
    segs = {e["args"]["ops"][0]: e for e in data["traceEvents"] if e.get("cat") == "segment"}
    kern = [e for e in data["traceEvents"] if e.get("cat") == "kernel/graph"]
    assert len(kern) == 5 and {e["args"]["call"] for e in kern} == {1}
    for e in kern:
        if e["args"]["segment"] is not None:
            s = segs[f"op{e['args']['segment']}a"]
            assert s["ts"] - 1e-6 <= e["ts"] and e["ts"] + e["dur"] <= s["ts"] + s["dur"] + 1e-6
            assert e["args"]["ops"] == s["args"]["ops"]
    assert data["otherData"]["coverage"]["attributed_share"] == pytest.approx(28 / 30)
    assert "replay" in data["otherData"]["measured"]


def test_a_replay_that_does_not_match_is_said_so_not_used():
    from hios.runtime.measure.trace import replay_segments
    stream = attribute_kernels(_stream_pass(), "stream")
    odd = {"conv": "implicit_gemm", "relu": "fused", "gemm": "cutlass"}
    res = replay_segments(_program(), ["cuda:0"], stream, attribute_kernels(_replay_pass(names=odd), "graph"), 2)
    assert res.why_not.startswith("graph replay not attributed: only 0.0 % of its kernel time matched")
    none = replay_segments(_program(), ["cuda:0"], stream, [], 2)
    assert none.why_not == "graph replay not attributed: the profiler recorded no kernel of the replay"


def test_names_alone_when_launch_shapes_differ():
    """A replay whose kernels report other launch shapes is matched by name."""
    from hios.runtime.measure.trace import replay_segments
    data = _replay_pass()
    for e in data["traceEvents"]:
        if e["cat"] == "kernel":
            e["args"]["grid"] = [99, 1, 1]
    res = replay_segments(_program(), ["cuda:0"], attribute_kernels(_stream_pass(), "stream"),
                          attribute_kernels(data, "graph"), 2)
    assert res.why_not == "" and res.coverage.attributed == pytest.approx(28 / 30)


def test_profiler_warnings_stay_off_stderr(capsys):
    import warnings
    from hios.runtime.measure.trace import _profiling
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        with _profiling(notes):
            warnings.warn_explicit("Warning: Profiler clears events at the end of each cycle. Only events from the "
                                   "current cycle will be reported.", UserWarning, "/x/torch/profiler/profiler.py", 1)
            warnings.warn_explicit("CUPTI is not available", UserWarning, "/x/torch/autograd/profiler.py", 2)
        assert capsys.readouterr().err == ""
        assert notes == ["profiler: CUPTI is not available"]
        with pytest.warns(UserWarning, match="hios: not the profiler's"), _profiling(notes):
            warnings.warn("hios: not the profiler's")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("kernels", ["eager", "inductor"])
def test_cuda_graph_replay_segments_come_from_its_kernels(kernels, tmp_path, capfd):
    """GPU: a graph-mode plan's trace measures the replay; nearly all of its kernel time is
    attributed; the profiler says nothing on stderr."""
    from hios.cost.analytic import costed_graph
    from hios.frontend.capture import capture
    from hios.plan import Plan
    from hios.runtime.local.executor import compile as hcompile
    from hios.runtime.measure.trace import trace_plan
    torch.manual_seed(0)
    model = Branchy().eval().cuda()
    x = torch.randn(1, 3, 32, 32, device="cuda")
    cap = capture(model, (x,), "branchy")
    graph = costed_graph(cap, "h100")
    sched = random_stages(graph, 1, 3, random.Random(0))
    m = hcompile(model, (x,), sched, "cuda:0", kernels=kernels, captured=cap)
    assert m.mode == "graph" and max(m.program.streams) > 1
    plan = Plan({"name": "branchy"}, "segments", Machine(1), graph, sched, {}, {})
    capfd.readouterr()
    out = trace_plan(m, (x,), plan, tmp_path / "t.json", calls=4)
    err = capfd.readouterr().err
    assert "Profiler" not in err and "profiler" not in err.lower(), err
    rec, cov = out["record"], out["coverage"]
    assert rec["clock"] == "graph_replay_kernels", out["note"]
    assert cov["replays"] == 4 and cov["attributed_share"] >= 0.95, out["coverage_line"]
    data = json.loads((tmp_path / "t.json").read_text())
    launched = {e["args"]["segment"] for e in data["traceEvents"] if e.get("cat") == "kernel/stream"} - {None}
    assert launched and launched <= {s["step"] for s in rec["segments"]}  # every segment with kernels measured
    assert all(s["measured_ms"] > 0 for s in rec["segments"])
    assert [e for e in data["traceEvents"] if e.get("cat") == "kernel/graph"]
    assert "stream_mode_pass" in data["otherData"]


class _FakeEvent:
    """torch.cuda.Event stand-in: record() takes the next tick of a shared clock."""
    clock = [0.0]

    def __init__(self, enable_timing=False):
        self.t = None

    def record(self, stream=None):
        _FakeEvent.clock[0] += 0.5
        self.t = _FakeEvent.clock[0]

    def elapsed_time(self, other):
        return other.t - self.t


class _FakeGraphModule:
    """What record_run uses of a graph-mode HiosModule on a GPU, without a GPU."""
    is_cuda, mode = True, "graph"

    def __init__(self, fail_replay=False):
        from types import SimpleNamespace
        self.program = _program()
        self.devices = ["cuda:0"]
        self._graph = object()
        self._static_in = [torch.zeros(1)]
        self._segs = [SimpleNamespace(step=st, mem="cuda:0") for st in self.program.segments]
        self.fail_replay = fail_replay
        self.issued = []

    def _check_inputs(self, inputs):
        pass

    def _run_segment(self, seg, env, first):
        pass

    def _issue(self, inputs):
        self.issued.append(inputs)
        for seg in self._segs:
            self._run_segment(seg, {}, False)

    def replay(self):
        if self.fail_replay:
            raise RuntimeError("CUDA error: not permitted")


@pytest.mark.parametrize("case", ["attributed", "other kernels", "replay fails"])
def test_record_run_of_a_graph_module_measures_the_replay(monkeypatch, case):
    """The GPU path of record_run, its profiler exports replaced by the synthetic ones above."""
    import hios.runtime.measure.trace as trace
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    exports = iter([_stream_pass(2), _replay_pass(2, names={"conv": "other"} if case == "other kernels" else None)])

    def fake_profile(body, path, notes):
        body()
        return next(exports)
    monkeypatch.setattr(trace, "_profile", fake_profile)
    m = _FakeGraphModule(fail_replay=case == "replay fails")
    x = torch.ones(1)
    tr = record_run(m, (x,), calls=2, warmup=1, kernels=True)
    # warm-up and the timed calls on x, then the profiled pass on the inputs the graph was captured on
    assert m.issued[:3] == [(x,)] * 3 and len(m.issued) == 5 and all(i[0] is m._static_in[0] for i in m.issued[3:])
    assert [s.step for s in tr.stream_segments or tr.segments if s.call == 0] == [0, 1, 2]
    if case == "attributed":
        assert tr.clock == "graph_replay_kernels" and "replay" in tr.measured
        assert {(r.call, r.step): round(r.end_ms - r.start_ms, 6) for r in tr.segments} == {
            (c, s): d for c in (0, 1) for s, d in ((0, 0.012), (1, 0.010), (2, 0.006))}
        assert tr.call_ms() == pytest.approx([0.025, 0.025])
        assert len(tr.stream_segments) == 6 and tr.coverage.attributed == pytest.approx(28 / 30)
        assert {k.source for k in tr.kernels} == {"stream", "graph"}
        rows = segment_table(tr, m.program, _graph_of(m.program))
        assert rows[-1]["measured_ms"] == pytest.approx(0.025)
        assert format_table(rows, tr.measured).startswith("meas ms: 2 CUDA-graph replay(s)")
    else:
        assert tr.clock == "cuda_events" and "NOT the CUDA-graph replay" in tr.note
        assert ("only 26.7 % of its kernel time matched" if case == "other kernels" else
                "graph replay not profiled: RuntimeError: CUDA error: not permitted") in tr.note
        assert tr.segments and not tr.stream_segments


def _graph_of(program):
    from hios.graph import Graph, Operator
    return Graph([Operator(n, 1.0) for st in program.segments for n in st.ops], [], "g")
