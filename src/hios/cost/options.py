"""Typed options of the cost step: where operator costs come from (:class:`CostOptions`) and how
every timing samples (:class:`TimingOptions`).  Re-exported by :mod:`hios.options`, beside the
options of the later steps.  Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import HiosError, option
from ..limits import check_timing

__all__ = ["ANALYTIC_GPUS", "KERNELS", "CostOptions", "TimingOptions"]

#: GPUs with an analytic cost model (``--cost h100``; ``h200-fit``: the H200 with efficiencies and
#: overheads fitted to measured segments, :data:`hios.cost.analytic.DEVICE_SPECS`).
ANALYTIC_GPUS = ("h100", "a100", "v100", "h200", "h200-fit")
#: Kernels a segment runs: Inductor-compiled, or the captured ATen operators as they are.
KERNELS = ("inductor", "eager")


def _choice(value: str | None, choices: Sequence[str], option: str) -> None:
    if value is not None and value not in choices:
        raise HiosError(f"{option} {value!r}: choose from {', '.join(choices)}")


def _at_least(value: int | None, low: int, option: str) -> None:
    if value is not None and value < low:
        raise HiosError(f"{option} must be at least {low}, got {value}")


@dataclass(frozen=True)
class CostOptions:
    """Where operator costs come from.

    ``source``: None (profile on a present GPU, else the analytic H100 model), ``"profile"``
    (measure on ``device``), an analytic GPU name (:data:`ANALYTIC_GPUS`, any case), or the path of
    a profile written by ``hios profile``.  ``kernels`` and ``tf32`` say how a profile measures;
    ``alpha`` is the HIOS stage model's alpha (None: :data:`~hios.cost.costmodel.DEFAULT_ALPHA` for
    analytic costs, the fitted alpha of a measured profile; given, it overrides the fit).
    """

    source: str | None = None
    device: str | None = None
    kernels: str | None = None
    tf32: bool = False
    alpha: float | None = None

    def __post_init__(self):
        _choice(self.kernels, KERNELS, option("kernels"))
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha <= 1):
            raise HiosError(f"{option('alpha')} must be in [0, 1], got {self.alpha}")
        if self.source is not None and self.source.lower() in ANALYTIC_GPUS:
            object.__setattr__(self, "source", self.source.lower())


@dataclass(frozen=True)
class TimingOptions:
    """``warmup`` untimed calls, then ``repeats`` samples of ``inner`` back-to-back calls; the median
    sample over ``inner`` is reported."""

    warmup: int = 5
    repeats: int = 30
    inner: int = 5

    def __post_init__(self):
        for name, low in (("warmup", 0), ("repeats", 1), ("inner", 1)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise HiosError(f"{option(name)} must be an integer >= {low}, got {v!r}")
        check_timing(self.warmup, self.repeats, self.inner)  # each at most hios.limits.MAX_REPEATS

