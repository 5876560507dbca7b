"""Join absorption (:mod:`hios.schedulers.absorb_joins`, issue 21): a valid schedule whose program
passes :func:`hios.program.segmenting.verify` on random graphs, the group on one stream, the model's
output unchanged on CPU, and fewer segments on the saved NASNet plan."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from hios.errors import HiosError
from hios.formats import graph_from_dict
from hios.generate import layered_dag
from hios.graph import Edge, Graph, Operator
from hios.machine import Machine
from hios.program.segmenting import stream_program
from hios.schedule import Schedule
from hios.schedulers import schedule
from hios.schedulers.absorb_joins import CHAINS_KEY, absorb_joins
from hios.simulator import Simulator

from cli_helpers import cwd, run  # noqa: F401 - cwd is a fixture
from strategies import graph_and_schedule, join_graphs, random_valid_schedule

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "sim_to_real_h200" / "data"


def _check(graph: Graph, before: Schedule, after: Schedule) -> None:
    """Same operators on the same devices; every program of the new schedule verifies; every
    group runs on one stream, its members one after the other."""
    assert sorted(after.operators()) == sorted(before.operators())
    assert after.assignment() == before.assignment()
    for sync in ("data", "stage"):
        for merge in (False, True):
            prog = stream_program(graph, after, sync=sync, merge=merge)  # verify() runs inside
            seq: dict = {}
            for st_ in prog.segments:
                seq.setdefault((st_.device, st_.stream), []).extend(st_.ops)
            for chain in (c["ops"] for c in after.meta[CHAINS_KEY]):
                where = {prog.placement[n] for n in chain}
                assert len(where) == 1, f"group {chain} split over streams {where}"
                ops = seq[where.pop()]
                k = ops.index(chain[0])
                assert ops[k:k + len(chain)] == chain
    Simulator(graph, Machine(max(1, after.gpus))).simulate(after)


@settings(max_examples=120, deadline=None)
@given(case=graph_and_schedule(max_nodes=14, max_gpus=3), fraction=st.sampled_from([0.1, 0.25, 0.5, 1.0]))
def test_absorption_always_yields_a_valid_schedule(case, fraction):
    graph, _gpus, sched = case
    _check(graph, sched, absorb_joins(graph, sched, fraction))


@settings(max_examples=150, deadline=None)
@given(case=join_graphs(), fraction=st.sampled_from([0.25, 0.5, 1.0]))
def test_absorption_on_cells_with_joins_yields_a_valid_schedule(case, fraction):
    graph, _gpus, sched = case
    out = absorb_joins(graph, sched, fraction)
    _check(graph, sched, out)
    info = out.meta["absorb_joins"]
    assert info["groups"] == len(out.meta[CHAINS_KEY]) and info["joins"] >= info["groups"]


@pytest.mark.parametrize("seed", range(6))
def test_absorption_on_layered_graphs_absorbs_and_stays_valid(seed):
    g = layered_dag(60, 140, 6, 0.6, seed)
    rng = random.Random(seed)
    for gpus in (1, 2):
        sched = random_valid_schedule(g, gpus, rng, max_stage=4, p_single=0.3)
        out = absorb_joins(g, sched, 1.0)
        _check(g, sched, out)
        info = out.meta["absorb_joins"]
        assert info["groups"] == len(out.meta[CHAINS_KEY])
        assert info["joins"] >= info["groups"]


def _diamond():
    g = Graph([Operator("x", 1.0), Operator("conv", 4.0), Operator("pool", 0.5), Operator("add", 0.1),
               Operator("y", 1.0)],
              [Edge("x", "conv"), Edge("x", "pool"), Edge("conv", "add"), Edge("pool", "add"), Edge("add", "y")])
    return g, Schedule([[("x",), ("conv", "pool"), ("add",), ("y",)]])


def test_a_join_and_its_cheap_input_join_the_costly_stream():
    g, sched = _diamond()
    out = absorb_joins(g, sched, 0.25)
    assert out.stages == [[("x",), ("pool",), ("conv",), ("add",), ("y",)]]
    assert out.meta[CHAINS_KEY] == [{"ops": ["pool", "conv", "add"], "root": "conv"}]
    before, after = stream_program(g, sched), stream_program(g, out)
    assert len(before.segments) == 4 and before.events == 2   # [x] [conv] [pool] [add, y]
    assert [s.ops for s in after.segments] == [("x", "pool", "conv", "add", "y")] and after.events == 0
    assert sched.stages == [[("x",), ("conv", "pool"), ("add",), ("y",)]]  # the input is not changed
    # a sibling above the fraction stays where it was
    same = absorb_joins(g, sched, 0.1)
    assert same.stages == sched.stages and same.meta[CHAINS_KEY] == []
    assert same.meta["absorb_joins"]["skipped"]["cost"] == 1


def test_the_group_continues_its_roots_input_stream_also_without_costs():
    """The runtime cuts the captured graph, whose operators carry no cost: the chain's root, named
    in the schedule, still decides which stream the group continues."""
    g = Graph([Operator("x", 1.0), Operator("y", 2.0), Operator("z", 1.0), Operator("conv", 4.0),
               Operator("pool", 0.5), Operator("add", 0.1)],
              [Edge("x", "y"), Edge("x", "z"), Edge("y", "conv"), Edge("z", "pool"), Edge("conv", "add"),
               Edge("pool", "add")])
    out = absorb_joins(g, Schedule([[("x",), ("y", "z"), ("conv", "pool"), ("add",)]]), 0.25)
    assert out.stages == [[("x",), ("y", "z"), ("pool",), ("conv",), ("add",)]]
    uncosted = Graph([op.with_cost(0.0) for op in g.ops], g.edges, g.name)
    for graph in (g, uncosted):
        prog = stream_program(graph, out)
        assert ("pool", "conv", "add") in [s.ops for s in prog.segments]
        assert prog.placement["pool"] == prog.placement["y"]


def test_option_reaches_every_algorithm_and_bad_fractions_are_refused():
    from hios.options import ScheduleOptions
    g, _ = _diamond()
    for algo in ("hios-lp", "sequential", "heft"):
        s = schedule(g, Machine(1), algo, absorb_joins=0.25)
        assert s.meta["absorb_joins"]["fraction"] == 0.25
        stream_program(g, s)
    assert "absorb_joins" not in schedule(g, Machine(1), "hios-lp").meta  # off by default
    assert ScheduleOptions().absorb_joins is None
    assert ScheduleOptions(absorb_joins=0.5).scheduler_kwargs()["absorb_joins"] == 0.5
    for bad in (0, 1.5, -0.1, True, "x"):
        with pytest.raises(HiosError, match="fraction"):
            ScheduleOptions(absorb_joins=bad)
        with pytest.raises(HiosError, match="fraction"):
            absorb_joins(g, Schedule([[("x",), ("conv", "pool"), ("add",), ("y",)]]), bad)


def test_cli_flag_and_its_one_line_error(cwd, capsys):
    code, out, err = run(capsys, "simulate", "g.txt", "--absorb-joins", "0.5", "--json")
    assert code == 0, err
    code, out, err = run(capsys, "simulate", "g.txt", "--absorb-joins", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--absorb-joins" in err


def test_stale_or_bad_chains_are_hints_or_one_line_errors():
    g, sched = _diamond()
    s = Schedule(sched.stages, meta={CHAINS_KEY: [["add", "pool"]]})  # against the stage order: a hint only
    stream_program(g, s)
    with pytest.raises(HiosError, match="unknown operator 'nope'"):
        stream_program(g, Schedule(sched.stages, meta={CHAINS_KEY: [["nope"]]}))
    stream_program(g, Schedule(sched.stages, meta={CHAINS_KEY: [{"ops": ["pool", "conv"], "root": "conv"}]}))
    for bad, why in (("pool", "list of chains"), ([{"ops": "pool"}], "list of chains"),
                     ([{"ops": ["pool"], "root": "conv"}], "not in its chain")):
        with pytest.raises(HiosError, match=why):
            stream_program(g, Schedule(sched.stages, meta={CHAINS_KEY: bad}))


def _saved(point: str):
    d = json.loads((DATA / f"{point}.json").read_text())
    return graph_from_dict(d["graph"], point), Schedule.from_dict(d["plans"]["A"]["schedule"])


def test_fewer_segments_on_the_saved_nasnet_plan():
    """NASNet-A large 331 (the H200 plan A of issue 20): 362 segments as it ran; absorbing joins
    whose cheap inputs cost at most half the costly one leaves fewer segments and events.  The
    runtime cuts the captured graph, whose operators carry no cost, so the count does too."""
    g, sched = _saved("nasnetalarge-331")
    uncosted = Graph([op.with_cost(0.0) for op in g.ops], g.edges, g.name)
    before = stream_program(uncosted, sched)
    out = absorb_joins(g, sched, 0.5)
    after = stream_program(uncosted, out)
    _check(g, sched, out)
    _check(uncosted, sched, out)
    assert out.meta["absorb_joins"]["joins"] > 0
    assert len(after.segments) < len(before.segments)
    assert after.events < before.events


# ----------------------------------------------------------------------------- on a model, CPU
torch = pytest.importorskip("torch")
nn = torch.nn


class Cells(nn.Module):
    """Two NASNet-like cells: each adds a convolution chain to a cheap branch of the cell's input."""

    def __init__(self, c: int = 16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.chains = nn.ModuleList([nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 1),
                                                   nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
                                     for _ in range(4)])
        self.side = nn.ModuleList([nn.Conv2d(c, c, 1) for _ in range(4)])
        self.mix = nn.ModuleList([nn.Conv2d(2 * c, c, 1) for _ in range(2)])
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        for k in range(2):
            # the cheap siblings are small convolutions and each join is read twice: capture
            # gathers a pool into the join it feeds and a join into its only reader
            # (hios.frontend.capture, step 5), leaving this pass nothing to do
            a = self.chains[2 * k](h) + self.side[2 * k](h)
            b = self.chains[2 * k + 1](h) + self.side[2 * k + 1](h)
            h = self.mix[k](torch.cat([a, b], 1)) + a * b
        return self.head(h.mean((2, 3)))


def test_plan_with_absorbed_joins_equals_the_model_on_cpu():
    from hios.cost.options import CostOptions
    from hios.options import ScheduleOptions
    from hios.pipeline import plan_model
    from hios.runtime.local.executor import compile as hios_compile
    torch.manual_seed(0)
    model = Cells().eval()
    x = torch.randn(1, 3, 16, 16)
    cost = CostOptions(source="h100")
    plain = plan_model(model, (x,), schedule=ScheduleOptions(), cost=cost)
    planned = plan_model(model, (x,), schedule=ScheduleOptions(absorb_joins=0.5), cost=cost)
    sched = planned.plan.schedule
    assert sched.meta["absorb_joins"]["joins"] >= 2, sched.meta["absorb_joins"]
    assert planned.plan.meta["options"]["absorb_joins"] == 0.5
    # the simulator priced the schedule that runs
    assert planned.plan.predicted["hios-lp"] == pytest.approx(
        Simulator(planned.plan.graph, planned.plan.machine, planned.plan.stage_model_object()).simulate(sched).latency)
    mod = hios_compile(model, (x,), planned.plan, "cpu", captured=planned.captured)
    base = hios_compile(model, (x,), plain.plan, "cpu", captured=plain.captured)
    assert len(mod.program.segments) < len(base.program.segments)
    for chain in sched.meta[CHAINS_KEY]:
        assert len({mod.program.placement[n] for n in chain["ops"]}) == 1
    for _ in range(2):
        x2 = torch.randn_like(x)
        with torch.no_grad():
            out, ref = mod(x2), model(x2)
        assert (out - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
