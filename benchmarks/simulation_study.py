"""Simulation study on layered random DAGs, after the study of the HIOS work.

Five sweeps around a default point (200 operators, 400 edges, 8 layers, comm-to-compute ratio
0.8, 4 GPUs), one variable at a time: GPU count, comm ratio, operator count (edges = 2 x
operators, so that every size is feasible), edge count and layer count.  Each point is run with
several seeds; on each graph every registered variant below is scheduled, its schedule simulated
(the simulator is the judge; it also rejects invalid schedules) and compared to the lower bound
of :func:`hios.bounds.lower_bounds` under the same stage model:

    sequential, ios, hios-lp, hios-lp+intra, hios-mr, hios-mr+intra, heft

(``hios-x`` = HIOS-x with ``intra=False``, ``+intra`` with the intra-GPU sliding window.)
Variants whose algorithm is not registered are skipped with a warning.

A second part compares the schedulers to ``optimal`` (CP-SAT, one operator per stage) on graphs
of 20 operators (``layered_dag(20, 40, 3)``: 30 edges cannot link 3 layers of 18 operators).

Outputs under ``--out`` (default ``benchmarks/results/``): ``simulation_study.csv`` (one row per
graph and variant), ``simulation_vs_optimal.csv``, ``simulation_<sweep>.png`` (latency / lower
bound and optimize time vs the swept variable, mean over seeds) and ``simulation_summary.md``
(the tables printed at the end).

    python benchmarks/simulation_study.py            # full study
    python benchmarks/simulation_study.py --quick    # smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import csv
import inspect
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from hios.bounds import lower_bounds
from hios.cost.costmodel import HIOSStageModel
from hios.errors import HiosError
from hios.generate import layered_dag
from hios.machine import Machine
from hios.schedulers import ALGORITHMS, schedule
from hios.simulator import Simulator
from hios.cost.timing import cpu_name

DEFAULT = {"nodes": 200, "edges": 400, "layers": 8, "comm_ratio": 0.8, "gpus": 4}

#: label -> (algorithm, options)
VARIANTS: dict[str, tuple[str, dict]] = {
    "sequential": ("sequential", {}),
    "ios": ("ios", {}),
    "hios-lp": ("hios-lp", {"intra": False}),
    "hios-lp+intra": ("hios-lp", {"intra": True}),
    "hios-mr": ("hios-mr", {"intra": False}),
    "hios-mr+intra": ("hios-mr", {"intra": True}),
    "heft": ("heft", {}),
}

FULL_SWEEPS: dict[str, list] = {
    "gpus": [2, 3, 4, 6, 8, 10, 12],
    "comm_ratio": [0.1, 0.2, 0.4, 0.8, 1.6, 3.2],
    "nodes": [50, 100, 200, 300, 400, 500],
    "edges": [400, 600, 800, 1200, 1600, 2400],
    "layers": [5, 8, 11, 14, 17],
}
QUICK_SWEEPS: dict[str, list] = {
    "gpus": [2, 4],
    "comm_ratio": [0.4, 1.6],
    "nodes": [50, 100],
    "edges": [400, 800],
    "layers": [5, 8],
}


@dataclass
class Point:
    sweep: str
    value: float
    seed: int
    params: dict = field(default_factory=dict)


def available_variants(names: list[str] | None = None) -> dict[str, tuple[str, dict]]:
    """The variants whose algorithm is registered and accepts the options (others: warning)."""
    out = {}
    for label, (algo, opts) in VARIANTS.items():
        if names and label not in names:
            continue
        fn = ALGORITHMS.get(algo)
        if fn is None:
            print(f"warning: algorithm {algo!r} is not registered; skipping {label}", file=sys.stderr)
            continue
        params = inspect.signature(fn).parameters
        bad = [k for k in opts if k not in params]
        if bad:
            print(f"warning: {algo!r} has no option {bad[0]!r}; skipping {label}", file=sys.stderr)
            continue
        out[label] = (algo, opts)
    return out


def points(sweeps: dict[str, list], seeds: int) -> list[Point]:
    out = []
    for sweep, values in sweeps.items():
        for v in values:
            p = dict(DEFAULT)
            p[sweep] = v
            if sweep == "nodes":
                p["edges"] = 2 * v
            for s in range(1, seeds + 1):
                out.append(Point(sweep, v, s, p))
    return out


def run_point(pt: Point, variants, model, bar) -> list[dict]:
    p = pt.params
    try:
        g = layered_dag(p["nodes"], p["edges"], p["layers"], p["comm_ratio"], pt.seed)
    except HiosError as e:  # e.g. too few edges to link this seed's layers
        print(f"warning: skipping {pt.sweep}={pt.value} seed {pt.seed}: {e}", file=sys.stderr)
        bar.update(len(variants))
        return []
    m = Machine(p["gpus"])
    sim = Simulator(g, m, model)
    lb = lower_bounds(g, m.gpus, model)
    rows = []
    for label, (algo, opts) in variants.items():
        bar.set_postfix_str(f"{pt.sweep}={pt.value} seed={pt.seed} {label}", refresh=False)
        c0 = time.process_time()
        s = schedule(g, m, algo, stage_model=model, **opts)
        cpu = time.process_time() - c0
        lat = sim.simulate(s).latency
        rows.append({"sweep": pt.sweep, "value": pt.value, "seed": pt.seed, **p, "algorithm": label,
                     "latency_ms": lat, "lower_bound_ms": lb.value, "ratio_to_lb": lat / lb.value,
                     "optimize_s": s.meta["optimize_seconds"], "optimize_cpu_s": cpu,
                     "sequential_ms": g.total_work()})
        bar.update(1)
    return rows


def run_optimal(seeds: int, gpus_list: list[int], time_limit: float, model, variants) -> list[dict]:
    if "optimal" not in ALGORITHMS:
        print("warning: 'optimal' is not registered; skipping the comparison to optimal", file=sys.stderr)
        return []
    rows = []
    tasks = [(gp, s) for gp in gpus_list for s in range(1, seeds + 1)]
    with tqdm(total=len(tasks), desc="vs optimal", file=sys.stderr) as bar:
        for gp, seed in tasks:
            g = layered_dag(20, 40, 3, 0.8, seed)
            m = Machine(gp)
            sim = Simulator(g, m, model)
            try:
                opt = schedule(g, m, "optimal", stage_model=model, streams=1, time_limit=time_limit)
            except HiosError as e:  # OR-Tools missing
                print(f"warning: {e}; skipping the comparison to optimal", file=sys.stderr)
                return []
            opt_lat = sim.simulate(opt).latency
            for label, (algo, opts) in variants.items():
                s = schedule(g, m, algo, stage_model=model, **opts)
                lat = sim.simulate(s).latency
                rows.append({"gpus": gp, "seed": seed, "algorithm": label, "latency_ms": lat,
                             "optimal_ms": opt_lat, "ratio_to_optimal": lat / opt_lat,
                             "optimal_proven": opt.meta["proven_optimal"],
                             "optimal_s": opt.meta["optimize_seconds"], "optimize_s": s.meta["optimize_seconds"]})
            bar.update(1)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def mean_by(rows, keys, col):
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r[col])
    return {k: statistics.fmean(v) for k, v in groups.items()}


def table(rows, sweep, labels, col, fmt) -> str:
    sub = [r for r in rows if r["sweep"] == sweep]
    values = sorted({r["value"] for r in sub})
    avg = mean_by(sub, ("value", "algorithm"), col)
    head = f"| {sweep} | " + " | ".join(labels) + " |"
    lines = [head, "|" + "---|" * (len(labels) + 1)]
    for v in values:
        lines.append(f"| {v:g} | " + " | ".join(fmt.format(avg[(v, a)]) if (v, a) in avg else "-"
                                                 for a in labels) + " |")
    return "\n".join(lines)


def optimal_table(rows, labels) -> str:
    if not rows:
        return "(no comparison to optimal)"
    gpus = sorted({r["gpus"] for r in rows})
    avg = mean_by(rows, ("gpus", "algorithm"), "ratio_to_optimal")
    worst: dict[tuple, float] = {}
    near: dict[tuple, int] = {}
    count: dict[tuple, int] = {}
    for r in rows:
        k = (r["gpus"], r["algorithm"])
        worst[k] = max(worst.get(k, 0.0), r["ratio_to_optimal"])
        near[k] = near.get(k, 0) + (r["ratio_to_optimal"] <= 1.05)
        count[k] = count.get(k, 0) + 1
    lines = ["mean ratio (worst; graphs within 5 % of optimal)\n",
             "| GPUs | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for gp in gpus:
        lines.append(f"| {gp} | " + " | ".join(f"{avg[(gp, a)]:.3f} ({worst[(gp, a)]:.3f}; {near[(gp, a)]}/{count[(gp, a)]})"
                                               for a in labels) + " |")
    graphs = {(r["gpus"], r["seed"]): r for r in rows}.values()
    proven = sum(1 for r in graphs if r["optimal_proven"])
    t = statistics.fmean(r["optimal_s"] for r in graphs)
    lines.append(f"\noptimal proven on {proven} of {len(graphs)} graphs; mean CP-SAT time {t:.2f} s")
    return "\n".join(lines)


def plot(rows, sweep, labels, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = [r for r in rows if r["sweep"] == sweep]
    values = sorted({r["value"] for r in sub})
    ratio = mean_by(sub, ("value", "algorithm"), "ratio_to_lb")
    opt_t = mean_by(sub, ("value", "algorithm"), "optimize_cpu_s")
    fig, (a1, a3, a2) = plt.subplots(1, 3, figsize=(17, 4.8))
    colors = {label: f"C{k}" for k, label in enumerate(VARIANTS)}
    single_gpu = {"sequential", "ios"}  # far above the others: shown on the left panel only
    for label in labels:
        xs = [v for v in values if (v, label) in ratio]
        style = {"marker": "o", "label": label, "color": colors.get(label)}
        a1.plot(xs, [ratio[(v, label)] for v in xs], **style)
        if label not in single_gpu:
            a3.plot(xs, [ratio[(v, label)] for v in xs], **style)
        if label != "sequential":
            a2.plot(xs, [max(opt_t[(v, label)], 1e-5) for v in xs], **style)
    a1.set_yscale("log")
    a1.set_ylabel("latency / lower bound (log)")
    a1.set_title(f"latency over lower bound vs {sweep}")
    a3.set_ylabel("latency / lower bound")
    a3.set_title("multi-GPU schedulers only")
    a2.set_yscale("log")
    a2.set_ylabel("optimize CPU time (s, log)")
    a2.set_title(f"optimize CPU time vs {sweep}")
    for ax in (a1, a3, a2):
        ax.set_xlabel(sweep)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    d = DEFAULT
    fig.suptitle(f"layered DAGs, defaults: {d['nodes']} ops, {d['edges']} edges, {d['layers']} layers, "
                 f"ratio {d['comm_ratio']}, {d['gpus']} GPUs; mean over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="benchmarks/results", help="output folder (default benchmarks/results)")
    ap.add_argument("--quick", action="store_true", help="smoke run: two values per sweep, one seed")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per point (default 10; quick 1)")
    ap.add_argument("--sweeps", default=None, help=f"comma list of sweeps (default all: {','.join(FULL_SWEEPS)})")
    ap.add_argument("--variants", default=None, help=f"comma list of variants (default all: {','.join(VARIANTS)})")
    ap.add_argument("--alpha", type=float, default=0.5, help="alpha of the HIOS stage model (default 0.5)")
    ap.add_argument("--optimal-seeds", type=int, default=None, help="graphs per GPU count vs optimal (default 20; quick 1)")
    ap.add_argument("--optimal-gpus", default="2,4", help="GPU counts of the comparison to optimal (default 2,4)")
    ap.add_argument("--optimal-time-limit", type=float, default=None,
                    help="CP-SAT seconds per graph (default 20; quick 2)")
    args = ap.parse_args(argv)

    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 10)
    opt_seeds = args.optimal_seeds if args.optimal_seeds is not None else (1 if args.quick else 20)
    opt_limit = args.optimal_time_limit if args.optimal_time_limit is not None else (2.0 if args.quick else 20.0)
    sweeps = QUICK_SWEEPS if args.quick else FULL_SWEEPS
    if args.sweeps:
        names = [s.strip() for s in args.sweeps.split(",") if s.strip()]
        unknown = [s for s in names if s not in sweeps]
        if unknown:
            ap.error(f"unknown sweep {unknown[0]!r}; choose from {', '.join(sweeps)}")
        sweeps = {k: sweeps[k] for k in names}
    variants = available_variants([v.strip() for v in args.variants.split(",")] if args.variants else None)
    if not variants:
        ap.error("no variant to run")
    labels = list(variants)
    model = HIOSStageModel(args.alpha)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    pts = points(sweeps, seeds)
    rows: list[dict] = []
    skipped = 0
    with tqdm(total=len(pts) * len(variants), desc="simulation study", file=sys.stderr) as bar:
        for pt in pts:
            got = run_point(pt, variants, model, bar)
            skipped += not got
            rows += got
    write_csv(out / "simulation_study.csv", rows)
    for sweep in sweeps:
        plot(rows, sweep, labels, out / f"simulation_{sweep}.png")

    opt_rows = run_optimal(opt_seeds, [int(x) for x in args.optimal_gpus.split(",")], opt_limit,
                           model, {k: v for k, v in variants.items() if k != "sequential"})
    write_csv(out / "simulation_vs_optimal.csv", opt_rows)
    total = time.perf_counter() - t0

    parts = [f"# Simulation study ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
             f"CPU: {cpu_name()}, Python {platform.python_version()}; "
             f"{os.cpu_count()} cores; {seeds} seed(s) per point; stage model HIOS alpha={args.alpha}; total run {total:.0f} s; "
             f"1-min load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end.  Optimize times are CPU "
             "times of the process (`time.process_time`, robust to the load); the CSV also has wall times.",
             f"Defaults: {DEFAULT} (operator sweep: edges = 2 x operators); "
             f"{len(pts) - skipped} graphs ({skipped} parameter/seed combinations the generator rejected)."]
    for sweep in sweeps:
        parts.append(f"\n## {sweep}: mean latency / lower bound\n\n" + table(rows, sweep, labels, "ratio_to_lb", "{:.3f}"))
        parts.append(f"\n{sweep}: mean optimize CPU time (s)\n\n" + table(rows, sweep, labels, "optimize_cpu_s", "{:.4f}"))
    overall = mean_by(rows, ("algorithm",), "ratio_to_lb")
    overall_t = mean_by(rows, ("algorithm",), "optimize_s")
    overall_c = mean_by(rows, ("algorithm",), "optimize_cpu_s")
    parts.append("\n## All points: mean latency / lower bound, mean optimize time\n\n"
                 "| algorithm | ratio | optimize CPU s | optimize wall s |\n|---|---|---|---|\n"
                 + "\n".join(f"| {a} | {overall[(a,)]:.3f} | {overall_c[(a,)]:.4f} | {overall_t[(a,)]:.4f} |"
                              for a in labels))
    parts.append(f"\n## Ratio to optimal (layered_dag(20, 40, 3, 0.8), {opt_seeds} seed(s) per GPU count, "
                 f"CP-SAT limit {opt_limit:g} s)\n\n"
                 + optimal_table(opt_rows, [k for k in labels if k != "sequential"]))
    summary = "\n".join(parts) + "\n"
    (out / "simulation_summary.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
