"""Torch-free parts of the measurement loop: the concurrency model and its fit, feeding measured
segment times back into a profile (converging on a fake runtime), and choosing by measurement."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from hios.cost.concurrency import (Interval, choose_stage_model, fit_beta_to_latency, fit_concurrency,
                              mean_concurrency, prediction_error)
from hios.cost.costmodel import ConcurrencyStageModel, HIOSStageModel, stage_model_from_dict
from hios.errors import HiosError
from hios.cost.feedback import check_settings, feed_back, profile_settings, runtime_settings, split_cost
from hios.generate import layered_dag
from hios.graph import GraphError
from hios.machine import Machine
from hios.schedulers import schedule
from hios.selection import Candidate, choose, shortlist
from hios.simulator import Simulator


# ----------------------------------------------------------------------------- the model
def test_concurrency_model_limits_and_round_trip():
    m = ConcurrencyStageModel(0.25, 0.01)
    assert m([2.0], [1.0]) == 2.0 and m([], []) == 0.0
    assert m([1.0, 3.0], [1, 1]) == pytest.approx(3.0 + 0.25 * 1.0 + 0.01)
    assert ConcurrencyStageModel(0.0)([1.0, 2.0, 3.0]) == 3.0          # perfect overlap
    assert ConcurrencyStageModel(1.0)([1.0, 2.0, 3.0]) == pytest.approx(6.0)  # serialised
    assert stage_model_from_dict(m.to_dict()) == m
    for bad in (-0.1, 1.5, True):
        with pytest.raises(GraphError):
            ConcurrencyStageModel(bad)
    with pytest.raises(GraphError):
        ConcurrencyStageModel(0.5, -1.0)


@settings(max_examples=50, deadline=None)
@given(costs=st.lists(st.floats(0.001, 5.0), min_size=1, max_size=6), beta=st.floats(0, 1),
       over=st.floats(0, 0.05))
def test_concurrency_model_work_share_is_a_lower_bound(costs, beta, over):
    m = ConcurrencyStageModel(beta, over)
    t = m(costs, [1.0] * len(costs))
    assert t >= max(costs) - 1e-12
    assert sum(m.work_share(c, 1.0) for c in costs) <= t + 1e-9


# ----------------------------------------------------------------------------- the fit
def _groups(beta, over, n, rng, noise=0.0):
    truth = ConcurrencyStageModel(beta, over)
    out = []
    for _ in range(n):
        costs = [rng.uniform(0.01, 1.0) for _ in range(rng.randint(2, 4))]
        out.append({"ops": [f"o{k}" for k in range(len(costs))], "costs": costs,
                    "time": truth(costs) * (1 + rng.uniform(-noise, noise))})
    return out


@pytest.mark.parametrize("beta,over", [(0.0, 0.0), (0.3, 0.002), (0.7, 0.0), (1.0, 0.01)])
def test_fit_recovers_known_parameters_from_groups(beta, over):
    m = fit_concurrency(_groups(beta, over, 30, random.Random(1)))
    assert m.beta == pytest.approx(beta, abs=1e-6) and m.overhead_ms == pytest.approx(over, abs=1e-7)
    assert m.fit["groups"] == 30 and m.fit["mean_rel_error"] < 1e-9


def test_fit_with_noise_stays_close_and_in_the_box():
    m = fit_concurrency(_groups(0.4, 0.001, 200, random.Random(2), noise=0.05))
    assert abs(m.beta - 0.4) < 0.05 and 0 <= m.overhead_ms < 0.005
    # data faster than perfect overlap: beta clipped to 0, not negative
    fast = [{"costs": [1.0, 1.0], "time": 0.8}, {"costs": [2.0, 0.5], "time": 1.5}]
    assert fit_concurrency(fast).beta == 0.0
    with pytest.raises(HiosError):
        fit_concurrency([])


def _processor_sharing(jobs: dict, beta: float, start: dict) -> dict:
    """Fake GPU: jobs (key -> work alone) start at given times and share the device, each running at
    1 / (1 + beta * (m - 1)) while m run; returns key -> end time."""
    t, left, end = 0.0, dict(jobs), {}
    pending = sorted(start, key=start.get)
    running: set = set()
    while left:
        while pending and start[pending[0]] <= t + 1e-15:
            running.add(pending.pop(0))
        if not running:
            t = start[pending[0]]
            continue
        rate = 1.0 / (1.0 + beta * (len(running) - 1))
        done_in = min(left[k] for k in running) / rate
        nxt = start[pending[0]] - t if pending else float("inf")
        dt = min(done_in, nxt)
        for k in list(running):
            left[k] -= dt * rate
            if left[k] <= 1e-12:
                running.discard(k)
                del left[k]
                end[k] = t + dt
        t += dt
    return end


def test_fit_recovers_beta_from_measured_intervals():
    rng = random.Random(3)
    for beta in (0.2, 0.6):
        ivs, alone = [], {}
        for rep in range(20):
            jobs = {(rep, k): rng.uniform(0.05, 1.0) for k in range(3)}
            start = {key: rng.uniform(0, 0.2) for key in jobs}
            end = _processor_sharing(jobs, beta, start)
            ivs += [Interval(key, f"dev{rep}", start[key], end[key]) for key in jobs]
            alone.update(jobs)
        m = fit_concurrency(intervals=ivs, alone=alone, with_overhead=False)
        # the linearised model (mean concurrency) is an approximation of processor sharing
        assert abs(m.beta - beta) < 0.08, (beta, m.beta)


def test_mean_concurrency():
    ivs = [Interval("a", 0, 0.0, 2.0), Interval("b", 0, 1.0, 2.0), Interval("c", 1, 0.0, 2.0)]
    m = mean_concurrency(ivs)
    assert m == {"a": 1.5, "b": 2.0, "c": 1.0}


def test_beta_from_a_whole_plan_latency_and_model_choice():
    g = layered_dag(30, 60, 4, 0.5, 7)
    mach = Machine(1)
    sched = schedule(g, mach, "hios-lp")
    lat = lambda b: Simulator(g, mach, ConcurrencyStageModel(b)).simulate(sched).latency  # noqa: E731
    target = lat(0.37)
    b = fit_beta_to_latency(lat, target)
    assert lat(b) == pytest.approx(target, rel=1e-3)
    assert fit_beta_to_latency(lat, lat(0.0) * 0.5) == 0.0 and fit_beta_to_latency(lat, lat(1.0) * 2) == 1.0
    groups = _groups(0.3, 0.0, 20, random.Random(4))
    name, errors = choose_stage_model({"hios": HIOSStageModel(0.5), "concurrency": fit_concurrency(groups)}, groups)
    assert name == "concurrency" and errors["concurrency"] < 1e-9 < errors["hios"]
    assert prediction_error(HIOSStageModel(), []) is None


# ----------------------------------------------------------------------------- feedback
def test_settings_checks():
    run = runtime_settings("inductor", True, "tf32", "cuda")
    prof = {"kernels": "inductor", "memory_format": "contiguous", "precision": "tf32", "device_type": "cuda"}
    assert profile_settings(prof)["freezing"] is False
    with pytest.raises(HiosError, match="memory_format=contiguous"):
        check_settings(profile_settings(prof), run, "profile p.json")
    check_settings({"kernels": "inductor"}, run, "profile")  # only what both name is compared


def test_split_cost():
    assert split_cost([1.0, 3.0], 2.0) == [0.5, 1.5]
    assert split_cost([0.0, 0.0], 2.0) == [1.0, 1.0]


def _fake_run(true_graph, sched, true_model, program_segments):
    """Fake runtime: the simulator with the true costs and the true concurrency model; each segment's
    measured interval runs from its first operator's start to its last one's end."""
    res = Simulator(true_graph, Machine(1), true_model).simulate(sched)
    ivs, segs = [], []
    for k, ops in enumerate(program_segments):
        idx = [true_graph.index[n] for n in ops]
        ivs.append(Interval(k, 0, min(res.start[i] for i in idx), max(res.end[i] for i in idx)))
    conc = mean_concurrency(ivs)
    for k, ops in enumerate(program_segments):
        segs.append({"ops": ops, "measured_ms": ivs[k].end - ivs[k].start, "concurrency": conc[k]})
    return res.latency, segs


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_feeding_back_converges_on_a_fake_runtime(seed):
    from hios.program.segmenting import stream_program
    rng = random.Random(seed)
    prior = layered_dag(40, 80, 5, 0.5, seed)
    # what really runs: every operator 40-100 % of what the profile says, kernels slow each other
    true = prior.with_costs({op.name: op.cost * rng.uniform(0.4, 1.0) for op in prior.ops})
    hw = ConcurrencyStageModel(0.35)
    model = fit_concurrency(_groups(0.35, 0.0, 10, rng))  # the profile's measured groups
    graph = prior
    errors = []
    for _ in range(3):
        sched = schedule(graph, Machine(1), "hios-lp", stage_model=model)
        prog = stream_program(graph, sched)
        segs = [list(s.ops) for s in prog.segments]
        measured, record = _fake_run(true, sched, hw, segs)
        predicted = Simulator(graph, Machine(1), model).simulate(sched).latency
        errors.append(abs(predicted - measured) / measured)
        graph = feed_back(graph, record, model.beta)
    assert graph.meta["profile"]["feedback"]["rounds"] == 3
    assert errors[0] > 0.2          # the prior profile is far off
    assert errors[1] < 0.10         # one round trip: within 10 %
    assert errors[2] < 0.10


# ----------------------------------------------------------------------------- selection
class FakeTimer:
    def __init__(self):
        self.calls = []

    def __call__(self, fn):
        ms = fn()
        self.calls.append(ms)
        return ms


def _cand(name, ms, predicted=None, key=None, fail=False):
    def build():
        if fail:
            raise RuntimeError("cannot compile")
        return lambda: ms
    return Candidate(name, build, predicted, key)


def test_choose_keeps_the_fastest_measured_not_the_best_predicted():
    timer = FakeTimer()
    cands = [_cand("hios-lp", 0.9, 0.5), _cand("naive", 0.7, 0.6), _cand("sequential", 0.6, 2.0),
             _cand("torch.compile", 0.8)]
    sel = choose(cands, timer, top=2, clock=iter(range(100)).__next__)
    assert sel.shortlist == ["hios-lp", "naive", "torch.compile"]  # sequential predicted too slow
    assert sel.winner == "naive" and sel.margin == pytest.approx(0.8 / 0.7)
    assert sorted(timer.calls) == [0.7, 0.8, 0.9] and sel.seconds == 1
    assert "naive" in sel.summary()


def test_choose_reports_failures_and_dedups():
    timer = FakeTimer()
    cands = [_cand("a", 1.0, 0.5, key="s1"), _cand("b", 9.0, 0.6, key="s1"), _cand("c", 0.5, 0.7, fail=True),
             _cand("compile", 2.0)]
    sel = choose(cands, timer, top=None)
    assert timer.calls == [1.0, 2.0]  # b shares a's schedule: timed once
    assert sel.measured_ms["b"] == 1.0 and "cannot compile" in sel.errors["c"]
    assert sel.winner == "a" and sel.margin == pytest.approx(2.0)
    with pytest.raises(HiosError, match="no candidate could be measured"):
        choose([_cand("x", 1.0, fail=True)], timer)
    with pytest.raises(HiosError, match="unique"):
        choose([_cand("x", 1.0), _cand("x", 2.0)], timer)
    assert [c.name for c in shortlist(cands, 0)] == ["compile"]


def test_fit_from_a_kernel_timeline_and_unidentifiable_data():
    from hios.cost.concurrency import timeline_row
    rng = random.Random(5)
    jobs = {k: rng.uniform(0.01, 0.1) for k in range(40)}
    start = {k: rng.uniform(0, 0.5) for k in jobs}
    end = _processor_sharing(jobs, 0.15, start)
    kern = [Interval(k, 0, start[k], end[k]) for k in jobs]
    m = fit_concurrency(timelines=[timeline_row(kern, sum(jobs.values()))], with_overhead=False)
    assert abs(m.beta - 0.15) < 0.03 and m.fit["timelines"] == 1
    # one after another: nothing overlaps, beta cannot be told
    serial = [Interval(k, 0, float(k), k + 0.5) for k in range(5)]
    with pytest.raises(HiosError, match="nothing measured ran concurrently"):
        fit_concurrency(intervals=serial, alone={k: 0.4 for k in range(5)})


def test_plan_candidates_are_valid_distinct_schedules():
    from hios.selection import plan_candidates
    g = layered_dag(30, 60, 4, 0.5, 3)
    for gpus in (1, 2):
        cands = plan_candidates(g, Machine(gpus), HIOSStageModel())
        keys = set()
        for name, sched, pred in cands:
            m = Machine(max(1, sched.gpus))
            assert Simulator(g, m).simulate(sched).latency == pytest.approx(pred)  # valid, as predicted
            key = tuple(tuple(tuple(s) for s in sts) for sts in sched.stages if sts)
            assert key not in keys
            keys.add(key)
        names = [c[0] for c in cands]
        assert "hios-lp" in names and "sequential" in names
        if gpus == 1:  # the one-device variant of a one-GPU plan is the plan itself
            assert "hios-lp 1 device" not in names
