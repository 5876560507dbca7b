"""Timing engine of the schedulers' searches: a fast latency evaluator, the one kernel that times
operators in a fixed per-GPU order, the incremental stage timing of the intra-GPU step, the
latest-start-time order, and the budgets of the fast modes.

:func:`arrival` and :func:`finish_in_order` are the rank-order timing kernel: an operator starts
when its GPU is free and every input has arrived (the producer's finish plus the transfer between
their GPUs), and the operators of one GPU run in the given order.  The refinement, the placement's
resynchronisation, the list ordering and HIOS-MR's dynamic program all time operators with them.

:class:`FastTimer` computes the latency of a staged schedule (given by operator index) under the
same rules as :class:`hios.simulator.Simulator` without link serialization, but without building
a :class:`~hios.simulator.SimResult`: the search loops call it thousands of times.  It is built
once per search from the search's one :class:`Simulator` (same graph, machine and stage model)
and never copies the graph.

Difference from the simulator: a tensor sent to a GPU that has several consumers of it is timed
with each consumer's own edge; the simulator sends it once per (producer, GPU), sized by the
largest of those byte edges.  The two agree whenever the byte edges of one producer carry the
same bytes, as tensors normally do (edges with an explicit time are sent per edge in both).  The
schedulers check their final answer with the real simulator, or with :meth:`FastTimer.latency`
where :attr:`FastTimer.as_simulator` says the two make the same computation: links not serialized
and every producer's byte edges of one size (then both take the same maxima of the same sums, in
a different order of events, and return the same number; a property test checks it).
"""

from __future__ import annotations

import heapq
from typing import Sequence

from ..errors import HiosError
from ..simulator import Simulator

__all__ = ["INF", "BUDGET_OPS", "exact_budget", "decayed", "check_intra_options", "arrival", "finish_in_order",
           "time_in_rank_order", "out_rows", "FastTimer", "lst_ranks", "usable_gpus", "search_machine", "pad_gpus", "Stage",
           "Regroup", "StageChain"]

INF = float("inf")
#: Size scale of the fast modes' budgets and caps (:func:`exact_budget`, :func:`decayed`): graphs
#: up to about this many operators are scheduled nearly as the exact mode does; beyond, the
#: exact work and the caps shrink as ``(BUDGET_OPS / n) ** 2``, so their total work stays O(n).
BUDGET_OPS = 500


def exact_budget(per_op: float, n: int) -> float:
    """Exact work a fast mode may spend first: ``per_op`` re-timed operators per operator up to
    :data:`BUDGET_OPS` operators, then shrinking as ``(BUDGET_OPS / n) ** 2``."""
    return per_op * min(n, BUDGET_OPS) * min(1.0, (BUDGET_OPS / max(n, 1)) ** 2)


def decayed(value: int, n: int, floor: int = 0) -> int:
    """A cap of the fast modes: ``value`` at :data:`BUDGET_OPS` operators, scaled by
    ``(BUDGET_OPS / n) ** 2`` (larger on smaller graphs, where it costs little), at least ``floor``.
    Work bounded by ``cap`` per step over O(n) steps is then O(n) overall."""
    return max(floor, int(value * (BUDGET_OPS / max(n, 1)) ** 2))


def check_intra_options(window, streams) -> None:
    for name, v in (("window", window), ("streams", streams)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise HiosError(f"intra-GPU option {name} must be an integer >= 1, got {v!r}")


def arrival(inputs, gpu_of: list[int], end: list[float], gpu: int, t: float = 0.0) -> float:
    """Latest of ``t`` and the arrival on ``gpu`` of every input ``(u, row)`` of an operator
    (``FastTimer.ins[v]``): the producer's finish ``end[u]`` plus ``row[gpu_of[u]][gpu]``.
    Producers not mapped yet (``gpu_of[u] < 0``) are ignored."""
    for u, row in inputs:
        gu = gpu_of[u]
        if gu >= 0:
            a = end[u] + row[gu][gpu]
            if a > t:
                t = a
    return t


def finish_in_order(timer: "FastTimer", order: list[int], gpu_of: list[int], end: list[float], free: list[float],
                    lo: int = 0, bound: list[float] | None = None, cut: float = INF) -> int:
    """Time ``order[lo:]`` in place, one operator per stage, each GPU running its operators in
    that order: ``end[v]`` (finish of each operator) and ``free[g]`` (finish of each GPU's last
    operator so far) are read for what came before ``lo`` and updated.  Producers not mapped are
    ignored.  With ``bound``, stops before setting the first operator whose finish plus
    ``bound[v]`` exceeds ``cut`` and returns its index; returns ``len(order)`` when all are timed."""
    ins = timer.ins
    cost = timer.cost
    if bound is None:
        bound, cut = [0.0] * len(end), INF
    for i in range(lo, len(order)):
        v = order[i]
        g = gpu_of[v]
        t = free[g]
        for u, row in ins[v]:
            gu = gpu_of[u]
            if gu >= 0:
                a = end[u] + row[gu][g]
                if a > t:
                    t = a
        t += cost[v]
        if t + bound[v] > cut:
            return i
        end[v] = t
        free[g] = t
    return len(order)


def time_in_rank_order(timer: "FastTimer", order: list[int], gpu_of: list[int]) -> tuple[float, list[float]]:
    """Latency and finish times of a complete mapping, each GPU running its operators in ``order``."""
    end = [0.0] * timer.n
    free = [0.0] * timer.gpus
    finish_in_order(timer, order, gpu_of, end, free)
    return (max(free) if free else 0.0), end


def out_rows(timer: "FastTimer") -> list[list[tuple[int, tuple]]]:
    """``outs[u] = [(v, row)]`` for every edge u -> v (``row`` as in ``timer.ins[v]``); built once
    per timer and shared by the steps of one search (read only)."""
    outs = timer.outs
    if outs is None:
        outs = [[] for _ in range(timer.n)]
        for v, iv in enumerate(timer.ins):
            for u, row in iv:
                outs[u].append((v, row))
        timer.outs = outs
    return outs


class FastTimer:
    """Latency of staged schedules (``stages[gpu] = [[op, ...], ...]``) for one simulator."""

    def __init__(self, sim: Simulator):
        g = sim.graph
        m = sim.machine
        self.sim = sim
        self.graph = g
        self.outs: list | None = None  # out_rows(self), built on first use
        self.n = len(g.ops)
        self.gpus = m.gpus
        self.cost = sim.cost
        self.util = sim.util
        self.model = sim.stage_model
        self.uniform = m.uniform()  # every pair of GPUs joined by the same link
        # latency() computes exactly what sim.latency() does (module docstring)
        self.as_simulator = not sim.serialize_links and all(
            len({e.bytes for _w, e in out if e.time is None}) <= 1 for out in g.out_edges)
        G = m.gpus
        rows: dict[float, tuple] = {}
        # ins[v] = [(u, row)] with row[src_gpu][dst_gpu] = transfer ms of edge u->v (0 on the diagonal)
        ins: list[list[tuple[int, tuple]]] = []
        # weight[v] = [(u, mean transfer ms over GPU pairs)]: the edge weight of path searches
        in_weight: list[list[tuple[int, float]]] = []
        self.ins = ins
        self.in_weight = in_weight
        if G > 1 and self.uniform:
            # one transfer time per edge (the simulator's): rows shared by the edges of equal time
            gpus = range(G)
            for v in range(self.n):
                iv = []
                wv = []
                for (u, _e), ms in zip(sim.in_edges[v], sim.edge_ms(v)):
                    row = rows.get(ms)
                    if row is None:
                        line = [ms] * G
                        lines = []
                        for a in gpus:
                            line[a] = 0.0
                            lines.append(tuple(line))
                            line[a] = ms
                        row = rows[ms] = tuple(lines)
                    iv.append((u, row))
                    wv.append((u, ms))
                ins.append(iv)
                in_weight.append(wv)
        else:
            for v in range(self.n):
                iv = []
                wv = []
                for k, (u, _e) in enumerate(sim.in_edges[v]):
                    if G == 1:
                        row = ((0.0,),)
                        mean = 0.0
                    else:
                        row = tuple(tuple(sim.transfer_ms(v, k, a, b) for b in range(G)) for a in range(G))
                        mean = sum(row[a][b] for a in range(G) for b in range(G) if a != b) / (G * (G - 1))
                    iv.append((u, row))
                    wv.append((u, mean))
                ins.append(iv)
                in_weight.append(wv)
        # tail[v]: longest cost-only path after v; any schedule ends >= finish(v) + tail[v].
        tail = [0.0] * self.n
        cost = self.cost
        succs = g.succs
        for u in reversed(g.topo):
            t = 0.0
            for v in succs[u]:
                x = tail[v] + cost[v]
                if x > t:
                    t = x
            tail[u] = t
        self.tail = tail

    def latency(self, stages: Sequence[Sequence[Sequence[int]]], limit: float = INF) -> float | None:
        """Latency of ``stages`` (operators absent from it are ignored, as with
        ``Simulator.run(complete=False)``), or None when the stage order deadlocks or a stage holds
        dependent operators.  Every operator must appear at most once (not checked).  Returns
        ``INF`` as soon as the latency is sure to exceed ``limit`` (a finish time plus the
        operator's cost-only tail is above it, beyond rounding); only complete schedules may use
        ``limit``."""
        tail = self.tail
        limit += limit * 1e-9  # the tail sums may round differently from the real chain
        n = self.n
        gpu_of = [-1] * n
        for gi, sts in enumerate(stages):
            for st in sts:
                for v in st:
                    gpu_of[v] = gi
        end = [-1.0] * n
        ins = self.ins
        cost = self.cost
        model = self.model
        util = self.util
        G = len(stages)
        ptr = [0] * G
        free = [0.0] * G
        left = sum(len(sts) for sts in stages)
        while left:
            progress = False
            for gi in range(G):
                sts = stages[gi]
                k = ptr[gi]
                if k == len(sts):
                    continue
                t_free = free[gi]
                while k < len(sts):
                    st = sts[k]
                    t = t_free
                    for v in st:
                        for u, row in ins[v]:
                            gu = gpu_of[u]
                            if gu < 0:
                                continue
                            eu = end[u]
                            if eu < 0.0:
                                break
                            a = eu + row[gu][gi]
                            if a > t:
                                t = a
                        else:
                            continue
                        break
                    else:
                        if len(st) == 1:
                            fin = t + cost[st[0]]
                        else:
                            fin = t + model([cost[i] for i in st], [util[i] for i in st])
                        for v in st:
                            end[v] = fin
                            if fin + tail[v] > limit:
                                return INF
                        t_free = fin
                        k += 1
                        continue
                    break
                if k != ptr[gi]:
                    left -= k - ptr[gi]
                    ptr[gi] = k
                    free[gi] = t_free
                    progress = True
            if not progress:
                return None
        return max(free) if free else 0.0


def lst_ranks(timer: FastTimer) -> list[int]:
    """Rank of every operator in latest-start-time order.

    The latest start time of an operator is the critical-path length minus its bottom level
    (its cost plus the longest cost-and-mean-transfer path to a sink), so ascending latest start
    = descending bottom level; ties go to the earlier topological position.  A producer's bottom
    level is never below its consumer's, so the order is consistent with every dependency:
    ordering each GPU's operators by rank can never deadlock.
    """
    g = timer.graph
    n = timer.n
    succ_w: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for v in range(n):
        for u, w in timer.in_weight[v]:
            succ_w[u].append((v, w))
    bl = [0.0] * n
    cost = timer.cost
    for u in reversed(g.topo):
        best = 0.0
        for v, w in succ_w[u]:
            x = bl[v] + w
            if x > best:
                best = x
        bl[u] = cost[u] + best
    pos = g.position
    order = sorted(range(n), key=lambda i: (-bl[i], pos[i]))
    rank = [0] * n
    for r, i in enumerate(order):
        rank[i] = r
    return rank


def usable_gpus(graph) -> int:
    """Most GPUs any schedule of ``graph`` can keep busy at once: operators that run at the same
    time are independent, and an antichain meets the longest chain (by operator count) at most
    once, so at most ``n - longest_chain + 1`` operators are independent of each other."""
    n = len(graph.ops)
    if n == 0:
        return 1
    depth = [1] * n
    for v in graph.topo:
        d = depth[v] + 1
        for w in graph.succs[v]:
            if d > depth[w]:
                depth[w] = d
    return max(1, n - max(depth) + 1)


def search_machine(graph, machine):
    """The machine a scheduler searches on: when every pair of GPUs has the same link, GPUs beyond
    :func:`usable_gpus` are interchangeable spares that no schedule can use, so they are left out
    (the schedulers pad their result back with empty GPUs).  Machines with per-pair links are
    searched whole: there it matters which GPUs are used."""
    from ..machine import Machine
    cap = usable_gpus(graph)
    if machine.gpus <= cap or not machine.uniform():
        return machine
    return Machine(cap, machine.link)


def pad_gpus(stages: list, gpus: int) -> list:
    """``stages`` (one list per GPU) with empty GPUs appended up to ``gpus``."""
    return list(stages) + [[] for _ in range(gpus - len(stages))]


class Stage:
    """One stage of a :class:`StageChain`: its operators, duration, current finish time, the
    longest cost-only tail of its operators, and its neighbours on its GPU; its operators' input
    and output edges with their transfer times and their consumers, each in one list
    (:meth:`StageChain.attach`)."""

    __slots__ = ("ops", "gpu", "dur", "fin", "tail", "prev", "next", "stl", "ins", "outs", "succ", "head")

    def __init__(self, ops: list[int], gpu: int, dur: float, tail: float):
        self.ops = ops
        self.gpu = gpu
        self.dur = dur
        self.fin = 0.0
        self.tail = tail
        self.prev: Stage | None = None
        self.next: Stage | None = None
        self.stl = 0.0  # schedule tail (fast mode of the intra-GPU step): longest path from fin to the end
        self.ins: list = []  # [(u, ms)] over the operators' inputs, in operator order
        self.outs: list = []  # [(w, ms)] over their outputs
        self.succ: list = []  # their consumers (graph order, operator by operator)
        self.head = ops[0] if ops else -1  # the first operator


class Regroup:
    """A candidate change of a :class:`StageChain`: stage ``base`` becomes ``group`` (its operators
    plus those of ``picked``), the ``picked`` stages leave the chain; ``rest`` are the stages
    between ``base`` and the last picked one that stay, in order.  After :meth:`StageChain.evaluate`
    it holds the new finish times of every stage the change touched (``fins``)."""

    __slots__ = ("base", "group", "picked", "rest", "after", "fins", "latency")

    def __init__(self, base: Stage, group: Stage, picked: list[Stage], rest: list[Stage], after: Stage | None):
        self.base = base
        self.group = group
        self.picked = picked
        self.rest = rest
        self.after = after
        self.fins: dict[Stage, float] = {}
        self.latency = INF


class StageChain:
    """A staged schedule kept as one linked list of :class:`Stage` per GPU, with the finish time of
    every stage, for the intra-GPU search.

    :meth:`evaluate` gives the exact latency of a :class:`Regroup` (the same number
    :meth:`FastTimer.latency` gives the changed schedule) while re-timing only the stages whose
    finish time changes: the new stages in order, then every stage a changed finish time reaches
    (the next stage on its GPU, the stages of its consumers), in the order of their start times,
    each recomputed from its dependencies; a stage whose finish does not change stops the spread.
    Times before the change are never touched, and work per candidate grows with the part of the
    schedule it moves, not with the schedule.  :meth:`commit` applies an evaluated change.
    """

    def __init__(self, timer: FastTimer, stages: Sequence[Sequence[Sequence[int]]]):
        self.timer = timer
        self.pops = 0  # stages re-timed by spread(), for the work budget of the intra-GPU step
        self.capped = False  # whether the last spread() stopped at its cap
        # fast mode: whether every kept finish time and schedule tail (``Stage.stl``) is exact (set by
        # resync(), kept by commit_fast() while its updates stay within their caps)
        self.exact_kept = False
        # fast mode, uncapped: stages whose schedule tails wait for flush_tails() (a heap like
        # _tails_back()'s, and its members)
        self.pending: list = []
        self.pending_set: set = set()
        self.pending_tick = 0
        n = timer.n
        self.stage_of: list[Stage | None] = [None] * n
        self.gpu_of = [-1] * n
        self.end = [0.0] * n
        self.first: list[Stage | None] = []
        self.last: list[Stage | None] = []
        self.nstages = sum(len(sts) for sts in stages)
        lists: list[list[Stage]] = []
        for gi, sts in enumerate(stages):
            row = []
            prev = None
            for st in sts:
                ops = list(st)
                s = Stage(ops, gi, self.duration(ops), max(timer.tail[v] for v in ops) if ops else 0.0)
                s.prev = prev
                if prev is not None:
                    prev.next = s
                prev = s
                for v in ops:
                    self.stage_of[v] = s
                    self.gpu_of[v] = gi
                row.append(s)
            lists.append(row)
            self.first.append(row[0] if row else None)
            self.last.append(prev)
        if not self._time_all(lists):
            raise HiosError("the schedule deadlocks (its stage order contradicts the dependencies)")
        self.partial = -1 in self.gpu_of  # an operator in no stage
        # Operators keep their GPU during the walk: each edge's transfer time between the GPUs of
        # its ends is fixed.  ins[v] = [(u, ms)] as timer.ins[v]; outs[u] = [(v, ms)] in the order of
        # out_rows().
        gpu_of = self.gpu_of
        ins: list[list[tuple[int, float]]] = []
        outs: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        for v, iv in enumerate(timer.ins):
            g = gpu_of[v]
            row = [(u, r[gpu_of[u]][g]) for u, r in iv]
            ins.append(row)
            for u, ms in row:
                outs[u].append((v, ms))
        self.ins = ins
        self.outs = outs
        for row in lists:
            for st in row:
                self.attach(st)

    def attach(self, s: Stage) -> None:
        """Give ``s`` its edge lists (the operator's own lists for a stage of one operator)."""
        ops = s.ops
        if len(ops) == 1:
            v = ops[0]
            s.ins, s.outs, s.succ = self.ins[v], self.outs[v], self.timer.graph.succs[v]
            return
        succs = self.timer.graph.succs
        s.ins, s.outs, s.succ = [], [], []
        for v in ops:
            s.ins += self.ins[v]
            s.outs += self.outs[v]
            s.succ += succs[v]

    def duration(self, ops: list[int]) -> float:
        t = self.timer
        if len(ops) == 1:
            return t.cost[ops[0]]
        if not ops:
            return 0.0
        return t.model([t.cost[i] for i in ops], [t.util[i] for i in ops])

    def _time_all(self, lists: list[list[Stage]]) -> bool:
        """Finish time of every stage (the rules of :meth:`FastTimer.latency`); False on deadlock."""
        ins = self.timer.ins
        gpu_of = self.gpu_of
        end = self.end
        done = [False] * self.timer.n
        ptr = [0] * len(lists)
        free = [0.0] * len(lists)
        left = sum(len(r) for r in lists)
        while left:
            progress = False
            for gi, row in enumerate(lists):
                k = ptr[gi]
                t_free = free[gi]
                while k < len(row):
                    s = row[k]
                    t = t_free
                    ok = True
                    for v in s.ops:
                        for u, r in ins[v]:
                            gu = gpu_of[u]
                            if gu < 0:
                                continue
                            if not done[u]:
                                ok = False
                                break
                            a = end[u] + r[gu][gi]
                            if a > t:
                                t = a
                        if not ok:
                            break
                    if not ok:
                        break
                    s.fin = t_free = t + s.dur
                    for v in s.ops:
                        end[v] = t_free
                        done[v] = True
                    k += 1
                if k != ptr[gi]:
                    left -= k - ptr[gi]
                    ptr[gi] = k
                    free[gi] = t_free
                    progress = True
            if not progress:
                return False
        return True

    def latency(self) -> float:
        return max((s.fin for s in self.last if s is not None), default=0.0)

    def regroup(self, base: Stage, picked: list[Stage]) -> Regroup:
        """The change that merges the ``picked`` stages (after ``base`` on its GPU, in order) into
        ``base``; not evaluated."""
        ops = list(base.ops)
        tail = base.tail
        for s in picked:
            ops += s.ops
            if s.tail > tail:
                tail = s.tail
        group = Stage(ops, base.gpu, self.duration(ops), tail)
        self.attach(group)
        rest = []
        s = base.next
        last = picked[-1]
        while s is not last:
            if s not in picked:  # identity: stages define no equality
                rest.append(s)
            s = s.next
        return Regroup(base, group, picked, rest, last.next)

    def deadlocks(self, c: Regroup) -> bool:
        """Whether the change deadlocks: the group waits for a stage that waits, through data or
        through the stage order of some GPU, for ``base`` or a later stage of its GPU.  Only
        producers of moved operators that start after ``base`` ends can be such stages, and a
        path to them passes only stages that start no later, so the search stays near the window."""
        base = c.base
        stage_of = self.stage_of
        t0 = base.fin - 1e-9 * (1.0 + abs(base.fin))  # starts are fin - dur: allow for rounding
        targets = set()
        for p in c.picked:
            for u, _ms in p.ins:
                su = stage_of[u]
                if su.gpu != base.gpu and su.fin - su.dur >= t0:
                    targets.add(su)
        if not targets:
            return False
        tmax = max(s.fin - s.dur for s in targets)
        tmax += 1e-9 * (1.0 + abs(tmax))
        seen = {base}
        todo = [base]
        while todo:
            s = todo.pop()
            nxt = [s.next] if s.next is not None else []
            for w in s.succ:
                nxt.append(stage_of[w])
            for x in nxt:
                if x in seen or x.fin - x.dur > tmax:
                    continue
                if x in targets:
                    return True
                seen.add(x)
                todo.append(x)
        return False

    def evaluate(self, c: Regroup, limit: float = INF, cap: int | None = None) -> float:
        """Latency of the schedule changed by ``c`` (also kept in ``c.latency``), or ``INF`` as soon
        as a new finish time plus its stage's cost-only tail exceeds ``limit`` (beyond rounding);
        with ``cap``, also ``INF`` (and :attr:`capped` set) once more than ``cap`` stages change."""
        group = c.group
        chain = [group] + c.rest
        prev_of: dict[Stage, Stage | None] = {group: c.base.prev}
        next_of: dict[Stage, Stage | None] = {}
        for a, b in zip(chain, chain[1:]):
            prev_of[b] = a
            next_of[a] = b
        next_of[chain[-1]] = c.after
        seeds = list(chain)
        if c.after is not None:
            prev_of[c.after] = chain[-1]
            seeds.append(c.after)  # its previous stage changed
        c.latency = INF
        self.capped = False
        reach = None
        if self.exact_kept:
            # a stage finishing after the last picked stage starts has no path to the window, so the
            # change leaves its schedule tail as kept (see spread())
            last = c.picked[-1]
            reach = last.fin - last.dur
            reach += 1e-9 * (1.0 + abs(reach))
        fins = self.spread(seeds, prev_of, next_of, {v: group for v in group.ops}, group, limit, cap, reach)
        if fins is None or self.capped:
            return INF
        c.fins = fins
        last = list(self.last)
        if c.after is None:
            last[group.gpu] = chain[-1]
        c.latency = self.latency_with(fins, last)
        return c.latency

    def latency_with(self, fins: dict, last: list) -> float:
        lat = 0.0
        for s in last:
            if s is not None:
                f = fins.get(s, s.fin)
                if f > lat:
                    lat = f
        return lat

    def spread(self, seeds: list[Stage], prev_of: dict, next_of: dict, moved: dict, fresh: Stage | None,
               limit: float = INF, cap: int | None = None, reach: float | None = None) -> dict | None:
        """New finish times of the stages a change reaches: ``seeds`` are re-timed first, then every
        stage whose dependency's finish changed, in start-time order; ``prev_of`` / ``next_of`` /
        ``moved`` (operator -> stage) override the chain's structure; ``fresh`` is a stage with no
        valid old time, whose inputs are all unchanged (timed first, always spread).  None as soon
        as a finish that nothing pending can still change plus its stage's tail exceeds
        ``limit``: the cost-only tail, or, for a stage whose old finish is after ``reach``, the
        larger kept schedule tail.  ``reach`` (given only while the kept tails are exact) is the
        latest old start of a changed stage: every path of stages has non-decreasing start times,
        so such a stage has no path to a changed stage nor to a producer whose consumer moved,
        and every path from it in the changed schedule is one of the old schedule: its tail is
        unchanged, and its new finish plus that tail is a lower bound of the new latency."""
        limit += limit * 1e-9
        end = self.end
        stage_of = self.stage_of
        fins: dict[Stage, float] = {}
        fins_get = fins.get
        # new finish times of operators are written into ``end`` while spreading (plain list reads),
        # the old ones kept in ``old_end`` and restored on return
        old_end: dict[int, float] = {}
        moved_get = moved.get
        heap: list = []
        heappush = heapq.heappush
        heappop = heapq.heappop
        queued: set = set()
        queue = queued.add
        unqueue = queued.discard
        # heap entries (start time, tick, stage): ties in start time by order of queueing
        tick = 0
        for s in seeds:
            if s not in queued:
                queue(s)
                tick += 1
                heappush(heap, (-INF if s is fresh else fins_get(s, s.fin) - s.dur, tick, s))
        pops = 0
        partial = cap is not None
        if cap is None:
            cap = 8 * self.timer.n + 64
        try:
            while heap:
                key, _, s = heappop(heap)
                unqueue(s)
                pops += 1
                if pops > cap:  # exact: cannot happen for a change that passed deadlocks(); never spin
                    self.capped = True
                    return fins if partial else None
                p = prev_of.get(s, s.prev) if prev_of else s.prev
                t = 0.0 if p is None else fins_get(p, p.fin)
                for u, ms in s.ins:
                    a = end[u] + ms
                    if a > t:
                        t = a
                fin = t + s.dur
                old = fins_get(s)
                if old is None and s is not fresh:
                    old = s.fin
                if fin == old:
                    continue
                tl = s.tail
                if reach is not None and s.fin > reach and s is not fresh and s.stl > tl:
                    tl = s.stl
                if fin + tl > limit and (not heap or heap[0][0] > key):
                    # nothing queued can still change this stage's inputs (every pending change starts
                    # no later than the stages it reaches), so the finish is final: prune
                    return None
                fins[s] = fin
                # (the operators of a stage share their finish time, so this holds for all or none)
                v = s.head
                if s is fresh or fin != end[v] or v in old_end:
                    for v in s.ops:
                        if v not in old_end:
                            old_end[v] = end[v]
                        end[v] = fin
                    for w in s.succ:
                        sw = moved_get(w) or stage_of[w] if moved else stage_of[w]
                        if sw is not s and sw not in queued:
                            queue(sw)
                            tick += 1
                            heappush(heap, (-INF if sw is fresh else fins_get(sw, sw.fin) - sw.dur, tick, sw))
                nx = next_of.get(s, s.next) if next_of else s.next
                if nx is not None and nx not in queued:
                    queue(nx)
                    tick += 1
                    heappush(heap, (-INF if nx is fresh else fins_get(nx, nx.fin) - nx.dur, tick, nx))
        finally:
            self.pops += pops if pops <= cap else cap
            for v, t in old_end.items():
                end[v] = t
        return fins

    # -- fast mode of the intra-GPU step ---------------------------------------------------

    def resync(self, times_exact: bool = False) -> float:
        """Exact finish times and schedule tails of every stage, O(n + e); the latency.
        ``times_exact``: the kept finish times are known to be exact (only :meth:`commit` of
        evaluated changes since the construction): only the tails are computed."""
        lists = []
        for s in self.first:
            row = []
            while s is not None:
                row.append(s)
                s = s.next
            lists.append(row)
        if not times_exact:
            self._retime_all(lists)
        self.pending.clear()  # every tail is recomputed below
        self.pending_set.clear()
        order = sorted((s for row in lists for s in row), key=lambda s: s.fin - s.dur, reverse=True)
        stage_of = self.stage_of
        for s in order:  # s.stl = self._stail(s), inlined
            nx = s.next
            t = nx.dur + nx.stl if nx is not None else 0.0
            for w, ms in s.outs:
                sw = stage_of[w]
                if sw is not s:
                    a = ms + sw.dur + sw.stl
                    if a > t:
                        t = a
            s.stl = t
        self.exact_kept = True
        return self.latency()

    def _retime_all(self, lists: list[list[Stage]]) -> None:
        """:meth:`_time_all` of the chain's own stages (``lists``: each GPU's, in order), which do
        not deadlock, from their edge lists (each input's transfer time between fixed GPUs: the
        same sums); when an operator is in no stage (its inputs are ignored there), that method."""
        if self.partial:
            self._time_all(lists)
            return
        end = self.end
        done = bytearray(self.timer.n)
        ptr = [0] * len(lists)
        free = [0.0] * len(lists)
        left = sum(len(r) for r in lists)
        while left:
            before = left
            for gi, row in enumerate(lists):
                k = ptr[gi]
                t_free = free[gi]
                while k < len(row):
                    s = row[k]
                    t = t_free
                    for u, ms in s.ins:
                        if not done[u]:
                            break
                        a = end[u] + ms
                        if a > t:
                            t = a
                    else:
                        s.fin = t_free = t + s.dur
                        for v in s.ops:
                            end[v] = t_free
                            done[v] = 1
                        k += 1
                        continue
                    break
                if k != ptr[gi]:
                    left -= k - ptr[gi]
                    ptr[gi] = k
                    free[gi] = t_free
            if left == before:  # cannot happen: every change kept passed deadlocks()
                raise HiosError("the intra-GPU walk made the schedule deadlock")

    def _stail(self, s: Stage) -> float:
        """Longest path from the finish of ``s`` to the end, from its successors' kept tails."""
        nx = s.next
        t = nx.dur + nx.stl if nx is not None else 0.0
        stage_of = self.stage_of
        for w, ms in s.outs:
            sw = stage_of[w]
            if sw is not s:
                a = ms + sw.dur + sw.stl
                if a > t:
                    t = a
        return t

    def estimate(self, c: Regroup, cur: float) -> tuple[float, bool] | None:
        """Fast mode: (longest path through the changed window, whether an old window stage is
        critical; True when the path is longer than ``cur``), from the kept finish times of the
        window's producers and the kept tails of its successors, in O(window x degree).  With exact
        kept times, and when the window is not critical, the new latency is ``max(cur, estimate)``.
        For a change that passed :meth:`deadlocks`.  A producer's kept finish is used when the
        change cannot reach it: a stage reached from ``base`` starts after ``base`` ends, so
        producers starting earlier are unreached, and so are the producers of moved operators on
        other GPUs that start later (:meth:`deadlocks` found no path to them).  None when a producer
        of a stage that stays starts after ``base`` ends (it might depend on the window: only a full
        re-timing knows)."""
        base = c.base
        g = base.gpu
        end0 = base.fin - 1e-9 * (1.0 + abs(base.fin))  # as in deadlocks()
        group = c.group
        chain = [group] + c.rest
        new_fin: dict[Stage, float] = {}
        moved = dict.fromkeys(group.ops, group)
        moved_get = moved.get
        new_fin_get = new_fin.get
        inside = set(chain)
        stage_of = self.stage_of
        p = base.prev
        t_prev = p.fin if p is not None else 0.0
        for s in chain:
            t = t_prev
            for u, ms in s.ins:
                su = moved_get(u) or stage_of[u]
                f = new_fin_get(su)
                if f is None:
                    if su.fin - su.dur >= end0 and (s is not group or su.gpu == g):
                        return None
                    f = su.fin
                a = f + ms
                if a > t:
                    t = a
            t_prev = new_fin[s] = t + s.dur
        through = 0.0
        after = c.after
        last = chain[-1]
        for s in chain:
            out = after.dur + after.stl if s is last and after is not None else 0.0
            for w, ms in s.outs:
                sw = moved_get(w) or stage_of[w]
                if sw not in inside:
                    a = ms + sw.dur + sw.stl
                    if a > out:
                        out = a
            x = new_fin[s] + out
            if x > through:
                through = x
        c.fins = new_fin
        if through > cur * (1.0 + 1e-12):
            return through, True  # longer than the latency: rejected, whether critical or not
        edge = cur * (1.0 - 1e-9)
        critical = base.fin + base.stl >= edge or any(x.fin + x.stl >= edge for x in c.picked) or any(
            x.fin + x.stl >= edge for x in c.rest)
        return through, critical

    def commit_fast(self, c: Regroup, cap: int) -> None:
        """Fast mode: apply a change evaluated by :meth:`evaluate` or :meth:`estimate` (then only
        its window's times are known, and finish times are spread forward over at most ``cap``
        stages); tails are updated backward over at most ``cap`` stages (the rest stay stale
        until the next :meth:`resync`)."""
        old = list(c.picked) + [c.base]
        estimated = c.latency == INF
        exact_kept = self.exact_kept
        chain = [c.group] + c.rest
        self.commit(c)
        self.nstages -= len(c.picked)
        if cap < self.nstages:  # _tails_back() may stop before the chain: give it tails now
            for s in reversed(chain):
                s.stl = self._stail(s)
        seeds = []
        if not estimated:
            pass  # evaluate() re-timed every stage the change reaches
        elif c.after is not None:
            seeds.append(c.after)
        for s in chain if estimated else []:
            for w, _ms in s.outs:
                sw = self.stage_of[w]
                if sw not in seeds and sw.gpu != s.gpu:
                    seeds.append(sw)
        if seeds:
            exact_kept = self._push_forward(seeds, cap) and exact_kept
        self.exact_kept = self._tails_back(chain, old, cap) and exact_kept

    def _push_forward(self, seeds: list[Stage], cap: int) -> bool:
        """:meth:`commit_fast`'s forward update: the new finish times of the stages reached from
        ``seeds``, written in place; what :meth:`spread` gives with no structural override, no
        limit and ``cap`` (the same stages in the same order), without its bookkeeping.  Whether
        it stayed within the cap (also kept in :attr:`capped`)."""
        end = self.end
        stage_of = self.stage_of
        heap: list = []
        heappush = heapq.heappush
        heappop = heapq.heappop
        queued: set = set()
        queue = queued.add
        tick = 0  # ties in start time by order of queueing
        for s in seeds:
            if s not in queued:
                queue(s)
                tick += 1
                heappush(heap, (s.fin - s.dur, tick, s))
        pops = 0
        self.capped = False
        while heap:
            _, _, s = heappop(heap)
            queued.discard(s)
            pops += 1
            if pops > cap:
                self.capped = True
                pops = cap
                break
            p = s.prev
            t = 0.0 if p is None else p.fin
            for u, ms in s.ins:
                a = end[u] + ms
                if a > t:
                    t = a
            fin = t + s.dur
            if fin == s.fin:
                continue
            s.fin = fin
            for v in s.ops:
                end[v] = fin
            for w in s.succ:
                sw = stage_of[w]
                if sw is not s and sw not in queued:
                    queue(sw)
                    tick += 1
                    heappush(heap, (sw.fin - sw.dur, tick, sw))
            nx = s.next
            if nx is not None and nx not in queued:
                queue(nx)
                tick += 1
                heappush(heap, (nx.fin - nx.dur, tick, nx))
        self.pops += pops
        return not self.capped

    def _tails_back(self, chain: list[Stage], old: list[Stage], cap: int) -> bool:
        """Schedule tails backward from the changed ``chain`` (the stages that replaced ``old``),
        latest start first, stopping where a tail does not change; at most ``cap`` stages.
        Whether it finished within the cap.  The chain's own stages are recomputed in that
        order too: a producer of a stage of ``chain.rest`` may start after the group and feed
        the group's tail.  (Each tail as :meth:`_stail` computes it.)  When the cap covers every
        stage, the stages starting before the group are left to :meth:`flush_tails`."""
        heap: list = []
        heappush = heapq.heappush
        heappop = heapq.heappop
        queued = set(chain)
        queued.update(old)
        tick = 0  # ties in start time by order of queueing
        forced = set(chain)
        for s in chain:
            tick += 1
            heappush(heap, (s.dur - s.fin, tick, s))
        # Uncapped (every stage fits the cap), the stages starting before the group are left
        # pending (:meth:`flush_tails`): the walk reads only tails of stages that start after it
        # until it leaves the GPU (see flush_tails).  Heap keys are minus the start times.
        defer = cap >= self.nstages
        if defer:
            t0 = chain[0].fin - chain[0].dur
            above = -(t0 - 1e-9 * (1.0 + abs(t0)))  # keys up to this: start >= the group's, beyond rounding
        elif self.pending:
            self.flush_tails()
        while heap and cap > 0:
            if defer and heap[0][0] > above:
                break
            cap -= 1
            _, _, s = heappop(heap)
            t = self._stail(s)
            if t == s.stl and s not in forced:
                continue
            s.stl = t
            tick = self._queue_feeders(s, queued, heap, tick)
        if defer:
            pending = self.pending
            waiting = self.pending_set
            for key, _, x in sorted(heap):
                if x not in waiting:
                    waiting.add(x)
                    self.pending_tick += 1
                    heapq.heappush(pending, (key, self.pending_tick, x))
            return True
        return not heap

    def _queue_feeders(self, s: Stage, queued: set, heap: list, tick: int) -> int:
        """Queue, each once and latest start first (key: minus the start), the stages whose tails
        ``s`` feeds: its predecessor on its GPU and the stages of its operators' inputs.  Returns
        the last tie-breaking tick used."""
        stage_of = self.stage_of
        x = s.prev
        if x is not None and x not in queued:
            queued.add(x)
            tick += 1
            heapq.heappush(heap, (x.dur - x.fin, tick, x))
        for u, _ms in s.ins:
            x = stage_of[u]
            if x not in queued:
                queued.add(x)
                tick += 1
                heapq.heappush(heap, (x.dur - x.fin, tick, x))
        return tick

    def flush_tails(self) -> None:
        """Fast mode, uncapped: bring the tails left pending by :meth:`_tails_back` up to date,
        latest start first, stopping where a tail does not change (as :meth:`_tails_back`).

        Why they may wait: a stage left pending by a change starts before the change's group
        and has a path to the changed stages.  Until the walk leaves the GPU it reads tails only
        of the window's stages (the changed ones, or after them on the GPU) and of stages
        reached from them, none of which has a path to a pending stage (the stage order would
        be cyclic); every tail is the longest path after its stage, so those tails do not
        depend on a pending one.  Nor do later changes move a pending stage's finish (their
        updates reach only stages after them), so its heap key stays its start time."""
        heap = self.pending
        queued = self.pending_set
        heappop = heapq.heappop
        tick = self.pending_tick
        while heap:
            _, _, s = heappop(heap)
            t = self._stail(s)
            if t == s.stl:
                continue
            s.stl = t
            tick = self._queue_feeders(s, queued, heap, tick)
        queued.clear()
        self.pending_tick = 0

    def commit(self, c: Regroup) -> None:
        """Apply an evaluated change (the kept schedule tails are then stale)."""
        self.exact_kept = False
        group = c.group
        gi = group.gpu
        chain = [group] + c.rest
        p = c.base.prev
        group.prev = p
        if p is None:
            self.first[gi] = group
        else:
            p.next = group
        for a, b in zip(chain, chain[1:]):
            a.next = b
            b.prev = a
        chain[-1].next = c.after
        if c.after is None:
            self.last[gi] = chain[-1]
        else:
            c.after.prev = chain[-1]
        for v in group.ops:
            self.stage_of[v] = group
        end = self.end
        for s, f in c.fins.items():
            s.fin = f
            for v in s.ops:
                end[v] = f

    def stages(self) -> list[list[list[int]]]:
        out = []
        for s in self.first:
            row = []
            while s is not None:
                row.append(list(s.ops))
                s = s.next
            out.append(row)
        return out
