"""Write tests/data/frozen_schedules.json: hashes of the schedules today's HIOS schedulers make,
with their simulated latencies, and hashes of the results of every step (mapping, refinement,
list order, intra step), for the identity test of issue 22 (tests/test_exact_identity.py).

Cases (``cases()``): the 28 study graphs (tests/data/study_latencies.json's points), 60 graphs of
the random sweep (``sweep_case(k)``, 2-8 GPUs, with and without serialized links), the scale
graphs of ``benchmarks/scheduler_scale.py`` at 200, 500, 1,000 and 2,000 operators (4 GPUs) and
the real CNN DAGs of ``benchmarks/profiles/`` (2 and 4 GPUs, their measured stage model).  Run once,
before changing a scheduler:

    PYTHONPATH=src python tests/data/freeze_schedules.py
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hios.cost.costmodel import HIOSStageModel, stage_model_from_dict  # noqa: E402
from hios.formats import load_graph  # noqa: E402
from hios.generate import layered_dag  # noqa: E402
from hios.machine import Machine  # noqa: E402
from hios.schedulers import schedule  # noqa: E402
from hios.schedulers.timing_engine import FastTimer, lst_ranks, search_machine  # noqa: E402
from hios.schedulers.hios_lp import longest_path_mapping  # noqa: E402
from hios.schedulers.mapping_steps import stages_from_mapping  # noqa: E402
from hios.schedulers.hios_mr import min_finish_mapping  # noqa: E402
from hios.schedulers.intra_gpu import improve_stages  # noqa: E402
from hios.schedulers.list_order import list_schedule_order  # noqa: E402
from hios.schedulers.refine import refine_mapping  # noqa: E402
from hios.simulator import Simulator  # noqa: E402

#: label -> (algorithm, options); "exact" options are added by the test once the exact mode is an option
VARIANTS = {"hios-lp+intra": ("hios-lp", {}), "hios-lp": ("hios-lp", {"intra": False}),
            "hios-mr+intra": ("hios-mr", {})}
SCALE_SIZES = [200, 500, 1000, 2000]


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, separators=(",", ":")).encode()).hexdigest()[:20]


def cases() -> list[dict]:
    """Every case: a name, how to build its graph, GPUs, link serialization, stage model."""
    from freeze_study_latencies import study_points
    out = []
    for p in study_points():
        out.append({"name": "study n{nodes} e{edges} l{layers} c{comm_ratio} g{gpus} s{seed}".format(**p),
                    "kind": "study", "point": p, "gpus": p["gpus"], "serialize": False})
    for k in range(60):
        out.append({"name": f"sweep {k}", "kind": "sweep", "k": k, "serialize": k % 2 == 1})
    for n in SCALE_SIZES:
        out.append({"name": f"scale {n}", "kind": "scale", "n": n, "gpus": 4, "serialize": False})
    for f in sorted((ROOT / "benchmarks" / "profiles").glob("*.json")):
        for gpus in (2, 4):
            out.append({"name": f"cnn {f.stem} g{gpus}", "kind": "cnn", "file": f.name, "gpus": gpus,
                        "serialize": False})
    return out


def build(case: dict):
    """(graph, machine, stage model, serialize_links) of a case."""
    kind = case["kind"]
    if kind == "study":
        p = case["point"]
        g = layered_dag(p["nodes"], p["edges"], p["layers"], p["comm_ratio"], p["seed"])
        return g, Machine.preset(case["gpus"]), HIOSStageModel(), False
    if kind == "sweep":
        from test_scheduler_scale import sweep_case
        g, gpus, ser = sweep_case(case["k"])
        return g, Machine.preset(gpus), HIOSStageModel(), ser
    if kind == "scale":
        n = case["n"]
        g = layered_dag(n, 2 * n, max(8, math.ceil(math.sqrt(n / 5))), 0.8, 1)
        return g, Machine.preset(case["gpus"]), HIOSStageModel(), False
    g = load_graph(ROOT / "benchmarks" / "profiles" / case["file"])
    model = stage_model_from_dict(((g.meta or {}).get("profile") or {}).get("stage_model"))
    return g, Machine.preset(case["gpus"]), model, False


def steps(graph, machine, model, serialize) -> dict:
    """Hashes of the result of every step of HIOS-LP / HIOS-MR, each from the same inputs."""
    sim = Simulator(graph, search_machine(graph, machine), model, serialize)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    lp, paths = longest_path_mapping(timer, rank)
    mr = min_finish_mapping(timer, rank)
    out = {"rank": digest(rank), "lp_mapping": digest(lp), "lp_paths": paths, "mr_mapping": digest(mr)}
    for name, mapping in (("lp", lp), ("mr", mr)):
        refined, moves = refine_mapping(timer, rank, mapping, 2)
        out[f"{name}_refined"] = digest(refined)
        out[f"{name}_moves"] = moves
        listed = list_schedule_order(timer, refined, rank)
        out[f"{name}_listed"] = digest(listed)
        for oname, st in (("rank", stages_from_mapping(refined, rank, timer.gpus)), ("list", listed)):
            new, lat = improve_stages(timer, st)
            out[f"{name}_intra_{oname}"] = digest(new)
            out[f"{name}_intra_{oname}_latency"] = lat
    return out


def freeze_case(case: dict) -> dict:
    g, m, model, ser = build(case)
    row = dict(case)
    row["schedules"] = {}
    sim = Simulator(g, m, model, ser)
    for label, (algo, opts) in VARIANTS.items():
        s = schedule(g, m, algo, stage_model=model, serialize_links=ser, **opts)
        row["schedules"][label] = {"hash": digest(s.stages), "latency_ms": sim.simulate(s).latency}
    row["steps"] = steps(g, m, model, ser)
    return row


def main() -> int:
    rows = []
    for case in cases():
        rows.append(freeze_case(case))
        print(case["name"], {k: v["latency_ms"] for k, v in rows[-1]["schedules"].items()}, flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    out = {"about": "schedules of HIOS-LP / HIOS-MR and their steps at commit " + commit
                    + " (before issue 22's exact speed-ups)", "cases": rows}
    (HERE / "frozen_schedules.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
