"""Choose by measurement on the device: build the few best candidate plans of a model and
``torch.compile`` itself, time them the same way, keep the fastest (:func:`hios.selection.choose`).

Steps of :func:`choose_by_measurement`:

1. Candidate plans: :func:`hios.selection.plan_candidates` on the plan's costed graph, machine and
   stage model (algorithms, window/stream counts, the plan's devices or one), predicted by the
   simulator; the ``top`` best predicted are built (:func:`hios.runtime.local.executor.compile`, reusing
   the capture; Inductor's FX-graph cache serves segments compiled before in this process).
2. On CUDA, ``torch.compile`` reduce-overhead without and with freezing
   (:func:`hios.runtime.measure.bench.compile_reduce_overhead`) are candidates too, timed last (they reset
   Dynamo's caches, which compiled plans no longer need once built and warmed).
3. Every candidate is timed per call with CUDA events (wall clock on CPU) under the same timing
   options; the fastest wins.  Returns the :class:`hios.selection.Selection` and the built
   callables (the winner is among them).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ...options import RunOptions, TimingOptions
from ...selection import Candidate, Selection, choose, plan_candidates
from .bench import compile_reduce_overhead, time_call

__all__ = ["choose_by_measurement"]


def _plan_builder(model, x: tuple, sched, run: RunOptions, captured, built: dict, name: str) -> Callable:
    from ..local.executor import compile as build_runtime

    def build():
        opts = run
        if run.devices and sched.gpus < len(run.devices):
            opts = dataclasses.replace(run, devices=run.devices[:max(1, sched.gpus)])
        built[name] = build_runtime(model, x, sched, options=opts, captured=captured, clone_outputs=False)
        return built[name]
    return build


def _compile_builder(model, x: tuple, freezing: bool, built: dict, name: str) -> Callable:
    def build():
        built[name] = compile_reduce_overhead(model, x, freezing)
        return built[name]
    return build


def choose_by_measurement(model, x: tuple, plan, run: RunOptions, timing: TimingOptions, top: int = 3,
                          captured=None, log: Callable[[str], None] = lambda _m: None
                          ) -> tuple[Selection, dict, dict]:
    """Steps 1-3; returns ``(selection, built callables by name, schedules by plan candidate)``."""
    dev = torch.device(run.devices[0]) if run.devices else torch.device("cuda:0" if torch.cuda.is_available()
                                                                         else "cpu")
    x = tuple(t.to(dev) if isinstance(t, torch.Tensor) else t for t in x)
    model = model.to(dev).eval()
    built: dict = {}
    schedules = {}
    cands = []
    for name, sched, pred in plan_candidates(plan.graph, plan.machine, plan.stage_model_object()):
        schedules[name] = sched
        cands.append(Candidate(name, _plan_builder(model, x, sched, run, captured, built, name), pred))
    if dev.type == "cuda":
        cands += [Candidate("torch.compile", _compile_builder(model, x, False, built, "torch.compile")),
                  Candidate("torch.compile+freezing", _compile_builder(model, x, True, built, "torch.compile+freezing"))]

    def timer(fn) -> float:
        log(f"timing candidate {len(built)}/{min(top, len(schedules)) + (2 if dev.type == 'cuda' else 0)}...")
        return time_call(fn, x, dev, timing).median_ms
    with torch.no_grad():
        sel = choose(cands, timer, top=top)
    return sel, built, schedules


def chosen_plan(plan, sel: Selection, schedules: dict):
    """``(plan with the fastest measured candidate schedule, its name)``; the plan's meta records the
    whole selection (so a torch.compile win is on record even though a plan cannot hold it)."""
    from ...errors import HiosError
    from ...machine import Machine
    plans = [n for n in sorted(sel.measured_ms, key=sel.measured_ms.get) if n in schedules]
    if not plans:
        raise HiosError("no candidate plan could be measured: "
                        + "; ".join(f"{k}: {v}" for k, v in sel.errors.items()))
    best = plans[0]
    sched = schedules[best]
    meta = {**plan.meta, "chosen_by_measurement": best, "selection": sel.to_dict()}
    out = dataclasses.replace(plan, schedule=sched, meta=meta)
    if sched.gpus < plan.machine.gpus:
        out = dataclasses.replace(out, machine=Machine(max(1, sched.gpus), plan.machine.link))
    return out, best
