"""Intra-GPU step of HIOS: a sliding window that groups independent operators of one GPU into
stages (run concurrently on separate streams).

Steps, for a schedule whose per-GPU operator order is already fixed (the HIOS mappers give each
GPU its operators in latest-start-time order, or in list-scheduling order when that is faster):
  1. Compute the latency of the whole multi-GPU schedule.
  2. For each GPU in turn, walk its stages from the first: at position ``p`` the window is the
     stages ``p .. p + window - 1``.  Candidates are stage ``p`` united with any non-empty subset
     of the other stages of the window such that the group holds at most ``streams`` operators,
     they are mutually independent, and no operator moved forward depends on an operator of a
     stage it jumps over.
  3. Evaluate each candidate on the whole multi-GPU schedule (all GPUs at once: a group on one
     GPU changes when its outputs reach the others).  A candidate whose stage order deadlocks
     across GPUs is rejected.  Keep the candidate of lowest latency provided it does not raise
     the current latency (the first, smallest such candidate wins ties); then move to ``p + 1``.
  4. Check the result with the real simulator; should it be slower than the input (it cannot,
     except through the documented transfer-dedup difference of the fast evaluator), return the
     input unchanged.

``window`` (default :data:`DEFAULT_WINDOW`) and ``streams`` (default :data:`DEFAULT_STREAMS`)
bound the work: each position tries at most ``2 ** (window - 1) - 1`` candidates.  Every
function here and in the HIOS mappers takes ``None`` for "the module constant at call time", so
the constants may be changed (e.g. from measurements) after import.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from ..simulator import ScheduleError, Simulator
from ._fastsim import FastTimer, check_intra_options

#: Stages looked at together (the current one and the next ``DEFAULT_WINDOW - 1``).
#: 4 and 4 (not the research code's 2 and 2) from measurements on an H100 (docs/results.md,
#: runtime section): 2/2 ran 5-70 % slower than 4/4 at 224-299 px; from 1280 px every setting
#: was within 1-3 %; 6/6 gained at most 3 % at nearly 5x the candidates.
DEFAULT_WINDOW = 4
#: Most operators grouped into one stage (streams of one GPU used at once).
DEFAULT_STREAMS = 4


def intra_options(window: int | None = None, streams: int | None = None) -> tuple[int, int]:
    """The window and stream count to use (None: the module constant now); checked."""
    w = DEFAULT_WINDOW if window is None else window
    s = DEFAULT_STREAMS if streams is None else streams
    check_intra_options(w, s)
    return w, s


def improve_stages(timer: FastTimer, stages: list[list[list[int]]], window: int | None = None,
                   streams: int | None = None, anc: list[int] | None = None,
                   latency: float | None = None) -> tuple[list[list[list[int]]], float]:
    """Steps 1-3 on index stages; returns the new stages (the input is not modified) and the
    latency the fast evaluator gives them."""
    window, streams = intra_options(window, streams)
    stages = [list(list(st) for st in sts) for sts in stages]
    cur = timer.latency(stages) if latency is None else latency
    if cur is None:
        raise ScheduleError("intra-GPU step: the input schedule deadlocks")
    if window < 2 or streams < 2:
        return stages, cur
    if anc is None:
        anc = timer.graph.ancestors_mask()
    for gi in range(len(stages)):
        p = 0
        while p < len(stages[gi]):
            sts = stages[gi]
            base = sts[p]
            room = streams - len(base)
            if room <= 0:
                p += 1
                continue
            others = list(range(p + 1, min(p + window, len(sts))))
            best = None
            best_lat = cur
            for size in range(1, len(others) + 1):
                for pick in combinations(others, size):
                    group = _group(sts, p, pick, room, anc)
                    if group is None:
                        continue
                    picked = set(pick)
                    cand = sts[:p] + [group] + [sts[q] for q in range(p + 1, len(sts)) if q not in picked]
                    stages[gi] = cand
                    lat = timer.latency(stages, best_lat)
                    stages[gi] = sts
                    if lat is not None and (lat < best_lat or (best is None and lat <= cur)):
                        best, best_lat = cand, lat
            if best is not None:
                stages[gi] = best
                cur = best_lat
            p += 1
    return stages, cur


def _group(sts: list[list[int]], p: int, pick: Sequence[int], room: int, anc: list[int]) -> list[int] | None:
    """Stage ``p`` plus the stages ``pick`` if they may form one stage, else None."""
    moved = [v for q in pick for v in sts[q]]
    if len(moved) > room:
        return None
    group = sts[p] + moved
    mask = 0
    for v in group:
        mask |= 1 << v
    for v in group:
        if anc[v] & mask:
            return None  # two members depend on each other
    # An operator moved forward must not depend on a stage it jumps over (that deadlocks).
    jumped = 0
    picked = set(pick)
    last = max(pick)
    for q in range(p + 1, last):
        if q not in picked:
            for v in sts[q]:
                jumped |= 1 << v
    if jumped:
        for v in moved:
            if anc[v] & jumped:
                return None
    return group


def intra_gpu(graph: Graph, machine: Machine, schedule: Schedule, *, stage_model=None,
              window: int | None = None, streams: int | None = None) -> Schedule:
    """Apply the intra-GPU sliding window to any valid schedule (e.g. a one-GPU order); the
    per-GPU operator order of ``schedule`` is kept apart from the grouping."""
    window, streams = intra_options(window, streams)
    sim = Simulator(graph, machine, stage_model)
    before = sim.simulate(schedule).latency
    timer = FastTimer(sim)
    idx = schedule.indexed(graph)
    idx += [[] for _ in range(machine.gpus - len(idx))]
    new, _ = improve_stages(timer, idx, window, streams)
    after = sim.run(new).latency
    meta = dict(schedule.meta)
    meta.update({"intra_window": window, "intra_streams": streams, "latency_before_intra": before})
    if after > before:
        return Schedule(list(schedule.stages), schedule.algorithm, meta)
    return Schedule.from_indices(graph, new, schedule.algorithm, meta)
