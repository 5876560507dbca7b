"""Join absorption: a schedule pass that runs a join and its cheap inputs on the stream of its costly
input, so that segmenting cuts them into one segment (issue 21).  Off by default
(:class:`hios.options.ScheduleOptions` ``absorb_joins``, ``--absorb-joins FRACTION``).

A captured operator is already a whole chain (a separable-convolution branch is one operator); what
stays apart are the joins (e.g. NASNet's ~100 ``add`` operators, one kernel each) and their cheap
siblings (a pool, a small branch), each its own segment with its own events.  This pass gathers
them into one *group* per costly input, which :func:`hios.program.segmenting.stream_program` places
on one stream (step 1 reads ``schedule.meta["stream_chains"]``).

Steps of :func:`absorb_joins` (``schedule`` on any number of devices, ``fraction`` in (0, 1]):
  1. Positions.  Every operator's position is ``(device, stage, offset)``: ``offset`` 0 for an
     operator in its own stage; a group's members get negative offsets before the stage of its
     root (the costly operator the group grew from) and positive ones after it.
  2. Joins, in the graph's topological order.  An operator ``J`` with two or more inputs is
     absorbed when ``J`` and all of its inputs are on one device, and, with ``P`` the input of the
     costliest *branch* (an input's cost, or, when it ends a group, the whole group's cost; ties:
     the first in graph order), every other input ``c``
       * has ``J`` as its only consumer, is in no group, has all of its own inputs on the device,
       * costs at most ``fraction`` times ``P``'s branch;
     and ``P`` is in no group (a new group ``[P]`` rooted at ``P``'s stage) or ends one.
  3. Reorder.  The cheap inputs go in front of the group (offsets before its first member, in
     graph order), ``J`` after its last member.  The move is kept only if every edge between two
     operators of the device still goes from a smaller position to a larger one (so nothing
     depends on an operator of its own stage and nothing waits for a later stage).  Otherwise
     (a cheap input's own input is made in the root's stage or later) the cheap inputs go after
     the group's last member instead, right before ``J`` (counted ``cheap_after_root``); when that
     fails too the join is left as it was (counted ``order``).
  4. Stages.  Per device, in position order: for each original stage its members before the
     root's stage (one stage per offset: offset ``-d`` of every group rooted there), the stage
     itself without the moved operators, then one stage per positive offset; empty stages are
     dropped.  A group's members are thus in consecutive stages, one per stage, so step 1 of
     segmenting can keep them on one stream.  The simulator prices the new stages as they are:
     a cheap input ahead of its root's stage, the join after it.
  5. ``meta["stream_chains"]``: every group (``ops`` in stream order, its ``root``);
     ``meta["absorb_joins"]``: the
     fraction, the groups, the joins absorbed and the joins left out, by reason.

On that stream the group runs cheap inputs first, then ``P``, then the join: the root now also waits
for the cheap inputs' own inputs, which finish early in the usual case (a pool of an earlier
cell's output), and the join no longer waits for a second stream.  Cheap inputs placed after the
root wait for their own inputs there, which ends the root's segment: ``[..., P]``, ``[c, J]``.
A fraction near 1 turns whole fan-ins (an inception block's concatenation and its branches) into
one stream: the branches then no longer overlap.  The pass counts no segments (that is the
program's business): removing the moved operators from their stages can change the streams step 1
gives other operators, so on some schedules the program has more segments elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import HiosError
from ..graph import Graph
from ..schedule import Schedule

__all__ = ["CHAINS_KEY", "absorb_joins"]

#: The schedule's ``meta`` key that :func:`hios.program.segmenting.stream_program` reads.
CHAINS_KEY = "stream_chains"


@dataclass
class _Group:
    root: int
    device: int
    stage: int
    pre: list[int] = field(default_factory=list)    # stream order, before the root
    post: list[int] = field(default_factory=list)   # stream order, after the root

    def members(self) -> list[int]:
        return self.pre + [self.root] + self.post

    def position(self, k: int) -> tuple[int, int, int]:
        """Position of the ``k``-th member (in :meth:`members` order)."""
        return (self.device, self.stage, k - len(self.pre))


def _check_fraction(fraction) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise HiosError(f"absorb_joins must be a fraction in (0, 1], got {fraction!r}")
    return float(fraction)


def absorb_joins(graph: Graph, schedule: Schedule, fraction: float = 0.25) -> Schedule:
    """The schedule with joins absorbed (steps 1-5 of the module docstring); ``schedule`` itself is
    not changed.  Every operator keeps its device."""
    fraction = _check_fraction(fraction)
    stages = schedule.indexed(graph)
    pos: dict[int, tuple[int, int, int]] = {}
    for g, sts in enumerate(stages):
        for k, st in enumerate(sts):
            for i in st:
                pos[i] = (g, k, 0)
    if len(pos) != len(graph.ops):
        raise HiosError("absorb_joins needs a schedule that runs every operator once")
    group_of: dict[int, _Group] = {}
    groups: list[_Group] = []
    skipped = {"devices": 0, "consumers": 0, "cost": 0, "grouped": 0, "order": 0}
    absorbed = after = 0
    cost = graph.costs

    def branch(i: int) -> float:
        grp = group_of.get(i)
        return sum(cost[m] for m in grp.members()) if grp is not None and grp.members()[-1] == i else cost[i]

    for j in graph.topo:
        preds = graph.preds[j]
        if len(preds) < 2:
            continue
        dev = pos[j][0]
        if any(pos[p][0] != dev for p in preds):
            skipped["devices"] += 1
            continue
        p_root = min(preds, key=lambda p: (-branch(p), graph.position[p]))
        cheap = sorted((p for p in preds if p != p_root), key=lambda p: graph.position[p])
        if any(graph.succs[c] != [j] for c in cheap):
            skipped["consumers"] += 1
            continue
        if any(cost[c] > fraction * branch(p_root) for c in cheap):
            skipped["cost"] += 1
            continue
        grp = group_of.get(p_root)
        if any(c in group_of for c in cheap) or (grp is not None and grp.members()[-1] != p_root) \
                or any(pos[u][0] != dev for c in cheap for u in graph.preds[c]):
            skipped["grouped"] += 1
            continue
        fresh = grp is None
        if fresh:
            g0, k0, _ = pos[p_root]
            grp = _Group(p_root, g0, k0)
        for trial in (_Group(grp.root, grp.device, grp.stage, cheap + grp.pre, grp.post + [j]),
                      _Group(grp.root, grp.device, grp.stage, list(grp.pre), grp.post + cheap + [j])):
            new = {i: trial.position(k) for k, i in enumerate(trial.members())}
            if _ordered(graph, cheap + [j], new, pos):
                break
        else:
            skipped["order"] += 1
            continue
        after += bool(cheap) and trial.pre == grp.pre
        if fresh:
            groups.append(grp)
        grp.pre, grp.post = trial.pre, trial.post
        for i in grp.members():
            group_of[i] = grp
            pos[i] = new[i]
        absorbed += 1
    out = _restage(graph, stages, pos)
    meta = dict(schedule.meta)
    meta[CHAINS_KEY] = [{"ops": [graph.ops[i].name for i in grp.members()], "root": graph.ops[grp.root].name}
                        for grp in groups]
    meta["absorb_joins"] = {"fraction": fraction, "groups": len(groups), "joins": absorbed,
                            "cheap_after_root": after, "skipped": skipped}
    return Schedule(out, schedule.algorithm, meta)


def _ordered(graph: Graph, moved: list[int], new: dict[int, tuple], pos: dict[int, tuple]) -> bool:
    """Step 3: every edge of a moved operator to or from an operator of its device goes from a
    smaller position to a larger one."""
    def at(i):
        return new.get(i, pos[i])
    for v in moved:
        for u in graph.preds[v]:
            if at(u)[0] == at(v)[0] and not at(u) < at(v):
                return False
        for w in graph.succs[v]:
            if at(w)[0] == at(v)[0] and not at(v) < at(w):
                return False
    return True


def _restage(graph: Graph, stages: list[list[list[int]]], pos: dict[int, tuple]) -> list[list[tuple[str, ...]]]:
    """Step 4: per device, operators grouped by position, in position order."""
    out: list[list[tuple[str, ...]]] = []
    for g, sts in enumerate(stages):
        by: dict[tuple[int, int], list[int]] = {}
        for st in sts:  # an operator never leaves its device; the order inside a stage is kept
            for i in st:
                by.setdefault(pos[i][1:], []).append(i)
        out.append([tuple(graph.ops[i].name for i in by[key]) for key in sorted(by) if by[key]])
    return out
