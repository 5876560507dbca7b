"""Quality of HIOS-LP's fast mode (the default) against its exact mode (today's results, bit for bit:
tests/test_exact_identity.py) -- issue 22, item 2.

Graphs: the cases of ``tests/data/freeze_schedules.py`` (the 28 study graphs, 60 sweep graphs of
2-8 GPUs with and without serialized links, the scale graphs of ``benchmarks/scheduler_scale.py``
at 200-2,000 operators on 4 GPUs, the real CNN DAGs of ``benchmarks/profiles/`` on 2 and 4 GPUs)
plus the scale graphs of ``--big`` sizes (default 5,000).  For each graph, HIOS-LP with and without
the intra-GPU step runs with ``exact=True`` and ``exact=False``; the latency (simulator, the
graph's link model and stage model) and the CPU seconds of each are recorded.

Bars (issue 22): geometric mean of fast / exact latency within 0.5 %, no graph worse than 2 %.

Outputs under ``--out`` (default ``benchmarks/results/``): ``placement_quality.csv``; the table
(per group and overall) is printed.

    python benchmarks/placement_quality.py              # all cases and 5,000 operators (minutes)
    python benchmarks/placement_quality.py --big ""     # without the large graph
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))
sys.path.insert(0, str(ROOT / "tests"))

from freeze_schedules import build, cases  # noqa: E402

from hios.schedulers import schedule  # noqa: E402
from hios.simulator import Simulator  # noqa: E402
from hios.cost.timing import cpu_name  # noqa: E402

VARIANTS = {"hios-lp+intra": {"intra": True}, "hios-lp": {"intra": False}}


def run(graph, machine, model, serialize, opts: dict) -> tuple[float, float]:
    c0 = time.process_time()
    s = schedule(graph, machine, "hios-lp", stage_model=model, serialize_links=serialize, **opts)
    cpu = time.process_time() - c0
    return Simulator(graph, machine, model, serialize).simulate(s).latency, cpu


def table(rows: list[dict]) -> str:
    groups = sorted({r["group"] for r in rows}, key=["study", "sweep", "scale", "cnn"].index) + ["all"]
    head = ["variant", "group", "graphs", "geomean fast/exact", "worst", "worst graph", "> 2 %", "CPU s exact", "CPU s fast"]
    out = [head]
    for label in VARIANTS:
        for grp in groups:
            rs = [r for r in rows if r["variant"] == label and (grp == "all" or r["group"] == grp)]
            if not rs:
                continue
            ratios = [r["ratio"] for r in rs]
            worst = max(rs, key=lambda r: r["ratio"])
            gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            out.append([label, grp, str(len(rs)), f"{gm:.5f}", f"{worst['ratio']:.4f}", worst["case"],
                        str(sum(x > 1.02 for x in ratios)), f"{sum(r['cpu_exact_s'] for r in rs):.2f}",
                        f"{sum(r['cpu_fast_s'] for r in rs):.2f}"])
    w = [max(len(x[k]) for x in out) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w[k]) if k < 2 or k == 5 else c.rjust(w[k]) for k, c in enumerate(x)) for x in out]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--big", default="5000", help="comma-separated extra scale sizes, 4 GPUs (default 5000)")
    ap.add_argument("--only", default="", help="comma-separated substrings of case names to run")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    todo = cases()
    todo += [{"name": f"scale {n}", "kind": "scale", "n": int(n), "gpus": 4, "serialize": False}
             for n in args.big.split(",") if n.strip()]
    if args.only:
        todo = [c for c in todo if any(k in c["name"] for k in args.only.split(","))]
    started = datetime.now(timezone.utc)
    rows = []
    for case in todo:
        g, m, model, ser = build(case)
        for label, opts in VARIANTS.items():
            exact, ce = run(g, m, model, ser, {**opts, "exact": True})
            fast, cf = run(g, m, model, ser, {**opts, "exact": False})
            rows.append({"case": case["name"], "group": case["kind"], "variant": label, "operators": len(g.ops),
                         "gpus": m.gpus, "serialize_links": ser, "exact_ms": exact, "fast_ms": fast,
                         "ratio": fast / exact, "cpu_exact_s": ce, "cpu_fast_s": cf})
            print(f"{case['name']:45s} {label:14s} exact {exact:10.4f}  fast {fast:10.4f}  ratio {fast / exact:.4f}  "
                  f"CPU {ce:.2f} / {cf:.2f} s", file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "placement_quality.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"# HIOS-LP fast vs exact mode, {started:%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
