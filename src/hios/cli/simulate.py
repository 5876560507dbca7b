"""``hios simulate``: schedule a graph file with one or more algorithms and simulate the result."""

from __future__ import annotations

import json
import sys

from ..costmodel import HIOSStageModel
from ..errors import HiosError
from ..formats import load_graph
from ..limits import check_gpus, check_intra, check_time_limit
from ..machine import LINK_PRESETS, DEFAULT_LINK, Machine, link_preset
from ..outputs import GRAPH, IMAGE, JSON, OutputSet
from ..report import compare, format_table
from ..schedule import load_schedule
from ..schedulers import ALGORITHMS, parse_algorithms
from ..viz import write_gantt, write_trace


def default_algorithm() -> str:
    return "hios-lp" if "hios-lp" in ALGORITHMS else "sequential"


def add_machine_args(p) -> None:
    p.add_argument("--gpus", type=int, default=1, help="GPU count (default 1)")
    p.add_argument("--link", default=DEFAULT_LINK, choices=list(LINK_PRESETS),
                   help=f"interconnect preset (default {DEFAULT_LINK})")
    p.add_argument("--alpha", type=float, default=0.5, help="alpha of the HIOS stage model (default 0.5)")
    p.add_argument("--serialize-links", action="store_true", help="one transfer at a time per directed link")


def add_scheduler_args(p) -> None:
    p.add_argument("--algo", default=None,
                   help=f"algorithm(s): {'|'.join(ALGORITHMS)}|all, or a comma list (default hios-lp)")
    p.add_argument("--window", type=int, default=None, help="intra-GPU sliding-window size")
    p.add_argument("--streams", type=int, default=None, help="intra-GPU streams per stage")
    p.add_argument("--no-intra", action="store_true", help="skip the intra-GPU step of HIOS")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="optimal: CP-SAT time limit (default 10 s; the result says whether it proved optimality)")


def add_output_args(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--trace", metavar="FILE", help="write the best schedule's timeline as a Chrome/Perfetto trace")
    p.add_argument("--gantt", metavar="PNG", help="draw the best schedule as a Gantt chart")


def machine_from_args(args) -> Machine:
    check_gpus(args.gpus)
    if not 0 <= args.alpha <= 1:
        raise HiosError(f"--alpha must be in [0, 1], got {args.alpha}")
    return Machine(args.gpus, link_preset(args.link))


def scheduler_options(args) -> dict:
    check_intra(args.window, args.streams)
    check_time_limit(args.time_limit)
    return {"window": args.window, "streams": args.streams, "intra": False if args.no_intra else None,
            "time_limit": args.time_limit}


def algorithms_from_args(args) -> list[str]:
    """``--algo`` as a list of names; an empty value or an empty name in a comma list is refused."""
    if args.algo is not None and (not args.algo.strip() or any(not a.strip() for a in args.algo.split(","))):
        raise HiosError(f"--algo {args.algo!r} has an empty algorithm name; give e.g. hios-lp or hios-lp,heft or all")
    return parse_algorithms(args.algo or default_algorithm())


def check_output_args(args, output: str | None = None) -> OutputSet:
    """Check every output path a command was given before any work starts (``output``: what
    ``-o`` holds, written as JSON); the returned set stages and commits them."""
    out = OutputSet()
    if output and getattr(args, "output", None) is not None:
        out.add(args.output, JSON, output)
    out.add(getattr(args, "save_graph", None), GRAPH, "graph")
    out.add(getattr(args, "trace", None), JSON, "trace")
    out.add(getattr(args, "gantt", None), IMAGE, "Gantt chart")
    return out


def emit(cmp, args, extra: dict | None = None, outputs: OutputSet | None = None) -> None:
    """Print the table or JSON, and write trace/Gantt of the best schedule (staged in ``outputs``,
    committed by the caller, when given)."""
    best = cmp.best
    sched, res = cmp.schedules[best], cmp.results[best]
    if outputs is None:
        if args.trace:
            write_trace(args.trace, cmp.graph, sched, res)
        if args.gantt:
            write_gantt(args.gantt, cmp.graph, sched, res)
    else:
        outputs.stage(args.trace, lambda p: write_trace(p, cmp.graph, sched, res))
        outputs.stage(args.gantt, lambda p: write_gantt(p, cmp.graph, sched, res))
    if args.json:
        d = cmp.to_dict()
        d.update(extra or {})
        json.dump(d, sys.stdout, indent=1)
        print()
    else:
        print(format_table(cmp))


def add_parser(sub) -> None:
    p = sub.add_parser("simulate", help="schedule a graph file and simulate it")
    p.add_argument("graph", help="graph file (.json or .txt)")
    add_machine_args(p)
    add_scheduler_args(p)
    p.add_argument("--schedule", metavar="FILE",
                   help="evaluate this schedule (saved schedule or {operator: gpu} JSON) instead of computing one")
    p.add_argument("-o", "--output", metavar="FILE", help="save the (best) schedule as JSON")
    add_output_args(p)
    p.set_defaults(func=main)


def main(args) -> int:
    with check_output_args(args, "schedule") as outputs:  # nothing is written unless all succeeds
        machine = machine_from_args(args)
        options = scheduler_options(args)
        if args.schedule and args.algo is not None:
            raise HiosError("give either --schedule or --algo, not both")
        algos = [] if args.schedule else algorithms_from_args(args)
        graph = load_graph(args.graph)
        given = load_schedule(args.schedule, graph, machine.gpus) if args.schedule else None
        cmp = compare(graph, machine, algos, options, HIOSStageModel(args.alpha), args.serialize_links, given,
                      progress=lambda a: print(f"scheduling with {a}...", file=sys.stderr) if len(algos) > 1 else None)
        best = cmp.schedules[cmp.best]
        outputs.stage(args.output, best.save)
        emit(cmp, args, outputs=outputs)
        outputs.commit()
    return 0
