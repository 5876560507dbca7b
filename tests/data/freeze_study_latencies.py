"""Write tests/data/study_latencies.json: the latencies today's schedulers give on the study graphs.

The 28 graphs: every distinct point of the simulation study's full sweeps
(benchmarks/simulation_study.py, FULL_SWEEPS around DEFAULT: 26 points) with seed 1, plus seeds 2
and 3 of the default point.  Each is built with ``hios.generate.layered_dag`` exactly as the study
does.  Run once, before changing a scheduler; tests/test_scheduler_scale.py compares against it.

    PYTHONPATH=src python tests/data/freeze_study_latencies.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from hios.cost.costmodel import HIOSStageModel  # noqa: E402
from hios.generate import layered_dag  # noqa: E402
from hios.machine import Machine  # noqa: E402
from hios.schedulers import schedule  # noqa: E402
from hios.simulator import Simulator  # noqa: E402
from simulation_study import DEFAULT, FULL_SWEEPS  # noqa: E402

VARIANTS = {"hios-lp+intra": ("hios-lp", {"intra": True}), "hios-lp": ("hios-lp", {"intra": False}),
            "hios-mr+intra": ("hios-mr", {"intra": True})}


def study_points() -> list[dict]:
    pts: list[dict] = []
    for sweep, values in FULL_SWEEPS.items():
        for v in values:
            p = dict(DEFAULT)
            p[sweep] = v
            if sweep == "nodes":
                p["edges"] = 2 * v
            p["seed"] = 1
            if p not in pts:
                pts.append(p)
    for s in (2, 3):
        pts.append({**DEFAULT, "seed": s})
    return pts


def main() -> int:
    rows = []
    for p in study_points():
        g = layered_dag(p["nodes"], p["edges"], p["layers"], p["comm_ratio"], p["seed"])
        m = Machine.preset(p["gpus"])
        sim = Simulator(g, m, HIOSStageModel())
        lat = {label: sim.simulate(schedule(g, m, algo, stage_model=HIOSStageModel(), **opts)).latency
               for label, (algo, opts) in VARIANTS.items()}
        rows.append({**p, "latency_ms": lat})
        print(p, lat, flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"about": "latencies of the schedulers at commit " + commit + " (before issue 15's rewrite)",
           "graphs": rows}
    Path(__file__).with_name("study_latencies.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
