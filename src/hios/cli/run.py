"""``hios run``: run a plan of a PyTorch model with the runtime, check it against ``model(x)`` and
time it next to PyTorch eager, plain CUDA-graph replay and ``torch.compile(mode="reduce-overhead")``
of the same model, plus the simulator's prediction.

Either ``hios run plan.json`` (a plan from ``hios optimize``) or ``hios run --model M --image-size S
--gpus N --algo A`` (the plan is made here by :func:`hios.pipeline.plan_model`, whose capture the
runtime reuses).  Steps: get the plan (and build the model) → check the devices
(:func:`hios.pipeline.check_devices`) → compile the plan (:func:`hios.pipeline.run_plan`) → measure
it (:func:`hios.runtime.measure.plan.measure_plan`) → print the report: each stage entered once
(``benchmarks/call_path.py`` checks this).  ``--backend distributed`` hands the same options to one
process per GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from ..errors import HiosError
from ..runtime.measure.record import format_report
from .arguments import (add_cost_args, add_model_args, add_run_args, add_tf32_arg, add_timing_args, cli_text,
                        cost_options, flag, run_options, schedule_options, timing_options)
from .model import build_model, log, model_info, require_torch

DEFAULT_IMAGE_SIZE = 299


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a plan on GPUs (or CPU), check it and time it against PyTorch")
    p.add_argument("plan", nargs="?", help="plan file from 'hios optimize' (or give --model)")
    g = p.add_argument_group("make the plan here instead of reading one (with a plan file, --model names the "
                             "model to run it on)")
    add_model_args(g, required=False)
    g.add_argument("--trust-plan", action="store_true",
                   help="import the package.module:factory the plan file names (a plan is data: without this, "
                        "hios imports a factory only when --model names it)")
    g.add_argument("--gpus", type=int, default=None, help="GPUs of the plan (default 1)")
    g.add_argument("--algo", default=None, help="scheduling algorithm (default: the optimizer's)")
    g.add_argument("--window", type=int, default=None, help="intra-GPU sliding-window size")
    g.add_argument("--streams", type=int, default=None, help="intra-GPU streams per stage")
    add_cost_args(g)
    g.add_argument("--costs", dest="cost", default=None, help=argparse.SUPPRESS)  # the old spelling of --cost
    add_run_args(p)
    p.add_argument("--check", dest="check", action="store_true", default=True,
                   help="compare the output with model(x) (default)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the check")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", default=True,
                   help="do not time PyTorch eager / CUDA-graph replay / torch.compile")
    add_tf32_arg(p)
    add_timing_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    g = p.add_argument_group("what really ran (hios.runtime.measure.trace, hios.cost.feedback)")
    g.add_argument("--trace", metavar="FILE", help="write the kernels/segments that ran, per device and stream, "
                                                   "beside the simulator's trace of the plan (Chrome/Perfetto JSON; "
                                                   "'hios profile --from-run FILE' reads it back)")
    g.add_argument("--trace-calls", type=int, default=10, help="calls recorded by --trace (default 10)")
    g.add_argument("--choose", type=int, default=0, metavar="K",
                   help="time the K best predicted candidate plans (algorithms, window/stream counts, these devices "
                        "or one) and, on CUDA, torch.compile with and without freezing; run the fastest plan and "
                        "report the winner (default 0: run the plan as made)")
    g.add_argument("--feedback-to", metavar="PROFILE", help="write the plan's costs with this run's measured segment "
                                                            "times fed back (a profile for 'hios optimize --cost')")
    g = p.add_argument_group("distributed backend (start with torchrun, one rank per plan GPU)")
    g.add_argument("--backend", choices=("local", "distributed"), default="local",
                   help="local (default): one process drives every device; distributed: one torchrun rank "
                        "per GPU of the plan, values sent with NCCL (GPUs) or gloo (CPU)")
    g.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="distributed: cpu (gloo) or cuda (NCCL, rank r on cuda:LOCAL_RANK; default when available)")
    g.add_argument("--timeout", type=float, default=None,
                   help="distributed: seconds a rank waits for a dead or hung peer before every rank stops "
                        "(default 60)")
    p.set_defaults(func=main)


def make_plan(args, log=log):
    """``(plan, captured or None, model, inputs)``: the plan file's (model built from the plan), or
    one planned here for ``--model`` (captured once, reused by the runtime)."""
    if args.plan:
        _refuse_planning_options(args)
        from ..frontend.zoo import INPUT_DTYPE, plan_model_spec
        from ..plan import check_plan_dtype, load_plan
        plan = load_plan(args.plan)
        info = plan.model
        check_plan_dtype(info, [INPUT_DTYPE], args.plan)  # before building: the zoo makes float32 inputs
        spec = plan_model_spec(info["name"], args.model, args.trust_plan, args.plan)  # a plan is data
        model, x = build_model(args, spec, int(info.get("image_size") or DEFAULT_IMAGE_SIZE),
                               int(info.get("batch") or args.batch))
        return plan, None, model, x
    if not args.model:
        raise HiosError("give a plan file or --model")
    if args.trust_plan:
        raise HiosError("--trust-plan is for a plan file (it lets hios import the factory the plan names)")
    from ..pipeline import plan_model
    size = args.image_size or DEFAULT_IMAGE_SIZE
    model, x = build_model(args, image_size=size)
    run = run_options(args)
    planned = plan_model(model, x, schedule=schedule_options(args),
                         cost=cost_options(args, run.devices[0] if run.devices else None),
                         name=f"{args.model.split(':')[-1]}-{size}",
                         model_info=model_info(args, size), log=log)
    return planned.plan, planned.captured, model, x


#: Options that shape a plan made here; a plan file was made already.
PLANNING_OPTIONS = ("gpus", "algo", "window", "streams", "cost", "image_size")


def _refuse_planning_options(args) -> None:
    for k in PLANNING_OPTIONS:
        if getattr(args, k) is not None:
            raise HiosError(f"{flag(k)} shapes a plan made with --model; the plan file {args.plan} was made already")


def _check_options(args) -> None:
    """--trace-calls, --choose and --timeout in range (hios.limits), before anything runs."""
    from ..limits import MAX_REPEATS, check_count, check_timeout
    check_count("--trace-calls", args.trace_calls, "repeats", MAX_REPEATS)
    if args.choose < 0:
        raise HiosError(f"--choose must be >= 0, got {args.choose}")
    if args.timeout is not None:
        check_timeout(args.timeout)
        if args.backend != "distributed":
            raise HiosError("--timeout says how long a distributed rank waits for its peers; it needs "
                            "--backend distributed")


def _check_outputs(args):
    """Refuse unwritable --trace / --feedback-to paths (or ones that would replace the plan or
    profile this command reads) before anything runs; the returned
    :class:`~hios.outputs.OutputSet` stages them, committed only after a passing check."""
    from ..outputs import JSON, OutputSet
    out = OutputSet()
    out.add_input(args.plan, "plan")
    if args.cost is not None and Path(args.cost).suffix.lower() == ".json":
        out.add_input(args.cost, "profile")
    out.add(args.trace, JSON, "trace")
    out.add(args.feedback_to, JSON, "fed-back profile")
    return out


def _warn_cpu_overrides(args, run) -> None:
    """On CPU a plan is timed by wall clock, one call per sample, after at most 2 warm-up calls:
    say so when --inner or a larger --warmup was asked for."""
    import torch
    cuda = run.devices[0].startswith("cuda") if run.devices else torch.cuda.is_available()
    if cuda:
        return
    if args.inner is not None and args.inner != 1:
        warnings.warn(f"--inner {args.inner} is not used on CPU: wall-clock timing takes one call per sample")
    if args.warmup is not None and args.warmup > 2:
        warnings.warn(f"--warmup {args.warmup}: CPU timing makes at most 2 warm-up calls")


def _choose(args, model, x, plan, run, timing, captured, say):
    """--choose K: time the candidates; run the fastest hios plan, which is what ``hios run`` measures
    (torch.compile is among its baselines), and say if torch.compile won."""
    from ..pipeline import choose_plan
    chosen = choose_plan(model, x, plan, run, timing, top=args.choose, captured=captured, log=say)
    if chosen.note:
        say(chosen.note)
    return chosen.plan_module, chosen.plan, chosen.selection


def _trace(args, module, x, plan, say, outputs) -> dict:
    """--trace / --feedback-to: record the run before the baselines (they reset torch.compile's
    caches); the files are staged in ``outputs`` and written only when the command succeeds."""
    from ..formats import save_graph
    from ..runtime.measure.trace import fed_back_graph, format_table, trace_plan
    say(f"tracing {args.trace_calls} calls of the plan...")
    if args.trace:
        traced = {}
        outputs.stage(args.trace, lambda tmp: traced.update(trace_plan(module, x, plan, tmp, calls=args.trace_calls)))
        traced["path"] = args.trace
    else:
        traced = trace_plan(module, x, plan, None, calls=args.trace_calls)
    say(format_table(traced["table"], traced["measured"]))
    if traced["coverage_line"]:
        say(f"graph replay attribution: {traced['coverage_line']}")
    if traced["note"] and traced["record"]["clock"] != "wall":
        say(f"trace: {traced['note']}")
    if args.feedback_to:
        g = fed_back_graph(plan, module, traced["record"], args.trace or "hios run")
        outputs.stage(args.feedback_to, lambda tmp: save_graph(g, tmp))
    return traced


def run_distributed(args) -> int:
    """``--backend distributed``: this process is one torchrun rank; rank 0 makes the plan for
    ``--model`` (and reuses its capture), or every rank reads the plan file."""
    from functools import partial

    from ..runtime.distributed import DEFAULT_TIMEOUT, DistributedJob, format_result, run
    for name, v in (("--trace", args.trace), ("--feedback-to", args.feedback_to), ("--choose", args.choose)):
        if v:
            raise HiosError(f"{name} runs with the local backend only; leave it out with --backend distributed")
    if args.plan:
        _refuse_planning_options(args)
    say = (lambda m: None) if args.json else log
    job = DistributedJob(plan_file=args.plan, make_plan=None if args.plan else partial(make_plan, args, say),
                         model=args.model, trust_plan=args.trust_plan,
                         run=run_options(args), timing=timing_options(args), check=args.check, device=args.device,
                         timeout=DEFAULT_TIMEOUT if args.timeout is None else args.timeout, verbose=not args.json,
                         flag=flag)
    code, result = run(job)
    if result is not None:
        print(json.dumps(result.to_dict(), indent=1, default=str) if args.json else format_result(result), flush=True)
    return code


def main(args) -> int:
    _check_options(args)
    if args.backend == "distributed":  # one process per GPU, started by torchrun
        return run_distributed(args)
    timing = timing_options(args)
    run = run_options(args)
    with _check_outputs(args) as outputs:
        require_torch("hios run")
        _warn_cpu_overrides(args, run)
        from ..cost.timing import precision
        with precision(run.tf32):  # the plan, its check and the baselines in one precision
            return _run_local(args, timing, run, outputs)


def _run_local(args, timing, run, outputs) -> int:
    from ..pipeline import check_devices, check_feedback, run_plan
    from ..runtime.measure.plan import MeasureOptions, measure_plan

    say = (lambda m: None) if args.json else log
    plan, captured, model, x = make_plan(args, say)
    devices = check_devices(plan, run)  # fail fast, before the plan is compiled
    if args.feedback_to:
        check_feedback(plan, run, devices, args.feedback_to)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.choose:
            module, plan, selection = _choose(args, model, x, plan, run, timing, captured, say)
        else:
            say("compiling the plan (segments, warm-up, capture)...")
            module = run_plan(model, x, plan, run, captured=captured, clone_outputs=False, progress=not args.json)
            selection = None
    notes = [cli_text(w.message) for w in caught if "hios" in str(w.message)]
    for n in notes:
        say(f"warning: {n}")
    chosen = (selection.to_dict(), selection.summary()) if selection is not None else None  # said after timing
    traced = _trace(args, module, x, plan, say, outputs) if args.trace or args.feedback_to else None
    result = measure_plan(module, model, x, plan, plan.model,
                          MeasureOptions(timing, args.check, args.baselines, args.tf32), say)
    result.warnings = notes
    if chosen is not None:
        result.selection, summary = chosen
        say(summary)
    failed = result.failed
    if traced is not None:
        result.trace = {"path": None if failed else traced["path"], "measured": traced["measured"],
                        "note": traced["note"], "coverage": traced["coverage"], "segments": traced["table"]}
    if not failed:  # a run whose check fails leaves no trace or fed-back profile
        outputs.commit()
        if args.feedback_to:
            say(f"measured segment times fed back -> {args.feedback_to}")
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        print()
    else:
        print(format_report(result))
    return 1 if failed else 0
