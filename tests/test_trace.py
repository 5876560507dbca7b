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
