"""Fit a stage model to measured plan replays, and judge stage models out of sample.

A plan's measured latency (its CUDA-graph replay) and the simulator's latency of the same schedule
differ by everything the simulator models coarsely: how operators that share a GPU slow each other
(the stage model), the stage barriers the runtime does not have, launch gaps.  Each stage-model
*family* (:data:`STAGE_FAMILIES`) has one or two parameters; fitting them to measured replays makes the
simulator predict them.  Torch-free.

Steps of :func:`fit_stage_parameter`:

1. For every candidate value on a grid over the family's range, simulate every given plan with
   the model at that value (:func:`simulated`).
2. The error of a value is the mean squared log ratio of simulated to measured latency, so a plan
   twice too slow weighs as much as one twice too fast, whatever its size.
3. The best grid point is refined by golden-section search along each parameter in turn between
   its grid neighbours (the grid guards against an error that is not unimodal).

Steps of :func:`evaluate_points` (the benchmark's out-of-sample judgement, leave one point out):

1. Per measured plan: its costs as measured (each segment timed alone, split over its operators,
   :func:`hios.cost.feedback.feed_back`), and the analytic prior it was planned from.
2. For each point, from the *other* points only: the analytic model's efficiencies and overheads
   (:func:`hios.cost.analytic.fit_spec_many`, or :func:`hios.cost.analytic.fit_spec_kernels` for
   the per-kernel form, on their measured costs) and, per family, the parameter (step 1-3 above)
   on their plans costed by that fitted analytic model (utilizations as chosen: the prior's, the
   achieved share of peak, or the work share at the fitted model).
3. The point's plans are predicted with those (``oos|<family>``: nothing measured on the point is
   used), and, labelled in sample, with the point's own measured costs and the parameter fitted on
   the other points' measured costs (``own|<family>``).

:func:`evaluate_transfer` is the same judgement across runs: steps 1-2 on every plan of one run
(the fitting run), step 3 on every plan of another (``xrun|<family>``: nothing measured in the
predicted run is used; ``xown|<family>``: its own segment times, the parameter from the fitting run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from .cost.costmodel import (ConcurrencyStageModel, HIOSStageModel, OccupancyStageModel, SharingStageModel,
                             StageModel, WorkShareStageModel)
from .errors import HiosError
from .graph import Graph
from .machine import Machine
from .schedule import Schedule
from .simulator import Simulator

__all__ = ["DEFAULT_FAMILY", "FitCase", "SIMULATORS", "SPEC_FORMS", "STAGE_FAMILIES", "StageFamily", "UTILIZATIONS",
           "evaluate_points", "evaluate_transfer",
           "fed_back_profile", "fit_stage_parameter",
           "measured_costs", "simulated"]


@dataclass(frozen=True)
class StageFamily:
    """A family of stage models with one or two parameters, each in ``[0, 1]``:
    ``make(values)`` builds the model."""

    name: str
    make: Callable[[tuple[float, ...]], StageModel]
    params: tuple[str, ...] = ("value",)


STAGE_FAMILIES: dict[str, StageFamily] = {
    "hios": StageFamily("hios", lambda v: HIOSStageModel(v[0]), ("alpha",)),
    "concurrency": StageFamily("concurrency", lambda v: ConcurrencyStageModel(v[0]), ("beta",)),
    "occupancy": StageFamily("occupancy", lambda v: OccupancyStageModel(v[0], v[1]), ("low", "high")),
    "workshare": StageFamily("workshare", lambda v: WorkShareStageModel(v[0]), ("gamma",)),
    "sharing": StageFamily("sharing", lambda v: SharingStageModel(v[0]), ("floor",)),
}

#: How :func:`simulated` runs a plan: ``"stages"``, the stage simulator (:mod:`hios.simulator`, stage
#: barriers); ``"streams"``, the plan's stream program without barriers (:mod:`hios.stream_simulator`,
#: families whose model has a rate law).
SIMULATORS = ("stages", "streams")

#: The family fitted to a plan's replay when a run is fed back (``hios run --feedback-to``).
DEFAULT_FAMILY = "concurrency"


@dataclass(frozen=True)
class FitCase:
    """One measured plan: its costed graph, machine, schedule and measured latency (ms); with its
    stream program (:meth:`hios.program.segmenting.ExecProgram.to_dict`) it is simulated without
    stage barriers (:mod:`hios.stream_simulator`)."""

    graph: Graph
    machine: Machine
    schedule: Schedule
    measured_ms: float
    program: dict | None = None


def simulated(case: FitCase, model: StageModel) -> float:
    if case.program is not None:
        from .stream_simulator import program_step_costs, simulate_program
        return simulate_program(case.program, *program_step_costs(case.graph, case.program), model)
    return Simulator(case.graph, case.machine, model).simulate(case.schedule).latency


def _error(cases: Sequence[FitCase], model: StageModel) -> float:
    return sum(math.log(simulated(c, model) / c.measured_ms) ** 2 for c in cases) / len(cases)


def _golden(err: Callable[[float], float], a: float, b: float, rounds: int = 12) -> tuple[float, float]:
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    ec, ed = err(c), err(d)
    for _ in range(rounds):
        if ec <= ed:
            b, d, ed = d, c, ec
            c = b - g * (b - a)
            ec = err(c)
        else:
            a, c, ec = c, d, ed
            d = a + g * (b - a)
            ed = err(d)
    return min((ec, c), (ed, d))


def fit_stage_parameter(family: StageFamily, cases: Sequence[FitCase], grid: int = 10) -> tuple[tuple[float, ...], float]:
    """Steps 1-3: the family's parameters that predict ``cases`` best, and their mean squared log
    error.  Two parameters: the grid over both, then each refined in turn, twice."""
    cases = [c for c in cases if c.measured_ms > 0]
    if not cases:
        raise HiosError("cannot fit a stage model: no measured plan with a positive latency")
    n = len(family.params)
    xs = [k / grid for k in range(grid + 1)]
    points = [(x,) for x in xs] if n == 1 else [(x, y) for x in xs for y in xs]
    scored = sorted((_error(cases, family.make(p)), p) for p in points)
    best_err, best = scored[0]
    step = 1.0 / grid
    for _ in range(1 if n == 1 else 2):
        for i in range(n):
            def err(v, i=i):
                p = list(best)
                p[i] = v
                return _error(cases, family.make(tuple(p)))
            e, v = _golden(err, max(0.0, best[i] - step), min(1.0, best[i] + step))
            if e < best_err:
                best_err, best = e, tuple(v if k == i else best[k] for k in range(n))
        step /= 2
    return best, best_err


def measured_costs(prior: Graph, program: dict, alone_ms: dict[int, float]) -> Graph:
    """Step 1 of :func:`evaluate_points`: ``prior`` with every segment's measured time alone split
    over its operators (``program``: :meth:`hios.program.segmenting.ExecProgram.to_dict`)."""
    from .cost.feedback import feed_back
    segs = [{"ops": st["ops"], "alone_ms": alone_ms[i], "measured_ms": alone_ms[i]}
            for i, st in enumerate(program["steps"]) if st["kind"] == "segment" and i in alone_ms]
    return feed_back(prior, segs, 0.0, "segments timed alone")


def _analytic(prior: Graph, spec) -> Graph:
    from .cost.analytic import costed_graph
    return costed_graph(prior, spec)


def _achieved(graph: Graph, spec) -> Graph:
    """``graph`` with each operator's utilization the share of the device's peak FLOP rate or
    bandwidth its cost achieves (:func:`hios.cost.analytic.measured_utilization`)."""
    from .cost.analytic import measured_utilization
    return graph.with_costs(graph.costs, {op.name: measured_utilization(op.meta, op.cost, spec) for op in graph.ops})


def _work_share(graph: Graph, spec) -> Graph:
    """``graph`` with each operator's utilization the share of its cost that is roofline work at
    ``spec`` (:func:`hios.cost.analytic.operator_work_share`)."""
    from .cost.analytic import operator_work_share
    return graph.with_costs(graph.costs, {op.name: operator_work_share(op.meta, spec, op.cost) for op in graph.ops})


#: Utilizations :func:`evaluate_points` can give the stage models, and their column suffixes.
UTILIZATIONS = {"analytic": "", "achieved": "+achieved", "work": "+work"}
#: Forms of the analytic model :func:`evaluate_points` can fit to the other points.
SPEC_FORMS = ("roofline", "kernels")


def evaluate_points(cases: Sequence[dict], families: dict[str, StageFamily], utilization: str = "analytic",
                    spec_form: str = "roofline", simulator: str = "stages") -> list[dict]:
    """Steps 1-3.  ``cases``: dicts with ``point``, ``plan``, ``graph`` (the analytic prior),
    ``machine``, ``schedule``, ``program``, ``alone_ms`` (step id -> ms) and ``measured_ms``.
    One row per case with ``pred[<costs>|<family>]`` columns (``prior|hios``: as planned).
    ``utilization`` (:data:`UTILIZATIONS`): ``"analytic"`` keeps the prior's utilizations (output
    size over resident threads); ``"achieved"`` derives them from the costs used (own or fitted
    analytic) as the share of the device's peak FLOP rate or bandwidth; ``"work"`` as the share of
    the cost that is roofline work at the efficiencies fitted on the other points; the columns are
    named ``<family>+achieved`` / ``<family>+work``.  ``spec_form``: ``"roofline"`` fits the
    efficiencies and one per-kernel overhead (:func:`hios.cost.analytic.fit_spec_many`),
    ``"kernels"`` the per-kernel form (:func:`hios.cost.analytic.fit_spec_kernels`).  ``simulator``
    (:data:`SIMULATORS`): ``"streams"`` simulates each plan's stream program without stage barriers
    (columns ``<family><utilization tag>+streams``; the prior column stays the stage simulator's)."""
    from .cost.analytic import device_spec, fit_spec_kernels, fit_spec_many
    if utilization not in UTILIZATIONS:
        raise HiosError(f"utilization must be one of {', '.join(UTILIZATIONS)}, got {utilization!r}")
    if spec_form not in SPEC_FORMS:
        raise HiosError(f"spec_form must be one of {', '.join(SPEC_FORMS)}, got {spec_form!r}")
    fit_spec = fit_spec_kernels if spec_form == "kernels" else fit_spec_many
    base_spec = (cases[0]["graph"].meta or {}).get("device_spec", {}).get("name", "h200") if cases else "h200"

    def utils(g: Graph, spec) -> Graph:
        if utilization == "achieved":
            return _achieved(g, device_spec(base_spec))
        return _work_share(g, spec) if utilization == "work" else g
    _check_simulator(simulator)
    tag = UTILIZATIONS[utilization] + ("+streams" if simulator == "streams" else "")
    prog = (lambda c: c["program"]) if simulator == "streams" else (lambda c: None)
    own_costs = [measured_costs(c["graph"], c["program"], c["alone_ms"]) for c in cases]
    points = list(dict.fromkeys(c["point"] for c in cases))
    rows = []
    for pt in points:
        mine = [i for i, c in enumerate(cases) if c["point"] == pt]
        rest = [i for i, c in enumerate(cases) if c["point"] != pt]
        fitted = {}
        if rest:
            spec = fit_spec([(own_costs[i], cases[i]["graph"]) for i in rest], base_spec)
            own = {i: FitCase(utils(own_costs[i], spec), c["machine"], c["schedule"], c["measured_ms"], prog(c))
                   for i, c in enumerate(cases)}
            oos_rest = [FitCase(utils(_analytic(cases[i]["graph"], spec), spec), own[i].machine, own[i].schedule,
                                own[i].measured_ms, own[i].program) for i in rest]
            for name, fam in families.items():
                fitted[name] = (fit_stage_parameter(fam, oos_rest)[0], fit_stage_parameter(fam, [own[i] for i in rest])[0])
        for i in mine:
            c = cases[i]
            row = {"point": c["point"], "plan": c["plan"], "measured_ms": c["measured_ms"],
                   "pred[prior|hios]": simulated(FitCase(c["graph"], c["machine"], c["schedule"], 1.0), HIOSStageModel()),
                   "sum_alone_ms": sum(c["alone_ms"].values())}
            if fitted:
                g = utils(_analytic(c["graph"], spec), spec)
                row["sum_analytic_oos_ms"] = sum(g.costs)
            for name, (v_oos, v_own) in fitted.items():
                fam = families[name]
                row[f"param_oos[{name}{tag}]"] = " ".join(f"{v:.3f}" for v in v_oos)
                row[f"pred[oos|{name}{tag}]"] = simulated(FitCase(g, c["machine"], c["schedule"], 1.0, prog(c)),
                                                          fam.make(v_oos))
                row[f"param_own[{name}{tag}]"] = " ".join(f"{v:.3f}" for v in v_own)
                row[f"pred[own|{name}{tag}]"] = simulated(own[i], fam.make(v_own))
            if fitted:
                ov_t = "" if spec.tensor_kernel_overhead_us is None else f" ov_tensor {spec.tensor_kernel_overhead_us}"
                ov_t += "" if spec.tensor_min_intensity is None else f" dense>={spec.tensor_min_intensity}"
                row["spec_oos"] = (f"{spec_form}: ce {spec.compute_eff} me {spec.memory_eff} "
                                   f"ov {spec.kernel_overhead_us}{ov_t}")
            rows.append(row)
    return rows


def _check_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise HiosError(f"simulator must be one of {', '.join(SIMULATORS)}, got {simulator!r}")


def evaluate_transfer(fit_cases: Sequence[dict], test_cases: Sequence[dict], families: dict[str, StageFamily],
                      utilization: str = "analytic", spec_form: str = "roofline",
                      simulator: str = "stages") -> list[dict]:
    """:func:`evaluate_points` across runs: the analytic model and each family's parameters fitted on
    every plan of ``fit_cases`` (another run), every plan of ``test_cases`` predicted with them.
    Cases as in :func:`evaluate_points`; one row per test case with ``pred[xrun|<family><tag>]``
    (analytic costs at the fitted model: nothing measured in the test run is used) and
    ``pred[xown|<family><tag>]`` (the case's own segment times, the parameter fitted on the
    fitting run's own segment times); ``simulator`` as there."""
    from .cost.analytic import device_spec, fit_spec_kernels, fit_spec_many
    if utilization not in UTILIZATIONS:
        raise HiosError(f"utilization must be one of {', '.join(UTILIZATIONS)}, got {utilization!r}")
    if spec_form not in SPEC_FORMS:
        raise HiosError(f"spec_form must be one of {', '.join(SPEC_FORMS)}, got {spec_form!r}")
    if not fit_cases or not test_cases:
        raise HiosError("evaluate_transfer needs measured plans in both runs")
    _check_simulator(simulator)
    fit_spec = fit_spec_kernels if spec_form == "kernels" else fit_spec_many
    base_spec = (fit_cases[0]["graph"].meta or {}).get("device_spec", {}).get("name", "h200")
    tag = UTILIZATIONS[utilization] + ("+streams" if simulator == "streams" else "")
    prog = (lambda c: c["program"]) if simulator == "streams" else (lambda c: None)

    def utils(g: Graph, spec) -> Graph:
        if utilization == "achieved":
            return _achieved(g, device_spec(base_spec))
        return _work_share(g, spec) if utilization == "work" else g
    fit_own = [measured_costs(c["graph"], c["program"], c["alone_ms"]) for c in fit_cases]
    spec = fit_spec([(g, c["graph"]) for g, c in zip(fit_own, fit_cases)], base_spec)
    analytic = [FitCase(utils(_analytic(c["graph"], spec), spec), c["machine"], c["schedule"], c["measured_ms"],
                        prog(c)) for c in fit_cases]
    own = [FitCase(utils(g, spec), c["machine"], c["schedule"], c["measured_ms"], prog(c))
           for g, c in zip(fit_own, fit_cases)]
    fitted = {name: (fit_stage_parameter(fam, analytic)[0], fit_stage_parameter(fam, own)[0])
              for name, fam in families.items()}
    rows = []
    for c in test_cases:
        g = utils(_analytic(c["graph"], spec), spec)
        mine = utils(measured_costs(c["graph"], c["program"], c["alone_ms"]), spec)
        row = {"point": c["point"], "plan": c["plan"], "measured_ms": c["measured_ms"]}
        for name, (v_x, v_own) in fitted.items():
            fam = families[name]
            row[f"param_xrun[{name}{tag}]"] = " ".join(f"{v:.3f}" for v in v_x)
            row[f"pred[xrun|{name}{tag}]"] = simulated(FitCase(g, c["machine"], c["schedule"], 1.0, prog(c)),
                                                       fam.make(v_x))
            row[f"pred[xown|{name}{tag}]"] = simulated(FitCase(mine, c["machine"], c["schedule"], 1.0, prog(c)),
                                                       fam.make(v_own))
        rows.append(row)
    return rows


def fed_back_profile(plan, record: dict, measured_ms: float | None, source: str = "hios run") -> Graph:
    """What ``hios run --feedback-to`` writes: the plan's costed graph with the run's measured segment
    times fed back (:func:`hios.cost.feedback.feed_back`; a segment's time alone where the record
    has it, else its measured duration), its ``meta.profile`` naming the run's settings, and, given
    the plan's measured latency, the :data:`DEFAULT_FAMILY` stage model fitted so that the
    simulator predicts this plan's measured latency from those costs (``profile.replay_fit``; a
    plan made from the profile uses it, :mod:`hios.cost.costing`)."""
    from .cost.feedback import feed_back
    g = feed_back(plan.graph, record["segments"], 0.0, source)
    prof = dict(g.meta["profile"])
    prof.update(record.get("settings") or {})
    if measured_ms is not None and measured_ms > 0:
        fam = STAGE_FAMILIES[DEFAULT_FAMILY]
        case = FitCase(g, plan.machine, plan.schedule, float(measured_ms))
        values, err = fit_stage_parameter(fam, [case])
        model = fam.make(values)
        prof["replay_fit"] = {"family": fam.name, "model": model.to_dict(), "measured_ms": float(measured_ms),
                              "simulated_ms": simulated(case, model), "plans": 1,
                              "costs": "alone" if all("alone_ms" in s for s in record["segments"]) else "durations"}
    g.meta = {**g.meta, "profile": prof}
    return g
