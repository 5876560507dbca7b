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
     GPU changes when its outputs reach the others).  The evaluation is incremental
     (:class:`.timing_engine.StageChain`): the schedule's stage times are kept, and a candidate
     re-times only the stages it changes and those its changed finish times reach, giving the
     same latency as timing the whole schedule.  A candidate whose stage order deadlocks across
     GPUs (the group waits for a stage that waits for it) is rejected.  Keep the
     candidate of lowest latency provided it does not raise the current latency (the first,
     smallest such candidate wins ties), apply it to the kept times; then move to ``p + 1``.
  4. Check the result with the real simulator; should it be slower than the input (it cannot,
     except through the documented transfer-dedup difference of the fast evaluator), return the
     input unchanged.

Fast mode (``exact=False``, what HIOS-LP uses unless ``exact=True``; HIOS-MR stays exact): step 3's
re-timing of a candidate reaches a number of stages that grows with the schedule, so once
:data:`EXACT_WAVE_BUDGET` re-timed stages per operator are spent (:func:`.timing_engine.exact_budget`;
0 by default: from the first window) the rest of the walk first estimates each candidate (:meth:`.timing_engine.StageChain.estimate`): the new finish times of the
window's stages from the kept finish times of their producers, plus the kept schedule tails of
their successors, give the longest path through the changed window in O(window x degree).  A
candidate whose path is longer than the latency is rejected; when no old stage of its window is
critical its latency is exactly the current one (kept times being exact), so it is taken only as
the first such candidate, without re-timing, and once a candidate is kept the candidates whose
window holds no critical stage are skipped unbuilt (they cannot lower the latency).  A candidate
of a critical window, or with a producer of a stage that stays starting after the window's first
stage ends (it might depend on the window), is re-timed as in step 3 if that reaches at most
:data:`FAST_WAVE_CAP` stages, else its estimate decides; while the kept times are exact that
re-timing stops as soon as a stage the change cannot reach back to has a final finish plus its
kept tail above the best latency.  After a change, finish times are spread forward and tails
backward over at most :data:`WAVE_CAP` stages (when that covers the schedule, the tails of
the stages starting before the change wait until the walk leaves the GPU: until then it reads
no tail that depends on them; :meth:`.timing_engine.StageChain.flush_tails`), and all are recomputed exactly every
``max(64, n / 16)`` changes and at the end (not needed while no cap was hit).  Both caps are
their value at :data:`.timing_engine.BUDGET_OPS` operators, scaled by :func:`.timing_engine.decayed` (at
least 4 and 0), so that their work stays O(n) on large graphs; on small graphs they exceed the
schedule, the kept times stay exact, and the walk makes the exact walk's choices at a fraction
of its re-timing (HIOS-LP's schedules with the exact budget 100 and 0: the same on 106 of the
108 cases of ``tests/data/freeze_schedules.py``, the same latency on all).  Exactness gives
way only through stale kept times and capped re-timings; ``benchmarks/placement_quality.py``
measures the quality against the exact mode.
"""

from __future__ import annotations

from itertools import combinations
from typing import Sequence

from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from ..errors import HiosError
from ..simulator import ScheduleError, Simulator
from .timing_engine import INF, decayed, exact_budget, FastTimer, StageChain, check_intra_options

__all__ = ["DEFAULT_WINDOW", "DEFAULT_STREAMS", "intra_options", "improve_stages", "intra_gpu"]

#: Stages looked at together (the current one and the next ``DEFAULT_WINDOW - 1``).
#: 4 and 4 (not the research code's 2 and 2) from measurements on an H100 (docs/results.md,
#: runtime section): 2/2 ran 5-70 % slower than 4/4 at 224-299 px; from 1280 px every setting
#: was within 1-3 %; 6/6 gained at most 3 % at nearly 5x the candidates.
DEFAULT_WINDOW = 4
#: Most operators grouped into one stage (streams of one GPU used at once).
DEFAULT_STREAMS = 4
#: Fast mode: stages re-timed exactly (per operator of the graph) before the fast rule takes over;
#: 0: the fast rule from the first window (exact anyway while the scaled caps exceed the graph).
EXACT_WAVE_BUDGET = 0
#: Fast mode: most stages whose times are updated forward (and tails backward) after a change
#: (at BUDGET_OPS operators; scaled by decayed()).
WAVE_CAP = 48
#: Fast mode: most stages a candidate of a critical window may re-time; beyond, its estimate decides
#: (at BUDGET_OPS operators; scaled by decayed()).
FAST_WAVE_CAP = 256


def intra_options(window: int | None = None, streams: int | None = None) -> tuple[int, int]:
    """The window and stream count to use (None: the module constant now); checked."""
    w = DEFAULT_WINDOW if window is None else window
    s = DEFAULT_STREAMS if streams is None else streams
    check_intra_options(w, s)
    return w, s


def improve_stages(timer: FastTimer, stages: list[list[list[int]]], window: int | None = None,
                   streams: int | None = None, anc: list[int] | None = None,
                   latency: float | None = None, exact: bool = True) -> tuple[list[list[list[int]]], float]:
    """Steps 1-3 on index stages; returns the new stages (the input is not modified) and the
    latency the fast evaluator gives them (in the fast mode, its latency after a last full
    re-timing).  Candidates are timed incrementally (:class:`.timing_engine.StageChain`): only the
    stages whose times a candidate changes are re-timed, with the same result as timing the whole
    schedule.  ``exact=False``: once :data:`EXACT_WAVE_BUDGET` re-timed stages per operator are
    spent, the rest of the walk uses the fast rule (module docstring).  ``latency`` is accepted
    for compatibility and not needed."""
    window, streams = intra_options(window, streams)
    try:
        chain = StageChain(timer, stages)
    except HiosError:
        raise ScheduleError("intra-GPU step: the input schedule deadlocks") from None
    cur = chain.latency()
    if window < 2 or streams < 2:
        return chain.stages(), cur
    if anc is None:
        anc = timer.graph.ancestors_mask()
    budget = INF if exact else exact_budget(EXACT_WAVE_BUDGET, timer.n)
    wave_cap = decayed(WAVE_CAP, timer.n, 4)
    fast_wave_cap = decayed(FAST_WAVE_CAP, timer.n)
    fast = False
    since_sync = 0
    sync_every = max(64, timer.n // 16)
    for gi in range(len(stages)):
        base = chain.first[gi]
        while base is not None:
            room = streams - len(base.ops)
            if room <= 0:
                base = base.next
                continue
            if not fast and chain.pops > budget:
                fast = True
                cur = chain.resync(times_exact=True)  # only exact evaluations were committed so far
            win = [base]
            s = base.next
            while s is not None and len(win) < window:
                win.append(s)
                s = s.next
            best = None
            best_lat = cur
            others = range(1, len(win))
            if fast:
                # critical[q]: whether one of win[0..q] is on a critical path (kept times and tails)
                edge = cur * (1.0 - 1e-9)
                critical = []
                for s in win:
                    critical.append(s.fin + s.stl >= edge or bool(critical) and critical[-1])
            for size in range(1, len(win)):
                for pick in combinations(others, size):
                    if fast and best is not None and not critical[pick[-1]]:
                        continue  # no critical stage changes: the latency stays cur, no better than best
                    if not _may_group(win, pick, room, anc):
                        continue
                    cand = chain.regroup(base, [win[q] for q in pick])
                    if chain.deadlocks(cand):
                        continue
                    if fast:
                        est = chain.estimate(cand, cur)
                        if est is not None and est[0] > cur * (1.0 + 1e-12):
                            continue  # a path through the window is longer than the latency
                        if est is not None and not est[1]:  # the window is not critical: the latency stays cur
                            if best is None:
                                best, best_lat = cand, cur
                            continue
                        lat = chain.evaluate(cand, best_lat, fast_wave_cap)
                        if chain.capped:  # too far-reaching to re-time: the estimate decides
                            if est is not None and (best is None or est[0] < best_lat):
                                cand.latency = INF
                                best, best_lat = cand, est[0]
                            continue
                    else:
                        lat = chain.evaluate(cand, best_lat)
                    if lat < best_lat or (best is None and lat <= cur):
                        best, best_lat = cand, lat
            if best is not None:
                if fast:
                    chain.commit_fast(best, wave_cap)
                    cur = chain.latency()  # from the kept finish times
                    since_sync += 1
                    if since_sync >= sync_every:
                        if not chain.exact_kept:  # else the kept times are already exact
                            cur = chain.resync()
                        since_sync = 0
                else:
                    chain.commit(best)
                    cur = best_lat
                base = best.group
            base = base.next
        chain.flush_tails()  # the next GPU's walk starts before the changes made on this one
    if fast and not chain.exact_kept:
        cur = chain.resync()
    return chain.stages(), cur


def _may_group(win: list, pick: Sequence[int], room: int, anc: list[int]) -> bool:
    """Whether stage ``win[0]`` and the stages ``win[q]`` for ``q`` in ``pick`` may form one stage."""
    moved = [v for q in pick for v in win[q].ops]
    if len(moved) > room:
        return False
    group = win[0].ops + moved
    mask = 0
    for v in group:
        mask |= 1 << v
    for v in group:
        if anc[v] & mask:
            return False  # two members depend on each other
    # An operator moved forward must not depend on a stage it jumps over (that deadlocks).
    jumped = 0
    picked = set(pick)
    for q in range(1, max(pick)):
        if q not in picked:
            for v in win[q].ops:
                jumped |= 1 << v
    if jumped:
        for v in moved:
            if anc[v] & jumped:
                return False
    return True


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
