"""Stage models fitted to measured plan replays (:mod:`hios.stage_fit`), the occupancy stage model,
and the fed-back profile's fitted model reaching the next plan (torch-free)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from hios.cost.costmodel import ConcurrencyStageModel, OccupancyStageModel, WorkShareStageModel, stage_model_from_dict
from hios.generate import layered_dag
from hios.graph import GraphError
from hios.machine import Machine
from hios.plan import Plan
from hios.schedulers import schedule
from hios.stage_fit import (DEFAULT_FAMILY, STAGE_FAMILIES, FitCase, evaluate_points, evaluate_transfer,
                            fed_back_profile, fit_stage_parameter, measured_costs, simulated)
from hios.program.segmenting import stream_program

costs = st.lists(st.floats(0.001, 10.0), min_size=1, max_size=6)


@given(costs, st.data(), st.floats(0, 1), st.floats(0, 1))
def test_occupancy_model_bounds(ws, data, low, high):
    us = data.draw(st.lists(st.floats(0, 1), min_size=len(ws), max_size=len(ws)))
    m = OccupancyStageModel(low, high)
    t = m(ws, us)
    assert max(ws) - 1e-12 <= t <= sum(ws) + 1e-9          # between perfect overlap and serial
    assert sum(m.work_share(w, u) for w, u in zip(ws, us)) <= t + 1e-9   # the lower bound's share
    if len(ws) == 1:
        assert t == ws[0]


@given(costs, st.floats(0, 1))
def test_occupancy_model_with_one_slope_is_the_concurrency_model(ws, beta):
    us = [random.Random(len(ws)).random() for _ in ws]
    assert OccupancyStageModel(beta, beta)(ws, us) == pytest.approx(ConcurrencyStageModel(beta)(ws, us))


def test_occupancy_model_charges_operators_that_fill_the_gpu_more():
    m = OccupancyStageModel(0.1, 0.9)
    assert m([1.0, 1.0], [0.0, 0.0]) == pytest.approx(1.1)
    assert m([1.0, 1.0], [0.5, 0.5]) == pytest.approx(1.5)
    assert m([1.0, 1.0], [1.0, 1.0]) == pytest.approx(1.9)
    assert stage_model_from_dict(m.to_dict()) == m
    with pytest.raises(GraphError, match="high must be in"):
        OccupancyStageModel(0.1, 1.5)


@given(costs, st.data(), st.floats(0, 1))
def test_work_share_model_bounds(ws, data, gamma):
    us = data.draw(st.lists(st.floats(0, 1), min_size=len(ws), max_size=len(ws)))
    m = WorkShareStageModel(gamma)
    t = m(ws, us)
    assert max(ws) - 1e-12 <= t <= sum(ws) + 1e-9
    assert sum(m.work_share(w, u) for w, u in zip(ws, us)) <= t + 1e-9
    if len(ws) == 1:
        assert t == ws[0]


def test_work_share_model_serialises_work_and_overlaps_latency():
    m = WorkShareStageModel(0.2)
    assert m([1.0, 1.0], [1.0, 1.0]) == pytest.approx(2.0)    # both fill the GPU: serial
    assert m([1.0, 1.0], [0.0, 0.0]) == pytest.approx(1.2)    # both latency-bound: gamma of the other
    assert m([1.0, 1.0], [0.5, 0.5]) == pytest.approx(1.0 + 0.5 + 0.1)
    assert m([4.0, 1.0], [0.1, 0.1]) == pytest.approx(0.5 + 3.6 + 0.2 * 0.9)
    assert WorkShareStageModel(0.0)([4.0, 1.0], [0.0, 0.0]) == 4.0   # latencies hide wholly
    assert stage_model_from_dict(m.to_dict()) == m
    with pytest.raises(GraphError, match="gamma must be in"):
        WorkShareStageModel(1.5)


def test_work_share_fit_recovers_gamma():
    cases = []
    for seed in (1, 2, 3):
        g = layered_dag(24, 60, layers=4, seed=seed)
        rng = random.Random(seed)
        g = g.with_costs(g.costs, {op.name: rng.random() for op in g.ops})
        machine = Machine.preset(1)
        sched = schedule(g, machine, "hios-lp", stage_model=ConcurrencyStageModel(0.3))
        cases.append(FitCase(g, machine, sched, simulated(FitCase(g, machine, sched, 1.0), WorkShareStageModel(0.35))))
    (gamma,), err = fit_stage_parameter(STAGE_FAMILIES["workshare"], cases)
    assert gamma == pytest.approx(0.35, abs=0.01) and err < 1e-6


def _case(seed: int, beta: float, gpus: int = 2) -> FitCase:
    g = layered_dag(24, 60, layers=4, seed=seed)
    machine = Machine.preset(gpus)
    sched = schedule(g, machine, "hios-lp", stage_model=ConcurrencyStageModel(0.5))
    truth = simulated(FitCase(g, machine, sched, 1.0), ConcurrencyStageModel(beta))
    return FitCase(g, machine, sched, truth)


@pytest.mark.parametrize("beta", [0.15, 0.6])
def test_fit_recovers_the_parameter_that_made_the_latencies(beta):
    cases = [_case(s, beta) for s in (1, 2, 3)]
    (value,), err = fit_stage_parameter(STAGE_FAMILIES["concurrency"], cases)
    fitted = [simulated(c, ConcurrencyStageModel(value)) for c in cases]
    assert err < 1e-6 and all(f == pytest.approx(c.measured_ms, rel=1e-3) for f, c in zip(fitted, cases))


def test_two_parameter_fit_is_no_worse_than_its_one_parameter_special_case():
    cases = [_case(s, 0.4) for s in (4, 5)]
    (b,), e1 = fit_stage_parameter(STAGE_FAMILIES["concurrency"], cases)
    _, e2 = fit_stage_parameter(STAGE_FAMILIES["occupancy"], cases)
    assert e2 <= e1 + 1e-9


def test_fit_needs_a_measurement():
    with pytest.raises(Exception, match="no measured plan"):
        fit_stage_parameter(STAGE_FAMILIES["hios"], [])


def _plan_and_record(seed: int = 7):
    g = layered_dag(20, 50, layers=4, seed=seed)
    machine = Machine.preset(1)
    sched = schedule(g, machine, "hios-lp", stage_model=ConcurrencyStageModel(0.5))
    plan = Plan(model={"name": g.name}, cost_source="test", machine=machine, graph=g, schedule=sched,
                predicted={}, lower_bounds={})
    prog = stream_program(g, sched)
    segs = [{"step": s.id, "device": s.device, "stream": s.stream, "ops": list(s.ops),
             "measured_ms": 1.3 * sum(g[n].cost for n in s.ops), "concurrency": 1.0,
             "alone_ms": 1.1 * sum(g[n].cost for n in s.ops)} for s in prog.segments]
    return plan, prog, {"segments": segs, "settings": {"kernels": "eager", "device_type": "cpu"}}


def test_fed_back_profile_holds_a_model_that_predicts_the_measured_run():
    plan, _, rec = _plan_and_record()
    costs_alone = 1.1 * plan.graph.total_work()
    measured = 0.8 * costs_alone
    g = fed_back_profile(plan, rec, measured)
    fit = g.meta["profile"]["replay_fit"]
    assert fit["family"] == DEFAULT_FAMILY and fit["costs"] == "alone"
    model = stage_model_from_dict(fit["model"])
    got = simulated(FitCase(g, plan.machine, plan.schedule, measured), model)
    assert got == pytest.approx(measured, rel=0.01) and 0 < fit["model"]["beta"] < 1
    assert g.total_work() == pytest.approx(costs_alone)
    assert fed_back_profile(plan, rec, None).meta["profile"].get("replay_fit") is None


def test_a_plan_from_a_fed_back_profile_uses_its_fitted_model(tmp_path):
    from hios.cost.costing import _from_file, resolve_source
    from hios.cost.options import CostOptions
    from hios.formats import save_graph
    plan, _, rec = _plan_and_record()
    g = fed_back_profile(plan, rec, 0.8 * 1.1 * plan.graph.total_work())
    path = tmp_path / "fb.json"
    save_graph(g, path)

    class Captured:  # what the costing step reads of a capture
        graph = plan.graph
        example_inputs = ()
    opts = CostOptions(source=str(path))
    costed = _from_file(Captured, resolve_source(opts), opts)
    assert costed.stage_model == stage_model_from_dict(g.meta["profile"]["replay_fit"]["model"])
    overridden = _from_file(Captured, resolve_source(CostOptions(source=str(path), alpha=0.3)),
                            CostOptions(source=str(path), alpha=0.3))
    assert getattr(overridden.stage_model, "alpha", None) == 0.3


def test_evaluate_points_leaves_each_point_out():
    g = layered_dag(16, 40, layers=3, seed=3)
    machine = Machine.preset(1)
    cases = []
    for k, beta in enumerate((0.3, 0.3, 0.9)):
        sched = schedule(g, machine, "hios-lp")
        prog = stream_program(g, sched).to_dict()
        alone = {i: sum(g[n].cost for n in st["ops"]) for i, st in enumerate(prog["steps"]) if st["kind"] == "segment"}
        measured = simulated(FitCase(g, machine, sched, 1.0), ConcurrencyStageModel(beta))
        g.meta = {**(g.meta or {}), "device_spec": {"name": "h200"}}
        cases.append({"point": f"p{k}", "plan": "A", "graph": g, "machine": machine, "schedule": sched,
                      "program": prog, "alone_ms": alone, "measured_ms": measured})
    rows = evaluate_points(cases, {"concurrency": STAGE_FAMILIES["concurrency"]})
    by = {r["point"]: r for r in rows}
    # p2 (beta 0.9) is predicted from p0 and p1 (beta 0.3): its own latency is not in its fit
    assert float(by["p2"]["param_own[concurrency]"]) == pytest.approx(0.3, abs=0.01)
    assert by["p2"]["pred[own|concurrency]"] < 0.95 * by["p2"]["measured_ms"]
    assert by["p0"]["pred[own|concurrency]"] > by["p0"]["measured_ms"]  # fitted on p1 (0.3) and p2 (0.9)
    assert measured_costs(g, cases[0]["program"], cases[0]["alone_ms"]).total_work() == pytest.approx(g.total_work())


def test_evaluate_points_with_achieved_utilizations_and_a_bad_choice():
    g = layered_dag(12, 30, layers=3, seed=5)
    g.meta = {**(g.meta or {}), "device_spec": {"name": "h200"}}
    machine = Machine.preset(1)
    sched = schedule(g, machine, "hios-lp")
    prog = stream_program(g, sched).to_dict()
    alone = {i: sum(g[n].cost for n in st["ops"]) for i, st in enumerate(prog["steps"]) if st["kind"] == "segment"}
    cases = [{"point": f"p{k}", "plan": "A", "graph": g, "machine": machine, "schedule": sched, "program": prog,
              "alone_ms": alone, "measured_ms": 0.8 * g.total_work()} for k in range(2)]
    rows = evaluate_points(cases, {"occupancy": STAGE_FAMILIES["occupancy"]}, "achieved")
    assert all("pred[own|occupancy+achieved]" in r and "pred[oos|occupancy+achieved]" in r for r in rows)
    with pytest.raises(Exception, match="utilization must be"):
        evaluate_points(cases, STAGE_FAMILIES, "measured")
    work = evaluate_points(cases, {"workshare": STAGE_FAMILIES["workshare"]}, "work")
    assert all("pred[oos|workshare+work]" in r and "sum_analytic_oos_ms" in r for r in work)
    with pytest.raises(Exception, match="spec_form must be"):
        evaluate_points(cases, STAGE_FAMILIES, "work", "exact")


def test_evaluate_transfer_fits_on_one_run_and_predicts_another():
    g = layered_dag(16, 40, layers=3, seed=3)
    g.meta = {**(g.meta or {}), "device_spec": {"name": "h200"}}
    machine = Machine.preset(1)
    sched = schedule(g, machine, "hios-lp")
    prog = stream_program(g, sched).to_dict()
    alone = {i: sum(g[n].cost for n in st["ops"]) for i, st in enumerate(prog["steps"]) if st["kind"] == "segment"}

    def run(beta):
        measured = simulated(FitCase(g, machine, sched, 1.0), ConcurrencyStageModel(beta))
        return [{"point": "p", "plan": "A", "graph": g, "machine": machine, "schedule": sched, "program": prog,
                 "alone_ms": alone, "measured_ms": measured}]
    fam = {"concurrency": STAGE_FAMILIES["concurrency"]}
    same = evaluate_transfer(run(0.4), run(0.4), fam)[0]
    assert float(same["param_xrun[concurrency]"]) >= 0.0
    # own segment times and a parameter fitted on an identical run: the latency comes back
    assert same["pred[xown|concurrency]"] == pytest.approx(same["measured_ms"], rel=0.01)
    # fitted where the streams overlap (beta 0.1), it under-predicts a run where they do not (beta 0.9)
    other = evaluate_transfer(run(0.1), run(0.9), fam)[0]
    assert other["pred[xown|concurrency]"] < 0.95 * other["measured_ms"]
    with pytest.raises(Exception, match="both runs"):
        evaluate_transfer([], run(0.4), fam)
