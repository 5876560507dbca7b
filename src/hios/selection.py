"""Choose by measurement: time the few most promising candidates on the device, keep the fastest.

A :class:`Candidate` is anything that can be built into a callable and timed: a plan (one
algorithm, window/stream counts, one device or N) compiled by the runtime, or the whole model
under ``torch.compile``.  The timer is injected (``timer(fn) -> ms``), so the choice itself is
torch-free and testable with a fake timer.

Steps of :func:`choose`:

1. Shortlist: the ``top`` candidates with the lowest predicted latency, plus every candidate without
   a prediction (baselines such as ``torch.compile`` are always timed), in that order.
   Candidates whose ``key`` equals an earlier one's (the same schedule reached by two algorithms)
   are timed once and share the measurement.
2. Build and time each: ``build()`` returns the callable, ``timer`` its latency in ms.  A candidate
   whose build or timing raises is reported with its error and skipped.
3. The fastest measured candidate wins; the margin is the runner-up's time over the winner's.
   The seconds spent building and timing are reported.  No candidate measured raises
   :class:`HiosError`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

from .errors import HiosError

__all__ = ["Candidate", "DEFAULT_CONFIGS", "Selection", "choose", "plan_candidates", "shortlist"]


@dataclass
class Candidate:
    name: str
    build: Callable[[], Callable[[], Any]]
    predicted_ms: float | None = None
    key: Hashable | None = None          # equal keys: the same thing, timed once
    meta: dict = field(default_factory=dict)


@dataclass
class Selection:
    winner: str
    measured_ms: dict[str, float]        # candidate -> measured latency
    errors: dict[str, str]               # candidate -> why it could not be measured
    predicted_ms: dict[str, float | None]
    margin: float | None                 # runner-up (another key) / winner; None without one
    seconds: float                       # building and timing, all candidates
    shortlist: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"winner": self.winner, "measured_ms": self.measured_ms, "errors": self.errors,
                "predicted_ms": self.predicted_ms, "margin": self.margin, "seconds": self.seconds,
                "shortlist": self.shortlist}

    def summary(self) -> str:
        runner = f", {self.margin:.3f}x faster than the runner-up" if self.margin is not None else ""
        return (f"chosen by measurement: {self.winner} {self.measured_ms[self.winner]:.4f} ms{runner} "
                f"({len(self.measured_ms)} candidates timed in {self.seconds:.1f} s)")


def shortlist(candidates: Sequence[Candidate], top: int | None) -> list[Candidate]:
    """Step 1: the ``top`` best predicted candidates, then those without a prediction."""
    predicted = sorted((c for c in candidates if c.predicted_ms is not None), key=lambda c: c.predicted_ms)
    if top is not None:
        predicted = predicted[:max(0, top)]
    return predicted + [c for c in candidates if c.predicted_ms is None]


def choose(candidates: Sequence[Candidate], timer: Callable[[Callable[[], Any]], float], top: int | None = 3,
           clock: Callable[[], float] = time.perf_counter) -> Selection:
    """Steps 2-3: time the shortlist with ``timer`` and keep the fastest."""
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise HiosError("candidate names must be unique")
    chosen = shortlist(candidates, top)
    if not chosen:
        raise HiosError("no candidate to time")
    t0 = clock()
    measured: dict[str, float] = {}
    errors: dict[str, str] = {}
    by_key: dict[Hashable, str] = {}
    for c in chosen:
        if c.key is not None and c.key in by_key:
            same = by_key[c.key]
            if same in measured:
                measured[c.name] = measured[same]
            else:
                errors[c.name] = errors[same]
            continue
        if c.key is not None:
            by_key[c.key] = c.name
        try:
            fn = c.build()
            ms = float(timer(fn))
            if not ms > 0:
                raise HiosError(f"timer returned {ms!r} ms")
            measured[c.name] = ms
        except Exception as e:  # a candidate that cannot run is reported, not fatal
            errors[c.name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    seconds = clock() - t0
    if not measured:
        first = next(iter(errors.items()))
        raise HiosError(f"no candidate could be measured ({first[0]}: {first[1]})")
    order = sorted(measured, key=lambda n: (measured[n], names.index(n)))
    winner = order[0]
    keys = {c.name: (c.key if c.key is not None else ("name", c.name)) for c in chosen}
    rest = [n for n in order if keys[n] != keys[winner]]
    margin = measured[rest[0]] / measured[winner] if rest else None
    return Selection(winner, measured, errors, {c.name: c.predicted_ms for c in candidates}, margin, seconds,
                     [c.name for c in chosen])


# -- candidate plans (torch-free) -------------------------------------------------------------------

#: (name, algorithm, scheduler options, GPUs: None = the plan's, 1 = one device) tried by default.
DEFAULT_CONFIGS: tuple[tuple[str, str, dict, int | None], ...] = (
    ("hios-lp", "hios-lp", {}, None),
    ("hios-lp w2/s2", "hios-lp", {"window": 2, "streams": 2}, None),
    ("hios-mr", "hios-mr", {}, None),
    ("hios-lp 1 device", "hios-lp", {}, 1),
    ("sequential", "sequential", {}, 1),
)


def plan_candidates(graph, machine, stage_model, configs=DEFAULT_CONFIGS) -> list[tuple[str, object, float]]:
    """``(name, schedule, predicted ms)`` for each configuration (algorithm, window/stream counts,
    the plan's GPUs or one), simulated under ``stage_model``; schedules equal to an earlier one's are
    dropped (so a one-device variant of a one-GPU plan is the plan itself)."""
    from .machine import Machine
    from .schedulers import schedule
    from .simulator import Simulator
    out, seen = [], set()
    for name, algo, opts, gpus in configs:
        m = machine if gpus is None or gpus == machine.gpus else Machine(gpus, machine.link)
        sched = schedule(graph, m, algo, stage_model=stage_model, **opts)
        key = tuple(tuple(tuple(s) for s in sts) for sts in sched.stages if sts)
        if key in seen:
            continue
        seen.add(key)
        out.append((name, sched, Simulator(graph, m, stage_model).simulate(sched).latency))
    return out
