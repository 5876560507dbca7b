"""Exact one-operator-per-stage scheduling with CP-SAT."""

from __future__ import annotations

import sys
from itertools import permutations, product

import pytest
from hypothesis import given, settings, strategies as st

from hios.bounds import lower_bounds
from hios.errors import HiosError
from hios.generate import layered_dag
from hios.graph import Edge, Graph, Operator
from hios.machine import Link, Machine
from hios.schedulers import schedule
from hios.simulator import ScheduleError, Simulator
from strategies import dags

# Times are rounded up to whole microseconds: allow one per operator and per edge.
def tol(g: Graph) -> float:
    return 1e-3 * (len(g.ops) + len(g.edges)) + 1e-9


def test_too_large_graph_is_an_error():
    ops = [Operator(f"o{i}", 1.0) for i in range(31)]
    with pytest.raises(HiosError, match="at most 30 operators"):
        schedule(Graph(ops, []), Machine(2), "optimal")


def test_missing_ortools_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ortools.sat.python", None)
    monkeypatch.setitem(sys.modules, "ortools.sat.python.cp_model", None)
    g = Graph([Operator("a", 1.0)], [])
    with pytest.raises(HiosError, match=r"pip install hios\[optimal\]"):
        schedule(g, Machine(1), "optimal")


def test_bad_time_limit():
    pytest.importorskip("ortools")
    with pytest.raises(HiosError, match="time_limit"):
        schedule(Graph([Operator("a", 1.0)], []), Machine(1), "optimal", time_limit=0)


def brute_force(g: Graph, m: Machine) -> float:
    """Best simulated latency over every assignment and every order on each GPU."""
    sim = Simulator(g, m)
    n = len(g.ops)
    best = float("inf")
    for assign in product(range(m.gpus), repeat=n):
        per_gpu = [[v for v in range(n) if assign[v] == k] for k in range(m.gpus)]
        for orders in product(*(permutations(ops) for ops in per_gpu)):
            try:
                r = sim.run([[[v] for v in order] for order in orders])
            except ScheduleError:  # order contradicts the dependencies
                continue
            best = min(best, r.latency)
    return best


def test_two_chains_go_to_two_gpus():
    pytest.importorskip("ortools")
    ops = [Operator(n, c) for n, c in [("a1", 2.0), ("a2", 3.0), ("b1", 4.0), ("b2", 1.5)]]
    g = Graph(ops, [Edge("a1", "a2", time=1.0), Edge("b1", "b2", time=1.0)])
    s = schedule(g, Machine(2), "optimal")
    assert s.meta["proven_optimal"]
    assert s.meta["simulated_latency"] == pytest.approx(5.5)
    assert s.assignment()["a1"] == s.assignment()["a2"] != s.assignment()["b1"] == s.assignment()["b2"]


def test_beats_heft_on_a_layered_dag():
    pytest.importorskip("ortools")
    g = layered_dag(6, 8, 2, 0.8, 7)
    m = Machine(2)
    s = schedule(g, m, "optimal")
    assert s.meta["proven_optimal"]
    best = brute_force(g, m)
    assert s.meta["simulated_latency"] == pytest.approx(best, abs=tol(g))
    heft = Simulator(g, m).simulate(schedule(g, m, "heft")).latency
    assert s.meta["simulated_latency"] < heft - 1.0  # greedy HEFT is clearly beaten here


@settings(max_examples=25, deadline=None)
@given(dags(max_nodes=5, max_edges=6), st.integers(1, 2))
def test_matches_brute_force(g, gpus):
    pytest.importorskip("ortools")
    m = Machine(gpus)
    s = schedule(g, m, "optimal")
    assert s.meta["proven_optimal"]
    assert s.meta["simulated_latency"] == pytest.approx(brute_force(g, m), abs=tol(g))


@settings(max_examples=10, deadline=None)
@given(dags(max_nodes=4, max_edges=5), st.sampled_from([2.0, 20.0, 200.0]))
def test_matches_brute_force_on_uneven_links(g, slow):
    pytest.importorskip("ortools")
    # three GPUs; the links into GPU 2 are slow
    m = Machine(3, Link(200.0, 5.0), {(0, 2): Link(slow, 50.0), (1, 2): Link(slow, 50.0)})
    s = schedule(g, m, "optimal")
    assert s.meta["proven_optimal"]
    assert s.meta["simulated_latency"] == pytest.approx(brute_force(g, m), abs=tol(g))


@settings(max_examples=25, deadline=None)
@given(dags(max_nodes=10), st.integers(1, 4))
def test_valid_and_no_worse_than_baselines(g, gpus):
    pytest.importorskip("ortools")
    m = Machine(gpus)
    sim = Simulator(g, m)
    s = schedule(g, m, "optimal")
    assert sorted(s.operators()) == sorted(g.names)
    assert all(len(st) == 1 for sts in s.stages for st in sts)
    r = sim.simulate(s)
    assert r.latency == pytest.approx(s.meta["simulated_latency"])
    assert r.latency <= s.meta["model_makespan"] + 1e-6  # times were rounded up
    for other in ("heft", "sequential"):
        assert r.latency <= sim.simulate(schedule(g, m, other)).latency + tol(g)
    lb = lower_bounds(g, gpus)
    assert r.latency >= max(lb.value, lb.sequential_work_per_gpu) - 1e-9


def test_cli_time_limit_reaches_optimal(tmp_path, capsys):
    import json

    from hios.cli import main
    from hios.formats import save_graph
    from hios.generate import layered_dag

    path = tmp_path / "g.txt"
    save_graph(layered_dag(12, 20, 2, 0.8, 3), path)
    assert main(["simulate", str(path), "--gpus", "2", "--algo", "optimal", "--time-limit", "5", "--json",
                 "-o", str(tmp_path / "s.json")]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["results"][0]["algorithm"] == "optimal"
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["meta"]["time_limit"] == 5.0
    assert main(["simulate", str(path), "--algo", "optimal", "--time-limit", "0"]) == 2
    assert "--time-limit must be positive" in capsys.readouterr().err
