"""Runtime: run a plan of a PyTorch model on devices and streams.

* :mod:`hios.runtime.segmenting` — torch-free: a schedule cut into per-stream segments, events and
  transfers (:func:`stream_program`), reused by every executor.
* :mod:`hios.runtime.devices` — logical devices onto physical ones (torch-free).
* :mod:`hios.runtime.executor` — the single-process executor (:func:`compile`), CUDA-graph and
  stream modes, Inductor or eager kernels.
* :mod:`hios.runtime.bench` — the measurements ``hios run`` and ``benchmarks/runtime.py`` print.
* :mod:`hios.runtime.levers` — torch-free options that shorten the critical path (fused convolution
  epilogues, :mod:`hios.runtime.concat_inplace`, stream priorities from
  :mod:`hios.runtime.priority`, merged segments).
* :mod:`hios.runtime.distributed` — one torchrun rank per plan GPU (:class:`DistributedJob`, ``run``),
  split by concern into ``dist_launch``, ``dist_check``, ``dist_program``, ``dist_build``,
  ``dist_wire``, ``dist_runner``, ``dist_report`` and ``dist_watchdog``.

``compile`` and ``HiosModule`` import torch on first use.
"""

from __future__ import annotations

from .devices import logical_devices, parse_devices
from .levers import Levers
from .priority import critical_operators, stream_priorities
from .segmenting import ExecProgram, ProgramError, SegmentStep, TransferStep, naive_streams, stream_program, verify


def __getattr__(name: str):
    if name in ("compile", "HiosModule"):
        from . import executor
        return getattr(executor, name)
    raise AttributeError(f"module 'hios.runtime' has no attribute {name!r}")


__all__ = ["ExecProgram", "HiosModule", "Levers", "ProgramError", "SegmentStep", "TransferStep", "compile",
           "critical_operators", "logical_devices", "naive_streams", "parse_devices", "stream_priorities",
           "stream_program", "verify"]
