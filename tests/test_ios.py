"""IOS baseline: dynamic programming over single-GPU stages."""

from __future__ import annotations

import time
from functools import lru_cache
from itertools import combinations

import pytest
from hypothesis import given, settings, strategies as st

from hios.bounds import lower_bounds
from hios.cost.costmodel import HIOSStageModel
from hios.errors import HiosError
from hios.generate import layered_dag
from hios.graph import Edge, Graph, Operator
from hios.machine import Machine
from hios.schedulers import schedule
from hios.simulator import Simulator
from strategies import dags


def fork_join(cost=2.0, util=0.5, width=2) -> Graph:
    ops = [Operator("src", 1.0)] + [Operator(f"b{k}", cost, utilization=util) for k in range(width)] \
        + [Operator("sink", 1.0)]
    edges = [Edge("src", f"b{k}") for k in range(width)] + [Edge(f"b{k}", "sink") for k in range(width)]
    return Graph(ops, edges, "fork-join")


def brute_force(graph: Graph, model, max_group: int) -> float:
    """Best single-GPU stage sequence, searched forward from the sources (independent of IOS's
    backward recursion): any non-empty set of at most ``max_group`` ready operators is a stage."""
    n = len(graph.ops)
    anc = [sum(1 << u for u in graph.preds[v]) for v in range(n)]

    @lru_cache(maxsize=None)
    def best(done: int) -> float:
        if done == (1 << n) - 1:
            return 0.0
        ready = [v for v in range(n) if not done >> v & 1 and anc[v] & done == anc[v]]
        out = float("inf")
        for size in range(1, min(max_group, len(ready)) + 1):
            for grp in combinations(ready, size):
                costs = [graph.ops[v].cost for v in grp]
                t = costs[0] if size == 1 else model(costs, [graph.ops[v].utilization for v in grp])
                out = min(out, t + best(done | sum(1 << v for v in grp)))
        return out

    return best(0)


def test_groups_two_independent_ops_when_it_pays():
    g = fork_join(cost=2.0, util=0.5)
    s = schedule(g, Machine(2), "ios")
    assert s.stages[0] == [("src",), ("b0", "b1"), ("sink",)]
    assert s.stages[1] == []
    # stage of b0, b1: 0.5 * 4 + 0.5 * max(2, 2) = 3
    assert Simulator(g, Machine(2)).simulate(s).latency == pytest.approx(1 + 3 + 1)


def test_does_not_group_when_the_stage_model_penalizes_it():
    g = fork_join(cost=2.0, util=0.5)
    penalty = lambda costs, utils: sum(costs) + 1.0  # noqa: E731
    s = schedule(g, Machine(1), "ios", stage_model=penalty)
    assert all(len(st) == 1 for st in s.stages[0])
    assert s.meta["estimate"] == pytest.approx(6.0)


def test_max_group_size_limits_stage_width():
    g = fork_join(cost=1.0, util=0.25, width=4)
    wide = schedule(g, Machine(1), "ios", max_group_size=4)
    narrow = schedule(g, Machine(1), "ios", max_group_size=2)
    assert max(len(st) for st in wide.stages[0]) == 4
    assert max(len(st) for st in narrow.stages[0]) == 2
    # one stage of 4: 0.5*4 + 0.5*max(1, 1) = 2.5; two stages of 2: 2 * (0.5*2 + 0.5*1) = 3
    assert wide.meta["estimate"] == pytest.approx(2 + 2.5)
    assert narrow.meta["estimate"] == pytest.approx(2 + 3.0)


def test_bad_options_are_hios_errors():
    g = fork_join()
    with pytest.raises(HiosError, match="max_part_size"):
        schedule(g, Machine(1), "ios", max_part_size=0)
    with pytest.raises(HiosError, match="max_group_size"):
        schedule(g, Machine(1), "ios", max_group_size="3")
    with pytest.raises(HiosError, match="max_part_size"):
        schedule(g, Machine(1), "ios", max_part_size=64)


def test_large_graph_finishes_quickly():
    g = layered_dag(240, 480, 8, 0.8, 3)
    t0 = time.perf_counter()
    s = schedule(g, Machine(4), "ios")
    assert time.perf_counter() - t0 < 10
    r = Simulator(g, Machine(4)).simulate(s)
    assert r.latency == pytest.approx(s.meta["estimate"])
    assert r.latency < g.total_work()  # grouping pays under the HIOS model (utilization <= 1)


@settings(max_examples=40, deadline=None)
@given(dags(max_nodes=7), st.integers(1, 3), st.sampled_from([0.0, 0.5, 1.0]))
def test_matches_exhaustive_search_when_one_part(g, k, alpha):
    model = HIOSStageModel(alpha)
    s = schedule(g, Machine(1), "ios", stage_model=model, max_part_size=8, max_group_size=k)
    lat = Simulator(g, Machine(1), model).simulate(s).latency
    assert lat == pytest.approx(brute_force(g, model, k), abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(dags(max_nodes=14), st.integers(1, 3), st.integers(1, 4), st.integers(1, 3))
def test_valid_schedule_and_bounds(g, gpus, part, group):
    m = Machine(gpus)
    s = schedule(g, m, "ios", max_part_size=part, max_group_size=group)
    assert sorted(s.operators()) == sorted(g.names)
    assert all(not sts for sts in s.stages[1:])
    assert all(len(st) <= group for st in s.stages[0])
    r = Simulator(g, m).simulate(s)  # raises on an invalid schedule
    assert r.latency == pytest.approx(s.meta["estimate"], abs=1e-9)
    assert r.latency >= lower_bounds(g, 1).value - 1e-9
    assert r.latency <= g.total_work() + 1e-9  # never worse than one operator per stage
