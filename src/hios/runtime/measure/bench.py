"""Measurements shared by ``hios run`` and ``benchmarks/runtime.py``: correctness check of a
compiled plan against the model, its latency, the PyTorch baselines (eager, CUDA-graph replay,
``torch.compile`` reduce-overhead without and with Inductor freezing; :func:`best_compile` is the
faster of the two, the one headline ratios are taken against) and the simulator's prediction.  All timing goes through :mod:`hios.cost.timing` (CUDA events, median of repeats after
warm-up; wall clock on CPU)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils._pytree as pytree

from ...errors import HiosError
from ...options import TimingOptions
from ...cost.timing import TimingStats, cuda_graph_time, event_time, wall_time

__all__ = ["COMPILE_BASELINES", "CheckResult", "RTOL_FP32", "RTOL_TF32", "baselines", "best_compile",
           "compare_outputs", "compile_reduce_overhead", "predicted_latency", "time_call", "time_replay"]

#: Tolerance of the check: max |out - ref| over max |ref| (fp32).
RTOL_FP32 = 1e-4
#: ... when TF32 tensor cores are allowed (reference and plan round differently).
RTOL_TF32 = 1e-2


@dataclass
class CheckResult:
    max_abs_diff: float
    scale: float
    rel: float
    ok: bool
    tolerance: float

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "output_scale": self.scale, "relative": self.rel,
                "ok": self.ok, "tolerance": self.tolerance}


def compare_outputs(out, ref, tolerance: float = RTOL_FP32) -> CheckResult:
    """Same structure, shapes and dtypes, and max |out - ref| <= tolerance * max |ref| (NaN fails)."""
    lo, so = pytree.tree_flatten(out)
    lr, sr = pytree.tree_flatten(ref)
    if so != sr or len(lo) != len(lr):
        raise HiosError(f"output structure differs from the model's: {so} vs {sr}")
    diff, scale = 0.0, 0.0
    for a, b in zip(lo, lr):
        if isinstance(b, torch.Tensor):
            if not isinstance(a, torch.Tensor) or a.shape != b.shape or a.dtype != b.dtype:
                got = (tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else type(a).__name__
                raise HiosError(f"output differs from the model's: {got} vs {(tuple(b.shape), b.dtype)}")
            a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
            d = (a64 - b64).abs().max().item() if a.numel() else 0.0
            if d != d:
                d = float("inf")
            diff = max(diff, d)
            scale = max(scale, b64.abs().max().item() if b.numel() else 0.0)
        elif a != b:
            raise HiosError(f"output differs from the model's: {a!r} vs {b!r}")
    rel = diff / scale if scale > 0 else diff
    return CheckResult(diff, scale, rel, rel <= tolerance, tolerance)


def time_call(fn, args, device: torch.device, s: TimingOptions) -> TimingStats:
    """Per-call latency: CUDA events around back-to-back calls on a GPU, wall clock on a CPU."""
    if device.type == "cuda":
        return event_time(fn, args, warmup=s.warmup, repeats=s.repeats, inner=s.inner, device=device)
    return wall_time(fn, args, warmup=min(s.warmup, 2), repeats=max(3, s.repeats // 3), inner=1)


def time_replay(module, device: torch.device, s: TimingOptions) -> TimingStats | None:
    """GPU time of one replay of a compiled plan's CUDA graph (graph mode only)."""
    if getattr(module, "_graph", None) is None:
        return None
    return event_time(module.replay, (), warmup=s.warmup, repeats=s.repeats, inner=s.inner, device=device)


#: The torch.compile baselines; headline ratios are against the faster of them.
COMPILE_BASELINES = ("compile", "compile_freezing")


def compile_reduce_overhead(model, x: tuple, freezing: bool):
    """``torch.compile(model, mode="reduce-overhead")``, compiled and recorded by three calls;
    with ``freezing`` Inductor's freezing (``torch._inductor.config.freezing``: parameters folded
    into constants) is on while it compiles.  Dynamo's caches are reset first so that the two
    variants never share a compiled graph."""
    import torch._dynamo
    import torch._inductor.config as inductor_config
    torch._dynamo.reset()
    compiled = torch.compile(model, mode="reduce-overhead")
    with inductor_config.patch(freezing=freezing):
        for _ in range(3):  # compile, record, then replay
            compiled(*x)
    return compiled


def best_compile(results: dict[str, dict]) -> tuple[str, dict] | None:
    """The faster measured torch.compile baseline of ``results`` (None when neither was measured)."""
    ok = [(results[k]["median_ms"], k) for k in COMPILE_BASELINES if "median_ms" in (results.get(k) or {})]
    if not ok:
        return None
    _, name = min(ok)
    return name, results[name]


def baselines(model, x: tuple, device: torch.device, s: TimingOptions,
              which=("eager", "cuda_graph", "compile", "compile_freezing"), progress=None) -> dict[str, dict]:
    """The model itself on one device: eager calls, plain CUDA-graph replay, and
    ``torch.compile(mode="reduce-overhead")`` without and with freezing.  Each entry: TimingStats
    dict, or {"error": ...}."""
    out: dict[str, dict] = {}
    with torch.no_grad():
        for name in which:
            if progress:
                progress(name)
            try:
                if name == "eager":
                    st = time_call(model, x, device, s)
                elif name == "cuda_graph":
                    if device.type != "cuda":
                        continue
                    st = cuda_graph_time(model, x, warmup=s.warmup, repeats=s.repeats, inner=s.inner, device=device)
                elif name in COMPILE_BASELINES:
                    if device.type != "cuda":
                        continue
                    compiled = compile_reduce_overhead(model, x, freezing=name == "compile_freezing")
                    st = time_call(compiled, x, device, s)
                    del compiled
                else:
                    raise HiosError(f"unknown baseline {name!r}")
                out[name] = st.to_dict()
            except HiosError:
                raise
            except Exception as e:  # a baseline that cannot run is reported, not fatal
                out[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    return out


def predicted_latency(plan=None, graph=None, schedule=None, machine=None, stage_model=None) -> float | None:
    """The simulator's latency for the plan's schedule (None without a costed graph)."""
    from ...simulator import Simulator
    from ...machine import Machine
    graph = graph if graph is not None else getattr(plan, "graph", None)
    schedule = schedule if schedule is not None else getattr(plan, "schedule", None)
    if graph is None or schedule is None or graph.total_work() <= 0:
        return None
    machine = machine or getattr(plan, "machine", None) or Machine(max(1, schedule.gpus))
    if stage_model is None and plan is not None and getattr(plan, "stage_model", None):
        try:
            stage_model = plan.stage_model_object()
        except (ValueError, KeyError, TypeError):
            stage_model = None
    if stage_model is None:
        stage_model = _stage_model_of(graph)
    return Simulator(graph, machine, stage_model).simulate(schedule).latency


def _stage_model_of(graph):
    """The stage model a profile fitted (graph.meta['profile']['stage_model']), if any."""
    from ...cost.costmodel import stage_model_from_dict
    prof = graph.meta.get("profile") if isinstance(graph.meta, dict) else None
    d = prof.get("stage_model") if isinstance(prof, dict) else None
    try:
        return stage_model_from_dict(d) if isinstance(d, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
