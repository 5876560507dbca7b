"""Exact optimum of the whole HIOS problem (mapping, order, concurrent stages) with CP-SAT."""

from __future__ import annotations

import json
import math
import sys

import pytest
from hypothesis import given, settings, strategies as st

from hios.bounds import lower_bounds
from hios.cli import main
from hios.cost.costmodel import HIOSStageModel
from hios.errors import HiosError
from hios.formats import save_graph
from hios.generate import layered_dag
from hios.graph import Edge, Graph, Operator
from hios.machine import Link, Machine
from hios.schedulers import parse_algorithms, refusal, schedule
from hios.schedulers.optimal import MAX_CANDIDATES, size_problem
from hios.simulator import Simulator

try:
    import ortools  # noqa: F401
    HAVE_ORTOOLS = True
except ImportError:
    HAVE_ORTOOLS = False
needs_ortools = pytest.mark.skipif(not HAVE_ORTOOLS, reason="OR-Tools not installed (pip install hios[optimal])")

#: 1 GB/s and 5 us: a byte edge takes a whole number of nanoseconds.
EXACT_LINK = Link(1.0, 5.0)
#: 1 ns time unit: with the graphs below every stage and transfer time is a whole number of units.
EXACT = {"resolution_us": 0.001}


@st.composite
def exact_dags(draw, max_nodes: int = 6, max_edges: int | None = None) -> Graph:
    """Random DAGs whose times are whole in 1 ns units under EXACT_LINK and the HIOS stage model
    (alpha 0.5): costs in whole us, utilizations in quarters, explicit times in whole us, bytes."""
    n = draw(st.integers(1, max_nodes))
    costs = draw(st.lists(st.integers(1, 3000), min_size=n, max_size=n))
    utils = draw(st.lists(st.sampled_from([0.25, 0.5, 0.75, 1.0]), min_size=n, max_size=n))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                          max_size=max_edges if max_edges is not None else 2 * n)) if n > 1 else []
    edges, seen = [], set()
    for a, b in pairs:
        u, v = min(a, b), max(a, b)
        if u == v or (u, v) in seen:
            continue
        seen.add((u, v))
        if draw(st.booleans()):
            edges.append(Edge(f"op{u}", f"op{v}", 0, draw(st.integers(0, 2000)) / 1000))
        else:
            edges.append(Edge(f"op{u}", f"op{v}", draw(st.integers(0, 2_000_000)), None))
    ops = [Operator(f"op{k}", costs[k] / 1000, "generic", 0, utils[k]) for k in range(n)]
    return Graph(ops, edges, "exact-dag")


def all_schedules(g: Graph, gpus: int, streams: int):
    """Every valid schedule (stages of at most ``streams`` operators), built as the stage
    sequences of tests/strategies.py: repeatedly a GPU and a non-empty set of ready operators."""
    n = len(g.ops)
    seen = set()

    def rec(placed: frozenset, stages: tuple):
        if len(placed) == n:
            key = tuple(tuple(tuple(sorted(s)) for s in sts) for sts in stages)
            if key not in seen:
                seen.add(key)
                yield [list(map(list, sts)) for sts in stages]
            return
        ready = [v for v in range(n) if v not in placed and all(u in placed for u in g.preds[v])]
        subsets = [[]]
        for v in ready:
            subsets += [s + [v] for s in subsets if len(s) < streams]
        for gi in range(gpus):
            for s in subsets[1:]:
                new = tuple(sts + (tuple(s),) if k == gi else sts for k, sts in enumerate(stages))
                yield from rec(placed | frozenset(s), new)

    yield from rec(frozenset(), tuple(() for _ in range(gpus)))


def brute_force(g: Graph, m: Machine, streams: int = 4, serialize_links: bool = False) -> float:
    sim = Simulator(g, m, serialize_links=serialize_links)
    return min(sim.run(s).latency for s in all_schedules(g, m.gpus, streams))


def check_exact(g: Graph, s, m: Machine, serialize_links: bool = False) -> float:
    """The schedule is valid, its simulated latency is the solver's objective and within its bound."""
    r = Simulator(g, m, serialize_links=serialize_links).simulate(s)  # raises on an invalid schedule
    assert sorted(s.operators()) == sorted(g.names)
    assert all(1 <= len(st) <= s.meta["streams"] for sts in s.stages for st in sts)
    assert r.latency == pytest.approx(s.meta["simulated_latency"], rel=1e-12)
    assert s.meta["bound"] <= r.latency + 1e-12
    return r.latency


def test_too_large_graph_is_an_error():
    ops = [Operator(f"o{i}", 1.0) for i in range(31)]
    with pytest.raises(HiosError, match="at most 30 operators"):
        schedule(Graph(ops, []), Machine(2), "optimal")


def test_too_many_candidate_stages_is_an_error():
    ops = [Operator(f"o{i}", 1.0, utilization=0.5) for i in range(30)]  # 30 independent operators
    g = Graph(ops, [])
    assert "candidate stages" in size_problem(g)
    if HAVE_ORTOOLS:
        with pytest.raises(HiosError, match=f"more than {MAX_CANDIDATES} candidate stages"):
            schedule(g, Machine(2), "optimal")
    assert size_problem(g, streams=1) is None  # one operator per stage: 30 candidates


def test_missing_ortools_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ortools.sat.python", None)
    monkeypatch.setitem(sys.modules, "ortools.sat.python.cp_model", None)
    g = Graph([Operator("a", 1.0)], [])
    with pytest.raises(HiosError, match=r"pip install 'hios\[optimal\]'"):
        schedule(g, Machine(1), "optimal")


@pytest.mark.parametrize("opt,value", [("time_limit", 0), ("time_limit", -1.0), ("time_limit", math.inf),
                                       ("time_limit", math.nan), ("time_limit", "5"), ("workers", 0),
                                       ("seed", -1), ("resolution_us", 0.0)])
def test_bad_options(opt, value):
    with pytest.raises(HiosError, match=opt):
        schedule(Graph([Operator("a", 1.0)], []), Machine(1), "optimal", **{opt: value})


@needs_ortools
def test_two_chains_go_to_two_gpus():
    ops = [Operator(n, c) for n, c in [("a1", 2.0), ("a2", 3.0), ("b1", 4.0), ("b2", 1.5)]]
    g = Graph(ops, [Edge("a1", "a2", time=1.0), Edge("b1", "b2", time=1.0)])
    s = schedule(g, Machine(2), "optimal")
    assert s.meta["proven_optimal"] and s.meta["status"] == "OPTIMAL"
    assert s.meta["simulated_latency"] == pytest.approx(5.5)
    assert s.meta["objective"] == pytest.approx(5.5, rel=1e-6)
    assert s.assignment()["a1"] == s.assignment()["a2"] != s.assignment()["b1"] == s.assignment()["b2"]


@needs_ortools
def test_groups_independent_operators_when_it_pays():
    # one GPU, two independent low-utilization operators: one concurrent stage is faster
    g = Graph([Operator("a", 2.0, utilization=0.5), Operator("b", 2.0, utilization=0.5)], [])
    s = schedule(g, Machine(1), "optimal")
    assert s.stages == [[("a", "b")]]
    assert s.meta["simulated_latency"] == pytest.approx(HIOSStageModel()([2.0, 2.0], [0.5, 0.5]))  # 3.0 < 4.0
    # full utilization: grouping gains nothing, the candidate is dropped and the stages stay single
    g = Graph([Operator("a", 2.0), Operator("b", 2.0)], [])
    s = schedule(g, Machine(1), "optimal")
    assert all(len(st) == 1 for sts in s.stages for st in sts) and s.meta["simulated_latency"] == 4.0


@needs_ortools
@settings(max_examples=25, deadline=None)
@given(exact_dags(max_nodes=4, max_edges=5), st.integers(1, 2))
def test_matches_brute_force(g, gpus):
    m = Machine(gpus, EXACT_LINK)
    s = schedule(g, m, "optimal", **EXACT)
    assert s.meta["proven_optimal"]
    lat = check_exact(g, s, m)
    assert lat == pytest.approx(s.meta["objective"], rel=1e-6)
    assert lat == pytest.approx(brute_force(g, m), rel=1e-6)


@needs_ortools
@settings(max_examples=10, deadline=None)
@given(exact_dags(max_nodes=4, max_edges=4), st.sampled_from([1.0, 0.1]))
def test_matches_brute_force_on_uneven_links(g, slow):
    # three GPUs; the links into GPU 2 are slow
    m = Machine(3, EXACT_LINK, {(0, 2): Link(slow, 50.0), (1, 2): Link(slow, 50.0)})
    s = schedule(g, m, "optimal", **EXACT)
    assert s.meta["proven_optimal"]
    lat = check_exact(g, s, m)
    assert lat == pytest.approx(s.meta["objective"], rel=1e-6)
    assert lat == pytest.approx(brute_force(g, m), rel=1e-6)


@needs_ortools
@settings(max_examples=10, deadline=None)
@given(exact_dags(max_nodes=4, max_edges=5))
def test_serialized_links_bound_the_true_optimum(g):
    m = Machine(2, EXACT_LINK)
    s = schedule(g, m, "optimal", serialize_links=True, **EXACT)
    lat = check_exact(g, s, m, serialize_links=True)
    best = brute_force(g, m, serialize_links=True)
    assert s.meta["bound"] <= best * (1 + 1e-9) <= lat * (1 + 1e-9)
    if s.meta["proven_optimal"]:
        assert lat == pytest.approx(best, rel=1e-6)


@needs_ortools
@settings(max_examples=20, deadline=None)
@given(exact_dags(max_nodes=8), st.integers(1, 4), st.integers(1, 4))
def test_simulated_equals_objective_and_beats_heuristics(g, gpus, streams):
    m = Machine(gpus, EXACT_LINK)
    s = schedule(g, m, "optimal", streams=streams, **EXACT)
    assert s.meta["proven_optimal"]
    lat = check_exact(g, s, m)
    assert lat == pytest.approx(s.meta["objective"], rel=1e-6)
    sim = Simulator(g, m)
    for other, opts in (("hios-lp", {"streams": streams}), ("heft", {}), ("sequential", {})):
        assert lat <= sim.simulate(schedule(g, m, other, **opts)).latency * (1 + 1e-9)
    lb = lower_bounds(g, gpus)
    assert lat >= lb.value - 1e-9


@needs_ortools
@settings(max_examples=10, deadline=None)
@given(st.integers(1, 10_000), st.integers(2, 4))
def test_layered_graphs_real_times(seed, gpus):
    # times that are not whole units: the result is simulated at or below the model's makespan
    g = layered_dag(10, 20, 4, 0.8, seed)
    m = Machine(gpus)
    s = schedule(g, m, "optimal", time_limit=5)
    lat = check_exact(g, s, m)
    assert lat <= s.meta["objective"] * (1 + 1e-9)
    if s.meta["proven_optimal"]:
        assert lat - s.meta["bound"] <= s.meta["rounding_slack"] + 1e-9


@needs_ortools
def test_deterministic_with_a_time_limit():
    g = layered_dag(20, 40, 4, 0.8, 5)  # not proven within this limit
    m = Machine(2)
    runs = [schedule(g, m, "optimal", time_limit=4) for _ in range(2)]
    if any(r.meta["stopped_by"] == "wall clock" for r in runs):
        pytest.skip("the machine was too busy: the wall-clock backstop stopped CP-SAT")
    assert runs[0].stages == runs[1].stages
    for k in ("status", "objective", "bound", "simulated_latency"):
        assert runs[0].meta[k] == runs[1].meta[k]


@needs_ortools
def test_deterministic_when_proven():
    g = layered_dag(12, 24, 4, 0.8, 3)
    m = Machine(3)
    runs = [schedule(g, m, "optimal") for _ in range(3)]
    assert all(r.meta["proven_optimal"] for r in runs)
    assert runs[0].stages == runs[1].stages == runs[2].stages


@pytest.fixture
def small_graph(tmp_path):
    path = tmp_path / "g.txt"
    save_graph(layered_dag(10, 20, 4, 0.8, 3), path)
    return path


@needs_ortools
def test_cli_reports_the_proof(small_graph, tmp_path, capsys):
    assert main(["simulate", str(small_graph), "--gpus", "2", "--algo", "hios-lp,optimal", "--time-limit", "5",
                 "--json", "-o", str(tmp_path / "s.json")]) == 0
    d = json.loads(capsys.readouterr().out)
    rec = {r["algorithm"]: r for r in d["results"]}
    assert "proof" not in rec["hios-lp"]
    proof = rec["optimal"]["proof"]
    assert proof["status"] == "OPTIMAL" and proof["proven_optimal"] is True
    assert proof["bound"] <= rec["optimal"]["latency"] <= proof["objective"] * (1 + 1e-9)
    assert proof["gap"] == pytest.approx((rec["optimal"]["latency"] - proof["bound"]) / rec["optimal"]["latency"])
    assert json.loads((tmp_path / "s.json").read_text())["meta"]["time_limit"] == 5.0
    assert main(["simulate", str(small_graph), "--gpus", "2", "--algo", "optimal"]) == 0
    out = capsys.readouterr().out
    assert "proof" in out and "optimal (OPTIMAL), bound" in out


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan"])
def test_cli_bad_time_limit(small_graph, capsys, value):
    assert main(["simulate", str(small_graph), "--algo", "optimal", "--time-limit", value]) == 2
    err = capsys.readouterr().err
    assert "--time-limit must be positive and finite" in err and len(err.strip().splitlines()) == 1


def test_cli_graph_too_large(tmp_path, capsys):
    path = tmp_path / "big.txt"
    save_graph(layered_dag(40, 80, 4, 0.8, 1), path)
    assert main(["simulate", str(path), "--gpus", "2", "--algo", "optimal"]) == 2
    err = capsys.readouterr().err
    assert "at most 30 operators" in err and len(err.strip().splitlines()) == 1


def test_all_includes_optimal_when_ortools_is_installed():
    small, big = layered_dag(10, 20, 4, 0.8, 1), layered_dag(40, 80, 4, 0.8, 1)
    assert ("optimal" in parse_algorithms("all", small)) == HAVE_ORTOOLS
    assert ("optimal" in parse_algorithms("all", big)) == HAVE_ORTOOLS  # skipped where it runs, with a line
    assert "optimal" not in parse_algorithms("all")


def test_refusal_names_the_limit():
    big = layered_dag(40, 80, 4, 0.8, 1)
    assert "at most 30 operators" in refusal("optimal", big, intra=False)
    wide = Graph([Operator(f"o{i}", 1.0, utilization=0.5) for i in range(30)], [])
    assert "candidate stages" in refusal("optimal", wide)
    for opts in ({"intra": False}, {"streams": 1}, {"window": 1}):  # mapping and order: no stages
        assert refusal("optimal", wide, **opts) is None
    assert refusal("hios-lp", big) is None


@pytest.fixture
def wide_graph(tmp_path):
    """30 independent operators: too many candidate stages for the whole problem, trivial for
    mapping and order (15 per GPU)."""
    path = tmp_path / "wide.txt"
    save_graph(Graph([Operator(f"o{i}", 1.0, utilization=0.5) for i in range(30)], [], "wide"), path)
    return path


@pytest.mark.parametrize("algo", ["hios-lp,optimal", "all"])
def test_cli_skips_optimal_beyond_its_reach(wide_graph, tmp_path, capsys, algo):
    big = tmp_path / "big.txt"
    save_graph(layered_dag(40, 80, 4, 0.8, 1), big)
    for path, why in ((big, "at most 30 operators"), (wide_graph, "candidate stages")):
        assert main(["simulate", str(path), "--gpus", "2", "--algo", algo, "--json"]) == 0
        out, err = capsys.readouterr()
        d = json.loads(out)
        names = {r["algorithm"] for r in d["results"]}
        assert "hios-lp" in names and "optimal" not in names
        skips = [line for line in err.splitlines() if "skipped" in line]
        if HAVE_ORTOOLS or algo != "all":
            assert len(skips) == 1 and skips[0].startswith("optimal skipped: ") and why in skips[0]
            assert why in d["skipped"]["optimal"]


def test_cli_refuses_optimal_alone_beyond_its_reach(wide_graph, capsys):
    assert main(["simulate", str(wide_graph), "--gpus", "2", "--algo", "optimal"]) == 2
    err = capsys.readouterr().err
    assert "candidate stages" in err and len(err.strip().splitlines()) == 1


@needs_ortools
def test_cli_no_intra_gives_mapping_and_order(wide_graph, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["simulate", str(wide_graph), "--gpus", "2", "--algo", "hios-lp,optimal", "--no-intra",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "optimal (OPTIMAL)" in text
    meta = json.loads(out.read_text())["meta"]
    if meta.get("model") is not None:  # -o keeps the best schedule; hios-lp may tie with it
        assert meta["model"] == "mapping and order" and meta["streams"] == 1


@needs_ortools
@settings(max_examples=15, deadline=None)
@given(exact_dags(max_nodes=5, max_edges=6), st.integers(1, 3), st.sampled_from(["intra", "window", "streams"]))
def test_mapping_and_order_matches_brute_force(g, gpus, how):
    m = Machine(gpus, EXACT_LINK, {(0, 2): Link(0.1, 50.0)} if gpus == 3 else {})
    opts = {"intra": {"intra": False}, "window": {"window": 1}, "streams": {"streams": 1}}[how]
    s = schedule(g, m, "optimal", **opts, **EXACT)
    assert s.meta["model"] == "mapping and order" and s.meta["streams"] == 1 and s.meta["proven_optimal"]
    lat = check_exact(g, s, m)
    best = brute_force(g, m, streams=1)
    assert s.meta["bound"] <= best * (1 + 1e-9)
    assert lat == pytest.approx(best, abs=2 * s.meta["rounding_slack"])


@needs_ortools
def test_mapping_and_order_proves_a_two_gpu_layered_graph():
    # two GPUs make the hardest instances; the idle bounds let CP-SAT prove this one quickly
    g = layered_dag(20, 40, 4, 0.8, 7)
    m = Machine(2)
    s = schedule(g, m, "optimal", intra=False, time_limit=10)
    assert s.meta["model"] == "mapping and order" and s.meta["proven_optimal"] and s.meta["status"] == "OPTIMAL"
    lat = check_exact(g, s, m)
    assert lat - s.meta["bound"] <= 2 * s.meta["rounding_slack"] + 1e-12
    sim = Simulator(g, m)
    for other in ("hios-lp", "hios-mr", "heft"):
        assert lat <= sim.simulate(schedule(g, m, other, intra=False) if other.startswith("hios")
                                   else schedule(g, m, other)).latency * (1 + 1e-9)


def _fixed_model_solves(g: Graph, em, sol) -> bool:
    """Fixing ``sol``'s GPUs, stages and starts leaves a feasible model whose makespan is ``sol``'s."""
    from ortools.sat.python import cp_model

    for v, gi in enumerate(sol["gpu_of"]):
        em.model.Add(em.on[v][gi] == 1)
        em.model.Add(em.start[v] == sol["start"][v])
    for c in range(len(em.pick)):
        em.model.Add(em.pick[c] == int(c in sol["picked"]))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    return solver.Solve(em.model) == cp_model.OPTIMAL and solver.ObjectiveValue() == sol["makespan"]


@needs_ortools
@pytest.mark.parametrize("gpus,serialize", [(2, False), (3, False), (4, True)])
def test_hints_are_model_solutions(gpus, serialize):
    """Every heuristic schedule, timed by hint_solution, satisfies both models: fixing its GPUs,
    stages and starts leaves a feasible model whose makespan is the hint's."""
    from hios.schedulers.optimal import _hint_schedules
    from hios.schedulers.optimal_model import build, hint_solution
    from hios.schedulers.optimal_order import build_order

    g = layered_dag(14, 28, 4, 0.8, gpus)
    m = Machine(gpus)
    sm = HIOSStageModel()
    sim = Simulator(g, m, sm, serialize)
    hints = _hint_schedules(g, m, sm, 4, sim)
    assert {name for _, name, _ in hints} == {"hios-lp", "heft", "sequential"}
    for lat, name, idx in hints:
        for em in (build(g, m, sm, 4, 1e5, serialize, 6000), build_order(g, m, sm, 1e5, serialize)):
            sol = hint_solution(g, em, idx, serialize)
            assert sol is not None, name
            if em.pick:  # the whole model keeps the heuristic's stages
                assert sol["makespan"] / 1e5 == pytest.approx(lat, abs=1e-5 * (len(g.ops) + len(g.edges)))
            assert _fixed_model_solves(g, em, sol), name


@needs_ortools
@settings(max_examples=40, deadline=None)
@given(st.data())
def test_every_schedule_satisfies_the_models(data):
    """The redundant constraints (idle time at each GPU's ends, load, cumulative, symmetry) cut
    off no schedule: a random valid schedule, timed as soon as possible, is a solution of the
    model with its own makespan, so CP-SAT's bound holds for every schedule."""
    import random

    from strategies import dags, random_valid_schedule

    from hios.schedulers.optimal_model import build, hint_solution
    from hios.schedulers.optimal_order import build_order

    g = data.draw(dags(max_nodes=8))
    gpus = data.draw(st.integers(2, 3))
    uneven = data.draw(st.booleans())
    m = Machine(gpus, EXACT_LINK, {(0, 1): Link(0.2, 20.0), (1, 0): Link(4.0, 1.0)} if uneven else {})
    serialize = data.draw(st.booleans())
    one = data.draw(st.booleans())
    sched = random_valid_schedule(g, gpus, random.Random(data.draw(st.integers(0, 10**6))), max_stage=1 if one else 3)
    sm = HIOSStageModel()
    em = build_order(g, m, sm, 1e5, serialize) if one else build(g, m, sm, 3, 1e5, serialize, 6000)
    sol = hint_solution(g, em, sched.indexed(g), serialize)
    if sol is None:  # only a schedule slower than running everything on one GPU is outside the models
        lat = Simulator(g, m, sm, serialize).simulate(sched).latency
        assert lat * 1e5 > em.horizon - len(g.ops) - len(g.edges)
        return
    assert _fixed_model_solves(g, em, sol)
