"""Real-run trace: what a compiled plan actually ran, per device and stream, next to the simulator's
prediction of the same plan.

Steps of :func:`record_run` (on a :class:`hios.runtime.local.executor.HiosModule`):

1. Hook the module's segment runner for the duration of the recording (nothing else changes; the
   hook is removed afterwards, also on error).
2. Issue ``calls`` forward passes through the module's stream program (the multi-stream,
   event-synchronised launch path), without the profiler.  Each segment is timed where it runs:

   * CPU logical devices (each stream a thread): ``time.perf_counter`` before and after the
     segment, in its own thread;
   * CUDA: a timing :class:`torch.cuda.Event` recorded on the segment's stream before and after it,
     a ``torch.profiler.record_function`` range ``hios/seg<id>`` around its launches and a range
     ``hios/call<c>`` around each call.

   Times are relative to the start of each call.  For a stream-mode module (and on CPU) these
   are the plan's times.
3. CUDA with ``kernels=True``: ``calls`` more calls run under ``torch.profiler`` (CPU and CUDA
   activity; its warnings are kept out of the user's way, :func:`_profiling`).  Every kernel
   (memory copies and sets too) is attributed to the segment whose ``hios/seg<id>`` range on the
   launching thread encloses the runtime call that launched it (same correlation id), and to the
   call whose ``hios/call<c>`` range does (:func:`attribute_kernels`).
4. A graph-mode module runs its CUDA graph, not the stream-mode issue: the profiled stream-mode
   pass of step 3 (on the inputs the graph was captured on) then only teaches each segment's
   kernel sequence, and ``calls`` replays of the graph are profiled after one warm-up replay
   (each in a ``hios/call<c>`` range: its kernels carry the ``cudaGraphLaunch``'s correlation
   id).  :mod:`hios.runtime.measure.replay_attribution` attributes the replayed kernels to segments;
   each segment's start and end are those of its first and last kernel, relative to the
   replay's first kernel (:func:`replay_segments`).  These become the trace's segments
   (``clock="graph_replay_kernels"``), with the coverage of the attribution; the stream-mode
   figures of step 2 are kept apart, labelled (``stream_segments``).  If the replay cannot be
   attributed, the trace says why and keeps the stream-mode figures, labelled as such.
5. :func:`segment_table` compares each segment's median measured duration with the simulator's
   (first operator's start to last operator's end in the simulated schedule) and with its cost
   alone; :func:`chrome_trace` lays the last call's measured segments, its kernels and the
   simulator's own trace (:func:`hios.viz.chrome_trace`, shifted to separate processes) into one
   Chrome/Perfetto JSON; :func:`write_trace` writes it atomically after :func:`check_writable`.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import HiosError
from ...frontend.model_checks import as_inputs

__all__ = ["KERNEL_PID", "KernelRecord", "ReplayResult", "RunTrace", "SIM_PID", "SegmentRecord",
           "attribute_kernels", "check_writable", "chrome_trace", "fed_back_graph", "format_table", "profile_calls",
           "record_run", "replay_segments", "segment_table", "simulated_segments", "trace_plan", "write_trace"]

#: Chrome-trace process ids: measured segments on ``d``, kernels on ``KERNEL_PID + d`` (the
#: stream-mode pass) or ``KERNEL_PID + 50 + d`` (the graph replay), the simulator's GPU ``g`` on
#: ``SIM_PID + g``.
KERNEL_PID = 100
SIM_PID = 200
#: Below this share of the replay's kernel time attributed to segments, the replay's segment
#: times are not used (the stream-mode figures are, labelled).
MIN_ATTRIBUTED = 0.5
#: GPU activities that run on a stream: kernels, memory copies and sets.
GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


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
    start_ms: float    # from the first kernel of the recording (of its source)
    end_ms: float
    segment: int | None
    source: str        # "stream" (the stream-mode pass) or "graph" (CUDA-graph replay)
    call: int | None = None   # the call (or replay) that ran it
    shape: str = ""           # launch shape (grid and block), when the profiler gives it
    outside: bool = False     # work outside every segment (the input copies before the fork)
    blocks_per_sm: float | None = None   # thread blocks per SM of the launch, when the profiler gives it
    occupancy: float | None = None       # the profiler's estimated achieved occupancy, 0..1


@dataclass
class RunTrace:
    segments: list[SegmentRecord]
    calls: int
    clock: str                      # "wall" (CPU threads), "cuda_events" (stream issue) or
    #                                 "graph_replay_kernels" (segments from the replay's kernels)
    mode: str                       # the module's mode
    kernels: list[KernelRecord] = field(default_factory=list)
    note: str = ""
    #: graph mode: the stream-mode pass that taught each segment's kernels (not the plan's timing)
    stream_segments: list[SegmentRecord] = field(default_factory=list)
    coverage: Any = None            # hios.runtime.measure.replay_attribution.Coverage of the replay, if any

    @property
    def measured(self) -> str:
        """What ``segments`` measured, in words."""
        return {"wall": "the stream issue on CPU threads, wall clock",
                "cuda_events": "the stream-mode issue, CUDA events on each segment's stream",
                "graph_replay_kernels": f"{self.calls} CUDA-graph replay(s), each segment from its first kernel's "
                                        "start to its last kernel's end"}.get(self.clock, self.clock)

    def durations(self) -> dict[int, list[float]]:
        """Step id -> measured durations (ms), one per call."""
        return _durations(self.segments)

    def median_ms(self) -> dict[int, float]:
        return {k: statistics.median(v) for k, v in self.durations().items()}

    def call_ms(self) -> list[float]:
        """Span of each call: first segment start (0 = call start) to last segment end."""
        return _call_ms(self.segments)

    def last_call(self) -> list[SegmentRecord]:
        last = max((r.call for r in self.segments), default=-1)
        return [r for r in self.segments if r.call == last]

    def to_dict(self) -> dict:
        return {"calls": self.calls, "clock": self.clock, "mode": self.mode, "note": self.note,
                "measured": self.measured, "segments": [asdict(r) for r in self.segments],
                "kernels": [asdict(k) for k in self.kernels],
                "stream_segments": [asdict(r) for r in self.stream_segments],
                "coverage": self.coverage.to_dict() if self.coverage is not None else None}


def _durations(records) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in records:
        out.setdefault(r.step, []).append(r.end_ms - r.start_ms)
    return out


def _call_ms(records) -> list[float]:
    ends: dict[int, float] = {}
    for r in records:
        ends[r.call] = max(ends.get(r.call, 0.0), r.end_ms)
    return [ends[c] for c in sorted(ends)]


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


def _call_range(cuda: bool, c: int):
    if not cuda:
        return contextlib.nullcontext()
    import torch
    return torch.profiler.record_function(f"hios/call{c}")


def _issue_calls(module, inputs: tuple, calls: int, rec: _Recorder) -> None:
    module._run_segment = rec
    try:
        for c in range(calls):
            with _call_range(rec.cuda, c):
                rec.start_call(c)
                module._issue(inputs)
    finally:
        del module._run_segment


def record_run(module, inputs, calls: int = 5, warmup: int = 1, kernels: bool = False) -> RunTrace:
    """Record ``calls`` forward passes of ``module`` (a compiled plan) on ``inputs``: its stream
    issue, or with ``kernels`` on CUDA its kernels too and, in graph mode, its graph replays."""
    import torch
    if calls < 1:
        raise HiosError(f"trace calls must be >= 1, got {calls}")
    inputs = as_inputs(inputs)
    module._check_inputs(inputs)
    cuda = bool(module.is_cuda)
    prof = _Profiled()
    with torch.no_grad():
        for _ in range(warmup):
            module._issue(inputs)
        rec = _Recorder(module, cuda)
        _issue_calls(module, inputs, calls, rec)  # timed without the profiler's overhead
        if cuda and kernels:  # its own pass: the profiler slows the issue down many times
            prof = _profile_kernels(module, inputs, calls, _Recorder(module, cuda))
    issued = rec.records()
    if not cuda:
        return RunTrace(issued, calls, "wall", module.mode, [], "CPU logical devices: each stream a thread, "
                        "wall-clock intervals")
    if prof.replay is not None:
        segs, kern = prof.replay
        return RunTrace(segs, calls, "graph_replay_kernels", module.mode, prof.kernels + kern,
                        "; ".join(["segments measured in the graph replay; the same program issued in stream mode "
                                   "(stream_segments, kept apart) is not the plan's timing"] + prof.notes),
                        stream_segments=issued, coverage=prof.coverage)
    note = "stream-mode issue timed by CUDA events on each segment's stream"
    if getattr(module, "_graph", None) is not None:
        note += (" (NOT the CUDA-graph replay that runs the plan" +
                 (": " + "; ".join(prof.notes) if prof.notes else ": kernels not profiled") + ")")
    elif prof.notes:
        note += "; " + "; ".join(prof.notes)
    return RunTrace(issued, calls, "cuda_events", module.mode, prof.kernels, note, coverage=prof.coverage)


# -- step 3-4: kernels (CUDA) ---------------------------------------------------------------------------

@dataclass
class _Profiled:
    kernels: list[KernelRecord] = field(default_factory=list)
    replay: tuple[list[SegmentRecord], list[KernelRecord]] | None = None
    coverage: Any = None
    notes: list[str] = field(default_factory=list)


#: Profiler warnings that say nothing about this recording (each profile here is one cycle).
_EXPECTED_PROFILER_WARNINGS = ("Profiler clears events at the end of each cycle",)


def _expected_warning(w) -> bool:
    return any(m in str(w.message) for m in _EXPECTED_PROFILER_WARNINGS)


def _is_profiler_warning(w) -> bool:
    path = str(w.filename).replace(os.sep, "/")
    return "/torch/profiler/" in path or "/torch/autograd/profiler" in path or _expected_warning(w)


@contextlib.contextmanager
def _profiling(notes: list[str]):
    """Run a ``torch.profiler`` recording with its Python warnings caught: the expected ones
    (:data:`_EXPECTED_PROFILER_WARNINGS`) dropped, any other profiler warning kept in ``notes``
    (the trace's note), other warnings passed on."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if not _is_profiler_warning(w):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif not _expected_warning(w) and f"profiler: {w.message}" not in notes:
            notes.append(f"profiler: {w.message}")


def _profile(body, path: str, notes: list[str]) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile
    with _profiling(notes):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            body()
            torch.cuda.synchronize()
        prof.export_chrome_trace(path)
    return json.loads(Path(path).read_text())


def _profile_kernels(module, inputs: tuple, calls: int, rec: _Recorder) -> _Profiled:
    """Steps 3-4: the stream-mode calls under the profiler, then (graph mode) the graph's replays.
    Attribution of the replay never fails the run: what went wrong goes into the notes."""
    out = _Profiled()
    graph = getattr(module, "_graph", None) is not None
    if graph:  # the inputs the graph was captured on: their copies into the segments' layout are in it too
        inputs = tuple(module._static_in)
    with tempfile.TemporaryDirectory() as tmp:
        data = _profile(lambda: _issue_calls(module, inputs, calls, rec), os.path.join(tmp, "stream.json"), out.notes)
        out.kernels = attribute_kernels(data, "stream")
        if not graph:
            return out

        def replays():
            for c in range(calls):
                with _call_range(True, c):
                    module.replay()
        try:
            _warm_replay(module)  # a graph's first replay may upload it: not the plan's time
            data = _profile(replays, os.path.join(tmp, "graph.json"), out.notes)
            replayed = attribute_kernels(data, "graph")
        except Exception as e:  # noqa: BLE001 - the trace says so; the run goes on
            first = str(e).splitlines()[0] if str(e) else ""
            out.notes.append(f"graph replay not profiled: {type(e).__name__}: {first}")
            return out
    try:
        res = replay_segments(module.program, module.devices, out.kernels, replayed, calls)
    except Exception as e:  # noqa: BLE001 - the trace says so; the run goes on
        res = ReplayResult([], replayed, None, f"graph replay not attributed: {type(e).__name__}: {e}")
    out.coverage = res.coverage
    out.notes += [n for n in (res.why_not, res.caveat) if n]
    if res.why_not:
        out.kernels += res.kernels
    else:
        out.replay = (res.segments, res.kernels)
    return out


def profile_calls(fn, inputs: tuple, calls: int = 5, source: str = "calls",
                  notes: list[str] | None = None) -> list[KernelRecord]:
    """The kernels (memory copies and sets too) of ``calls`` calls of ``fn(*inputs)`` on CUDA, each
    call in a ``hios/call<c>`` range (after one untimed call), as :func:`attribute_kernels` reads
    them: any callable, e.g. a ``torch.compile``d model, whose CUDA-graph replays are then tied to
    their call through the launch's correlation id.  Profiler warnings go to ``notes``."""
    import torch
    if calls < 1:
        raise HiosError(f"profiled calls must be >= 1, got {calls}")
    notes = [] if notes is None else notes

    def body():
        for c in range(calls):
            with _call_range(True, c):
                fn(*inputs)
    with torch.no_grad():
        fn(*inputs)
        torch.cuda.synchronize()
        with tempfile.TemporaryDirectory() as tmp:
            data = _profile(body, os.path.join(tmp, "calls.json"), notes)
    return attribute_kernels(data, source)


def _warm_replay(module) -> None:
    import torch
    module.replay()
    torch.cuda.synchronize()


def _kernel_shape(args: dict) -> str:
    grid, block = args.get("grid"), args.get("block")
    if grid is None and block is None:
        return ""
    return f"grid {grid} block {block}"


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _percent(v) -> float | None:
    x = _number(v)
    return None if x is None else x / 100.0


def attribute_kernels(trace: dict, source: str) -> list[KernelRecord]:
    """Kernels (and memory copies and sets) of a torch.profiler Chrome trace, each attributed to
    the ``hios/seg<id>`` range of its launching thread that encloses its launch (matched by
    correlation id) and to the call whose ``hios/call<c>`` range does; times from the first
    kernel.  Pure: works on the exported JSON."""
    evs = trace.get("traceEvents", trace) if isinstance(trace, dict) else trace
    ranges: dict[Any, list[tuple[float, float, int]]] = {}
    call_ranges: dict[Any, list[tuple[float, float, int]]] = {}
    launches: dict[Any, tuple[Any, float]] = {}
    kernels = []
    for e in evs:
        if not isinstance(e, dict) or e.get("ph") != "X":
            continue
        cat = str(e.get("cat", "")).lower()
        name = str(e.get("name", ""))
        args = e.get("args") or {}
        if cat == "user_annotation" and name.startswith(("hios/seg", "hios/call")):
            into, prefix = (ranges, "hios/seg") if name.startswith("hios/seg") else (call_ranges, "hios/call")
            try:
                k = int(name[len(prefix):])
            except ValueError:
                continue
            into.setdefault((e.get("pid"), e.get("tid")), []).append(
                (float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), k))
        elif cat in ("cuda_runtime", "cuda_driver") and "correlation" in args:
            launches[args["correlation"]] = ((e.get("pid"), e.get("tid")), float(e["ts"]))
        elif cat in GPU_CATEGORIES:
            kernels.append(e)

    def enclosing(table, launch):
        if launch is None:
            return None
        tid, ts = launch
        inside = [r for r in table.get(tid, []) if r[0] <= ts <= r[1]]
        return min(inside, key=lambda r: r[1] - r[0])[2] if inside else None  # the innermost range

    t_first = min((float(k["ts"]) for k in kernels), default=0.0)
    out = []
    for k in sorted(kernels, key=lambda k: float(k["ts"])):
        args = k.get("args") or {}
        launch = launches.get(args.get("correlation"))
        seg = enclosing(ranges, launch)
        t0 = float(k["ts"]) - t_first
        out.append(KernelRecord(str(k.get("name", "")), int(args.get("device", k.get("pid", 0)) or 0),
                                int(args.get("stream", k.get("tid", 0)) or 0), t0 / 1e3,
                                (t0 + float(k.get("dur", 0))) / 1e3, seg, source, enclosing(call_ranges, launch),
                                _kernel_shape(args), outside=seg is None and launch is not None,
                                blocks_per_sm=_number(args.get("blocks per SM")),
                                occupancy=_percent(args.get("est. achieved occupancy %"))))
    return out


def _by_call(kernels: list[KernelRecord], calls: int) -> tuple[dict[int, list[KernelRecord]], str]:
    """Kernels grouped per call; when the profiler linked none to its call (no launch found),
    ``calls`` equal runs of consecutive kernels, said so in the returned note."""
    known = [k for k in kernels if k.call is not None]
    if known:
        out: dict[int, list[KernelRecord]] = {}
        for k in known:
            out.setdefault(k.call, []).append(k)
        lost = len(kernels) - len(known)
        return out, (f"{lost} kernel(s) not linked to a replay" if lost else "")
    if calls > 0 and kernels and len(kernels) % calls == 0:
        n = len(kernels) // calls
        ks = sorted(kernels, key=lambda k: k.start_ms)
        return {c: ks[c * n:(c + 1) * n] for c in range(calls)}, "replays told apart by kernel count"
    return {0: list(kernels)}, "replays not told apart"


def _expected(stream: list[KernelRecord], sig) -> tuple[dict[int, tuple], tuple]:
    """Each segment's kernel signatures in the stream-mode pass (the commonest sequence over its
    calls), and the work outside segments (likewise)."""
    per: dict[tuple, list] = {}
    for k in sorted(stream, key=lambda k: k.start_ms):
        key = (k.call, -1 if k.segment is None else k.segment)
        per.setdefault(key, []).append(sig(k))
    votes: dict[int, Counter] = {}
    for (call, seg), sigs in per.items():
        votes.setdefault(seg, Counter())[tuple(sigs)] += 1
    common = {seg: c.most_common(1)[0][0] for seg, c in votes.items()}
    return {s: v for s, v in common.items() if s >= 0}, common.get(-1, ())


@dataclass
class ReplayResult:
    """What :func:`replay_segments` found: segment records, the replayed kernels attributed, the
    coverage, why the replay's times cannot be used ("" when they can) and a caveat ("" if none)."""

    segments: list[SegmentRecord]
    kernels: list[KernelRecord]
    coverage: Any
    why_not: str = ""
    caveat: str = ""


def replay_segments(program, devices: list[str], stream: list[KernelRecord], replayed: list[KernelRecord],
                    calls: int) -> ReplayResult:
    """Step 4: the graph replay's segments from the stream-mode pass's kernels (``stream``,
    attributed by :func:`attribute_kernels`) and the replay's (``replayed``).  Signatures are
    names with launch shapes, or names alone when those attribute more; ``why_not`` is set when
    too little is attributed to use the replay's times."""
    from .replay_attribution import ReplayKernel, attribute_replay, coverage, lanes_of, segment_dependencies
    if not replayed:
        return ReplayResult([], [], None, "graph replay not attributed: the profiler recorded no kernel of the "
                                          "replay")
    if not any(k.segment is not None for k in stream):
        return ReplayResult([], replayed, None, "graph replay not attributed: no kernel of the stream-mode pass "
                                                "was tied to a segment")
    groups, how = _by_call(replayed, calls)
    deps = segment_dependencies(program)
    best = None
    for sig in ((lambda k: (k.name, k.shape)), (lambda k: k.name)):
        seqs, outside = _expected(stream, sig)
        lanes = lanes_of(program, seqs, outside)
        results = {c: attribute_replay(lanes, [ReplayKernel(sig(k), k.start_ms, k.end_ms, k.stream) for k in ks],
                                       deps) for c, ks in groups.items()}
        cov = coverage(list(results.values()))
        if best is None or cov.attributed > best[1].attributed:
            best = (results, cov)
    results, cov = best
    steps = {st.id: st for st in program.segments}
    records, kern = [], []
    for c, ks in groups.items():
        origin = min(k.start_ms for k in ks)
        res = results[c]
        for seg, sp in res.spans.items():
            st = steps[seg]
            records.append(SegmentRecord(seg, st.device, st.stream, devices[st.device], c,
                                         sp.start - origin, sp.end - origin))
        for k, owner in zip(ks, res.owner):
            kern.append(KernelRecord(k.name, k.device, k.stream, k.start_ms, k.end_ms,
                                     owner if isinstance(owner, int) else None, "graph", c, k.shape,
                                     outside=owner is not None and not isinstance(owner, int)))
    records.sort(key=lambda r: (r.call, r.start_ms))
    kern.sort(key=lambda k: k.start_ms)
    why = ""
    if cov.attributed < MIN_ATTRIBUTED:
        why = (f"graph replay not attributed: only {100 * cov.attributed:.1f} % of its kernel time matched the "
               "segments' kernels")
    return ReplayResult(records, kern, cov, why, how)


# -- step 5: compare, lay out, write ------------------------------------------------------------------

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


def format_table(rows: list[dict], measured: str | None = None) -> str:
    """The rows of :func:`segment_table` as text (with the segments' times measured alone, when
    :func:`trace_plan` added them), under a line saying what was ``measured`` when given."""
    def f(v):
        return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
    extra = any("alone_measured_ms" in r for r in rows)
    head = f"{'segment':>8} {'dev':>3} {'str':>3} {'ops':>4} {'alone ms':>9} " + \
        (f"{'alone meas':>10} " if extra else "") + f"{'pred ms':>9} {'meas ms':>9} {'meas/pred':>9}  operators"
    lines = ([f"meas ms: {measured}"] if measured else []) + [head]
    for r in rows:
        ops = f"{r['first']}..{r['last']}" if r["first"] else "(whole call)"
        lines.append(f"{f(r['segment']):>8} {f(r['device']):>3} {f(r['stream']):>3} {r['ops']:>4} "
                     f"{f(r['alone_ms']):>9} " + (f"{f(r.get('alone_measured_ms')):>10} " if extra else "") +
                     f"{f(r['predicted_ms']):>9} {f(r['measured_ms']):>9} "
                     f"{f(r['measured_over_predicted']):>9}  {ops}")
    return "\n".join(lines)


def _call_origins(kernels: list[KernelRecord]) -> dict[tuple[str, int | None], float]:
    """(source, call) -> its first kernel's start: the origin of that call's times."""
    out: dict[tuple[str, int | None], float] = {}
    for k in kernels:
        key = (k.source, k.call)
        out[key] = min(out.get(key, k.start_ms), k.start_ms)
    return out


def chrome_trace(trace: RunTrace, program, graph, schedule=None, result=None, extra: dict | None = None) -> dict:
    """Chrome/Perfetto trace JSON: the last recorded call's segments (process per logical device,
    thread per stream), its kernels (if recorded; each with its segment and operators, times from
    its call's first kernel, so that a graph replay's kernels lie under its segments) and the
    simulator's trace of the same plan."""
    events: list[dict] = []
    by_id = {st.id: st for st in program.segments}
    sim = simulated_segments(program, graph, result) if result is not None else {}
    med = trace.median_ms()
    what = "graph replay" if trace.clock == "graph_replay_kernels" else \
        "stream issue" if trace.clock == "cuda_events" else "CPU threads"
    devices = sorted({r.device for r in trace.segments})
    for d in devices:
        mem = next(r.mem for r in trace.segments if r.device == d)
        events.append({"ph": "M", "name": "process_name", "pid": d,
                       "args": {"name": f"measured ({what}) · device {d} ({mem})"}})
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
    origins = _call_origins(trace.kernels)
    last = {src: max((k.call for k in trace.kernels if k.source == src and k.call is not None), default=None)
            for src in {k.source for k in trace.kernels}}
    pids = set()
    for k in trace.kernels:
        if k.call != last[k.source]:
            continue
        pid = KERNEL_PID + k.device + (50 if k.source == "graph" else 0)
        pids.add(pid)
        t0 = k.start_ms - origins[(k.source, k.call)]
        ops = list(by_id[k.segment].ops) if k.segment in by_id else []
        events.append({"ph": "X", "name": k.name, "cat": f"kernel/{k.source}", "pid": pid, "tid": k.stream,
                       "ts": t0 * 1e3, "dur": (k.end_ms - k.start_ms) * 1e3,
                       "args": {"segment": k.segment, "ops": ops, "call": k.call, "shape": k.shape,
                                "outside_segments": k.outside}})
    for pid in sorted(pids):
        what = "graph replay" if pid - KERNEL_PID >= 50 else \
            ("stream-mode pass, not the plan's timing" if trace.clock == "graph_replay_kernels" else "stream issue")
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
    other = {"graph": graph.name, "calls": trace.calls, "clock": trace.clock, "measured": trace.measured,
             "note": trace.note}
    if trace.coverage is not None:
        other["coverage"] = trace.coverage.to_dict()
    if trace.stream_segments:
        calls = _call_ms(trace.stream_segments)
        other["stream_mode_pass"] = {
            "what": "the same program issued in stream mode from Python, timed by CUDA events: not the plan's "
                    "timing (the plan runs as a CUDA-graph replay)",
            "segment_median_ms": {str(k): statistics.median(v) for k, v in _durations(trace.stream_segments).items()},
            "call_median_ms": statistics.median(calls) if calls else None}
    out = {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}
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
    """Record ``calls`` runs of a compiled ``plan`` (:func:`record_run`; kernels too on CUDA, and
    a graph-mode module's replays), time its segments alone as built (``time_alone``,
    :mod:`hios.runtime.measure.segment_profile`), simulate the plan under its own stage model, and
    write the Chrome trace with the run record embedded (``"hiosRun"``, what ``hios profile
    --from-run`` reads) to ``path`` if given.  Returns ``{"table": rows, "record": run record,
    "path": path, "measured": what the table's measured column is, "note": ..., "coverage": the
    replay's attribution coverage or None, "coverage_line": it in words or ""}``."""
    from ...cost.feedback import run_record, runtime_settings
    from ...cost.timing import precision_state
    from ...simulator import Simulator
    from .segment_profile import ALONE_INNER, time_segments
    if path is not None:
        check_writable(path)
    inputs = as_inputs(inputs)
    dev = module.devices[0]
    inputs = tuple(t.to(dev) if hasattr(t, "to") else t for t in inputs)
    alone = time_segments(module, inputs, inner=ALONE_INNER if module.is_cuda else 1) if time_alone else None
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
    cov = tr.coverage
    return {"table": rows, "record": rec, "path": str(path) if path is not None else None, "measured": tr.measured,
            "note": tr.note, "coverage": cov.to_dict() if cov is not None else None,
            "coverage_line": cov.line() if cov is not None else ""}


def fed_back_graph(plan, module, record: dict, source: str):
    """The profile that ``hios run --feedback-to`` writes: ``plan``'s costs with the measured segment
    times of a run record of :func:`trace_plan` fed back, and the stage model fitted so that the
    simulator predicts the plan's measured latency (:func:`hios.stage_fit.fed_back_profile`): its
    CUDA-graph replay timed by CUDA events, else (stream mode, CPU) the traced calls' median."""
    import torch
    from ...options import TimingOptions
    from ...stage_fit import fed_back_profile
    from .bench import time_replay
    rep = time_replay(module, torch.device(module.devices[0]), TimingOptions()) if module.is_cuda else None
    return fed_back_profile(plan, record, rep.median_ms if rep is not None else record.get("call_ms"), source)
