"""Exact optimum of the HIOS problem on small graphs, with OR-Tools CP-SAT.

Two models, each in its own module:

* **mapping and order** (:mod:`hios.schedulers.optimal_order`): one operator per stage; the
  GPU mapping and the order on each GPU.  Used when the options leave one operator per stage:
  ``intra=False`` (``--no-intra``), ``window=1`` or ``streams=1``.
* **the whole problem** (:mod:`hios.schedulers.optimal_model`): the mapping, the grouping of
  each GPU's operators into concurrent stages of at most ``streams`` independent operators
  (timed by the stage model) and the order of the stages.  Used otherwise, where it fits.

Both model transfers under the machine's link model (per-pair links; serialized links when
asked).  Limits: :data:`MAX_OPERATORS` operators, and for the whole problem
:data:`MAX_CANDIDATES` candidate stages; past them :func:`size_problem` says why, and the CLI
skips ``optimal`` (or refuses it when it is the only algorithm asked for).  OR-Tools is an
optional extra (``pip install hios[optimal]``).

Steps:
  1. Check the options; time is made integer in units of ``resolution_us`` microseconds
     (default 0.01 µs), every stage and transfer time rounded *up* (a stage lasts at least one
     unit), so a model solution is feasible in real time.  The rounding slack is one unit per
     operator and transfer of a chain: ``gap`` = operators + transfers units.
  2. Build the model (see the two modules).
  3. Hint: the best of HIOS-LP (with its intra-GPU step for the whole problem, without it for
     mapping and order), HEFT and sequential under this simulator, timed as soon as possible in
     model units, is given to CP-SAT as a complete solution, so the result is never worse than
     those heuristics.  For the whole problem a first phase (:data:`PHASE1_SHARE` of the budget)
     solves the mapping-and-order model from the same hint; its answer joins the hints of the
     second phase (on 24 graphs of 10-20 operators the whole model alone, within 15 s, once
     missed a schedule that the one-operator model found).
  4. Solve each phase in :data:`PASSES` (CP-SAT's default search, a search that probes the
     objective's lower bound, the default search again), each pass from the best schedule and
     the bound so far, until the answer's objective is within ``gap`` units of the bound
     (CP-SAT's ``absolute_gap_limit``): the answer is then optimal up to the rounding of step 1.
     Fixed seed, ``workers`` threads (default 1), ``time_limit`` seconds of CP-SAT *work* in
     all: its deterministic time (an operation count) at :data:`WORK_PER_SECOND` per second.
     One core of the 2-core test CPU did 0.03-0.17 of it per wall second on these models (less
     on the larger ones and under load), so a run takes roughly ``time_limit`` seconds or less.
     The same input thus gives the same output whatever the load.  A wall-clock backstop of
     :data:`WALL_FACTOR` ``* time_limit`` seconds in all stops a run on a slow or busy
     machine; ``meta['stopped_by']`` then says ``wall clock`` (and that result may vary).
  5. Read the stages (per GPU by model start), simulate them (the simulator is the judge) and
     record the proof in ``meta``: ``model`` (``mapping and order`` or ``stages``), ``status``
     (CP-SAT's, last pass), ``proven_optimal``, ``objective`` (model makespan, ms), ``bound``
     (a lower bound on the latency of *every* schedule with stages of at most ``streams``
     operators: CP-SAT's bound less the rounding slack, and never below
     :func:`hios.bounds.lower_bounds`), ``gap`` ((latency - bound) / latency) and
     ``simulated_latency``.  When proven, latency - bound <= 2 * ``rounding_slack``.  Without
     link serialization the simulated latency is at most the objective; with serialized links
     the simulator books each link greedily and may differ from the model: ``proven_optimal``
     then also requires that the simulated latency does not exceed the objective.  Should
     CP-SAT stop before it has a solution of its own (or a worse one), the hint is returned
     (``meta['solution']``).

Options: ``intra``, ``window``, ``streams`` (as for HIOS: they choose the model and the most
operators per stage; default the intra-GPU step's), ``time_limit`` (seconds of work, default
10), ``workers`` (CP-SAT threads, default 1), ``seed`` (default 0), ``resolution_us`` (time
unit), ``serialize_links``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..bounds import lower_bounds
from ..cost.costmodel import HIOSStageModel
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
from .optimal_order import build_order
from .sequential import sequential

__all__ = ["DEFAULT_TIME_LIMIT", "MAX_CANDIDATES", "MAX_OPERATORS", "PASSES", "PHASE1_SHARE", "WALL_FACTOR",
           "WORK_PER_SECOND", "check_options", "one_per_stage", "optimal", "size_problem"]

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
#: The search passes of one solve, as (share of its budget, objective lower-bound search):
#: CP-SAT's default search first (it finds the best schedules and often proves them), then a
#: search that probes the bound, which closes the last gap on layered graphs of 30 operators on
#: two GPUs where the default search alone stalls.  Each pass starts from the best schedule and
#: the bound found so far.
PASSES = ((0.25, False), (0.5, True), (0.25, False))


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


def one_per_stage(intra: bool = True, window: int | None = None, streams: int | None = None) -> bool:
    """Whether the options leave one operator per stage (``intra`` off, or a window or stream
    count of 1): then the mapping-and-order model is the exact problem."""
    window, streams = intra_options(window, streams)
    return not intra or window == 1 or streams == 1


def size_problem(graph: Graph, streams: int | None = None, stage_model=None,
                 resolution_us: float = 0.01, intra: bool = True, window: int | None = None) -> str | None:
    """Why ``graph`` is too large for the exact solver (None if it is not): more than
    :data:`MAX_OPERATORS` operators, or (stages of several operators) more than
    :data:`MAX_CANDIDATES` candidate stages."""
    n = len(graph.ops)
    if n > MAX_OPERATORS:
        return f"optimal handles graphs of at most {MAX_OPERATORS} operators; {graph.name!r} has {n}"
    if one_per_stage(intra, window, streams):
        return None
    _, streams = intra_options(None, streams)
    try:
        candidate_stages(graph, streams, stage_model or HIOSStageModel(), 1000.0 / resolution_us, MAX_CANDIDATES)
    except HiosError as e:
        return str(e)
    return None


def _hint_schedules(graph: Graph, machine: Machine, stage_model, streams: int, sim: Simulator):
    """Step 3: the heuristics' schedules as (latency, name, index stages); HIOS-LP without its
    intra-GPU step when ``streams`` is 1."""
    out = []
    for name, fn in (("hios-lp", lambda: hios_lp(graph, machine, stage_model=stage_model, streams=streams,
                                                 intra=streams > 1)),
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


def _read(graph: Graph, machine: Machine, em, solver) -> list:
    """The index stages of CP-SAT's solution, per GPU by model start."""
    rows: list[list[tuple[int, int, list[int]]]] = [[] for _ in range(machine.gpus)]
    for c in em.picked(solver.Value):
        members = em.cands[c]
        head = members[0]
        g = next(k for k in range(em.n_gpu) if solver.Value(em.on[head][k]))
        rows[g].append((solver.Value(em.start[head]), graph.position[head], list(members)))
    return [[members for _, _, members in sorted(row)] for row in rows]


def _solve(graph: Graph, machine: Machine, stage_model, streams: int, scale: float, serialize_links: bool,
           sim: Simulator, hints: list, work: float, wall: float, workers: int, seed: int, gap: int) -> _Solved:
    """Steps 2-4 for one stream count: build (the mapping-and-order model for one operator per
    stage), hint with the best of ``hints``, solve in :data:`PASSES` until the answer's objective
    is within ``gap`` units of CP-SAT's bound."""
    from ortools.sat.python import cp_model

    if streams == 1:
        em = build_order(graph, machine, stage_model, scale, serialize_links)
    else:
        em = build(graph, machine, stage_model, streams, scale, serialize_links, MAX_CANDIDATES)
    hint, sol = None, None
    for _, name, idx in sorted(hints, key=lambda h: (h[0], h[1])):
        sol = hint_solution(graph, em, idx, serialize_links)
        if sol is not None:
            hint = name
            break
    # candidates for the answer: (simulated latency, CP-SAT's first, index stages, objective units, source)
    answers = []
    if sol is not None:
        idx = sol["stages"] + [[] for _ in range(machine.gpus - len(sol["stages"]))]
        answers.append((sim.run(idx).latency, 1, idx, sol["makespan"], f"hint ({hint})"))
    bound, det, status = 0, 0.0, cp_model.UNKNOWN
    for share, lb_search in PASSES:
        em.model.ClearHints()
        if sol is not None:
            add_hint(em, sol)
        solver = cp_model.CpSolver()
        p = solver.parameters
        p.num_workers = workers
        p.random_seed = seed
        p.max_deterministic_time = max(share * work, 1e-3)
        p.max_time_in_seconds = max(share * wall, 1e-3)
        p.linearization_level = 0  # no LP relaxation: it slowed the proofs 2-6x on layered graphs of 16-20 ops
        p.absolute_gap_limit = gap
        p.use_objective_lb_search = lb_search
        status = solver.Solve(em.model)
        det += solver.response_proto.deterministic_time
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            idx = _read(graph, machine, em, solver)
            answers.append((sim.run(idx).latency, 0, idx, round(solver.ObjectiveValue()), "cp-sat"))
            sol = hint_solution(graph, em, idx, serialize_links) or sol  # the next pass starts from it
            bound = max(bound, math.ceil(solver.BestObjectiveBound() - 1e-6))  # the objective is whole units
            em.model.Add(em.makespan >= bound)  # proven: the next pass starts from it
        if status == cp_model.OPTIMAL:
            break
    if not answers:
        raise HiosError(f"optimal: CP-SAT found no schedule for {graph.name!r} "
                        f"(status {cp_model.CpSolver().StatusName(status)})")
    # The answer: the fastest in simulation; CP-SAT's on ties.
    latency, _, idx, objective, source = min(answers, key=lambda o: (o[0], o[1]))
    proven = status == cp_model.OPTIMAL and objective - bound <= gap
    return _Solved(cp_model.CpSolver().StatusName(status), proven, latency, idx, objective / scale, bound / scale,
                   source, hint, len(em.cands), det)


def optimal(graph: Graph, machine: Machine, *, stage_model=None, intra: bool = True, window: int | None = None,
            streams: int | None = None, time_limit: float = DEFAULT_TIME_LIMIT, workers: int = 1, seed: int = 0,
            resolution_us: float = 0.01, serialize_links: bool = False) -> Schedule:
    check_options(time_limit, workers, seed, resolution_us)
    n = len(graph.ops)
    _, streams = intra_options(window, streams)
    if one_per_stage(intra, window, streams):
        streams = 1
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
    transfers = len(graph.edges) + n * (min(machine.gpus, n) - 1) if serialize_links else n - 1
    gap = n + max(0, transfers)  # the rounding slack in units: CP-SAT stops within it of its bound
    slack = gap / scale
    share = PHASE1_SHARE if streams > 1 else 0.0
    if streams > 1:  # phase 1: one operator per stage (the mapping-and-order model), an incumbent for phase 2
        first = _solve(graph, machine, stage_model, 1, scale, serialize_links, sim, hints,
                       share * budget, WALL_FACTOR * share * time_limit, workers, seed, gap)
        hints.append((first.latency, "one operator per stage", first.stages))
        first_work = first.work
    res = _solve(graph, machine, stage_model, streams, scale, serialize_links, sim, hints,
                 max(budget - first_work, 0.01 * budget), WALL_FACTOR * (1.0 - share) * time_limit, workers, seed,
                 gap)
    latency, idx, objective = res.latency, res.stages, res.objective
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
        "model": "stages" if streams > 1 else "mapping and order",
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
