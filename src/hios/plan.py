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
from .graph import Graph, GraphError
from .machine import Machine
from .schedule import PLAN_FORMAT, Schedule

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
        p = Path(path)
        try:
            p.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        except OSError as e:
            raise GraphError(f"{p}: cannot write plan: {e.strerror or e}") from None

    @classmethod
    def from_dict(cls, d: dict, where: str = "plan") -> "Plan":
        if not isinstance(d, dict) or d.get("format") != PLAN_FORMAT:
            raise GraphError(f"{where}: not a hios plan (expected \"format\": \"{PLAN_FORMAT}\")")
        if not isinstance(d.get("version"), int) or d["version"] > PLAN_VERSION:
            raise GraphError(f"{where}: unsupported plan version {d.get('version')!r}")
        for key in ("model", "machine", "graph", "schedule"):
            if key not in d:
                raise GraphError(f"{where}: plan has no {key!r}")
        if not isinstance(d["model"], dict) or "name" not in d["model"]:
            raise GraphError(f"{where}: plan 'model' must be an object with a 'name'")
        graph = graph_from_dict(d["graph"], f"{where} (graph)")
        machine = Machine.from_dict(d["machine"])
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


def load_plan(path: str | Path) -> Plan:
    return Plan.from_dict(read_json(path, "plan"), str(path))
