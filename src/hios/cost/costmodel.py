"""Stage (concurrency) models: how long a group of operators takes on parallel streams of one GPU.

A stage model is any callable ``model(costs, utils) -> ms`` over the operators of one stage.
A single operator must cost exactly its own time.  A model may also offer
``work_share(cost, util) -> ms``: a share per operator such that every stage lasts at least the
sum of its members' shares; :func:`hios.bounds.lower_bounds` uses it for the work bound (a model
without it gets the weakest honest share, 0).

* :class:`HIOSStageModel` — the rule of the HIOS simulation:
  ``alpha * sum(w) + (1 - alpha) * max(sum(w * u), max(w))`` (alpha = :data:`DEFAULT_ALPHA`, 0.5, by default).
* :class:`MeasuredStageModel` — a calibrated model: measured group times where the
  profiler recorded the group, else the HIOS rule with a fitted alpha.
* :class:`ConcurrencyStageModel` — processor sharing fitted from real timelines
  (:mod:`hios.cost.concurrency`): ``max(w) + beta * (sum(w) - max(w)) + overhead * (k - 1)``.
* :class:`OccupancyStageModel` — processor sharing whose slowdown grows with how much of the GPU
  each operator occupies: ``max(w) + sum over the others of (low + (high - low) * u) * w``, fitted
  to measured plan replays (:mod:`hios.stage_fit`).
* :class:`WorkShareStageModel` — each operator's time split into work (``w * u``, ``u`` its work
  share, :func:`hios.cost.analytic.operator_work_share`) and latency (``w * (1 - u)``): the works
  add up, the latencies overlap, ``max(max(w), sum(work) + max(lat) + gamma * (sum(lat) - max(lat)))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from ..graph import GraphError

__all__ = ["ConcurrencyStageModel", "DEFAULT_ALPHA", "HIOSStageModel", "MeasuredStageModel", "OccupancyStageModel",
           "SharingStageModel", "StageModel", "WorkShareStageModel", "stage_model_from_dict"]


#: Alpha of the HIOS stage model when nothing measured says otherwise.
DEFAULT_ALPHA = 0.5


class StageModel(Protocol):
    def __call__(self, costs: Sequence[float], utils: Sequence[float]) -> float: ...


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise GraphError(f"stage model alpha must be in [0, 1], got {alpha!r}")


@dataclass(frozen=True)
class HIOSStageModel:
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self):
        _check_alpha(self.alpha)

    def __call__(self, costs: Sequence[float], utils: Sequence[float]) -> float:
        if len(costs) == 1:
            return costs[0]
        if not costs:
            return 0.0
        total = sum(costs)
        packed = sum(w * u for w, u in zip(costs, utils))
        return self.alpha * total + (1.0 - self.alpha) * max(packed, max(costs))

    def work_share(self, cost: float, util: float) -> float:
        """Lower bound on what one operator adds to any stage: the stage time is at least
        ``alpha * sum(w) + (1 - alpha) * sum(w * u)``."""
        return cost * (self.alpha + (1.0 - self.alpha) * util)

    def to_dict(self) -> dict:
        return {"type": "hios", "alpha": self.alpha}


_ROUNDING = 5e-7  # the most round(c, 6) moves a cost


@dataclass(frozen=True)
class MeasuredStageModel:
    """Measured times of specific groups (keyed by the sorted tuple of rounded member costs),
    falling back to the HIOS rule with the given alpha."""

    alpha: float = DEFAULT_ALPHA
    groups: dict[tuple[float, ...], float] = field(default_factory=dict)

    def __post_init__(self):
        _check_alpha(self.alpha)

    def __call__(self, costs: Sequence[float], utils: Sequence[float]) -> float:
        hit = self.groups.get(tuple(sorted(round(c, 6) for c in costs))) if len(costs) > 1 else None
        return hit if hit is not None else HIOSStageModel(self.alpha)(costs, utils)

    def work_share(self, cost: float, util: float) -> float:
        """As :meth:`HIOSStageModel.work_share`, scaled down to the most favourable measured group
        (measured time / sum of member costs), so it stays a lower bound for those groups too."""
        share = HIOSStageModel(self.alpha).work_share(cost, util)
        ratios = [t / sum(k) for k, t in self.groups.items() if sum(k) > 0]
        # Groups are keyed by costs rounded to 1e-6, so a key's sum may be up to ROUNDING below the
        # members' own costs, each: shares taken from ``cost - ROUNDING`` stay below the time.
        return min([share] + [max(cost - _ROUNDING, 0.0) * r for r in ratios])

    def to_dict(self) -> dict:
        return {"type": "measured", "alpha": self.alpha,
                "groups": [{"costs": list(k), "time": v} for k, v in self.groups.items()]}


@dataclass(frozen=True)
class ConcurrencyStageModel:
    """Processor sharing: while ``m`` operators of a stage run, each advances at the rate
    ``1 / (1 + beta * (m - 1))`` of running alone, and every stream beyond the first adds a fixed
    ``overhead_ms`` (events, stream forks).  Integrating the rates phase by phase (operators sorted by
    cost, each phase ending when the next one finishes) gives the closed form
    ``max(w) + beta * (sum(w) - max(w)) + overhead_ms * (k - 1)``: ``beta = 0`` is perfect overlap,
    ``beta = 1`` runs the stage as if serialised.  The parameters are fitted from measured
    concurrent groups and from real plan replays by :mod:`hios.cost.concurrency`; utilizations are not
    used."""

    beta: float = 0.5
    overhead_ms: float = 0.0
    fit: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not 0 <= self.beta <= 1:
            raise GraphError(f"concurrency model beta must be in [0, 1], got {self.beta!r}")
        if not isinstance(self.overhead_ms, (int, float)) or self.overhead_ms < 0:
            raise GraphError(f"concurrency model overhead_ms must be >= 0, got {self.overhead_ms!r}")

    def __call__(self, costs: Sequence[float], utils: Sequence[float] = ()) -> float:
        if len(costs) == 1:
            return costs[0]
        if not costs:
            return 0.0
        top = max(costs)
        return top + self.beta * (sum(costs) - top) + self.overhead_ms * (len(costs) - 1)

    def rates(self, utils: Sequence[float]) -> list[float]:
        """Rate (share of its speed alone) of each of ``len(utils)`` operators running together
        (the per-stream ``overhead_ms`` is not part of it)."""
        return [1.0 / (1.0 + self.beta * (len(utils) - 1))] * len(utils)

    def work_share(self, cost: float, util: float) -> float:
        """Every stage lasts at least ``beta * sum(w)``."""
        return self.beta * cost

    def to_dict(self) -> dict:
        out = {"type": "concurrency", "beta": self.beta, "overhead_ms": self.overhead_ms}
        if self.fit:
            out["fit"] = dict(self.fit)
        return out


@dataclass(frozen=True)
class OccupancyStageModel:
    """Processor sharing that knows how much of the GPU each operator fills.  The stage's costliest
    operator runs at full speed; every other operator adds ``beta(u) * w`` with
    ``beta(u) = low + (high - low) * u``, ``u`` its utilization (the share of the GPU it occupies
    alone, in [0, 1]).  Small operators on a large GPU (low ``u``) overlap almost for free; operators
    that fill the GPU (``u`` near 1) add nearly their whole cost.  One set of parameters for small and
    large inputs; ``low = high`` is :class:`ConcurrencyStageModel` without overhead."""

    low: float = 0.3
    high: float = 0.7
    fit: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        for name, v in (("low", self.low), ("high", self.high)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise GraphError(f"occupancy model {name} must be in [0, 1], got {v!r}")

    def _beta(self, u: float) -> float:
        return self.low + (self.high - self.low) * min(1.0, max(0.0, u))

    def __call__(self, costs: Sequence[float], utils: Sequence[float] = ()) -> float:
        if len(costs) == 1:
            return costs[0]
        if not costs:
            return 0.0
        top = max(range(len(costs)), key=lambda i: (costs[i], -i))
        us = list(utils) if len(utils) == len(costs) else [1.0] * len(costs)
        return costs[top] + sum(self._beta(us[i]) * costs[i] for i in range(len(costs)) if i != top)

    def work_share(self, cost: float, util: float) -> float:
        """Every stage lasts at least ``sum(beta(u) * w)`` (the costliest member's ``beta <= 1``)."""
        return self._beta(util) * cost

    def to_dict(self) -> dict:
        out = {"type": "occupancy", "low": self.low, "high": self.high}
        if self.fit:
            out["fit"] = dict(self.fit)
        return out


@dataclass(frozen=True)
class WorkShareStageModel:
    """Operators of a stage share the GPU's throughput and hide each other's latency.  Each
    operator's time ``w`` is split by its utilization ``u`` (read as its *work share*: the part of
    its time that is roofline work, :func:`hios.cost.analytic.operator_work_share`) into work
    ``w * u`` and latency ``w * (1 - u)`` (kernel launches, ramp-up, tails).  The works run one after
    another at the GPU's throughput; the longest latency is paid whole and every other adds
    ``gamma`` of itself (``gamma = 0``: latencies hide completely); the stage never ends before
    its costliest operator: ``max(max(w), sum(work) + max(lat) + gamma * (sum(lat) - max(lat)))``.
    Operators that fill the GPU (``u`` = 1) serialise; latency-bound ones overlap."""

    gamma: float = 0.3
    fit: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0 <= self.gamma <= 1:
            raise GraphError(f"work-share model gamma must be in [0, 1], got {self.gamma!r}")

    def __call__(self, costs: Sequence[float], utils: Sequence[float] = ()) -> float:
        if len(costs) == 1:
            return costs[0]
        if not costs:
            return 0.0
        us = [min(1.0, max(0.0, u)) for u in utils] if len(utils) == len(costs) else [1.0] * len(costs)
        lat = [w * (1.0 - u) for w, u in zip(costs, us)]
        work = sum(w * u for w, u in zip(costs, us))
        return max(max(costs), work + max(lat) + self.gamma * (sum(lat) - max(lat)))

    def work_share(self, cost: float, util: float) -> float:
        """Every stage lasts at least the sum of its members' works ``w * u`` (plus latencies >= 0)."""
        return cost * min(1.0, max(0.0, util))

    def to_dict(self) -> dict:
        out = {"type": "workshare", "gamma": self.gamma}
        if self.fit:
            out["fit"] = dict(self.fit)
        return out


@dataclass(frozen=True)
class SharingStageModel:
    """Capacity sharing.  An operator with utilization ``u`` (read as its work share,
    :func:`hios.cost.analytic.operator_work_share`) demands ``d(u) = floor + (1 - floor) * u`` of
    the GPU while it runs: its roofline work needs that share of the GPU's throughput, and even a
    latency-bound kernel holds ``floor`` of it (its blocks occupy SMs while they wait).  While the
    running operators demand ``D`` in all, each advances at the rate ``1 / max(1, D)`` of running
    alone: operators that fit on the GPU together overlap completely, beyond that they share it.
    The stage time integrates these rates phase by phase (all members start together, a phase ends
    when the next one finishes).  ``floor = 1``: the stage runs as if serialised; ``floor = 0`` with
    latency-bound operators (``u`` near 0): they overlap for free.  :meth:`rates` is the same law
    for any set of running operators (:mod:`hios.stream_simulator`)."""

    floor: float = 0.5
    fit: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if isinstance(self.floor, bool) or not isinstance(self.floor, (int, float)) or not 0 <= self.floor <= 1:
            raise GraphError(f"sharing model floor must be in [0, 1], got {self.floor!r}")

    def demand(self, util: float) -> float:
        return self.floor + (1.0 - self.floor) * min(1.0, max(0.0, util))

    def rates(self, utils: Sequence[float]) -> list[float]:
        """Rate (share of its speed alone) of each of the operators running together."""
        total = sum(self.demand(u) for u in utils)
        return [1.0 / max(1.0, total)] * len(utils)

    def __call__(self, costs: Sequence[float], utils: Sequence[float] = ()) -> float:
        if len(costs) == 1:
            return costs[0]
        if not costs:
            return 0.0
        us = list(utils) if len(utils) == len(costs) else [1.0] * len(costs)
        order = sorted(range(len(costs)), key=lambda i: costs[i])
        t, done = 0.0, 0.0  # ``done``: progress (ms alone) every running member has made
        for k, i in enumerate(order):
            rate = self.rates([us[j] for j in order[k:]])[0]
            t += (costs[i] - done) / rate
            done = costs[i]
        return t

    def work_share(self, cost: float, util: float) -> float:
        """Every stage lasts at least ``sum(d(u) * w)``: the running members' demands, each weighted by
        its rate, add up to at most 1 per unit of time."""
        return self.demand(util) * cost

    def to_dict(self) -> dict:
        out = {"type": "sharing", "floor": self.floor}
        if self.fit:
            out["fit"] = dict(self.fit)
        return out


def stage_model_from_dict(d: dict | None) -> StageModel:
    if not d or d.get("type") == "hios":
        return HIOSStageModel(float((d or {}).get("alpha", DEFAULT_ALPHA)))
    if d.get("type") == "measured":
        groups = {tuple(float(c) for c in g["costs"]): float(g["time"]) for g in d.get("groups", [])}
        return MeasuredStageModel(float(d.get("alpha", DEFAULT_ALPHA)), groups)
    if d.get("type") == "concurrency":
        return ConcurrencyStageModel(float(d.get("beta", 0.5)), float(d.get("overhead_ms", 0.0)),
                                     dict(d.get("fit") or {}))
    if d.get("type") == "occupancy":
        return OccupancyStageModel(float(d.get("low", 0.3)), float(d.get("high", 0.7)), dict(d.get("fit") or {}))
    if d.get("type") == "workshare":
        return WorkShareStageModel(float(d.get("gamma", 0.3)), dict(d.get("fit") or {}))
    if d.get("type") == "sharing":
        return SharingStageModel(float(d.get("floor", 0.5)), dict(d.get("fit") or {}))
    raise GraphError(f"unknown stage model type {d.get('type')!r} (expected 'hios', 'measured', 'concurrency', "
                     "'occupancy', 'workshare' or 'sharing')")
