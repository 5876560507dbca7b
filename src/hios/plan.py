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

from .cost.costmodel import stage_model_from_dict
from .errors import HiosError
from .fields import Field
from .formats import DTYPES, graph_to_dict, read_graph, read_json, read_stage_model
from .graph import Graph, GraphError
from .limits import check_input
from .machine import Machine
from .outputs import atomic_write_text
from .schedule import PLAN_FORMAT, Schedule, read_schedule

__all__ = ["PLAN_VERSION", "Plan", "check_model_info", "check_plan_dtype", "load_plan", "read_plan"]

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
        return read_plan(Field(d, where))


def read_plan(f: Field) -> Plan:
    """The plan at ``f``, every field checked (:mod:`hios.fields`): format and version, ``model``
    (:func:`check_model_info`), ``cost_source``, ``machine``, ``graph``, ``schedule`` (every
    operator of the graph once, on the machine's GPUs), ``predicted`` latencies, ``lower_bounds``,
    ``stage_model`` and ``meta``.  A plan is data: nothing it names is imported here (see
    :func:`hios.frontend.zoo.plan_model_spec`)."""
    if not isinstance(f.value, dict) or f.value.get("format") != PLAN_FORMAT:
        raise f.problem(f"not a hios plan (expected \"format\": \"{PLAN_FORMAT}\")")
    f["version"].version(PLAN_VERSION, "plan")
    model = _model_info(f["model"])
    source = f.get("cost_source")
    machine_f = f["machine"]
    try:
        machine = Machine.from_dict(machine_f.obj())
    except GraphError as e:
        raise machine_f.problem(str(e)) from None
    graph = read_graph(f["graph"])
    sched_f = f["schedule"]
    schedule = read_schedule(sched_f)
    try:
        schedule.indexed(graph)  # every operator it names exists
    except GraphError as e:
        raise sched_f.problem(str(e)) from None
    if schedule.gpus > machine.gpus:
        raise sched_f.problem(f"schedule uses {schedule.gpus} GPUs, the machine has {machine.gpus}")
    missing = set(graph.names) - set(schedule.operators())
    if missing:
        raise sched_f.problem(f"schedule leaves operator {sorted(missing)[0]!r} out")
    predicted = _numbers(f.get("predicted", nullable=True))
    bounds = _numbers(f.get("lower_bounds", nullable=True))
    stage = f.get("stage_model", nullable=True)
    meta = f.get("meta", nullable=True)
    return Plan(model, source.string() if source else "unknown", machine, graph, schedule, predicted, bounds,
                read_stage_model(stage) if stage else None, dict(meta.obj()) if meta else {})


def _numbers(f: Field | None) -> dict:
    """An object of names to finite numbers >= 0 (predicted latencies, lower bounds), or {}."""
    return {k: v.number() for k, v in f.entries()} if f else {}


def _model_info(f: Field) -> dict:
    """The plan's ``model``: ``name`` (a zoo model or ``package.module:factory``; only named, never
    imported here), ``image_size`` and ``batch`` within :mod:`hios.limits`, ``dtype`` one of
    :data:`hios.formats.DTYPES`."""
    f["name"].string(nonempty=True)
    size, batch, dtype = (f.get(k, nullable=True) for k in ("image_size", "batch", "dtype"))
    if size:
        size.integer(1)
    if batch:
        batch.integer(1)
    if dtype and dtype.string() not in DTYPES:
        raise dtype.fail("a torch dtype name (float32, float16, bfloat16, int64...)")
    try:
        check_input(size.value if size else 1, batch.value if batch else 1)
    except HiosError as e:
        raise f.problem(str(e)) from None
    return dict(f.value)


def check_model_info(model, where: str = "plan") -> None:
    """The plan's ``model`` object (see :func:`read_plan`), so that ``hios run`` never allocates
    (or imports) from a bad plan."""
    _model_info(Field(model, where, Field(None, where), "model"))


def check_plan_dtype(model_info: dict, dtypes, where: str = "") -> None:
    """Refuse inputs of another element type than the plan was made for (``model.dtype``);
    ``dtypes``: the inputs' dtypes (``torch.float32`` or ``"float32"``...).  A plan without a
    dtype passes."""
    want = model_info.get("dtype")
    got = [str(t).replace("torch.", "") for t in dtypes]
    if want and got and got[0] != want:
        raise HiosError(f"{where + ': ' if where else ''}plan was made for {want} inputs (model.dtype), the "
                        f"model's input is {got[0]}; make a plan for this model and input type")


def load_plan(path: str | Path) -> Plan:
    return read_plan(Field(read_json(path, "plan"), str(path)))
