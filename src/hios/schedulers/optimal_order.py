"""The mapping-and-order CP-SAT model behind :mod:`hios.schedulers.optimal`: one operator per stage.

The problem when the intra-GPU step is off (``--no-intra``, or a window or stream count of 1):
place every operator on a GPU and order the operators of each GPU, so that the simulated latency
is least.  No stage candidates, so it is far smaller than the whole model of
:mod:`.optimal_model` (which it shares its transfer, symmetry and hint code with), and the bound
it proves holds for every schedule of one operator per stage.  In time units of ``1/scale`` ms
(every duration rounded *up*, an operator at least one unit):

  1. Variables: ``on[v][g]`` (operator ``v`` on GPU ``g``, exactly one), start and end of each
     operator (``end = start + d_v``, ``d_v`` = the stage model of ``v`` alone).  Per GPU, one
     optional interval per operator (present when it is on that GPU), no overlap.
  2. Data, as in the whole model: ``v`` starts after each producer ends, plus the transfer when
     they are on different GPUs (per tensor and destination GPU, per edge for explicit times,
     per GPU pair on uneven machines; optional intervals on each link with ``serialize_links``).
  3. Makespan >= every sink's end.  Redundant: at most ``gpus`` operators at once (cumulative),
     makespan >= each GPU's load, and the idle time at each GPU's ends
     (:func:`.optimal_model.add_idle_bounds`): on two GPUs the bound from work alone stays
     10-15 % below the optimum of a 30-operator layered graph, and CP-SAT never closes that gap
     by search; with the idle bounds it proves such graphs optimal in seconds.
  4. On identical GPUs, symmetry breaking: GPUs are numbered by first use along the topological
     order.

The result reads like the whole model's: ``cands`` are the single operators (all picked), so
:func:`.optimal_model.hint_solution` and :func:`.optimal_model.add_hint` serve both.
"""

from __future__ import annotations

from ..graph import Graph
from ..machine import Machine
from .optimal_model import ExactModel, add_idle_bounds, add_precedences, add_symmetry, link_time, units

__all__ = ["build_order"]


def build_order(graph: Graph, machine: Machine, stage_model, scale: float, serialize_links: bool) -> ExactModel:
    """Steps 1-4; ``scale``: model units per millisecond."""
    from ortools.sat.python import cp_model

    n = len(graph.ops)
    uniform = machine.uniform()
    n_gpu = min(machine.gpus, n) if uniform else machine.gpus  # identical GPUs: n ops use at most n
    durs = [max(1, units(stage_model([op.cost], [op.utilization]), scale)) for op in graph.ops]
    comm = link_time(graph, machine, scale)
    horizon = sum(durs)  # everything on one GPU
    m = cp_model.CpModel()
    start = [m.NewIntVar(0, horizon - durs[v], f"s{v}") for v in range(n)]
    end = [m.NewIntVar(durs[v], horizon, f"e{v}") for v in range(n)]
    on = [[m.NewBoolVar(f"x{v}_{g}") for g in range(n_gpu)] for v in range(n)]
    for v in range(n):
        m.AddExactlyOne(on[v])
        m.Add(end[v] == start[v] + durs[v])
    for g in range(n_gpu):
        m.AddNoOverlap([m.NewOptionalFixedSizeIntervalVar(start[v], durs[v], on[v][g], f"i{v}_{g}")
                        for v in range(n)])
    m.AddCumulative([m.NewFixedSizeIntervalVar(start[v], durs[v], f"a{v}") for v in range(n)], [1] * n, n_gpu)
    if uniform:
        add_symmetry(m, graph, on, n_gpu)
    differ, transfers = add_precedences(m, graph, on, start, end, comm, uniform, n_gpu, horizon, serialize_links)
    makespan = m.NewIntVar(0, horizon, "makespan")
    for v in graph.sinks():
        m.Add(makespan >= end[v])
    loads = [sum(durs[v] * on[v][g] for v in range(n)) for g in range(n_gpu)]
    for g in range(n_gpu):
        m.Add(makespan >= loads[g])
    idle = add_idle_bounds(m, graph, on, start, end, makespan, loads, durs, comm, n_gpu, horizon)
    m.Minimize(makespan)
    return ExactModel(m, n_gpu, [(v,) for v in range(n)], durs, on, [], start, end, on, differ, makespan,
                      horizon, transfers, comm, uniform, idle)
