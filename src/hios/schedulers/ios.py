"""IOS baseline: single-GPU inter-operator scheduling by dynamic programming.

After Ding et al., "IOS: Inter-Operator Scheduler for CNN Acceleration" (MLSys 2021), in the
stage form hios uses (a stage = independent operators run together on separate streams of one
GPU, lasting what the stage model says).  Only GPU 0 is used; the other GPUs stay empty.

Steps:
  1. Cut the graph's topological order into consecutive *parts* of at most ``max_part_size``
     operators.  Every predecessor of an operator lies in its own part or an earlier one, so the
     parts can be scheduled one after another.
  2. Solve each part by the IOS recursion over the set ``S`` of its operators not yet scheduled
     (a bit mask; always closed under predecessors within the part)::

         cost(empty) = 0
         cost(S) = min over endings E of S:  cost(S - E) + stage_time(E)

     An *ending* (as in IOS) is a non-empty subset ``E`` of ``S`` with no successor in
     ``S - E``; since a hios stage must also hold independent operators, every member of ``E`` is
     a sink of ``S`` (an operator of ``S`` with no successor in ``S``), so the endings are the
     subsets of the sinks of ``S`` of at most ``max_group_size`` operators (the stream count).  ``stage_time`` is the stage model (one operator: its own cost).  Results
     are memoized per mask; the chosen ending of each mask rebuilds the stages.
  3. Concatenate the stages of the parts on GPU 0.  On one GPU nothing is transferred, so the
     latency is the sum of the stage times; it is kept in ``meta['estimate']``.

Pruning and defaults.  The IOS implementation splits blocks into parts of up to 100 operators
and allows up to 8 parallel groups per stage, each group a chain of up to 3 operators on one
stream; its state space stays small because endings are enumerated along a chain decomposition.
Here a stage holds single operators (one per stream) and the states are all predecessor-closed
subsets of a part, which for the wide layers of a random DAG is nearly every subset, so parts
must be much smaller.  Defaults: ``max_part_size = 8`` (at most 2^8 states per part) and
``max_group_size = 3`` (operators = streams per stage).  Measured on layered DAGs of 200
operators (CPython, 2-core EPYC): parts of 8 take about 0.05 s, 10 take 0.25 s, 12 take 1.3 s
and 16 take 34 s, all with the same schedule latency; stage widths 3, 4 and 8 gave the same
latency and 2 was within 0.1 %, since under the HIOS stage model the gain of a stage saturates
once its packed work exceeds its longest member.  Larger values search more and run longer
(the state space grows as 2^max_part_size).
"""

from __future__ import annotations

from itertools import combinations

from ..cost.costmodel import HIOSStageModel
from ..errors import HiosError
from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule

__all__ = ["MAX_PART_LIMIT", "ios"]

MAX_PART_LIMIT = 20  # 2^20 masks per part is already far too slow in Python


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise HiosError(f"ios option {name} must be an integer {rng}, got {value!r}")
    return value


def _solve_part(part: list[int], graph: Graph, model, max_group: int) -> tuple[float, list[list[int]]]:
    """IOS dynamic programme on one part; returns (time, stages as lists of operator indices)."""
    local = {v: k for k, v in enumerate(part)}
    m = len(part)
    succ_mask = [0] * m
    for k, v in enumerate(part):
        for w in graph.succs[v]:
            j = local.get(w)
            if j is not None:
                succ_mask[k] |= 1 << j
    cost = [graph.ops[v].cost for v in part]
    util = [graph.ops[v].utilization for v in part]
    stage_cache: dict[int, float] = {}

    def stage_time(members: tuple[int, ...], mask: int) -> float:
        t = stage_cache.get(mask)
        if t is None:
            if len(members) == 1:
                t = cost[members[0]]
            else:
                t = model([cost[k] for k in members], [util[k] for k in members])
            stage_cache[mask] = t
        return t

    best: dict[int, tuple[float, int]] = {0: (0.0, 0)}  # mask -> (cost, chosen ending mask)

    def solve(mask: int) -> float:
        hit = best.get(mask)
        if hit is not None:
            return hit[0]
        sinks = [k for k in range(m) if mask >> k & 1 and not succ_mask[k] & mask]
        top = (float("inf"), 0)
        for size in range(1, min(max_group, len(sinks)) + 1):
            for members in combinations(sinks, size):
                e = 0
                for k in members:
                    e |= 1 << k
                t = solve(mask & ~e) + stage_time(members, e)
                if t < top[0] or not top[1]:  # the first ending is kept even at inf cost, so the
                    top = (t, e)              # rebuild below always removes operators
        best[mask] = top
        return top[0]

    full = (1 << m) - 1
    total = solve(full)
    stages: list[list[int]] = []
    mask = full
    while mask:
        e = best[mask][1]
        stages.append([part[k] for k in range(m) if e >> k & 1])
        mask &= ~e
    stages.reverse()
    return total, stages


def ios(graph: Graph, machine: Machine, *, stage_model=None, max_part_size: int = 8,
        max_group_size: int = 3, serialize_links: bool = False) -> Schedule:
    """Steps 1-3.  ``serialize_links`` is accepted like every scheduler's but changes nothing: on
    one GPU nothing is transferred.  The DP can always end a part with one sink at a time, so its
    schedule is never slower than sequential; an operator of infinite cost still ends up in a stage
    (the first ending tried is kept when every ending costs inf)."""
    _check_int("max_part_size", max_part_size, 1, MAX_PART_LIMIT)
    _check_int("max_group_size", max_group_size, 1)
    model = stage_model or HIOSStageModel()
    topo = graph.topo
    stages: list[list[int]] = []
    total = 0.0
    parts = 0
    for a in range(0, len(topo), max_part_size):
        t, st = _solve_part(topo[a:a + max_part_size], graph, model, max_group_size)
        total += t
        stages += st
        parts += 1
    return Schedule.from_indices(graph, [stages] + [[] for _ in range(machine.gpus - 1)], "ios",
                                 {"estimate": total, "parts": parts, "max_part_size": max_part_size,
                                  "max_group_size": max_group_size})
