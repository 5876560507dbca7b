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

import heapq

from .timing_engine import FastTimer, arrival

__all__ = ["list_schedule_order"]


def list_schedule_order(timer: FastTimer, gpu_of: list[int], rank: list[int]) -> list[list[list[int]]]:
    """Steps 1-2: ``stages[gpu]`` of one operator each.

    Each GPU keeps its ready operators in two heaps: those whose inputs have arrived by the time
    the GPU is free (they start when it is free, so the lowest rank among them goes first), and
    the others by (arrival, rank); the GPU's free time only grows, so operators move from the
    second heap to the first.  The pick is the best head over the GPUs: O(log n + GPUs) per
    operator instead of a scan of the ready list."""
    g = timer.graph
    n = timer.n
    G = timer.gpus
    ins = timer.ins
    cost = timer.cost
    succs = g.succs
    missing = [len(p) for p in g.preds]
    end = [0.0] * n
    free = [0.0] * G
    stages: list[list[list[int]]] = [[] for _ in range(G)]
    waiting: list[list[tuple[float, int, int]]] = [[] for _ in range(G)]  # (arrival, rank, op)
    now: list[list[tuple[int, int]]] = [[] for _ in range(G)]  # (rank, op): inputs there by free[gpu]
    for v in range(n):
        if missing[v] == 0:
            heapq.heappush(waiting[gpu_of[v]], (0.0, rank[v], v))
    for _ in range(n):
        best_g, best_s, best_r = -1, 0.0, 0
        for gi in range(G):
            fg = free[gi]
            w, h = waiting[gi], now[gi]
            while w and w[0][0] <= fg:
                _, r, v = heapq.heappop(w)
                heapq.heappush(h, (r, v))
            if h:
                s, r = fg, h[0][0]
            elif w:
                s, r = w[0][0], w[0][1]
            else:
                continue
            if best_g < 0 or s < best_s or (s == best_s and r < best_r):
                best_g, best_s, best_r = gi, s, r
        h = now[best_g]
        v = heapq.heappop(h)[1] if h and h[0][0] == best_r else heapq.heappop(waiting[best_g])[2]
        e = best_s + cost[v]
        end[v] = e
        free[best_g] = e
        stages[best_g].append([v])
        for w in succs[v]:
            missing[w] -= 1
            if missing[w] == 0:
                gw = gpu_of[w]
                heapq.heappush(waiting[gw], (arrival(ins[w], gpu_of, end, gw), rank[w], w))
    return stages
