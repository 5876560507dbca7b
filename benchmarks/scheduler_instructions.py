"""Instructions per HIOS-LP + intra call, and per step, counted by valgrind (independent of load).

On a shared machine the CPU time of a 0.03 s call moves by 2x with other jobs; the number of
instructions does not.  Each count is that of a process running the step ``--calls`` times minus
that of a process running it once, divided by ``--calls - 1`` (so imports and set-up cancel),
under ``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0``.  Graph: the 200-operator graph of
``benchmarks/scheduler_scale.py`` (``--ops``), 4 GPUs (``--gpus``), HIOS stage model.

Steps (the default mode's, as ``hios_lp`` runs them): ``setup`` (simulator, fast evaluator, rank
order), ``map`` (longest-path placement), ``refine`` (exact refinement), ``list`` (list order and
its latency), ``intra`` (intra-GPU walk), ``final`` (the ``Schedule`` object) and ``all`` (one
``hios.schedule`` call).  Garbage collections fall where the allocations put them, so a step's
count can move by ~0.5 M between code versions with no change of its own; ``all`` is the number
to compare.

    python benchmarks/scheduler_instructions.py                  # all steps, 200 operators
    python benchmarks/scheduler_instructions.py --steps all --ops 2000 --calls 2
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys

STEPS = ["setup", "map", "refine", "list", "intra", "final", "all"]


def run_step(step: str, calls: int, ops: int, gpus: int) -> None:
    """Run ``step`` ``calls`` times (inside valgrind)."""
    from hios.cost.costmodel import HIOSStageModel
    from hios.generate import layered_dag
    from hios.machine import Machine
    from hios.schedule import Schedule
    from hios.schedulers import schedule
    from hios.schedulers.hios_lp import longest_path_mapping
    from hios.schedulers.intra_gpu import improve_stages
    from hios.schedulers.list_order import list_schedule_order
    from hios.schedulers.mapping_steps import stages_from_mapping
    from hios.schedulers.refine import refine_mapping_budget
    from hios.schedulers.timing_engine import FastTimer, lst_ranks, search_machine
    from hios.simulator import Simulator

    g = layered_dag(ops, 2 * ops, max(8, math.ceil(math.sqrt(ops / 5))), 0.8, 1)
    m = Machine.preset(gpus)
    model = HIOSStageModel()

    def setup():
        timer = FastTimer(Simulator(g, search_machine(g, m), model, False))
        return timer, lst_ranks(timer)

    timer, rank = setup()
    mapping, _ = longest_path_mapping(timer, rank, False)
    known: dict = {}
    refined, _, _ = refine_mapping_budget(timer, rank, mapping, 2, math.inf, known)
    by_rank = stages_from_mapping(refined, rank, timer.gpus)
    listed = list_schedule_order(timer, refined, rank)
    best = listed if timer.latency(listed) < known["refined"] else by_rank
    grouped, _ = improve_stages(timer, best, exact=False)
    work = {
        "setup": setup,
        "map": lambda: longest_path_mapping(timer, rank, False),
        "refine": lambda: refine_mapping_budget(timer, rank, mapping, 2, math.inf, {}),
        "list": lambda: timer.latency(list_schedule_order(timer, refined, rank)),
        "intra": lambda: improve_stages(timer, best, exact=False),
        "final": lambda: Schedule.from_indices(g, grouped, "hios-lp", {}),
        "all": lambda: schedule(g, m, "hios-lp", stage_model=model, intra=True),
    }[step]
    for _ in range(calls):
        work()


def count(step: str, calls: int, ops: int, gpus: int) -> int:
    """Instructions of a process running ``step`` ``calls`` times."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
           "--inner", step, "--calls", str(calls), "--ops", str(ops), "--gpus", str(gpus)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or m is None:
        raise SystemExit(f"valgrind run failed: {out.stderr.strip().splitlines()[-1:]}")
    return int(m.group(1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default=",".join(STEPS), help="comma-separated steps of %s" % STEPS)
    ap.add_argument("--ops", type=int, default=200)
    ap.add_argument("--gpus", type=int, default=4)
    ap.add_argument("--calls", type=int, default=4, help="calls in the longer run (at least 2; default 4)")
    ap.add_argument("--inner", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.inner:
        run_step(args.inner, args.calls, args.ops, args.gpus)
        return 0
    steps = [s.strip() for s in args.steps.split(",")]
    for s in steps:
        if s not in STEPS:
            ap.error(f"unknown step {s!r}; choose from {', '.join(STEPS)}")
    if args.calls < 2:
        ap.error("--calls must be at least 2")
    if shutil.which("valgrind") is None:
        print("valgrind not found: instruction counts need it", file=sys.stderr)
        return 2
    print(f"# instructions per call, {args.ops} operators, {args.gpus} GPUs, (run of {args.calls} - run of 1) / "
          f"{args.calls - 1}, Python {sys.version.split()[0]}")
    for s in steps:
        per = (count(s, args.calls, args.ops, args.gpus) - count(s, 1, args.ops, args.gpus)) / (args.calls - 1)
        print(f"{s:7s} {per / 1e6:9.2f} M", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
