"""Sequential baseline: every operator on GPU 0, one per stage, in topological order."""

from __future__ import annotations

from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule

__all__ = ["sequential"]


def sequential(graph: Graph, machine: Machine, *, stage_model=None, serialize_links: bool = False) -> Schedule:
    """``serialize_links`` is accepted like every scheduler's; nothing is transferred on one GPU."""
    stages = [[[i] for i in graph.topo]] + [[] for _ in range(machine.gpus - 1)]
    return Schedule.from_indices(graph, stages, "sequential")
