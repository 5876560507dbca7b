"""``hios profile``: measure every operator of a model on a GPU (or CPU) and write a costed graph.

The output is a hios graph JSON (costs in ms) whose ``meta.profile`` holds the device, kernels,
versions, date, launch overhead, transfer fit and stage-model fit, so ``hios optimize --cost FILE``
and ``hios simulate FILE`` read it directly.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ..errors import HiosError
from ..formats import save_graph
from ..limits import MAX_REPEATS, check_count
from ..outputs import JSON, OutputSet
from .arguments import add_kernels_arg, add_model_args, add_tf32_arg


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="measure operator costs of a model (CUDA graphs on GPU, wall clock on CPU)")
    add_model_args(p, required=False)
    p.add_argument("--from-run", metavar="RUN.json",
                   help="no measuring: the costs of a run's plan with the segment times that run measured fed back "
                        "(a trace from 'hios run --trace'); with --model, the run must be of that model")
    p.add_argument("--device", default=None, help="cuda:N or cpu (default cuda:0 when a GPU exists)")
    add_kernels_arg(p, "time Inductor-compiled operators or their ATen kernels (default inductor on GPU, eager on CPU)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="profile to write (.json)")
    p.add_argument("--cache-dir", default=None, help="profile cache folder (default ~/.cache/hios/profiles)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the profile cache")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions per operator (default 20)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per operator on a GPU (default 3; on CPU 1)")
    p.add_argument("--groups", type=int, default=24,
                   help="groups of independent operators timed concurrently (default 24; 0: none)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="4-D weights and inputs in channels_last layout (default: as the runtime runs, i.e. "
                        "channels_last with Inductor kernels on a GPU)")
    p.add_argument("--compile-workers", type=int, default=None,
                   help="processes pre-compiling operators for --kernels inductor (default: half the CPUs, max 8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_tf32_arg(p)
    p.set_defaults(func=main)


def _from_run(args) -> int:
    """--from-run: the run's plan costs with its measured segment times fed back."""
    from ..cost.feedback import profile_from_run
    outputs = OutputSet()
    outputs.add_input(args.from_run, "run record")
    outputs.add(args.output, JSON, "profile")
    graph = None
    if args.model and args.image_size is None:
        raise HiosError("--from-run with --model needs --image-size")
    if args.model:
        from .model import build_model, model_label, require_torch
        require_torch("hios profile --from-run --model")
        from ..frontend.capture import capture
        model, example = build_model(args)
        graph = capture(model, example, name=model_label(args)).graph
        from ..cost.feedback import read_run_record
        rec = read_run_record(args.from_run, graph)
        if rec.get("graph") is None:
            raise HiosError(f"{args.from_run}: graph: missing (the costs of the run's plan, which --from-run needs)")
        from ..formats import graph_from_dict
        graph = graph_from_dict(rec["graph"], f"{args.from_run} (graph)")  # the costs the run's plan had
    g = profile_from_run(args.from_run, graph)
    outputs.stage(args.output, lambda tmp: save_graph(g, tmp))
    outputs.commit()
    fb = g.meta["profile"]["feedback"]
    print(f"{g.name}: {fb['segments']} measured segment(s) fed back from {args.from_run} (round {fb['rounds']}), "
          f"sum {g.total_work():.4f} ms -> {args.output}", file=sys.stderr)
    return 0


def _warn_cpu_warmup(args) -> None:
    """On CPU each operator is timed by wall clock after one warm-up call: --warmup is not used."""
    import torch
    cpu = args.device.startswith("cpu") if args.device else not torch.cuda.is_available()
    if cpu and args.warmup is not None:
        warnings.warn(f"--warmup {args.warmup} is not used on CPU: each operator is timed after one warm-up call")


def main(args) -> int:
    if Path(args.output).suffix.lower() != ".json":
        raise HiosError(f"{args.output}: the profile is written as JSON; give a .json file name")
    if args.from_run:
        return _from_run(args)
    if not args.model or args.image_size is None:
        raise HiosError("give --model and --image-size (or --from-run RUN.json)")
    if args.image_size < 1 or args.batch < 1:
        raise HiosError(f"--image-size and --batch must be positive, got {args.image_size} and {args.batch}")
    check_count("--repeats", args.repeats, "repeats", MAX_REPEATS)
    if args.warmup is not None:
        check_count("--warmup", args.warmup, "repeats", MAX_REPEATS, minimum=0)
    if args.groups < 0:
        raise HiosError(f"--groups must be >= 0, got {args.groups}")
    outputs = OutputSet()
    outputs.add(args.output, JSON, "profile")
    from ..cost.profile_cache import usable_cache_dir
    cache_dir = False if args.no_cache else usable_cache_dir(args.cache_dir)  # warns and goes on without one
    from .model import build_model, model_label, require_torch
    require_torch("hios profile")
    from .optimize import check_device
    check_device(args.device)  # before the model is built
    _warn_cpu_warmup(args)
    from ..cost.profiler import ProfileSettings
    from ..pipeline import profile_model

    model, example = build_model(args)
    settings = ProfileSettings(**({} if args.warmup is None else {"warmup": args.warmup}), repeats=args.repeats,
                               groups=args.groups, channels_last=args.channels_last)
    res = profile_model(model, example, device=args.device, kernels=args.kernels, tf32=args.tf32, settings=settings,
                        cache_dir=cache_dir, name=model_label(args),
                        compile_workers=args.compile_workers, progress=not args.no_progress)
    g = res.graph
    g.meta.setdefault("model", {"name": args.model, "image_size": args.image_size, "batch": args.batch})
    outputs.stage(args.output, lambda tmp: save_graph(g, tmp))
    outputs.commit()
    prof = g.meta.get("profile", {})
    fit = (prof.get("stage_model") or {}).get("fit") or {}
    print(f"{g.name}: {len(g)} operators on {prof.get('device')} ({prof.get('kernels')} kernels), "
          f"sum {g.total_work():.4f} ms; stage alpha {fit.get('alpha')}; "
          f"{'from cache ' + str(res.cache_path) if res.from_cache else f'measured in {res.seconds:.1f} s'}"
          f" -> {args.output}", file=sys.stderr)
    return 0
