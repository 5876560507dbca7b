"""``hios simulate``: schedule a graph file with one or more algorithms and simulate the result."""

from __future__ import annotations

import json
import math
import sys

from ..costmodel import HIOSStageModel
from ..errors import HiosError
from ..formats import load_graph
from ..machine import LINK_PRESETS, DEFAULT_LINK, Machine, link_preset
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
                   help="optimal: CP-SAT time limit (default 10 s of solver work; the result says whether it proved optimality)")


def add_output_args(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--trace", metavar="FILE", help="write the best schedule's timeline as a Chrome/Perfetto trace")
    p.add_argument("--gantt", metavar="PNG", help="draw the best schedule as a Gantt chart")


def machine_from_args(args) -> Machine:
    if args.gpus < 1:
        raise HiosError(f"--gpus must be at least 1, got {args.gpus}")
    if not 0 <= args.alpha <= 1:
        raise HiosError(f"--alpha must be in [0, 1], got {args.alpha}")
    return Machine(args.gpus, link_preset(args.link))


def scheduler_options(args) -> dict:
    for k in ("window", "streams"):
        v = getattr(args, k)
        if v is not None and v < 1:
            raise HiosError(f"--{k} must be at least 1, got {v}")
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        raise HiosError(f"--time-limit must be a finite number of seconds > 0, got {args.time_limit}")
    return {"window": args.window, "streams": args.streams, "intra": False if args.no_intra else None,
            "time_limit": args.time_limit}


def emit(cmp, args, extra: dict | None = None) -> None:
    """Print the table or JSON, and write trace/Gantt of the best schedule."""
    best = cmp.best
    if args.trace:
        write_trace(args.trace, cmp.graph, cmp.schedules[best], cmp.results[best])
    if args.gantt:
        write_gantt(args.gantt, cmp.graph, cmp.schedules[best], cmp.results[best])
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
    graph = load_graph(args.graph)
    machine = machine_from_args(args)
    given = None
    if args.schedule:
        if args.algo:
            raise HiosError("give either --schedule or --algo, not both")
        given = load_schedule(args.schedule, graph, machine.gpus)
        algos = []
    else:
        algos = parse_algorithms(args.algo or default_algorithm(), graph)
    cmp = compare(graph, machine, algos, scheduler_options(args), HIOSStageModel(args.alpha),
                  args.serialize_links, given,
                  progress=lambda a: print(f"scheduling with {a}...", file=sys.stderr) if len(algos) > 1 else None)
    if args.output:
        cmp.schedules[cmp.best].save(args.output)
    emit(cmp, args)
    return 0
