"""Machine/link model, transfer-time rule and stage models."""

import math
import random

import pytest
from hypothesis import given, settings, strategies as st

from hios.cost.costmodel import HIOSStageModel, MeasuredStageModel, stage_model_from_dict
from hios.graph import Edge, GraphError
from hios.machine import DEFAULT_LINK, LINK_PRESETS, Link, Machine, link_preset


def test_presets_present_and_sane():
    for name in ["nvlink-v100", "nvlink-a100", "nvlink-h100", "nvlink-h200", "pcie3", "pcie4", "pcie5"]:
        lk = link_preset(name)
        assert lk.name == name and lk.bandwidth_gbps > 0 and lk.latency_us >= 0
    assert DEFAULT_LINK in LINK_PRESETS
    assert Machine(2).link == LINK_PRESETS[DEFAULT_LINK]
    bw = {k: v.bandwidth_gbps for k, v in LINK_PRESETS.items()}
    assert bw["pcie3"] < bw["pcie4"] < bw["pcie5"] < bw["nvlink-v100"] < bw["nvlink-a100"] < bw["nvlink-h100"]


def test_unknown_preset():
    with pytest.raises(GraphError, match="unknown link preset 'nvlink-z'"):
        link_preset("nvlink-z")
    with pytest.raises(GraphError, match="unknown link preset"):
        Machine.preset(2, "infiniband")


def test_transfer_rule():
    m = Machine(3, Link(10.0, 20.0))  # 10 GB/s, 20 us
    e_bytes = Edge("a", "b", 10**9)
    e_time = Edge("a", "b", 10**9, 0.25)
    e_zero = Edge("a", "b")
    assert m.transfer_ms(e_bytes, 1, 1) == 0.0
    assert m.transfer_ms(e_time, 2, 2) == 0.0
    assert m.transfer_ms(e_bytes, 0, 1) == pytest.approx(0.02 + 100.0)  # 1 GB at 10 GB/s = 100 ms
    assert m.transfer_ms(e_time, 0, 1) == 0.25  # explicit time wins over bytes
    assert m.transfer_ms(e_zero, 0, 2) == pytest.approx(0.02)  # latency only
    assert m.transfer_ms(Edge("a", "b", 0, 0.0), 0, 1) == 0.0


def test_per_pair_links():
    slow = Link(1.0, 0.0, "slow")
    m = Machine(3, Link(100.0, 0.0), {(0, 2): slow})
    e = Edge("a", "b", 10**6)
    assert m.transfer_ms(e, 0, 2) == pytest.approx(1.0)
    assert m.transfer_ms(e, 2, 0) == pytest.approx(0.01)  # links are directed
    assert not m.uniform() and Machine(3).uniform()
    assert m.link_between(0, 2) is slow and m.link_between(1, 2) == Link(100.0, 0.0)


def test_machine_dict_round_trip():
    m = Machine(4, LINK_PRESETS["pcie4"], {(0, 1): Link(7.5, 1.5, "x"), (3, 2): Link(2.0)})
    assert Machine.from_dict(m.to_dict()) == m
    assert Machine.from_dict(Machine(1).to_dict()) == Machine(1)


@pytest.mark.parametrize("kw,fragment", [
    (dict(gpus=0), "GPU count"), (dict(gpus=-2), "GPU count"), (dict(gpus=1.5), "GPU count"),
    (dict(gpus=True), "GPU count"),
    (dict(gpus=2, links={(0, 2): Link(1.0)}), "link \\(0, 2\\)"),
    (dict(gpus=2, links={(1, 1): Link(1.0)}), "link \\(1, 1\\)"),
    (dict(gpus=2, link="nvlink-h100"), "Link"),
])
def test_machine_validation(kw, fragment):
    with pytest.raises(GraphError, match=fragment):
        Machine(**kw)


@pytest.mark.parametrize("bw,lat", [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (1, -1), (1, math.nan)])
def test_link_validation(bw, lat):
    with pytest.raises(GraphError, match="link"):
        Link(bw, lat)


@pytest.mark.parametrize("d", [{}, {"gpus": 2}, {"gpus": "x", "link": {"bandwidth_gbps": 1}},
                               {"gpus": 2, "link": {"bandwidth_gbps": 1}, "links": [{"src": 0}]}, []])
def test_machine_from_dict_errors(d):
    with pytest.raises(GraphError, match="machine"):
        Machine.from_dict(d)


# -- stage models --------------------------------------------------------------

def test_hios_stage_model_formula():
    m = HIOSStageModel()
    assert m.alpha == 0.5
    assert m([2.5], [0.3]) == 2.5  # a single operator costs its own time
    assert m([], []) == 0.0
    # alpha*sum + (1-alpha)*max(sum w*u, max w)
    assert m([1.0, 2.0], [0.5, 0.5]) == pytest.approx(0.5 * 3 + 0.5 * max(1.5, 2.0))
    assert m([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]) == pytest.approx(6.0)  # full utilization: no gain
    assert HIOSStageModel(1.0)([1.0, 2.0], [0.1, 0.1]) == pytest.approx(3.0)
    assert HIOSStageModel(0.0)([1.0, 2.0], [0.1, 0.1]) == pytest.approx(2.0)
    assert stage_model_from_dict(m.to_dict()) == m


@pytest.mark.parametrize("alpha", [-0.1, 1.1, math.nan, "0.5"])
def test_alpha_validation(alpha):
    with pytest.raises(GraphError, match="alpha"):
        HIOSStageModel(alpha)
    with pytest.raises(GraphError, match="alpha"):
        MeasuredStageModel(alpha)


def test_stage_model_from_dict():
    assert stage_model_from_dict(None) == HIOSStageModel()
    assert stage_model_from_dict({"type": "hios", "alpha": 0.25}) == HIOSStageModel(0.25)
    mm = MeasuredStageModel(0.4, {(1.0, 2.0): 2.2})
    assert stage_model_from_dict(mm.to_dict()) == mm
    with pytest.raises(GraphError, match="unknown stage model"):
        stage_model_from_dict({"type": "magic"})


def test_measured_stage_model():
    mm = MeasuredStageModel(0.5, {(1.0, 2.0): 2.2})
    assert mm([2.0, 1.0], [0.5, 0.5]) == 2.2  # order of members does not matter
    assert mm([3.0], [0.1]) == 3.0
    assert mm([1.0, 1.0], [0.5, 0.5]) == HIOSStageModel(0.5)([1.0, 1.0], [0.5, 0.5])


stage = st.lists(st.tuples(st.floats(0, 10), st.floats(0.01, 1.0)), min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(stage, st.floats(0.0, 1.0))
def test_stage_time_bounds(members, alpha):
    """max(w) <= stage <= sum(w), and stage >= the sum of work shares (what the work bound relies on)."""
    costs = [c for c, _ in members]
    utils = [u for _, u in members]
    m = HIOSStageModel(alpha)
    t = m(costs, utils)
    eps = 1e-9 * (1 + sum(costs))
    assert max(costs) - eps <= t <= sum(costs) + eps
    assert t >= sum(m.work_share(c, u) for c, u in members) - eps
    for c, u in members:
        assert m.work_share(c, u) <= c + eps


@settings(max_examples=60, deadline=None)
@given(stage, st.lists(st.tuples(st.lists(st.floats(0.1, 5), min_size=2, max_size=4), st.floats(0.05, 1.5)),
                       max_size=3))
def test_measured_work_share_is_a_lower_bound(members, groups):
    rng = random.Random(0)
    table = {}
    for costs, ratio in groups:
        key = tuple(sorted(round(c, 6) for c in costs))
        table[key] = ratio * sum(key)
    mm = MeasuredStageModel(0.5, table)
    cases = [members] + [[(c, rng.uniform(0.1, 1)) for c in k] for k in table]
    for mem in cases:
        costs = [c for c, _ in mem]
        t = mm(costs, [u for _, u in mem])
        assert t >= sum(mm.work_share(c, u) for c, u in mem) - 1e-9 * (1 + sum(costs))


def test_measured_group_of_rounded_costs_stays_above_work_shares():
    """Hypothesis found costs (1.0, 0.6640625): the table key rounds them to 1.664062 in sum, and
    the measured time at ratio 1 fell below the work shares' sum (1.6640625)."""
    costs = (1.0, 0.6640625)
    key = tuple(sorted(round(c, 6) for c in costs))
    mm = MeasuredStageModel(0.5, {key: sum(key)})
    t = mm(list(costs), [1.0, 1.0])
    assert t == sum(key)  # the measured time as measured
    assert t >= sum(mm.work_share(c, 1.0) for c in costs)
