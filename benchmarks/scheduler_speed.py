"""Speed and quality of the HIOS schedulers (HIOS-LP, HIOS-MR, with and without the intra-GPU
step and the refinement passes).

Part 1, speed: on ``layered_dag(200, 400, 8, 0.8, seed)`` with 4 GPUs (NVLink H100 preset) for
several seeds, run every variant ``--repeat`` times and record the wall time (``time.perf_counter``)
and the CPU time of this process (``time.process_time``, less sensitive to other processes on a
shared machine) of one ``hios.schedulers.schedule`` call; the best and the median of the repeats
are reported with the simulated latency.

Part 2, quality: on graphs of 20 operators (``layered_dag(20, 40, L, 0.8, seed)``, L = 3 and 4)
with 2, 3 and 4 GPUs, the latency of each variant divided by the latency of ``optimal`` (CP-SAT,
best mapping and order with one operator per stage).  Skipped when ``optimal`` is not registered
or OR-Tools is missing.  A ratio below 1 is possible: the intra-GPU step groups operators into
concurrent stages, which ``optimal`` does not.

Outputs under ``--out`` (default ``benchmarks/results/``): ``scheduler_speed.csv``,
``scheduler_quality.csv``; the tables are printed.

    python benchmarks/scheduler_speed.py              # full run (a few minutes, mostly CP-SAT)
    python benchmarks/scheduler_speed.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

from hios.errors import HiosError
from hios.generate import layered_dag
from hios.machine import Machine
from hios.schedulers import ALGORITHMS, schedule
from hios.simulator import Simulator

#: label -> (algorithm, options)
VARIANTS: dict[str, tuple[str, dict]] = {
    "hios-lp+intra": ("hios-lp", {}),
    "hios-lp": ("hios-lp", {"intra": False}),
    "hios-lp+intra refine=0": ("hios-lp", {"refine": 0}),
    "hios-lp refine=0": ("hios-lp", {"intra": False, "refine": 0}),
    "hios-mr+intra": ("hios-mr", {}),
    "hios-mr": ("hios-mr", {"intra": False}),
    "hios-mr+intra refine=0": ("hios-mr", {"refine": 0}),
    "hios-mr refine=0": ("hios-mr", {"intra": False, "refine": 0}),
    "heft": ("heft", {}),
}


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))) for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def speed(seeds: list[int], repeat: int, gpus: int, out: Path) -> None:
    variants = {k: v for k, v in VARIANTS.items() if v[0] in ALGORITHMS}
    recs = []
    for seed in tqdm(seeds, desc="speed", file=sys.stderr):
        g = layered_dag(200, 400, 8, 0.8, seed)
        m = Machine.preset(gpus)
        sim = Simulator(g, m)
        for label, (algo, opts) in variants.items():
            walls, cpus = [], []
            for _ in range(repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                s = schedule(g, m, algo, **opts)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
            recs.append({"seed": seed, "variant": label, "latency_ms": sim.simulate(s).latency,
                         "wall_best_s": min(walls), "wall_median_s": statistics.median(walls),
                         "cpu_best_s": min(cpus), "cpu_median_s": statistics.median(cpus)})
    with open(out / "scheduler_speed.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(recs[0]))
        w.writeheader()
        w.writerows(recs)
    rows = [["variant", "latency ms (mean)", "wall best s", "wall median s", "cpu best s", "cpu median s",
             "worst wall median s"]]
    for label in variants:
        r = [x for x in recs if x["variant"] == label]
        mean = lambda k: statistics.mean(x[k] for x in r)  # noqa: E731
        rows.append([label, f"{mean('latency_ms'):.3f}", f"{mean('wall_best_s'):.4f}", f"{mean('wall_median_s'):.4f}",
                     f"{mean('cpu_best_s'):.4f}", f"{mean('cpu_median_s'):.4f}",
                     f"{max(x['wall_median_s'] for x in r):.4f}"])
    print(f"\nSpeed: layered_dag(200, 400, 8, 0.8, seed) for seeds {seeds[0]}..{seeds[-1]}, {gpus} GPUs, "
          f"{repeat} repeats (means over seeds)")
    print(table(rows))


def quality(seeds: list[int], layer_counts: list[int], gpu_counts: list[int], time_limit: float, out: Path) -> None:
    if "optimal" not in ALGORITHMS:
        print("\nQuality: skipped ('optimal' is not registered)")
        return
    variants = {k: v for k, v in VARIANTS.items() if v[0] in ALGORITHMS}
    recs = []
    cases = [(L, G, s) for L in layer_counts for G in gpu_counts for s in seeds]
    for L, G, seed in tqdm(cases, desc="quality (CP-SAT)", file=sys.stderr):
        g = layered_dag(20, 40, L, 0.8, seed)
        m = Machine.preset(G)
        sim = Simulator(g, m)
        try:
            o = schedule(g, m, "optimal", streams=1, time_limit=time_limit)  # one op per stage
        except HiosError as e:
            print(f"\nQuality: skipped ({e})")
            return
        best = sim.simulate(o).latency
        for label, (algo, opts) in variants.items():
            lat = sim.simulate(schedule(g, m, algo, **opts)).latency
            recs.append({"layers": L, "gpus": G, "seed": seed, "variant": label, "latency_ms": lat,
                         "optimal_ms": best, "proven_optimal": o.meta.get("proven_optimal"), "ratio": lat / best})
    with open(out / "scheduler_quality.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(recs[0]))
        w.writeheader()
        w.writerows(recs)
    proven = sum(1 for x in recs if x["variant"] == next(iter(variants)) and x["proven_optimal"])
    groups = [(f"L={L}", [x for x in recs if x["layers"] == L]) for L in layer_counts]
    groups += [(f"{G} GPUs", [x for x in recs if x["gpus"] == G]) for G in gpu_counts]
    groups.append(("all", recs))
    rows = [["variant"] + [name for name, _ in groups] + ["max (all)", "<= 1.05 (all)"]]
    for label in variants:
        row = [label]
        for _, rs in groups:
            row.append(f"{statistics.mean(x['ratio'] for x in rs if x['variant'] == label):.4f}")
        allr = [x["ratio"] for x in recs if x["variant"] == label]
        row += [f"{max(allr):.4f}", f"{sum(r <= 1.05 for r in allr)}/{len(allr)}"]
        rows.append(row)
    print(f"\nQuality: mean latency / optimal on layered_dag(20, 40, L, 0.8, seed), seeds {seeds[0]}..{seeds[-1]}, "
          f"{len(cases)} graphs ({proven} proven optimal within {time_limit} s)")
    print(table(rows))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="graphs for the speed part (default 5)")
    p.add_argument("--repeat", type=int, default=5, help="runs of each variant per graph (default 5)")
    p.add_argument("--gpus", type=int, default=4)
    p.add_argument("--quality-seeds", type=int, default=20, help="graphs per (layers, GPUs) for part 2 (default 20)")
    p.add_argument("--time-limit", type=float, default=10.0, help="CP-SAT seconds per graph (default 10)")
    p.add_argument("--no-quality", action="store_true", help="skip part 2")
    p.add_argument("--quick", action="store_true", help="2 seeds, 2 repeats, 3 quality seeds")
    p.add_argument("--out", default="benchmarks/results", help="output folder (default benchmarks/results/)")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.repeat, a.quality_seeds = 2, 2, 3
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    speed(list(range(1, a.seeds + 1)), a.repeat, a.gpus, out)
    if not a.no_quality:
        quality(list(range(1, a.quality_seeds + 1)), [3, 4], [2, 3, 4], a.time_limit, out)
    print(f"\nCSV written under {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
