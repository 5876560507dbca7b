"""Measure a compiled plan as ``hios run`` reports it: the :class:`~hios.runtime.measure.record.RunRecord`.

Steps of :func:`measure_plan`:

  1. Describe what runs: model, devices, kernels, mode, the program's streams and segments.
  2. Check the output against ``model(x)`` (:func:`hios.runtime.measure.bench.compare_outputs`; fp32 or
     TF32 tolerance).
  3. Time the plan per call and, in CUDA-graph mode, per replay.
  4. Time the baselines on the plan's first device: PyTorch eager, and on CUDA plain CUDA-graph
     replay and ``torch.compile`` reduce-overhead without and with freezing (the faster of the two
     is the headline comparison).
  5. Add the simulator's prediction of the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ...options import TimingOptions
from .bench import RTOL_FP32, RTOL_TF32, baselines, compare_outputs, predicted_latency, time_call, time_replay
from .record import RunRecord

__all__ = ["MeasureOptions", "describe", "measure_plan"]


@dataclass(frozen=True)
class MeasureOptions:
    """What :func:`measure_plan` does besides timing the plan: ``check`` against ``model(x)``,
    time the PyTorch ``baselines``; ``tf32`` picks the check's tolerance."""

    timing: TimingOptions = TimingOptions()
    check: bool = True
    baselines: bool = True
    tf32: bool = False


def describe(module, plan, info: dict, tf32: bool) -> RunRecord:
    """Step 1: the head of the run record."""
    dev = torch.device(module.devices[0])
    return RunRecord(model=info.get("name"), image_size=info.get("image_size"), batch=info.get("batch"),
                     devices=module.devices,
                     device_name=torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                     algorithm=plan.schedule.algorithm, kernels=module.kernels, mode=module.mode,
                     fallback_reason=module.fallback_reason, tf32=tf32, levers=module.levers.label(),
                     program=module.program.summary())


def check(module, model, x: tuple, tf32: bool) -> dict:
    """Step 2: the check record; ``ok`` says whether it passed."""
    chk = compare_outputs(module(*x), model(*x), RTOL_TF32 if tf32 else RTOL_FP32)
    return chk.to_dict()


def measure_plan(module, model, x: tuple, plan, info: dict, opts: MeasureOptions = MeasureOptions(),
                 log: Callable[[str], None] = lambda _m: None) -> RunRecord:
    """Steps 1–5 for a compiled plan ``module`` of ``model`` (moved to the plan's first device
    here) on inputs ``x``; returns the run record."""
    dev = torch.device(module.devices[0])
    x = tuple(t.to(dev) for t in x)
    model = model.to(dev).eval()
    record = describe(module, plan, info, opts.tf32)
    with torch.no_grad():
        if opts.check:
            record.check = check(module, model, x, opts.tf32)
        log("timing the plan...")
        record.plan_call = time_call(module, x, dev, opts.timing).to_dict()
        rep = time_replay(module, dev, opts.timing)
        record.plan_replay = rep.to_dict() if rep else None
        if opts.baselines:
            which = ("eager", "cuda_graph", "compile", "compile_freezing") if dev.type == "cuda" else ("eager",)
            record.baselines = baselines(model, x, dev, opts.timing, which,
                                         progress=lambda b: log(f"timing baseline {b}..."))
    record.predicted_ms = predicted_latency(plan)
    record.cost_source = plan.cost_source
    return record
