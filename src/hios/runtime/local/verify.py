"""Never a wrong module: check a built plan against ``model(x)`` and rebuild what is at fault.

:func:`verified` is what :func:`hios.optimize` and :func:`hios.load` return through.  Steps:

  1. Build the runtime with the asked levers and compare its output on the example inputs with
     ``model(*x)`` (:func:`hios.runtime.measure.bench.compare_outputs`, fp32 or TF32 tolerance).  Right:
     return it.
  2. Localise (:func:`faulty_segments`): run the program once without the CUDA graph keeping
     every value, and run each segment alone on reference values (the captured graph interpreted
     on the segment's device) laid out exactly as the run laid them out; a segment whose output
     differs from the reference is at fault by itself.
  3. Rebuild at the finest grain that explains it: a faulty segment with fused epilogues runs
     without them, any other faulty segment with eager kernels
     (:class:`~hios.program.levers.Levers` ``unfused`` / ``eager``); check again.
  4. Still wrong, or no segment wrong alone (an interaction between segments): rebuild without
     each active lever in turn (concatenation in place, merged segments, stream priorities, fused
     epilogues), then with none; the first build that is right is kept.
  5. One warning names what was dropped, where, and the error before and after; when no build is
     right, a :class:`~hios.errors.HiosError` names the model, the levers and the error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Callable

import torch

from ...errors import HiosError
from ..measure.bench import RTOL_FP32, RTOL_TF32, CheckResult, compare_outputs
from ...program.levers import Levers

__all__ = ["Fault", "check_against", "faulty_segments", "reference", "verified"]


@dataclass(frozen=True)
class Fault:
    """A segment whose output differs from the reference when it runs alone on right inputs."""

    ops: tuple[str, ...]
    fused: int          # convolution epilogues fused in it
    relative: float     # max |out - ref| / max |ref| over its outputs

    def where(self) -> str:
        return f"segment {self.ops[0]}..{self.ops[-1]}" if len(self.ops) > 1 else f"segment {self.ops[0]}"


def _model_device(model) -> torch.device:
    p = next(iter(model.parameters()), None)
    if p is None:
        p = next(iter(model.buffers()), None)
    return p.device if p is not None else torch.device("cpu")


def reference(model, inputs: tuple):
    """``model(*inputs)`` on the model's own device (nothing is moved), without gradients."""
    dev = _model_device(model)
    with torch.no_grad():
        return model(*[t.to(dev) if isinstance(t, torch.Tensor) else t for t in inputs])


def check_against(module, inputs: tuple, ref, tf32: bool) -> CheckResult:
    """``module(*inputs)`` (inputs on the module's first device) against ``ref`` at the fp32 or
    TF32 tolerance."""
    return _check(module, inputs, ref, RTOL_TF32 if tf32 else RTOL_FP32)


def _check(module, inputs: tuple, ref, tolerance: float) -> CheckResult:
    devices = getattr(module, "devices", None)
    dev = torch.device(devices[0]) if devices else _model_device(module)
    with torch.no_grad():
        out = module(*[t.to(dev) if isinstance(t, torch.Tensor) else t for t in inputs])
    return compare_outputs(out, ref, tolerance)


def _node_values(runtime, inputs: tuple, want: set[str], device: str) -> dict[str, torch.Tensor]:
    """Reference values of the nodes in ``want``: the captured graph interpreted on ``device``."""
    from .executor import place_module
    gm = place_module(runtime.captured.gm, torch.device(device), False, {})
    keep: dict[str, torch.Tensor] = {}

    class _Keep(torch.fx.Interpreter):
        def run_node(self, n):
            v = super().run_node(n)
            if n.name in want and isinstance(v, torch.Tensor):
                keep[n.name] = v
            return v

    with torch.no_grad():
        _Keep(gm).run(*[t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs])
    return keep


def _like(actual: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` laid out with ``actual``'s strides on its device."""
    return torch.empty_strided(actual.shape, actual.stride(), dtype=actual.dtype,
                               device=actual.device).copy_(value)


def faulty_segments(runtime, inputs: tuple, tolerance: float) -> list[Fault]:
    """Step 2: the segments of ``runtime`` that are wrong alone, worst first.  Segments that read or
    write concatenation slices (concatenation in place) are judged only through step 4."""
    from .executor import SLICE
    env = runtime.values(*inputs)
    faults = []
    by_mem: dict[str, list] = {}
    for seg in runtime.segments:
        if not seg.skip and not any(n.startswith(SLICE) for n in seg.inputs):
            by_mem.setdefault(seg.mem, []).append(seg)
    for mem, segs in by_mem.items():
        want = {n for s in segs for n in (*s.inputs, *s.outputs)}
        ref = _node_values(runtime, inputs, want, mem)
        for seg in segs:
            if not all(n in ref and n in env[mem] for n in (*seg.inputs, *seg.outputs)):
                continue
            args = [_like(env[mem][n], ref[n]) for n in seg.inputs]
            with torch.no_grad():
                outs = seg.fn(*args)
            outs = outs if isinstance(outs, (tuple, list)) else (outs,)
            rel = max(compare_outputs(o, ref[n], tolerance).rel for o, n in zip(outs, seg.outputs))
            if rel > tolerance:
                faults.append(Fault(tuple(seg.step.ops), seg.fused, rel))
        del ref
    return sorted(faults, key=lambda f: -f.relative)


def _segment_repair(levers: Levers, faults: list[Fault], kernels: str) -> tuple[Levers, str] | None:
    """Step 3: levers with the faulty segments unfused (when fused) or eager; None if nothing to change."""
    unfused = {op for f in faults if f.fused and levers.fuses(f.ops) for op in f.ops}
    eager = {op for f in faults if not (f.fused and levers.fuses(f.ops)) and kernels == "inductor"
             for op in f.ops}
    if not unfused and not eager:
        return None
    parts = []
    if unfused:
        parts.append("without fused epilogues: " + ", ".join(f.where() for f in faults if f.ops[0] in unfused))
    if eager:
        parts.append("with eager kernels: " + ", ".join(f.where() for f in faults if f.ops[0] in eager))
    return (replace(levers, unfused=levers.unfused | unfused, eager=levers.eager | eager),
            "rebuilt " + "; ".join(parts))


_LEVER_OFF = (("concat_inplace", {"concat_inplace": False}), ("merge_segments", {"merge_segments": False}),
              ("priority", {"priority": "none"}), ("fuse_epilogues", {"fuse_epilogues": False}),
              ("cudnn_benchmark", {"cudnn_benchmark": False}))


def _lever_repairs(levers: Levers):
    """Step 4: (levers, what was dropped) without each active lever, then without all of them."""
    active = [(name, off) for name, off in _LEVER_OFF if replace(levers, **off) != levers]
    for name, off in active:
        yield replace(levers, **off), f"rebuilt without the {name} lever"
    none = Levers(fuse_epilogues=False)
    if len(active) > 1 or (levers.unfused or levers.eager) and levers != none:
        yield none, "rebuilt without any lever"


def verified(build: Callable[[Levers], object], model, inputs: tuple, levers: Levers, *, tf32: bool,
             name: str = "model", built=None):
    """Steps 1-5: ``build(levers)`` makes a runtime (a :class:`hios.runtime.local.executor.HiosModule`;
    ``built``: the one of ``levers``, made already); the returned one computes ``model(*inputs)``
    within the tolerance, or a HiosError is raised."""
    tol = RTOL_TF32 if tf32 else RTOL_FP32
    ref = reference(model, inputs)
    runtime = built if built is not None else build(levers)
    first = _check(runtime, inputs, ref, tol)
    if first.ok:
        return runtime
    tried = [f"levers {levers.label()}: relative error {first.rel:.3g}"]
    faults = faulty_segments(runtime, inputs, tol)
    found = ("; wrong alone: " + ", ".join(f"{f.where()} ({f.relative:.2g})" for f in faults[:3])) if faults else ""
    repairs = []
    seg = _segment_repair(levers, faults, runtime.kernels)
    if seg is not None:
        repairs.append(seg)
    repairs += list(_lever_repairs(seg[0] if seg is not None else levers))
    for lv, what in repairs:
        del runtime
        runtime = build(lv)
        chk = _check(runtime, inputs, ref, tol)
        if chk.ok:
            warnings.warn(f"hios: {name}: the plan's output differed from model(x) (relative error {first.rel:.3g}, "
                          f"tolerance {tol:g}, levers {levers.label()}{found}); {what}: relative error now "
                          f"{chk.rel:.2g}", stacklevel=3)
            return runtime
        tried.append(f"levers {lv.label()}: relative error {chk.rel:.3g}")
    raise HiosError(f"{name}: the plan's output differs from model(x) beyond the tolerance {tol:g} with every "
                    f"lever setting tried ({'; '.join(tried)}){found}")
