"""Lower bounds on the latency of any schedule of a graph on a machine.

* critical path: the longest chain of operator costs, with communication free;
* work / N: total operator cost spread perfectly over N GPUs.

No schedule can beat ``max`` of the two (stages never make an operator shorter than its cost
under the default stage model, whose stage time is at least the longest member).
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import Graph


def critical_path(graph: Graph) -> float:
    """Length of the longest cost-weighted path (free communication)."""
    finish = [0.0] * len(graph.ops)
    for v in graph.topo:
        t = 0.0
        for u in graph.preds[v]:
            if finish[u] > t:
                t = finish[u]
        finish[v] = t + graph.ops[v].cost
    return max(finish)


@dataclass(frozen=True)
class LowerBounds:
    critical_path: float
    work_per_gpu: float

    @property
    def value(self) -> float:
        return max(self.critical_path, self.work_per_gpu)

    def to_dict(self) -> dict:
        return {"critical_path": self.critical_path, "work_per_gpu": self.work_per_gpu, "value": self.value}


def lower_bounds(graph: Graph, gpus: int) -> LowerBounds:
    return LowerBounds(critical_path(graph), graph.total_work() / gpus)
