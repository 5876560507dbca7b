"""How the schedulers scale: seconds and peak memory from 200 to 20,000 operators, 2-8 GPUs.

Graphs: ``layered_dag(n, 2n, layers, 0.8, seed=1)`` (what ``hios generate --nodes n --edges 2n
--comm-ratio 0.8 --layers L`` writes), with ``L = max(8, ceil(sqrt(n / 5)))`` inner layers: the
generator caps a layer at 10 L operators, so the default 8 layers cannot hold more than 642
operators.  Machine: the NVLink-H100 preset with 2, 4 and 8 GPUs; HIOS stage model.

For each (algorithm, operators, GPUs) cell the scheduler runs ``--repeats`` times (one run from
10,000 operators on); the CPU time of this process (``time.process_time``, robust to other jobs
on a shared machine) and the wall time of each run are recorded and the median reported.  One
more run under ``tracemalloc`` gives the peak of Python memory allocated by the scheduler (not
done when the timed run took over ``--mem-cap`` CPU seconds: tracemalloc slows Python down
several times).  Algorithms: sequential, HEFT, IOS, HIOS-LP and HIOS-MR with and without the
intra-GPU step.  ``optimal`` (CP-SAT) is left out: it is bounded by its own time limit and
refuses large graphs.  The stated cap: a cell is skipped when the quadratic extrapolation of the
algorithm's previous size at the same GPU count predicts more than ``--cap`` CPU seconds per run;
skipped cells are listed.

``--sweep N`` also runs the random sweep of ``tests/test_scheduler_scale.py`` on N graphs (2-8
GPUs, with and without ``serialize_links``): each scheduler twice (outputs must be identical) and
compared with sequential under the same link model.

Outputs under ``--out`` (default ``benchmarks/results/``): ``scheduler_scale.csv`` and
``scheduler_scale.png`` (log-log seconds and peak memory against operators, one panel per GPU
count); the table is printed.

    python benchmarks/scheduler_scale.py                       # full run (long: see the doc page)
    python benchmarks/scheduler_scale.py --quick               # smoke run, under a minute
    python benchmarks/scheduler_scale.py --sizes 20000 --gpus 4 --algos hios-lp+intra --cap 900
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from datetime import datetime, timezone
from pathlib import Path

from hios.cost.costmodel import HIOSStageModel
from hios.generate import layered_dag
from hios.machine import Machine
from hios.schedulers import schedule
from hios.simulator import Simulator
from hios.cost.timing import cpu_name

#: label -> (algorithm, options)
VARIANTS: dict[str, tuple[str, dict]] = {
    "sequential": ("sequential", {}),
    "heft": ("heft", {}),
    "ios": ("ios", {}),
    "hios-lp": ("hios-lp", {"intra": False}),
    "hios-lp+intra": ("hios-lp", {"intra": True}),
    "hios-mr": ("hios-mr", {"intra": False}),
    "hios-mr+intra": ("hios-mr", {"intra": True}),
}
SIZES = [200, 500, 1000, 2000, 5000, 10000, 20000]
GPUS = [2, 4, 8]


def layers_for(n: int) -> int:
    return max(8, math.ceil(math.sqrt(n / 5)))


def run_cell(graph, gpus: int, label: str, repeats: int, mem_cap: float) -> dict:
    algo, opts = VARIANTS[label]
    m = Machine.preset(gpus)
    model = HIOSStageModel()
    cpu, wall = [], []
    s = None
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        s = schedule(graph, m, algo, stage_model=model, **opts)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    peak = None
    if statistics.median(cpu) <= mem_cap:
        tracemalloc.start()
        try:
            schedule(graph, m, algo, stage_model=model, **opts)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    lat = Simulator(graph, m, model).simulate(s).latency
    return {"algorithm": label, "operators": len(graph.ops), "edges": len(graph.edges),
            "layers": layers_for(len(graph.ops)), "gpus": gpus, "repeats": repeats,
            "cpu_s": statistics.median(cpu), "wall_s": statistics.median(wall),
            "peak_mib": peak, "latency_ms": lat}


def run_sweep(count: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_scheduler_scale import SWEEP_ALGOS, sweep_case  # noqa: E402  (the CI test's graphs)
    worse, differ, cases = 0, 0, 0
    for k in range(count):
        g, gpus, ser = sweep_case(k)
        m = Machine.preset(gpus)
        sim = Simulator(g, m, HIOSStageModel(), ser)
        seq = sim.simulate(schedule(g, m, "sequential")).latency
        for algo in SWEEP_ALGOS:
            a = schedule(g, m, algo, stage_model=HIOSStageModel(), serialize_links=ser)
            b = schedule(g, m, algo, stage_model=HIOSStageModel(), serialize_links=ser)
            cases += 1
            differ += a.stages != b.stages
            worse += sim.simulate(a).latency > seq * (1 + 1e-12)
    return {"graphs": count, "runs": cases, "worse_than_sequential": worse, "not_deterministic": differ}


def table(rows: list[dict]) -> str:
    head = ("algorithm", "ops", "GPUs", "CPU s", "wall s", "peak MiB", "latency ms")
    out = [head]
    for r in rows:
        out.append((r["algorithm"], str(r["operators"]), str(r["gpus"]), f"{r['cpu_s']:.3f}", f"{r['wall_s']:.3f}",
                    "-" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}", f"{r['latency_ms']:.2f}"))
    w = [max(len(x[k]) for x in out) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w[k]) if k == 0 else c.rjust(w[k]) for k, c in enumerate(x)) for x in out]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def fit_exponent(pts: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(CPU s) against log(operators): t ~ n ** slope."""
    pts = [(math.log(n), math.log(t)) for n, t in pts if t > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


def slopes(rows: list[dict]) -> list[str]:
    """Fitted exponent of CPU time against operators over the sizes from 1,000 operators on."""
    out = []
    for label in VARIANTS:
        for g in sorted({r["gpus"] for r in rows}):
            pts = sorted((r["operators"], r["cpu_s"]) for r in rows if r["algorithm"] == label and r["gpus"] == g
                         and r["operators"] >= 1000 and r["cpu_s"] > 0)
            k = fit_exponent(pts)
            if k is not None:
                out.append(f"{label}, {g} GPUs: fitted exponent {k:.2f} over {len(pts)} sizes "
                           f"({pts[0][0]}-{pts[-1][0]} ops)")
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    gpus = sorted({r["gpus"] for r in rows})
    panels = 2 if any(r["peak_mib"] is not None for r in rows) else 1
    fig, axes = plt.subplots(panels, len(gpus), figsize=(5 * max(2, len(gpus)), 4 * panels + 0.5), squeeze=False)
    for j, g in enumerate(gpus):
        for label in VARIANTS:
            pts = sorted((r["operators"], r["cpu_s"], r["peak_mib"]) for r in rows
                         if r["algorithm"] == label and r["gpus"] == g)
            if not pts:
                continue
            k = fit_exponent([(p[0], p[1]) for p in pts if p[0] >= 1000])
            name = label if k is None else f"{label} (n^{k:.2f} from 1,000)"
            axes[0][j].plot([p[0] for p in pts], [max(p[1], 1e-5) for p in pts], "o-", label=name)
            mem = [(p[0], p[2]) for p in pts if p[2] is not None]
            if mem and panels == 2:
                axes[1][j].plot([p[0] for p in mem], [max(p[1], 1e-3) for p in mem], "o-", label=label)
        for i, what in enumerate(("CPU seconds (median)", "peak MiB (tracemalloc)")[:panels]):
            ax = axes[i][j]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("operators")
            ax.set_ylabel(what)
            ax.set_title(f"{g} GPUs")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][j].legend(fontsize=7)
    fig.suptitle("Scheduler scaling: layered_dag(n, 2n, max(8, ceil(sqrt(n/5))), 0.8),\nNVLink H100 preset", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 200 and 500 operators, 4 GPUs, 1 repeat")
    ap.add_argument("--sizes", default=None, help="comma-separated operator counts (default %s)" % SIZES)
    ap.add_argument("--gpus", default=None, help="comma-separated GPU counts (default %s)" % GPUS)
    ap.add_argument("--algos", default=None, help="comma-separated labels of %s" % list(VARIANTS))
    ap.add_argument("--repeats", type=int, default=3, help="runs per cell below 10,000 operators (default 3)")
    ap.add_argument("--cap", type=float, default=120.0, help="skip a cell predicted above this many CPU s per run")
    ap.add_argument("--mem-cap", type=float, default=30.0, help="no tracemalloc run above this many CPU s")
    ap.add_argument("--sweep", type=int, default=0, help="also run the random sweep on this many graphs")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    args = ap.parse_args(argv)
    sizes = [200, 500] if args.quick else SIZES
    gpus = [4] if args.quick else GPUS
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",")]
    if args.gpus:
        gpus = [int(x) for x in args.gpus.split(",")]
    labels = list(VARIANTS) if not args.algos else [x.strip() for x in args.algos.split(",")]
    for lb in labels:
        if lb not in VARIANTS:
            ap.error(f"unknown algorithm label {lb!r}; choose from {', '.join(VARIANTS)}")
    repeats = 1 if args.quick else args.repeats
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    rows, skipped = [], []
    last: dict[tuple[str, int], tuple[int, float]] = {}
    for n in sizes:
        graph = layered_dag(n, 2 * n, layers_for(n), 0.8, 1)
        for g in gpus:
            for label in labels:
                prev = last.get((label, g))
                if prev is not None:
                    pred = prev[1] * (n / prev[0]) ** 2
                    if pred > args.cap:
                        skipped.append(f"{label}, {n} ops, {g} GPUs: predicted {pred:.0f} CPU s > cap {args.cap:.0f}")
                        print("skip:", skipped[-1], file=sys.stderr, flush=True)
                        continue
                r = run_cell(graph, g, label, repeats if n < 10000 else 1, args.mem_cap)
                rows.append(r)
                last[(label, g)] = (n, r["cpu_s"])
                peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.1f}"
                print(f"{label:14s} {n:6d} ops {g} GPUs: {r['cpu_s']:.3f} CPU s, {r['wall_s']:.3f} wall s, "
                      f"peak {peak} MiB, latency {r['latency_ms']:.2f} ms", file=sys.stderr, flush=True)
    tag = f"_{args.tag}" if args.tag else ""
    if rows:
        with (out / f"scheduler_scale{tag}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        plot(rows, out / f"scheduler_scale{tag}.png")
    print(f"# scheduler scale, {started:%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(table(rows))
    for line in slopes(rows):
        print(line)
    for line in skipped:
        print("skipped:", line)
    if args.sweep:
        print("sweep:", run_sweep(args.sweep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
