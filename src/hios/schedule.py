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

from .fields import Field
from .formats import read_json
from .graph import Graph, GraphError
from .outputs import atomic_write_text

__all__ = ["PLAN_FORMAT", "SCHEDULE_FORMAT", "SCHEDULE_VERSION", "Schedule", "load_schedule", "read_schedule",
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
        return read_schedule(Field(d, where))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n", "schedule", GraphError)


def read_schedule(f: Field) -> "Schedule":
    """The saved schedule at ``f`` (a file or a plan's ``schedule``): ``gpus`` a list per GPU of
    stages, each a list of operator names; optional ``version``, ``algorithm`` (a string) and
    ``meta`` (an object).  An empty stage runs nothing and is dropped."""
    if not isinstance(f.value, dict) or "gpus" not in f.value:
        raise f.problem("not a schedule (no 'gpus' key)")
    version, algorithm, meta = f.get("version"), f.get("algorithm"), f.get("meta")
    if version is not None:
        version.version(SCHEDULE_VERSION, "schedule")
    stages = [[tuple(x.string() for x in st.items()) for st in sts.items()] for sts in f["gpus"].items()]
    return Schedule([[st for st in sts if st] for sts in stages], algorithm.string() if algorithm else "custom",
                    dict(meta.obj()) if meta else {})


def schedule_from_json(d, where: str, graph: Graph, gpus: int | None = None) -> Schedule:
    """A schedule from parsed JSON: a saved schedule, a plan (its schedule), or a plain
    ``{"operator": gpu}`` object (one operator per stage, in topological order)."""
    f = Field(d, where)
    if isinstance(d, dict) and d.get("format") == PLAN_FORMAT:
        f = f["schedule"]
    if isinstance(f.value, dict) and "gpus" in f.value:
        s = read_schedule(f)
        if gpus is None:
            return s
        try:
            return s.padded(gpus)
        except GraphError as e:
            raise f.problem(str(e)) from None
    if isinstance(f.value, dict):
        try:
            return Schedule.from_assignment(graph, f.value, gpus, algorithm="assignment")
        except GraphError as e:
            raise f.problem(str(e)) from None
    raise f.fail("a schedule or a JSON object mapping operator name to GPU index")


def load_schedule(path: str | Path, graph: Graph, gpus: int | None = None) -> Schedule:
    """Read a saved schedule, a plan's schedule, or a plain ``{"operator": gpu}`` JSON object."""
    return schedule_from_json(read_json(path, "schedule"), str(path), graph, gpus)
