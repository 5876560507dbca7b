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
   them (:class:`hios.costmodel.MeasuredStageModel`, which also keeps the measured groups).
7. The graph with costs in ms and the profile in ``graph.meta`` is written to the cache and returned.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from ..costfit import calibrate, fit_alpha, fit_transfer  # noqa: F401 - fitting lives beside the cost model
from ..errors import HiosError
from ..formats import graph_from_dict, graph_to_dict
from ..graph import Graph, Operator
from ..timing import (TimingStats, cuda_graph_concurrent_time, cuda_graph_time, event_time, precision_state,
                      wall_time)

KERNELS = ("inductor", "eager")
CACHE_FORMAT = "hios-profile-cache"
CACHE_VERSION = 1


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


# -- device and cache key ------------------------------------------------------------------------

def _torch():
    try:
        import torch
    except ImportError:
        raise HiosError("profiling needs PyTorch: pip install 'hios[torch]'") from None
    return torch


def resolve_device(device: str | None):
    """A torch.device; a CUDA device must exist."""
    torch = _torch()
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise HiosError(f"invalid device {device!r} (use cpu or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HiosError(f"device {device} asked for, but no CUDA device is available")
        idx = torch.cuda.current_device() if dev.index is None else dev.index
        if idx >= torch.cuda.device_count():
            raise HiosError(f"device {device} does not exist ({torch.cuda.device_count()} CUDA device(s))")
        dev = torch.device("cuda", idx)
    elif dev.type != "cpu":
        raise HiosError(f"unsupported device {device!r} (use cpu or cuda:N)")
    return dev


def default_kernels(device) -> str:
    return "inductor" if str(device).startswith("cuda") else "eager"


def device_name(dev) -> str:
    torch = _torch()
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {name}"


def library_versions() -> dict:
    from .. import __version__ as hios_version
    out = {"hios": hios_version, "python": platform.python_version()}
    for mod in ("torch", "torchvision", "timm", "triton"):
        m = sys.modules.get(mod)
        if m is None and mod == "torch":
            m = _torch()
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _sha(obj) -> str:
    return hashlib.sha256(_canon(obj).encode()).hexdigest()


def structure_hash(graph: Graph) -> str:
    return _sha({"ops": [(o.name, o.kind, o.output_bytes) for o in graph.ops],
                 "edges": [(e.src, e.dst, e.bytes) for e in graph.edges]})


def cache_key(captured, dev_name: str, kernels: str, settings: ProfileSettings) -> dict:
    ins = [{"shape": list(t.shape), "dtype": str(t.dtype)} for t in captured.example_inputs
           if hasattr(t, "shape")]
    return {"model": captured.graph.name, "inputs": ins, "structure": structure_hash(captured.graph),
            "device": dev_name, "kernels": kernels, "precision": precision_state(),
            "settings": settings.to_dict(), "versions": library_versions()}


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hios" / "profiles"


def cache_path(cache_dir: Path, key: dict) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key["model"])[:60]
    return Path(cache_dir) / f"{safe}-{key['kernels']}-{_sha(key)[:16]}.json"


def write_cache(path: Path, key: dict, graph: Graph) -> None:
    gd = graph_to_dict(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key,
                               "hash": _sha(gd), "graph": gd}))
    os.replace(tmp, path)


def read_cache(path: Path, key: dict) -> tuple[Graph | None, str | None]:
    """``(graph, None)`` for a valid entry, ``(None, reason)`` for a missing/corrupt/mismatched one."""
    if not path.exists():
        return None, None
    try:
        d = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable ({type(e).__name__})"
    if not isinstance(d, dict) or d.get("format") != CACHE_FORMAT or d.get("version") != CACHE_VERSION:
        return None, "not a hios profile cache entry"
    if _canon(d.get("key")) != _canon(key):
        return None, "its key does not match this model/device/versions"
    if d.get("hash") != _sha(d.get("graph")):
        return None, "content hash mismatch (file corrupted or edited)"
    try:
        return graph_from_dict(d["graph"], str(path)), None
    except HiosError as e:
        return None, f"invalid graph ({e})"


# -- operator runners ----------------------------------------------------------------------------

def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _params_of(module) -> tuple[list[str], list]:
    named = list(module.named_parameters()) + list(module.named_buffers())
    return [n for n, _ in named], [t.detach() for _, t in named]


def lift(module, inputs: Sequence) -> tuple[Any, list]:
    """ATen graph of ``module(*inputs)`` taking ``(*parameters, *inputs)``; returns (gm, parameters)."""
    torch = _torch()
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.func import functional_call
    names, params = _params_of(module)
    k = len(params)

    def flat_fn(*flat):
        return _as_tuple(functional_call(module, dict(zip(names, flat[:k])), tuple(flat[k:])))

    with torch.no_grad():
        gm = make_fx(flat_fn)(*params, *inputs)
    return gm, params


def _meta(t) -> tuple:
    return (tuple(t.shape), tuple(t.stride()), str(t.dtype), t.device.type)


def signature(gm, example: Sequence) -> str:
    """Key of a lifted operator: its code, its constants and its inputs' shapes/strides/dtypes."""
    torch = _torch()
    consts = []
    for name, v in sorted(vars(gm).items()):
        if isinstance(v, torch.Tensor):
            small = v.numel() <= 4096
            consts.append((name, _meta(v), hashlib.sha256(v.detach().cpu().contiguous().numpy().tobytes())
                           .hexdigest() if small else id(v)))
    return _sha({"code": gm.code, "inputs": [_meta(t) if isinstance(t, torch.Tensor) else repr(t) for t in example],
                 "consts": consts})


def _inductor_compile(gm, example, threads: int | None = None):
    """Inductor-compile a lifted operator for inputs like ``example``.

    The inputs are handed to Inductor as fake tensors of a fake mode with a shape environment (as
    Dynamo would), which lets Inductor's FX-graph cache serve structurally identical graphs compiled
    before, in this process or another one.
    """
    import torch._inductor
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    mode = FakeTensorMode(shape_env=ShapeEnv())
    fake = [mode.from_tensor(t, static_shapes=True) for t in example]
    options: dict[str, Any] = {"fx_graph_cache": True}
    if threads is not None:
        options["compile_threads"] = threads  # not part of the cache key
    return torch._inductor.compile(gm, fake, options=options)


def _fx_cache_hits() -> int | None:
    """Inductor's count of FX-graph cache hits in this process (None where torch does not keep it)."""
    try:
        from torch._dynamo.utils import counters
        return int(counters["inductor"]["fxgraph_cache_hit"])
    except (ImportError, KeyError, TypeError):
        return None


def _worker_compile(blob: bytes, metas: list) -> float:
    """In a pool process: compile one lifted operator on fresh random inputs (fills the FX-graph cache)."""
    torch = _torch()
    import importlib
    for mod in ("torch._inductor.compile_fx", "torch._higher_order_ops.triton_kernel_wrap"):
        try:  # a fresh process must load what the parent had loaded lazily before compiling
            importlib.import_module(mod)
        except ImportError:
            pass
    gm = pickle.loads(blob)
    example = [torch.empty_strided(shape, stride, dtype=getattr(torch, dt.split(".")[-1]), device=dev)
               .normal_() if dt.split(".")[-1].startswith(("float", "bfloat")) else
               torch.zeros(shape, dtype=getattr(torch, dt.split(".")[-1]), device=dev)
               for shape, stride, dt, dev in metas]
    t0 = time.perf_counter()
    _inductor_compile(gm, example, threads=1)  # the pool is the parallelism: no nested compile pools
    return time.perf_counter() - t0


def _pool_warm(items: list[tuple[Any, list]], workers: int, dev, bar) -> tuple[int, float]:
    """Compile ``(gm, example)`` items in ``workers`` processes; returns (done, wall seconds)."""
    t0 = time.perf_counter()
    jobs = []
    for gm, example in items:
        try:
            jobs.append((pickle.dumps(gm), [(list(t.shape), list(t.stride()), str(t.dtype),
                                              f"{t.device.type}:{t.device.index}" if t.device.index is not None
                                              else t.device.type) for t in example]))
        except Exception:  # an unpicklable graph is simply compiled in this process later
            continue
    done = 0
    if not jobs:
        return 0, 0.0
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        futs = [pool.submit(_worker_compile, b, m) for b, m in jobs]
        for f in cf.as_completed(futs):
            try:
                f.result()
                done += 1
            except Exception:
                pass
            if bar is not None:
                bar.update(1)
    return done, time.perf_counter() - t0


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
    torch = _torch()
    x = torch.randn(256, device=dev)

    def tiny(v):
        return v.add_(1.0)
    n = 200
    eager = event_time(tiny, (x,), warmup=s.warmup, repeats=s.repeats, inner=n, device=dev)
    graph = cuda_graph_time(tiny, (x,), warmup=s.warmup, repeats=s.repeats, inner=n, device=dev)
    return {"eager_ms": eager.median_ms, "graph_ms": graph.median_ms,
            "overhead_ms": max(0.0, eager.median_ms - graph.median_ms)}


def measure_transfers(dev, s: ProfileSettings) -> dict:
    torch = _torch()
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
    if cache_dir is not False:
        path = cache_path(Path(cache_dir) if cache_dir else default_cache_dir(), key)
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


def _measure(captured, dev, dname: str, kernels: str, s: ProfileSettings, progress: bool,
             compile_workers: int) -> ProfileResult:
    torch = _torch()
    from tqdm import tqdm
    from .segments import build_segment

    graph: Graph = captured.graph
    gm = captured.gm
    old = next((p.device for p in list(gm.parameters()) + list(gm.buffers())), None)
    gm.to(dev)
    layouts = []  # (tensor, original data) to restore after a channels_last run
    if s.channels_last:
        for t in list(gm.parameters()) + list(gm.buffers()):
            if t.dim() == 4:
                layouts.append((t, t.data))
                t.data = t.data.contiguous(memory_format=torch.channels_last)

    def fmt(t):
        if s.channels_last and isinstance(t, torch.Tensor) and t.dim() == 4:
            return t.contiguous(memory_format=torch.channels_last)
        return t
    try:
        with torch.inference_mode():
            inputs = {n: fmt(t.to(dev) if isinstance(t, torch.Tensor) else t)
                      for n, t in zip(captured.input_names, captured.example_inputs)}
            segs = [build_segment(captured, [graph.ops[i].name]) for i in range(len(graph))]
            groups = sibling_groups(graph, s.groups, s.group_size) if dev.type == "cuda" else []
            order = graph.topo
            # group g is measured right after its last member is profiled; its inputs live until then
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

            def walk(desc: str):
                """Yield (pos, op index, input tensors) in topo order, keeping values only while needed."""
                env = dict(inputs)
                bar = tqdm(total=len(order), desc=desc, disable=not progress, file=sys.stderr, leave=False)
                try:
                    for pos, i in enumerate(order):
                        args = [env[n] for n in segs[i].inputs]
                        yield pos, i, args
                        outs = _as_tuple(segs[i].module(*args))
                        for n, v in zip(segs[i].outputs, outs):
                            env[n] = v
                        for n in segs[i].inputs + segs[i].outputs:
                            if last_use.get(n, -1) <= pos and n not in inputs:
                                env.pop(n, None)
                        bar.update(1)
                finally:
                    bar.close()

            compile_info: dict[str, Any] = {}
            lifted: dict[int, tuple[str, list]] = {}  # op -> (signature, parameters)
            compiled: dict[str, Any] = {}
            if kernels == "inductor":
                t0 = time.perf_counter()
                protos: dict[str, tuple[Any, list]] = {}
                for _pos, i, args in walk("lifting operators"):
                    gmi, params = lift(segs[i].module, args)
                    ex = list(params) + list(args)
                    sig = signature(gmi, ex)
                    lifted[i] = (sig, params)
                    if sig not in protos:
                        protos[sig] = (gmi, ex)
                compile_info = {"operators": len(lifted), "unique": len(protos),
                                "lift_seconds": time.perf_counter() - t0}
                if compile_workers > 0 and len(protos) > 1:
                    bar = tqdm(total=len(protos), desc=f"compiling ({compile_workers} processes)",
                               disable=not progress, file=sys.stderr, leave=False)
                    done, secs = _pool_warm(list(protos.values()), compile_workers, dev, bar)
                    bar.close()
                    compile_info.update(pool_workers=compile_workers, pool_compiled=done, pool_seconds=secs)
                t0 = time.perf_counter()
                hits0 = _fx_cache_hits()
                for sig, (gmi, ex) in tqdm(protos.items(), desc="compiling", disable=not progress,
                                           file=sys.stderr, leave=False):
                    try:
                        compiled[sig] = _inductor_compile(gmi, ex)
                    except Exception as e:
                        raise HiosError(f"Inductor failed to compile operator graph {sig[:12]}: "
                                        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
                compile_info["compile_seconds"] = time.perf_counter() - t0
                if hits0 is not None:
                    compile_info["fx_cache_hits"] = _fx_cache_hits() - hits0
                del protos

            def runner(i: int, args: list):
                if kernels == "inductor":
                    sig, params = lifted[i]
                    return compiled[sig], list(params) + list(args)
                return segs[i].module, list(args)

            stats: dict[str, TimingStats] = {}
            measured_groups: list[dict] = []
            in_group = {j for grp in groups for j in grp}
            kept: dict[int, list] = {}  # inputs of group members until their group is measured
            t0 = time.perf_counter()
            for pos, i, args in walk(f"timing ({kernels})"):
                fn, a = runner(i, args)
                stats[graph.ops[i].name] = _time_op(fn, a, dev, s)
                if i in in_group:
                    kept[i] = args
                for grp in when.get(pos, []):
                    calls = [runner(j, kept[j]) for j in grp]
                    st = cuda_graph_concurrent_time(calls, warmup=s.warmup, repeats=s.repeats, device=dev)
                    measured_groups.append({"ops": [graph.ops[j].name for j in grp],
                                            "costs": [stats[graph.ops[j].name].median_ms for j in grp],
                                            "time": st.median_ms})
                for j in [j for j in kept if all(max(graph.position[k] for k in grp) <= pos
                                                 for grp in groups if j in grp)]:
                    del kept[j]
            timing_seconds = time.perf_counter() - t0
            launch = measure_launch_overhead(dev, s) if s.launch else None
            transfer = measure_transfers(dev, s) if s.transfer else {}
    finally:
        for t, data in layouts:
            t.data = data
        if old is not None:
            gm.to(old)
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    costs = {name: st.median_ms for name, st in stats.items()}
    ops = []
    for op in graph.ops:
        st = stats[op.name]
        meta = dict(op.meta)
        meta["timing"] = {"median_ms": st.median_ms, "min_ms": st.min_ms, "max_ms": st.max_ms,
                          "inner": st.inner, "repeats": st.repeats}
        ops.append(Operator(op.name, costs[op.name], op.kind, op.output_bytes, op.utilization, meta))
    meta = dict(graph.meta)
    meta["profile"] = {
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
        "groups": measured_groups, "compile": compile_info,
    }
    out, _ = calibrate(  # utilizations from measured times; stage model fitted to the groups
        Graph(ops, graph.edges, graph.name, meta))
    return ProfileResult(out, {n: st.to_dict() for n, st in stats.items()}, measured_groups)

