"""Typed options of the optimize → run pipeline, one frozen dataclass per step.

The CLI turns its arguments into these; the library validates them once, in ``__post_init__``, and
every backend reads only the fields it names.  A value that a backend cannot honour is refused with
a :class:`~hios.errors.HiosError` that names the option.  Torch-free.

* :class:`CostOptions` — where operator costs come from (measured profile, analytic GPU model, file);
  defined in :mod:`hios.cost.options`, beside the step that reads it.
* :class:`ScheduleOptions` — the machine (GPUs, link) and the scheduling algorithms with their knobs.
* :class:`RunOptions` — how a plan runs: devices, kernels, CUDA-graph or stream mode, synchronization.
* :class:`TimingOptions` — warm-up, repeats and calls per sample of every timing (also
  :mod:`hios.cost.options`).

Examples
--------
>>> from hios.options import ScheduleOptions
>>> opts = ScheduleOptions(gpus=2, algorithms=("hios-lp", "heft"))
>>> opts.machine().gpus
2
>>> ScheduleOptions(window=0)
Traceback (most recent call last):
    ...
hios.errors.HiosError: window must be at least 1, got 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from .cost.options import ANALYTIC_GPUS, KERNELS, CostOptions, TimingOptions, _at_least, _choice
from .errors import HiosError, option
from .limits import check_schedule_request
from .machine import DEFAULT_LINK, LINK_PRESETS, Machine, link_preset
from .program.devices import parse_devices
from .program.levers import Levers
from .program.segmenting import SYNC_MODES

__all__ = ["ANALYTIC_GPUS", "KERNELS", "MODES", "SYNC_MODES", "CostOptions", "RunOptions",
           "ScheduleOptions", "TimingOptions"]

#: ``graph``: the whole program replayed as one CUDA graph; ``stream``: launched from Python.
MODES = ("graph", "stream")


@dataclass(frozen=True)
class ScheduleOptions:
    """The machine and the schedulers: ``gpus`` joined by ``link`` (a preset of
    :data:`hios.machine.LINK_PRESETS`), ``serialize_links`` (one transfer at a time per directed link,
    for planning and evaluation alike), the ``algorithms`` compared (the fastest predicted one is
    kept), and their knobs (None: each algorithm's default).  ``absorb_joins``: a fraction in (0, 1]
    turns on the join-absorption pass (:mod:`hios.schedulers.absorb_joins`) on every algorithm's
    schedule; None (default): off."""

    gpus: int = 1
    algorithms: tuple[str, ...] = ("hios-lp",)
    link: str = DEFAULT_LINK
    serialize_links: bool = False
    window: int | None = None
    streams: int | None = None
    intra: bool | None = None
    time_limit: float | None = None
    absorb_joins: float | None = None
    every: bool = field(default=False, init=False, compare=False)  # "all" was asked for

    def __post_init__(self):
        from .schedulers import parse_algorithms
        _at_least(self.gpus, 1, option("gpus"))
        _choice(self.link, tuple(LINK_PRESETS), option("link"))
        _at_least(self.window, 1, option("window"))
        _at_least(self.streams, 1, option("streams"))
        if self.time_limit is not None and not (self.time_limit > 0 and math.isfinite(self.time_limit)):
            raise HiosError(f"{option('time_limit')} must be positive and finite (seconds), got {self.time_limit}")
        if self.absorb_joins is not None and (isinstance(self.absorb_joins, bool) or not isinstance(
                self.absorb_joins, (int, float)) or not 0 < self.absorb_joins <= 1):
            raise HiosError(f"{option('absorb_joins')} must be a fraction in (0, 1], got {self.absorb_joins!r}")
        check_schedule_request(self.gpus, self.window, self.streams, self.time_limit, self.algorithms)
        algos = self.algorithms.split(",") if isinstance(self.algorithms, str) else list(self.algorithms)
        object.__setattr__(self, "every", [a.strip() for a in algos] == ["all"])
        object.__setattr__(self, "algorithms", tuple(parse_algorithms(",".join(algos))))

    def algorithms_for(self, graph) -> list[str]:
        """The algorithms to run on ``graph``: "all" includes ``optimal`` where the graph fits it."""
        from .schedulers import parse_algorithms
        return parse_algorithms("all", graph) if self.every else list(self.algorithms)

    def machine(self) -> Machine:
        return Machine(self.gpus, link_preset(self.link))

    def scheduler_kwargs(self) -> dict:
        """The knobs that were set, as keyword arguments of :func:`hios.schedule`."""
        kw = {"window": self.window, "streams": self.streams, "intra": self.intra, "time_limit": self.time_limit,
              "absorb_joins": self.absorb_joins}
        return {k: v for k, v in kw.items() if v is not None}


@dataclass(frozen=True)
class RunOptions:
    """How a plan runs.  ``devices``: one per plan GPU (``("cuda:0", "cuda:0")`` puts two logical
    devices on one GPU; ``("cpu", "cpu")`` runs each stream as a thread); None: ``cuda:0..`` or cpu.
    ``kernels``: Inductor (default on CUDA) or eager (default on CPU).  ``mode``: CUDA graph (default
    on CUDA) or stream.  ``channels_last``: NHWC weights and activations (default: with Inductor on
    CUDA).  ``tf32``: TF32 tensor cores for convolutions and matrix products.  ``levers``: what
    shortens the critical path (:class:`hios.program.levers.Levers`: fused convolution epilogues
    by default; concatenation in place, merged segments, stream priorities on request)."""

    devices: tuple[str, ...] | None = None
    kernels: str | None = None
    mode: str | None = None
    sync: str = "data"
    channels_last: bool | None = None
    tf32: bool = False
    levers: Levers = Levers()

    def __post_init__(self):
        devices = parse_devices(self.devices)
        object.__setattr__(self, "devices", tuple(devices) if devices else None)
        _choice(self.kernels, KERNELS, option("kernels"))
        _choice(self.mode, MODES, option("mode"))
        _choice(self.sync, SYNC_MODES, option("sync"))

    def on_cuda(self) -> bool:
        """Whether the run is on CUDA devices (None: decided by the machine, see :func:`resolve`)."""
        return bool(self.devices) and self.devices[0].startswith("cuda")

    def resolve(self, devices: Sequence[str]) -> "RunOptions":
        """These options with every default filled in for the given (checked) logical devices."""
        cuda = bool(devices) and devices[0].startswith("cuda")
        kernels = self.kernels or ("inductor" if cuda else "eager")
        mode = self.mode or ("graph" if cuda else "stream")
        if mode == "graph" and not cuda:
            raise HiosError(f"CUDA-graph mode ({option('mode', 'graph')}) needs CUDA devices; "
                            f"use {option('mode', 'stream')} on CPU")
        cl = self.channels_last if self.channels_last is not None else (kernels == "inductor" and cuda)
        return RunOptions(tuple(devices), kernels, mode, self.sync, cl, self.tf32, self.levers)
