"""Which segment of the plan ran each kernel of a replayed CUDA graph, and when each segment ran.

A graph replay launches all of its kernels from one ``cudaGraphLaunch``: the profiler can tie
none of them to the Python code that issued it, and the CUDA streams it reports for them need
not be the plan's streams.  What a kernel keeps is its name (and launch shape) and its start
and end on the GPU.  The stream-mode issue of the same program, profiled with one range per
segment, says which kernels each segment launches, in order; the graph holds exactly that
issue, captured.  Torch-free and pure: the caller turns profiler events into the inputs.

Steps of :func:`attribute_replay` (one replay):

1. Lanes (:func:`lanes_of`): per logical stream ``(device, stream)`` of the plan, its segments in
   issue order, each the sequence of its kernels' signatures; one more lane (key ``None``) for
   work outside every segment (the input copies before the fork), matched first on ties.  A
   segment depends on the segments whose events it waits for (:func:`segment_dependencies`).
2. Walk the replay's kernels in start order.  A kernel may be the next kernel of a lane when its
   signature is the lane's next expected one or one of the ``window`` after it (expected kernels
   the replay lacks are skipped and counted missing), it starts after the lane's previous kernel
   ended (one lane is one serial chain of the graph) and, when it opens a segment, after every
   segment that one depends on has ended.  Among such lanes take the one with fewest skipped
   kernels; among those (e.g. two identical branches) the one after which going on greedily over
   the next ``lookahead`` kernels skips or leaves unattributed fewest, then the lane whose
   previous kernel ran on the same CUDA stream, the lane whose previous kernel ended last (the
   tightest predecessor), then lane order.  When no lane qualifies, the dependency condition is
   dropped (counted ``relaxed``); when still none does, the kernel stays unattributed.
3. Per segment: start (its first kernel's start), end (its last kernel's end) and busy time (the
   union of its kernels' intervals).  Per lane: the sum of its segments' spans and its busy time
   (union of the lane's kernels).  :func:`coverage` sums the replays: kernel time attributed to
   segments, outside segments and to nothing, expected kernels missing, and per lane the median
   over replays of segment sum / busy time.

Times are in any one unit (the callers use ms); ``tolerance`` absorbs the profiler's rounding.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

__all__ = ["Coverage", "Lane", "LaneTime", "OUTSIDE", "ReplayAttribution", "ReplayKernel", "SegmentSpan",
           "attribute_replay", "coverage", "lanes_of", "segment_dependencies", "union_length"]

#: Owner of a kernel matched to the work outside every segment.
OUTSIDE = "outside"


@dataclass(frozen=True)
class ReplayKernel:
    """One GPU activity of a replay: its signature (name, with its launch shape when known)."""

    sig: Hashable
    start: float
    end: float
    stream: int = 0


@dataclass(frozen=True)
class Lane:
    """One logical stream of the plan (``key`` ``(device, stream)``; ``None``: outside segments)
    and its segments in issue order, each ``(segment id, kernel signatures in order)``."""

    key: Any
    segments: tuple[tuple[int, tuple[Hashable, ...]], ...]


@dataclass(frozen=True)
class SegmentSpan:
    segment: int
    start: float
    end: float
    busy: float        # union of its kernels' intervals
    kernels: int       # kernels attributed to it
    missing: int       # expected kernels the replay did not show

    @property
    def span(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class LaneTime:
    segments: float    # sum of its segments' spans
    busy: float        # union of its kernels' intervals


@dataclass
class ReplayAttribution:
    """One replay attributed: ``owner[i]`` is kernel ``i``'s segment id, :data:`OUTSIDE` or None."""

    owner: list[Any]
    spans: dict[int, SegmentSpan]
    lanes: dict[Any, LaneTime]
    total: float                  # time of every kernel of the replay (sum of durations)
    segments: float               # of those attributed to segments
    outside: float                # of those matched to the work outside segments
    missing: int                  # expected kernels not found
    relaxed: int                  # kernels matched only with the dependency condition dropped
    kernels: int = 0

    @property
    def unattributed(self) -> float:
        return max(0.0, self.total - self.segments - self.outside)


def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length covered by ``intervals`` (overlaps counted once)."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


# -- step 1: lanes ------------------------------------------------------------------------------------

def lanes_of(program, sequences: Mapping[int, Sequence[Hashable]], outside: Sequence[Hashable] = ()) -> list[Lane]:
    """The lanes of ``program`` (a :class:`hios.program.segmenting.ExecProgram`): each segment's
    kernel ``sequences`` (segment id -> signatures; absent: no kernel), grouped per logical stream
    in issue order; the ``outside`` kernels first as lane ``None``."""
    lanes: dict[Any, list] = {}
    for st in program.segments:
        lanes.setdefault((st.device, st.stream), []).append((st.id, tuple(sequences.get(st.id, ()))))
    out = [Lane(None, ((-1, tuple(outside)),))] if outside else []
    return out + [Lane(k, tuple(v)) for k, v in lanes.items()]


def segment_dependencies(program) -> dict[int, frozenset[int]]:
    """Segment id -> the segments whose events it waits for (through transfers too)."""
    recorder = {st.record: st for st in program.steps if st.record is not None}

    def producers(step, seen) -> set[int]:
        out: set[int] = set()
        waits = step.waits if step.kind == "segment" else (step.wait,)
        for e in waits:
            src = recorder.get(e)
            if src is None or src.id in seen:
                continue
            seen.add(src.id)
            out |= {src.id} if src.kind == "segment" else producers(src, seen)
        return out

    return {st.id: frozenset(producers(st, set())) for st in program.segments}


# -- step 2: walk the replay --------------------------------------------------------------------------

class _Walk:
    """The state of step 2: per lane its flattened (segment, signature) entries (fixed), the next
    expected entry, its previous kernel's end and stream, and each segment's end so far."""

    def __init__(self, lanes: Sequence[Lane], deps: Mapping[int, tuple[int, ...]], window: int, tolerance: float):
        self.deps, self.window, self.tol = deps, window, tolerance
        self.entries: list[list[tuple[int, Hashable]]] = []
        self.first: dict[int, int] = {}   # segment -> index of its first entry in its lane
        self.last: dict[int, int] = {}    # segment -> index of its last entry
        self.lane_of: dict[int, int] = {}
        for li, lane in enumerate(lanes):
            ent: list[tuple[int, Hashable]] = []
            for seg, sigs in lane.segments:
                if sigs:
                    self.lane_of[seg] = li
                    self.first[seg] = len(ent)
                    ent += [(seg, sig) for sig in sigs]
                    self.last[seg] = len(ent) - 1
            self.entries.append(ent)
        self.pos = [0] * len(lanes)
        self.last_end = [float("-inf")] * len(lanes)
        self.last_stream: list[Any] = [None] * len(lanes)
        self.seg_end: dict[int, float] = {}

    def clone(self) -> "_Walk":
        c = object.__new__(_Walk)
        c.__dict__.update(self.__dict__)
        c.pos, c.last_end, c.last_stream, c.seg_end = list(self.pos), list(self.last_end), list(self.last_stream), \
            dict(self.seg_end)
        return c

    def _deps_done(self, seg: int, start: float) -> bool:
        for d in self.deps.get(seg, ()):
            li = self.lane_of.get(d)
            if li is not None and self.pos[li] <= self.last[d]:
                return False  # not all of its kernels ran (or were skipped) yet
            if self.seg_end.get(d, float("-inf")) > start + self.tol:
                return False
        return True

    def candidates(self, k: ReplayKernel) -> list[tuple[tuple, int, int, bool]]:
        """``(score, lane, entry, strict)`` for every lane that ``k`` may continue (lower scores
        first); strict candidates when any exists, else those that drop the dependency condition."""
        for strict in (True, False):
            out = []
            for li, ent in enumerate(self.entries):
                if self.last_end[li] > k.start + self.tol:
                    continue
                for skip in range(self.window + 1):
                    j = self.pos[li] + skip
                    if j >= len(ent):
                        break
                    seg, sig = ent[j]
                    if sig != k.sig:
                        continue
                    opens = seg < 0 or self.first[seg] >= self.pos[li]  # none of its kernels matched yet
                    if strict and seg >= 0 and opens and not self._deps_done(seg, k.start):
                        break
                    out.append(((skip, self.last_stream[li] != k.stream, -self.last_end[li], li), li, j, strict))
                    break
            if out:
                return sorted(out)
        return []

    def take(self, k: ReplayKernel, li: int, j: int) -> int:
        """``k`` is entry ``j`` of lane ``li``; returns the expected kernels skipped."""
        skipped = j - self.pos[li]
        for seg, _ in self.entries[li][self.pos[li]:j]:  # a skipped segment ends where its lane stood
            self.seg_end.setdefault(seg, self.last_end[li])
        seg = self.entries[li][j][0]
        self.pos[li], self.last_end[li], self.last_stream[li] = j + 1, k.end, k.stream
        self.seg_end[seg] = max(self.seg_end.get(seg, k.end), k.end)
        return skipped

    def remaining(self) -> int:
        return sum(len(ent) - p for ent, p in zip(self.entries, self.pos))


def _rollout(walk: _Walk, kernels: Sequence[ReplayKernel], order: Sequence[int]) -> int:
    """Cost of going on greedily (best candidate each time) over ``order``: kernels skipped,
    left unattributed or matched without their dependencies."""
    cost = 0
    for i in order:
        c = walk.candidates(kernels[i])
        if not c:
            cost += 1
            continue
        _, li, j, strict = c[0]
        cost += walk.take(kernels[i], li, j) + (not strict)
    return cost


def attribute_replay(lanes: Sequence[Lane], kernels: Sequence[ReplayKernel],
                     deps: Mapping[int, Iterable[int]] | None = None, window: int = 3,
                     tolerance: float = 1e-3, lookahead: int = 12) -> ReplayAttribution:
    """Attribute the kernels of one replay to the segments of ``lanes`` (module steps 2-3).  When
    several lanes could take a kernel equally well (same signature, e.g. two identical branches),
    each is tried by going on greedily over the next ``lookahead`` kernels, and the one that
    leaves fewest kernels skipped or unattributed is taken."""
    walk = _Walk(lanes, {k: tuple(v) for k, v in (deps or {}).items()}, window, tolerance)
    owner: list[Any] = [None] * len(kernels)
    got: dict[int, list[int]] = {}
    missing = relaxed = 0
    order = sorted(range(len(kernels)), key=lambda i: (kernels[i].start, kernels[i].end, i))
    for n, i in enumerate(order):
        k = kernels[i]
        cands = walk.candidates(k)
        if not cands:
            continue
        pick = cands[0]
        tied = [c for c in cands if c[0][0] == pick[0][0]]  # as few skipped kernels
        if len(tied) > 1 and lookahead > 0:
            ahead = order[n + 1:n + 1 + lookahead]

            def cost(c):
                w = walk.clone()
                w.take(k, c[1], c[2])
                return _rollout(w, kernels, ahead)
            pick = min(tied, key=lambda c: (cost(c), c[0]))
        _, li, j, strict = pick
        missing += walk.take(k, li, j)
        relaxed += not strict
        seg = walk.entries[li][j][0]
        owner[i] = OUTSIDE if seg < 0 else seg
        got.setdefault(seg, []).append(i)
    missing += walk.remaining()
    return _summarise(lanes, kernels, owner, got, missing, relaxed)


# -- step 3: spans and coverage -----------------------------------------------------------------------

def _summarise(lanes, kernels, owner, got, missing, relaxed) -> ReplayAttribution:
    spans: dict[int, SegmentSpan] = {}
    expected = {seg: len(sigs) for lane in lanes for seg, sigs in lane.segments}
    for seg, idx in got.items():
        if seg < 0:
            continue
        ivs = [(kernels[i].start, kernels[i].end) for i in idx]
        spans[seg] = SegmentSpan(seg, min(a for a, _ in ivs), max(b for _, b in ivs), union_length(ivs), len(idx),
                                 max(0, expected.get(seg, 0) - len(idx)))
    lane_times = {}
    for lane in lanes:
        if lane.key is None:
            continue
        segs = [spans[s] for s, _ in lane.segments if s in spans]
        ivs = [(kernels[i].start, kernels[i].end) for s, _ in lane.segments for i in got.get(s, ())]
        lane_times[lane.key] = LaneTime(sum(s.span for s in segs), union_length(ivs))
    dur = [k.end - k.start for k in kernels]
    return ReplayAttribution(owner, spans, lane_times, sum(dur),
                             sum(d for d, o in zip(dur, owner) if o is not None and o != OUTSIDE),
                             sum(d for d, o in zip(dur, owner) if o == OUTSIDE), missing, relaxed, len(kernels))


@dataclass(frozen=True)
class Coverage:
    """How much of the replays' kernel time was attributed (sums over replays), and per lane the
    median over replays of its segments' summed spans and its busy time."""

    replays: int
    kernels: int
    total: float
    segments: float
    outside: float
    missing: int
    relaxed: int
    lanes: dict[Any, LaneTime]
    unmatched_kernels: int = 0

    @property
    def attributed(self) -> float:
        """Share of the replays' kernel time attributed to segments."""
        return self.segments / self.total if self.total > 0 else 0.0

    @property
    def unattributed(self) -> float:
        return max(0.0, self.total - self.segments - self.outside)

    def lane_ratio(self, key) -> float | None:
        t = self.lanes[key]
        return t.segments / t.busy if t.busy > 0 else None

    def worst_lane_deviation(self) -> float | None:
        """Largest |segment sum / busy time - 1| over the lanes (None: no lane ran a kernel)."""
        devs = [abs(r - 1.0) for r in (self.lane_ratio(k) for k in self.lanes) if r is not None]
        return max(devs) if devs else None

    def to_dict(self) -> dict:
        share = (lambda v: v / self.total if self.total > 0 else None)
        return {"replays": self.replays, "kernels": self.kernels, "kernel_ms": self.total,
                "attributed_share": share(self.segments), "outside_share": share(self.outside),
                "unattributed_share": share(self.unattributed), "unmatched_kernels": self.unmatched_kernels,
                "missing_kernels": self.missing, "relaxed_matches": self.relaxed,
                "streams": [{"device": k[0], "stream": k[1], "segments_ms": t.segments, "busy_ms": t.busy,
                             "segments_over_busy": self.lane_ratio(k)} for k, t in self.lanes.items()]}

    def line(self) -> str:
        """The coverage as one line of text."""
        pct = (lambda v: f"{100.0 * v / self.total:.1f} %" if self.total > 0 else "-")
        per = ", ".join(f"d{k[0]}s{k[1]} {t.segments:.4f}/{t.busy:.4f} ms" for k, t in self.lanes.items())
        text = (f"{self.kernels} kernels in {self.replays} replay(s): {pct(self.segments)} of kernel time attributed "
                f"to segments, {pct(self.outside)} outside segments (input copies), {pct(self.unattributed)} "
                f"unattributed; {self.missing} expected kernel(s) not found")
        if self.relaxed:
            text += f", {self.relaxed} matched without their dependencies"
        return text + (f"; per stream, segment sum / busy (median replay): {per}" if per else "")


def coverage(results: Sequence[ReplayAttribution]) -> Coverage:
    """Step 3 over several replays."""
    keys = list(dict.fromkeys(k for r in results for k in r.lanes))
    lanes = {}
    for k in keys:
        ts = [r.lanes[k] for r in results if k in r.lanes]
        lanes[k] = LaneTime(statistics.median(t.segments for t in ts), statistics.median(t.busy for t in ts))
    return Coverage(len(results), sum(r.kernels for r in results), sum(r.total for r in results),
                    sum(r.segments for r in results), sum(r.outside for r in results),
                    sum(r.missing for r in results), sum(r.relaxed for r in results), lanes,
                    sum(o is None for r in results for o in r.owner))
