"""Refinement of an inter-GPU mapping by single-operator moves (a step of HIOS-LP and HIOS-MR).

Each GPU runs its operators in one fixed dependency-consistent rank order (latest start time),
one operator per stage.  Steps:
  1. Time the whole mapping in rank order.
  2. For each operator in rank order, try it on every other GPU.  Only operators ranked at or
     after it can change, so the times of the operators before it are reused (the finish of the
     last one on each GPU is kept while walking the order).  Moving v leaves every schedule
     tail after v unchanged (the longest path from an operator's finish to the end, through
     the next operator on its GPU and its consumers): v's new finish plus the longest path out
     of it (through the next operator on the target GPU and v's consumers) is a lower bound
     of the new latency, exact for every path through v, and a candidate whose bound exceeds
     the best latency found so far is rejected in O(degree).  The others are re-timed in rank
     order and abandoned as soon as one finish time plus the longest cost-only path after that
     operator, or plus the work ranked after it on its GPU, exceeds the best latency.  A
     candidate is better when its latency is lower, or equal with a lower sum of all finish
     times (this lets the search cross the many plateaus where only a few operators decide the
     latency).  Move the operator to the best GPU (ties: lowest GPU index) if that beats the
     current mapping; after a move the tails (and the work ranked after each operator on its
     GPU) are updated backward from the moved operator only (:func:`_move_tails`): the same
     values as recomputing them all, O(n + e) at most.
  3. Repeat step 2 for at most ``passes`` passes, stopping early after a pass with no move.

Moves never raise the latency, and the rank order can never deadlock.  Each move costs O(n) (the
tails), and a candidate's re-timing up to O(n): O(n^2) on large graphs.

The fast refinement (:func:`refine_mapping_fast`, HIOS-LP's default after a bounded exact start,
:func:`refine_mapping_budget`) makes the same kind of moves in O(n x GPUs x degree) per pass.
"""

from __future__ import annotations

import heapq

from .timing_engine import FastTimer, finish_in_order, out_rows, time_in_rank_order

__all__ = ["refine_mapping", "refine_mapping_budget", "refine_mapping_fast"]


def refine_mapping(timer: FastTimer, rank: list[int], gpu_of: list[int], passes: int = 2) -> tuple[list[int], int]:
    """Steps 1-3; returns the new mapping (the input list is not modified) and the number of moves."""
    gpu_of, moves, _ = refine_mapping_budget(timer, rank, gpu_of, passes)
    return gpu_of, moves


def refine_mapping_budget(timer: FastTimer, rank: list[int], gpu_of: list[int], passes: int = 2,
                          budget: float = float("inf"),
                          latencies: dict | None = None) -> tuple[list[int], int, bool]:
    """:func:`refine_mapping` stopped once about ``budget`` operators have been re-timed (a candidate
    re-timing, or the tails recomputed after a move, counts its operators); also returns whether
    it finished (then the result is that of :func:`refine_mapping`).  Every move made is kept.
    ``latencies``, when given, receives what step 1 and the moves computed anyway: the latency of
    the input mapping in rank order (``"mapping"``) and, when it finished, of the result
    (``"refined"``), as :meth:`FastTimer.latency` gives them (nothing when no pass runs)."""
    G = timer.gpus
    n = timer.n
    gpu_of = list(gpu_of)
    if G < 2 or passes < 1:
        return gpu_of, 0, True
    work = 0
    order = sorted(range(n), key=rank.__getitem__)
    ins = timer.ins
    cost = timer.cost
    tail = timer.tail
    outs = out_rows(timer)
    lat, end = time_in_rank_order(timer, order, gpu_of)
    cur = (lat, sum(end))
    if latencies is not None:
        latencies["mapping"] = lat
    bound, after = _bounds(order, gpu_of, cost, tail, G)
    stail, nxt, first = _schedule_tails(order, gpu_of, cost, outs, G)
    prv = [-1] * n  # the operator before each one on its GPU (-1: none)
    for v in order:
        if nxt[v] >= 0:
            prv[nxt[v]] = v
    moves = 0
    for _ in range(passes):
        moved = False
        free0 = [0.0] * G  # finish of the last operator ranked before v on each GPU
        last = [-1] * G  # that operator
        for k, v in enumerate(order):
            g0 = gpu_of[v]
            best, best_g, best_end = cur, g0, None
            iv = ins[v]
            cv = cost[v]
            tv = tail[v]
            for h in range(G):
                if h == g0:
                    continue
                cut = best[0] * (1.0 + 1e-12)  # beyond rounding of the tail sums
                t = free0[h]  # arrival(iv, gpu_of, end, h, free0[h]), inlined
                for u, row in iv:
                    a = end[u] + row[gpu_of[u]][h]  # (every operator is mapped)
                    if a > t:
                        t = a
                t += cv
                if t + tv > cut:
                    continue
                # Everything ranked after v keeps its schedule tail: a path through v bounds the latency.
                nb = nxt[last[h]] if last[h] >= 0 else first[h]
                out = cost[nb] + stail[nb] if nb >= 0 else 0.0
                for w, row in outs[v]:
                    x = row[h][gpu_of[w]] + cost[w] + stail[w]
                    if x > out:
                        out = x
                if t + out > cut * (1.0 + 1e-9):
                    continue
                if work > budget:
                    return gpu_of, moves, False
                gpu_of[v] = h
                e = end[:]
                e[v] = t
                free = free0[:]
                free[h] = t
                # Re-time the rest in rank order; abandoned once a finish plus its bound passes the cut.
                stop = finish_in_order(timer, order, gpu_of, e, free, k + 1, bound, cut)
                if stop == n:
                    key = (max(free), sum(e))
                    if key < best:
                        best, best_g, best_end = key, h, e
                gpu_of[v] = g0
                work += min(stop, n - 1) - k
            gpu_of[v] = best_g
            if best_end is not None:
                work += 2 * n
                cur, end = best, best_end
                _move_tails(v, g0, best_g, last, rank, gpu_of, cost, tail, ins, outs, stail, nxt, prv, first,
                            bound, after)
                moves += 1
                moved = True
            free0[best_g] = end[v]
            last[best_g] = v
        if not moved:
            break
    if latencies is not None:
        latencies["refined"] = cur[0]
    return gpu_of, moves, True


def _schedule_tails(order: list[int], gpu_of: list[int], cost: list[float], outs, gpus: int):
    """For each operator, the longest path from its finish to the end of the schedule (the next
    operator on its GPU and its consumers, with their transfers), that next operator (-1 for none)
    and the first operator of each GPU (-1 for none)."""
    n = len(order)
    stail = [0.0] * n
    nxt = [-1] * n
    follow = [-1] * gpus
    for v in reversed(order):
        g = gpu_of[v]
        nb = follow[g]
        nxt[v] = nb
        t = cost[nb] + stail[nb] if nb >= 0 else 0.0
        for w, row in outs[v]:
            x = row[g][gpu_of[w]] + cost[w] + stail[w]
            if x > t:
                t = x
        stail[v] = t
        follow[g] = v
    return stail, nxt, follow


def _bounds(order: list[int], gpu_of: list[int], cost: list[float], tail: list[float],
            gpus: int) -> tuple[list[float], list[float]]:
    """For each operator, the larger of its cost-only tail and the cost of the operators ranked
    after it on its GPU: any schedule in this order ends at least that long after its finish;
    and that cost (summed from the GPU's last operator backward)."""
    bound = [0.0] * len(order)
    after = [0.0] * len(order)
    acc = [0.0] * gpus
    for v in reversed(order):
        g = gpu_of[v]
        a = acc[g]
        after[v] = a
        bound[v] = a if a > tail[v] else tail[v]
        acc[g] = a + cost[v]
    return bound, after


def _move_tails(v: int, g0: int, h: int, last: list[int], rank: list[int], gpu_of: list[int], cost: list[float],
                tail: list[float], ins, outs, stail: list[float], nxt: list[int], prv: list[int], first: list[int],
                bound: list[float], after: list[float]) -> None:
    """Update in place what :func:`_schedule_tails` and :func:`_bounds` give once ``v`` (already
    in ``gpu_of``) has moved from GPU ``g0`` to ``h``; ``last[g]``: the last operator ranked before
    ``v`` on GPU ``g`` (-1: none).  Nothing ranked after ``v`` changes (its successors are ranked
    after it).  The GPU links are relinked; the work after an operator changes only for those
    before ``v`` on ``g0`` and ``h``, summed backward in the order of :func:`_bounds`; tails are
    recomputed latest rank first from ``v``, its producers and its old and new predecessors (whose
    tails read its GPU or their next operator), then from the producers and predecessor of every
    tail that changed, each by the formula of :func:`_schedule_tails` from its successors' final
    tails: the same values."""
    p0, n0 = last[g0], nxt[v]
    if p0 >= 0:
        nxt[p0] = n0
    else:
        first[g0] = n0
    if n0 >= 0:
        prv[n0] = p0
    p1 = last[h]
    n1 = nxt[p1] if p1 >= 0 else first[h]
    if p1 >= 0:
        nxt[p1] = v
    else:
        first[h] = v
    if n1 >= 0:
        prv[n1] = v
    prv[v], nxt[v] = p1, n1
    for x, nb in ((p0, n0), (v, n1)):
        a = after[nb] + cost[nb] if nb >= 0 else 0.0
        while x >= 0:
            after[x] = a
            bound[x] = a if a > tail[x] else tail[x]
            a += cost[x]
            x = prv[x]
    queued = set()
    heap = []  # minus the ranks of the operators to recompute
    by_rank = {}
    for u in [v, p0, p1] + [u for u, _row in ins[v]]:
        if u >= 0 and u not in queued:
            queued.add(u)
            by_rank[rank[u]] = u
            heapq.heappush(heap, -rank[u])
    while heap:
        x = by_rank[-heapq.heappop(heap)]
        g = gpu_of[x]
        nb = nxt[x]
        t = cost[nb] + stail[nb] if nb >= 0 else 0.0
        for w, row in outs[x]:
            y = row[g][gpu_of[w]] + cost[w] + stail[w]
            if y > t:
                t = y
        if t == stail[x]:
            continue
        stail[x] = t
        u = prv[x]
        if u >= 0 and u not in queued:
            queued.add(u)
            by_rank[rank[u]] = u
            heapq.heappush(heap, -rank[u])
        for u, _row in ins[x]:
            if u not in queued:
                queued.add(u)
                by_rank[rank[u]] = u
                heapq.heappush(heap, -rank[u])


def refine_mapping_fast(timer: FastTimer, rank: list[int], gpu_of: list[int], passes: int = 2) -> tuple[list[int], int]:
    """The fast refinement (HIOS-LP's default), O(passes x (n x GPUs x degree)).

    Each pass times the mapping and computes every schedule tail once, then walks the operators in
    rank order keeping each GPU's last finish time, so every operator ranked before the one
    visited, ``v``, has its exact finish time under the moves already made, and every operator
    ranked after it its exact schedule tail (moves before an operator never change its tail).
    The longest path through ``v`` on GPU ``h``, ``P_h`` (its finish there plus the longest path
    out, through the next operator on ``h`` and its consumers), is therefore exact, and every
    path not through ``v`` is no longer than before: a move with ``P_h`` at most the latency
    never raises it.  The choice (lowest GPU on ties) is by (``max(P_h, L)``, local change) where
    ``L`` is just below the latency, so a critical ``v`` (``P`` at the latency) goes where the
    path through it is shortest, and a non-critical one where it finishes earliest counting the
    delay it causes to the next operator on the new GPU (finish times of later operators are
    those of the pass's start: the approximation of this mode).  Stops after a pass without a
    move."""
    G = timer.gpus
    n = timer.n
    gpu_of = list(gpu_of)
    if G < 2 or passes < 1:
        return gpu_of, 0
    order = sorted(range(n), key=rank.__getitem__)
    ins = timer.ins
    cost = timer.cost
    tail = timer.tail
    outs = out_rows(timer)
    moves = 0
    for _ in range(passes):
        lat, end = time_in_rank_order(timer, order, gpu_of)
        stail, nxt, cur_next = _schedule_tails(order, gpu_of, cost, outs, G)
        thr = lat * (1.0 - 1e-9)
        cut = lat * (1.0 + 1e-12)
        free = [0.0] * G
        moved = False
        for v in order:
            g0 = gpu_of[v]
            arr = [(end[u], row[gpu_of[u]]) for u, row in ins[v]]  # each input: its finish, its transfer to each GPU
            t = free[g0]  # arrival(ins[v], gpu_of, end, g0, free[g0]), inlined
            for e, row in arr:
                a = e + row[g0]
                if a > t:
                    t = a
            t0 = t + cost[v]
            end[v] = t0
            p0 = t0 + stail[v]
            best_key = (p0 if p0 > thr else thr, 0.0)
            best_g, best_t = g0, t0
            ov = outs[v]
            for h in range(G):
                if h == g0:
                    continue
                t = free[h]
                for e, row in arr:
                    a = e + row[h]
                    if a > t:
                        t = a
                t += cost[v]
                if t + tail[v] > cut:
                    continue
                nb = cur_next[h]
                out = cost[nb] + stail[nb] if nb >= 0 else 0.0
                for w, row in ov:
                    x = row[h][gpu_of[w]] + cost[w] + stail[w]
                    if x > out:
                        out = x
                p = t + out
                if p > cut:
                    continue
                delta = t - t0
                if nb >= 0:
                    late = t - (end[nb] - cost[nb])
                    if late > 0.0:
                        delta += late
                key = (p if p > thr else thr, delta)
                if key < best_key:
                    best_key, best_g, best_t = key, h, t
            cur_next[g0] = nxt[v]
            if best_g != g0:
                gpu_of[v] = best_g
                end[v] = best_t
                moves += 1
                moved = True
            free[best_g] = end[v]
        if not moved:
            break
    return gpu_of, moves
