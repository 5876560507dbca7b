"""Timelines of a simulated schedule: Chrome/Perfetto trace JSON and a matplotlib Gantt chart."""

from __future__ import annotations

import json
from pathlib import Path

from .graph import Graph
from .schedule import Schedule
from .simulator import SimResult


def _lanes(schedule: Schedule) -> dict[str, tuple[int, int]]:
    """operator -> (gpu, stream): the k-th member of a stage runs on stream k."""
    return {name: (g, k) for g, sts in enumerate(schedule.stages) for st in sts for k, name in enumerate(st)}


def chrome_trace(graph: Graph, schedule: Schedule, result: SimResult) -> dict:
    events = []
    lanes = _lanes(schedule)
    for g in range(schedule.gpus):
        events.append({"ph": "M", "name": "process_name", "pid": g, "args": {"name": f"GPU {g}"}})
    for name, (g, s) in lanes.items():
        i = graph.index[name]
        events.append({"ph": "X", "name": name, "cat": graph.ops[i].kind, "pid": g, "tid": s,
                       "ts": result.start[i] * 1e3, "dur": (result.end[i] - result.start[i]) * 1e3,
                       "args": {"cost_ms": graph.ops[i].cost}})
    for t in result.transfers:
        events.append({"ph": "X", "name": f"{t.src}->{t.dst}", "cat": "transfer", "pid": t.dst_gpu,
                       "tid": f"recv from GPU {t.src_gpu}", "ts": t.start * 1e3, "dur": (t.end - t.start) * 1e3,
                       "args": {"bytes": t.bytes}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_trace(path: str | Path, graph: Graph, schedule: Schedule, result: SimResult) -> None:
    Path(path).write_text(json.dumps(chrome_trace(graph, schedule, result)))


def write_gantt(path: str | Path, graph: Graph, schedule: Schedule, result: SimResult, title: str = "") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lanes = _lanes(schedule)
    rows = sorted({v for v in lanes.values()})
    ypos = {r: k for k, r in enumerate(rows)}
    xrows = sorted({(t.src_gpu, t.dst_gpu) for t in result.transfers})
    for k, r in enumerate(xrows):
        ypos[("x",) + r] = len(rows) + k
    fig, ax = plt.subplots(figsize=(12, 1 + 0.45 * max(1, len(ypos))))
    cmap = plt.get_cmap("tab20")
    for name, (g, s) in lanes.items():
        i = graph.index[name]
        ax.barh(ypos[(g, s)], result.end[i] - result.start[i], left=result.start[i], height=0.8,
                color=cmap(g % 20), edgecolor="black", linewidth=0.3)
    for t in result.transfers:
        ax.barh(ypos[("x", t.src_gpu, t.dst_gpu)], t.end - t.start, left=t.start, height=0.6,
                color="lightgray", edgecolor="gray", linewidth=0.3)
    labels = [f"GPU {g} stream {s}" for g, s in rows] + [f"link {a}->{b}" for a, b in xrows]
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("time (ms)")
    ax.set_title(title or f"{graph.name}: {schedule.algorithm}, latency {result.latency:.3f} ms")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
