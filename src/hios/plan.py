"""A plan: what ``hios optimize`` produces and ``hios run`` executes.

JSON layout::

    {"format": "hios-plan", "version": 1,
     "model": {"name", "image_size", "batch", "dtype"},
     "cost_source": "profile:<file or cache key>" | "analytic:h100" | ...,
     "machine": Machine.to_dict(), "graph": <hios graph, costs in ms>,
     "schedule": Schedule.to_dict(),            # so that load_schedule() reads plans too
     "predicted": {algorithm: latency ms}, "lower_bounds": LowerBounds.to_dict(),
     "stage_model": {...} | null, "meta": {...}}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .costmodel import stage_model_from_dict
from .formats import graph_from_dict, graph_to_dict, read_json
from .errors import HiosError
from .graph import Graph, GraphError
from .limits import check_input
from .machine import Machine
from .outputs import atomic_write_text
from .schedule import PLAN_FORMAT, Schedule

__all__ = ["PLAN_VERSION", "Plan", "check_model_info", "load_plan"]

PLAN_VERSION = 1


@dataclass
class Plan:
    """What :func:`hios.pipeline.plan_model` makes and the runtime runs: the costed graph, the
    machine, the chosen schedule, every algorithm's prediction and the model it belongs to.
    :meth:`save` writes it as JSON; :func:`load_plan` reads it back (checked)."""

    model: dict            # {"name", "image_size", "batch", "dtype"}
    cost_source: str       # "profile:<file or cache key>", "analytic:h100", ...
    machine: Machine
    graph: Graph           # the costed graph (costs in ms)
    schedule: Schedule     # the chosen schedule
    predicted: dict        # algorithm -> predicted latency ms (all algorithms compared)
    lower_bounds: dict
    stage_model: dict | None = None   # the stage model the predictions were simulated under
    meta: dict[str, Any] = field(default_factory=dict)

    def stage_model_object(self):
        return stage_model_from_dict(self.stage_model)

    def to_dict(self) -> dict:
        return {"format": PLAN_FORMAT, "version": PLAN_VERSION, "model": self.model,
                "cost_source": self.cost_source, "machine": self.machine.to_dict(),
                "graph": graph_to_dict(self.graph), "schedule": self.schedule.to_dict(),
                "predicted": self.predicted, "lower_bounds": self.lower_bounds,
                "stage_model": self.stage_model, "meta": self.meta}

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1) + "\n", "plan", GraphError)

    @classmethod
    def from_dict(cls, d: dict, where: str = "plan") -> "Plan":
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise GraphError(f"{where}: not a hios plan (expected \"format\": \"{PLAN_FORMAT}\")")
        version = d.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= PLAN_VERSION:
            raise GraphError(f"{where}: unsupported plan version {version!r} (this hios reads version {PLAN_VERSION})")
        for key in ("model", "machine", "graph", "schedule"):
            if key not in d:
                raise GraphError(f"{where}: plan has no {key!r}")
        check_model_info(d["model"], where)
        for key in ("predicted", "lower_bounds", "meta"):
            if d.get(key) is not None and not isinstance(d[key], dict):
                raise GraphError(f"{where}: plan {key!r} must be an object")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (d.get("predicted") or {}).values()):
            raise GraphError(f"{where}: plan 'predicted' must map algorithm names to latencies in ms")
        if not isinstance(d.get("cost_source", ""), str):
            raise GraphError(f"{where}: plan 'cost_source' must be a string")
        graph = graph_from_dict(d["graph"], f"{where} (graph)")
        try:
            machine = Machine.from_dict(d["machine"])
        except GraphError as e:
            raise GraphError(f"{where}: {e}") from None
        schedule = Schedule.from_dict(d["schedule"], f"{where} (schedule)")
        schedule.indexed(graph)  # every operator it names exists
        if schedule.gpus > machine.gpus:
            raise GraphError(f"{where}: schedule uses {schedule.gpus} GPUs, the machine has {machine.gpus}")
        missing = set(graph.names) - set(schedule.operators())
        if missing:
            raise GraphError(f"{where}: schedule leaves operator {sorted(missing)[0]!r} out")
        if d.get("stage_model") is not None:
            stage_model_from_dict(d["stage_model"])  # validate
        return cls(dict(d["model"]), str(d.get("cost_source", "unknown")), machine, graph, schedule,
                   dict(d.get("predicted") or {}), dict(d.get("lower_bounds") or {}), d.get("stage_model"),
                   dict(d.get("meta") or {}))


def check_model_info(model, where: str = "plan") -> None:
    """The plan's ``model`` object: a name, and an image size, batch and dtype of the right types
    within :mod:`hios.limits` (so that ``hios run`` never allocates from a bad plan)."""
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not model["name"]:
        raise GraphError(f"{where}: plan 'model' must be an object with a 'name' (a non-empty string)")
    size, batch = model.get("image_size"), model.get("batch")
    try:
        check_input(1 if size is None else size, 1 if batch is None else batch)
    except HiosError as e:
        raise GraphError(f"{where}: plan 'model': {e}") from None
    if model.get("dtype") is not None and not isinstance(model["dtype"], str):
        raise GraphError(f"{where}: plan 'model' dtype must be a string, got {model['dtype']!r}")


def load_plan(path: str | Path) -> Plan:
    return Plan.from_dict(read_json(path, "plan"), str(path))
