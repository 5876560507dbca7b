"""Closed loop: measured segment times of a real run fed back into the profile the next plan is made from.

A *run record* (``{"format": "hios-run", ...}``, also embedded as ``"hiosRun"`` in the trace that
``hios run --trace`` writes) holds, for one run of one plan: the model's name and structure hash,
the settings the runtime ran with (kernels, memory format, precision, freezing), and per segment
its operators, its median measured duration and its mean concurrency (how many segments shared
its device while it ran, :func:`hios.cost.concurrency.mean_concurrency`).

Steps of :func:`feed_back`:

1. Per segment, the cost it would have alone: its time measured alone when the record has it
   (``alone_ms``), else its measured duration / ``(1 + beta * (m - 1))``, the
   concurrency model's slowdown at its mean concurrency ``m`` (``beta`` from the profile's
   concurrency model; 0 when there is none).
2. Split that cost over the segment's operators in proportion to their current costs (equal
   shares when they are all 0).  Operators that no segment measured keep their cost.
3. Return a new graph with those costs; ``meta.profile.feedback`` counts the rounds and names the
   run.

:func:`check_settings` refuses (one line) a profile or run record measured under other runtime
settings than the run's; :func:`read_run_record` also refuses a record of another model;
:func:`check_feedback_target` refuses to replace a profile of another model or other settings
with a fed-back one.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from ..errors import HiosError
from ..graph import Graph

__all__ = ["RUN_FORMAT", "RUN_VERSION", "SETTING_KEYS", "alone_ms", "check_feedback_target", "check_profile_of",
           "check_run_record", "check_settings", "feed_back", "profile_from_run", "profile_mismatch",
           "profile_settings", "read_run_record", "run_record", "runtime_settings", "settings_mismatch", "split_cost"]

RUN_FORMAT = "hios-run"
RUN_VERSION = 1
#: Settings that change what the runtime's kernels cost; a profile must agree on each it records.
SETTING_KEYS = ("kernels", "memory_format", "precision", "freezing", "device_type")


def runtime_settings(kernels: str, channels_last: bool, precision: str, device_type: str,
                     freezing: bool = False) -> dict:
    """The settings a run (or a profile meant for it) executes under."""
    return {"kernels": kernels, "memory_format": "channels_last" if channels_last else "contiguous",
            "precision": precision, "freezing": bool(freezing), "device_type": device_type}


def profile_settings(profile: dict) -> dict:
    """The runtime settings a profile (``graph.meta["profile"]``) was measured under, as far as it
    records them (older profiles have no ``freezing``: it was never used)."""
    out = {k: profile[k] for k in ("kernels", "memory_format", "precision", "device_type") if k in profile}
    if "kernels" in out:
        out["freezing"] = bool(profile.get("freezing", False))
    return out


def settings_mismatch(measured: dict, run: dict, what: str) -> str | None:
    """Why ``measured`` (settings of a profile or run record) disagrees with ``run`` on a setting
    both name (None: they agree)."""
    for k in SETTING_KEYS:
        if k in measured and k in run and measured[k] != run[k]:
            return f"{what} was measured with {k}={measured[k]}, this run uses {k}={run[k]}"
    return None


def check_settings(measured: dict, run: dict, what: str) -> None:
    """Raise a one-line :class:`HiosError` when ``measured`` disagrees with ``run``: for what would
    mix measurements of different settings (feeding a run back into a profile)."""
    why = settings_mismatch(measured, run, what)
    if why:
        raise HiosError(f"{why}; re-profile with the run's settings")


def profile_mismatch(graph: Graph, run: dict, what: str = "the plan's profile") -> str | None:
    """Why a costed graph's profile was measured under other settings than ``run``'s (None: same
    settings, or no profile, e.g. analytic costs)."""
    prof = (graph.meta or {}).get("profile")
    if isinstance(prof, dict) and prof:
        return settings_mismatch(profile_settings(prof), run, f"{what} ({prof.get('device', 'unknown device')})")
    return None


def check_profile_of(graph: Graph, run: dict, what: str = "the plan's profile") -> None:
    """Refuse a costed graph whose profile was measured under other settings than ``run``'s."""
    why = profile_mismatch(graph, run, what)
    if why:
        raise HiosError(f"{why}; re-profile with the run's settings")


def check_feedback_target(path: str | Path | None, graph: Graph, run: dict, flag: str = "--feedback-to") -> None:
    """Refuse (one line) to replace the profile at ``path`` with ``graph``'s fed-back costs when it
    is the profile of another model (name or structure) or was measured under other settings than
    ``run``.  None, a missing file and a file that is no hios graph pass (an output replaces it)."""
    if path is None or not Path(path).is_file():
        return
    from ..formats import load_graph
    from .profiler import structure_hash
    try:
        old = load_graph(path)
    except HiosError:
        return
    fix = f"give {flag} another file (or remove it)"
    if old.name != graph.name:
        raise HiosError(f"{path}: {flag} would replace the profile of model {old.name!r} with one of "
                        f"{graph.name!r}; {fix}")
    if structure_hash(old) != structure_hash(graph):
        raise HiosError(f"{path}: {flag} would replace a profile of another graph of {graph.name!r} (operators or "
                        f"edges differ); {fix}")
    why = profile_mismatch(old, run, f"the profile in {path}")
    if why:
        raise HiosError(f"{why}; {flag} would replace it with this run's times; {fix}")


# -- the run record -------------------------------------------------------------------------------

def run_record(graph: Graph, program, trace, settings: dict, alone: dict[int, float] | None = None) -> dict:
    """A run record of ``trace`` (a :class:`hios.runtime.measure.trace.RunTrace`) of ``program`` on ``graph``
    (embedded, with its costs, so that the record alone makes the next profile); ``alone``: step
    id -> the segment's time alone as built (:mod:`hios.runtime.measure.segment_profile`), when measured."""
    from ..formats import graph_to_dict
    from .concurrency import Interval, mean_concurrency
    from .profiler import structure_hash
    conc: dict[int, list[float]] = {}
    for call in sorted({r.call for r in trace.segments}):
        ivs = [Interval(r.step, r.mem, r.start_ms, r.end_ms) for r in trace.segments if r.call == call]
        for k, m in mean_concurrency(ivs).items():
            conc.setdefault(k, []).append(m)
    med = trace.median_ms()
    segs = [{"step": st.id, "device": st.device, "stream": st.stream, "ops": list(st.ops),
             "measured_ms": med[st.id], "concurrency": statistics.median(conc[st.id])}
            for st in program.segments if st.id in med]
    for s in segs:
        if alone and s["step"] in alone:
            s["alone_ms"] = alone[s["step"]]
    calls = trace.call_ms()
    return {"format": RUN_FORMAT, "version": RUN_VERSION, "model": graph.name,
            "structure": structure_hash(graph), "settings": dict(settings), "calls": trace.calls,
            "clock": trace.clock, "call_ms": statistics.median(calls) if calls else None, "segments": segs,
            "graph": graph_to_dict(graph)}


def read_run_record(path: str | Path, graph: Graph | None = None, settings: dict | None = None) -> dict:
    """The run record in ``path`` (a record, or a trace holding one as ``hiosRun``), every field
    checked (:func:`check_run_record`) and checked against ``graph`` (same model name and structure;
    default: the graph the record embeds) and, if given, the ``settings`` it will be used under."""
    from ..fields import Field
    from ..formats import read_json
    f = Field(read_json(path, "run record"), str(path))
    if isinstance(f.value, dict) and "hiosRun" in f.value:
        f = f["hiosRun"]
    rec, embedded = check_run_record(f)
    graph = graph if graph is not None else embedded
    if graph is None:
        raise f.problem("run record holds no graph; give the model it was run with")
    if rec["model"] != graph.name:
        raise f.problem(f"run record is of model {rec['model']!r}, not {graph.name!r}")
    from .profiler import structure_hash
    if rec["structure"] != structure_hash(graph):
        raise f.problem(f"run record is of another graph of {graph.name!r} (operators or edges differ)")
    for s in f["segments"].items():
        for n in s["ops"].items():
            if n.value not in graph.index:
                raise n.problem(f"run record names operator {n.value!r}, which {graph.name!r} does not have")
    if settings is not None:
        check_settings(rec.get("settings") or {}, settings, f"run record {path}")
    return rec


def check_run_record(f) -> tuple[dict, Graph | None]:
    """``(record, its embedded graph or None)`` for the run record at ``f`` (a
    :class:`hios.fields.Field`): format, version, ``model`` and ``structure`` (strings),
    ``settings`` (:data:`SETTING_KEYS`: strings, ``freezing`` a boolean), ``calls``, ``clock``,
    ``call_ms``, ``graph`` and every segment: ``ops`` (a non-empty list of operator names),
    ``measured_ms``, ``concurrency`` and ``alone_ms`` (numbers >= 0), ``step``, ``device``,
    ``stream`` (integers >= 0)."""
    from ..formats import read_graph
    from ..limits import MAX_COST_MS, WHY
    if not isinstance(f.value, dict) or f.value.get("format") != RUN_FORMAT:
        raise f.problem(f"not a hios run record (expected \"format\": \"{RUN_FORMAT}\" or a trace from "
                        "'hios run --trace')")
    f["version"].version(RUN_VERSION, "run record")
    f["model"].string()
    f["structure"].string()
    run = f.get("settings", nullable=True)
    if run:
        for k in SETTING_KEYS:
            v = run.get(k)
            if v:
                v.boolean() if k == "freezing" else v.string()
    for key, get in (("calls", "integer"), ("clock", "string"), ("call_ms", "number")):
        v = f.get(key, nullable=True)
        if v:
            getattr(v, get)()
    for s in f["segments"].items():
        for n in s["ops"].items(nonempty=True):
            n.string()
        s["measured_ms"].number(0.0, MAX_COST_MS, why=WHY["cost"])
        for key in ("concurrency", "alone_ms"):
            v = s.get(key)
            if v:
                v.number(0.0, MAX_COST_MS, why=WHY["cost"])
        for key in ("step", "device", "stream"):
            v = s.get(key)
            if v:
                v.integer(0)
    g = f.get("graph", nullable=True)
    return f.value, read_graph(g) if g else None


# -- feeding back -----------------------------------------------------------------------------------

def alone_ms(measured_ms: float, concurrency: float, beta: float) -> float:
    """Step 1: a segment's cost alone from its measured duration at mean concurrency ``concurrency``."""
    return measured_ms / (1.0 + beta * max(0.0, concurrency - 1.0))


def split_cost(costs: Sequence[float], total: float) -> list[float]:
    """Step 2: ``total`` over operators in proportion to ``costs`` (equal shares if all are 0)."""
    s = sum(costs)
    if s <= 0:
        return [total / len(costs)] * len(costs)
    return [total * c / s for c in costs]


def feed_back(graph: Graph, segments: Sequence[dict], beta: float = 0.0, source: str = "run") -> Graph:
    """Step 3: a graph whose operator costs follow the measured ``segments`` (run-record entries;
    a segment's ``alone_ms``, its time measured alone, is used as it is when present)."""
    costs = {op.name: op.cost for op in graph.ops}
    for seg in segments:
        ops = list(seg["ops"])
        if isinstance(seg.get("alone_ms"), (int, float)):
            total = float(seg["alone_ms"])
        else:
            total = alone_ms(float(seg["measured_ms"]), float(seg.get("concurrency", 1.0)), beta)
        for n, c in zip(ops, split_cost([costs[n] for n in ops], total)):
            costs[n] = c
    out = graph.with_costs(costs)
    prof = dict((graph.meta or {}).get("profile") or {})
    fb = dict(prof.get("feedback") or {})
    prof["feedback"] = {"rounds": int(fb.get("rounds", 0)) + 1, "source": source, "beta": beta,
                        "segments": len(segments)}
    out.meta = {**(graph.meta or {}), "profile": prof}
    return out


def profile_from_run(path: str | Path, graph: Graph | None = None, settings: dict | None = None) -> Graph:
    """``hios profile --from-run``: the costed graph (``graph``, default the one the record embeds)
    with the run's measured segment times fed back; its ``meta.profile`` records the settings the
    run ran under, so plans made from it are checked against the next run."""
    from ..formats import graph_from_dict
    rec = read_run_record(path, graph, settings)
    base = graph if graph is not None else graph_from_dict(rec["graph"], f"{path} (graph)")
    conc = ((base.meta or {}).get("profile") or {}).get("concurrency") or {}
    beta = float(conc.get("beta", 0.0))
    out = feed_back(base, rec["segments"], beta, str(path))
    prof = dict(out.meta["profile"])
    prof.update(rec.get("settings") or {})
    prof.setdefault("method", "run feedback")
    out.meta = {**out.meta, "profile": prof}
    return out
