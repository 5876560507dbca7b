"""Exact inter-GPU mapping and ordering of small graphs with OR-Tools CP-SAT.

This is the optimal schedule among schedules with *one operator per stage* (no intra-GPU
concurrency): the best assignment of operators to GPUs and the best order on each GPU.  A
schedule that groups operators into concurrent stages (HIOS with its intra-GPU step, IOS) can
be faster than it.  Graphs of at most 30 operators only; OR-Tools is an optional extra
(``pip install hios[optimal]``).

Steps:
  1. Time is made integer in units of ``resolution_us`` microseconds (default 1 µs), rounding
     every operator cost and transfer time *up* (an operator lasts at least one unit), so any
     solution of the model is feasible in real time and the simulated latency of the returned
     schedule is at most the model's makespan.  The result is thus optimal up to one unit per
     operator and transfer of the critical chain (finer units give CP-SAT a harder proof).
  2. Model: for each operator a start time and one Boolean per GPU (exactly one true), an
     optional fixed-size interval per GPU, no overlap of intervals on each GPU; for each edge
     ``u -> v``: ``start(v) >= end(u)``, plus the edge's transfer time when ``u`` and ``v`` are on
     different GPUs (on a uniform machine through one "differ" Boolean per edge; otherwise one
     conditional constraint per GPU pair).  Transfers are per edge and never queue; the
     simulator sends a byte tensor once per (producer, destination GPU), which arrives at the
     same time when the producer's out-edges carry equal bytes, as tensors do.
  3. Redundant constraints to strengthen the lower bound: a cumulative constraint (at most as
     many operators at once as GPUs) and makespan >= the load of each GPU.  Symmetry breaking on a uniform machine: the k-th operator of the
     topological order may only use GPUs 0..k.  The HEFT schedule (GPUs relabelled by first use, times recomputed in integer
     units) is given as a hint, so the solver starts from a good solution.
  4. Minimize the makespan within ``time_limit`` seconds; on each GPU order the operators by
     their start in the solution; simulate the schedule (the simulator is the judge).
     ``meta`` records ``proven_optimal``, the solver status, the model's makespan and lower bound
     (ms) and the ``simulated_latency``.

Options: ``time_limit`` (seconds, default 10), ``workers`` (CP-SAT threads, default 2),
``resolution_us`` (time unit, default 1 µs).
"""

from __future__ import annotations

import math

from ..errors import HiosError
from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from ..simulator import Simulator
from .heft import heft

MAX_OPERATORS = 30


def _units(ms: float, scale: float) -> int:
    """``ms`` in model units of ``1/scale`` ms, rounded up (tolerating float noise)."""
    return int(math.ceil(ms * scale - 1e-6))


def _hint(graph: Graph, machine: Machine, dur: list[int], comm) -> tuple[list[int], list[int]]:
    """HEFT's assignment and order, GPUs relabelled by first use in topological order, with
    start times recomputed in integer units (per-edge transfers)."""
    h = heft(graph, machine)
    idx = h.indexed(graph)
    gpu_of = [0] * len(graph.ops)
    for g, sts in enumerate(idx):
        for st in sts:
            for v in st:
                gpu_of[v] = g
    if machine.uniform():
        relabel: dict[int, int] = {}
        for v in graph.topo:
            relabel.setdefault(gpu_of[v], len(relabel))
        idx = [idx[g] for g in sorted(relabel, key=relabel.get)] + [[] for _ in range(machine.gpus - len(relabel))]
        gpu_of = [relabel[g] for g in gpu_of]
    start = [0] * len(graph.ops)
    end = [0] * len(graph.ops)
    free = [0] * machine.gpus
    # Simple list pass: repeatedly take the next operator of any GPU whose inputs are done.
    nxt = [0] * machine.gpus
    done = [False] * len(graph.ops)
    left = len(graph.ops)
    while left:
        progressed = False
        for g in range(machine.gpus):
            while nxt[g] < len(idx[g]):
                v = idx[g][nxt[g]][0]
                if not all(done[u] for u in graph.preds[v]):
                    break
                t = free[g]
                for k, (u, _) in enumerate(graph.in_edges[v]):
                    arr = end[u] + (comm(v, k, gpu_of[u], g) if gpu_of[u] != g else 0)
                    t = max(t, arr)
                start[v] = t
                end[v] = t + dur[v]
                free[g] = end[v]
                done[v] = True
                nxt[g] += 1
                left -= 1
                progressed = True
        if not progressed:  # cannot happen: HEFT's schedule is deadlock-free
            raise HiosError("optimal: the HEFT hint deadlocks (internal error)")
    return gpu_of, start


def optimal(graph: Graph, machine: Machine, *, stage_model=None, time_limit: float = 10.0,
            workers: int = 2, resolution_us: float = 1.0) -> Schedule:
    n = len(graph.ops)
    if n > MAX_OPERATORS:
        raise HiosError(f"optimal handles graphs of at most {MAX_OPERATORS} operators; "
                        f"{graph.name!r} has {n}")
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not time_limit > 0:
        raise HiosError(f"optimal option time_limit must be a number of seconds > 0, got {time_limit!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise HiosError(f"optimal option workers must be an integer >= 1, got {workers!r}")
    if isinstance(resolution_us, bool) or not isinstance(resolution_us, (int, float)) or not resolution_us > 0:
        raise HiosError(f"optimal option resolution_us must be a number > 0, got {resolution_us!r}")
    scale = 1000.0 / resolution_us  # model units per millisecond
    try:
        from ortools.sat.python import cp_model
    except ImportError:
        raise HiosError("optimal needs OR-Tools: pip install hios[optimal]") from None

    uniform = machine.uniform()
    n_gpu = min(machine.gpus, n) if uniform else machine.gpus  # identical GPUs: n ops use at most n
    dur = [max(1, _units(op.cost, scale)) for op in graph.ops]
    pair_ms: dict[tuple[int, int, int], int] = {}

    def comm(v: int, k: int, a: int, b: int) -> int:
        key = (v, k, a * machine.gpus + b)
        c = pair_ms.get(key)
        if c is None:
            c = pair_ms[key] = _units(machine.transfer_ms(graph.in_edges[v][k][1], a, b), scale)
        return c

    horizon = sum(dur)
    m = cp_model.CpModel()
    start = [m.NewIntVar(0, horizon - dur[v], f"s{v}") for v in range(n)]
    on = [[m.NewBoolVar(f"x{v}_{g}") for g in range(n_gpu)] for v in range(n)]
    for v in range(n):
        m.AddExactlyOne(on[v])
    for g in range(n_gpu):
        m.AddNoOverlap([m.NewOptionalFixedSizeIntervalVar(start[v], dur[v], on[v][g], f"i{v}_{g}")
                        for v in range(n)])
    # Redundant: at most n_gpu operators at a time (strengthens the lower bound).
    m.AddCumulative([m.NewFixedSizeIntervalVar(start[v], dur[v], f"c{v}") for v in range(n)], [1] * n, n_gpu)
    if uniform:
        for k, v in enumerate(graph.topo):
            for g in range(k + 1, n_gpu):
                m.Add(on[v][g] == 0)
    for v in range(n):
        for k, (u, _) in enumerate(graph.in_edges[v]):
            m.Add(start[v] >= start[u] + dur[u])
            if n_gpu == 1:
                continue
            if uniform:
                c = comm(v, k, 0, 1)
                if c > 0:
                    differ = m.NewBoolVar(f"d{u}_{v}")
                    for g in range(n_gpu):
                        m.Add(differ >= on[u][g] - on[v][g])
                    m.Add(start[v] >= start[u] + dur[u] + c * differ)
            else:
                for a in range(n_gpu):
                    for b in range(n_gpu):
                        c = comm(v, k, a, b) if a != b else 0
                        if c > 0:
                            m.Add(start[v] >= start[u] + dur[u] + c).OnlyEnforceIf([on[u][a], on[v][b]])
    makespan = m.NewIntVar(0, horizon, "makespan")
    for v in graph.sinks():
        m.Add(makespan >= start[v] + dur[v])
    for g in range(n_gpu):  # redundant: a GPU's load is a lower bound (strengthens the LP relaxation)
        m.Add(makespan >= sum(dur[v] * on[v][g] for v in range(n)))
    m.Minimize(makespan)

    hint_gpu, hint_start = _hint(graph, machine, dur, comm)
    for v in range(n):
        m.AddHint(start[v], hint_start[v])
        for g in range(n_gpu):
            m.AddHint(on[v][g], 1 if hint_gpu[v] == g else 0)

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = workers
    status = solver.Solve(m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        raise HiosError(f"optimal: CP-SAT found no schedule for {graph.name!r} within {time_limit} s "
                        f"(status {solver.StatusName(status)})")
    gpu_of = [next(g for g in range(n_gpu) if solver.Value(on[v][g])) for v in range(n)]
    t = [solver.Value(start[v]) for v in range(n)]
    stages: list[list[list[int]]] = [[] for _ in range(machine.gpus)]
    for v in sorted(range(n), key=lambda v: (t[v], graph.position[v])):
        stages[gpu_of[v]].append([v])
    sim = Simulator(graph, machine, stage_model).run(stages)
    return Schedule.from_indices(graph, stages, "optimal", {
        "proven_optimal": status == cp_model.OPTIMAL,
        "status": solver.StatusName(status),
        "model_makespan": solver.ObjectiveValue() / scale,
        "model_lower_bound": solver.BestObjectiveBound() / scale,
        "simulated_latency": sim.latency,
        "time_limit": float(time_limit),
        "resolution_us": float(resolution_us),
    })
