"""Issue 15: the scheduler rewrite keeps today's results, plans under the link model, never loses to
sequential, is deterministic, and does not grow with unusable GPUs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hios.costmodel import HIOSStageModel
from hios.generate import layered_dag
from hios.machine import Machine
from hios.schedulers import schedule
from hios.simulator import Simulator

sys.path.insert(0, str(Path(__file__).parent / "data"))
from freeze_study_latencies import VARIANTS  # noqa: E402

FROZEN = json.loads((Path(__file__).parent / "data" / "study_latencies.json").read_text())["graphs"]


@pytest.mark.parametrize("row", FROZEN, ids=lambda r: "n{nodes}-e{edges}-l{layers}-c{comm_ratio}-g{gpus}-s{seed}".format(**r))
def test_study_latencies_within_half_percent_of_frozen(row):
    g = layered_dag(row["nodes"], row["edges"], row["layers"], row["comm_ratio"], row["seed"])
    m = Machine.preset(row["gpus"])
    sim = Simulator(g, m, HIOSStageModel())
    for label, (algo, opts) in VARIANTS.items():
        lat = sim.simulate(schedule(g, m, algo, stage_model=HIOSStageModel(), **opts)).latency
        old = row["latency_ms"][label]
        assert abs(lat - old) <= 0.005 * old, (label, lat, old)
