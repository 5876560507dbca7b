"""Exact optimum of the whole HIOS problem on small graphs, with OR-Tools CP-SAT.

The whole problem: GPU mapping, the grouping of each GPU's operators into concurrent stages of
at most ``streams`` independent operators (timed by the stage model), and the order of the
stages, with transfers under the machine's link model (per-pair links; serialized links when
asked).  The model is in :mod:`hios.schedulers.optimal_model`.  Graphs of at most
:data:`MAX_OPERATORS` operators and :data:`MAX_CANDIDATES` candidate stages; OR-Tools is an
optional extra (``pip install hios[optimal]``).

Steps:
  1. Check the options; time is made integer in units of ``resolution_us`` microseconds
     (default 0.01 µs), every stage and transfer time rounded *up* (a stage lasts at least one
     unit), so a model solution is feasible in real time.
  2. Build the model: candidate stages, GPU and stage choices, per-GPU no-overlap, transfers,
     makespan (see :mod:`.optimal_model`).
  3. Hint: the best of HIOS-LP (with its intra-GPU step), HEFT and sequential under this
     simulator, timed as soon as possible in model units, is given to CP-SAT as a complete
     solution, so the result is never worse than those heuristics.  With ``streams`` > 1, a
     first phase (:data:`PHASE1_SHARE` of the budget) solves the easier model with one
     operator per stage from the same hint; its answer joins the hints of the second phase,
     the whole problem (on 24 graphs of 10-20 operators the whole model alone, within 15 s,
     once missed a schedule that the one-operator model found).
  4. Solve with a fixed seed and ``workers`` threads (default 1) for ``time_limit`` seconds of
     CP-SAT *work* (both phases together): its deterministic time (an operation count) at
     :data:`WORK_PER_SECOND` per second.  One core of the 2-core test CPU did 0.04-0.17 of it
     per wall second on these models (less on the larger ones), so a run takes roughly
     ``time_limit`` seconds or less.  The same input thus gives the same output whatever the
     load.  A wall-clock backstop of :data:`WALL_FACTOR` ``* time_limit`` seconds in all stops a
     run on a slow or busy machine; ``meta['stopped_by']`` then says ``wall clock`` (and that
     result may vary).
  5. Read the stages (per GPU by model start), simulate them (the simulator is the judge) and
     record the proof in ``meta``: ``status`` (CP-SAT's), ``proven_optimal``, ``objective``
     (model makespan, ms), ``bound`` (a lower bound on the latency of *every* schedule with
     stages of at most ``streams`` operators: CP-SAT's bound less the rounding slack of one
     unit per stage and transfer of a chain, and never below :func:`hios.bounds.lower_bounds`),
     ``gap`` ((latency - bound) / latency) and ``simulated_latency``.  Without link
     serialization the simulated latency is at most the objective, and equal to it when the
     solution is optimal and times are whole units; with serialized links the simulator books
     each link greedily and may differ from the model: ``proven_optimal`` then also requires
     that the simulated latency does not exceed the objective.  Should CP-SAT stop before it has
     a solution of its own (or a worse one), the hint is returned (``meta['solution']``).

Options: ``time_limit`` (seconds of work, default 10), ``workers`` (CP-SAT threads,
default 1), ``seed`` (default 0), ``streams`` (most operators per stage; default the intra-GPU
step's), ``resolution_us`` (time unit), ``serialize_links``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..bounds import lower_bounds
from ..costmodel import HIOSStageModel
from ..errors import HiosError
from ..graph import Graph
from ..machine import Machine
from ..optional import require
from ..schedule import Schedule
from ..simulator import ScheduleError, Simulator
from .heft import heft
from .hios_lp import hios_lp
from .intra_gpu import intra_options
from .optimal_model import add_hint, build, candidate_stages, hint_solution
from .sequential import sequential

__all__ = ["DEFAULT_TIME_LIMIT", "MAX_CANDIDATES", "MAX_OPERATORS", "PHASE1_SHARE", "WALL_FACTOR",
           "WORK_PER_SECOND", "check_options", "optimal", "size_problem"]

MAX_OPERATORS = 30
#: Most candidate stages (groups of independent operators, singletons included) the model takes.
MAX_CANDIDATES = 6000
DEFAULT_TIME_LIMIT = 10.0
#: CP-SAT deterministic time granted per second of ``time_limit`` (see step 4).
WORK_PER_SECOND = 0.05
#: The wall-clock backstop, in multiples of ``time_limit`` (step 4).
WALL_FACTOR = 3.0
#: Share of the work budget spent on phase 1 (one operator per stage, step 3).
PHASE1_SHARE = 0.25


def _number(x, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not x > 0:
        raise HiosError(f"optimal option {name} must be a finite number > 0, got {x!r}")
    return float(x)


def check_options(time_limit, workers, seed, resolution_us) -> None:
    _number(time_limit, "time_limit")
    _number(resolution_us, "resolution_us")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise HiosError(f"optimal option workers must be an integer >= 1, got {workers!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HiosError(f"optimal option seed must be an integer >= 0, got {seed!r}")


def size_problem(graph: Graph, streams: int | None = None, stage_model=None,
                 resolution_us: float = 0.01) -> str | None:
    """Why ``graph`` is too large for the exact solver (None if it is not): more than
    :data:`MAX_OPERATORS` operators, or more than :data:`MAX_CANDIDATES` candidate stages."""
    n = len(graph.ops)
    if n > MAX_OPERATORS:
        return f"optimal handles graphs of at most {MAX_OPERATORS} operators; {graph.name!r} has {n}"
    _, streams = intra_options(None, streams)
    try:
        candidate_stages(graph, streams, stage_model or HIOSStageModel(), 1000.0 / resolution_us, MAX_CANDIDATES)
    except HiosError as e:
        return str(e)
    return None


def _hint_schedules(graph: Graph, machine: Machine, stage_model, streams: int, sim: Simulator):
    """Step 3: the heuristics' schedules as (latency, name, index stages)."""
    out = []
    for name, fn in (("hios-lp", lambda: hios_lp(graph, machine, stage_model=stage_model, streams=streams)),
                     ("heft", lambda: heft(graph, machine, stage_model=stage_model)),
                     ("sequential", lambda: sequential(graph, machine))):
        idx = fn().indexed(graph)
        try:
            out.append((sim.run(idx).latency, name, idx))
        except ScheduleError:  # a heuristic's schedule is always valid; be safe
            continue
    return out


@dataclass
class _Solved:
    status: str
    optimal: bool
    latency: float  # simulated latency of the answer
    stages: list  # index stages of the answer
    objective: float  # model makespan of the answer, ms
    model_bound: float  # CP-SAT's bound, ms (0 when it has none)
    source: str  # "cp-sat" or "hint (<heuristic>)"
    hint: str | None
    candidates: int
    work: float  # deterministic time spent


def _solve(graph: Graph, machine: Machine, stage_model, streams: int, scale: float, serialize_links: bool,
           sim: Simulator, hints: list, work: float, wall: float, workers: int, seed: int) -> _Solved:
    """Steps 2-4 for one stream count: build, hint with the best of ``hints``, solve."""
    from ortools.sat.python import cp_model

    em = build(graph, machine, stage_model, streams, scale, serialize_links, MAX_CANDIDATES)
    hint = None
    for lat, name, idx in sorted(hints, key=lambda h: (h[0], h[1])):
        sol = hint_solution(graph, em, idx, serialize_links)
        if sol is not None:
            add_hint(em, sol)
            hint = (name, sol)
            break
    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = workers
    p.random_seed = seed
    p.max_deterministic_time = work
    p.max_time_in_seconds = wall
    p.linearization_level = 0  # no LP relaxation: it slowed the proofs 2-6x on layered graphs of 16-20 ops
    status = solver.Solve(em.model)
    # The answer: the solver's solution or the hint (CP-SAT may stop before it has turned the
    # hint into a solution), whichever simulates faster; the solver's on ties.
    options = []
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        rows: list[list[tuple[int, int, list[int]]]] = [[] for _ in range(machine.gpus)]
        for c, members in enumerate(em.cands):
            if solver.Value(em.pick[c]):
                head = members[0]
                g = next(k for k in range(em.n_gpu) if solver.Value(em.on[head][k]))
                rows[g].append((solver.Value(em.start[head]), graph.position[head], list(members)))
        idx = [[members for _, _, members in sorted(row)] for row in rows]
        options.append((sim.run(idx).latency, 0, idx, solver.ObjectiveValue() / scale, "cp-sat"))
    if hint is not None:
        idx = hint[1]["stages"] + [[] for _ in range(machine.gpus - len(hint[1]["stages"]))]
        options.append((sim.run(idx).latency, 1, idx, hint[1]["makespan"] / scale, f"hint ({hint[0]})"))
    if not options:
        raise HiosError(f"optimal: CP-SAT found no schedule for {graph.name!r} "
                        f"(status {solver.StatusName(status)})")
    latency, _, idx, objective, source = min(options, key=lambda o: (o[0], o[1]))
    bound = solver.BestObjectiveBound() / scale if status != cp_model.UNKNOWN else 0.0
    return _Solved(solver.StatusName(status), status == cp_model.OPTIMAL, latency, idx, objective, bound, source,
                   hint[0] if hint else None, len(em.cands), solver.response_proto.deterministic_time)


def optimal(graph: Graph, machine: Machine, *, stage_model=None, streams: int | None = None,
            time_limit: float = DEFAULT_TIME_LIMIT, workers: int = 1, seed: int = 0,
            resolution_us: float = 0.01, serialize_links: bool = False) -> Schedule:
    check_options(time_limit, workers, seed, resolution_us)
    n = len(graph.ops)
    _, streams = intra_options(None, streams)
    stage_model = stage_model or HIOSStageModel()
    why = size_problem(graph, streams, stage_model, resolution_us)
    if why:
        raise HiosError(why)
    require("ortools.sat.python.cp_model", "optimal")
    scale = 1000.0 / resolution_us  # model units per millisecond
    sim = Simulator(graph, machine, stage_model, serialize_links)
    hints = _hint_schedules(graph, machine, stage_model, streams, sim)
    budget = WORK_PER_SECOND * float(time_limit)
    first_work = 0.0
    if streams > 1:  # phase 1: one operator per stage, a strong incumbent for phase 2
        first = _solve(graph, machine, stage_model, 1, scale, serialize_links, sim, hints,
                       PHASE1_SHARE * budget, WALL_FACTOR * PHASE1_SHARE * time_limit, workers, seed)
        hints.append((first.latency, "one operator per stage", first.stages))
        first_work = first.work
    res = _solve(graph, machine, stage_model, streams, scale, serialize_links, sim, hints,
                 max(budget - first_work, 0.01 * budget), WALL_FACTOR * (1.0 - PHASE1_SHARE) * time_limit, workers, seed)
    latency, idx, objective = res.latency, res.stages, res.objective
    transfers = len(graph.edges) + n * (min(machine.gpus, n) - 1) if serialize_links else n - 1
    slack = (n + max(0, transfers)) / scale
    bound = max(res.model_bound - slack, lower_bounds(graph, machine.gpus, stage_model).value, 0.0)
    det = first_work + res.work
    return Schedule.from_indices(graph, idx, "optimal", {
        "status": res.status,
        "proven_optimal": res.optimal and latency <= objective * (1 + 1e-9) + 1e-12,
        "objective": objective,
        "bound": bound,
        "gap": (latency - bound) / latency if latency > 0 else 0.0,
        "simulated_latency": latency,
        "rounding_slack": slack,
        "candidate_stages": res.candidates,
        "streams": streams,
        "hint": res.hint,
        "solution": res.source,
        "time_limit": float(time_limit),
        "stopped_by": None if res.optimal else ("wall clock" if det < 0.99 * budget else "time limit"),
        "work": det,
        "workers": workers,
        "seed": seed,
        "resolution_us": float(resolution_us),
        "serialize_links": bool(serialize_links),
    })
