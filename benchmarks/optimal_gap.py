"""The true optimality gap of HIOS-LP + intra: against the exact optimum of the whole HIOS problem.

For ``--graphs`` graphs ``layered_dag(n, 2n, 4, 0.8, seed)`` (n cycling through ``--sizes``,
then 2, 3 and 4 GPUs in turn for each round of sizes, NVLink H100 preset, HIOS stage model alpha 0.5, up to 4 streams):

  * ``hios-lp`` with its intra-GPU step (the default), simulated;
  * ``optimal`` with ``streams=1``: the old model, best mapping and order with one operator
    per stage (``--old-limit`` seconds of solver work);
  * ``optimal`` (the whole problem: mapping, order and concurrent stages; ``--time-limit``
    seconds of solver work, 1 worker, seed 0): simulated latency, CP-SAT status, bound.

Gap of HIOS-LP + intra = latency / optimum - 1 on the graphs where the optimum is proven.  The
graph with the largest gap is drawn twice as Gantt charts (HIOS-LP + intra, optimum).

Outputs under ``--out`` (default ``benchmarks/results/``): ``optimal_gap.csv``,
``optimal_gap_worst_hios_lp.png``, ``optimal_gap_worst_optimal.png``; the table is printed.

``--no-intra``: the mapping-and-order problem instead (one operator per stage, as
``hios simulate G --algo hios-lp,optimal --no-intra``), on the study graphs of issue 22:
``layered_dag(30, 70, 5, 0.8, seed)`` (= ``hios generate --nodes 30 --edges 70 --layers 5
--comm-ratio 0.8 --seed S``) for ``--seeds`` (default 1-5) on ``--gpus`` (default 2) GPUs, the
link preset of ``hios simulate``.  For each: HIOS-LP without its intra-GPU step, ``optimal
--no-intra`` (``--time-limit`` seconds of work), HIOS-LP's gap to the optimum, and for context
HIOS-LP with its intra-GPU step (stages of several operators, outside this optimum's space).
Writes ``optimal_gap_no_intra.csv``.

    python benchmarks/optimal_gap.py                 # 24 graphs of 10-20 operators (~10 min on 2 cores)
    python benchmarks/optimal_gap.py --graphs 3 --sizes 8 --time-limit 5   # smoke run
    python benchmarks/optimal_gap.py --no-intra --time-limit 30             # the 30-operator study graphs
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

from hios.generate import layered_dag
from hios.machine import DEFAULT_LINK, Machine, link_preset
from hios.schedulers import schedule
from hios.simulator import Simulator
from hios.viz import write_gantt
from hios.cost.timing import cpu_name


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths))) for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def run_one(seed: int, n: int, gpus: int, time_limit: float, old_limit: float) -> tuple[dict, dict]:
    g = layered_dag(n, 2 * n, 4, 0.8, seed)
    m = Machine.preset(gpus)
    sim = Simulator(g, m)
    hios = schedule(g, m, "hios-lp")
    old = schedule(g, m, "optimal", streams=1, time_limit=old_limit)
    t0 = time.perf_counter()
    opt = schedule(g, m, "optimal", time_limit=time_limit)
    secs = time.perf_counter() - t0
    h_lat, o_lat, old_lat = (sim.simulate(s).latency for s in (hios, opt, old))
    row = {"graph": g.name, "operators": n, "edges": len(g.edges), "gpus": gpus,
           "hios_lp_intra_ms": h_lat,
           "old_one_op_per_stage_ms": old_lat, "old_proven": old.meta["proven_optimal"],
           "optimal_ms": o_lat, "status": opt.meta["status"], "proven": opt.meta["proven_optimal"],
           "bound_ms": opt.meta["bound"], "solver_gap": opt.meta["gap"],
           "stopped_by": opt.meta["stopped_by"] or "",
           "hios_gap": h_lat / o_lat - 1, "hios_gap_to_bound": h_lat / opt.meta["bound"] - 1,
           "concurrent_stages": sum(len(st) > 1 for sts in opt.stages for st in sts),
           "optimal_s": secs}
    return row, {"graph": g, "sim": sim, "hios": hios, "opt": opt}


def run_no_intra(seed: int, gpus: int, time_limit: float) -> dict:
    """One study graph, one operator per stage: HIOS-LP against the mapping-and-order optimum."""
    g = layered_dag(30, 70, 5, 0.8, seed)
    m = Machine(gpus, link_preset(DEFAULT_LINK))
    sim = Simulator(g, m)
    hios = schedule(g, m, "hios-lp", intra=False)
    hios_intra = schedule(g, m, "hios-lp")
    t0 = time.perf_counter()
    opt = schedule(g, m, "optimal", intra=False, time_limit=time_limit)
    secs = time.perf_counter() - t0
    h_lat, hi_lat, o_lat = (sim.simulate(s).latency for s in (hios, hios_intra, opt))
    mt = opt.meta
    return {"graph": g.name, "seed": seed, "operators": len(g.ops), "edges": len(g.edges), "gpus": gpus,
            "hios_lp_ms": h_lat, "optimal_ms": o_lat, "model": mt["model"], "status": mt["status"],
            "proven": mt["proven_optimal"], "bound_ms": mt["bound"], "rounding_slack_ms": mt["rounding_slack"],
            "hios_gap": h_lat / o_lat - 1, "hios_lp_intra_ms": hi_lat, "hios_intra_vs_optimal": hi_lat / o_lat - 1,
            "stopped_by": mt["stopped_by"] or "", "work": mt["work"], "time_limit": time_limit, "optimal_s": secs}


def main_no_intra(args, out: Path) -> None:
    seeds = [int(x) for x in args.seeds.split(",")]
    rows = []
    t_all = time.perf_counter()
    for seed in seeds:
        r = run_no_intra(seed, args.gpus, args.time_limit)
        rows.append(r)
        print(f"[{seed}] {r['graph']}: {r['status']} optimal {r['optimal_ms']:.4f} hios-lp {r['hios_lp_ms']:.4f} "
              f"({r['optimal_s']:.1f} s)", flush=True)
    total = time.perf_counter() - t_all
    write_csv(out / "optimal_gap_no_intra.csv", rows)
    head = ["graph", "GPUs", "HIOS-LP ms", "optimum ms", "status", "bound ms", "HIOS-LP gap %",
            "HIOS-LP+intra ms", "solve s", "work"]
    body = [[r["graph"], str(r["gpus"]), f"{r['hios_lp_ms']:.4f}", f"{r['optimal_ms']:.4f}",
             r["status"] + ("" if r["proven"] else " (not proven)"), f"{r['bound_ms']:.4f}",
             f"{100 * r['hios_gap']:.2f}", f"{r['hios_lp_intra_ms']:.4f}", f"{r['optimal_s']:.1f}",
             f"{r['work']:.3f}"] for r in rows]
    print(table([head] + body))
    proven = [r for r in rows if r["proven"]]
    print(f"\n{cpu_name()}, {len(rows)} graphs, total {total:.0f} s; mapping-and-order optimum proven on "
          f"{len(proven)} of {len(rows)} (time limit {args.time_limit:g} s of work each, optimal to within "
          f"2 x the rounding slack, at most {2 * max(r['rounding_slack_ms'] for r in rows) * 1000:.2f} us)")
    if proven:
        gaps = [r["hios_gap"] for r in proven]
        print(f"HIOS-LP (no intra) vs the proven optimum: mean gap {100 * statistics.mean(gaps):.2f} %, "
              f"worst {100 * max(gaps):.2f} %; HIOS-LP + intra vs it: mean "
              f"{100 * statistics.mean(r['hios_intra_vs_optimal'] for r in proven):+.2f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", type=int, default=24)
    ap.add_argument("--sizes", default="10,12,14,16,18,20", help="operator counts, cycled")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds of solver work per graph (full problem)")
    ap.add_argument("--old-limit", type=float, default=5.0, help="seconds of solver work per graph (one op per stage)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--no-intra", action="store_true", help="mapping and order on the 30-operator study graphs")
    ap.add_argument("--seeds", default="1,2,3,4,5", help="--no-intra: graph seeds")
    ap.add_argument("--gpus", type=int, default=2, help="--no-intra: GPUs")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.no_intra:
        main_no_intra(args, out)
        return
    rows, keep = [], {}
    t_all = time.perf_counter()
    for k in range(args.graphs):
        n = sizes[k % len(sizes)]
        gpus = 2 + (k // len(sizes)) % 3
        row, objs = run_one(k + 1, n, gpus, args.time_limit, args.old_limit)
        rows.append(row)
        keep[row["graph"]] = objs
        print(f"[{k + 1}/{args.graphs}] {row['graph']} gpus={gpus}: {row['status']} "
              f"optimal {row['optimal_ms']:.4f} hios-lp {row['hios_lp_intra_ms']:.4f} ({row['optimal_s']:.1f} s)",
              flush=True)
    total = time.perf_counter() - t_all
    write_csv(out / "optimal_gap.csv", rows)
    head = ["graph", "GPUs", "HIOS-LP+intra ms", "old 1-op optimum ms", "optimum ms", "status", "bound ms",
            "HIOS gap %", "concurrent stages", "solve s"]
    body = [[r["graph"], str(r["gpus"]), f"{r['hios_lp_intra_ms']:.4f}",
             f"{r['old_one_op_per_stage_ms']:.4f}" + ("" if r["old_proven"] else "*"),
             f"{r['optimal_ms']:.4f}", r["status"], f"{r['bound_ms']:.4f}",
             f"{100 * r['hios_gap']:.2f}", str(r["concurrent_stages"]), f"{r['optimal_s']:.1f}"] for r in rows]
    print(table([head] + body))
    proven = [r for r in rows if r["proven"]]
    print(f"\n{cpu_name()}, {len(rows)} graphs, total {total:.0f} s; "
          f"full-problem optimum proven on {len(proven)} of {len(rows)} (time limit {args.time_limit:g} s of work each)")
    if proven:
        gaps = [r["hios_gap"] for r in proven]
        worst = max(proven, key=lambda r: r["hios_gap"])
        print(f"HIOS-LP + intra vs the proven optimum: mean gap {100 * statistics.mean(gaps):.2f} %, "
              f"median {100 * statistics.median(gaps):.2f} %, worst {100 * worst['hios_gap']:.2f} % "
              f"({worst['graph']}, {worst['gpus']} GPUs); optimal on {sum(g <= 1e-9 for g in gaps)}")
        beat_old = [r for r in rows if r["hios_lp_intra_ms"] < r["old_one_op_per_stage_ms"] - 1e-9]
        print(f"HIOS-LP + intra beats the old one-op-per-stage optimum on {len(beat_old)} of {len(rows)}; "
              f"the full optimum is at or below HIOS-LP + intra on "
              f"{sum(r['optimal_ms'] <= r['hios_lp_intra_ms'] + 1e-9 for r in rows)} of {len(rows)}, below the "
              f"old optimum by {100 * statistics.mean(1 - r['optimal_ms'] / r['old_one_op_per_stage_ms'] for r in rows):.2f} % on average")
        o = keep[worst["graph"]]
        for label, s in (("hios_lp", o["hios"]), ("optimal", o["opt"])):
            r = o["sim"].simulate(s)
            write_gantt(out / f"optimal_gap_worst_{label}.png", o["graph"], s, r,
                        f"{worst['graph']}, {worst['gpus']} GPUs: {label} {r.latency:.3f} ms")
    unproven = [r for r in rows if not r["proven"]]
    if unproven:
        print(f"not proven ({len(unproven)}): " + ", ".join(
            f"{r['graph']}/{r['gpus']} GPUs gap<= {100 * r['solver_gap']:.1f} %" for r in unproven))


if __name__ == "__main__":
    main()
