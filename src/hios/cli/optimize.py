"""``hios optimize``: capture a model, cost its operators, schedule it and write a plan.

Steps: build the model (zoo name or ``package.module:factory``) → capture it → cost every operator
(``--cost``: ``profile`` measures it on a present GPU; ``h100``/``a100``/``v100``/``h200`` use the
analytic model of that GPU; a FILE is a measured profile graph (``hios profile -o``) of the same
model and input size) → schedule with one or more algorithms (``hios.report.compare``) → write
the plan of the best one and print the comparison.  Without ``--cost`` a present GPU is profiled,
else the analytic H100 model is used, so the command works on machines without a GPU.
"""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

from ..bounds import lower_bounds
from ..costmodel import HIOSStageModel
from ..errors import HiosError
from ..formats import load_graph, save_graph
from ..graph import Edge, Graph
from ..report import compare
from .simulate import (add_machine_args, add_output_args, add_scheduler_args, algorithms_from_args,
                       check_output_args, emit, machine_from_args, scheduler_options)

ANALYTIC = ("h100", "a100", "v100", "h200")


def add_parser(sub) -> None:
    p = sub.add_parser("optimize", help="capture a PyTorch model, cost and schedule it, write a plan",
                       description="Capture a PyTorch model, cost its operators (GPU profile, analytic GPU "
                                   "model or a profile file), schedule it and write a plan.")
    p.add_argument("--model", required=True,
                   help="inception_v3, googlenet, squeezenet1_1, nasnetalarge, randwire or package.module:factory")
    p.add_argument("--image-size", type=int, required=True, help="input image side in pixels")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--cost", default=None, metavar="profile|h100|a100|v100|h200|FILE",
                   help="operator costs: measure on a GPU (profile), the analytic model of a GPU, or a "
                        "measured profile file (default: profile when a GPU is present, else h100)")
    p.add_argument("--device", default=None, help="device to profile on (cuda:N or cpu; default cuda:0)")
    p.add_argument("--kernels", choices=["inductor", "eager"], default=None,
                   help="kernels to profile (default inductor on GPUs)")
    p.add_argument("--tf32", action="store_true",
                   help="allow TF32 tensor cores for convolutions and matrix products while profiling "
                        "(default strict fp32, as 'hios run' runs)")
    add_machine_args(p)
    add_scheduler_args(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write the plan (.json)")
    p.add_argument("--save-graph", metavar="FILE",
                   help="also write the costed operator graph (.json, or .txt in the HIOS format with "
                        "edge times from --link)")
    add_output_args(p)
    p.set_defaults(func=main)


def _torch():
    try:
        import torch
    except ImportError:
        raise HiosError("hios optimize needs PyTorch: pip install hios[torch]") from None
    return torch


def _gpu_present() -> bool:
    return bool(_torch().cuda.is_available())


def _check_device(device: str | None) -> None:
    if device is None:
        return
    torch = _torch()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise HiosError(f"invalid device {device!r} (use cpu or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HiosError(f"--device {device}: no CUDA device is available on this machine")
    if dev.type not in ("cuda", "cpu"):
        raise HiosError(f"unsupported device {device!r} (use cpu or cuda:N)")


def _input_shapes(captured) -> list[list[int]]:
    return [list(x.shape) for x in captured.example_inputs if hasattr(x, "shape")]


def resolve_cost(cost: str | None, device: str | None) -> tuple[str, Graph | None]:
    """Check a ``--cost`` value before any capture: ("profile" | GPU name | "file", measured graph)."""
    if cost is None:
        if _gpu_present() or (device or "").startswith("cpu"):
            return "profile", None
        return "h100", None
    if cost == "profile":
        if device is None and not _gpu_present():
            raise HiosError("--cost profile needs a GPU and none is available; use --cost h100 (analytic) "
                            "or a measured profile file")
        return "profile", None
    if cost.lower() in ANALYTIC:
        return cost.lower(), None
    if not Path(cost).exists():
        raise HiosError(f"--cost {cost!r} is neither 'profile', a GPU ({', '.join(ANALYTIC)}) nor an existing file")
    return "file", load_graph(cost)


def cost_graph(captured, cost: str, measured: Graph | None, device: str | None, kernels: str | None,
               alpha: float, where: str = "") -> tuple[Graph, str, object]:
    """(costed graph, cost source, stage model) for a resolved ``--cost`` value."""
    from ..frontend.analytic import align_operators, costed_graph

    if cost == "profile":
        try:
            from ..frontend.profiler import profile_detailed
        except ImportError as e:
            raise HiosError(f"the profiler is not available: {e}") from None
        from ..frontend.profiler import calibrate
        res = profile_detailed(captured, device=device or "cuda:0", kernels=kernels)
        g, stage = calibrate(res.graph)
        prof = g.meta.get("profile", {})
        source = f"profile:{res.cache_path or prof.get('device', 'measured')}"
        return g, source, stage
    if cost in ANALYTIC:
        return costed_graph(captured, cost), f"analytic:{cost}", HIOSStageModel(alpha)
    assert measured is not None
    measured = align_operators(captured.graph, measured, f"profile {where}")
    prof = measured.meta.get("profile", {})
    shapes = [i.get("shape") for i in prof.get("inputs", []) if isinstance(i, dict)]
    if shapes and shapes != _input_shapes(captured):
        raise HiosError(f"profile {where} was measured with input shape(s) {shapes}, the model has "
                        f"{_input_shapes(captured)}")
    g = captured.graph.with_costs({op.name: op.cost for op in measured.ops},
                                  {op.name: op.utilization for op in measured.ops})
    g.meta = {**captured.graph.meta, "profile": prof} if prof else dict(captured.graph.meta)
    if not prof:
        return g, f"profile:{where}", HIOSStageModel(alpha)
    from ..timing import precision_state
    conv_tf32 = lambda p: p in ("tf32", "tf32-conv")  # noqa: E731 - convolutions dominate these models
    if prof.get("precision") and conv_tf32(prof["precision"]) != conv_tf32(precision_state()):
        print(f"warning: profile {where} was measured in {prof['precision']} precision, this run uses "
              f"{precision_state()} (--tf32 selects tf32): predicted times may be off", file=sys.stderr)
    from ..frontend.profiler import calibrate
    g, stage = calibrate(g)
    return g, f"profile:{where}", stage


def main(args) -> int:
    from ..plan import Plan

    def log(msg: str) -> None:
        print(msg, file=sys.stderr)

    if args.output and Path(args.output).suffix != ".json":
        raise HiosError(f"{args.output}: the plan is written as JSON; give a .json file name")
    if args.save_graph and Path(args.save_graph).suffix not in (".json", ".txt"):
        raise HiosError(f"{args.save_graph}: unknown graph format (use .json or .txt)")
    machine = machine_from_args(args)
    options = scheduler_options(args)
    algos = algorithms_from_args(args)
    check_output_args(args, "plan")  # every output path, before any work
    _check_device(args.device)
    _torch()
    from ..timing import set_precision
    set_precision(args.tf32)
    cost, measured = resolve_cost(args.cost, args.device)
    from ..frontend.capture import capture
    from ..frontend.zoo import build, check_profile_input
    check_profile_input(measured, args.model, args.image_size, args.batch, f"profile {args.cost}")

    model, example = build(args.model, args.image_size, args.batch)
    name = f"{args.model.split(':')[-1]}-{args.image_size}"
    log(f"capturing {args.model} at {args.image_size} px, batch {args.batch}...")
    captured = capture(model, example, name=name, progress=True)
    if args.cost is None and cost == "h100":
        log("no GPU found: costing with the analytic H100 model (--cost h100)")
    graph, source, stage_model = cost_graph(captured, cost, measured, args.device, args.kernels, args.alpha,
                                            str(args.cost))
    cmp = compare(graph, machine, algos, options, stage_model, args.serialize_links,
                  progress=(lambda a: log(f"scheduling with {a}...")) if len(algos) > 1 else None)
    best = cmp.best
    lb = lower_bounds(graph, machine.gpus, stage_model)
    dtype = str(example[0].dtype).replace("torch.", "") if example and hasattr(example[0], "dtype") else None
    plan = Plan(
        model={"name": args.model, "image_size": args.image_size, "batch": args.batch, "dtype": dtype},
        cost_source=source, machine=machine, graph=graph, schedule=cmp.schedules[best],
        predicted={a: r.latency for a, r in cmp.results.items()}, lower_bounds=lb.to_dict(),
        stage_model=stage_model.to_dict() if hasattr(stage_model, "to_dict") else None,
        meta={"capture": captured.method, "algorithm": best,
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "serialize_links": bool(args.serialize_links), "options": {k: v for k, v in options.items()
                                                                          if v is not None}})
    if args.output:
        plan.save(args.output)
    if args.save_graph:
        if Path(args.save_graph).suffix == ".txt":  # the HIOS text format needs edge times
            graph = Graph(graph.ops, [Edge(e.src, e.dst, e.bytes, machine.link.transfer_ms(e.bytes))
                                      for e in graph.edges], graph.name, graph.meta)
        save_graph(graph, args.save_graph)
    if not args.json:
        log(f"{name}: {len(graph)} operators ({captured.method}), costs from {source}; "
            f"best {best}" + (f" -> {args.output}" if args.output else ""))
    emit(cmp, args, {"model": plan.model, "cost_source": source, "plan": args.output, "best": best})
    return 0
