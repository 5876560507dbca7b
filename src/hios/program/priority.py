"""Critical-path priority: which operators lie on the longest path, which streams carry them.

Torch-free, pure functions.

Steps:
  1. :func:`critical_operators`: earliest finish of every operator (longest cost-weighted path
     from a source, communication free, as :func:`hios.bounds.critical_path`) and latest finish
     that keeps the whole path length; an operator is critical when its slack (latest minus
     earliest finish) is at most ``tolerance`` times the critical-path length.  Schedulers may
     use the set as it is (e.g. to keep critical operators on one stream).
  2. :func:`stream_priorities`: in an :class:`~hios.program.segmenting.ExecProgram`, every
     (device, stream) that runs a critical operator gets priority ``high`` (CUDA: lower is
     more urgent), every other stream ``low``.
"""

from __future__ import annotations

from typing import Iterable

from ..graph import Graph


def critical_operators(graph: Graph, tolerance: float = 1e-9) -> frozenset[str]:
    """Names of the operators with (almost) no slack on the cost-weighted longest path."""
    n = len(graph.ops)
    if n == 0:
        return frozenset()
    finish = [0.0] * n
    for v in graph.topo:
        finish[v] = max((finish[u] for u in graph.preds[v]), default=0.0) + graph.ops[v].cost
    length = max(finish)
    latest = [length] * n
    for v in reversed(graph.topo):
        for w in graph.succs[v]:
            latest[v] = min(latest[v], latest[w] - graph.ops[w].cost)
    eps = tolerance * max(length, 1e-12)
    return frozenset(graph.ops[v].name for v in range(n) if latest[v] - finish[v] <= eps)


def stream_priorities(program, critical: Iterable[str], high: int = -1, low: int = 0) -> dict[tuple[int, int], int]:
    """(device, stream) -> priority: ``high`` for streams that carry a critical operator."""
    crit = set(critical)
    hot = {program.placement[n] for n in crit if n in program.placement}
    return {(d, s): (high if (d, s) in hot else low)
            for d in range(program.devices) for s in range(program.streams[d])}


__all__ = ["critical_operators", "stream_priorities"]
