"""HEFT baseline: upward rank + earliest-finish-time list scheduling."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from hios.bounds import lower_bounds
from hios.generate import layered_dag
from hios.graph import Edge, Graph, Operator
from hios.machine import Link, Machine
from hios.schedulers import schedule
from hios.schedulers.heft import upward_rank
from hios.simulator import Simulator
from strategies import dags


def fork_join(branch: float, comm: float) -> Graph:
    ops = [Operator("src", 1.0), Operator("a", branch), Operator("b", branch), Operator("sink", 1.0)]
    edges = [Edge("src", "a", time=comm), Edge("src", "b", time=comm),
             Edge("a", "sink", time=comm), Edge("b", "sink", time=comm)]
    return Graph(ops, edges, "fork-join")


def test_cheap_transfers_spread_the_branches():
    g = fork_join(branch=5.0, comm=0.1)
    s = schedule(g, Machine(2), "heft")
    assert s.assignment()["a"] != s.assignment()["b"]
    # src 1, transfer 0.1, branch 5, sink 1 next to one branch, the other's output 0.1 late
    assert Simulator(g, Machine(2)).simulate(s).latency == pytest.approx(7.1)


def test_expensive_transfers_keep_one_gpu():
    g = fork_join(branch=1.0, comm=5.0)
    s = schedule(g, Machine(3), "heft")
    assert [len(sts) for sts in s.stages] == [4, 0, 0]
    assert Simulator(g, Machine(3)).simulate(s).latency == pytest.approx(4.0)


def test_upward_rank_of_a_chain():
    ops = [Operator("x", 1.0), Operator("y", 2.0), Operator("z", 3.0)]
    g = Graph(ops, [Edge("x", "y", time=0.5), Edge("y", "z", time=0.25)])
    assert upward_rank(g, Machine(2)) == pytest.approx([1 + 0.5 + 2 + 0.25 + 3, 2 + 0.25 + 3, 3])
    assert upward_rank(g, Machine(1)) == pytest.approx([6, 5, 3])  # one GPU: nothing is transferred


def test_estimate_equals_simulation_on_layered_dag():
    g = layered_dag(120, 240, 6, 0.8, 7)
    m = Machine(4)
    s = schedule(g, m, "heft")
    r = Simulator(g, m).simulate(s)
    assert r.latency == pytest.approx(s.meta["estimate"], rel=1e-12)
    assert r.latency < g.total_work()


@settings(max_examples=60, deadline=None)
@given(dags(max_nodes=14), st.integers(1, 4), st.booleans(), st.data())
def test_valid_and_estimate_equals_simulated_latency(g, gpus, uniform, data):
    links = {}
    if not uniform and gpus > 1:  # a machine whose links differ by pair
        for a in range(gpus):
            for b in range(gpus):
                if a != b:
                    links[(a, b)] = Link(data.draw(st.sampled_from([5.0, 50.0, 500.0])), 5.0)
    m = Machine(gpus, Link(100.0, 5.0), links)
    s = schedule(g, m, "heft")
    assert sorted(s.operators()) == sorted(g.names)
    assert all(len(st) == 1 for sts in s.stages for st in sts)
    r = Simulator(g, m).simulate(s)  # raises on an invalid schedule
    assert r.latency == pytest.approx(s.meta["estimate"], rel=1e-9, abs=1e-9)
    lb = lower_bounds(g, gpus)
    assert r.latency >= max(lb.value, lb.sequential_work_per_gpu) - 1e-9
