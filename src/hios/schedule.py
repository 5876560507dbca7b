"""Schedules: for each GPU an ordered list of stages; a stage is a set of operators run on
parallel streams of that GPU.

Schedules are stored by operator name (so they survive a round trip through JSON and can be
checked against any graph); :meth:`Schedule.indexed` gives the integer form the simulator uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .formats import read_json
from .graph import Graph, GraphError
from .outputs import atomic_write_text

__all__ = ["PLAN_FORMAT", "SCHEDULE_FORMAT", "SCHEDULE_VERSION", "Schedule", "load_schedule",
           "schedule_from_json"]

SCHEDULE_FORMAT = "hios-schedule"
SCHEDULE_VERSION = 1
#: The ``format`` tag of a plan (:mod:`hios.plan`); a plan holds a schedule, so schedule readers accept plans.
PLAN_FORMAT = "hios-plan"


@dataclass
class Schedule:
    """For each GPU an ordered list of stages; a stage is a tuple of operator names that run at
    the same time on parallel streams of that GPU.

    Examples
    --------
    >>> from hios import Edge, Graph, Machine, Operator, Schedule, simulate
    >>> g = Graph([Operator("a", 1.0), Operator("b", 2.0), Operator("c", 1.5)],
    ...           [Edge("a", "b"), Edge("a", "c")])
    >>> s = Schedule([[("a",), ("b", "c")]], "by hand")
    >>> s.gpus, s.assignment()
    (1, {'a': 0, 'b': 0, 'c': 0})
    >>> s.padded(2).stages[1]
    []
    """

    stages: list[list[tuple[str, ...]]]  # stages[gpu][k] = operator names of stage k on that GPU
    algorithm: str = "custom"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def gpus(self) -> int:
        return len(self.stages)

    def assignment(self) -> dict[str, int]:
        return {name: g for g, sts in enumerate(self.stages) for st in sts for name in st}

    def operators(self) -> list[str]:
        return [name for sts in self.stages for st in sts for name in st]

    def padded(self, gpus: int) -> "Schedule":
        """The same schedule on ``gpus`` GPUs: trailing GPUs that run nothing added or dropped."""
        if any(self.stages[g] for g in range(gpus, self.gpus)):
            used = next(g for g in range(gpus, self.gpus) if self.stages[g])
            raise GraphError(f"schedule uses GPU {used} but the machine has {gpus} GPU(s)")
        stages = [list(sts) for sts in self.stages[:gpus]] + [[] for _ in range(gpus - self.gpus)]
        return Schedule(stages, self.algorithm, dict(self.meta))

    def indexed(self, graph: Graph) -> list[list[list[int]]]:
        out = []
        for g, sts in enumerate(self.stages):
            gl = []
            for st in sts:
                try:
                    gl.append([graph.index[n] for n in st])
                except KeyError as e:
                    raise GraphError(f"schedule names unknown operator {e.args[0]!r} (GPU {g})") from None
            out.append(gl)
        return out

    @classmethod
    def from_indices(cls, graph: Graph, stages: Sequence[Sequence[Sequence[int]]], algorithm: str = "custom",
                     meta: dict | None = None) -> "Schedule":
        return cls([[tuple(graph.ops[i].name for i in st) for st in sts if len(st)] for sts in stages],
                   algorithm, dict(meta or {}))

    @classmethod
    def from_assignment(cls, graph: Graph, assignment: dict[str, int], gpus: int | None = None,
                        algorithm: str = "custom") -> "Schedule":
        """One operator per stage, operators of each GPU in the graph's topological order."""
        for name, g in assignment.items():
            if name not in graph.index:
                raise GraphError(f"assignment names unknown operator {name!r}")
            if not isinstance(g, int) or isinstance(g, bool) or g < 0 or (gpus is not None and g >= gpus):
                raise GraphError(f"operator {name!r} is assigned to GPU {g!r}, outside 0..{(gpus or 1) - 1}")
        n = gpus if gpus is not None else (max(assignment.values(), default=0) + 1)
        stages: list[list[tuple[str, ...]]] = [[] for _ in range(n)]
        for i in graph.topo:
            name = graph.ops[i].name
            if name in assignment:
                stages[assignment[name]].append((name,))
        return cls(stages, algorithm)

    # -- JSON -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": SCHEDULE_FORMAT, "version": SCHEDULE_VERSION, "algorithm": self.algorithm,
                "meta": self.meta, "gpus": [[list(st) for st in sts] for sts in self.stages]}

    @classmethod
    def from_dict(cls, d: dict, where: str = "schedule") -> "Schedule":
        if not isinstance(d, dict) or "gpus" not in d:
            raise GraphError(f"{where}: not a schedule (no 'gpus' key)")
        version = d.get("version", SCHEDULE_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEDULE_VERSION:
            raise GraphError(f"{where}: unsupported schedule version {version!r} (this hios reads version "
                             f"{SCHEDULE_VERSION})")
        if not isinstance(d["gpus"], list):
            raise GraphError(f"{where}: 'gpus' must be a list (one list of stages per GPU)")
        if not isinstance(d.get("meta", {}), dict):
            raise GraphError(f"{where}: 'meta' must be an object")
        stages = []
        for g, sts in enumerate(d["gpus"]):
            if not isinstance(sts, list) or not all(isinstance(st, list) and all(isinstance(x, str) for x in st)
                                                    for st in sts):
                raise GraphError(f"{where}: GPU {g} must be a list of stages, each a list of operator names")
            stages.append([tuple(st) for st in sts if st])  # an empty stage runs nothing: dropped
        return cls(stages, str(d.get("algorithm", "custom")), dict(d.get("meta", {})))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n", "schedule", GraphError)


def schedule_from_json(d, where: str, graph: Graph, gpus: int | None = None) -> Schedule:
    """A schedule from parsed JSON: a saved schedule, a plan (its schedule), or a plain
    ``{"operator": gpu}`` object (one operator per stage, in topological order)."""
    if isinstance(d, dict) and d.get("format") == PLAN_FORMAT:
        d = d.get("schedule")
    if isinstance(d, dict) and "gpus" in d and isinstance(d["gpus"], list):
        s = Schedule.from_dict(d, where)
        if gpus is None:
            return s
        try:
            return s.padded(gpus)
        except GraphError as e:
            raise GraphError(f"{where}: {e}") from None
    if isinstance(d, dict) and all(isinstance(k, str) for k in d):
        return Schedule.from_assignment(graph, d, gpus, algorithm="assignment")
    raise GraphError(f"{where}: expected a schedule or a JSON object mapping operator name to GPU index")


def load_schedule(path: str | Path, graph: Graph, gpus: int | None = None) -> Schedule:
    """Read a saved schedule, a plan's schedule, or a plain ``{"operator": gpu}`` JSON object."""
    return schedule_from_json(read_json(path, "schedule"), str(path), graph, gpus)
