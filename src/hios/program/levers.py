"""Runtime levers that shorten the critical path (issue 13), as one plain option record.

Torch-free.  :class:`hios.runtime.local.executor.HiosModule` takes a :class:`Levers`.  Defaults, chosen
from the H200 measurements of docs/results/levers.md (2026-12-02): ``fuse_epilogues`` on (-14 % per
call on googlenet 224 and inception_v3 299); the others off: concatenation in place was 8 % faster
on googlenet but 6 % slower on inception_v3, stream priorities changed nothing beyond noise, and
merging changes no segment of these models' plans.

* ``merge_segments`` — :func:`hios.program.segmenting.stream_program` with ``merge=True``: a
  segment runs on past synchronisation points that order nothing new.
* ``fuse_epilogues`` — convolution + bias + ReLU (+ residual add) as one cuDNN kernel
  (:mod:`hios.runtime.local.fuse_epilogue`), per operator, where the backend can.
* ``concat_inplace`` — branches feeding a concatenation write into their slice of its
  preallocated output (:mod:`hios.runtime.local.concat_inplace`); the concatenation kernel disappears.
* ``cudnn_benchmark`` — cuDNN times its algorithms for every convolution of the plan while the
  plan is warmed up and captured, so the CUDA graph records the fastest one
  (``torch.backends.cudnn.benchmark`` on for those two steps only, restored after; graph mode
  only: a stream-mode call chooses by cuDNN's heuristics as before).  Off until measured.
* ``priority`` — CUDA stream priorities: ``"none"``, ``"stream0"`` (stream 0 of each device, where
  the costliest branches run) or ``"critical"`` (every stream that carries an operator of
  ``critical``, see :func:`hios.program.priority.critical_operators`).

Two per-segment exceptions, set by :mod:`hios.runtime.local.verify` when a segment was found wrong:
``unfused`` (the segments holding these operators run without fused epilogues) and ``eager`` (they
run with eager kernels instead of Inductor).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from ..errors import HiosError
from ..graph import Graph

# Fused convolution + bias + ReLU over Inductor's convolution + Triton epilogue: mean time ratio of
# the five shapes probed in issue 13 (H200, TF32, channels_last, batch 1).
FUSED_RATIO = 0.84

PRIORITIES = ("none", "stream0", "critical")


@dataclass(frozen=True)
class Levers:
    merge_segments: bool = False
    fuse_epilogues: bool = True
    concat_inplace: bool = False
    priority: str = "none"
    critical: frozenset = frozenset()   # operator names on the critical path (priority="critical")
    unfused: frozenset = frozenset()    # operators whose segments keep convolution and ReLU apart
    eager: frozenset = frozenset()      # operators whose segments run with eager kernels
    cudnn_benchmark: bool = False

    def fuses(self, ops) -> bool:
        """Whether the segment of ``ops`` fuses convolution epilogues."""
        return self.fuse_epilogues and self.unfused.isdisjoint(ops)

    def __post_init__(self):
        if self.priority not in PRIORITIES:
            raise HiosError(f"unknown priority {self.priority!r}; choose from {', '.join(PRIORITIES)}")

    def label(self) -> str:
        on = [k for k in ("merge_segments", "fuse_epilogues", "concat_inplace", "cudnn_benchmark") if getattr(self, k)]
        if self.priority != "none":
            on.append(f"priority={self.priority}")
        for name, ops in (("unfused", self.unfused), ("eager", self.eager)):
            if ops:
                on.append(f"{name}:{len(ops)}")
        return "+".join(on) or "none"


def lever_costs(graph: Graph, *, fused_ops: Iterable[str] = (), inplace_cats: Iterable[str] = (),
                fused_ratio: float = FUSED_RATIO) -> Graph:
    """The cost model with the levers applied: an operator whose convolution epilogues are fused
    costs ``fused_ratio`` of its cost, a concatenation done in place costs nothing (its copies fuse
    into the producers' last kernels).  Merged segments and priorities change no operator's cost."""
    fused, gone = set(fused_ops), set(inplace_cats)
    ops = [replace(op, cost=0.0 if op.name in gone else op.cost * (fused_ratio if op.name in fused else 1.0))
           for op in graph.ops]
    return Graph(ops, graph.edges, graph.name, dict(graph.meta))


__all__ = ["FUSED_RATIO", "Levers", "PRIORITIES", "lever_costs"]
