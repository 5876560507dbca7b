"""How a schedule is cut into per-stream segments: a pure, torch-free function of (graph, schedule).

:func:`stream_program` turns a :class:`~hios.schedule.Schedule` (per device, an ordered list of stages)
into an :class:`ExecProgram`: which operators form which segment on which stream of which device,
which events each segment waits for and records, which values are copied between memory spaces,
and one issue order in which a single host thread can launch everything without ever waiting.
Every executor (the single-process one in :mod:`hios.runtime.local.executor`, a distributed one) runs
the same program.

Steps:
  1. Streams.  Walk each device's stages in order.  Every operator of a stage gets a stream of
     its own, costliest operator first: it continues a stream whose last operator is one of its
     predecessors (the first such predecessor in the graph's order) when no other operator of the
     stage took that stream, else the least-used free stream (fewest operators, then lowest
     index).  So the costliest branch tends to stay on stream 0, which the executor can run at
     high priority.  A schedule may name *stream chains* (``meta["stream_chains"]``, operators
     in stream order, each chain with its root, e.g. from :mod:`hios.schedulers.absorb_joins`):
     their operators are placed first in their stages, each continuing the previous member's
     stream when it is free, a chain's first member the stream of one of the root's inputs (else
     of another member's).  The runtime cuts the captured graph, whose operators carry no cost,
     so the root is named rather than found by cost.  A device has as many
     streams as its widest stage.  :func:`naive_streams` is the other way to place operators on
     streams (no stages: each branch on its own stream), used as a baseline.
  2. Dependencies.  Graph edges, plus, with ``sync="stage"``, every operator of stage k of a
     device before every operator of stage k+1 of that device (the simulator's stage barrier);
     with ``sync="data"`` (default) only the edges: stages just fix the issue order of each stream.
  3. Segments.  On each stream, consecutive operators form one segment; a segment ends before an
     operator that waits for another stream or device, and after an operator whose value another
     stream or device reads.  Segments are thus as long as the synchronisation allows.
     3b. With ``merge=True`` a segment also runs on past a synchronisation point that orders
     nothing new: waiting at the segment's start for a value that the start already (transitively)
     follows, or recording the segment's event after an operator that every reader on another
     stream already follows.  Fewer, longer segments (Inductor fuses across them), fewer events,
     and the program still orders the operators exactly as the plan does.
  4. Events and transfers.  A segment whose operators feed another stream records one event at
     its end.  A consumer on the same memory space (same physical device, possibly another
     logical one) waits for that event.  A consumer in another memory space reads a copy: one
     :class:`TransferStep` per (producer operator, destination memory space) waits for the
     producer's event, copies, and records its own event, which the consumers wait for.
  5. Issue order.  A topological order of segments and transfers (earliest stage first, then
     device, then stream), so every event is recorded before anything waits for it.
     :func:`verify` proves from the program alone that every graph edge is covered by stream
     order, events and transfers.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Hashable, Sequence

from ..errors import HiosError
from ..graph import Graph
from ..schedule import Schedule

__all__ = ["ExecProgram", "ProgramError", "SYNC_MODES", "SegmentStep", "TransferStep", "assign_streams",
           "naive_streams", "stream_program", "verify"]

SYNC_MODES = ("data", "stage")


class ProgramError(HiosError):
    """A schedule cannot be turned into an executable program (missing operator, deadlock...)."""


@dataclass(frozen=True)
class SegmentStep:
    id: int                     # index in ExecProgram.steps
    device: int                 # logical device (the schedule's GPU index)
    stream: int                 # stream index on that device
    ops: tuple[str, ...]        # operators in execution order
    waits: tuple[int, ...]      # event ids to wait for before the first operator
    record: int | None          # event id recorded after the last operator (None: nobody outside waits)
    reads: tuple[str, ...]      # operators outside the segment whose values it reads
    exports: tuple[str, ...]    # operators of the segment whose values are read outside it
    stage: int                  # stage index (on its device) of the first operator

    kind = "segment"


@dataclass(frozen=True)
class TransferStep:
    id: int
    op: str                     # producer operator; all of its values that ``dst`` needs move
    src: int                    # logical device of the producer
    dst: int                    # a logical device of the destination memory space (the first consumer's)
    wait: int                   # event recorded after the producer's segment
    record: int                 # event recorded after the copy
    stage: int

    kind = "transfer"


@dataclass
class ExecProgram:
    devices: int                               # logical devices
    streams: list[int]                         # streams per logical device
    steps: list                                # SegmentStep | TransferStep, in issue order
    events: int                                # number of event ids used
    memory: list[Hashable]                     # memory space of each logical device
    segment_of: dict[str, int] = field(default_factory=dict)   # operator -> step id of its segment
    placement: dict[str, tuple[int, int]] = field(default_factory=dict)  # operator -> (device, stream)
    sync: str = "data"

    @property
    def segments(self) -> list[SegmentStep]:
        return [s for s in self.steps if s.kind == "segment"]

    @property
    def transfers(self) -> list[TransferStep]:
        return [s for s in self.steps if s.kind == "transfer"]

    def summary(self) -> dict:
        segs = self.segments
        return {"devices": self.devices, "streams": list(self.streams), "segments": len(segs),
                "transfers": len(self.transfers), "events": self.events, "sync": self.sync,
                "ops_per_segment_max": max((len(s.ops) for s in segs), default=0)}

    def to_dict(self) -> dict:
        out = []
        for s in self.steps:
            if s.kind == "segment":
                out.append({"kind": "segment", "device": s.device, "stream": s.stream, "ops": list(s.ops),
                            "waits": list(s.waits), "record": s.record, "stage": s.stage})
            else:
                out.append({"kind": "transfer", "op": s.op, "src": s.src, "dst": s.dst, "wait": s.wait,
                            "record": s.record})
        return {**self.summary(), "steps": out}


# --------------------------------------------------------------------------- step 1: streams
def _check_schedule(graph: Graph, schedule: Schedule) -> list[list[list[int]]]:
    seen: dict[int, int] = {}
    stages = []
    for g, sts in enumerate(schedule.stages):
        gl = []
        for st in sts:
            idx = []
            for name in st:
                i = graph.index.get(name)
                if i is None:
                    raise ProgramError(f"schedule names operator {name!r} (GPU {g}) that the model does not have")
                if i in seen:
                    raise ProgramError(f"operator {name!r} is scheduled more than once")
                seen[i] = g
                idx.append(i)
            if idx:
                gl.append(idx)
        stages.append(gl)
    if len(seen) < len(graph.ops):
        missing = [op.name for i, op in enumerate(graph.ops) if i not in seen]
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ProgramError(f"schedule misses operator {missing[0]!r}{more} of the model")
    anc = graph.ancestors_mask()
    for g, sts in enumerate(stages):
        for st in sts:
            mask = 0
            for i in st:
                mask |= 1 << i
            for i in st:
                if anc[i] & mask:
                    j = next(j for j in st if anc[i] >> j & 1)
                    raise ProgramError(f"operators {graph.ops[j].name!r} and {graph.ops[i].name!r} share a stage "
                                       f"on GPU {g} but one depends on the other")
    return stages


def assign_streams(graph: Graph, stages: list[list[list[int]]],
                   chains: Sequence[tuple[Sequence[int], int | None]] = ()) -> list[tuple[int, int, int]]:
    """Step 1: ``placement[i] = (device, stream, stage)`` for every operator index ``i``.
    ``chains`` (each: operator indices in stream order, and its root or None) are placed first in
    their stages."""
    place: list[tuple[int, int, int]] = [(-1, -1, -1)] * len(graph.ops)
    prev_in_chain, chain_pref = _chain_hints(graph, chains)
    for g, sts in enumerate(stages):
        width = max((len(st) for st in sts), default=0)
        last: list[int] = [-1] * width      # last operator issued on each stream
        used: list[int] = [0] * width       # operators on each stream so far
        for k, st in enumerate(sts):
            free = set(range(width))
            chosen: dict[int, int] = {}
            order = sorted(st, key=lambda i: -graph.ops[i].cost)  # costliest first (stable)
            if chains:
                _place_chains(g, order, place, last, free, chosen, prev_in_chain, chain_pref)
            for i in order:  # continue a predecessor's stream where possible
                if i in chosen:
                    continue
                for p in graph.preds[i]:
                    s = next((s for s in free if last[s] == p), None)
                    if s is not None:
                        chosen[i] = s
                        free.discard(s)
                        break
            for i in order:
                if i not in chosen:
                    s = min(free, key=lambda s: (used[s], s))
                    chosen[i] = s
                    free.discard(s)
            for i in st:
                s = chosen[i]
                last[s] = i
                used[s] += 1
                place[i] = (g, s, k)
    return place


def _chain_hints(graph: Graph, chains) -> tuple[dict[int, int], dict[int, list[int]]]:
    """Per chain member its previous member; per chain head the operators whose stream it prefers
    to continue: the inputs of the chain's members from outside it, its root's first (then the
    costliest member's)."""
    prev: dict[int, int] = {}
    pref: dict[int, list[int]] = {}
    for chain, root in chains:
        for a, b in zip(chain, chain[1:]):
            prev[b] = a
        if chain:
            inside = set(chain)
            members = sorted(chain, key=lambda i: (i != root, -graph.ops[i].cost))
            pref[chain[0]] = [p for m in members for p in graph.preds[m] if p not in inside]
    return prev, pref


def _place_chains(g: int, order, place, last, free, chosen, prev_in_chain, chain_pref) -> None:
    """Step 1 with chains: a member continues its previous member's stream (placed earlier on this
    device) when that is free; a chain's head the stream of one of the chain's inputs (costliest
    member's first) when free."""
    for i in order:
        p = prev_in_chain.get(i)
        if p is not None and place[p][0] == g and place[p][1] in free:
            chosen[i] = place[p][1]
            free.discard(chosen[i])
    for i in order:
        if i in chosen or i not in chain_pref:
            continue
        s = next((s for p in chain_pref[i] for s in sorted(free) if last[s] == p), None)
        if s is not None:
            chosen[i] = s
            free.discard(s)


def naive_streams(graph: Graph, streams: int = 4) -> Schedule:
    """The naive baseline placement on one device, as a one-operator-per-stage schedule plus a
    stream map in ``meta['streams']``: in topological order, an operator continues its first
    predecessor's stream if that predecessor is still the last operator there, else it takes the
    least-used of ``streams`` streams.  Run it with ``stream_program(..., streams=meta['streams'])``."""
    if streams < 1:
        raise HiosError(f"streams must be at least 1, got {streams}")
    last = [-1] * streams
    used = [0] * streams
    smap: dict[str, int] = {}
    for i in graph.topo:
        preds = graph.preds[i]
        s = None
        if preds and preds[0] in last:
            s = last.index(preds[0])
        if s is None:
            s = min(range(streams), key=lambda t: (used[t], t))
        last[s] = i
        used[s] += 1
        smap[graph.ops[i].name] = s
    sched = Schedule.from_indices(graph, [[[i] for i in graph.topo]], "naive-streams")
    sched.meta["streams"] = smap
    return sched


# --------------------------------------------------------------------------- steps 1-5
def stream_program(graph: Graph, schedule: Schedule, *, memory: Sequence[Hashable] | None = None,
                   sync: str = "data", streams: dict[str, int] | None = None,
                   merge: bool = False) -> ExecProgram:
    """Cut ``schedule`` into segments (steps 1-5 of the module docstring).

    ``memory[g]`` names the memory space of logical device ``g`` (default: each its own); logical
    devices sharing one (e.g. two logical devices on ``cuda:0``) exchange values without copies.
    ``streams`` overrides step 1 with an explicit ``operator -> stream`` map (the naive baseline).
    ``merge`` lets a segment run on past a synchronisation point that adds no ordering (step 3b).
    """
    if sync not in SYNC_MODES:
        raise HiosError(f"unknown sync mode {sync!r}; choose from {', '.join(SYNC_MODES)}")
    stages = _check_schedule(graph, schedule)
    mem = _memory_spaces(len(stages), memory)
    place = _placement(graph, stages, streams, schedule.meta.get("stream_chains"))
    seq = _stream_sequences(stages, place)
    _check_stream_order(graph, place, seq)
    deps = _dependencies(graph, stages, place, sync)
    stream_of = [p[:2] for p in place]
    if merge:
        segs = _cut_merged(seq, deps, stream_of, mem, place)
    else:
        segs = _cut_segments(seq, deps, stream_of)
    seg_of = [-1] * len(graph.ops)
    for sid, ops in enumerate(segs):
        for i in ops:
            seg_of[i] = sid
    seg_preds, xfer_needs = _segment_needs(graph, segs, seg_of, deps, stream_of, place, mem)
    plan = _issue_order(graph, segs, seg_of, seg_preds, xfer_needs, stream_of, place, seq)
    prog = _emit(graph, segs, seg_of, stream_of, place, plan, mem, sync)
    verify(graph, prog)
    return prog


def _memory_spaces(ndev: int, memory: Sequence[Hashable] | None) -> list[Hashable]:
    mem = list(range(ndev)) if memory is None else list(memory)
    if len(mem) < ndev:
        raise ProgramError(f"schedule uses {ndev} devices but only {len(mem)} memory spaces were given")
    return mem[:ndev]


def _placement(graph: Graph, stages: list[list[list[int]]], streams: dict[str, int] | None,
               chains=None) -> list[tuple[int, int, int]]:
    """Step 1 (with the schedule's stream chains, if any), or the explicit stream map that overrides it."""
    place = assign_streams(graph, stages, _chain_indices(graph, chains))
    if streams is None:
        return place
    for name in streams:
        if name not in graph.index:
            raise ProgramError(f"stream map names unknown operator {name!r}")
    return [(g, int(streams.get(graph.ops[i].name, 0)), k) for i, (g, s, k) in enumerate(place)]


def _chain_indices(graph: Graph, chains) -> list[tuple[list[int], int | None]]:
    """``schedule.meta["stream_chains"]`` as operator indices: each chain a list of operator names
    in stream order, or ``{"ops": [...], "root": name}`` (the member whose inputs' stream the
    chain continues)."""
    if chains is None:
        return []
    bad = ProgramError("schedule meta 'stream_chains' must be a list of chains, each a list of operator names "
                       "or an object with 'ops' (a list of operator names) and 'root'")
    if not isinstance(chains, (list, tuple)):
        raise bad

    def index(name) -> int:
        i = graph.index.get(name) if isinstance(name, str) else None
        if i is None:
            raise ProgramError(f"schedule meta 'stream_chains' names unknown operator {name!r}")
        return i
    out = []
    for chain in chains:
        ops, root = (chain.get("ops"), chain.get("root")) if isinstance(chain, dict) else (chain, None)
        if not isinstance(ops, (list, tuple)):
            raise bad
        idx = [index(n) for n in ops]
        r = index(root) if root is not None else None
        if r is not None and r not in idx:
            raise ProgramError(f"schedule meta 'stream_chains': root {root!r} is not in its chain")
        out.append((idx, r))
    return out


def _stream_sequences(stages: list[list[list[int]]], place) -> dict[tuple[int, int], list[int]]:
    """Operators of each (device, stream) in stage order (then order inside the stage)."""
    seq: dict[tuple[int, int], list[int]] = {}
    for sts in stages:
        for st in sts:
            for i in st:
                seq.setdefault(place[i][:2], []).append(i)
    return seq


def _check_stream_order(graph: Graph, place, seq: dict[tuple[int, int], list[int]]) -> None:
    pos_in_stream = {i: k for ops in seq.values() for k, i in enumerate(ops)}
    for e in graph.edges:
        u, v = graph.index[e.src], graph.index[e.dst]
        if place[u][:2] == place[v][:2] and pos_in_stream[u] > pos_in_stream[v]:
            raise ProgramError(f"schedule deadlocks: on GPU {place[v][0]} {e.dst!r} (stage {place[v][2]}) is "
                               f"ordered before its input {e.src!r} (stage {place[u][2]})")


def _dependencies(graph: Graph, stages: list[list[list[int]]], place, sync: str) -> list[list[int]]:
    """Step 2: graph edges, plus stage barriers across streams with ``sync="stage"``."""
    deps: list[list[int]] = [list(graph.preds[i]) for i in range(len(graph.ops))]
    if sync == "stage":
        for sts in stages:
            for a, b in zip(sts, sts[1:]):
                for i in b:
                    deps[i].extend(j for j in a if place[j][:2] != place[i][:2])
    return deps


def _cut_segments(seq: dict[tuple[int, int], list[int]], deps: list[list[int]], stream_of) -> list[list[int]]:
    """Step 3: break before an operator that waits for another stream, after one another stream reads."""
    feeds_out = [False] * len(deps)  # value (or completion) needed by another stream
    for i in range(len(deps)):
        for j in deps[i]:
            if stream_of[j] != stream_of[i]:
                feeds_out[j] = True
    segs: list[list[int]] = []
    for key in sorted(seq):
        cur: list[int] = []
        for i in seq[key]:
            waits = any(stream_of[j] != key for j in deps[i])
            if cur and waits:
                segs.append(cur)
                cur = []
            cur.append(i)
            if feeds_out[i]:
                segs.append(cur)
                cur = []
        if cur:
            segs.append(cur)
    return segs


def _plan_ancestors(seq: dict[tuple[int, int], list[int]], deps: list[list[int]]) -> list[int] | None:
    """Bit masks of every operator's strict ancestors in the plan order (dependencies plus stream
    order); None when that order has a cycle (step 5 then reports the deadlock)."""
    n = len(deps)
    preds = [set(d) for d in deps]
    for ops in seq.values():
        for a, b in zip(ops, ops[1:]):
            preds[b].add(a)
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [len(p) for p in preds]
    for v, ps in enumerate(preds):
        for u in ps:
            succ[u].append(v)
    ready = [v for v in range(n) if indeg[v] == 0]
    anc = [0] * n
    done = 0
    while ready:
        u = ready.pop()
        done += 1
        for v in succ[u]:
            anc[v] |= anc[u] | (1 << u)
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    return anc if done == n else None


def _cut_merged(seq, deps: list[list[int]], stream_of, mem, place) -> list[list[int]]:
    """Step 3b (``merge=True``): a segment runs on past a synchronisation point when that adds no
    ordering to the plan order P (dependencies plus stream order).  The next operator ``n`` joins
    the segment that starts at ``s0`` when every dependency of ``n`` on another stream of the same
    memory space is already an ancestor of ``s0`` in P (waiting for it at ``s0`` delays nothing),
    and ``n`` is an ancestor in P of every operator on another stream that reads a value of the
    segment so far (recording the segment's event after ``n`` delays nothing).  The program then
    orders the operators exactly as P does, so it cannot deadlock where P does not."""
    anc = _plan_ancestors(seq, deps)
    if anc is None:
        return _cut_segments(seq, deps, stream_of)
    readers: list[list[int]] = [[] for _ in deps]  # operators on other streams that depend on i
    for i, ds in enumerate(deps):
        for j in ds:
            if stream_of[j] != stream_of[i]:
                readers[j].append(i)
    segs: list[list[int]] = []
    for key in sorted(seq):
        cur: list[int] = []
        pending: set[int] = set()  # readers of the current segment on other streams
        for n in seq[key]:
            if cur and not _joins(n, cur[0], pending, deps, stream_of, place, mem, anc):
                segs.append(cur)
                cur, pending = [], set()
            cur.append(n)
            pending.update(readers[n])
        if cur:
            segs.append(cur)
    return segs


def _joins(n: int, s0: int, pending: set[int], deps, stream_of, place, mem, anc: list[int]) -> bool:
    for j in deps[n]:
        if stream_of[j] == stream_of[n]:
            continue
        if mem[place[j][0]] != mem[place[n][0]] or not anc[s0] >> j & 1:
            return False
    return all(anc[c] >> n & 1 for c in pending)


def _segment_needs(graph: Graph, segs, seg_of, deps, stream_of, place, mem):
    """Step 4: per segment, the segments it waits for and the (producer, memory space) copies it reads."""
    seg_preds: list[set[int]] = [set() for _ in segs]
    xfer_needs: list[set[tuple[int, Hashable]]] = [set() for _ in segs]
    for sid, ops in enumerate(segs):
        g = place[ops[0]][0]
        for i in ops:
            for j in deps[i]:
                if seg_of[j] == sid or stream_of[j] == stream_of[i]:
                    continue
                if mem[place[j][0]] == mem[g] or j not in graph.preds[i]:
                    seg_preds[sid].add(seg_of[j])
                else:
                    xfer_needs[sid].add((j, mem[g]))
    return seg_preds, xfer_needs


@dataclass
class _IssuePlan:
    order: list[int]                       # node ids (segments 0..n_seg-1, then transfers) in issue order
    preds_of: list[set[int]]               # node -> nodes it must follow
    xkeys: list[tuple[int, Hashable]]      # transfer t -> (producer op, memory space)
    xfer_dst: dict[tuple[int, Hashable], int]


def _issue_order(graph: Graph, segs, seg_of, seg_preds, xfer_needs, stream_of, place, seq) -> _IssuePlan:
    """Step 5: a topological order of segments and transfers (earliest stage, device, stream first)."""
    pos_in_stream = {i: k for ops in seq.values() for k, i in enumerate(ops)}
    xfer_ids: dict[tuple[int, Hashable], int] = {}
    xfer_dst: dict[tuple[int, Hashable], int] = {}
    for sid, need in enumerate(xfer_needs):
        for key in sorted(need, key=lambda k: (k[0], str(k[1]))):
            if key not in xfer_ids:
                xfer_ids[key] = len(xfer_ids)
                xfer_dst[key] = place[segs[sid][0]][0]
    xkeys = list(xfer_ids)
    n_seg = len(segs)
    preds_of: list[set[int]] = [set(p) for p in seg_preds] + [{seg_of[j]} for j, _ in xkeys]
    for sid, need in enumerate(xfer_needs):
        preds_of[sid] |= {n_seg + xfer_ids[k] for k in need}
    order_key = []
    for ops in segs:
        g, s, k = place[ops[0]]
        order_key.append((k, g, s, graph.position[ops[0]]))
    stream_prev: dict[tuple[int, int], int] = {}
    for sid in sorted(range(n_seg), key=lambda x: (stream_of[segs[x][0]], pos_in_stream[segs[x][0]])):
        key = stream_of[segs[sid][0]]
        if key in stream_prev:
            preds_of[sid].add(stream_prev[key])
        stream_prev[key] = sid
    for j, _ in xkeys:
        order_key.append(order_key[seg_of[j]])
    order = _topological(preds_of, order_key)
    if len(order) < len(preds_of):
        placed = set(order)
        stuck = next(v for v in range(n_seg) if v not in placed)
        ops = segs[stuck]
        g, s, k = place[ops[0]]
        raise ProgramError(f"schedule deadlocks: stage order on GPU {g} contradicts the dependencies "
                           f"(operator {graph.ops[ops[0]].name!r} of stage {k} can never start)")
    return _IssuePlan(order, preds_of, xkeys, xfer_dst)


def _topological(preds_of: list[set[int]], order_key: list) -> list[int]:
    """Kahn's algorithm, smallest ``order_key`` first; shorter than the node count on a cycle."""
    succ: list[list[int]] = [[] for _ in preds_of]
    indeg = [len(p) for p in preds_of]
    for v, ps in enumerate(preds_of):
        for u in ps:
            succ[u].append(v)
    heap = [(order_key[v], v) for v in range(len(preds_of)) if indeg[v] == 0]
    heapq.heapify(heap)
    order: list[int] = []
    while heap:
        _, u = heapq.heappop(heap)
        order.append(u)
        for v in succ[u]:
            indeg[v] -= 1
            if indeg[v] == 0:
                heapq.heappush(heap, (order_key[v], v))
    return order


def _emit(graph: Graph, segs, seg_of, stream_of, place, plan: _IssuePlan, mem, sync: str) -> ExecProgram:
    """Events (one per segment something on another stream waits for, one per transfer) and the steps."""
    n_seg = len(segs)
    order, preds_of, xkeys = plan.order, plan.preds_of, plan.xkeys
    needed = set()
    for v in range(n_seg):
        needed |= {u for u in preds_of[v] if u < n_seg and stream_of[segs[u][0]] != stream_of[segs[v][0]]}
    needed |= {seg_of[j] for j, _ in xkeys}
    event_of_seg: dict[int, int] = {}
    nev = 0
    for u in order:
        if u < n_seg and u in needed:
            event_of_seg[u] = nev
            nev += 1
    event_of_xfer = {}
    for u in order:
        if u >= n_seg:
            event_of_xfer[u - n_seg] = nev
            nev += 1
    new_id = {u: k for k, u in enumerate(order)}
    names = [op.name for op in graph.ops]
    steps = []
    for u in order:
        if u < n_seg:
            ops = segs[u]
            g, s, k = place[ops[0]]
            inside = set(ops)
            waits = sorted({event_of_seg[p] if p < n_seg else event_of_xfer[p - n_seg]
                            for p in preds_of[u] if p >= n_seg or stream_of[segs[p][0]] != (g, s)})
            reads = sorted({j for i in ops for j in graph.preds[i] if j not in inside}, key=lambda j: graph.position[j])
            exports = [i for i in ops if any(seg_of[c] != u for c in graph.succs[i])]
            steps.append(SegmentStep(new_id[u], g, s, tuple(names[i] for i in ops), tuple(waits),
                                     event_of_seg.get(u), tuple(names[j] for j in reads),
                                     tuple(names[i] for i in exports), k))
        else:
            t = u - n_seg
            j, _m = xkeys[t]
            steps.append(TransferStep(new_id[u], names[j], place[j][0], plan.xfer_dst[xkeys[t]],
                                      event_of_seg[seg_of[j]], event_of_xfer[t], place[j][2]))
    nstreams = [0] * len(mem)
    for g, s, _ in place:
        nstreams[g] = max(nstreams[g], s + 1)
    return ExecProgram(len(mem), nstreams, steps, nev, mem,
                       {names[i]: new_id[seg_of[i]] for i in range(len(names))},
                       {names[i]: (place[i][0], place[i][1]) for i in range(len(names))}, sync)


def verify(graph: Graph, prog: ExecProgram) -> None:
    """Check from the program alone that it is safe to issue: each event is recorded before it is
    waited for, and every graph edge u -> v is ordered by stream order, events and (across memory
    spaces) a transfer of u's value to v's memory space.  Raises :class:`ProgramError` otherwise."""
    n = len(prog.steps)
    after = [0] * n          # bit mask of the steps each step happens after (transitively, itself incl.)
    last_on: dict[tuple[int, int], int] = {}
    recorded: dict[int, int] = {}
    xfer_to: dict[tuple[str, Hashable], int] = {}
    for k, st in enumerate(prog.steps):
        if st.id != k:
            raise ProgramError(f"step {k} has id {st.id}")
        m = 1 << k
        waits = st.waits if st.kind == "segment" else (st.wait,)
        for e in waits:
            if e not in recorded:
                raise ProgramError(f"step {k} waits for event {e} before anything records it")
            m |= after[recorded[e]]
        if st.kind == "segment":
            key = (st.device, st.stream)
            if key in last_on:
                m |= after[last_on[key]]
            last_on[key] = k
            if st.record is not None:
                recorded[st.record] = k
        else:
            recorded[st.record] = k
            xfer_to[(st.op, prog.memory[st.dst])] = k
        after[k] = m
    seg = prog.segment_of
    for e in graph.edges:
        a, b = seg[e.src], seg[e.dst]
        sa, sb = prog.steps[a], prog.steps[b]
        if a == b:
            if sa.ops.index(e.src) > sa.ops.index(e.dst):
                raise ProgramError(f"{e.dst!r} runs before its input {e.src!r} inside one segment")
            continue
        if not after[b] >> a & 1:
            raise ProgramError(f"nothing orders {e.dst!r} after its input {e.src!r}")
        if prog.memory[sa.device] != prog.memory[sb.device]:
            t = xfer_to.get((e.src, prog.memory[sb.device]))
            if t is None or not after[b] >> t & 1:
                raise ProgramError(f"value of {e.src!r} is not copied to {e.dst!r}'s device before use")
