"""Profiler: measure every operator of a captured model the way the runtime will run it.

Steps of :func:`profile_detailed` (``profile`` returns only its graph):

1. Look the profile up in the on-disk cache (key: model, input shapes/dtypes, graph structure,
   device name, kernels, timing settings, library versions).  An entry whose embedded key or
   content hash does not match is reported (a warning) and re-measured, never used.
2. Move the model to the device and build one segment per operator
   (:func:`hios.frontend.segments.build_segment`).
3. ``kernels="inductor"``: walk the operators in topological order computing real input values,
   turn each operator into an ATen graph whose parameters are inputs (``make_fx`` over
   ``functional_call``), and key it by its code and input shapes/strides/dtypes.  Structurally
   identical operators (NASNet's repeated cells, Inception's repeated blocks) share one key and are
   compiled once.  With ``compile_workers`` > 0 the unique graphs are first compiled in a pool of
   processes, which fills Inductor's FX-graph cache so that the compile in this process is a
   cache hit.
4. Timing pass, again in topological order with real values: on a GPU each operator is timed alone
   captured in a CUDA graph (``inner`` back-to-back copies, replayed between CUDA events after
   warm-up, median of ``repeats``); on a CPU by wall clock.  Values are freed after their last use.
   Groups of independent operators (sibling branches) are also timed concurrently, one stream each,
   in one CUDA graph.
5. Launch overhead (eager minus graph time of a tiny kernel) and device-to-device (and, with several
   GPUs, GPU-to-GPU) copy time against bytes, fitted to ``latency + bytes / bandwidth``.
6. Utilizations follow from the measured times (achieved FLOP rate or bandwidth over the device's
   peak, :func:`calibrate`), and the HIOS stage model's alpha is fitted to the measured groups with
   them (:class:`hios.cost.costmodel.MeasuredStageModel`, which also keeps the measured groups).
7. The graph with costs in ms and the profile in ``graph.meta`` is written to the cache and returned.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .fitting import calibrate, fit_alpha, fit_transfer  # noqa: F401 - fitting lives beside the cost model
from ..errors import HiosError
from ..graph import Graph, Operator
from .options import KERNELS
from .timing import (TimingStats, cuda_graph_concurrent_time, cuda_graph_time, event_time, precision_state,
                      wall_time)


@dataclass
class ProfileSettings:
    warmup: int = 3
    repeats: int = 20
    target_ms: float = 0.2     # grow ``inner`` until one replay lasts about this long
    max_inner: int = 16
    groups: int = 24           # concurrent groups to measure (0: none)
    group_size: int = 4
    transfer: bool = True
    launch: bool = True
    channels_last: bool | None = None  # 4-D parameters and inputs in channels_last layout; None: as the
    #                                     runtime does (channels_last with Inductor on a GPU)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ProfileResult:
    graph: Graph
    stats: dict[str, dict] = field(default_factory=dict)  # operator -> TimingStats.to_dict()
    groups: list[dict] = field(default_factory=list)      # {"ops", "costs", "time"}
    from_cache: bool = False
    cache_path: str | None = None
    seconds: float = 0.0


# -- device probing, cache, compile pool: their own modules ------------------------------------------

from .compile_pool import _fx_cache_hits, _inductor_compile, _pool_warm, lift, signature  # noqa: E402,F401
from ..optional import require  # noqa: E402
from .probe import default_kernels, device_name, library_versions, resolve_device  # noqa: E402,F401
from .profile_cache import (CACHE_FORMAT, CACHE_VERSION, cache_path, default_cache_dir, read_cache,  # noqa: E402,F401
                            structure_hash, usable_cache_dir, write_cache)
from .profile_cache import cache_key as _cache_key  # noqa: E402

__all__ = ["ProfileResult", "ProfileSettings", "cache_key", "measure_launch_overhead", "measure_transfers",
           "profile", "profile_detailed", "sibling_groups"]


def cache_key(captured, dev_name: str, kernels: str, settings: ProfileSettings) -> dict:
    """The cache key of a profile (:func:`hios.cost.profile_cache.cache_key`)."""
    return _cache_key(captured, dev_name, kernels, settings.to_dict())


# -- groups of independent operators ------------------------------------------------------------

def sibling_groups(graph: Graph, limit: int, size: int) -> list[list[int]]:
    """Up to ``limit`` groups of 2..``size`` mutually independent operators sharing a predecessor,
    spread over the graph."""
    if limit <= 0:
        return []
    anc = graph.ancestors_mask()
    seen: set[tuple[int, ...]] = set()
    groups: list[list[int]] = []
    for u in graph.topo:
        kids = sorted(graph.succs[u], key=lambda i: graph.position[i])
        chosen: list[int] = []
        for v in kids:
            if all(not (anc[v] >> w) & 1 and not (anc[w] >> v) & 1 for w in chosen):
                chosen.append(v)
            if len(chosen) == size:
                break
        for cand in (chosen, chosen[:2]):
            key = tuple(sorted(cand))
            if len(cand) >= 2 and key not in seen:
                seen.add(key)
                groups.append(list(cand))
    if len(groups) > limit:
        step = len(groups) / limit
        groups = [groups[int(k * step)] for k in range(limit)]
    return groups


# -- measurements --------------------------------------------------------------------------------

def _time_op(fn, args, dev, s: ProfileSettings) -> TimingStats:
    if dev.type == "cuda":
        first = cuda_graph_time(fn, args, warmup=s.warmup, repeats=max(3, s.repeats // 4), device=dev)
        inner = max(1, min(s.max_inner, math.ceil(s.target_ms / max(first.median_ms, 1e-4))))
        if inner == 1 and first.repeats >= s.repeats:
            return first
        return cuda_graph_time(fn, args, warmup=1, repeats=s.repeats, inner=inner, device=dev)
    return wall_time(fn, args, warmup=1, repeats=max(3, s.repeats // 4), min_time_ms=1.0)


def measure_launch_overhead(dev, s: ProfileSettings) -> dict | None:
    """Per-launch host overhead: eager minus CUDA-graph time per call of a tiny kernel."""
    if dev.type != "cuda":
        return None
    torch = require("torch", "the profiler")
    x = torch.randn(256, device=dev)

    def tiny(v):
        return v.add_(1.0)
    n = 200
    eager = event_time(tiny, (x,), warmup=s.warmup, repeats=s.repeats, inner=n, device=dev)
    graph = cuda_graph_time(tiny, (x,), warmup=s.warmup, repeats=s.repeats, inner=n, device=dev)
    return {"eager_ms": eager.median_ms, "graph_ms": graph.median_ms,
            "overhead_ms": max(0.0, eager.median_ms - graph.median_ms)}


def measure_transfers(dev, s: ProfileSettings) -> dict:
    torch = require("torch", "the profiler")
    sizes = [1 << k for k in (12, 16, 20, 22, 24, 26, 28)]
    out: dict[str, Any] = {}
    if dev.type != "cuda":
        return out
    pts = []
    for nb in sizes:
        a = torch.empty(nb // 4, device=dev).normal_()
        b = torch.empty_like(a)
        st = cuda_graph_time(b.copy_, (a,), warmup=2, repeats=max(5, s.repeats // 2), device=dev)
        pts.append((nb, st.median_ms))
        del a, b
    out["d2d"] = fit_transfer(pts)
    n = torch.cuda.device_count()
    if n > 1:
        other = torch.device("cuda", (dev.index + 1) % n)
        try:
            pts = []
            for nb in sizes:
                a = torch.empty(nb // 4, device=dev).normal_()
                b = torch.empty(nb // 4, device=other)
                st = event_time(b.copy_, (a,), warmup=2, repeats=max(5, s.repeats // 2), device=dev)
                pts.append((nb, st.median_ms))
                del a, b
            out["p2p"] = {"src": str(dev), "dst": str(other), **(fit_transfer(pts) or {})}
        except RuntimeError as e:
            out["p2p"] = {"error": str(e).splitlines()[0]}
    return out


# -- main entry points ---------------------------------------------------------------------------

def profile(captured, device: str | None = "cuda:0", kernels: str | None = None,
            cache_dir: str | Path | None | bool = None, progress: bool = True, **options) -> Graph:
    """Costed graph (ms per operator, profile in ``graph.meta``); see :func:`profile_detailed`."""
    return profile_detailed(captured, device, kernels, cache_dir, progress, **options).graph


def profile_detailed(captured, device: str | None = "cuda:0", kernels: str | None = None,
                     cache_dir: str | Path | None | bool = None, progress: bool = True,
                     settings: ProfileSettings | None = None, compile_workers: int | None = None) -> ProfileResult:
    """Profile ``captured`` (a :class:`hios.frontend.capture.Captured`).

    ``kernels``: "inductor" (each operator compiled by Inductor) or "eager" (its ATen kernels);
    None picks inductor on GPUs and eager on CPUs.  ``cache_dir``: None for the default
    (``$XDG_CACHE_HOME/hios/profiles``), False to neither read nor write a cache.
    ``compile_workers``: processes that pre-compile unique operators (None: half the CPUs, at most 8,
    on a GPU; 0: compile in this process only).
    """
    t_start = time.perf_counter()
    s = settings or ProfileSettings()
    dev = resolve_device(device)
    kernels = kernels or default_kernels(dev)
    if kernels not in KERNELS:
        raise HiosError(f"unknown kernels {kernels!r}; choose inductor or eager")
    if s.channels_last is None:
        s = replace(s, channels_last=kernels == "inductor" and dev.type == "cuda")
    dname = device_name(dev)
    key = cache_key(captured, dname, kernels, s)
    path = None
    cache_dir = usable_cache_dir(cache_dir)  # the default folder unusable: one warning, no cache
    if cache_dir is not False:
        path = cache_path(Path(cache_dir), key)
        graph, reason = read_cache(path, key)
        if graph is not None:
            return ProfileResult(graph, from_cache=True, cache_path=str(path),
                                 seconds=time.perf_counter() - t_start)
        if reason:
            warnings.warn(f"ignoring profile cache entry {path}: {reason}; re-measuring", stacklevel=2)
    if compile_workers is None:
        compile_workers = min(8, (os.cpu_count() or 2) // 2) if dev.type == "cuda" else 0
    res = _measure(captured, dev, dname, kernels, s, progress, compile_workers)
    res.seconds = time.perf_counter() - t_start
    res.graph.meta["profile"]["seconds"] = res.seconds
    if path is not None:
        write_cache(path, key, res.graph)
        res.cache_path = str(path)
    return res


# -- the measuring pass, step by step -------------------------------------------------------------

@contextmanager
def _placed(captured, dev, channels_last: bool):
    """Step 2a: the captured module on ``dev`` (4-D parameters and buffers in channels_last when
    asked) while the block runs; its device and layouts are restored afterwards, also on error."""
    torch = require("torch", "the profiler")
    gm = captured.gm
    old = next((p.device for p in list(gm.parameters()) + list(gm.buffers())), None)
    gm.to(dev)
    layouts = []  # (tensor, original data)
    if channels_last:
        for t in list(gm.parameters()) + list(gm.buffers()):
            if t.dim() == 4:
                layouts.append((t, t.data))
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    try:
        yield gm
    finally:
        for t, data in layouts:
            t.data = data
        if old is not None:
            gm.to(old)


def _device_inputs(captured, dev, channels_last: bool) -> dict:
    """Step 2b: the example inputs by name, on ``dev``, 4-D ones in channels_last when asked."""
    torch = require("torch", "the profiler")
    out = {}
    for n, t in zip(captured.input_names, captured.example_inputs):
        if isinstance(t, torch.Tensor):
            t = t.to(dev)
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
        out[n] = t
    return out


@dataclass
class _Walk:
    """A topological walk over the operators with real values: each operator's segment, the order,
    the groups to time after each position, and the last position that reads each value."""

    segs: list
    order: list[int]
    inputs: dict
    when: dict[int, list[list[int]]]
    last_use: dict[str, int]


def _plan_walk(graph: Graph, segs: list, inputs: dict, groups: list[list[int]]) -> _Walk:
    """Step 2c: a group is timed right after its last member is profiled; its members' inputs live
    until then, every other value until its last reader."""
    order = graph.topo
    when: dict[int, list[list[int]]] = {}
    for grp in groups:
        when.setdefault(max(graph.position[i] for i in grp), []).append(grp)
    last_use: dict[str, int] = {}
    for pos, i in enumerate(order):
        for name in segs[i].inputs:
            last_use[name] = pos
    for pos, grps in when.items():
        for grp in grps:
            for i in grp:
                for name in segs[i].inputs:
                    last_use[name] = max(last_use[name], pos)
    return _Walk(segs, order, inputs, when, last_use)


def _walk(w: _Walk, desc: str, progress: bool):
    """Yield ``(position, operator index, input values)`` in topological order, running each
    operator to produce its outputs and freeing values after their last use."""
    from tqdm import tqdm

    from ..frontend.model_checks import as_inputs
    env = dict(w.inputs)
    bar = tqdm(total=len(w.order), desc=desc, disable=not progress, file=sys.stderr, leave=False)
    try:
        for pos, i in enumerate(w.order):
            seg = w.segs[i]
            args = [env[n] for n in seg.inputs]
            yield pos, i, args
            for n, v in zip(seg.outputs, as_inputs(seg.module(*args))):
                env[n] = v
            for n in seg.inputs + seg.outputs:
                if w.last_use.get(n, -1) <= pos and n not in w.inputs:
                    env.pop(n, None)
            bar.update(1)
    finally:
        bar.close()


class _EagerRunners:
    """Each operator as its segment module (``kernels="eager"``)."""

    info: dict = {}

    def __init__(self, segs: list):
        self.segs = segs

    def __call__(self, i: int, args: list):
        return self.segs[i].module, list(args)


@dataclass
class _InductorRunners:
    """Each operator as its lifted ATen graph compiled by Inductor (shared by identical operators)."""

    lifted: dict[int, tuple[str, list]]  # operator -> (signature, parameters)
    compiled: dict[str, Any]             # signature -> compiled callable
    info: dict

    def __call__(self, i: int, args: list):
        sig, params = self.lifted[i]
        return self.compiled[sig], list(params) + list(args)


def _lift_all(w: _Walk, progress: bool) -> tuple[dict, dict]:
    """Step 3a: every operator lifted to an ATen graph and keyed by its signature; returns
    (operator -> (signature, parameters), signature -> (graph, example inputs))."""
    lifted: dict[int, tuple[str, list]] = {}
    protos: dict[str, tuple[Any, list]] = {}
    for _pos, i, args in _walk(w, "lifting operators", progress):
        gmi, params = lift(w.segs[i].module, args)
        ex = list(params) + list(args)
        sig = signature(gmi, ex)
        lifted[i] = (sig, params)
        protos.setdefault(sig, (gmi, ex))
    return lifted, protos


def _compile_unique(protos: dict, dev, workers: int, progress: bool, info: dict) -> dict:
    """Step 3b: compile each unique lifted graph once (after warming Inductor's cache in a pool)."""
    from tqdm import tqdm
    if workers > 0 and len(protos) > 1:
        bar = tqdm(total=len(protos), desc=f"compiling ({workers} processes)", disable=not progress,
                   file=sys.stderr, leave=False)
        done, secs = _pool_warm(list(protos.values()), workers, dev, bar)
        bar.close()
        info.update(pool_workers=workers, pool_compiled=done, pool_seconds=secs)
    t0 = time.perf_counter()
    hits0 = _fx_cache_hits()
    compiled = {}
    for sig, (gmi, ex) in tqdm(protos.items(), desc="compiling", disable=not progress, file=sys.stderr, leave=False):
        try:
            compiled[sig] = _inductor_compile(gmi, ex)
        except Exception as e:
            raise HiosError(f"Inductor failed to compile operator graph {sig[:12]}: "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    info["compile_seconds"] = time.perf_counter() - t0
    if hits0 is not None:
        info["fx_cache_hits"] = _fx_cache_hits() - hits0
    return compiled


def _inductor_runners(w: _Walk, dev, workers: int, progress: bool) -> _InductorRunners:
    """Step 3: lift, key and compile every operator (identical operators compiled once)."""
    t0 = time.perf_counter()
    lifted, protos = _lift_all(w, progress)
    info: dict[str, Any] = {"operators": len(lifted), "unique": len(protos),
                            "lift_seconds": time.perf_counter() - t0}
    return _InductorRunners(lifted, _compile_unique(protos, dev, workers, progress, info), info)


def _time_all(w: _Walk, graph: Graph, runner, dev, s: ProfileSettings, groups: list[list[int]], desc: str,
              progress: bool) -> tuple[dict[str, TimingStats], list[dict]]:
    """Step 4: each operator timed alone, and each group concurrently once its last member is done."""
    stats: dict[str, TimingStats] = {}
    measured: list[dict] = []
    in_group = {j for grp in groups for j in grp}
    kept: dict[int, list] = {}  # inputs of group members until their groups are measured
    done_at = {j: max(max(graph.position[k] for k in grp) for grp in groups if j in grp) for j in in_group}
    for pos, i, args in _walk(w, desc, progress):
        fn, a = runner(i, args)
        stats[graph.ops[i].name] = _time_op(fn, a, dev, s)
        if i in in_group:
            kept[i] = args
        for grp in w.when.get(pos, []):
            st = cuda_graph_concurrent_time([runner(j, kept[j]) for j in grp], warmup=s.warmup,
                                            repeats=s.repeats, device=dev)
            measured.append({"ops": [graph.ops[j].name for j in grp],
                             "costs": [stats[graph.ops[j].name].median_ms for j in grp], "time": st.median_ms})
        for j in [j for j in kept if done_at[j] <= pos]:
            del kept[j]
    return stats, measured


def _costed_graph(graph: Graph, stats: dict[str, TimingStats], profile_meta: dict) -> Graph:
    """Step 7: the graph with measured costs, each operator's timing in its meta."""
    ops = []
    for op in graph.ops:
        st = stats[op.name]
        meta = {**op.meta, "timing": {"median_ms": st.median_ms, "min_ms": st.min_ms, "max_ms": st.max_ms,
                                      "inner": st.inner, "repeats": st.repeats}}
        ops.append(Operator(op.name, st.median_ms, op.kind, op.output_bytes, op.utilization, meta))
    return Graph(ops, graph.edges, graph.name, {**graph.meta, "profile": profile_meta})


def _measure(captured, dev, dname: str, kernels: str, s: ProfileSettings, progress: bool,
             compile_workers: int) -> ProfileResult:
    """Steps 2-7 of :func:`profile_detailed` (the module docstring names them)."""
    torch = require("torch", "the profiler")
    from ..frontend.segments import build_segment

    graph: Graph = captured.graph
    try:
        with _placed(captured, dev, s.channels_last), torch.inference_mode():
            segs = [build_segment(captured, [graph.ops[i].name]) for i in range(len(graph))]
            groups = sibling_groups(graph, s.groups, s.group_size) if dev.type == "cuda" else []
            w = _plan_walk(graph, segs, _device_inputs(captured, dev, s.channels_last), groups)
            runner = _inductor_runners(w, dev, compile_workers, progress) if kernels == "inductor" \
                else _EagerRunners(segs)
            t0 = time.perf_counter()
            stats, measured_groups = _time_all(w, graph, runner, dev, s, groups, f"timing ({kernels})", progress)
            timing_seconds = time.perf_counter() - t0
            launch = measure_launch_overhead(dev, s) if s.launch else None
            transfer = measure_transfers(dev, s) if s.transfer else {}
    finally:
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    costs = {name: st.median_ms for name, st in stats.items()}
    profile_meta = {
        "device": dname, "device_type": dev.type, "kernels": kernels, "precision": precision_state(),
        "method": "cuda_graph" if dev.type == "cuda" else "wall",
        "memory_format": "channels_last" if s.channels_last else "contiguous",
        "freezing": False, "folding": "batchnorm",  # operators run unfrozen, BatchNorm folded at capture
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(), "settings": s.to_dict(),
        "inputs": [{"shape": list(t.shape), "dtype": str(t.dtype)} for t in captured.example_inputs
                   if hasattr(t, "shape")],
        "sum_ms": sum(costs.values()), "timing_seconds": timing_seconds,
        "launch_overhead": launch, "transfer": transfer,
        "groups": measured_groups, "compile": dict(runner.info),
    }
    out, _ = calibrate(_costed_graph(graph, stats, profile_meta))  # utilizations; stage models fitted to groups
    return ProfileResult(out, {n: st.to_dict() for n, st in stats.items()}, measured_groups)
