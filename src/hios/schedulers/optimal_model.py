"""The CP-SAT model behind :mod:`hios.schedulers.optimal`: the whole HIOS problem in integer time.

The problem: place every operator on a GPU, group the operators of each GPU into stages of at
most ``streams`` mutually independent operators, order the stages of each GPU, so that the
simulated latency (:mod:`hios.simulator`) is least.  The model, in time units of ``1/scale`` ms
(every duration rounded *up*, and at least one unit for a stage, so a model solution is
feasible in real time):

  1. Candidate stages: every set of 1..``streams`` mutually independent operators (no path
     between any two), with its duration ``d_c`` = the stage model applied to its members.  A
     group that is not shorter than its members run one after another is dropped: running them
     one by one from the group's start ends every member no later and frees the GPU no later.
  2. Variables: ``on[v][g]`` (operator ``v`` on GPU ``g``, exactly one), ``pick[c]`` (candidate
     ``c`` is a stage; each operator is in exactly one picked candidate), operator starts and
     ends.  A picked group puts its members on one GPU with one start; an operator ends its
     stage's duration after its start.  Per GPU, one optional interval per candidate (present
     when it is picked and on that GPU), no overlap.
  3. Data: for an edge ``u -> v``, ``v`` starts no earlier than ``u`` ends, plus the transfer when
     the two are on different GPUs.  As in the simulator, a byte tensor goes once per
     (producer, destination GPU) and lasts as long as its largest edge to a consumer placed
     there (pairwise constraints between the consumers of one producer); edges with an explicit
     time go per edge; on a machine with per-pair links, the time depends on the GPU pair.
     With ``serialize_links``, each transfer is also an optional interval on its directed link
     (present when the producer is on the source GPU and a consumer on the destination), no
     overlap per link; consumers start after the transfer ends.
  4. Makespan >= every operator's end.  Redundant constraints for a stronger bound: at most
     ``gpus`` stages at once (cumulative), makespan >= each GPU's load; on identical GPUs,
     symmetry breaking: GPUs are numbered by first use along the topological order (an
     operator may use GPU g > 0 only if an earlier one uses GPU g - 1).
  5. Idle time at each GPU's ends (:func:`add_idle_bounds`, shared with the mapping-and-order
     model of :mod:`.optimal_order`): a GPU's busy span holds its load, and it starts no earlier
     than its first operator can (all that operator's ancestors run elsewhere, so every input
     crosses a link) and ends no later than the makespan less what its last operator still
     feeds (every consumer runs elsewhere).  Summed over the GPUs, this lifts the bound from
     work / GPUs by the idle time that transfers force at the start and end of the schedule,
     which is what the proofs on two GPUs were missing.

:func:`hint_solution` turns a schedule (a heuristic's) into a complete model solution (integer
as-soon-as-possible timing), given to CP-SAT as a hint so it starts from a good incumbent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import HiosError, option
from ..graph import Graph
from ..machine import Machine
from ..simulator import _reserve

__all__ = ["ExactModel", "IdleBounds", "add_hint", "add_idle_bounds", "add_precedences", "add_symmetry", "build",
           "candidate_stages", "hint_solution", "link_time", "units"]


def units(ms: float, scale: float) -> int:
    """``ms`` in model units of ``1/scale`` ms, rounded up (tolerating float noise)."""
    return max(0, int(math.ceil(ms * scale - 1e-6)))


def candidate_stages(graph: Graph, streams: int, stage_model, scale: float, limit: int
                     ) -> tuple[list[tuple[int, ...]], list[int]]:
    """Step 1: the candidate stages (sorted operator tuples, singletons first in index order)
    and their durations in units.  Raises :class:`HiosError` past ``limit`` candidates."""
    n = len(graph.ops)
    anc = graph.ancestors_mask()
    cost = [op.cost for op in graph.ops]
    util = [op.utilization for op in graph.ops]
    one = [max(1, units(c, scale)) for c in cost]
    cands: list[tuple[int, ...]] = [(v,) for v in range(n)]
    durs: list[int] = list(one)
    indep = [[w for w in range(v + 1, n) if not (anc[w] >> v) & 1 and not (anc[v] >> w) & 1] for v in range(n)]

    def grow(members: list[int], allowed: list[int]) -> None:
        for k, w in enumerate(allowed):
            group = members + [w]
            d = max(1, units(stage_model([cost[i] for i in group], [util[i] for i in group]), scale))
            if d < sum(one[i] for i in group):
                cands.append(tuple(group))
                durs.append(d)
                if len(cands) > limit:
                    raise HiosError(f"optimal: {graph.name!r} has more than {limit} candidate stages of up to "
                                    f"{streams} independent operators, too many for the exact solver "
                                    f"(use fewer {option('streams')} or a smaller graph)")
            # A group that is dropped may still grow into a useful one (a member with low utilization).
            if len(group) < streams:
                grow(group, [x for x in allowed[k + 1:] if x in indep_set[w]])

    indep_set = [set(ws) for ws in indep]
    if streams >= 2:
        for v in range(n):
            grow([v], indep[v])
    return cands, durs


@dataclass
class IdleBounds:
    """The variables of :func:`add_idle_bounds`, per GPU (kept to hint them)."""

    used: list[object]  # the GPU runs something
    first: list[object]  # its busy span starts no earlier (0 when unused)
    tail: list[object]  # the makespan exceeds its busy span's end by at least this (0 when unused)
    starts: list[list[object]]  # starts[g][v] >= start of v when on g, the horizon when not
    gaps: list[list[object]]  # gaps[g][v] >= makespan - end of v when on g, the horizon when not
    ready: list[int] = field(default_factory=list)  # the least start of an operator first on its GPU
    after: list[int] = field(default_factory=list)  # the least makespan - end of one last on its GPU


@dataclass
class ExactModel:
    """The built model and the handles needed to read a solution."""

    model: object
    n_gpu: int
    cands: list[tuple[int, ...]]
    durs: list[int]
    on: list[list[object]]
    pick: list[object]  # empty in the mapping-and-order model (every operator alone)
    start: list[object]
    end: list[object]
    place: list[list[object]]  # place[c][g]: candidate c picked and on GPU g (on[v] when pick is empty)
    differ: dict[tuple[int, int], object]  # (u, v): u and v on different GPUs
    makespan: object
    horizon: int
    # serialized links: (producer, src GPU, dst GPU, key) -> (start, size (var or int), end var or None,
    # presence literal, interval)
    transfers: dict[tuple, tuple] = field(default_factory=dict)
    comm: object = None  # comm(u, w, a, b): transfer units of edge u -> w between GPUs a, b
    uniform: bool = True
    idle: IdleBounds | None = None

    def picked(self, value) -> list[int]:
        """The candidates a solution picks (``value``: the solver's ``Value``)."""
        if not self.pick:
            return list(range(len(self.cands)))
        return [c for c in range(len(self.cands)) if value(self.pick[c])]


def _edge_index(graph: Graph) -> dict[tuple[int, int], object]:
    return {(u, v): e for v in range(len(graph.ops)) for u, e in graph.in_edges[v]}


def link_time(graph: Graph, machine: Machine, scale: float):
    """``comm(u, w, a, b)``: the units of edge ``u -> w`` from GPU ``a`` to GPU ``b`` (memoized)."""
    edge = _edge_index(graph)
    uniform = machine.uniform()
    memo: dict[tuple[int, int, int, int], int] = {}

    def comm(u: int, w: int, a: int, b: int) -> int:
        if a == b:
            return 0
        key = (u, w, a, b) if not uniform else (u, w, 0, 1)
        c = memo.get(key)
        if c is None:
            c = memo[key] = units(machine.transfer_ms(edge[(u, w)], key[2], key[3]), scale)
        return c
    return comm


def build(graph: Graph, machine: Machine, stage_model, streams: int, scale: float, serialize_links: bool,
          limit: int) -> ExactModel:
    from ortools.sat.python import cp_model

    n = len(graph.ops)
    uniform = machine.uniform()
    n_gpu = min(machine.gpus, n) if uniform else machine.gpus  # identical GPUs: n ops use at most n
    cands, durs = candidate_stages(graph, streams, stage_model, scale, limit)
    comm = link_time(graph, machine, scale)

    # Upper bound of any useful schedule: everything on one GPU, one operator per stage.
    horizon = sum(durs[:n])
    m = cp_model.CpModel()
    start = [m.NewIntVar(0, horizon, f"s{v}") for v in range(n)]
    end = [m.NewIntVar(0, horizon, f"e{v}") for v in range(n)]
    on = [[m.NewBoolVar(f"x{v}_{g}") for g in range(n_gpu)] for v in range(n)]
    for v in range(n):
        m.AddExactlyOne(on[v])
    pick = [m.NewBoolVar(f"y{c}") for c in range(len(cands))]
    having: list[list[int]] = [[] for _ in range(n)]
    for c, members in enumerate(cands):
        for v in members:
            having[v].append(c)
    for v in range(n):
        m.AddExactlyOne([pick[c] for c in having[v]])
        m.Add(end[v] == start[v] + sum(durs[c] * pick[c] for c in having[v]))
    per_gpu: list[list[object]] = [[] for _ in range(n_gpu)]
    place: list[list[object]] = []
    load: list[list[tuple[int, object]]] = [[] for _ in range(n_gpu)]
    any_gpu = []
    for c, members in enumerate(cands):
        head = members[0]
        for w in members[1:]:
            m.Add(start[w] == start[head]).OnlyEnforceIf(pick[c])
            for g in range(n_gpu):
                m.Add(on[w][g] == on[head][g]).OnlyEnforceIf(pick[c])
        lits = []
        for g in range(n_gpu):
            if len(members) == 1:
                lit = m.NewBoolVar(f"p{c}_{g}")
                m.AddBoolAnd([pick[c], on[head][g]]).OnlyEnforceIf(lit)
                m.AddBoolOr([pick[c].Not(), on[head][g].Not(), lit])
            else:
                lit = m.NewBoolVar(f"p{c}_{g}")
                m.AddImplication(lit, pick[c])
                m.AddImplication(lit, on[head][g])
                m.AddBoolOr([pick[c].Not(), on[head][g].Not(), lit])
            lits.append(lit)
            per_gpu[g].append(m.NewOptionalFixedSizeIntervalVar(start[head], durs[c], lit, f"i{c}_{g}"))
            load[g].append((durs[c], lit))
        m.Add(sum(lits) == pick[c])
        place.append(lits)
        any_gpu.append(m.NewOptionalFixedSizeIntervalVar(start[head], durs[c], pick[c], f"a{c}"))
    for g in range(n_gpu):
        m.AddNoOverlap(per_gpu[g])
    m.AddCumulative(any_gpu, [1] * len(any_gpu), n_gpu)  # redundant
    if uniform:
        add_symmetry(m, graph, on, n_gpu)
    makespan = m.NewIntVar(0, horizon, "makespan")
    differ, transfers = add_precedences(m, graph, on, start, end, comm, uniform, n_gpu, horizon, serialize_links)
    for v in graph.sinks():
        m.Add(makespan >= end[v])
    loads = [sum(d * lit for d, lit in load[g]) for g in range(n_gpu)]
    for g in range(n_gpu):  # redundant: a GPU's load
        m.Add(makespan >= loads[g])
    shortest = [min(durs[c] for c in having[v]) for v in range(n)]
    idle = add_idle_bounds(m, graph, on, start, end, makespan, loads, shortest, comm, n_gpu, horizon)
    m.Minimize(makespan)
    return ExactModel(m, n_gpu, cands, durs, on, pick, start, end, place, differ, makespan, horizon, transfers,
                      comm, uniform, idle)


def add_symmetry(m, graph: Graph, on, n_gpu: int) -> None:
    """Identical GPUs: GPU g > 0 is used only after GPU g - 1 by an earlier operator of the
    topological order."""
    for k, v in enumerate(graph.topo):
        for g in range(1, n_gpu):
            if g > k:
                m.Add(on[v][g] == 0)
            else:
                m.AddBoolOr([on[u][g - 1] for u in graph.topo[:k]]).OnlyEnforceIf(on[v][g])


def add_precedences(m, graph: Graph, on, start, end, comm, uniform: bool, n_gpu: int, horizon: int,
                    serialize_links: bool) -> tuple[dict, dict]:
    """Step 3: data dependencies and transfers; returns the "differ" literals and, with
    ``serialize_links``, the transfers on each link."""
    transfers: dict[tuple, tuple] = {}
    differ: dict[tuple[int, int], object] = {}
    n = len(graph.ops)
    for v in range(n):
        for u, e in graph.in_edges[v]:
            m.Add(start[v] >= end[u])
    if n_gpu > 1:
        pairs = [(a, b) for a in range(n_gpu) for b in range(n_gpu) if a != b]
        for u in range(n):
            outs = graph.out_edges[u]
            byte_w = [w for w, e in outs if e.time is None]
            time_w = [w for w, e in outs if e.time is not None]
            if not serialize_links:
                _direct_transfers(m, u, byte_w, time_w, on, start, end, comm, uniform, pairs, n_gpu, differ)
            else:
                _link_transfers(m, u, byte_w, time_w, on, start, end, comm, pairs, horizon, transfers)
        if serialize_links:
            by_link: dict[tuple[int, int], list] = {}
            for (u, a, b, key), (_, _, _, _, iv) in transfers.items():
                by_link.setdefault((a, b), []).append(iv)
            for ivs in by_link.values():
                m.AddNoOverlap(ivs)
    return differ, transfers


def add_idle_bounds(m, graph: Graph, on, start, end, makespan, loads: list, shortest: list[int], comm,
                    n_gpu: int, horizon: int) -> IdleBounds | None:
    """Step 5 (redundant): each GPU's busy span ``[first, makespan - tail]`` holds its load.

    The first operator ``v`` on a GPU has every ancestor on another GPU, so it starts no earlier
    than ``ready(v)`` = the latest (head of a producer + its duration + the cheapest transfer of
    the edge); the last operator ``v`` on a GPU has every consumer elsewhere, so the makespan
    exceeds its end by at least ``after(v)`` = the largest (cheapest transfer + consumer's duration
    + the longest path after it).  Heads and paths use ``shortest`` (each operator's least
    duration).  ``first[g]`` = min over the operators on ``g`` of max(start, ready) — the first
    operator's start — and ``tail[g]`` likewise; both are 0 on an unused GPU.  Constraints:
    ``makespan >= first[g] + load[g] + tail[g]`` per GPU and ``gpus * makespan >= sum(load) +
    sum(first + tail)``.  Every schedule satisfies them, so the bound stays valid."""
    if n_gpu < 2:
        return None
    n = len(graph.ops)
    pairs = [(a, b) for a in range(n_gpu) for b in range(n_gpu) if a != b]

    def cheapest(u: int, w: int) -> int:
        return min(comm(u, w, a, b) for a, b in pairs)

    head = [0] * n
    for v in graph.topo:
        for u, _ in graph.in_edges[v]:
            head[v] = max(head[v], head[u] + shortest[u])
    after_end = [0] * n  # longest path from an operator's end to the last end
    for v in reversed(graph.topo):
        for w, _ in graph.out_edges[v]:
            after_end[v] = max(after_end[v], shortest[w] + after_end[w])
    ready = [max((head[u] + shortest[u] + cheapest(u, v) for u, _ in graph.in_edges[v]), default=0)
             for v in range(n)]
    after = [max((cheapest(v, w) + shortest[w] + after_end[w] for w, _ in graph.out_edges[v]), default=0)
             for v in range(n)]
    idle = IdleBounds([], [], [], [], [], [min(r, horizon) for r in ready], [min(a, horizon) for a in after])
    for g in range(n_gpu):
        used = m.NewBoolVar(f"u{g}")
        m.AddBoolOr([on[v][g] for v in range(n)]).OnlyEnforceIf(used)
        for v in range(n):
            m.AddImplication(on[v][g], used)
        starts, gaps = [], []
        for v in range(n):
            t = m.NewIntVar(idle.ready[v], horizon, f"fs{v}_{g}")
            m.Add(t >= start[v]).OnlyEnforceIf(on[v][g])
            m.Add(t == horizon).OnlyEnforceIf(on[v][g].Not())
            q = m.NewIntVar(idle.after[v], horizon, f"lg{v}_{g}")
            m.Add(q >= makespan - end[v]).OnlyEnforceIf(on[v][g])
            m.Add(q == horizon).OnlyEnforceIf(on[v][g].Not())
            starts.append(t)
            gaps.append(q)
        first = m.NewIntVar(0, horizon, f"first{g}")
        m.AddMinEquality(first, [horizon * used] + starts)
        tail = m.NewIntVar(0, horizon, f"tail{g}")
        m.AddMinEquality(tail, [horizon * used] + gaps)
        m.Add(makespan >= first + loads[g] + tail)
        for lst, x in ((idle.used, used), (idle.first, first), (idle.tail, tail), (idle.starts, starts),
                       (idle.gaps, gaps)):
            lst.append(x)
    m.Add(n_gpu * makespan >= sum(loads) + sum(idle.first) + sum(idle.tail))
    return idle


def _direct_transfers(m, u, byte_w, time_w, on, start, end, comm, uniform, pairs, n_gpu, differ) -> None:
    """Step 3 without link serialization: arrival constraints, per edge or per tensor."""
    for w in time_w:  # explicit times: one transfer per edge
        _arrive(m, u, w, w, on, start, end, comm, uniform, pairs, n_gpu, differ)
    for v in byte_w:
        for w in byte_w:  # v waits for the tensor sent for w when both sit on one GPU away from u
            _arrive(m, u, v, w, on, start, end, comm, uniform, pairs, n_gpu, differ)


def _arrive(m, u, v, w, on, start, end, comm, uniform, pairs, n_gpu, differ) -> None:
    """``start[v] >= end[u] + comm(u -> w)`` when ``v`` and ``w`` share a GPU other than ``u``'s."""
    if uniform:
        c = comm(u, w, 0, 1)
        if c <= 0 or (v != w and c <= comm(u, v, 0, 1)):
            return  # v's own edge already implies it
        if v == w:
            d = differ[(u, v)] = m.NewBoolVar(f"d{u}_{v}")
            for g in range(n_gpu):
                m.AddBoolOr([on[u][g], on[v][g].Not(), d])  # v on g, u not on g -> differ
            m.Add(start[v] >= end[u] + c).OnlyEnforceIf(d)
        else:
            for g in range(n_gpu):
                m.Add(start[v] >= end[u] + c).OnlyEnforceIf([on[v][g], on[w][g], on[u][g].Not()])
        return
    for a, b in pairs:
        c = comm(u, w, a, b)
        if c <= 0 or (v != w and c <= comm(u, v, a, b)):
            continue
        lits = [on[u][a], on[v][b]] + ([on[w][b]] if v != w else [])
        m.Add(start[v] >= end[u] + c).OnlyEnforceIf(lits)


def _link_transfers(m, u, byte_w, time_w, on, start, end, comm, pairs, horizon, transfers) -> None:
    """Step 3 with serialized links: each transfer is an optional interval on its link."""
    for a, b in pairs:
        for w in time_w:
            c = comm(u, w, a, b)
            if c <= 0:
                continue
            lit = m.NewBoolVar(f"t{u}_{w}_{a}_{b}")
            m.AddBoolAnd([on[u][a], on[w][b]]).OnlyEnforceIf(lit)
            m.AddBoolOr([on[u][a].Not(), on[w][b].Not(), lit])
            s = m.NewIntVar(0, horizon, f"ts{u}_{w}_{a}_{b}")
            m.Add(s >= end[u])
            m.Add(start[w] >= s + c).OnlyEnforceIf(lit)
            transfers[(u, a, b, ("edge", w))] = (s, c, None, lit,
                                                 m.NewOptionalFixedSizeIntervalVar(s, c, lit, f"ti{u}_{w}_{a}_{b}"))
        sizes = {w: comm(u, w, a, b) for w in byte_w}
        if not byte_w or max(sizes.values()) <= 0:
            continue
        lit = m.NewBoolVar(f"t{u}_{a}_{b}")  # u on a and some byte consumer on b
        m.AddImplication(lit, on[u][a])
        m.AddBoolOr([on[w][b] for w in byte_w]).OnlyEnforceIf(lit)
        for w in byte_w:
            m.AddBoolOr([on[u][a].Not(), on[w][b].Not(), lit])
        s = m.NewIntVar(0, horizon, f"ts{u}_{a}_{b}")
        size = m.NewIntVar(0, max(sizes.values()), f"tz{u}_{a}_{b}")
        e = m.NewIntVar(0, 2 * horizon, f"te{u}_{a}_{b}")
        m.Add(s >= end[u])
        for w, c in sizes.items():
            if c > 0:
                m.Add(size >= c).OnlyEnforceIf([on[u][a], on[w][b]])
            m.Add(start[w] >= e).OnlyEnforceIf([on[u][a], on[w][b]])
        transfers[(u, a, b, "tensor")] = (s, size, e, lit, m.NewOptionalIntervalVar(s, size, e, lit, f"ti{u}_{a}_{b}"))


def hint_solution(graph: Graph, em: ExactModel, stages: Sequence[Sequence[Sequence[int]]],
                  serialize_links: bool) -> dict | None:
    """A complete model solution for ``stages`` (index stages per GPU), timed as soon as possible
    in model units; None when it does not fit the model (e.g. uses a GPU the model left out).
    Stages that are not candidates are split into one-operator stages."""
    if em.uniform:  # identical GPUs: relabel by first use along the topological order (step 4)
        first = {}
        for g, sts in enumerate(stages):
            for st in sts:
                for v in st:
                    first[g] = min(first.get(g, len(graph.ops)), graph.position[v])
        stages = [stages[g] for g in sorted(first, key=first.get)]
    if any(sts for sts in stages[em.n_gpu:]):
        return None
    index = {c: k for k, c in enumerate(em.cands)}
    seq: list[list[int]] = []  # per GPU, candidate ids in order
    for sts in stages[:em.n_gpu]:
        row = []
        for st in sts:
            key = tuple(sorted(st))
            if key in index:
                row.append(index[key])
            else:
                row.extend(index[(v,)] for v in st)
        seq.append(row)
    seq += [[] for _ in range(em.n_gpu - len(seq))]
    n = len(graph.ops)
    gpu_of = [-1] * n
    for g, row in enumerate(seq):
        for c in row:
            for v in em.cands[c]:
                gpu_of[v] = g
    start = [0] * n
    end = [0] * n
    done = [False] * n
    free = [0] * em.n_gpu
    nxt = [0] * em.n_gpu
    arrivals: dict[tuple, int] = {}
    link_busy: dict[tuple[int, int], list] = {}
    tr_start: dict[tuple, int] = {}
    left = sum(len(r) for r in seq)
    while left:
        progressed = False
        for g in range(em.n_gpu):
            while nxt[g] < len(seq[g]):
                c = seq[g][nxt[g]]
                members = em.cands[c]
                if not all(done[u] for v in members for u in graph.preds[v]):
                    break
                t = free[g]
                for v in members:
                    for u, e in graph.in_edges[v]:
                        a = gpu_of[u]
                        if a == g:
                            t = max(t, end[u])
                            continue
                        key = (u, a, g, ("edge", v)) if e.time is not None else (u, a, g, "tensor")
                        if key not in arrivals:
                            if e.time is not None:
                                dur = em.comm(u, v, a, g)
                            else:
                                dur = max(em.comm(u, w, a, g) for w, e2 in graph.out_edges[u]
                                          if e2.time is None and gpu_of[w] == g)
                            t0 = end[u]
                            if serialize_links and dur > 0:
                                t0 = int(_reserve(link_busy.setdefault((a, g), []), t0, dur))
                            tr_start[key] = t0
                            arrivals[key] = t0 + dur
                        t = max(t, arrivals[key])
                for v in members:
                    start[v] = t
                    end[v] = t + em.durs[c]
                    done[v] = True
                free[g] = t + em.durs[c]
                nxt[g] += 1
                left -= 1
                progressed = True
        if not progressed:
            return None  # the stage order deadlocks
    makespan = max(end) if n else 0
    if makespan > em.horizon:
        return None
    picked = {c for row in seq for c in row}
    return {"gpu_of": gpu_of, "start": start, "end": end, "picked": picked, "makespan": makespan,
            "transfers": tr_start, "transfer_end": arrivals,
            "stages": [[list(em.cands[c]) for c in row] for row in seq]}


def add_hint(em: ExactModel, sol: dict) -> None:
    """Hint every variable of the model (a partial hint leaves CP-SAT to complete it)."""
    m = em.model
    gpu_of = sol["gpu_of"]
    for v, g in enumerate(gpu_of):
        for k in range(em.n_gpu):
            m.AddHint(em.on[v][k], 1 if k == g else 0)
        m.AddHint(em.start[v], sol["start"][v])
        m.AddHint(em.end[v], sol["end"][v])
    for c, members in enumerate(em.cands if em.pick else ()):  # the order model has no pick or place of its own
        picked = c in sol["picked"]
        m.AddHint(em.pick[c], 1 if picked else 0)
        for k in range(em.n_gpu):
            m.AddHint(em.place[c][k], 1 if picked and gpu_of[members[0]] == k else 0)
    for (u, v), d in em.differ.items():
        m.AddHint(d, 1 if gpu_of[u] != gpu_of[v] else 0)
    m.AddHint(em.makespan, sol["makespan"])
    if em.idle is not None:
        for g in range(em.n_gpu):
            mine = [v for v, k in enumerate(gpu_of) if k == g]
            # max(start, ready) and max(gap, after): the first and last operators attain the minimum
            starts = [max(sol["start"][v], em.idle.ready[v]) if gpu_of[v] == g else em.horizon
                      for v in range(len(gpu_of))]
            gaps = [max(sol["makespan"] - sol["end"][v], em.idle.after[v]) if gpu_of[v] == g else em.horizon
                    for v in range(len(gpu_of))]
            m.AddHint(em.idle.used[g], 1 if mine else 0)
            m.AddHint(em.idle.first[g], min(starts) if mine else 0)
            m.AddHint(em.idle.tail[g], min(gaps) if mine else 0)
            for v in range(len(gpu_of)):
                m.AddHint(em.idle.starts[g][v], starts[v])
                m.AddHint(em.idle.gaps[g][v], gaps[v])
    for key, (s, size, e, lit, _) in em.transfers.items():
        present = key in sol["transfers"]
        m.AddHint(lit, 1 if present else 0)
        if present:
            m.AddHint(s, sol["transfers"][key])
            if e is not None:
                m.AddHint(size, sol["transfer_end"][key] - sol["transfers"][key])
                m.AddHint(e, sol["transfer_end"][key])
