"""Timelines of a simulated schedule: Chrome/Perfetto trace JSON and a matplotlib Gantt chart.

Both draw one track per (GPU, stream) — the k-th member of a stage runs on stream k — and one
track per directed link ``GPU a -> GPU b`` for the transfers.  Operators that a partial result
did not schedule are left out.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import HiosError
from .graph import Graph
from .outputs import IMAGE, atomic_write, atomic_write_text
from .schedule import Schedule
from .simulator import SimResult

__all__ = ["chrome_trace", "write_gantt", "write_trace"]


def _lanes(schedule: Schedule) -> dict[str, tuple[int, int]]:
    """operator -> (gpu, stream): the k-th member of a stage runs on stream k."""
    return {name: (g, k) for g, sts in enumerate(schedule.stages) for st in sts for k, name in enumerate(st)}


def _timed(graph: Graph, schedule: Schedule, result: SimResult):
    """(name, gpu, stream, start, end) of every simulated operator."""
    for name, (g, s) in _lanes(schedule).items():
        i = graph.index[name]
        t0, t1 = result.start[i], result.end[i]
        if t0 == t0 and t1 == t1:  # not NaN
            yield name, i, g, s, t0, t1


def chrome_trace(graph: Graph, schedule: Schedule, result: SimResult) -> dict:
    """Chrome trace-event JSON (``chrome://tracing``, https://ui.perfetto.dev): one process per GPU
    with one thread per stream, and a "links" process with one thread per directed link.
    Times are in microseconds as the format wants."""
    events: list[dict] = []
    gpus = max(schedule.gpus, len(result.gpu_busy))
    for g in range(gpus):
        events.append({"ph": "M", "name": "process_name", "pid": g, "args": {"name": f"GPU {g}"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": g, "args": {"sort_index": g}})
    streams = set()
    for name, i, g, s, t0, t1 in _timed(graph, schedule, result):
        streams.add((g, s))
        events.append({"ph": "X", "name": name, "cat": graph.ops[i].kind, "pid": g, "tid": s,
                       "ts": t0 * 1e3, "dur": (t1 - t0) * 1e3,
                       "args": {"cost_ms": graph.ops[i].cost, "utilization": graph.ops[i].utilization}})
    for g, s in sorted(streams):
        events.append({"ph": "M", "name": "thread_name", "pid": g, "tid": s, "args": {"name": f"stream {s}"}})
    links = sorted({(t.src_gpu, t.dst_gpu) for t in result.transfers})
    if links:
        pid = gpus
        events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": "links"}})
        events.append({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}})
        tid = {lk: k for k, lk in enumerate(links)}
        for (a, b), k in tid.items():
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": k,
                           "args": {"name": f"GPU {a} -> GPU {b}"}})
        for t in result.transfers:
            events.append({"ph": "X", "name": f"{t.src} -> {t.dst}", "cat": "transfer", "pid": pid,
                           "tid": tid[(t.src_gpu, t.dst_gpu)], "ts": t.start * 1e3, "dur": (t.end - t.start) * 1e3,
                           "args": {"bytes": t.bytes, "src_gpu": t.src_gpu, "dst_gpu": t.dst_gpu}})
    return {"traceEvents": events, "displayTimeUnit": "ms",
            "otherData": {"graph": graph.name, "algorithm": schedule.algorithm, "latency_ms": result.latency}}


def write_trace(path: str | Path, graph: Graph, schedule: Schedule, result: SimResult) -> None:
    text = json.dumps(chrome_trace(graph, schedule, result))
    atomic_write_text(path, text, "trace")


def write_gantt(path: str | Path, graph: Graph, schedule: Schedule, result: SimResult, title: str = "") -> None:
    """Draw the chart into ``path``; its suffix picks the image format (:data:`hios.outputs.IMAGE`)."""
    if Path(path).suffix.lower() not in IMAGE:
        raise HiosError(f"{path}: unknown Gantt chart format {Path(path).suffix!r} (use {', '.join(IMAGE)})")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    timed = list(_timed(graph, schedule, result))
    rows = sorted({(g, s) for _, _, g, s, _, _ in timed})
    ypos = {r: k for k, r in enumerate(rows)}
    # one row per directed link; with many links, one row per receiving GPU instead
    by_dst = len({(t.src_gpu, t.dst_gpu) for t in result.transfers}) > 12
    xkey = (lambda t: (-1, t.dst_gpu)) if by_dst else (lambda t: (t.src_gpu, t.dst_gpu))
    xrows = sorted({xkey(t) for t in result.transfers})
    for k, r in enumerate(xrows):
        ypos[("x",) + r] = len(rows) + k
    nrows = max(1, len(ypos))
    fig, ax = plt.subplots(figsize=(12, 1.4 + 0.38 * nrows))
    cmap = plt.get_cmap("tab10")
    span = max(result.latency, 1e-9)
    show_names = len(timed) <= 60
    lw = 0.4 if len(timed) <= 100 else 0.15
    for name, _, g, s, t0, t1 in timed:
        ax.barh(ypos[(g, s)], t1 - t0, left=t0, height=0.8, color=cmap(g % 10), alpha=0.85,
                edgecolor="black", linewidth=lw)
        if show_names and (t1 - t0) > 0.04 * span:
            ax.text((t0 + t1) / 2, ypos[(g, s)], name, ha="center", va="center", fontsize=7, clip_on=True,
                    parse_math=False)  # names are plain text, never mathtext
    for t in result.transfers:
        ax.barh(ypos[("x",) + xkey(t)], t.end - t.start, left=t.start, height=0.5,
                color=cmap(t.src_gpu % 10), alpha=0.45, edgecolor="dimgray", linewidth=lw, hatch="//")
    labels = [f"GPU {g} · stream {s}" for g, s in rows] + [f"into GPU {b}" if a < 0 else f"link {a}→{b}"
                                                          for a, b in xrows]
    ax.set_yticks(range(len(labels)), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, span * 1.02)
    ax.axvline(result.latency, color="red", linestyle="--", linewidth=1)
    ax.grid(axis="x", linestyle=":", linewidth=0.5)
    ax.set_xlabel("time (ms)")
    ax.set_title(title or f"{graph.name}: {schedule.algorithm}, {schedule.gpus} GPU(s), "
                          f"latency {result.latency:.3f} ms", fontsize=10, parse_math=False)
    gpus_used = sorted({g for g, _ in rows})
    handles = [Patch(color=cmap(g % 10), label=f"GPU {g}") for g in gpus_used]
    if xrows:
        handles.append(Patch(facecolor="white", edgecolor="dimgray", hatch="//", label="transfer"))
    handles.append(Line2D([], [], color="red", linestyle="--", linewidth=1, label="latency"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120), "Gantt chart")
    finally:
        plt.close(fig)
