"""The measured critical path of a replayed program, and what a run's kernels kept the GPU busy.

Torch-free and pure: the callers turn a trace (:mod:`hios.runtime.measure.trace`) or a profile into
numbers first.  Used by ``benchmarks/compile_gap.py`` (issue 21: where the time between a hios plan
and ``torch.compile`` goes).

Steps:
  1. :func:`segment_graph`: the order the program imposes on its segments: each segment follows
     the segments whose events it waits for (through transfers too,
     :func:`hios.runtime.measure.replay_attribution.segment_dependencies`) and the segment issued
     before it on the same ``(device, stream)``.
  2. :func:`measured_critical_path`: the longest path through that order, each segment weighted
     by its measured duration (in the replay: first kernel's start to last kernel's end); a
     segment without a measurement weighs nothing and is counted.  This is the replay's length if
     every segment started the moment its predecessors ended: what synchronisation and launch
     gaps inside segments cost is in the weights, the gaps between segments are not.
  3. :func:`kernel_stats`: per call, the kernels launched, their summed time and the GPU busy time
     (the union of their intervals, :func:`~hios.runtime.measure.replay_attribution.union_length`);
     the median over calls of each.
  4. :func:`kernel_mix`: the same per kernel family (:func:`kernel_family`: Inductor's Triton
     kernels, convolutions and matrix products, copies, other library kernels), so that two
     systems' kernels can be compared by kind: kernels per call and summed time, medians over calls.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping

from .replay_attribution import segment_dependencies, union_length

__all__ = ["CriticalPath", "KERNEL_FAMILIES", "KernelStats", "kernel_family", "kernel_mix", "kernel_stats",
           "measured_critical_path", "segment_graph"]


def segment_graph(program) -> dict[int, frozenset[int]]:
    """Step 1: segment id -> the segments it must follow (events, and stream order)."""
    deps = {k: set(v) for k, v in segment_dependencies(program).items()}
    last: dict[tuple[int, int], int] = {}
    for st in program.steps:  # issue order is each stream's order
        if st.kind != "segment":
            continue
        key = (st.device, st.stream)
        if key in last:
            deps[st.id].add(last[key])
        last[key] = st.id
    return {k: frozenset(v) for k, v in deps.items()}


@dataclass(frozen=True)
class CriticalPath:
    length: float              # sum of the measured durations along the path
    path: tuple[int, ...]      # segment ids, first to last
    unmeasured: int            # segments without a duration (weighed 0)


def measured_critical_path(durations: Mapping[int, float], deps: Mapping[int, Iterable[int]]) -> CriticalPath:
    """Step 2: the longest path through ``deps`` (segment -> segments it follows) weighted by
    ``durations`` (segment -> ms).  Raises ValueError on a cycle or a dependency on an unknown
    segment."""
    nodes = set(deps)
    preds = {v: tuple(deps[v]) for v in nodes}
    for v, ps in preds.items():
        for u in ps:
            if u not in nodes:
                raise ValueError(f"segment {v} follows unknown segment {u}")
    succ: dict[int, list[int]] = {v: [] for v in nodes}
    indeg = {v: len(set(ps)) for v, ps in preds.items()}
    for v, ps in preds.items():
        for u in set(ps):
            succ[u].append(v)
    ready = sorted(v for v in nodes if indeg[v] == 0)
    finish: dict[int, float] = {}
    best_pred: dict[int, int | None] = {}
    done = 0
    while ready:
        v = ready.pop()
        done += 1
        arg = max(preds[v], key=lambda u: (finish[u], -u), default=None)  # the latest to finish
        finish[v] = (finish[arg] if arg is not None else 0.0) + float(durations.get(v, 0.0))
        best_pred[v] = arg
        for w in succ[v]:
            indeg[w] -= 1
            if indeg[w] == 0:
                ready.append(w)
    if done < len(nodes):
        raise ValueError("segment dependencies have a cycle")
    if not finish:
        return CriticalPath(0.0, (), 0)
    end = max(finish, key=lambda v: (finish[v], -v))
    path = [end]
    while best_pred[path[-1]] is not None:
        path.append(best_pred[path[-1]])
    return CriticalPath(finish[end], tuple(reversed(path)), sum(1 for v in nodes if v not in durations))


@dataclass(frozen=True)
class KernelStats:
    calls: int
    kernels: float      # kernels per call (median over calls)
    summed_ms: float    # summed kernel time per call (median)
    busy_ms: float      # union of the kernels' intervals per call (median)
    span_ms: float      # first kernel's start to last kernel's end per call (median)

    def to_dict(self) -> dict:
        return {"calls": self.calls, "kernels_per_call": self.kernels, "kernel_sum_ms": self.summed_ms,
                "busy_ms": self.busy_ms, "kernel_span_ms": self.span_ms}


def kernel_stats(kernels: Iterable[tuple[int, float, float]]) -> KernelStats | None:
    """Step 3: ``kernels`` as ``(call, start, end)``; None when there is none."""
    per: dict[int, list[tuple[float, float]]] = {}
    for call, a, b in kernels:
        per.setdefault(call, []).append((a, b))
    if not per:
        return None
    counts = [len(v) for v in per.values()]
    sums = [sum(b - a for a, b in v) for v in per.values()]
    busy = [union_length(v) for v in per.values()]
    span = [max(b for _, b in v) - min(a for a, _ in v) for v in per.values()]
    med = statistics.median
    return KernelStats(len(per), med(counts), med(sums), med(busy), med(span))


KERNEL_FAMILIES = ("triton", "conv/gemm", "copy", "other")
# name fragments (lower case) of the convolution and matrix-product kernels of cuDNN, cuBLAS and CUTLASS
_CONV_MARKS = ("conv", "cudnn", "xmma", "gemm", "cutlass", "fprop", "nhwc", "wgrad", "dgrad", "sm90_", "sm80_")
_COPY_MARKS = ("copy", "memcpy", "memset", "catarray", "nchwtonhwc", "nhwctonchw")


def kernel_family(name: str) -> str:
    """Step 4: the family of a kernel by its name: ``triton`` (generated by Inductor),
    ``copy`` (copies, sets, concatenations and layout conversions of library code, cuDNN's
    too), ``conv/gemm`` (a library convolution or matrix product), else ``other`` (e.g. an ATen element-wise or reduction kernel)."""
    low = name.lower()
    if low.startswith("triton"):
        return "triton"
    if any(m in low for m in _COPY_MARKS):
        return "copy"
    if any(m in low for m in _CONV_MARKS):
        return "conv/gemm"
    return "other"


def kernel_mix(kernels: Iterable[tuple[int, str, float, float]]) -> dict[str, tuple[float, float]]:
    """Step 4: ``kernels`` as ``(call, name, start, end)``: per family (those present), the median
    over calls of (kernels per call, their summed time); a call without a family counts 0 for it."""
    per: dict[int, dict[str, list[float]]] = {}
    for call, name, a, b in kernels:
        per.setdefault(call, {}).setdefault(kernel_family(name), []).append(b - a)
    families = [f for f in KERNEL_FAMILIES if any(f in v for v in per.values())]
    med = statistics.median
    return {f: (med(len(v.get(f, ())) for v in per.values()), med(sum(v.get(f, ())) for v in per.values()))
            for f in families}
