"""``hios simulate``: schedule a graph file with one or more algorithms and simulate the result."""

from __future__ import annotations

import json
import sys

from ..errors import HiosError
from ..formats import load_graph
from ..outputs import GRAPH, IMAGE, JSON, OutputSet
from ..report import compare, format_table
from ..schedule import load_schedule
from ..viz import write_gantt, write_trace
from .arguments import add_machine_args, add_output_args, add_scheduler_args, schedule_options, stage_model


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
        outputs.add_input(args.graph, "input graph")
        outputs.add_input(args.schedule, "input schedule")
        if args.schedule and args.algo is not None:
            raise HiosError("give either --schedule or --algo, not both")
        opts = schedule_options(args)
        stage = stage_model(args)
        machine = opts.machine()
        graph = load_graph(args.graph)
        given = load_schedule(args.schedule, graph, machine.gpus) if args.schedule else None
        algos = [] if given is not None else opts.algorithms_for(graph)
        cmp = compare(graph, machine, algos, opts.scheduler_kwargs(), stage, opts.serialize_links, given,
                      progress=lambda a: print(f"scheduling with {a}...", file=sys.stderr) if len(algos) > 1 else None,
                      note=lambda line: print(line, file=sys.stderr))
        outputs.stage(args.output, cmp.schedules[cmp.best].save)
        emit(cmp, args, outputs=outputs)
        outputs.commit()
    return 0
