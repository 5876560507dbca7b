"""Lower bounds on the latency of any schedule of a graph on a machine.

* critical path: the longest chain of operator costs, with communication free.  Valid because a
  stage never lasts less than its longest member (true of the HIOS stage model for any alpha in
  [0, 1]).
* work / N: the work that N GPUs must get through, spread perfectly over them.  Streams make a
  stage shorter than the sum of its members, so the work of an operator is its smallest possible
  share of a stage, ``stage_model.work_share(cost, util)``; under the HIOS model that is
  ``cost * (alpha + (1 - alpha) * util)`` (``cost`` itself when alpha = 1 or util = 1).  A model
  without ``work_share`` gets share 0 (no work bound).  ``sequential_work_per_gpu`` is the plain
  ``sum(cost) / N``, a bound only for schedules of one operator per stage.

``value`` is the larger of the two bounds; no schedule simulated under that stage model beats it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cost.costmodel import HIOSStageModel, StageModel
from .graph import Graph, GraphError

__all__ = ["LowerBounds", "critical_path", "lower_bounds", "stage_work"]


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


def stage_work(graph: Graph, stage_model: StageModel | None = None) -> float:
    """Total of every operator's smallest share of a stage under ``stage_model`` (default HIOS, alpha 0.5)."""
    model = stage_model if stage_model is not None else HIOSStageModel()
    share = getattr(model, "work_share", None)
    if share is None:
        return 0.0
    return sum(min(op.cost, share(op.cost, op.utilization)) for op in graph.ops)


@dataclass(frozen=True)
class LowerBounds:
    critical_path: float
    work_per_gpu: float
    sequential_work_per_gpu: float | None = None

    @property
    def value(self) -> float:
        return max(self.critical_path, self.work_per_gpu)

    def to_dict(self) -> dict:
        return {"critical_path": self.critical_path, "work_per_gpu": self.work_per_gpu,
                "sequential_work_per_gpu": self.sequential_work_per_gpu, "value": self.value}


def lower_bounds(graph: Graph, gpus: int, stage_model: StageModel | None = None) -> LowerBounds:
    """Both bounds for ``gpus`` GPUs under ``stage_model`` (default: the HIOS model, alpha 0.5,
    the simulator's default)."""
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise GraphError(f"GPU count must be an integer >= 1, got {gpus!r}")
    return LowerBounds(critical_path(graph), stage_work(graph, stage_model) / gpus, graph.total_work() / gpus)
