"""Segments and events of saved plans with and without join absorption (issue 21), torch-free.

For every point saved by ``benchmarks/sim_to_real.py`` (its ``data/<point>.json``: costed graph
and plan A's schedule), the program as the runtime cuts it (from the captured graph, whose
operators carry no cost) before and after :func:`hios.schedulers.absorb_joins.absorb_joins` at
each ``--fractions`` value: segments, events, joins absorbed, and the simulator's latency of each
schedule (the point's analytic H200 costs, default stage model; a prediction, not a measurement).
Prints a table and writes ``OUT/absorb_joins.csv``.

Usage: ``PYTHONPATH=src python benchmarks/absorb_joins.py [--data DIR] [--out DIR]``
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

DATA = Path(__file__).resolve().parent / "results" / "sim_to_real_h200" / "data"


def rows_for(path: Path, fractions: list[float]) -> list[dict]:
    from hios.formats import graph_from_dict
    from hios.graph import Graph
    from hios.machine import Machine
    from hios.program.segmenting import stream_program
    from hios.schedule import Schedule
    from hios.schedulers.absorb_joins import absorb_joins
    from hios.simulator import Simulator

    d = json.loads(path.read_text())
    g = graph_from_dict(d["graph"], str(path))
    sched = Schedule.from_dict(d["plans"]["A"]["schedule"])
    uncosted = Graph([op.with_cost(0.0) for op in g.ops], g.edges, g.name)  # what the runtime cuts
    sim = Simulator(g, Machine.from_dict(d["machine"]))
    base = stream_program(uncosted, sched)
    out = [{"point": d["point"], "fraction": "off", "segments": len(base.segments), "events": base.events,
            "joins": 0, "simulated_ms": sim.simulate(sched).latency,
            "saved_program_segments": d["plans"]["A"]["program"]["segments"]}]
    for f in fractions:
        s2 = absorb_joins(g, sched, f)
        prog = stream_program(uncosted, s2)
        out.append({"point": d["point"], "fraction": f, "segments": len(prog.segments), "events": prog.events,
                    "joins": s2.meta["absorb_joins"]["joins"], "simulated_ms": sim.simulate(s2).latency})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DATA), help="folder of sim_to_real point files")
    p.add_argument("--fractions", default="0.25,0.5,1.0")
    p.add_argument("--out", default="benchmarks/results/absorb_joins")
    args = p.parse_args()
    try:
        fractions = [float(x) for x in args.fractions.split(",")]
    except ValueError:
        raise SystemExit(f"absorb_joins: bad --fractions {args.fractions!r}") from None
    files = sorted(f for f in Path(args.data).glob("*.json") if f.name != "run.json" and "feedback" not in f.name)
    if not files:
        raise SystemExit(f"absorb_joins: no point files in {args.data}")
    rows = [r for f in files for r in rows_for(f, fractions)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "absorb_joins.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, keys)
        w.writeheader()
        w.writerows(rows)
    print("point | fraction | segments | events | joins absorbed | simulated ms")
    for r in rows:
        print(f"{r['point']} | {r['fraction']} | {r['segments']} | {r['events']} | {r['joins']} | "
              f"{r['simulated_ms']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
