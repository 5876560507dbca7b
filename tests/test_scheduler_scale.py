"""Issue 15: the scheduler rewrite keeps today's results, plans under the link model, never loses to
sequential, is deterministic, and does not grow with unusable GPUs."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hios.costmodel import HIOSStageModel
from hios.generate import layered_dag
from hios.machine import Machine
from hios.schedulers import schedule
from hios.schedulers._fastsim import FastTimer, StageChain
from hios.schedulers.intra_gpu import _may_group
from hios.simulator import Simulator

sys.path.insert(0, str(Path(__file__).parent / "data"))
from freeze_study_latencies import VARIANTS  # noqa: E402
from strategies import dags, random_valid_schedule  # noqa: E402

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


# -- the incremental evaluator of the intra-GPU step equals timing the whole schedule ----------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=12), st.integers(1, 3), st.integers(0, 2**31))
def test_stage_chain_evaluate_equals_full_timing(graph, gpus, seed):
    rng = random.Random(seed)
    s = random_valid_schedule(graph, gpus, rng, max_stage=2)
    m = Machine(gpus)
    timer = FastTimer(Simulator(graph, m))
    idx = [sts + [] for sts in s.indexed(graph)]
    idx += [[] for _ in range(gpus - len(idx))]
    chain = StageChain(timer, idx)
    assert chain.latency() == timer.latency(idx)
    for _ in range(6):  # apply a few random regroupings, checking each candidate
        cur = chain.stages()
        gi = rng.randrange(gpus)
        if len(cur[gi]) < 2:
            continue
        p = rng.randrange(len(cur[gi]) - 1)
        pick = sorted(rng.sample(range(p + 1, min(p + 4, len(cur[gi]))), 1 + (rng.random() < 0.3)
                                 if min(p + 4, len(cur[gi])) - p - 1 >= 2 else 1))
        group = cur[gi][p] + [v for q in pick for v in cur[gi][q]]
        s0 = chain.first[gi]
        for _ in range(p):
            s0 = s0.next
        stages_at = []
        x = s0
        while x is not None:
            stages_at.append(x)
            x = x.next
        if not _may_group(stages_at, [q - p for q in pick], 99, graph.ancestors_mask()):
            continue  # not a candidate of the intra-GPU step
        new = [list(x) for x in cur]
        new[gi] = cur[gi][:p] + [group] + [cur[gi][q] for q in range(p + 1, len(cur[gi])) if q not in pick]
        want = timer.latency(new)
        c = chain.regroup(s0, [stages_at[q - p] for q in pick])
        if want is None:
            assert chain.deadlocks(c)
            continue
        assert not chain.deadlocks(c)
        assert chain.evaluate(c) == want
        if rng.random() < 0.6:
            chain.commit(c)
            assert chain.stages() == new
            assert chain.latency() == want
