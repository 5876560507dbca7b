"""Concurrency model: how much operators that run at the same time on one GPU slow each other.

The model is :class:`hios.cost.costmodel.ConcurrencyStageModel` (processor sharing: while ``m``
operators run, each advances at ``1 / (1 + beta * (m - 1))`` of its speed alone, plus a fixed
``overhead_ms`` per extra stream).  This module fits its two parameters from measurements; every
function is pure and torch-free.

Steps of :func:`fit_concurrency`:

1. Observations, from two sources:

   a. *measured groups* (the profiler times sibling operators captured concurrently, one stream
      each): ``{"costs": [w...], "time": T}``.  The model says
      ``T - max(w) = beta * (sum(w) - max(w)) + overhead * (k - 1)``.
   b. *real plan runs* (:mod:`hios.runtime.measure.trace`): measured intervals of the plan's segments
      on the streams of one physical device, and each segment's cost alone ``c``.  Over its
      interval a segment shares the device with ``m`` segments on average
      (:func:`mean_concurrency`, a time average), so the model says ``d - c = beta * c * (m - 1)``
      for its measured duration ``d``.
   c. *kernel timelines of real replays* (CUDA-graph replays have no per-segment ranges): the
      kernels' measured intervals and the total cost alone ``C`` of what they run (the plan's
      segments timed alone).  Summed over the kernels, ``sum(d) - C = beta * sum(c_k (m_k - 1))``
      with the unknown ``c_k`` taken as ``d_k * C / sum(d)`` (:func:`timeline_row`).

2. Every observation is one linear equation in ``(beta, overhead)``; they are solved together by
   least squares on relative errors (each equation weighted by ``1 / measured²``) inside the box
   ``0 <= beta <= 1``, ``overhead >= 0`` (:func:`_box_lsq`: the unconstrained solution, else the
   best solution on the box's edges).

:func:`fit_beta_to_latency` is the third source: the ``beta`` at which the simulator's latency
of a whole plan equals the measured latency (bisection; the simulated latency only grows with
``beta``).  :func:`prediction_error` and :func:`choose_stage_model` compare stage models on the same
observations, so the default model is the one that predicts better.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence

from .costmodel import ConcurrencyStageModel
from ..errors import HiosError

__all__ = ["Interval", "Row", "choose_stage_model", "fit_beta_to_latency", "fit_concurrency", "group_rows",
           "interval_rows", "mean_concurrency", "prediction_error", "timeline_row"]


@dataclass(frozen=True)
class Interval:
    """A measured run of one thing (a segment) on a physical device, ``start``/``end`` in ms."""

    key: Hashable
    device: Hashable
    start: float
    end: float


@dataclass(frozen=True)
class Row:
    """One linear observation ``y = a * beta + b * overhead`` with weight ``w``."""

    a: float
    b: float
    y: float
    w: float


# -- step 1: observations -------------------------------------------------------------------------

def group_rows(groups: Sequence[dict]) -> list[Row]:
    """Rows of measured groups ``{"costs": [...], "time": T}`` (groups of fewer than 2 ignored)."""
    rows = []
    for g in groups:
        w = [float(c) for c in g["costs"]]
        t = float(g["time"])
        if len(w) < 2 or t <= 0:
            continue
        top = max(w)
        rows.append(Row(sum(w) - top, len(w) - 1.0, t - top, 1.0 / (t * t)))
    return rows


def mean_concurrency(intervals: Sequence[Interval]) -> dict[Hashable, float]:
    """For every interval, 1 + the time-averaged number of *other* intervals of the same device that
    overlap it (an interval of zero length gets 1)."""
    by_dev: dict[Hashable, list[Interval]] = {}
    for iv in intervals:
        by_dev.setdefault(iv.device, []).append(iv)
    out: dict[Hashable, float] = {}
    for ivs in by_dev.values():
        for iv in ivs:
            dur = iv.end - iv.start
            if dur <= 0:
                out[iv.key] = 1.0
                continue
            shared = sum(max(0.0, min(iv.end, o.end) - max(iv.start, o.start)) for o in ivs if o is not iv)
            out[iv.key] = 1.0 + shared / dur
    return out


def interval_rows(intervals: Sequence[Interval], alone: dict[Hashable, float]) -> list[Row]:
    """Rows of measured segment intervals against each segment's cost alone (``alone[key]``, ms)."""
    conc = mean_concurrency(intervals)
    rows = []
    for iv in intervals:
        c = alone.get(iv.key)
        d = iv.end - iv.start
        if c is None or c <= 0 or d <= 0:
            continue
        rows.append(Row(c * (conc[iv.key] - 1.0), 0.0, d - c, 1.0 / (d * d)))
    return rows


def timeline_row(kernels: Sequence[Interval], alone_total: float) -> Row:
    """One row from a kernel timeline (all kernels of some replays) and the total cost alone of
    what those replays ran (source c above)."""
    conc = mean_concurrency(kernels)
    d = [iv.end - iv.start for iv in kernels]
    total = sum(d)
    if total <= 0 or alone_total <= 0:
        raise HiosError("cannot use an empty kernel timeline")
    scale = alone_total / total
    a = sum(dk * scale * (conc[iv.key] - 1.0) for dk, iv in zip(d, kernels))
    return Row(a, 0.0, total - alone_total, 1.0 / (total * total))


# -- step 2: least squares in the box -------------------------------------------------------------

def _sse(rows: Sequence[Row], beta: float, over: float) -> float:
    return sum(r.w * (r.a * beta + r.b * over - r.y) ** 2 for r in rows)


def _one(rows: Sequence[Row], pick: Callable[[Row], float], rest: Callable[[Row], float]) -> float | None:
    """Least-squares ``x`` of ``y - rest(r) = pick(r) * x`` (None when not identifiable)."""
    num = sum(r.w * pick(r) * (r.y - rest(r)) for r in rows)
    den = sum(r.w * pick(r) ** 2 for r in rows)
    return num / den if den > 1e-18 else None


def _box_lsq(rows: Sequence[Row], with_overhead: bool) -> tuple[float, float]:
    """``(beta, overhead)`` minimising the weighted squared error with ``0 <= beta <= 1``,
    ``overhead >= 0`` (``overhead`` fixed at 0 unless ``with_overhead``)."""
    cands: list[tuple[float, float]] = []
    saa = sum(r.w * r.a * r.a for r in rows)
    sbb = sum(r.w * r.b * r.b for r in rows)
    sab = sum(r.w * r.a * r.b for r in rows)
    say = sum(r.w * r.a * r.y for r in rows)
    sby = sum(r.w * r.b * r.y for r in rows)
    det = saa * sbb - sab * sab
    if with_overhead and det > 1e-12 * max(saa * sbb, 1e-30):
        beta, over = (say * sbb - sby * sab) / det, (saa * sby - sab * say) / det
        if 0 <= beta <= 1 and over >= 0:
            return beta, over
    # the box's edges: overhead = 0 with free beta, and beta at 0 or 1 with free overhead
    b0 = _one(rows, lambda r: r.a, lambda r: 0.0)
    cands.append((min(1.0, max(0.0, b0)) if b0 is not None else 0.5, 0.0))
    if with_overhead:
        for beta in (0.0, 1.0):
            o = _one(rows, lambda r: r.b, lambda r, b=beta: r.a * b)
            cands.append((beta, max(0.0, o) if o is not None else 0.0))
    return min(cands, key=lambda c: _sse(rows, *c))


def fit_concurrency(groups: Sequence[dict] = (), intervals: Sequence[Interval] = (),
                    alone: dict[Hashable, float] | None = None, timelines: Sequence[Row] = (),
                    with_overhead: bool = True) -> ConcurrencyStageModel:
    """Fit ``beta`` and ``overhead_ms`` to measured groups, measured segment intervals (with
    ``alone``: each interval's cost alone) and kernel-timeline rows (:func:`timeline_row`).
    Raises :class:`HiosError` without observations, or when none of them shows operators
    overlapping (then beta is not identifiable)."""
    rows = group_rows(groups) + (interval_rows(intervals, alone or {}) if intervals else []) + list(timelines)
    if not rows:
        raise HiosError("cannot fit the concurrency model: no measured concurrent groups or intervals")
    if not any(r.a > 0 or r.b > 0 for r in rows):
        raise HiosError("cannot fit the concurrency model: nothing measured ran concurrently")
    beta, over = _box_lsq(rows, with_overhead and any(r.b for r in rows))
    rel = [math.sqrt(r.w) * abs(r.a * beta + r.b * over - r.y) for r in rows]
    ng = len(group_rows(groups))
    fit = {"groups": ng, "intervals": len(rows) - ng - len(timelines), "timelines": len(timelines),
           "mean_rel_error": sum(rel) / len(rel)}
    return ConcurrencyStageModel(beta, over, fit)


def fit_beta_to_latency(latency_at: Callable[[float], float], measured: float, tol: float = 1e-4) -> float:
    """The ``beta`` in [0, 1] at which ``latency_at(beta)`` (a simulated plan latency, non-decreasing
    in beta) equals ``measured``; 0 or 1 when the measurement lies outside the simulated range."""
    lo, hi = 0.0, 1.0
    if latency_at(lo) >= measured:
        return lo
    if latency_at(hi) <= measured:
        return hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if latency_at(mid) < measured:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# -- step 3: compare ------------------------------------------------------------------------------

def prediction_error(model, groups: Sequence[dict], utils: dict[str, float] | None = None) -> float | None:
    """Mean |predicted - measured| / measured of a stage model over measured groups (None: no groups)."""
    errs = []
    for g in groups:
        if len(g["costs"]) < 2 or g["time"] <= 0:
            continue
        u = [(utils or {}).get(n, 1.0) for n in g.get("ops", [""] * len(g["costs"]))]
        errs.append(abs(model(list(g["costs"]), u) - g["time"]) / g["time"])
    return sum(errs) / len(errs) if errs else None


def choose_stage_model(candidates: dict[str, object], groups: Sequence[dict],
                       utils: dict[str, float] | None = None) -> tuple[str, dict[str, float | None]]:
    """The name of the candidate that predicts the measured groups best, and every candidate's error.
    Without groups the first candidate wins."""
    errors = {name: prediction_error(m, groups, utils) for name, m in candidates.items()}
    scored = [(e, k) for k, (name, e) in enumerate(errors.items()) if e is not None]
    if not scored:
        return next(iter(candidates)), errors
    return list(candidates)[min(scored)[1]], errors
