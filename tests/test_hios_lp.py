import importlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hios.errors import HiosError
from hios.generate import layered_dag
from hios.machine import Link, Machine
from hios.schedulers import ALGORITHMS, schedule
from hios.schedulers.mapping_steps import stages_from_mapping
from hios.schedulers.timing_engine import FastTimer, lst_ranks
from hios.simulator import Simulator

from sched_helpers import check_schedule, machines, make_graph, sequential_latency
from strategies import dags

LP = importlib.import_module("hios.schedulers.hios_lp")
CHEAP = 0.01


def gpu_map(s):
    return s.assignment()


def two_chains(transfer):
    return make_graph({"a1": 1, "b1": 1, "a2": 1, "b2": 1, "a3": 1, "b3": 1},
                      [("a1", "a2", transfer), ("a2", "a3", transfer), ("b1", "b2", transfer), ("b2", "b3", transfer)])


def test_registered():
    assert ALGORITHMS["hios-lp"] is LP.hios_lp


@pytest.mark.parametrize("intra", [False, True])
def test_independent_chains_go_to_two_gpus(intra):
    g = two_chains(CHEAP)
    s = schedule(g, Machine(2), "hios-lp", intra=intra)
    assert gpu_map(s) == {"a1": 0, "a2": 0, "a3": 0, "b1": 1, "b2": 1, "b3": 1}
    assert Simulator(g, Machine(2)).simulate(s).latency == pytest.approx(3.0)


def test_ties_go_to_the_lowest_gpu():
    g = two_chains(CHEAP)
    s = schedule(g, Machine(4), "hios-lp")  # GPUs 1, 2, 3 are equally good for the second chain
    assert set(gpu_map(s).values()) == {0, 1}
    one = make_graph({"x": 2.0}, [])
    assert gpu_map(schedule(one, Machine(3), "hios-lp")) == {"x": 0}


def fork_join(transfer):
    return make_graph({"s": 1, "x": 1, "y": 1, "t": 1},
                      [("s", "x", transfer), ("s", "y", transfer), ("x", "t", transfer), ("y", "t", transfer)])


def test_fork_splits_when_transfers_are_cheap():
    g = fork_join(CHEAP)
    s = schedule(g, Machine(2), "hios-lp", intra=False)
    m = gpu_map(s)
    assert m["x"] != m["y"]
    assert Simulator(g, Machine(2)).simulate(s).latency == pytest.approx(3 + CHEAP)  # t joins the later branch


@pytest.mark.parametrize("intra", [False, True])
def test_chain_stays_on_one_gpu_when_transfers_are_expensive(intra):
    g = fork_join(10.0)
    s = schedule(g, Machine(4), "hios-lp", intra=intra)
    assert set(gpu_map(s).values()) == {0}
    assert Simulator(g, Machine(4)).simulate(s).latency <= 4.0


def test_several_sources_and_sinks():
    g = make_graph({"s1": 2, "s2": 2, "m": 1, "t1": 2, "t2": 2},
                   [("s1", "m", 0.1), ("s2", "m", 0.1), ("m", "t1", 0.1), ("m", "t2", 0.1)])
    s = schedule(g, Machine(2), "hios-lp")
    assert gpu_map(s) == {"s1": 0, "m": 0, "t1": 0, "s2": 1, "t2": 1}
    assert Simulator(g, Machine(2)).simulate(s).latency == pytest.approx(5.2)
    assert s.meta["paths"] == 3


def test_falls_back_to_sequential_when_the_mapping_is_worse():
    # Path a->b->c goes to GPU 0, then p->q to GPU 1 (shorter there); r needs both b and p, so a
    # huge transfer is paid whatever its GPU: the mapping is far worse than sequential.
    g = make_graph({"a": 1, "b": 1, "c": 2, "p": 1, "q": 1, "r": 1},
                   [("a", "b", 100), ("b", "c", 100), ("p", "q", 100), ("b", "r", 100), ("p", "r", 100)])
    m = Machine(2)
    s = schedule(g, m, "hios-lp", intra=False, refine=0)
    assert s.meta["mapping_latency"] > 100
    assert s.meta["fallback"] == "sequential"
    assert Simulator(g, m).simulate(s).latency == pytest.approx(g.total_work())


def test_one_gpu_without_intra_is_sequential():
    g = layered_dag(30, 60, 4, 0.8, 3)
    s = schedule(g, Machine(1), "hios-lp", intra=False)
    assert Simulator(g, Machine(1)).simulate(s).latency == pytest.approx(g.total_work())


def test_bad_options():
    g = two_chains(CHEAP)
    for opts in ({"window": 0}, {"streams": -1}, {"window": 1.5}, {"refine": -1}, {"refine": True}):
        with pytest.raises(HiosError):
            schedule(g, Machine(2), "hios-lp", **opts)
    with pytest.raises(HiosError, match="no option"):
        schedule(g, Machine(2), "hios-lp", bogus=1)


def test_layered_200_quality_and_meta():
    g = layered_dag(200, 400, 8, 0.8, 1)
    m = Machine.preset(4)
    s = schedule(g, m, "hios-lp")
    lat = check_schedule(g, m, s)
    assert lat == s.meta["latency"]
    assert lat <= s.meta["refined_latency"] <= s.meta["mapping_latency"]
    assert lat < 0.3 * g.total_work()  # 4 GPUs: far better than sequential


# -- the incremental path evaluation equals the simulator on partial schedules -----------------

def reference_mapping(graph, machine):
    """HIOS-LP steps 2-4 written plainly: every candidate evaluated by Simulator.run(complete=False)."""
    sim = Simulator(graph, machine)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    n = len(graph.ops)
    gpu_of = [-1] * n
    while min(gpu_of) < 0:
        dist, parent = {}, {}
        for v in graph.topo:
            if gpu_of[v] >= 0:
                continue
            best, par = 0.0, -1
            for u, w in timer.in_weight[v]:
                if gpu_of[u] < 0 and (dist[u] + w > best or par < 0 and dist[u] + w == best):
                    best, par = dist[u] + w, u
            dist[v], parent[v] = best + graph.ops[v].cost, par
        end = max(dist, key=lambda v: (dist[v], -graph.position[v]))
        path = []
        while end >= 0:
            path.append(end)
            end = parent[end]
        lats = []
        for gi in range(machine.gpus):
            trial = list(gpu_of)
            for v in path:
                trial[v] = gi
            stages = [[[v] for v in sorted(range(n), key=rank.__getitem__) if trial[v] == h]
                      for h in range(machine.gpus)]
            lats.append(sim.run(stages, complete=False).latency)
        best_g = lats.index(min(lats))
        for v in path:
            gpu_of[v] = best_g
    return gpu_of


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=12, zero_costs=False), machines(max_gpus=4))
def test_incremental_mapping_equals_simulator_reference(graph, machine):
    timer = FastTimer(Simulator(graph, machine))
    gpu_of, _ = LP.longest_path_mapping(timer, lst_ranks(timer))
    assert gpu_of == reference_mapping(graph, machine)


# -- properties over random DAGs, machines and options ----------------------------------------

@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=14), machines(), st.booleans(), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2))
def test_hios_lp_properties(graph, machine, intra, window, streams, refine):
    s = schedule(graph, machine, "hios-lp", intra=intra, window=window, streams=streams, refine=refine)
    lat = check_schedule(graph, machine, s, grouped=intra)
    assert lat <= sequential_latency(graph, machine)
    assert lat == s.meta["latency"]
    if intra:
        assert all(len(st) <= streams for sts in s.stages for st in sts)


def test_uneven_links():
    from hios.graph import Edge, Graph, Operator
    base = layered_dag(40, 80, 4, 0.8, 5)
    g = Graph([Operator(op.name, op.cost, "generic", 4_000_000, op.utilization) for op in base.ops],
              [Edge(e.src, e.dst, 4_000_000) for e in base.edges], "bytes")
    m = Machine(3, Link(300.0, 5.0), {(0, 1): Link(0.5, 500.0), (1, 0): Link(0.5, 500.0)})
    s = schedule(g, m, "hios-lp")
    assert check_schedule(g, m, s) <= g.total_work()


# -- steps 5 and 6: refinement and list-scheduling order ---------------------------------------

def test_refine_repairs_a_bad_mapping():
    from hios.schedulers.refine import refine_mapping
    g = two_chains(CHEAP)
    sim = Simulator(g, Machine(2))
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    start = [0] * len(g.ops)  # both chains on GPU 0: latency 6
    new, moves = refine_mapping(timer, rank, start, passes=3)
    assert start == [0] * len(g.ops)  # input untouched
    assert moves > 0
    lat = sim.run(stages_from_mapping(new, rank, 2)).latency
    assert lat < 6.0 and lat <= 3 + 2 * CHEAP + 1e-9


def test_list_order_fills_the_idle_gap():
    from hios.schedulers.list_order import list_schedule_order
    # x (GPU 0) waits for p (GPU 1) and outranks y; in rank order y waits behind x.
    g = make_graph({"p": 5, "x": 5, "z": 1, "y": 1}, [("p", "x", 0.5), ("x", "z", 0.0)])
    m = Machine(2)
    sim = Simulator(g, m)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    gpu_of = [1, 0, 0, 0]  # p on GPU 1; x, z, y on GPU 0
    by_rank = stages_from_mapping(gpu_of, rank, 2)
    listed = list_schedule_order(timer, gpu_of, rank)
    names = lambda sts: [g.ops[st[0]].name for st in sts]  # noqa: E731
    assert names(by_rank[0]) == ["x", "y", "z"]
    assert names(listed[0]) == ["y", "x", "z"]
    assert sim.run(listed).latency == pytest.approx(11.5)
    assert sim.run(by_rank).latency == pytest.approx(12.5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=14), machines(max_gpus=4), st.integers(0, 2**31))
def test_refine_and_list_order_never_hurt(graph, machine, seed):
    import random as _random
    from hios.schedulers.list_order import list_schedule_order
    from hios.schedulers.refine import refine_mapping
    rng = _random.Random(seed)
    sim = Simulator(graph, machine)
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    gpu_of = [rng.randrange(machine.gpus) for _ in graph.ops]
    before = sim.run(stages_from_mapping(gpu_of, rank, machine.gpus)).latency
    new, _ = refine_mapping(timer, rank, gpu_of, passes=2)
    after = sim.run(stages_from_mapping(new, rank, machine.gpus)).latency
    assert after <= before
    listed = list_schedule_order(timer, new, rank)
    assert sorted(v for sts in listed for st in sts for v in st) == list(range(len(graph.ops)))
    assert all(new[v] == h for h, sts in enumerate(listed) for st in sts for v in st)
    sim.run(listed)  # dependency-consistent: never deadlocks


def reference_refine(timer, rank, gpu_of, passes):
    """Step 5 written plainly: every candidate move timed from scratch, no pruning."""
    from hios.schedulers.timing_engine import time_in_rank_order
    gpu_of = list(gpu_of)
    order = sorted(range(timer.n), key=rank.__getitem__)
    lat, end = time_in_rank_order(timer, order, gpu_of)
    cur = (lat, sum(end))
    for _ in range(passes):
        moved = False
        for v in order:
            g0, best, best_g = gpu_of[v], cur, gpu_of[v]
            for h in range(timer.gpus):
                if h != g0:
                    gpu_of[v] = h
                    lat, end = time_in_rank_order(timer, order, gpu_of)
                    if (lat, sum(end)) < best:
                        best, best_g = (lat, sum(end)), h
            gpu_of[v] = best_g
            if best_g != g0:
                cur, moved = best, True
        if not moved:
            break
    return gpu_of


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=14), machines(max_gpus=4), st.integers(0, 2**31))
def test_pruned_refine_equals_plain_refine(graph, machine, seed):
    import random as _random
    from hios.schedulers.refine import refine_mapping
    rng = _random.Random(seed)
    timer = FastTimer(Simulator(graph, machine))
    rank = lst_ranks(timer)
    gpu_of = [rng.randrange(machine.gpus) for _ in graph.ops]
    assert refine_mapping(timer, rank, gpu_of, 2)[0] == reference_refine(timer, rank, gpu_of, 2)


def test_pruned_refine_equals_plain_refine_on_a_layered_graph():
    from hios.schedulers.refine import refine_mapping
    g = layered_dag(60, 120, 6, 0.8, 4)
    timer = FastTimer(Simulator(g, Machine.preset(4)))
    rank = lst_ranks(timer)
    gpu_of, _ = LP.longest_path_mapping(timer, rank)
    assert refine_mapping(timer, rank, gpu_of, 2)[0] == reference_refine(timer, rank, gpu_of, 2)


# -- the command line: hios simulate with HIOS-LP ----------------------------------------------

def _cli(capsys, *argv):
    import json as _json
    from hios.cli import main
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    out, err = capsys.readouterr()
    data = _json.loads(out) if code == 0 and "--json" in argv else None
    return code, data, err


def test_cli_simulate_round_trip(tmp_path, capsys):
    import json as _json
    from hios.formats import save_graph
    gpath = tmp_path / "g.txt"
    save_graph(layered_dag(40, 80, 4, 0.8, 2), gpath)
    code, d, _ = _cli(capsys, "simulate", gpath, "--gpus", 4, "--json", "-o", tmp_path / "s.json")
    assert code == 0 and [r["algorithm"] for r in d["results"]] == ["hios-lp"]  # the default
    lat = d["results"][0]["latency"]
    saved = _json.loads((tmp_path / "s.json").read_text())
    from hios.schedulers.intra_gpu import DEFAULT_WINDOW
    assert saved["meta"]["intra"] is True and saved["meta"]["intra_window"] == DEFAULT_WINDOW
    code, d2, _ = _cli(capsys, "simulate", gpath, "--gpus", 4, "--json", "--schedule", tmp_path / "s.json")
    assert code == 0 and d2["results"][0]["latency"] == lat
    # options reach the algorithm
    code, _, _ = _cli(capsys, "simulate", gpath, "--gpus", 4, "--window", 3, "--streams", 3, "-o", tmp_path / "w.json")
    meta = _json.loads((tmp_path / "w.json").read_text())["meta"]
    assert code == 0 and (meta["intra_window"], meta["intra_streams"]) == (3, 3)
    code, _, _ = _cli(capsys, "simulate", gpath, "--gpus", 4, "--algo", "hios-lp", "--no-intra", "-o", tmp_path / "n.json")
    n = _json.loads((tmp_path / "n.json").read_text())
    assert code == 0 and n["meta"]["intra"] is False
    assert all(len(st) == 1 for sts in n["gpus"] for st in sts)
    # a plain {"operator": gpu} mapping
    (tmp_path / "a.json").write_text(_json.dumps({name: g for g, sts in enumerate(n["gpus"]) for st in sts
                                                 for name in st}))
    code, d3, _ = _cli(capsys, "simulate", gpath, "--gpus", 4, "--json", "--schedule", tmp_path / "a.json")
    assert code == 0 and d3["results"][0]["latency"] > 0


@pytest.mark.parametrize("content,needle", [
    ({"format": "hios-schedule", "version": 1, "gpus": [[["nope"]]]}, "nope"),
    ({"0": 9}, "GPU 9"),
    ({"nope": 0}, "nope"),
    ({"format": "hios-schedule", "version": 1, "gpus": [[], [], [], [], [["0"]]]}, "GPU 4"),
    ({"format": "hios-schedule", "version": 1, "gpus": [[["0"]]]}, "misses operator"),
    ({"format": "hios-schedule", "version": 1, "gpus": [[["0"], ["0"]]]}, "more than once"),
])
def test_cli_bad_schedule_files(tmp_path, capsys, content, needle):
    import json as _json
    from hios.formats import save_graph
    gpath = tmp_path / "g.txt"
    save_graph(layered_dag(40, 80, 4, 0.8, 2), gpath)
    (tmp_path / "bad.json").write_text(_json.dumps(content))
    code, _, err = _cli(capsys, "simulate", gpath, "--gpus", 4, "--schedule", tmp_path / "bad.json")
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [("--gpus", 0), ("--gpus", 4, "--bogus"), ("--gpus", 4, "--window", 0),
                                  ("--gpus", 4, "--streams", -1), ("--gpus", 4, "--algo", "nope")])
def test_cli_bad_arguments(tmp_path, capsys, args):
    from hios.formats import save_graph
    gpath = tmp_path / "g.txt"
    save_graph(layered_dag(40, 80, 4, 0.8, 2), gpath)
    code, _, err = _cli(capsys, "simulate", gpath, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1


# -- issue 22: the fast placement (default) ---------------------------------------------------

@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=14), machines(), st.booleans())
def test_fast_placement_gives_valid_deterministic_schedules(graph, machine, intra):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LP, "EXACT_BUDGET", 0)  # the fast rule from the second path on, even here
        a = schedule(graph, machine, "hios-lp", intra=intra)
        b = schedule(graph, machine, "hios-lp", intra=intra)
    assert a.stages == b.stages
    lat = check_schedule(graph, machine, a, grouped=intra)
    assert lat <= sequential_latency(graph, machine)
    assert a.meta["exact"] is False


def test_fast_placement_with_exact_kept_times_chooses_as_the_exact_one(monkeypatch):
    g = layered_dag(300, 600, 8, 0.8, 3)
    timer = FastTimer(Simulator(g, Machine.preset(4)))
    rank = lst_ranks(timer)
    exact, paths = LP.longest_path_mapping(timer, rank, True)
    calls = []
    real = LP._FastPlacement.place
    monkeypatch.setattr(LP._FastPlacement, "place", lambda self, path: calls.append(1) or real(self, path))
    monkeypatch.setattr(LP, "EXACT_BUDGET", -1)  # the fast rule for every path
    monkeypatch.setattr(LP._FastPlacement, "CAP", 10**9)  # kept times exact
    monkeypatch.setattr(LP, "DIST_DEPTH", None)  # exact longest paths
    assert LP.longest_path_mapping(timer, rank, False) == (exact, paths)
    assert len(calls) == paths
    monkeypatch.setattr(LP._FastPlacement, "CAP", 0)  # stale times: another, valid mapping
    monkeypatch.setattr(LP._FastPlacement, "GROW", 1e9)
    stale, _ = LP.longest_path_mapping(timer, rank, False)
    assert stale != exact and min(stale) >= 0
    s = schedule(g, Machine.preset(4), "hios-lp")
    assert check_schedule(g, Machine.preset(4), s, grouped=True) <= sequential_latency(g, Machine.preset(4))


def test_exact_option_checked():
    with pytest.raises(HiosError, match="exact"):
        schedule(layered_dag(10, 20, 2, 0.8, 1), Machine(2), "hios-lp", exact="yes")


# -- issue 22: the fast refinement and the fast rules throughout ---------------------------

def test_fast_refine_repairs_a_bad_mapping():
    from hios.schedulers.refine import refine_mapping_fast
    g = two_chains(CHEAP)
    sim = Simulator(g, Machine(2))
    timer = FastTimer(sim)
    rank = lst_ranks(timer)
    start = [0] * len(g.ops)  # both chains on GPU 0: latency 6
    new, moves = refine_mapping_fast(timer, rank, start, passes=3)
    assert start == [0] * len(g.ops)  # input untouched
    assert moves > 0
    lat = sim.run(stages_from_mapping(new, rank, 2)).latency
    assert lat <= 3 + 2 * CHEAP + 1e-9


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=16), machines(max_gpus=4), st.integers(0, 2**31), st.integers(1, 3))
def test_fast_refine_never_raises_the_latency_and_is_deterministic(graph, machine, seed, passes):
    import random as _random
    from hios.schedulers.refine import refine_mapping_fast
    from hios.schedulers.timing_engine import time_in_rank_order
    rng = _random.Random(seed)
    timer = FastTimer(Simulator(graph, machine))
    rank = lst_ranks(timer)
    order = sorted(range(timer.n), key=rank.__getitem__)
    gpu_of = [rng.randrange(machine.gpus) for _ in graph.ops]
    before, _ = time_in_rank_order(timer, order, gpu_of)
    new, moves = refine_mapping_fast(timer, rank, gpu_of, passes)
    assert (new, moves) == refine_mapping_fast(timer, rank, gpu_of, passes)
    assert len(new) == len(gpu_of) and all(0 <= h < machine.gpus for h in new)
    assert moves == 0 or new != gpu_of
    after, _ = time_in_rank_order(timer, order, new)
    assert after <= before * (1 + 1e-9)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=16), machines(max_gpus=4), st.integers(0, 2**31))
def test_budgeted_exact_refine_is_the_exact_one_or_a_prefix_of_it(graph, machine, seed):
    import random as _random
    from hios.schedulers.refine import refine_mapping, refine_mapping_budget
    from hios.schedulers.timing_engine import time_in_rank_order
    rng = _random.Random(seed)
    timer = FastTimer(Simulator(graph, machine))
    rank = lst_ranks(timer)
    order = sorted(range(timer.n), key=rank.__getitem__)
    gpu_of = [rng.randrange(machine.gpus) for _ in graph.ops]
    full, moves = refine_mapping(timer, rank, gpu_of, 2)
    assert refine_mapping_budget(timer, rank, gpu_of, 2) == (full, moves, True)
    cut, cut_moves, done = refine_mapping_budget(timer, rank, gpu_of, 2, budget=0)
    assert cut_moves <= moves and (not done or (cut, cut_moves) == (full, moves))
    assert time_in_rank_order(timer, order, cut)[0] <= time_in_rank_order(timer, order, gpu_of)[0]
    # the latencies it reports (the mappers use them instead of timing again) are full timings
    from hios.schedulers.mapping_steps import stages_from_mapping
    known: dict = {}
    assert refine_mapping_budget(timer, rank, gpu_of, 2, latencies=known) == (full, moves, True)
    if machine.gpus > 1:
        assert known == {"mapping": timer.latency(stages_from_mapping(gpu_of, rank, machine.gpus)),
                         "refined": timer.latency(stages_from_mapping(full, rank, machine.gpus))}
    known.clear()
    refine_mapping_budget(timer, rank, gpu_of, 2, budget=0, latencies=known)
    assert known.get("refined", timer.latency(stages_from_mapping(cut, rank, machine.gpus))) == timer.latency(
        stages_from_mapping(cut, rank, machine.gpus))


def _all_fast(mp):
    """Every fast rule from the start, whatever the graph's size (no exact budgets, small caps)."""
    mp.setattr(importlib.import_module("hios.schedulers.timing_engine"), "BUDGET_OPS", 1)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags(max_nodes=18), machines(), st.booleans(), st.booleans())
def test_fast_mode_throughout_gives_valid_deterministic_schedules(graph, machine, intra, serialize):
    with pytest.MonkeyPatch.context() as mp:
        _all_fast(mp)
        a = schedule(graph, machine, "hios-lp", intra=intra, serialize_links=serialize)
        b = schedule(graph, machine, "hios-lp", intra=intra, serialize_links=serialize)
    drop = lambda meta: {k: v for k, v in meta.items() if k != "optimize_seconds"}  # noqa: E731
    assert a.stages == b.stages and drop(a.meta) == drop(b.meta)
    check_schedule(graph, machine, a, grouped=intra)
    seq = Simulator(graph, machine, serialize_links=serialize).simulate(schedule(graph, machine, "sequential"))
    assert Simulator(graph, machine, serialize_links=serialize).simulate(a).latency <= seq.latency
    assert a.meta["exact"] is False


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_mode_throughout_on_a_layered_graph(seed):
    # every fast rule on a 600-operator graph: a valid schedule, deterministic, and the refinement
    # repairs what the cheap placement leaves (measured here: within 3 % of the exact mode)
    g = layered_dag(600, 1200, 11, 0.8, seed)
    m = Machine.preset(4)
    with pytest.MonkeyPatch.context() as mp:
        _all_fast(mp)
        a = schedule(g, m, "hios-lp")
        b = schedule(g, m, "hios-lp")
    assert a.stages == b.stages
    lat = check_schedule(g, m, a, grouped=True)
    assert a.meta["refine_moves"] > 0
    assert lat <= sequential_latency(g, m)
    assert lat <= schedule(g, m, "hios-lp", exact=True).meta["latency"] * 1.03


def test_fast_budgets_and_caps_shrink_with_the_graph():
    from hios.schedulers.timing_engine import BUDGET_OPS, decayed, exact_budget
    assert exact_budget(10, 100) == 1000 and exact_budget(10, BUDGET_OPS) == 10 * BUDGET_OPS
    sizes = [BUDGET_OPS, 2 * BUDGET_OPS, 10 * BUDGET_OPS, 40 * BUDGET_OPS]
    work = [exact_budget(10, n) for n in sizes]
    assert work == sorted(work, reverse=True) and work[-1] < work[0] / 1000
    assert [decayed(1000, n) for n in sizes] == [1000, 250, 10, 0]
    assert decayed(48, 40 * BUDGET_OPS, 4) == 4 and decayed(48, 10, 4) > 48
