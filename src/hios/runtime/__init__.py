"""Runtime — the stage after the program (graph → capture → cost → schedulers/simulator → program →
**runtime** → pipeline → CLI): a plan of a PyTorch model run on devices and streams, and measured.

* :mod:`hios.runtime.local` — one process: the executor (:func:`compile`), CUDA-graph and stream
  modes, fused epilogues, concatenation in place, the check against ``model(x)``.
* :mod:`hios.runtime.distributed` — one torchrun rank per plan GPU (:class:`DistributedJob`, ``run``).
* :mod:`hios.runtime.measure` — timing against the PyTorch baselines, choosing among candidate plans
  by measurement, traces, measured segment profiles and the run record.

``compile`` and ``HiosModule`` import torch on first use.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name in ("compile", "HiosModule"):
        from .local import executor
        return getattr(executor, name)
    raise AttributeError(f"module 'hios.runtime' has no attribute {name!r}")


__all__ = ["HiosModule", "compile"]
