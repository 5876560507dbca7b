"""Barrier-free simulation of stream programs, and the capacity-sharing model that drives it."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from hios.cost.costmodel import ConcurrencyStageModel, HIOSStageModel, SharingStageModel, stage_model_from_dict
from hios.errors import HiosError
from hios.generate import layered_dag
from hios.graph import GraphError
from hios.machine import Machine
from hios.program.segmenting import stream_program
from hios.schedulers import schedule
from hios.stage_fit import STAGE_FAMILIES, FitCase, fit_stage_parameter, simulated
from hios.stream_simulator import program_step_costs, simulate_program

costs = st.lists(st.floats(0.001, 10.0), min_size=1, max_size=6)


def _seg(stream: int, waits=(), record=None, device: int = 0) -> dict:
    return {"kind": "segment", "device": device, "stream": stream, "ops": [], "waits": list(waits), "record": record,
            "stage": 0}


@given(costs, st.data(), st.floats(0, 1))
def test_sharing_model_bounds(ws, data, floor):
    us = data.draw(st.lists(st.floats(0, 1), min_size=len(ws), max_size=len(ws)))
    m = SharingStageModel(floor)
    t = m(ws, us)
    assert max(ws) * (1 - 1e-9) <= t <= sum(ws) * (1 + 1e-9)      # between perfect overlap and serial
    assert sum(m.work_share(w, u) for w, u in zip(ws, us)) <= t * (1 + 1e-9)   # the lower bound's share
    if len(ws) == 1:
        assert t == ws[0]


def test_sharing_model_overlaps_what_fits_on_the_gpu_and_shares_the_rest():
    m = SharingStageModel(0.5)
    assert m([1.0, 2.0], [0.0, 0.0]) == pytest.approx(2.0)        # demands 0.5 + 0.5: no slowdown
    assert m([1.0, 2.0], [1.0, 1.0]) == pytest.approx(3.0)        # both fill the GPU: serial
    # three latency-bound members: demand 1.5 until the first ends (1 ms alone: 1.5 ms), then 1
    assert m([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == pytest.approx(1.5 + 1.0 + 1.0)
    assert SharingStageModel(1.0)([1.0, 2.0, 3.0], [0.0] * 3) == pytest.approx(6.0)
    assert stage_model_from_dict(m.to_dict()) == m
    with pytest.raises(GraphError, match="floor must be in"):
        SharingStageModel(1.5)


@given(costs, st.data(), st.floats(0, 1))
def test_a_program_of_independent_streams_takes_the_stage_time(ws, data, floor):
    us = data.draw(st.lists(st.floats(0, 1), min_size=len(ws), max_size=len(ws)))
    prog = {"steps": [_seg(k) for k in range(len(ws))]}
    m = SharingStageModel(floor)
    assert simulate_program(prog, ws, us, m) == pytest.approx(m(ws, us), rel=1e-9)


def test_one_stream_runs_its_segments_one_after_another_and_waits_hold():
    m = SharingStageModel(0.0)
    assert simulate_program({"steps": [_seg(0), _seg(0), _seg(0)]}, [1.0, 2.0, 3.0], [0.0] * 3, m) == 6.0
    # stream 1 waits for the event of stream 0's first segment: starts at 1, ends at 1 + 2
    prog = {"steps": [_seg(0, record=0), _seg(0), _seg(1, waits=[0])]}
    assert simulate_program(prog, [1.0, 5.0, 2.0], [0.0] * 3, m) == pytest.approx(6.0)
    assert simulate_program(prog, [1.0, 1.0, 4.0], [0.0] * 3, m) == pytest.approx(5.0)
    with pytest.raises(HiosError, match="never recorded"):
        simulate_program({"steps": [_seg(0, waits=[7])]}, [1.0], [0.0], m)
    with pytest.raises(HiosError, match="no rate law"):
        simulate_program({"steps": [_seg(0)]}, [1.0], [0.0], HIOSStageModel())
    with pytest.raises(HiosError, match="2 costs"):
        simulate_program({"steps": [_seg(0)]}, [1.0, 2.0], [0.0], m)


def test_no_barrier_lets_a_short_members_successor_start_early():
    # stage 1: a (1 ms) on stream 0, b (3 ms) on stream 1; stage 2: c (2 ms) reads a only, on stream 0.
    # A stage barrier starts c at 3 (ends 5); the program starts it at 1 (ends 3 with full overlap).
    prog = {"steps": [_seg(0, record=0), _seg(1), _seg(0, waits=[0])]}
    m = SharingStageModel(0.0)
    assert simulate_program(prog, [1.0, 3.0, 2.0], [0.0] * 3, m) == pytest.approx(3.0)
    # both fill the GPU: shared all along, 6 ms of work
    assert simulate_program(prog, [1.0, 3.0, 2.0], [1.0] * 3, m) == pytest.approx(6.0)


def test_logical_devices_share_one_gpu_unless_told_otherwise():
    prog = {"steps": [_seg(0, device=0), _seg(0, device=1)]}
    m = ConcurrencyStageModel(1.0)
    assert simulate_program(prog, [2.0, 2.0], [1.0, 1.0], m) == pytest.approx(4.0)
    assert simulate_program(prog, [2.0, 2.0], [1.0, 1.0], m, shared=False) == pytest.approx(2.0)


def _program_case(seed: int, floor: float) -> FitCase:
    g = layered_dag(20, 50, layers=4, seed=seed)
    rng = random.Random(seed)
    g = g.with_costs(g.costs, {op.name: rng.random() for op in g.ops})
    machine = Machine.preset(1)
    sched = schedule(g, machine, "hios-lp")
    prog = stream_program(g, sched).to_dict()
    return FitCase(g, machine, sched, simulated(FitCase(g, machine, sched, 1.0, prog), SharingStageModel(floor)), prog)


def test_program_step_costs_add_up_the_operators_and_the_fit_recovers_the_floor():
    case = _program_case(4, 0.3)
    c, u = program_step_costs(case.graph, case.program)
    assert sum(c) == pytest.approx(case.graph.total_work())
    assert all(0.0 <= x <= 1.0 for x in u)
    cases = [case, _program_case(5, 0.3), _program_case(6, 0.3)]
    (floor,), err = fit_stage_parameter(STAGE_FAMILIES["sharing"], cases)
    assert floor == pytest.approx(0.3, abs=0.01) and err < 1e-6
    # without barriers this plan is faster than the stage simulator says for the same model
    stages = simulated(FitCase(case.graph, case.machine, case.schedule, 1.0), SharingStageModel(0.3))
    assert case.measured_ms < stages
