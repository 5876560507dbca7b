"""Operators as Inductor-compiled ATen graphs, and a process pool that pre-compiles them.

:func:`lift` turns an operator into an ATen graph whose parameters are inputs; :func:`signature`
keys it by code, constants and input shapes/strides/dtypes so identical operators compile once;
:func:`_pool_warm` compiles unique graphs in spawned processes, which fills Inductor's FX-graph
cache so that the compile in the profiling process is a cache hit.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing
import pickle
import time
from typing import Any, Sequence

from ..optional import require
from .profile_cache import _sha

__all__ = ["INDUCTOR_OPTIONS", "lift", "signature"]

#: Inductor options of every compile hios makes of an operator or a segment (the profiler's and
#: the runtime's, so that a profile measures what runs).  Comprehensive padding is off: on CUDA,
#: PyTorch 2.11's Inductor padded the stride of a ``stack`` buffer (15288 -> 15296 floats) in the
#: kernel that reads it but not where it is allocated and written, when the stacked inputs are
#: channels_last and a custom operator (hios::conv_bias_relu) follows; RandWire 224's last segment
#: then read the wrong elements (relative error 0.59 against eager, H200, 2026-12-03).  Padding
#: only aligns Inductor's internal buffers, which are few in segments of a few operators.
INDUCTOR_OPTIONS = {"comprehensive_padding": False}


def _params_of(module) -> tuple[list[str], list]:
    named = list(module.named_parameters()) + list(module.named_buffers())
    return [n for n, _ in named], [t.detach() for _, t in named]


def lift(module, inputs: Sequence) -> tuple[Any, list]:
    """ATen graph of ``module(*inputs)`` taking ``(*parameters, *inputs)``; returns (gm, parameters)."""
    torch = require("torch", "the profiler")
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.func import functional_call

    from ..frontend.model_checks import as_inputs
    names, params = _params_of(module)
    k = len(params)

    def flat_fn(*flat):
        return as_inputs(functional_call(module, dict(zip(names, flat[:k])), tuple(flat[k:])))

    with torch.no_grad():
        gm = make_fx(flat_fn)(*params, *inputs)
    return gm, params


def _meta(t) -> tuple:
    return (tuple(t.shape), tuple(t.stride()), str(t.dtype), t.device.type)


def signature(gm, example: Sequence) -> str:
    """Key of a lifted operator: its code, its constants and its inputs' shapes/strides/dtypes."""
    torch = require("torch", "the profiler")
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
    options: dict[str, Any] = {"fx_graph_cache": True, **INDUCTOR_OPTIONS}
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
    torch = require("torch", "the profiler")
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
