"""Discrete-event simulator of a multi-GPU, multi-stream schedule.

Rules:
  1. Each GPU runs its stages one after another.
  2. A stage starts when its GPU has finished the previous stage and every input of every
     operator in it has arrived.  Its duration is the stage model applied to its operators
     (a one-operator stage takes exactly the operator's cost); all its operators start at the
     stage start and are complete at the stage end.
  3. An input produced on the same GPU arrives when its producer ends.  A cross-GPU input
     arrives a transfer time after the producer ends.  One tensor sent to one GPU is sent
     once, whatever the number of consumers there: for edges given in bytes, one transfer per
     (producer, destination GPU), as large as the largest of those edges; edges with explicit
     times are sent per edge.  An empty stage takes no time.
  4. With ``serialize_links`` a directed link carries one transfer at a time: each transfer
     takes the earliest gap on its link at or after its producer's end.

Stages are processed in dependency order (Kahn's algorithm over stages, earliest ready first);
a schedule whose stage order contradicts the dependencies leaves stages that never become ready,
and is rejected naming the operators involved.

:class:`Simulator` precomputes everything that depends only on the graph and machine, so a
scheduler can evaluate thousands of candidate schedules (complete or partial) without copying.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field
from typing import Sequence

from .cost.costmodel import HIOSStageModel, StageModel
from .graph import Graph, GraphError
from .machine import Machine
from .schedule import Schedule

__all__ = ["ScheduleError", "Transfer", "SimResult", "Simulator", "simulate"]


class ScheduleError(GraphError):
    """A schedule is not valid for its graph or machine."""


@dataclass
class Transfer:
    src: str
    dst: str  # consumer operator (first one, when several share the transfer)
    src_gpu: int
    dst_gpu: int
    start: float
    end: float
    bytes: int


@dataclass
class SimResult:
    latency: float
    start: list[float]  # by operator index; nan for operators not in a partial schedule
    end: list[float]
    gpu_busy: list[float]
    transfers: list[Transfer] = field(default_factory=list)
    stage_times: list[list[tuple[float, float]]] = field(default_factory=list)  # [gpu][k] = (start, end)

    def named(self, graph: Graph) -> dict[str, tuple[float, float]]:
        return {graph.ops[i].name: (s, self.end[i]) for i, s in enumerate(self.start) if s == s}


@dataclass
class _Stages:
    """A schedule's stages numbered globally: operators, GPU and position on that GPU of each stage,
    and the GPU and stage of each operator (-1: not scheduled)."""

    ops: list[Sequence[int]]
    gpu: list[int]
    pos: list[int]
    gpu_of: list[int]
    stage_of: list[int]


@dataclass
class _State:
    """What the event loop has decided so far: operator start/end times, when each GPU is free,
    the transfers booked, their arrivals by (producer, GPU) and the busy intervals of each link."""

    start: list[float]
    end: list[float]
    gpu_free: list[float]
    transfers: list[Transfer] = field(default_factory=list)
    sent: dict[tuple[int, int], float] = field(default_factory=dict)
    link_busy: dict[tuple[int, int], list[tuple[float, float]]] = field(default_factory=dict)


class Simulator:
    def __init__(self, graph: Graph, machine: Machine, stage_model: StageModel | None = None,
                 serialize_links: bool = False):
        self.graph = graph
        self.machine = machine
        self.stage_model = stage_model or HIOSStageModel()
        self.serialize_links = serialize_links
        self.cost = [op.cost for op in graph.ops]
        self.util = [op.utilization for op in graph.ops]
        self.in_edges = [list(ie) for ie in graph.in_edges]  # (u, edge) tuples, as the graph's
        self._uniform = machine.uniform()
        # Transfer time per edge when the machine is uniform (the common case): no per-pair lookup.
        self._edge_ms = [[machine.transfer_ms(e, 0, 1) if machine.gpus > 1 else 0.0 for _, e in ie]
                         for ie in self.in_edges]
        self._byte_out_lists: list | None = None  # _byte_out, built on first use

    @property
    def _byte_out(self) -> list:
        """Byte edges (no explicit time) leaving each operator: they share one transfer per
        destination GPU.  Built on first use (the schedulers' fast evaluator does not need it)."""
        if self._byte_out_lists is None:
            g = self.graph
            self._byte_out_lists = [[(w, e) for w, e in g.out_edges[u] if e.time is None] for u in range(len(g.ops))]
        return self._byte_out_lists

    def edge_ms(self, v: int) -> list[float]:
        """On a uniform machine: the transfer time of each input edge of ``v`` between two GPUs."""
        return self._edge_ms[v]

    def transfer_ms(self, v: int, k: int, src_gpu: int, dst_gpu: int) -> float:
        if src_gpu == dst_gpu:
            return 0.0
        if self._uniform:
            return self._edge_ms[v][k]
        return self.machine.transfer_ms(self.in_edges[v][k][1], src_gpu, dst_gpu)

    def _tensor_ms(self, u: int, src_gpu: int, dst_gpu: int, gpu_of: list[int]) -> tuple[float, int]:
        """Time and size of sending the output of ``u`` to ``dst_gpu``: the largest byte edge
        from ``u`` to a consumer placed there."""
        best_ms, best_bytes = 0.0, 0
        m = self.machine
        for w, e in (self._byte_out_lists or self._byte_out)[u]:
            if gpu_of[w] == dst_gpu:
                ms = m.transfer_ms(e, src_gpu, dst_gpu)
                if ms > best_ms or (ms == best_ms and e.bytes > best_bytes):
                    best_ms, best_bytes = ms, e.bytes
        return best_ms, best_bytes

    def simulate(self, schedule: Schedule) -> SimResult:
        if schedule.gpus > self.machine.gpus:
            used = [g for g in range(self.machine.gpus, schedule.gpus) if any(schedule.stages[g])]
            if used:
                raise ScheduleError(f"schedule uses GPU {used[0]} but the machine has {self.machine.gpus} GPU(s)")
        return self.run(schedule.indexed(self.graph), complete=True)

    def run(self, stages: Sequence[Sequence[Sequence[int]]], complete: bool = True) -> SimResult:
        """Simulate stages given by operator index. With ``complete=False`` the schedule may cover
        a subset of the operators; inputs from unscheduled operators are ignored.

        Steps: number the stages (:meth:`_flatten`), link each to the stages it waits for
        (:meth:`_stage_deps`), then run them in dependency order, earliest ready first: a stage
        starts when its GPU is free and its inputs have arrived (:meth:`_arrival`) and lasts what
        the stage model says (:meth:`_duration`)."""
        flat = self._flatten(stages, complete)
        indeg, out = self._stage_deps(flat)
        ns = len(flat.ops)
        n = len(self.graph.ops)
        st = _State([float("nan")] * n, [float("nan")] * n, [0.0] * max(self.machine.gpus, len(stages)))
        busy = [0.0] * len(st.gpu_free)
        stage_times: list[list[tuple[float, float]]] = [[(float("nan"),) * 2] * len(sts) for sts in stages]
        ready_at = [0.0] * ns  # lower bound on the start: max end of dependency stages
        heap = [(0.0, sid) for sid in range(ns) if indeg[sid] == 0]
        heapq.heapify(heap)
        done = 0
        while heap:
            _, sid = heapq.heappop(heap)
            done += 1
            gi, ops = flat.gpu[sid], flat.ops[sid]
            t = self._arrival(ops, gi, flat.gpu_of, st, st.gpu_free[gi])
            dur = self._duration(ops)
            fin = t + dur
            for v in ops:
                st.start[v] = t
                st.end[v] = fin
            st.gpu_free[gi] = fin
            busy[gi] += dur
            stage_times[gi][flat.pos[sid]] = (t, fin)
            for s2 in out[sid]:
                if fin > ready_at[s2]:
                    ready_at[s2] = fin
                indeg[s2] -= 1
                if indeg[s2] == 0:
                    heapq.heappush(heap, (max(ready_at[s2], st.gpu_free[flat.gpu[s2]]), s2))
        if done < ns:
            raise ScheduleError(self._deadlock_message(flat.ops, flat.gpu, flat.pos, indeg, flat.stage_of))
        latency = max(st.gpu_free) if st.gpu_free else 0.0
        return SimResult(latency, st.start, st.end, busy, st.transfers, stage_times)

    def latency(self, stages: Sequence[Sequence[Sequence[int]]], complete: bool = True) -> float:
        """``run(stages, complete).latency`` (same checks, same events, same arithmetic) without
        recording start times, transfers or stage intervals: what the schedulers' choices between
        whole schedules need."""
        flat = self._flatten(stages, complete)
        indeg, out = self._stage_deps(flat)
        ns = len(flat.ops)
        st_gpu, st_ops, gpu_of = flat.gpu, flat.ops, flat.gpu_of
        in_edges = self.in_edges
        cost = self.cost
        end = [0.0] * len(self.graph.ops)  # read only for producers already simulated
        free = [0.0] * max(self.machine.gpus, len(stages))
        sent: dict[tuple[int, int], float] = {}
        link_busy: dict[tuple[int, int], list[tuple[float, float]]] = {}
        ready_at = [0.0] * ns
        heap = [(0.0, sid) for sid in range(ns) if indeg[sid] == 0]
        heapq.heapify(heap)
        heappop, heappush = heapq.heappop, heapq.heappush
        done = 0
        while heap:
            _, sid = heappop(heap)
            done += 1
            gi, ops = st_gpu[sid], st_ops[sid]
            t = free[gi]
            for v in ops:
                for k, (u, e) in enumerate(in_edges[v]):
                    gu = gpu_of[u]
                    if gu == -1:
                        continue
                    if gu == gi:
                        arr = end[u]
                    else:
                        key = (u, gi) if e.time is None else (u, -v - 1)
                        arr = sent.get(key)
                        if arr is None:
                            t0, dur, _ = self._transfer(u, v, k, e, gu, gi, gpu_of, end[u], link_busy)
                            arr = sent[key] = t0 + dur
                    if arr > t:
                        t = arr
            fin = t + (cost[ops[0]] if len(ops) == 1 else self._duration(ops))
            for v in ops:
                end[v] = fin
            free[gi] = fin
            for s2 in out[sid]:
                if fin > ready_at[s2]:
                    ready_at[s2] = fin
                indeg[s2] -= 1
                if indeg[s2] == 0:
                    heappush(heap, (max(ready_at[s2], free[st_gpu[s2]]), s2))
        if done < ns:
            raise ScheduleError(self._deadlock_message(flat.ops, flat.gpu, flat.pos, indeg, flat.stage_of))
        return max(free) if free else 0.0

    def _flatten(self, stages: Sequence[Sequence[Sequence[int]]], complete: bool) -> "_Stages":
        """Number every stage globally and check that each operator index is valid and placed once
        (and, for a complete schedule, that none is missing)."""
        g = self.graph
        n = len(g.ops)
        flat = _Stages([], [], [], [-1] * n, [-1] * n)
        for gi, sts in enumerate(stages):
            if gi >= self.machine.gpus and any(len(s) for s in sts):
                raise ScheduleError(f"schedule uses GPU {gi} but the machine has {self.machine.gpus} GPU(s)")
            for k, stage in enumerate(sts):
                sid = len(flat.ops)
                for i in stage:
                    if not 0 <= i < n:
                        raise ScheduleError(f"stage {k} of GPU {gi} holds {i!r}, not an operator index "
                                            f"in 0..{n - 1}")
                    if flat.gpu_of[i] != -1:
                        raise ScheduleError(f"operator {g.ops[i].name!r} is scheduled more than once")
                    flat.gpu_of[i] = gi
                    flat.stage_of[i] = sid
                flat.ops.append(stage)
                flat.gpu.append(gi)
                flat.pos.append(k)
        if complete:
            missing = [g.ops[i].name for i in range(n) if flat.gpu_of[i] == -1]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise ScheduleError(f"schedule misses operator {missing[0]!r}{more}")
        return flat

    def _stage_deps(self, flat: "_Stages") -> tuple[list[int], list[list[int]]]:
        """(in-degree, successors) of the stage graph: each stage waits for the previous stage of its
        GPU and for the stages of its operators' producers; a stage may not hold a dependent pair."""
        g = self.graph
        ns = len(flat.ops)
        indeg = [0] * ns
        out: list[list[int]] = [[] for _ in range(ns)]
        for sid in range(ns):
            deps = set()
            if flat.pos[sid] > 0:
                deps.add(sid - 1)
            for v in flat.ops[sid]:
                for u in g.preds[v]:
                    su = flat.stage_of[u]
                    if su == -1:
                        continue
                    if su == sid:
                        raise ScheduleError(f"operators {g.ops[u].name!r} and {g.ops[v].name!r} share a stage "
                                            f"(GPU {flat.gpu[sid]} stage {flat.pos[sid]}) but {g.ops[v].name!r} "
                                            f"depends on {g.ops[u].name!r}")
                    deps.add(su)
            indeg[sid] = len(deps)
            for d in deps:
                out[d].append(sid)
        return indeg, out

    def _arrival(self, ops: Sequence[int], gi: int, gpu_of: list[int], st: "_State", t: float) -> float:
        """The later of ``t`` and the time every input of the stage ``ops`` (on GPU ``gi``) is there;
        books the transfers it starts (one per producer and destination GPU for byte edges, one per
        edge for timed edges)."""
        for v in ops:
            for k, (u, e) in enumerate(self.in_edges[v]):
                gu = gpu_of[u]
                if gu == -1:
                    continue
                if gu == gi:
                    arr = st.end[u]
                else:
                    key = (u, gi) if e.time is None else (u, -v - 1)
                    arr = st.sent.get(key)
                    if arr is None:
                        arr = self._send(u, v, k, e, gu, gi, gpu_of, st)
                        st.sent[key] = arr
                if arr > t:
                    t = arr
        return t

    def _send(self, u: int, v: int, k: int, e, gu: int, gi: int, gpu_of: list[int], st: "_State") -> float:
        """Book the transfer of ``u``'s output from GPU ``gu`` to ``gi`` (on a free gap of the link
        when links are serialized); its arrival time."""
        t0, dur, nbytes = self._transfer(u, v, k, e, gu, gi, gpu_of, st.end[u], st.link_busy)
        st.transfers.append(Transfer(self.graph.ops[u].name, self.graph.ops[v].name, gu, gi, t0, t0 + dur, nbytes))
        return t0 + dur

    def _transfer(self, u: int, v: int, k: int, e, gu: int, gi: int, gpu_of: list[int], t0: float,
                  link_busy: dict) -> tuple[float, float, int]:
        """(start, duration, bytes) of sending ``u``'s output (ready at ``t0``) from GPU ``gu`` to
        ``gi``; with serialized links the gap is booked in ``link_busy``."""
        if e.time is None:
            dur, nbytes = self._tensor_ms(u, gu, gi, gpu_of)
        else:
            dur, nbytes = self.transfer_ms(v, k, gu, gi), e.bytes
        if self.serialize_links and dur > 0:
            t0 = _reserve(link_busy.setdefault((gu, gi), []), t0, dur)
        return t0, dur, nbytes

    def _duration(self, ops: Sequence[int]) -> float:
        """A stage's time: its one operator's cost, or the stage model over its operators."""
        if len(ops) == 1:
            return self.cost[ops[0]]
        if not ops:
            return 0.0
        return self.stage_model([self.cost[i] for i in ops], [self.util[i] for i in ops])

    def _deadlock_message(self, st_ops, st_gpu, st_pos, indeg, stage_of) -> str:
        """Name, for the first blocked stage of each GPU, its operators and the blocked producers
        they wait for (where those sit: GPU and stage number)."""
        g = self.graph
        parts = []
        seen_gpu = set()
        for sid in range(len(st_ops)):
            gi = st_gpu[sid]
            if indeg[sid] == 0 or gi in seen_gpu:
                continue
            seen_gpu.add(gi)
            needs = []
            for v in st_ops[sid]:
                for u in g.preds[v]:
                    su = stage_of[u]
                    if su != -1 and indeg[su] > 0:
                        needs.append(f"{g.ops[v].name!r} needs {g.ops[u].name!r} "
                                     f"(GPU {st_gpu[su]} stage {st_pos[su]})")
            more = f" and {len(needs) - 3} more" if len(needs) > 3 else ""
            who = ", ".join(repr(g.ops[v].name) for v in st_ops[sid])
            why = ", ".join(needs[:3]) + more if needs else "waits behind a blocked stage"
            parts.append(f"GPU {gi} stage {st_pos[sid]} [{who}]: {why}")
        return "schedule deadlocks (stage order contradicts the dependencies): " + "; ".join(parts)


def _reserve(intervals: list[tuple[float, float]], t0: float, dur: float) -> float:
    """Earliest start >= t0 of a gap of length ``dur`` in sorted disjoint ``intervals``; books it."""
    k = bisect.bisect_right(intervals, (t0, float("inf")))
    if k > 0 and intervals[k - 1][1] > t0:
        t0 = intervals[k - 1][1]
    while k < len(intervals) and intervals[k][0] < t0 + dur:
        t0 = max(t0, intervals[k][1])
        k += 1
    intervals.insert(k, (t0, t0 + dur))
    return t0


def simulate(graph: Graph, schedule: Schedule, machine: Machine | None = None,
             stage_model: StageModel | None = None, serialize_links: bool = False) -> SimResult:
    """Simulate ``schedule`` of ``graph`` on ``machine`` (default: as many GPUs as the schedule,
    NVLink) under ``stage_model`` (default HIOS, alpha 0.5); see the module docstring for the rules.

    Returns
    -------
    SimResult
        ``latency`` (ms), per-operator ``start``/``end``, per-GPU busy time, the transfers and the
        stage intervals.

    Raises
    ------
    ScheduleError
        The schedule misses or repeats an operator, uses a GPU the machine lacks, puts dependent
        operators in one stage, or deadlocks (named in the message).

    Examples
    --------
    >>> from hios import Edge, Graph, Machine, Operator, Schedule, simulate
    >>> g = Graph([Operator("a", 1.0), Operator("b", 2.0), Operator("c", 1.5)],
    ...           [Edge("a", "b", time=0.25), Edge("a", "c", time=0.25)])
    >>> simulate(g, Schedule([[("a",), ("b",)], [("c",)]]), Machine(2)).latency
    3.0
    """
    machine = machine or Machine(max(1, schedule.gpus))
    return Simulator(graph, machine, stage_model, serialize_links).simulate(schedule)
