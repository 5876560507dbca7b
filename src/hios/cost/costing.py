"""Cost a captured model: every operator gets a time in ms and a utilization, plus the stage model
that prices concurrent groups.  The cost step of :func:`hios.pipeline.plan_model`.

Steps of :func:`cost_captured`:

  1. Resolve the source (:func:`resolve_source`), before any capture work: ``None`` profiles a
     present GPU (else the analytic H100 model); ``"profile"`` measures on a device; an analytic GPU
     name uses :mod:`hios.cost.analytic`; anything else must be a profile file
     (``hios profile -o``) of the same model and input shape.
  2. Cost: measure (:func:`hios.cost.profiler.profile_detailed`), compute, or align the file's
     operators with the capture by structure (:func:`hios.cost.analytic.align_operators`).
  3. Calibrate measured costs: utilizations from measured time against the device's peaks, and the
     stage model refitted to the measured concurrent groups; a profile fed back from a run
     (``hios run --feedback-to``) carries a stage model fitted to that run's measured latency
     (``profile.replay_fit``), which is used instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from .costmodel import DEFAULT_ALPHA, HIOSStageModel, StageModel, stage_model_from_dict
from ..errors import HiosError, HiosWarning, option
from ..formats import load_graph
from ..graph import Graph
from .options import ANALYTIC_GPUS, CostOptions

__all__ = ["Costed", "cost_captured", "resolve_source"]


@dataclass(frozen=True)
class Costed:
    """A costed graph, where its costs came from (``profile:<file|cache>`` or ``analytic:<gpu>``)
    and the stage model its concurrent groups are priced with."""

    graph: Graph
    source: str
    stage_model: StageModel


@dataclass(frozen=True)
class _Source:
    kind: str                     # "profile" | "analytic" | "file"
    gpu: str | None = None        # analytic GPU
    measured: Graph | None = None  # the profile file's graph
    where: str = ""


def _gpu_present() -> bool:
    import torch
    return bool(torch.cuda.is_available())


def resolve_source(opts: CostOptions) -> _Source:
    """Step 1: what ``opts.source`` names, checked before any capture (a missing file fails fast)."""
    src = opts.source
    if src is None:
        if (opts.device or "").startswith("cpu") or _gpu_present():
            return _Source("profile")
        return _Source("analytic", "h100")
    if src == "profile":
        if opts.device is None and not _gpu_present():
            raise HiosError(f"{option('cost', 'profile')} needs a GPU and none is available; use "
                            f"{option('cost', 'h100')} (analytic) or a measured profile file")
        return _Source("profile")
    if src in ANALYTIC_GPUS:
        return _Source("analytic", src)
    if not Path(src).is_file():
        raise HiosError(f"{option('cost')} {src!r} is neither 'profile', a GPU ({', '.join(ANALYTIC_GPUS)}) nor an existing file")
    return _Source("file", measured=load_graph(src), where=src)


def cost_captured(captured, opts: CostOptions, source: _Source | None = None, progress: bool = True) -> Costed:
    """Steps 2–3 for ``captured`` (a :class:`hios.frontend.capture.Captured`)."""
    source = source or resolve_source(opts)
    if source.kind == "analytic":
        from .analytic import costed_graph
        return Costed(costed_graph(captured, source.gpu), f"analytic:{source.gpu}", _hios_model(opts))
    if source.kind == "profile":
        return _measured(captured, opts, progress)
    return _from_file(captured, source, opts)


def _hios_model(opts: CostOptions) -> HIOSStageModel:
    return HIOSStageModel(DEFAULT_ALPHA if opts.alpha is None else opts.alpha)


def _calibrated(graph: Graph, opts: CostOptions) -> tuple[Graph, StageModel]:
    """Step 3: measured utilizations and the fitted stage model (``opts.alpha`` overrides the fit)."""
    from .profiler import calibrate
    graph, stage = calibrate(graph)
    return graph, stage if opts.alpha is None else replace(stage, alpha=opts.alpha)


def _measured(captured, opts: CostOptions, progress: bool) -> Costed:
    from .profiler import profile_detailed
    res = profile_detailed(captured, device=opts.device or "cuda:0", kernels=opts.kernels, progress=progress)
    graph, stage = _calibrated(res.graph, opts)
    where = res.cache_path or graph.meta.get("profile", {}).get("device", "measured")
    return Costed(graph, f"profile:{where}", stage)


def _input_shapes(captured) -> list[list[int]]:
    return [list(x.shape) for x in captured.example_inputs if hasattr(x, "shape")]


def _conv_tf32(precision: str) -> bool:
    return precision in ("tf32", "tf32-conv")  # convolutions dominate these models


def _from_file(captured, source: _Source, opts: CostOptions) -> Costed:
    from .analytic import align_operators
    measured = align_operators(captured.graph, source.measured, f"profile {source.where}")
    prof = measured.meta.get("profile", {})
    shapes = [i.get("shape") for i in prof.get("inputs", []) if isinstance(i, dict)]
    if shapes and shapes != _input_shapes(captured):
        raise HiosError(f"profile {source.where} was measured with input shape(s) {shapes}, the model has "
                        f"{_input_shapes(captured)}")
    graph = captured.graph.with_costs({op.name: op.cost for op in measured.ops},
                                      {op.name: op.utilization for op in measured.ops})
    graph.meta = {**captured.graph.meta, "profile": prof} if prof else dict(captured.graph.meta)
    where = f"profile:{source.where}"
    if not prof:
        return Costed(graph, where, _hios_model(opts))
    run_precision = "tf32" if opts.tf32 else "fp32"
    if prof.get("precision") and _conv_tf32(prof["precision"]) != opts.tf32:
        warnings.warn(HiosWarning(f"hios: profile {source.where} was measured in {prof['precision']} precision, "
                                  f"this run uses {run_precision} ({option('tf32')} selects tf32): predicted times "
                                  "may be off"), stacklevel=2)
    fit = prof.get("replay_fit")
    if opts.alpha is None and isinstance(fit, dict) and isinstance(fit.get("model"), dict):
        # fitted to a measured replay with the file's costs and utilizations: used as they are
        return Costed(graph, where, stage_model_from_dict(fit["model"]))
    graph, stage = _calibrated(graph, opts)
    return Costed(graph, where, stage)
