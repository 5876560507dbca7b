"""Torch-free fitting of measured costs, beside the cost model it feeds.

* :func:`fit_alpha` — the HIOS stage model's alpha from measured concurrent groups.
* :func:`fit_transfer` — ``latency + bytes / bandwidth`` from measured copies.
* :func:`calibrate` — a profile's utilizations from its measured times, and its stage models
  refitted to its measured groups: the HIOS rule (:class:`MeasuredStageModel`, returned, as
  before) and the concurrency model (:class:`ConcurrencyStageModel`, stored beside it in
  ``meta.profile.concurrency`` with both models' errors on the groups).
"""

from __future__ import annotations

from typing import Sequence

from .costmodel import DEFAULT_ALPHA, HIOSStageModel, MeasuredStageModel
from ..graph import Graph

__all__ = ["calibrate", "fit_alpha", "fit_transfer"]


def fit_alpha(groups: Sequence[dict], utils: dict[str, float]) -> dict:
    """Least-squares alpha of ``T = alpha*sum(w) + (1-alpha)*M`` over measured groups, with
    ``M = max(sum(w*u), max(w))``.  If every operator has utilization 1, M equals the sum and alpha is
    not identifiable; then ``M = max(w)`` is used (perfect packing) and ``basis`` says so."""
    def solve(use_util: bool):
        num = den = 0.0
        for g in groups:
            w = g["costs"]
            s = sum(w)
            m = max(max(w), sum(c * utils.get(n, 1.0) for c, n in zip(w, g["ops"]))) if use_util else max(w)
            d = s - m
            num += d * (g["time"] - m)
            den += d * d
        return (num / den, den) if den > 1e-18 else (None, den)
    alpha, _ = solve(True)
    basis = "utilization"
    if alpha is None:
        alpha, _ = solve(False)
        basis = "max"
    if alpha is None:
        return {"alpha": None, "basis": None, "groups": len(groups), "clipped_from": None}
    clipped = min(1.0, max(0.0, alpha))
    return {"alpha": clipped, "basis": basis, "groups": len(groups),
            "clipped_from": None if clipped == alpha else alpha}


def calibrate(graph: Graph) -> tuple[Graph, MeasuredStageModel]:
    """Utilizations from measured times (:func:`hios.cost.analytic.measured_utilization` on the
    profiled device) and the stage model refitted to the profile's measured groups with them.

    A profile measures costs; the share of the GPU each operator leaves idle follows from its cost
    and its FLOPs/bytes.  Without this every utilization stays 1 and the HIOS stage model prices any
    group at the sum of its members, so no schedule would ever use parallel streams.  Idempotent:
    works on fresh profiles and on profile files written before it existed."""
    from .analytic import measured_utilization, spec_for_device

    prof = graph.meta.get("profile") or {}
    spec = spec_for_device(str(prof.get("device", "")))
    utils = {op.name: measured_utilization(op.meta, op.cost, spec) for op in graph.ops}
    groups = prof.get("groups") or []
    fit = fit_alpha(groups, utils) if groups else {"alpha": None}
    alpha = fit["alpha"] if fit.get("alpha") is not None else DEFAULT_ALPHA
    stage = MeasuredStageModel(alpha, {tuple(sorted(round(c, 6) for c in g["costs"])): g["time"] for g in groups})
    out = graph.with_costs(graph.costs, utils)
    if prof:
        out.meta = {**graph.meta, "profile": {**prof, "stage_model": {**stage.to_dict(), "fit": fit},
                                              "concurrency": _concurrency_fit(groups, alpha, utils),
                                              "utilization": f"measured:{spec.name}"}}
    return out, stage


def _concurrency_fit(groups: Sequence[dict], alpha: float, utils: dict[str, float]) -> dict | None:
    """The concurrency model fitted to the groups, and which of it and the HIOS rule (at the fitted
    alpha, without the exact group times) predicts the groups better."""
    from .concurrency import choose_stage_model, fit_concurrency
    from ..errors import HiosError
    try:
        conc = fit_concurrency(groups)
    except HiosError:
        return None
    better, errors = choose_stage_model({"hios": HIOSStageModel(alpha), "concurrency": conc}, groups, utils)
    return {**conc.to_dict(), "errors_on_groups": errors, "better_on_groups": better}


def fit_transfer(points: Sequence[tuple[int, float]]) -> dict | None:
    """Fit ``ms = latency + bytes / bandwidth`` (latency in µs, bandwidth in GB/s) by least squares
    on relative errors (weights 1/t²), so small copies weigh as much as large ones."""
    pts = [(float(b), float(t)) for b, t in points if t > 0]
    if len(pts) < 2:
        return None
    sw = sx = sy = sxx = sxy = 0.0
    for b, t in pts:
        w = 1.0 / (t * t)
        sw += w
        sx += w * b
        sy += w * t
        sxx += w * b * b
        sxy += w * b * t
    det = sw * sxx - sx * sx
    if det <= 0:
        return None
    slope = (sw * sxy - sx * sy) / det  # ms per byte
    icpt = (sy - slope * sx) / sw
    return {"latency_us": max(0.0, icpt) * 1e3, "bandwidth_gbps": (1.0 / (slope * 1e6)) if slope > 0 else None,
            "points": [[int(b), t] for b, t in pts]}
