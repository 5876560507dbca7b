"""The library's front door: capture a PyTorch model once, cost it, schedule it, run the plan.

:func:`optimize` is to hios what ``torch.compile`` is to PyTorch: it takes a model and example
inputs and returns a module that computes the same function faster.  The steps, each its own call
that the CLI and the benchmarks use too:

  1. :func:`plan_model` — capture (:func:`hios.frontend.capture.capture`: operators, BN folded,
     chains fused), cost (:func:`hios.cost.costing.cost_captured`: measured profile, analytic
     GPU model or a profile file), schedule with every requested algorithm and keep the fastest
     predicted one (:func:`hios.report.compare`), and wrap it all as a :class:`~hios.plan.Plan`.
  2. :func:`check_devices` (and :func:`check_feedback`) — refuse, before the build, devices the
     plan cannot run on (and a profile the run cannot feed back into); :func:`run_plan` — build the
     runtime for a plan on logical devices (:func:`hios.runtime.local.executor.compile`), reusing
     the capture of step 1.
  3. :class:`Optimized` — the module returned by :func:`optimize` and :func:`load`: it runs the
     plan and carries it (``.plan``, ``.save(path)``, ``.explain()``).

Examples
--------
Two logical CPU devices, each stream a thread (on a GPU leave ``devices`` out):

>>> import torch, hios
>>> from hios.testing.dist_models import random_dag
>>> model = random_dag(image_size=16)
>>> x = torch.randn(1, 3, 16, 16)
>>> fast = hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100")
>>> torch.allclose(fast(x), model(x), rtol=1e-4, atol=1e-5)
True
>>> fast.plan.schedule.gpus
2
"""

from __future__ import annotations

import datetime as _dt
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .bounds import lower_bounds
from .errors import option, render
from .frontend.model_checks import as_inputs
from .optional import require
from .options import CostOptions, RunOptions, ScheduleOptions
from .plan import Plan, load_plan
from .report import Comparison, compare, format_table

__all__ = ["Chosen", "Optimized", "Planned", "check_devices", "check_feedback", "checked_plan", "choose_plan",
           "load", "optimize", "plan_model", "profile_model", "run_plan"]


@dataclass
class Planned:
    """What :func:`plan_model` made: the capture (reused by the runtime), the plan and the
    comparison of every algorithm it tried."""

    captured: Any
    plan: Plan
    comparison: Comparison


def _checked(where: str, model, example_inputs, pure: bool = True, **arguments) -> tuple:
    """The front door's checks (:mod:`hios.frontend.model_checks`): ``arguments`` of the call, the
    model and its example inputs (returned as a tuple) and, with ``pure``, that its forward changes
    no input or buffer and draws no random numbers.  Each problem is a one-line HiosError."""
    from .frontend.model_checks import check_arguments, check_inputs, check_pure
    if arguments:
        check_arguments(where, **arguments)
    inputs = check_inputs(where, model, example_inputs)
    if pure:
        check_pure(where, model, inputs)
    return inputs


def _model_info(captured, info: dict | None) -> dict:
    """``{"name", "image_size", "batch", "dtype"}``: what a saved plan needs to rebuild its model."""
    x = next((t for t in captured.example_inputs if hasattr(t, "shape")), None)
    d = {"name": captured.graph.name, "image_size": None, "batch": None, "dtype": None}
    if x is not None:
        d["dtype"] = str(x.dtype).replace("torch.", "")
        if len(x.shape) == 4:
            d["batch"], d["image_size"] = int(x.shape[0]), int(x.shape[-1])
    d.update(info or {})
    return d


def plan_model(model, example_inputs, *, schedule: ScheduleOptions = ScheduleOptions(),
               cost: CostOptions = CostOptions(), name: str | None = None, model_info: dict | None = None,
               log: Callable[[str], None] | None = None) -> Planned:
    """Step 1: capture ``model`` once, cost it, schedule it; the fastest predicted schedule wins.

    Parameters
    ----------
    model : torch.nn.Module
        Any module that ``torch.fx`` (or non-strict ``torch.export``) can capture.
    example_inputs : Tensor or tuple of Tensors
        The inputs the plan is made for (their shapes fix the plan).
    schedule, cost : ScheduleOptions, CostOptions
        The machine and algorithms; where operator costs come from.
    name : str, optional
        Graph name (default: the model's class name).
    model_info : dict, optional
        ``{"name", "image_size", "batch"}`` recorded in the plan so that ``hios run plan.json``
        can rebuild a zoo model; by default derived from the inputs.
    log : callable, optional
        Receives one-line progress messages.

    Returns
    -------
    Planned
        ``.captured``, ``.plan`` and ``.comparison``.
    """
    from .frontend.capture import capture
    from .cost.costing import cost_captured, resolve_source
    from .cost.timing import precision

    say = log or (lambda _m: None)
    inputs = _checked("hios.plan_model", model, example_inputs)
    with precision(cost.tf32):  # a profile taken here must see the run's precision
        source = resolve_source(cost)  # fails fast, before the capture, on a bad --cost
        say(f"capturing {name or type(model).__name__}...")
        captured = capture(model, inputs, name=name, progress=log is not None)
        if cost.source is None and source.kind == "analytic":
            say(render(f"no GPU found: costing with the analytic H100 model ({option('cost', 'h100')})"))
        costed = cost_captured(captured, cost, source, progress=log is not None)
        stage_model = costed.stage_model.to_dict() if hasattr(costed.stage_model, "to_dict") else None
    machine = schedule.machine()
    algos = schedule.algorithms_for(costed.graph)
    cmp = compare(costed.graph, machine, algos, schedule.scheduler_kwargs(), costed.stage_model,
                  schedule.serialize_links, progress=(lambda a: say(f"scheduling with {a}...")) if len(algos) > 1 else None)
    best = cmp.best
    plan = Plan(
        model=_model_info(captured, model_info), cost_source=costed.source, machine=machine, graph=costed.graph,
        schedule=cmp.schedules[best], predicted={a: r.latency for a, r in cmp.results.items()},
        lower_bounds=lower_bounds(costed.graph, machine.gpus, costed.stage_model).to_dict(),
        stage_model=stage_model,
        meta={"capture": captured.method, "algorithm": best,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "serialize_links": schedule.serialize_links, "options": schedule.scheduler_kwargs(),
              "tf32": cost.tf32})
    return Planned(captured, plan, cmp)


def profile_model(model, example_inputs, *, device: str | None = None, kernels: str | None = None,
                  tf32: bool = False, settings=None, cache_dir=None, name: str | None = None,
                  compile_workers: int | None = None, progress: bool = True):
    """Capture ``model`` and measure every operator (and concurrent groups, launch overhead,
    copies) on ``device``: :func:`hios.cost.profiler.profile_detailed` of the capture.  Returns
    its :class:`~hios.cost.profiler.ProfileResult` (``.graph`` is the costed graph)."""
    from .frontend.capture import capture
    from .cost.profiler import profile_detailed
    from .cost.timing import precision
    with precision(tf32):
        captured = capture(model, as_inputs(example_inputs), name=name)
        return profile_detailed(captured, device, kernels, cache_dir, progress=progress, settings=settings,
                                compile_workers=compile_workers)


def check_devices(plan: Plan, run: RunOptions = RunOptions()) -> list[str]:
    """Fail fast, before ``plan`` is compiled (:func:`run_plan`), on devices it cannot run on.
    Returns the logical devices (:func:`hios.program.devices.logical_devices`)."""
    from .cost.probe import cuda_device_count
    from .program.devices import logical_devices, used_gpus
    count = cuda_device_count()  # the cost stage's probe, then the program's devices: each stage once
    return logical_devices(run.devices, max(plan.schedule.gpus, 1), used_gpus(plan.schedule.stages), count)


def check_feedback(plan: Plan, run: RunOptions, devices: list[str], path: str | Path) -> None:
    """Before a run whose measured costs are fed back into the profile at ``path``: refuse a plan
    whose profile was measured under other settings than ``run``'s on ``devices``
    (:func:`check_devices`), and a file that is the profile of another model or of other settings."""
    from .cost.feedback import check_feedback_target, check_profile_of, runtime_settings
    opts = run.resolve(devices)
    settings = runtime_settings(opts.kernels, opts.channels_last, "tf32" if opts.tf32 else "fp32",
                                devices[0].split(":")[0])
    check_profile_of(plan.graph, settings, f"the plan's profile, which {option('feedback_to')} would extend,")
    check_feedback_target(path, plan.graph, settings, option("feedback_to"))


def run_plan(model, example_inputs, plan, run: RunOptions = RunOptions(), *, captured=None,
             clone_outputs: bool = True, progress: bool = False):
    """Step 2: the runtime module (:class:`hios.runtime.local.executor.HiosModule`) for ``plan`` (a
    :class:`~hios.plan.Plan`, a :class:`~hios.schedule.Schedule`, or None for one stream), reusing
    ``captured`` when given.  Unchecked: :func:`checked_plan` is the front door's version."""
    from .runtime.local.executor import compile as build_runtime
    from .cost.timing import precision
    inputs = _checked("hios.run_plan", model, example_inputs, pure=captured is None)  # else checked when planned
    with precision(run.tf32):  # warm-up and CUDA-graph capture in the run's precision
        module = build_runtime(model, inputs, plan, options=run, captured=captured,
                               clone_outputs=clone_outputs, progress=progress)
    module.tf32 = run.tf32  # and every call
    return module


def checked_plan(model, example_inputs, plan, run: RunOptions = RunOptions(), *, captured=None,
                 progress: bool = False, built=None):
    """:func:`run_plan`, checked once against ``model(*example_inputs)``; a wrong build is rebuilt
    without the lever or segment at fault, with one warning, or refused with a HiosError
    (:func:`hios.runtime.local.verify.verified`).  ``built``: a runtime of this plan made already."""
    from .cost.timing import precision
    from .frontend.capture import capture
    from .runtime.local.verify import verified
    inputs = as_inputs(example_inputs)
    with precision(run.tf32):  # model(x), the reference, in the run's precision
        if captured is None:
            captured = built.captured if built is not None else capture(model, inputs)
        if built is not None:
            run = replace(run, devices=tuple(built.devices), levers=built.levers)
        return verified(lambda lv: run_plan(model, inputs, plan, replace(run, levers=lv), captured=captured,
                                            progress=progress),
                        model, inputs, run.levers, tf32=run.tf32, name=captured.graph.name, built=built)


class Optimized(require("torch.nn", "hios.optimize").Module):
    """A model running a hios plan: call it like the model.  Carries ``.plan`` (save it with
    :meth:`save`, run it again with :func:`load`), ``.runtime`` (the executor module: program,
    devices, CUDA graph) and, when it was planned here, ``.comparison`` (:meth:`explain`)."""

    def __init__(self, runtime, plan: Plan, comparison: Comparison | None = None, selection=None,
                 tf32: bool | None = None):
        super().__init__()
        self.runtime = runtime
        self.plan = plan
        self.comparison = comparison
        self.selection = selection  # hios.selection.Selection when chosen by measurement
        self.tf32 = tf32  # the precision calls run in (None: torch's flags as they are)

    def forward(self, *inputs):
        if self.tf32 is None:
            return self.runtime(*inputs)
        from .cost.timing import precision
        with precision(self.tf32):
            return self.runtime(*inputs)

    def save(self, path: str | Path) -> None:
        """Write the plan as JSON (the format ``hios run`` and :func:`load` read)."""
        self.plan.save(path)

    def explain(self, file=None) -> str:
        """Print (to ``file``, default stdout) and return the plan's summary: the model, the cost
        source, each algorithm's predicted latency against the lower bound, and the program that
        runs (streams, segments, transfers)."""
        p = self.plan
        head = (f"{p.model.get('name')}: plan {p.schedule.algorithm} on {p.machine.gpus} GPU(s), costs from "
                f"{p.cost_source}")
        body = format_table(self.comparison) if self.comparison is not None else "\n".join(
            f"{a}: predicted {ms:.4f} ms" for a, ms in p.predicted.items())
        prog = getattr(self.runtime, "program", None)
        tail = ""
        if prog is not None:
            s = prog.summary()
            tail = (f"\nruns on {','.join(self.runtime.devices)}: {s['streams']} stream(s), {s['segments']} "
                    f"segment(s), {s['transfers']} transfer(s); {self.runtime.mode} mode, {self.runtime.kernels} kernels")
        if self.selection is not None:
            tail += "\n" + self.selection.summary()
        text = f"{head}\n{body}{tail}"
        print(text, file=file or sys.stdout)
        return text


def optimize(model, example_inputs, *, gpus: int = 1, devices=None, algorithm="hios-lp", cost: str | None = None,
             link: str | None = None, serialize_links: bool = False, window: int | None = None,
             streams: int | None = None, kernels: str | None = None, mode: str | None = None,
             tf32: bool = False, choose: int = 0, check: bool = True, progress: bool = False) -> Optimized:
    """Plan ``model`` for ``gpus`` GPUs and return a module that runs the plan.

    Parameters
    ----------
    model : torch.nn.Module
    example_inputs : Tensor or tuple of Tensors
    gpus : int
        GPUs of the plan (logical devices; several may share one physical GPU).
    devices : str or list of str, optional
        One device per plan GPU: ``"cuda:0,cuda:1"``, ``"cuda:0,cuda:0"`` or ``"cpu,cpu"``
        (default: ``cuda:0..`` when CUDA is present, else cpu).
    algorithm : str or sequence of str
        ``"hios-lp"`` (default), ``"hios-mr"``, ``"heft"``, ``"ios"``, ``"sequential"``,
        ``"optimal"``, a comma list or ``"all"``; the fastest predicted plan is kept.
    cost : str, optional
        ``"profile"`` (measure on the GPU), ``"h100"``/``"a100"``/``"v100"``/``"h200"`` (analytic),
        or a profile file; default: profile on a present GPU, else analytic H100.
    link, serialize_links, window, streams
        Machine and scheduler knobs (see :class:`hios.options.ScheduleOptions`).
    kernels, mode, tf32
        Runtime knobs (see :class:`hios.options.RunOptions`).
    choose : int
        With ``choose=K > 0``, time the K best predicted candidate plans (algorithms, window and
        stream counts, N devices or one) and, on CUDA, ``torch.compile`` reduce-overhead with and
        without freezing, on the device, and keep the fastest measured
        (:func:`hios.runtime.measure.choose.choose_by_measurement`); ``.selection`` says who won and by how
        much.  If torch.compile wins, the returned module runs it, so the result is never slower.
    check : bool
        Check the built module once against ``model(*example_inputs)`` (default).  A wrong build is
        rebuilt without the lever or segment at fault, with one warning naming it; if no build is
        right, :class:`~hios.errors.HiosError` says so with the error figures.  ``check=False``
        skips this (and its one extra call of ``model``): the module is then returned unchecked.
    progress : bool
        Print progress messages on stderr.

    Returns
    -------
    Optimized
        Call it like ``model``; ``.plan``, ``.save(path)``, ``.explain()``.
    """
    _checked("hios.optimize", model, example_inputs, pure=False, gpus=gpus, algorithm=algorithm, choose=choose,
             devices=devices, cost=cost, link=link, kernels=kernels, mode=mode, window=window, streams=streams,
             flags={"serialize_links": serialize_links, "tf32": tf32, "progress": progress})
    run = RunOptions(devices=devices, kernels=kernels, mode=mode, tf32=tf32)
    device = run.devices[0] if run.devices else None
    sched = ScheduleOptions(gpus=gpus, algorithms=algorithm, serialize_links=serialize_links, window=window,
                            streams=streams, **({"link": link} if link else {}))
    log = (lambda m: print(m, file=sys.stderr)) if progress else None
    planned = plan_model(model, example_inputs, schedule=sched,
                         cost=CostOptions(source=cost, device=device, kernels=kernels, tf32=tf32), log=log)
    if choose > 0:
        return _chosen(model, example_inputs, planned, run, choose, log, check)
    build = checked_plan if check else run_plan
    runtime = build(model, example_inputs, planned.plan, run, captured=planned.captured, progress=progress)
    return Optimized(runtime, planned.plan, planned.comparison, tf32=run.tf32)


@dataclass
class Chosen:
    """What :func:`choose_plan` found.  ``plan``: the plan with the fastest measured hios candidate
    (the whole selection in its meta); ``plan_module``: that candidate built; ``module``: the fastest
    measured candidate that runs right (``torch.compile`` may win, checked against ``model(x)`` when
    asked); ``note``: one line when torch.compile measured faster than every plan, else None."""

    plan: Plan
    best: str
    plan_module: Any
    module: Any
    selection: Any
    note: str | None


def choose_plan(model, example_inputs, plan: Plan, run: RunOptions = RunOptions(), timing=None, *, top: int = 3,
                captured=None, check: bool = False, log: Callable[[str], None] | None = None) -> Chosen:
    """Choose by measurement, the one path of ``hios optimize --choose``, ``hios run --choose`` and
    ``hios.optimize(choose=K)``: time the ``top`` best predicted candidate plans and, on CUDA,
    ``torch.compile`` (:func:`hios.runtime.measure.choose.choose_by_measurement`); the plan keeps the
    fastest hios candidate (a plan cannot hold torch.compile).  A torch.compile winner is the
    :attr:`Chosen.module` only if, with ``check``, it matches ``model(x)``; otherwise (with one
    warning) the fastest plan is."""
    import warnings

    from .cost.options import TimingOptions
    from .cost.timing import precision
    from .runtime.local.verify import check_against, reference
    from .runtime.measure.choose import choose_by_measurement, chosen_plan
    say = log or (lambda _m: None)
    inputs = as_inputs(example_inputs)
    say(f"choosing by measurement among the {top} best predicted plans and torch.compile...")
    with precision(run.tf32):
        sel, built, schedules = choose_by_measurement(model, inputs, plan, run, timing or TimingOptions(), top,
                                                      captured, say)
        chosen, best = chosen_plan(plan, sel, schedules)
        winner = sel.winner if sel.winner in built else best
        chk = check_against(built[winner], inputs, reference(model, inputs), run.tf32) \
            if check and winner != best else None
    note = None
    if winner != best:
        note = (f"note: {winner} measured faster than every hios plan ({sel.measured_ms[winner]:.4f} against "
                f"{sel.measured_ms[best]:.4f} ms); the plan keeps the fastest hios candidate, {best}")
    if chk is not None:
        if not chk.ok:
            warnings.warn(f"hios: {winner} differed from model(x) (relative error {chk.rel:.3g}); running the "
                          f"fastest plan, {best}, instead", stacklevel=3)
            winner = best
    return Chosen(chosen, best, built[best], built[winner], sel, note)


def _chosen(model, example_inputs, planned: Planned, run: RunOptions, top: int, log, check: bool) -> Optimized:
    """``optimize(choose=K)``: :func:`choose_plan`; the plan (when it won) is checked and rebuilt
    where wrong as :func:`checked_plan` does."""
    inputs = as_inputs(example_inputs)
    c = choose_plan(model, inputs, planned.plan, run, top=top, captured=planned.captured, check=check, log=log)
    module = c.module
    if check and module is c.plan_module:
        module = checked_plan(model, inputs, c.plan, run, captured=planned.captured, built=module)
    return Optimized(module, c.plan, planned.comparison, c.selection, tf32=run.tf32)


def load(path: str | Path, model, example_inputs, *, devices=None, kernels: str | None = None,
         mode: str | None = None, tf32: bool = False, check: bool = True, progress: bool = False) -> Optimized:
    """Run a saved plan (``Optimized.save`` or ``hios optimize -o``) of ``model``; the plan must
    match the model's operators and the inputs' shapes.  ``check``: as in :func:`optimize` (on by
    default; ``check=False`` returns the module unchecked).

    Examples
    --------
    >>> import os, tempfile, torch, hios
    >>> from hios.testing.dist_models import random_dag
    >>> model, x = random_dag(image_size=16), torch.randn(1, 3, 16, 16)
    >>> path = os.path.join(tempfile.mkdtemp(), "plan.json")
    >>> hios.optimize(model, x, gpus=2, devices="cpu,cpu", cost="h100").save(path)
    >>> again = hios.load(path, model, x, devices="cpu,cpu")
    >>> torch.allclose(again(x), model(x), rtol=1e-4, atol=1e-5)
    True
    """
    _checked("hios.load", model, example_inputs, pure=False, devices=devices, kernels=kernels, mode=mode,
             flags={"tf32": tf32, "progress": progress})
    plan = load_plan(path)
    build = checked_plan if check else run_plan
    runtime = build(model, example_inputs, plan, RunOptions(devices=devices, kernels=kernels, mode=mode, tf32=tf32),
                    progress=progress)
    return Optimized(runtime, plan, tf32=tf32)
