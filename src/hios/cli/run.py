"""``hios run``: run a plan of a PyTorch model with the runtime, check it against ``model(x)`` and
time it next to PyTorch eager, plain CUDA-graph replay and ``torch.compile(mode="reduce-overhead")``
of the same model, plus the simulator's prediction.

Either ``hios run plan.json`` (a plan from ``hios optimize``) or ``hios run --model M --image-size S
--gpus N --algo A`` (the plan is made first, by the optimize pipeline)."""

from __future__ import annotations

import json
import sys
import warnings

from ..errors import HiosError
from ..runtime.run_report import format_report

KERNEL_CHOICES = ("inductor", "eager")
MODE_CHOICES = ("graph", "stream")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a plan on GPUs (or CPU), check it and time it against PyTorch")
    p.add_argument("plan", nargs="?", help="plan file from 'hios optimize' (or give --model)")
    g = p.add_argument_group("make the plan here instead of reading one")
    g.add_argument("--model", help="zoo model name or package.module:factory")
    g.add_argument("--image-size", type=int, default=None, help="input image size in px (default 299)")
    g.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    g.add_argument("--gpus", type=int, default=1, help="GPUs of the plan (default 1)")
    g.add_argument("--algo", default=None, help="scheduling algorithm (default: the optimizer's)")
    g.add_argument("--window", type=int, default=None, help="intra-GPU sliding-window size")
    g.add_argument("--streams", type=int, default=None, help="intra-GPU streams per stage")
    g.add_argument("--costs", default=None, metavar="profile|h100|a100|v100|h200|FILE",
                   help="operator costs, as 'hios optimize --cost' (default: profile on a GPU, else h100)")
    p.add_argument("--devices", help="one device per plan GPU, e.g. cuda:0,cuda:1 or cuda:0,cuda:0 or cpu,cpu "
                                     "(default: cuda:0.. one per GPU, or cpu)")
    p.add_argument("--kernels", choices=KERNEL_CHOICES, default=None,
                   help="inductor (default on GPUs): each segment compiled by torch.compile; eager: ATen kernels")
    p.add_argument("--mode", choices=MODE_CHOICES, default=None,
                   help="graph (default on GPUs): one CUDA graph per forward; stream: launches from Python")
    p.add_argument("--sync", choices=("data", "stage"), default="data",
                   help="events only where values cross streams (data, default) or also stage barriers")
    p.add_argument("--check", dest="check", action="store_true", default=True,
                   help="compare the output with model(x) (default)")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip the check")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", default=True,
                   help="do not time PyTorch eager / CUDA-graph replay / torch.compile")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 tensor cores (default: strict fp32; the check then allows 1e-2)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before timing (default 5)")
    p.add_argument("--repeats", type=int, default=30, help="timed samples; the median is reported (default 30)")
    p.add_argument("--inner", type=int, default=5, help="calls per timed sample (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    from ..runtime.distributed import add_arguments as add_distributed_arguments  # torch-free
    add_distributed_arguments(p)  # --backend, --device, --timeout
    p.set_defaults(func=main)


def _torch():
    try:
        import torch
    except ImportError:
        raise HiosError("hios run needs PyTorch: pip install 'hios[vision]'") from None
    return torch


def _plan_from_args(args):
    """The plan: read from the file, or made by ``hios optimize``'s own pipeline for --model."""
    if args.plan and args.model:
        raise HiosError("give either a plan file or --model, not both")
    if args.plan:
        from ..plan import load_plan
        return load_plan(args.plan)
    if not args.model:
        raise HiosError("give a plan file or --model")
    return _optimize(args)


def _optimize(args):
    """Run ``hios optimize`` (same parser, same pipeline) into a temporary plan file and load it."""
    import argparse
    import contextlib
    import os
    import tempfile

    from ..plan import load_plan
    from . import optimize
    parser = argparse.ArgumentParser(prog="hios")
    optimize.add_parser(parser.add_subparsers(dest="command"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plan.json")
        argv = ["optimize", "--model", args.model, "--image-size", str(args.image_size or 299),
                "--batch", str(args.batch), "--gpus", str(args.gpus), "-o", out]
        for flag, v in (("--algo", args.algo), ("--window", args.window), ("--streams", args.streams),
                        ("--cost", args.costs), ("--kernels", args.kernels)):
            if v is not None:
                argv += [flag, str(v)]
        first = (args.devices or "").split(",")[0].strip()
        if first:
            argv += ["--device", first]
        if args.tf32:
            argv.append("--tf32")
        ns = parser.parse_args(argv)
        with contextlib.redirect_stdout(sys.stderr):  # its comparison table is a progress message here
            optimize.main(ns)
        return load_plan(out)


def main(args) -> int:
    if getattr(args, "backend", "local") == "distributed":  # one process per GPU, started by torchrun
        from ..runtime.distributed import main as distributed_main
        return distributed_main(args)
    for k in ("warmup", "repeats", "inner"):
        if getattr(args, k) < (0 if k == "warmup" else 1):
            raise HiosError(f"--{k} must be at least {0 if k == 'warmup' else 1}, got {getattr(args, k)}")
    torch = _torch()
    from ..frontend import zoo
    from ..frontend.capture import capture
    from ..runtime.bench import (RTOL_FP32, RTOL_TF32, TimingSettings, baselines, compare_outputs,
                                 predicted_latency, time_call, time_replay)
    from ..runtime.executor import compile as hios_compile
    from ..timing import set_precision

    set_precision(args.tf32)  # before planning: a profile taken here must see the run's precision
    plan = _plan_from_args(args)
    from ..runtime.devices import logical_devices, parse_devices, used_gpus
    logical_devices(parse_devices(args.devices), max(plan.schedule.gpus, 1), used_gpus(plan.schedule.stages),
                    torch.cuda.device_count() if torch.cuda.is_available() else 0)  # fail fast on bad devices
    info = dict(getattr(plan, "model", {}) or {})
    name = info.get("name")
    if not name:
        raise HiosError("the plan does not name its model (plan.model['name'])")
    size = int(info.get("image_size") or args.image_size or 299)
    batch = int(info.get("batch") or args.batch)
    model, x = zoo.build(name, size, batch)
    log = (lambda m: print(m, file=sys.stderr)) if not args.json else (lambda m: None)
    log(f"capturing {name} at {size} px, batch {batch}...")
    captured = capture(model, x, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log("compiling the plan (segments, warm-up, capture)...")
        module = hios_compile(model, x, plan, args.devices, kernels=args.kernels, mode=args.mode, sync=args.sync,
                              captured=captured, clone_outputs=False, progress=not args.json)
    notes = [str(w.message) for w in caught if "hios" in str(w.message)]
    for n in notes:
        log(f"warning: {n}")
    dev = torch.device(module.devices[0])
    xd = tuple(t.to(dev) for t in x)
    model = model.to(dev).eval()
    result: dict = {"model": name, "image_size": size, "batch": batch, "devices": module.devices,
                    "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                    "algorithm": plan.schedule.algorithm, "kernels": module.kernels, "mode": module.mode,
                    "fallback_reason": module.fallback_reason, "tf32": args.tf32,
                    "program": module.program.summary(), "warnings": notes}
    code = 0
    with torch.no_grad():
        if args.check:
            ref = model(*xd)
            out = module(*xd)
            chk = compare_outputs(out, ref, RTOL_TF32 if args.tf32 else RTOL_FP32)
            result["max_abs_diff"] = chk.max_abs_diff
            result["check"] = chk.to_dict()
            if not chk.ok:
                code = 1
        s = TimingSettings(args.warmup, args.repeats, args.inner)
        log("timing the plan...")
        result["plan_call"] = time_call(module, xd, dev, s).to_dict()
        rep = time_replay(module, dev, s)
        result["plan_replay"] = rep.to_dict() if rep else None
        if args.baselines:
            which = ("eager", "cuda_graph", "compile") if dev.type == "cuda" else ("eager",)
            result["baselines"] = baselines(model, xd, dev, s, which,
                                            progress=lambda b: log(f"timing baseline {b}..."))
    result["predicted_ms"] = predicted_latency(plan)
    result["cost_source"] = getattr(plan, "cost_source", None)
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        print()
    else:
        print(format_report(result))
    return code


