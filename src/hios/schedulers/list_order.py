"""Per-GPU operator order for a fixed mapping, by list scheduling (a step of HIOS-LP and HIOS-MR).

The mappers order each GPU's operators by latest start time (rank).  That static order can leave
a GPU idle while a later-ranked operator of it is already able to run.  Steps:
  1. Keep for each operator the time all its inputs have arrived (known once every producer
     is placed; transfers as in the simulator).
  2. Repeatedly take, among the operators whose producers are all placed, the one that can start
     first on its own GPU (when that GPU is free and its inputs are there); ties go to the lower
     rank.  Append it to its GPU's order.
The result is dependency-consistent (it is the order of a feasible execution), so it never
deadlocks; each operator is its own stage.
"""

from __future__ import annotations

from ._fastsim import FastTimer

__all__ = ["list_schedule_order"]


def list_schedule_order(timer: FastTimer, gpu_of: list[int], rank: list[int]) -> list[list[list[int]]]:
    """Steps 1-2: ``stages[gpu]`` of one operator each."""
    g = timer.graph
    n = timer.n
    ins = timer.ins
    cost = timer.cost
    succs = g.succs
    missing = [len(p) for p in g.preds]
    data_ready = [0.0] * n
    end = [0.0] * n
    free = [0.0] * timer.gpus
    stages: list[list[list[int]]] = [[] for _ in range(timer.gpus)]
    ready = [v for v in range(n) if missing[v] == 0]
    while ready:
        best_k, best_s, best_r = -1, 0.0, 0
        for k, v in enumerate(ready):
            fg = free[gpu_of[v]]
            s = fg if fg > data_ready[v] else data_ready[v]
            if best_k < 0 or s < best_s or (s == best_s and rank[v] < best_r):
                best_k, best_s, best_r = k, s, rank[v]
        v = ready[best_k]
        ready[best_k] = ready[-1]
        ready.pop()
        gv = gpu_of[v]
        e = best_s + cost[v]
        end[v] = e
        free[gv] = e
        stages[gv].append([v])
        for w in succs[v]:
            missing[w] -= 1
            if missing[w] == 0:
                gw = gpu_of[w]
                t = 0.0
                for u, row in ins[w]:
                    a = end[u] + row[gpu_of[u]][gw]
                    if a > t:
                        t = a
                data_ready[w] = t
                ready.append(w)
    return stages
