"""Timing primitives shared by the profiler and the runtime.

Three ways to time a call ``fn(*args)``, all returning :class:`TimingStats` (milliseconds per call,
median of ``repeats`` measurements taken after ``warmup`` untimed calls):

* :func:`cuda_graph_time` — the way the runtime runs code on a GPU.  ``fn`` is captured ``inner``
  times back to back into one ``torch.cuda.CUDAGraph``; each measurement is one replay between two
  CUDA events, divided by ``inner``.  A short spin kernel queued before each start event keeps the
  GPU busy while the host launches the replay, so the host's launch latency stays out of the
  sample; what remains is the GPU time of the kernels plus the small gaps between graph nodes.
* :func:`event_time` — plain (eager) calls, ``inner`` of them between two CUDA events.  Includes the
  host launch cost whenever the host is slower than the GPU, which is the point of measuring it.
* :func:`wall_time` — host wall clock (``time.perf_counter``) around ``inner`` calls; for CPU
  code (pass ``synchronize`` to also wait for a device).

:func:`cuda_graph_concurrent_time` captures several calls on separate streams of one GPU (fork from
the capture stream, join back) into one graph and times its replays: the time a *stage* of
independent operators takes when run concurrently.

torch is imported lazily so that importing this module costs nothing on machines without it.
"""

from __future__ import annotations

import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import HiosError
from ..optional import require

__all__ = ["HOLD_CYCLES", "TimingStats", "capture_graph", "cpu_name", "cuda_graph_concurrent_time",
           "cuda_graph_time", "event_time", "precision", "precision_state", "set_precision", "wall_time"]


#: GPU clock cycles of the spin kernel queued before each timed replay (about 0.1 ms on an H100).
HOLD_CYCLES = 200_000


@contextmanager
def precision(tf32: bool):
    """Strict fp32 (``tf32=False``, hios's default everywhere) or TF32 tensor cores for
    convolutions and matrix products inside the block; torch's flags are restored after it.
    Profiles and runs must agree on it: TF32 convolutions are about twice as fast on an H100."""
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    old = (cudnn.allow_tf32, matmul.allow_tf32)
    if old == (tf32, tf32):
        yield
        return
    cudnn.allow_tf32 = matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = old


def set_precision(tf32: bool) -> None:
    """:func:`precision` for the rest of the process (scripts that run under one precision
    throughout); the library itself only uses :func:`precision`."""
    import torch

    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32


def precision_state() -> str:
    """"fp32", "tf32" (convolutions and matrix products) or "tf32-conv" (PyTorch's default:
    convolutions only), as set now."""
    import torch

    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    return "tf32" if conv and mm else "tf32-conv" if conv else "tf32-matmul" if mm else "fp32"


@dataclass(frozen=True)
class TimingStats:
    """Per-call times in ms over ``repeats`` measurements (each the mean of ``inner`` calls)."""

    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    stdev_ms: float
    repeats: int
    inner: int
    method: str  # "cuda_graph", "cuda_event", "wall", "cuda_graph_concurrent"
    samples: tuple[float, ...] = field(default=(), repr=False)

    @classmethod
    def from_samples(cls, samples: Sequence[float], inner: int, method: str) -> "TimingStats":
        s = [float(x) for x in samples]
        if not s:
            raise HiosError(f"{method} timing produced no samples")
        return cls(statistics.median(s), statistics.fmean(s), min(s), max(s),
                   statistics.stdev(s) if len(s) > 1 else 0.0, len(s), inner, method, tuple(s))

    @property
    def spread(self) -> float:
        """(max - min) / median: a quick noise figure (0 when the median is 0)."""
        return (self.max_ms - self.min_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self, samples: bool = False) -> dict:
        d = {"median_ms": self.median_ms, "mean_ms": self.mean_ms, "min_ms": self.min_ms,
             "max_ms": self.max_ms, "stdev_ms": self.stdev_ms, "repeats": self.repeats,
             "inner": self.inner, "method": self.method}
        if samples:
            d["samples"] = list(self.samples)
        return d


def cpu_name() -> str:
    """The host CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _check_counts(warmup: int, repeats: int, inner: int) -> None:
    from .options import TimingOptions
    TimingOptions(warmup, repeats, inner)  # validates


def _cuda_device(device):
    torch = require("torch", "GPU timing")
    if not torch.cuda.is_available():
        raise HiosError("CUDA timing asked for, but no CUDA device is available")
    dev = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    if dev.type != "cuda":
        raise HiosError(f"CUDA timing needs a cuda device, got {dev}")
    if dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def wall_time(fn: Callable, args: Sequence[Any] = (), *, warmup: int = 2, repeats: int = 10, inner: int = 1,
              synchronize: Callable[[], Any] | None = None, min_time_ms: float = 0.0) -> TimingStats:
    """Host wall-clock time per call of ``fn(*args)``.

    ``synchronize`` (e.g. ``torch.cuda.synchronize``) is called before starting and before reading
    the clock.  With ``min_time_ms`` > 0, ``inner`` grows (doubling, from a first timed call) until
    one measurement lasts at least that long, which keeps very short calls above timer resolution.
    """
    _check_counts(warmup, repeats, inner)
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        fn(*args)
    sync()
    if min_time_ms > 0:
        while True:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn(*args)
            sync()
            if (time.perf_counter() - t0) * 1e3 >= min_time_ms or inner >= 1 << 20:
                break
            inner *= 2
    samples = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn(*args)
        sync()
        samples.append((time.perf_counter() - t0) * 1e3 / inner)
    return TimingStats.from_samples(samples, inner, "wall")


def event_time(fn: Callable, args: Sequence[Any] = (), *, warmup: int = 3, repeats: int = 20, inner: int = 1,
               device=None) -> TimingStats:
    """Per-call time of plain (eager) calls of ``fn(*args)`` on the current stream, by CUDA events."""
    _check_counts(warmup, repeats, inner)
    torch = require("torch", "GPU timing")
    dev = _cuda_device(device)
    with torch.cuda.device(dev):
        for _ in range(warmup):
            fn(*args)
        torch.cuda.synchronize(dev)
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        for k in range(repeats):
            starts[k].record()
            for _ in range(inner):
                fn(*args)
            ends[k].record()
        torch.cuda.synchronize(dev)
        samples = [s.elapsed_time(e) / inner for s, e in zip(starts, ends)]
    return TimingStats.from_samples(samples, inner, "cuda_event")


def capture_graph(fn: Callable, args: Sequence[Any] = (), *, warmup: int = 3, inner: int = 1, device=None,
                  pool=None):
    """Warm ``fn`` up on a side stream, then capture ``inner`` back-to-back calls into a CUDA graph.

    Returns ``(graph, outputs)`` where ``outputs`` is what the last captured call returned (kept alive
    so the graph's memory stays valid).
    """
    _check_counts(warmup, 1, inner)
    torch = require("torch", "GPU timing")
    dev = _cuda_device(device)
    with torch.cuda.device(dev):
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(max(warmup, 1)):  # capture needs at least one eager call (lazy init, cuBLAS handles)
                fn(*args)
        torch.cuda.current_stream(dev).wait_stream(side)
        torch.cuda.synchronize(dev)
        graph = torch.cuda.CUDAGraph()
        out = None
        try:
            with torch.cuda.graph(graph, pool=pool):
                for _ in range(inner):
                    out = fn(*args)
        except RuntimeError as e:
            raise HiosError(f"cannot capture the call in a CUDA graph: {str(e).splitlines()[0]}") from None
    return graph, out


def _time_replays(graph, dev, warmup: int, repeats: int, replays: int = 1) -> list[float]:
    torch = require("torch", "GPU timing")
    with torch.cuda.device(dev):
        for _ in range(warmup):
            graph.replay()
        torch.cuda.synchronize(dev)
        hold = getattr(torch.cuda, "_sleep", None)  # a private helper: tolerate its absence
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
        for k in range(repeats):
            # Keep the GPU busy while the host queues the start event and the replay: otherwise the
            # start event fires at once and the sample includes the host's graph-launch latency.
            if hold is not None:
                hold(HOLD_CYCLES)
            starts[k].record()
            for _ in range(replays):
                graph.replay()
            ends[k].record()
        torch.cuda.synchronize(dev)
        return [s.elapsed_time(e) / replays for s, e in zip(starts, ends)]


def cuda_graph_time(fn: Callable, args: Sequence[Any] = (), *, warmup: int = 3, repeats: int = 20, inner: int = 1,
                    device=None) -> TimingStats:
    """Per-call GPU time of ``fn(*args)`` captured ``inner`` times in one CUDA graph and replayed.

    ``warmup`` eager calls (needed before capture) and ``warmup`` untimed replays come first; each of
    the ``repeats`` samples is one replay between CUDA events divided by ``inner``.
    """
    _check_counts(warmup, repeats, inner)
    dev = _cuda_device(device)
    graph, out = capture_graph(fn, args, warmup=warmup, inner=inner, device=dev)
    try:
        samples = _time_replays(graph, dev, warmup, repeats)
    finally:
        del out
        graph.reset()
    return TimingStats.from_samples([s / inner for s in samples], inner, "cuda_graph")


def cuda_graph_concurrent_time(calls: Sequence[tuple[Callable, Sequence[Any]]], *, warmup: int = 3,
                               repeats: int = 20, inner: int = 1, device=None) -> TimingStats:
    """GPU time of a group of calls run concurrently, each on its own stream, in one CUDA graph.

    The capture stream records an event that every side stream waits on (fork); call *i* runs on
    side stream *i*; the capture stream then waits for all of them (join).  The graph holds ``inner``
    such fork/join rounds back to back; the result is the time of one round, i.e. the *stage* time.
    """
    if not calls:
        raise HiosError("cuda_graph_concurrent_time needs at least one call")
    _check_counts(warmup, repeats, inner)
    torch = require("torch", "GPU timing")
    dev = _cuda_device(device)
    with torch.cuda.device(dev):
        streams = [torch.cuda.Stream(dev) for _ in calls]

        def group():
            main = torch.cuda.current_stream(dev)
            outs = []
            for s, (fn, a) in zip(streams, calls):
                s.wait_stream(main)
                with torch.cuda.stream(s):
                    outs.append(fn(*a))
            for s in streams:
                main.wait_stream(s)
            return outs

        graph, out = capture_graph(group, (), warmup=warmup, inner=inner, device=dev)
        try:
            samples = _time_replays(graph, dev, warmup, repeats)
        finally:
            del out
            graph.reset()
    return TimingStats.from_samples([s / inner for s in samples], inner, "cuda_graph_concurrent")
