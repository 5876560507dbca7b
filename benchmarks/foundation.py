"""Speed of the foundation: simulating a schedule and loading a graph file.

Targets (issue 3):
  * simulating one schedule of a 1,000-operator graph: under 50 ms;
  * loading and validating a 10,000-operator graph file: under 1 s.

Measured cases (median and best of ``--repeat`` runs, wall clock, one process):
  * ``simulate``: :meth:`Simulator.run` of a 4-GPU schedule with multi-operator stages
    (``hios-lp`` when that scheduler is registered, else a round-robin assignment with stages of
    up to 3 independent operators) on ``layered_dag(1000, 2000, 16)``, with explicit-time edges
    and with byte edges, with and without link serialization; and ``simulate()`` including the
    building of the :class:`Simulator`.
  * ``load``: :func:`load_graph` of ``layered_dag(10000, 20000, 32)`` saved as .txt and as .json
    (read, parse, build and validate the :class:`Graph`).

Outputs: a table on stdout, ``foundation.csv`` under ``--out`` (default ``benchmarks/results/``)
and, unless ``--no-doc``, ``docs/results/foundation.md`` with the machine (``lscpu`` model name)
and the date.

    python benchmarks/foundation.py
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hios.formats import load_graph, save_graph
from hios.generate import layered_dag
from hios.graph import Edge, Graph
from hios.machine import Machine
from hios.schedule import Schedule
from hios.schedulers import ALGORITHMS, schedule
from hios.simulator import Simulator, simulate

ROOT = Path(__file__).resolve().parent.parent
SIM_TARGET_MS = 50.0
LOAD_TARGET_MS = 1000.0


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def timed(fn, repeat: int) -> tuple[float, float, float]:
    """(median wall, best wall, best CPU time of this process) of ``fn()``, in ms.  The CPU time
    shows what the code costs when other processes compete for the cores."""
    fn()  # warm-up
    ts, cs = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
        cs.append((time.process_time() - c0) * 1e3)
    return statistics.median(ts), min(ts), min(cs)


def round_robin_stages(graph: Graph, gpus: int, width: int = 3) -> list[list[list[int]]]:
    """Operators dealt round-robin in topological order; consecutive independent operators of a GPU
    (no edge between any two, all inputs from earlier stages) share a stage, up to ``width``."""
    stages: list[list[list[int]]] = [[] for _ in range(gpus)]
    stage_of: dict[int, tuple[int, int]] = {}
    for k, v in enumerate(graph.topo):
        gi = k % gpus
        cur = stages[gi][-1] if stages[gi] else None
        # joining the current stage is safe when v has no input from it (the global order is topological)
        if cur is not None and len(cur) < width and all(stage_of.get(u) != (gi, len(stages[gi]) - 1)
                                                         for u in graph.preds[v]):
            cur.append(v)
        else:
            stages[gi].append([v])
        stage_of[v] = (gi, len(stages[gi]) - 1)
    return stages


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for foundation.csv")
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per case (default 20)")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/results/foundation.md")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    gpus = 4
    g_time = layered_dag(1000, 2000, 16, 0.8, 1)
    g_bytes = Graph(g_time.ops, [Edge(e.src, e.dst, 4 * 2**20) for e in g_time.edges], "layered-1000-bytes")
    machine = Machine.preset(gpus, "nvlink-h100")
    if "hios-lp" in ALGORITHMS:
        sched = schedule(g_time, machine, "hios-lp")
        how = "hios-lp"
    else:
        sched = Schedule.from_indices(g_time, round_robin_stages(g_time, gpus), "round-robin")
        how = "round-robin"
    idx = sched.indexed(g_time)
    multi = sum(1 for sts in idx for s in sts if len(s) > 1)
    desc = f"1000 ops, {len(g_time.edges)} edges, {gpus} GPUs, {sum(map(len, idx))} stages ({multi} multi-op), {how}"
    print(f"simulate: {desc}", file=sys.stderr)
    for label, g in [("explicit-time edges", g_time), ("byte edges", g_bytes)]:
        for ser in (False, True):
            sim = Simulator(g, machine, serialize_links=ser)
            med, best, cpu = timed(lambda: sim.run(idx), args.repeat)
            rows.append({"case": f"Simulator.run, {label}{', serialized links' if ser else ''}", "size": desc,
                         "median_ms": med, "best_ms": best, "cpu_ms": cpu, "target_ms": SIM_TARGET_MS})
    med, best, cpu = timed(lambda: simulate(g_time, sched, machine), args.repeat)
    rows.append({"case": "simulate() incl. Simulator build, explicit-time edges", "size": desc,
                 "median_ms": med, "best_ms": best, "cpu_ms": cpu, "target_ms": SIM_TARGET_MS})

    big = layered_dag(10000, 20000, 32, 0.8, 1)
    with tempfile.TemporaryDirectory() as tmp:
        for ext in ("txt", "json"):
            p = Path(tmp) / f"big.{ext}"
            save_graph(big, p)
            size = f"10000 ops, 20000 edges, {p.stat().st_size / 1e6:.1f} MB .{ext}"
            med, best, cpu = timed(lambda: load_graph(p), max(3, args.repeat // 4))
            rows.append({"case": f"load_graph .{ext} (parse + validate)", "size": size,
                         "median_ms": med, "best_ms": best, "cpu_ms": cpu, "target_ms": LOAD_TARGET_MS})

    for r in rows:
        r["ok"] = "yes" if r["median_ms"] < r["target_ms"] else "NO"
    header = ["case", "median_ms", "best_ms", "cpu_ms", "target_ms", "ok", "size"]
    widths = {h: max(len(h), *(len(f"{r[h]:.2f}" if isinstance(r[h], float) else str(r[h])) for r in rows))
              for h in header}
    fmt = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    print("  ".join(h.ljust(widths[h]) for h in header))
    for r in rows:
        print("  ".join(fmt(r[h]).ljust(widths[h]) for h in header))
    with open(out / "foundation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out / 'foundation.csv'}", file=sys.stderr)

    if not args.no_doc:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        lines = [
            "# Foundation speed (issue 3)", "",
            f"Measured {now} on this CPU: **{cpu_model()}**, {os.cpu_count()} logical cores, load average "
            f"{load} at the end of the run (other processes shared the cores); "
            f"{platform.python_implementation()} {platform.python_version()}, one process. "
            f"Wall clock median and best of {args.repeat} runs for simulation, {max(3, args.repeat // 4)} for "
            "loading, and the best CPU time of the process; the target is met when the median wall time is "
            "below it. Produced by `python benchmarks/foundation.py`.", "",
            "| case | size | median wall ms | best wall ms | best CPU ms | target ms | met |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        lines += [f"| {r['case']} | {r['size']} | {r['median_ms']:.2f} | {r['best_ms']:.2f} | {r['cpu_ms']:.2f} "
                  f"| {r['target_ms']:.0f} | {r['ok']} |" for r in rows]
        lines += ["", "Graphs: `layered_dag(1000, 2000, 16, 0.8, seed=1)` (byte-edge variant: same structure, "
                  "4 MiB per edge, NVLink-H100 preset) and `layered_dag(10000, 20000, 32, 0.8, seed=1)`.", ""]
        doc = ROOT / "docs" / "results" / "foundation.md"
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text("\n".join(lines))
        print(f"wrote {doc}", file=sys.stderr)
    return 0 if all(r["ok"] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
