"""Shared search machinery of the HIOS schedulers: a fast latency evaluator and the
latest-start-time order.

:class:`FastTimer` computes the latency of a staged schedule (given by operator index) under the
same rules as :class:`hios.simulator.Simulator` without link serialization, but without building
a :class:`~hios.simulator.SimResult`: the search loops call it thousands of times.  It is built
once per search from the search's one :class:`Simulator` (same graph, machine and stage model)
and never copies the graph.

Difference from the simulator: a tensor sent to a GPU that has several consumers of it is timed
with each consumer's own edge; the simulator sends it once per (producer, GPU), sized by the
largest of those byte edges.  The two agree whenever the byte edges of one producer carry the
same bytes, as tensors normally do (edges with an explicit time are sent per edge in both).  The
schedulers always check their final answer with the real simulator.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import HiosError
from ..simulator import Simulator

INF = float("inf")


def check_intra_options(window, streams) -> None:
    for name, v in (("window", window), ("streams", streams)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise HiosError(f"intra-GPU option {name} must be an integer >= 1, got {v!r}")


class FastTimer:
    """Latency of staged schedules (``stages[gpu] = [[op, ...], ...]``) for one simulator."""

    def __init__(self, sim: Simulator):
        g = sim.graph
        m = sim.machine
        self.sim = sim
        self.graph = g
        self.n = len(g.ops)
        self.gpus = m.gpus
        self.cost = sim.cost
        self.util = sim.util
        self.model = sim.stage_model
        self.uniform = m.uniform()  # every pair of GPUs joined by the same link
        G = m.gpus
        rows: dict[float, tuple] = {}
        # ins[v] = [(u, row)] with row[src_gpu][dst_gpu] = transfer ms of edge u->v (0 on the diagonal)
        self.ins: list[list[tuple[int, tuple]]] = []
        # weight[v] = [(u, mean transfer ms over GPU pairs)]: the edge weight of path searches
        self.in_weight: list[list[tuple[int, float]]] = []
        for v in range(self.n):
            iv = []
            wv = []
            for k, (u, _e) in enumerate(sim.in_edges[v]):
                if G == 1:
                    row = ((0.0,),)
                    mean = 0.0
                elif m.uniform():
                    ms = sim.transfer_ms(v, k, 0, 1)
                    row = rows.get(ms)
                    if row is None:
                        row = tuple(tuple(0.0 if a == b else ms for b in range(G)) for a in range(G))
                        rows[ms] = row
                    mean = ms
                else:
                    row = tuple(tuple(sim.transfer_ms(v, k, a, b) for b in range(G)) for a in range(G))
                    mean = sum(row[a][b] for a in range(G) for b in range(G) if a != b) / (G * (G - 1))
                iv.append((u, row))
                wv.append((u, mean))
            self.ins.append(iv)
            self.in_weight.append(wv)
        # tail[v]: longest cost-only path after v; any schedule ends >= finish(v) + tail[v].
        self.tail = [0.0] * self.n
        for u in reversed(g.topo):
            t = 0.0
            for v in g.succs[u]:
                x = self.tail[v] + self.cost[v]
                if x > t:
                    t = x
            self.tail[u] = t

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
