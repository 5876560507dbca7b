"""``hios optimize``: capture a model, cost its operators, schedule it and write a plan.

Steps: check the output paths → build the model (zoo name or ``package.module:factory``) → the
library's :func:`hios.pipeline.plan_model` (capture, cost, schedule, plan) → write the plan (and the
costed graph) → print the comparison.  Without ``--cost`` a present GPU is profiled, else the
analytic H100 model is used, so the command works on machines without a GPU.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import HiosError
from ..formats import check_profile_file, save_graph
from ..graph import Edge, Graph
from ..options import ANALYTIC_GPUS
from .arguments import (add_cost_args, add_kernels_arg, add_machine_args, add_model_args, add_output_args,
                        add_scheduler_args, add_tf32_arg, cost_options, schedule_options)
from .simulate import check_output_args, emit


def add_parser(sub) -> None:
    p = sub.add_parser("optimize", help="capture a PyTorch model, cost and schedule it, write a plan",
                       description="Capture a PyTorch model, cost its operators (GPU profile, analytic GPU "
                                   "model or a profile file), schedule it and write a plan.")
    add_model_args(p)
    add_cost_args(p)
    p.add_argument("--device", default=None, help="device to profile on (cuda:N or cpu; default cuda:0)")
    add_kernels_arg(p, "kernels to profile (default inductor on GPUs)")
    add_tf32_arg(p)
    add_machine_args(p)
    add_scheduler_args(p)
    p.add_argument("--choose", type=int, default=0, metavar="K",
                   help="time the K best predicted candidate plans (algorithms, window/stream counts, N devices or "
                        "one) and torch.compile with and without freezing on --device; keep the fastest measured "
                        "plan (default 0: keep the best predicted one)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the plan (.json)")
    p.add_argument("--save-graph", metavar="FILE",
                   help="also write the costed operator graph (.json, or .txt in the HIOS format with "
                        "edge times from --link)")
    add_output_args(p)
    p.set_defaults(func=main)


def check_device(device: str | None) -> None:
    """``--device`` names a device that exists here (cpu or cuda:N)."""
    if device is None:
        return
    from ..cost.probe import cuda_device_count
    from ..program.devices import logical_devices, parse_devices
    logical_devices(parse_devices(device), 1, 1, cuda_device_count())


def _check_outputs(args) -> None:
    if args.output and Path(args.output).suffix.lower() != ".json":
        raise HiosError(f"{args.output}: the plan is written as JSON; give a .json file name")
    if args.save_graph and Path(args.save_graph).suffix.lower() not in (".json", ".txt"):
        raise HiosError(f"{args.save_graph}: unknown graph format (use .json or .txt)")


def _save_graph(graph: Graph, machine, path) -> None:
    if Path(path).suffix.lower() == ".txt":  # the HIOS text format needs edge times
        graph = Graph(graph.ops, [Edge(e.src, e.dst, e.bytes, machine.link.transfer_ms(e.bytes))
                                  for e in graph.edges], graph.name, graph.meta)
    save_graph(graph, path)


def _choose(args, model, example, plan, captured, log):
    """--choose K: the fastest measured candidate plan (the selection goes into the plan's meta)."""
    from ..options import RunOptions
    from ..pipeline import choose_plan
    devices = (args.device,) * plan.machine.gpus if args.device else None
    chosen = choose_plan(model, example, plan, RunOptions(devices=devices, kernels=args.kernels, tf32=args.tf32),
                         top=args.choose, captured=captured, log=log)
    log(chosen.selection.summary())
    if chosen.note:
        log(chosen.note)
    return chosen.plan


def _refuse_unused(args) -> None:
    """``--device`` and ``--kernels`` say how a profile is measured (and, with ``--choose``, where
    candidates run): without either, nothing is measured with an analytic model or a profile file."""
    cost = (args.cost or "").lower()
    if cost and cost != "profile" and not args.choose:  # --choose runs candidates on --device
        for flag, v in (("--device", args.device), ("--kernels", args.kernels)):
            if v is not None:
                raise HiosError(f"{flag} says how operators are profiled; --cost {args.cost} measures nothing "
                                "(use --cost profile)")


def main(args) -> int:
    _check_outputs(args)
    if args.choose < 0:
        raise HiosError(f"--choose must be >= 0, got {args.choose}")
    with check_output_args(args, "plan") as outputs:  # every output path, before any work
        if args.cost and args.cost.lower() not in ("profile", *ANALYTIC_GPUS):
            outputs.add_input(args.cost, "profile")
        return _optimize(args, outputs)


def _optimize(args, outputs) -> int:
    _refuse_unused(args)
    sched = schedule_options(args)
    cost = cost_options(args, args.device)
    check_profile_file(cost.source, args.model, args.image_size, args.batch, ("profile", *ANALYTIC_GPUS))
    from .model import build_model, log, model_info, model_label, require_torch
    require_torch("hios optimize")
    check_device(args.device)
    from ..pipeline import plan_model
    model, example = build_model(args)
    planned = plan_model(model, example, schedule=sched, cost=cost, name=model_label(args),
                         model_info=model_info(args),
                         log=log)
    plan, cmp = planned.plan, planned.comparison
    if args.choose:
        plan = _choose(args, model, example, plan, planned.captured, log)
    outputs.stage(args.output, plan.save)
    outputs.stage(args.save_graph, lambda tmp: _save_graph(plan.graph, plan.machine, tmp))
    if not args.json:
        log(f"{plan.graph.name}: {len(plan.graph)} operators ({planned.captured.method}), costs from "
            f"{plan.cost_source}; best {cmp.best}" + (f" -> {args.output}" if args.output else ""))
    emit(cmp, args, {"model": plan.model, "cost_source": plan.cost_source, "plan": args.output, "best": cmp.best},
         outputs=outputs)
    outputs.commit()
    return 0
