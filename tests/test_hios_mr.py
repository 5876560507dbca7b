import importlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hios.errors import HiosError
from hios.generate import layered_dag
from hios.machine import Machine
from hios.schedulers import ALGORITHMS, schedule
from hios.schedulers.timing_engine import FastTimer, lst_ranks
from hios.schedulers.timing_engine import time_in_rank_order
from hios.simulator import Simulator

from sched_helpers import check_schedule, machines, make_graph, sequential_latency
from strategies import dags

MR = importlib.import_module("hios.schedulers.hios_mr")
CHEAP = 0.01


def two_chains(transfer):
    return make_graph({"a1": 1, "b1": 1, "a2": 1, "b2": 1, "a3": 1, "b3": 1},
                      [("a1", "a2", transfer), ("a2", "a3", transfer), ("b1", "b2", transfer), ("b2", "b3", transfer)])


def test_registered():
    assert ALGORITHMS["hios-mr"] is MR.hios_mr


@pytest.mark.parametrize("refine", [0, 2])
def test_independent_chains_go_to_two_gpus(refine):
    g = two_chains(CHEAP)
    s = schedule(g, Machine(2), "hios-mr", intra=False, refine=refine)
    m = s.assignment()
    assert m["a1"] == m["a2"] == m["a3"] != m["b1"] == m["b2"] == m["b3"]
    assert Simulator(g, Machine(2)).simulate(s).latency == pytest.approx(3.0)


def test_ties_go_to_the_lowest_gpu():
    g = two_chains(CHEAP)
    s = schedule(g, Machine(4), "hios-mr", refine=0)
    assert set(s.assignment().values()) == {0, 1}
    assert schedule(make_graph({"x": 2.0}, []), Machine(3), "hios-mr").assignment() == {"x": 0}


@pytest.mark.parametrize("intra", [False, True])
def test_chain_stays_on_one_gpu_when_transfers_are_expensive(intra):
    g = make_graph({"s": 1, "x": 1, "y": 1, "t": 1},
                   [("s", "x", 10.0), ("s", "y", 10.0), ("x", "t", 10.0), ("y", "t", 10.0)])
    s = schedule(g, Machine(3), "hios-mr", intra=intra)
    assert set(s.assignment().values()) == {0}


def test_several_sources_and_sinks():
    g = make_graph({"s1": 2, "s2": 2, "m": 1, "t1": 2, "t2": 2},
                   [("s1", "m", 0.1), ("s2", "m", 0.1), ("m", "t1", 0.1), ("m", "t2", 0.1)])
    s = schedule(g, Machine(2), "hios-mr", refine=0)
    m = s.assignment()
    # Sources in parallel, sinks in parallel: the best possible latency 2 + 0.1 + 1 + 0.1 + 2.
    assert m["s1"] != m["s2"] and m["t1"] != m["t2"]
    assert Simulator(g, Machine(2)).simulate(s).latency == pytest.approx(5.2)


def test_best_final_state_matches_its_mapping():
    g = layered_dag(60, 120, 6, 0.8, 2)
    m = Machine.preset(3)
    sim = Simulator(g, m)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    gpu_of = MR.min_finish_mapping(timer, rank)
    assert sorted(set(gpu_of)) == [0, 1, 2]
    order = sorted(range(len(gpu_of)), key=rank.__getitem__)
    lat, _ = time_in_rank_order(timer, order, gpu_of)
    s = schedule(g, m, "hios-mr", intra=False, refine=0)
    assert s.meta["mapping_latency"] == pytest.approx(lat)
    # the DP's result is at least as good as putting everything on one GPU
    assert lat < g.total_work()


def test_bad_options():
    g = two_chains(CHEAP)
    for opts in ({"window": 0}, {"streams": 0}, {"refine": -2}):
        with pytest.raises(HiosError):
            schedule(g, Machine(2), "hios-mr", **opts)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=14), machines(), st.booleans(), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2))
def test_hios_mr_properties(graph, machine, intra, window, streams, refine):
    s = schedule(graph, machine, "hios-mr", intra=intra, window=window, streams=streams, refine=refine)
    lat = check_schedule(graph, machine, s, grouped=intra)
    assert lat <= sequential_latency(graph, machine)
    assert lat == s.meta["latency"]
    assert lat <= s.meta["refined_latency"] <= s.meta["mapping_latency"]


@pytest.mark.parametrize("algo", ["hios-mr", "hios-lp"])
def test_uneven_links_avoid_the_slow_pair(algo):
    from hios.graph import Edge, Graph, Operator
    from hios.machine import Link
    ops = [Operator(n, 1.0, "generic", 1_000_000) for n in ("s", "x", "y", "t")]
    edges = [Edge(a, b, 1_000_000) for a, b in (("s", "x"), ("s", "y"), ("x", "t"), ("y", "t"))]
    g = Graph(ops, edges, "fork")
    slow = Link(0.001, 5.0)
    m = Machine(3, Link(450.0, 5.0), {(0, 1): slow, (1, 0): slow})
    s = schedule(g, m, algo, intra=False, refine=0)
    used = set(s.assignment().values())
    assert used == {0, 2}
    assert Simulator(g, m).simulate(s).latency < 3.1
