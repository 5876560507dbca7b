"""Helpers of the HIOS scheduler tests (test_hios_lp, test_hios_mr, test_intra_gpu): small
hand-made graphs, a random-machine strategy and the checks every schedule must pass."""

from __future__ import annotations

import json
import os
import tempfile

from hypothesis import strategies as st

from hios.bounds import critical_path, lower_bounds
from hios.cost.costmodel import HIOSStageModel
from hios.graph import Edge, Graph, Operator
from hios.machine import Link, Machine
from hios.schedule import Schedule, load_schedule
from hios.simulator import Simulator

EPS = 1e-9


def make_graph(costs: dict[str, float], edges: list[tuple[str, str, float]], utils: dict[str, float] | None = None,
               name: str = "hand") -> Graph:
    """Operators with the given costs (insertion order kept); edges ``(src, dst, transfer ms)``."""
    utils = utils or {}
    ops = [Operator(n, c, "generic", 0, utils.get(n, 1.0)) for n, c in costs.items()]
    return Graph(ops, [Edge(a, b, 0, t) for a, b, t in edges], name)


@st.composite
def machines(draw, max_gpus: int = 5) -> Machine:
    """1..max_gpus GPUs, a random link, and sometimes other links for random directed pairs."""
    gpus = draw(st.integers(1, max_gpus))
    link = Link(draw(st.floats(0.5, 500.0)), draw(st.floats(0.0, 50.0)))
    links = {}
    if gpus > 1 and draw(st.booleans()):
        for a in range(gpus):
            for b in range(gpus):
                if a != b and draw(st.booleans()):
                    links[(a, b)] = Link(draw(st.floats(0.5, 500.0)), draw(st.floats(0.0, 50.0)))
    return Machine(gpus, link, links)


def check_schedule(graph: Graph, machine: Machine, s: Schedule, grouped: bool = True) -> float:
    """Every operator exactly once, no stage of dependent operators, no deadlock, latency above
    the bounds, and the saved file re-simulates to the same latency.  Returns the latency."""
    assert sorted(s.operators()) == sorted(graph.names)
    assert len(s.stages) == machine.gpus
    sim = Simulator(graph, machine, HIOSStageModel())
    lat = sim.simulate(s).latency  # raises ScheduleError on deadlock or a bad stage
    lb = lower_bounds(graph, machine.gpus, HIOSStageModel())
    tol = EPS * max(1.0, lat)
    assert lat >= lb.value - tol
    assert lat >= critical_path(graph) - tol
    if not grouped:
        assert all(len(st) == 1 for sts in s.stages for st in sts)
        assert lat >= graph.total_work() / machine.gpus - tol
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        s.save(path)
        again = load_schedule(path, graph, machine.gpus)
        assert sim.simulate(again).latency == lat
        assert json.loads(open(path).read())["algorithm"] == s.algorithm
    finally:
        os.unlink(path)
    return lat


def sequential_latency(graph: Graph, machine: Machine) -> float:
    sim = Simulator(graph, machine, HIOSStageModel())
    return sim.run([[[i] for i in graph.topo]] + [[] for _ in range(machine.gpus - 1)]).latency
