"""Distributed runtime: one process (rank) per GPU of a plan, values moved by send/recv.

Started by ``torchrun --nproc-per-node N -m hios run --backend distributed ...``; rank *r* runs
the operators that the plan gives GPU *r*.  :func:`run` takes a :class:`DistributedJob` and runs
these steps on every rank, each its own function here or in a module of this package:

  1. Rendezvous and the watchdog (:mod:`.launch`, :mod:`.watchdog`): heartbeats through
     the rendezvous store, so that a rank that dies or hangs makes every other rank leave within
     ``timeout`` seconds with a message naming it.
  2. :func:`get_plan`: every rank reads the plan file, or rank 0 makes it (``make_plan``) and
     hands it to the others through the store.  The world size must equal the plan's GPU count.
  3. :func:`build_and_capture`: build the model and capture it (rank 0 reuses the capture that
     planning made); check that the plan matches the capture.  :func:`~.check.check_signatures`:
     all ranks compare a hash of plan + model + capture + run options; any mismatch stops them all.
  4. :func:`~.launch.init_process_group`: NCCL on GPUs (rank *r* on ``cuda:LOCAL_RANK``),
     gloo on CPU.
  5. :func:`~.build.build_rank`: the rank programs (with the run's ``sync`` mode) and this
     rank's placed segments; the rest of the model is dropped, so the rank holds only its
     weights; :func:`build_runner` wraps them in a :class:`~.runner.RankRunner`.
  6. Warm up (:meth:`~.runner.RankRunner.warm`): the first calls publish the layout of every
     value a rank sends (:mod:`.wire`), so that receivers allocate matching buffers.
  7. :func:`capture_part`: on GPUs, each rank captures its whole part (streams, events, NCCL
     sends/receives) as one CUDA graph; if any rank cannot, every rank runs eagerly and the result
     says why.
  8. :func:`measure`: every rank makes the same calls (so sends and receives always pair up) and
     times them as the single-process ``hios run`` does (:mod:`hios.runtime.measure.bench`); rank 0
     compares its output with ``model(x)``.
  9. :func:`report`: the ranks gather their records; rank 0 returns the result record
     (:mod:`.report`), whose text :func:`~.report.format_result` gives.

Fault injection for tests: ``HIOS_DIST_FAULT=exit:R`` makes rank R leave (exit code 0) when the
timed run starts, ``HIOS_DIST_FAULT=hang:R`` makes it hang there.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable

from ...errors import HiosError, option
from ...options import RunOptions, TimingOptions
from ..measure.record import RunRecord
from .build import RankPart, build_rank
from .check import check_signatures, check_world
from .launch import (DEFAULT_TIMEOUT, Ctx, DistError, close, connect, fail, init_process_group, inject_fault,
                          launch_env, setup_device)
from .report import format_result, rank_record, result_record
from .runner import RankRunner, capture_vote

__all__ = ["DEFAULT_TIMEOUT", "DistributedJob", "format_result", "run"]


@dataclass(frozen=True)
class DistributedJob:
    """What one rank of ``hios run --backend distributed`` does.

    ``plan_file``: every rank reads it; or ``make_plan``: rank 0 calls it and hands the plan to the
    others.  It returns ``(plan, captured)`` or ``(plan, captured, model, inputs)``; each of the
    last three may be None (then built from ``plan.model``); a capture given is reused on rank 0.
    ``run``: kernels, mode, sync, tf32 (``devices`` must be None: rank *r* uses ``cuda:LOCAL_RANK``
    or the CPU, as ``device`` says: ``"cpu"``, ``"cuda"`` or None for CUDA when available).
    ``timeout``: seconds a rank waits for a dead or hung peer.  ``verbose``: progress on stderr.
    ``model``: the model the user named (``--model``), built for a plan file; a plan that names a
    factory is otherwise imported only with ``trust_plan`` (:func:`hios.frontend.zoo.plan_model_spec`).
    """

    plan_file: str | None = None
    make_plan: Callable[[], tuple] | None = None
    model: str | None = None
    trust_plan: bool = False
    run: RunOptions = RunOptions()
    timing: TimingOptions = TimingOptions()
    check: bool = True
    device: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    verbose: bool = True
    flag: Callable[[str], str] | None = None  # how a rank's messages name options (None: by field name)

    def __post_init__(self):
        if self.plan_file and self.make_plan is not None:
            raise HiosError(f"give either a plan file or {option('model')}, not both")
        if not self.plan_file and self.make_plan is None:
            raise HiosError(f"give a plan file or {option('model')}")
        if not self.timeout > 0:
            raise HiosError(f"{option('timeout')} must be positive, got {self.timeout:g}")
        if self.run.devices:
            raise HiosError(f"{option('devices')} is for the local backend; with {option('backend', 'distributed')} "
                            f"rank r uses cuda:LOCAL_RANK (or {option('device', 'cpu')})")
        lv = self.run.levers
        if lv.concat_inplace or lv.priority != "none" or lv.cudnn_benchmark:
            raise HiosError(f"{option('concat_inplace')}, {option('priority')} and {option('cudnn_benchmark')} are "
                            "levers of the local backend; the distributed backend runs fused epilogues and merged "
                            "segments only")
        if self.device not in (None, "cpu", "cuda"):
            raise HiosError(f"{option('device')} {self.device!r}: the distributed backend takes cpu or cuda (each "
                            "rank uses cuda:LOCAL_RANK)")

    def signature_options(self, backend: str) -> dict:
        """The options every rank must agree on (hashed into the start-up check)."""
        return {"device": self.device, "check": self.check, "warmup": self.timing.warmup,
                "repeats": self.timing.repeats, "inner": self.timing.inner, "kernels": self.run.kernels,
                "mode": self.run.mode, "tf32": self.run.tf32, "sync": self.run.sync, "backend": backend,
                "levers": self.run.levers.label()}


def run(job: DistributedJob) -> tuple[int, RunRecord | None]:
    """This rank's part of the job: ``(exit code, rank 0's result record or None)``.  A failure
    ends the process at once with one line on stderr (see :func:`~.launch.fail`)."""
    from ...cost.timing import precision
    launch = launch_env()
    ctx = None
    try:
        ctx = connect(launch, job.timeout, job.verbose, job.flag)
        with precision(job.run.tf32):
            result = run_rank(ctx, job)
    except Exception as e:
        fail(ctx, launch.rank, e, job.flag)
    close(ctx)
    return (1 if result is not None and result.failed else 0), result


def run_rank(ctx: Ctx, job: DistributedJob) -> RunRecord | None:
    """Steps 2-9 on this rank; rank 0 returns the result record."""
    ctx.phase("setup:plan")
    plan, plan_dict, made = get_plan(ctx, job)
    gpus = max(plan.schedule.gpus, plan.machine.gpus)
    check_world(gpus, ctx.world)
    setup_device(ctx, job.device)
    options = resolve_run(ctx, job.run)
    ctx.phase("setup:build")
    model, inputs, captured = build_and_capture(plan, *made, given=job.model, trust=job.trust_plan,
                                                where=job.plan_file or "the plan made by rank 0")
    del made
    ctx.phase("setup:check")
    check_signatures(ctx, plan_dict, captured.graph, plan.model, job.signature_options(ctx.backend))
    ctx.phase("setup:init")
    init_process_group(ctx)
    ctx.phase("setup:segments")
    reference = reference_output(ctx, model, inputs) if job.check and ctx.rank == 0 else None
    part = build_rank(captured, plan.schedule.padded(gpus), options, ctx.rank, ctx.world, ctx.device)
    del model, captured  # the rank keeps only its own segments (and their weights)
    runner = build_runner(ctx, part, options, inputs)
    ctx.phase("setup:warmup")  # the first calls also compile (Inductor) and exchange value layouts
    runner.warm(max(1, job.timing.warmup))
    fallback = None
    if options.mode == "graph":
        ctx.phase("setup:capture")
        fallback = capture_part(ctx, runner)
    ctx.phase("run")
    inject_fault(ctx.rank)
    check, call, replay = measure(ctx, runner, inputs, reference, job)
    ctx.phase("finish")
    ranks = report(ctx, part, runner, call)
    if ctx.rank != 0:
        return None
    return result_record(ctx, plan, part, ranks, kernels=options.kernels,
                         mode="graph" if runner.graph is not None else "stream", fallback_reason=fallback,
                         tf32=options.tf32, call=call, replay=replay, check=check)


# --------------------------------------------------------------------------- the steps
def get_plan(ctx: Ctx, job: DistributedJob) -> tuple[Any, dict, tuple]:
    """Step 2: ``(plan, its JSON, (captured, model, inputs) made by planning, or Nones)``; every
    rank gets the same plan: its file, or the one rank 0 makes, via the store."""
    from ...formats import read_text
    if job.plan_file:
        return (*_parse_plan(read_text(job.plan_file, "plan"), job.plan_file), (None, None, None))
    if ctx.rank != 0:
        return (*_parse_plan(ctx.wait_get("plan", "the plan from rank 0"), "the plan made by rank 0"),
                (None, None, None))
    plan, captured, *rest = job.make_plan()
    text = json.dumps(plan.to_dict())
    ctx.store.set(ctx.key("plan"), text)
    model, inputs = rest if rest else (None, None)
    return plan, json.loads(text), (captured, model, inputs)


def _parse_plan(text: str, where: str):
    from ...formats import parse_json
    from ...plan import Plan
    d = parse_json(text, where)
    return Plan.from_dict(d, where), d


def resolve_run(ctx: Ctx, run: RunOptions) -> RunOptions:
    """The run options with this rank's defaults (kernels, mode, channels_last) filled in."""
    if run.mode == "graph" and ctx.device.type != "cuda":
        raise DistError(f"{option('mode', 'graph')} needs CUDA devices; use {option('mode', 'stream')} (or no "
                        f"{option('mode')}) with {option('device', 'cpu')}")
    return run.resolve([str(ctx.device)])


def build_and_capture(plan, captured=None, model=None, inputs=None, *, given: str | None = None,
                      trust: bool = False, where: str = "plan") -> tuple[Any, tuple, Any]:
    """Step 3: ``(model, inputs, captured)``: what planning made, else built from ``plan.model``
    (a factory only when the user named the model, ``given``, or trusts the plan); the plan must
    match the capture."""
    from ...frontend import zoo
    from ...frontend.capture import capture
    from ...frontend.model_checks import as_inputs
    from ..local.executor import check_plan_graph, check_plan_inputs
    spec = plan.model
    if model is None or inputs is None:
        name = zoo.plan_model_spec(spec["name"], given, trust, where)
        model, inputs = zoo.build(name, int(spec["image_size"]), int(spec.get("batch", 1) or 1))
    inputs = as_inputs(inputs)
    captured = captured or capture(model, inputs, spec["name"])
    check_plan_graph(plan.graph, captured.graph)
    check_plan_inputs(spec, plan.graph, tuple(captured.example_inputs))
    return model, inputs, captured


def reference_output(ctx: Ctx, model, inputs):
    """``model(x)`` on rank 0's device, before the rank drops the weights of the other ranks."""
    import copy

    import torch
    with torch.no_grad():
        ref_model = copy.deepcopy(model).to(ctx.device).eval()
        return ref_model(*[x.to(ctx.device) for x in inputs])


def build_runner(ctx: Ctx, part: RankPart, options: RunOptions, inputs: tuple) -> RankRunner:
    """Step 5 (end): the runner of this rank's part, its static inputs on its device."""
    import torch
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    runner = RankRunner(ctx, part.program, part.streams(ctx.rank), part.exec_program.events, part.segs,
                        part.input_names, part.out_spec, options.channels_last)
    runner.prepare(list(inputs))
    return runner


def capture_part(ctx: Ctx, runner: RankRunner) -> str | None:
    """Step 7: the CUDA-graph vote, then one untimed call (the first replay); why not, or None."""
    reason = capture_vote(ctx, runner)
    runner.call()
    runner.sync("the first replay")
    return reason


def measure(ctx: Ctx, runner: RankRunner, inputs: tuple, reference, job: DistributedJob):
    """Step 8: ``(check or None, call timing, replay timing or None)``.  Every rank takes part in
    the checked call and times the same calls (the same count), so sends and receives always pair
    up; rank 0's figures are the ones reported: it sends the input and ends holding the output."""
    import torch
    from ..measure.bench import RTOL_FP32, RTOL_TF32, compare_outputs, time_call
    xd = tuple(x.to(ctx.device) if isinstance(x, torch.Tensor) else x for x in inputs)
    check = None
    with torch.no_grad():
        if job.check:
            out = runner.call(*xd)
            runner.sync("the checked inference")
            if reference is not None:  # compared now: the next call overwrites a CUDA graph's output
                check = compare_outputs(out, reference, RTOL_TF32 if job.run.tf32 else RTOL_FP32)
        with ctx.watchdog.waiting("the timed inferences") if ctx.device.type == "cuda" else nullcontext():
            call = time_call(runner.call, xd, ctx.device, job.timing)
            replay = time_call(runner.replay, (), ctx.device, job.timing) if runner.graph is not None else None
    return check, call, replay


def report(ctx: Ctx, part: RankPart, runner: RankRunner, call) -> list[dict]:
    """Step 9: every rank's record, gathered (in rank order)."""
    me = rank_record(ctx, part, runner.graph is not None, call.median_ms)
    per_rank = ctx.gather("report", json.dumps(me), "every rank's report")
    return [json.loads(per_rank[r]) for r in sorted(per_rank)]
