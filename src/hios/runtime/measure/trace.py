"""Real-run trace: what a compiled plan actually ran, per device and stream, next to the simulator's
prediction of the same plan.

Steps of :func:`record_run` (on a :class:`hios.runtime.local.executor.HiosModule`):

1. Hook the module's segment runner for the duration of the recording (nothing else changes; the
   hook is removed afterwards, also on error).
2. Issue ``calls`` forward passes through the module's stream program (the multi-stream,
   event-synchronised launch path; a graph-mode module is issued the same way, its CUDA graph is
   not replayed here).  Each segment is timed where it runs:

   * CPU logical devices (each stream a thread): ``time.perf_counter`` before and after the
     segment, in its own thread;
   * CUDA: a timing :class:`torch.cuda.Event` recorded on the segment's stream before and after it
     (so the interval is when that stream ran it on the GPU, waits included), and a
     ``torch.profiler.record_function`` range ``hios/seg<id>`` around its launches.

   Times are relative to the start of each call.
3. CUDA with ``kernels=True``: the calls run under ``torch.profiler`` (CPU and CUDA activity).
   Every kernel is attributed to the segment whose ``hios/seg<id>`` range on the launching thread
   encloses the runtime call that launched it (same correlation id).  Graph-mode modules are also
   profiled over ``calls`` replays of their CUDA graph: replayed kernels have no CPU launch of
   their own (one ``cudaGraphLaunch`` launches all), so they are recorded per stream with
   ``segment = None``; the attributed stream-mode pass is what names them.
4. :func:`segment_table` compares each segment's median measured duration with the simulator's
   (first operator's start to last operator's end in the simulated schedule) and with its cost
   alone; :func:`chrome_trace` lays the last call's measured segments, its kernels and the
   simulator's own trace (:func:`hios.viz.chrome_trace`, shifted to separate processes) into one
   Chrome/Perfetto JSON; :func:`write_trace` writes it atomically after :func:`check_writable`.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import HiosError
from ...frontend.model_checks import as_inputs

__all__ = ["KERNEL_PID", "KernelRecord", "RunTrace", "SIM_PID", "SegmentRecord", "attribute_kernels",
           "check_writable", "chrome_trace", "format_table", "record_run", "segment_table",
           "simulated_segments", "trace_plan", "write_trace"]

#: Chrome-trace process ids: measured segments on ``d``, kernels on ``KERNEL_PID + d``, the
#: simulator's GPU ``g`` on ``SIM_PID + g``.
KERNEL_PID = 100
SIM_PID = 200


@dataclass(frozen=True)
class SegmentRecord:
    step: int          # step id in the ExecProgram
    device: int        # logical device
    stream: int
    mem: str           # physical device (memory space)
    call: int
    start_ms: float    # from the start of the call
    end_ms: float


@dataclass(frozen=True)
class KernelRecord:
    name: str
    device: int        # CUDA device index
    stream: int        # CUDA stream id as the profiler reports it
    start_ms: float    # from the first kernel of the recording
    end_ms: float
    segment: int | None
    source: str        # "stream" (attributed stream-mode pass) or "graph" (CUDA-graph replay)


@dataclass
class RunTrace:
    segments: list[SegmentRecord]
    calls: int
    clock: str                      # "wall" (CPU threads) or "cuda_events"
    mode: str                       # the module's mode (the recording itself issues streams)
    kernels: list[KernelRecord] = field(default_factory=list)
    note: str = ""

    def durations(self) -> dict[int, list[float]]:
        """Step id -> measured durations (ms), one per call."""
        out: dict[int, list[float]] = {}
        for r in self.segments:
            out.setdefault(r.step, []).append(r.end_ms - r.start_ms)
        return out

    def median_ms(self) -> dict[int, float]:
        return {k: statistics.median(v) for k, v in self.durations().items()}

    def call_ms(self) -> list[float]:
        """Span of each call: first segment start (0 = call start) to last segment end."""
        ends: dict[int, float] = {}
        for r in self.segments:
            ends[r.call] = max(ends.get(r.call, 0.0), r.end_ms)
        return [ends[c] for c in sorted(ends)]

    def last_call(self) -> list[SegmentRecord]:
        last = max((r.call for r in self.segments), default=-1)
        return [r for r in self.segments if r.call == last]

    def to_dict(self) -> dict:
        return {"calls": self.calls, "clock": self.clock, "mode": self.mode, "note": self.note,
                "segments": [asdict(r) for r in self.segments], "kernels": [asdict(k) for k in self.kernels]}


# -- step 1-2: record -------------------------------------------------------------------------------

class _Recorder:
    """The segment hook: times each segment on its thread (CPU) or its stream (CUDA)."""

    def __init__(self, module, cuda: bool):
        self.module = module
        self.run = module._run_segment
        self.cuda = cuda
        self.call = 0
        self.t0 = 0.0
        self.ref = None
        self.wall: list[SegmentRecord] = []
        self.events: list[tuple] = []  # (step, call, reference event, start event, end event, memory)
        self.lock = threading.Lock()

    def start_call(self, call: int) -> None:
        self.call = call
        if self.cuda:
            import torch
            self.ref = torch.cuda.Event(enable_timing=True)
            self.ref.record()
        else:
            self.t0 = time.perf_counter()

    def __call__(self, seg, env, first):
        st = seg.step
        if not self.cuda:
            t0 = time.perf_counter()
            self.run(seg, env, first)
            t1 = time.perf_counter()
            rec = SegmentRecord(st.id, st.device, st.stream, seg.mem, self.call,
                                (t0 - self.t0) * 1e3, (t1 - self.t0) * 1e3)
            with self.lock:
                self.wall.append(rec)
            return
        import torch
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        with torch.profiler.record_function(f"hios/seg{st.id}"):
            self.run(seg, env, first)
        b.record()
        self.events.append((st, self.call, self.ref, a, b, seg.mem))

    def records(self) -> list[SegmentRecord]:
        if not self.cuda:
            return sorted(self.wall, key=lambda r: (r.call, r.start_ms))
        import torch
        torch.cuda.synchronize()
        out = [SegmentRecord(st.id, st.device, st.stream, mem, call, ref.elapsed_time(a), ref.elapsed_time(b))
               for st, call, ref, a, b, mem in self.events]
        return sorted(out, key=lambda r: (r.call, r.start_ms))


def _issue_calls(module, inputs: tuple, calls: int, rec: _Recorder) -> None:
    module._run_segment = rec
    try:
        for c in range(calls):
            rec.start_call(c)
            module._issue(inputs)
    finally:
        del module._run_segment


def record_run(module, inputs, calls: int = 5, warmup: int = 1, kernels: bool = False) -> RunTrace:
    """Record ``calls`` forward passes of ``module`` (a compiled plan) on ``inputs``."""
    import torch
    if calls < 1:
        raise HiosError(f"trace calls must be >= 1, got {calls}")
    inputs = as_inputs(inputs)
    module._check_inputs(inputs)
    cuda = bool(module.is_cuda)
    with torch.no_grad():
        for _ in range(warmup):
            module._issue(inputs)
        rec = _Recorder(module, cuda)
        kern: list[KernelRecord] = []
        if cuda and kernels:
            kern = _profile_kernels(module, inputs, calls, rec)
        else:
            _issue_calls(module, inputs, calls, rec)
    note = ("CPU logical devices: each stream a thread, wall-clock intervals" if not cuda else
            "stream-mode issue timed by CUDA events on each segment's stream")
    return RunTrace(rec.records(), calls, "cuda_events" if cuda else "wall", module.mode, kern, note)


# -- step 3: kernels (CUDA) ---------------------------------------------------------------------------

def _profile_kernels(module, inputs: tuple, calls: int, rec: _Recorder) -> list[KernelRecord]:
    import torch
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stream.json")
        with profile(activities=acts) as prof:
            _issue_calls(module, inputs, calls, rec)
            torch.cuda.synchronize()
        prof.export_chrome_trace(path)
        out = attribute_kernels(json.loads(Path(path).read_text()), "stream")
        if getattr(module, "_graph", None) is not None:
            path = os.path.join(tmp, "graph.json")
            with profile(activities=acts) as prof:
                for _ in range(calls):
                    module.replay()
                torch.cuda.synchronize()
            prof.export_chrome_trace(path)
            out += attribute_kernels(json.loads(Path(path).read_text()), "graph")
    return out


def attribute_kernels(trace: dict, source: str) -> list[KernelRecord]:
    """Kernels of a torch.profiler Chrome trace, each attributed to the ``hios/seg<id>`` range of
    its launching thread that encloses its launch (matched by correlation id); times from the first
    kernel.  Pure: works on the exported JSON."""
    evs = trace.get("traceEvents", trace) if isinstance(trace, dict) else trace
    ranges: dict[Any, list[tuple[float, float, int]]] = {}
    launches: dict[Any, tuple[Any, float]] = {}
    kernels = []
    for e in evs:
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        cat = str(e.get("cat", "")).lower()
        name = str(e.get("name", ""))
        args = e.get("args") or {}
        if cat == "user_annotation" and name.startswith("hios/seg"):
            try:
                step = int(name[len("hios/seg"):])
            except ValueError:
                continue
            ranges.setdefault((e.get("pid"), e.get("tid")), []).append(
                (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), step))
        elif cat in ("cuda_runtime", "cuda_driver") and "correlation" in args:
            launches[args["correlation"]] = ((e.get("pid"), e.get("tid")), float(e["ts"]))
        elif cat == "kernel":
            kernels.append(e)
    t_first = min((float(k["ts"]) for k in kernels), default=0.0)
    out = []
    for k in kernels:
        args = k.get("args") or {}
        seg = None
        launch = launches.get(args.get("correlation"))
        if launch is not None:
            tid, ts = launch
            inside = [r for r in ranges.get(tid, []) if r[0] <= ts <= r[1]]
            if inside:
                seg = min(inside, key=lambda r: r[1] - r[0])[2]  # the innermost range
        t0 = float(k["ts"]) - t_first
        out.append(KernelRecord(str(k.get("name", "")), int(args.get("device", k.get("pid", 0)) or 0),
                                int(args.get("stream", k.get("tid", 0)) or 0), t0 / 1e3,
                                (t0 + float(k.get("dur", 0))) / 1e3, seg, source))
    return out


# -- step 4: compare, lay out, write ------------------------------------------------------------------

def simulated_segments(program, graph, result) -> dict[int, tuple[float, float]]:
    """Step id -> (start, end) in the simulation: its first operator's start to its last one's end."""
    out = {}
    for st in program.segments:
        idx = [graph.index[n] for n in st.ops]
        out[st.id] = (min(result.start[i] for i in idx), max(result.end[i] for i in idx))
    return out


def segment_table(trace: RunTrace, program, graph, result=None) -> list[dict]:
    """One row per segment: cost alone (sum of its operators' costs), simulated and measured
    (median over calls) duration, measured / predicted; plus a last row for the whole call."""
    med = trace.median_ms()
    sim = simulated_segments(program, graph, result) if result is not None else {}
    rows = []
    for st in program.segments:
        alone = sum(graph.ops[graph.index[n]].cost for n in st.ops)
        pred = sim[st.id][1] - sim[st.id][0] if st.id in sim else None
        meas = med.get(st.id)
        rows.append({"segment": st.id, "device": st.device, "stream": st.stream, "ops": len(st.ops),
                     "first": st.ops[0], "last": st.ops[-1], "alone_ms": alone, "predicted_ms": pred,
                     "measured_ms": meas,
                     "measured_over_predicted": meas / pred if meas is not None and pred else None})
    calls = trace.call_ms()
    whole = statistics.median(calls) if calls else None
    pred = result.latency if result is not None else None
    rows.append({"segment": "call", "device": None, "stream": None, "ops": len(graph.ops), "first": "",
                 "last": "", "alone_ms": graph.total_work(), "predicted_ms": pred, "measured_ms": whole,
                 "measured_over_predicted": whole / pred if whole is not None and pred else None})
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows of :func:`segment_table` as text (with the segments' times measured alone, when
    :func:`trace_plan` added them)."""
    def f(v):
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
    extra = any("alone_measured_ms" in r for r in rows)
    head = f"{'segment':>8} {'dev':>3} {'str':>3} {'ops':>4} {'alone ms':>9} " + \
        (f"{'alone meas':>10} " if extra else "") + f"{'pred ms':>9} {'meas ms':>9} {'meas/pred':>9}  operators"
    lines = [head]
    for r in rows:
        ops = f"{r['first']}..{r['last']}" if r["first"] else "(whole call)"
        lines.append(f"{f(r['segment']):>8} {f(r['device']):>3} {f(r['stream']):>3} {r['ops']:>4} "
                     f"{f(r['alone_ms']):>9} " + (f"{f(r.get('alone_measured_ms')):>10} " if extra else "") +
                     f"{f(r['predicted_ms']):>9} {f(r['measured_ms']):>9} "
                     f"{f(r['measured_over_predicted']):>9}  {ops}")
    return "\n".join(lines)


def chrome_trace(trace: RunTrace, program, graph, schedule=None, result=None, extra: dict | None = None) -> dict:
    """Chrome/Perfetto trace JSON: the last recorded call's segments (process per logical device,
    thread per stream), its kernels (if recorded) and the simulator's trace of the same plan."""
    events: list[dict] = []
    by_id = {st.id: st for st in program.segments}
    sim = simulated_segments(program, graph, result) if result is not None else {}
    med = trace.median_ms()
    devices = sorted({r.device for r in trace.segments})
    for d in devices:
        mem = next(r.mem for r in trace.segments if r.device == d)
        events.append({"ph": "M", "name": "process_name", "pid": d, "args": {"name": f"measured · device {d} ({mem})"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": d, "args": {"sort_index": d}})
    for d, s in sorted({(r.device, r.stream) for r in trace.segments}):
        events.append({"ph": "M", "name": "thread_name", "pid": d, "tid": s, "args": {"name": f"stream {s}"}})
    for r in trace.last_call():
        st = by_id[r.step]
        pred = sim[r.step][1] - sim[r.step][0] if r.step in sim else None
        events.append({"ph": "X", "name": f"seg {r.step}: {st.ops[0]}" + (f"..{st.ops[-1]}" if len(st.ops) > 1 else ""),
                       "cat": "segment", "pid": r.device, "tid": r.stream, "ts": r.start_ms * 1e3,
                       "dur": (r.end_ms - r.start_ms) * 1e3,
                       "args": {"ops": list(st.ops), "measured_median_ms": med.get(r.step), "predicted_ms": pred}})
    for k in trace.kernels:
        pid = KERNEL_PID + k.device + (50 if k.source == "graph" else 0)
        events.append({"ph": "X", "name": k.name, "cat": f"kernel/{k.source}", "pid": pid, "tid": k.stream,
                       "ts": k.start_ms * 1e3, "dur": (k.end_ms - k.start_ms) * 1e3, "args": {"segment": k.segment}})
    for pid in sorted({KERNEL_PID + k.device + (50 if k.source == "graph" else 0) for k in trace.kernels}):
        what = "graph replay" if pid - KERNEL_PID >= 50 else "stream issue"
        events.append({"ph": "M", "name": "process_name", "pid": pid,
                       "args": {"name": f"kernels ({what}) · cuda:{(pid - KERNEL_PID) % 50}"}})
    if schedule is not None and result is not None:
        from ...viz import chrome_trace as sim_trace
        for e in sim_trace(graph, schedule, result)["traceEvents"]:
            e = dict(e)
            e["pid"] = SIM_PID + e["pid"]
            if e.get("name") == "process_name":
                e["args"] = {"name": f"simulated · {e['args']['name']}"}
            events.append(e)
    out = {"traceEvents": events, "displayTimeUnit": "ms",
           "otherData": {"graph": graph.name, "calls": trace.calls, "clock": trace.clock, "note": trace.note}}
    if extra:
        out.update(extra)
    return out


def check_writable(path: str | Path) -> Path:
    """Refuse (one line) a trace path that cannot be written, before anything runs
    (:func:`hios.outputs.check_output`)."""
    from ...outputs import JSON, check_output
    return check_output(path, JSON, "trace")


def write_trace(path: str | Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically (:func:`hios.outputs.atomic_write_text`)."""
    from ...outputs import atomic_write_text
    atomic_write_text(check_writable(path), json.dumps(data), "trace")


# -- one call for the runtime: record, simulate, write ------------------------------------------------

def trace_plan(module, inputs, plan, path: str | Path | None = None, calls: int = 10,
               time_alone: bool = True) -> dict:
    """Record ``calls`` runs of a compiled ``plan`` (:func:`record_run`; kernels too on CUDA), time
    its segments alone as built (``time_alone``, :mod:`hios.runtime.measure.segment_profile`), simulate the
    plan under its own stage model, and write the Chrome trace with the run record embedded
    (``"hiosRun"``, what ``hios profile --from-run`` reads) to ``path`` if given.  Returns
    ``{"table": rows, "record": run record, "path": path}``."""
    from ...cost.feedback import run_record, runtime_settings
    from ...simulator import Simulator
    from ...cost.timing import precision_state
    from .segment_profile import time_segments
    if path is not None:
        check_writable(path)
    inputs = as_inputs(inputs)
    dev = module.devices[0]
    inputs = tuple(t.to(dev) if hasattr(t, "to") else t for t in inputs)
    alone = time_segments(module, inputs) if time_alone else None
    tr = record_run(module, inputs, calls=calls, kernels=bool(module.is_cuda))
    graph, schedule = plan.graph, plan.schedule
    res = Simulator(graph, plan.machine, plan.stage_model_object()).simulate(schedule) \
        if graph.total_work() > 0 else None
    settings = runtime_settings(module.kernels, module.channels_last, precision_state(),
                                "cuda" if module.is_cuda else "cpu")
    rec = run_record(graph, module.program, tr, settings, alone)
    rows = segment_table(tr, module.program, graph, res)
    for r in rows:
        if alone and isinstance(r["segment"], int):
            r["alone_measured_ms"] = alone.get(r["segment"])
    if path is not None:
        write_trace(path, chrome_trace(tr, module.program, graph, schedule, res, extra={"hiosRun": rec}))
    return {"table": rows, "record": rec, "path": str(path) if path is not None else None}
