"""Schedulers, all reached through :func:`schedule`.

Each algorithm lives in its own module named after it and is a function
``algo(graph, machine, *, stage_model=None, **options) -> Schedule``.
"""

from __future__ import annotations

import inspect
import time
from typing import Callable

from ..costmodel import StageModel
from ..errors import HiosError
from ..graph import Graph
from ..machine import Machine
from ..schedule import Schedule
from .hios_lp import hios_lp
from .hios_mr import hios_mr
from .sequential import sequential
from .ios import ios
from .heft import heft
from .optimal import optimal

__all__ = ["ALGORITHMS", "parse_algorithms", "schedule"]

ALGORITHMS: dict[str, Callable[..., Schedule]] = {
    "sequential": sequential,
    "hios-lp": hios_lp,
    "hios-mr": hios_mr,
    "ios": ios,
    "heft": heft,
    "optimal": optimal,
}


def parse_algorithms(spec: str, graph: Graph | None = None) -> list[str]:
    """``"hios-lp,heft"`` or ``"all"`` -> list of names; unknown names are an error.  ``"all"``
    includes ``optimal`` when ``graph`` is given, small enough for it and OR-Tools is installed."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return [n for n in ALGORITHMS if n != "optimal" or (graph is not None and _exact_fits(graph))]
    for n in names:
        if n not in ALGORITHMS:
            raise HiosError(f"unknown algorithm {n!r}; choose from {', '.join(ALGORITHMS)} or 'all'")
    if not names:
        raise HiosError("no algorithm given")
    return names


def _exact_fits(graph: Graph) -> bool:
    from importlib.util import find_spec

    from .optimal import size_problem
    return find_spec("ortools") is not None and size_problem(graph) is None


def schedule(graph: Graph, machine: Machine, algorithm: str = "hios-lp", stage_model: StageModel | None = None,
             **options) -> Schedule:
    """Schedule ``graph`` on ``machine`` with ``algorithm`` (a name of :data:`ALGORITHMS`).

    Each algorithm's steps are in its module's docstring (``hios.schedulers.hios_lp``, ...).
    ``options`` are the algorithm's own knobs (e.g. ``window``, ``streams``, ``intra`` for HIOS,
    ``time_limit`` for ``optimal``); an option it does not take is an error.  The wall time is
    recorded in ``schedule.meta['optimize_seconds']``.

    Examples
    --------
    >>> import hios
    >>> g = hios.layered_dag(40, 80, 4, 0.8, seed=1)
    >>> m = hios.Machine(2)
    >>> s = hios.schedule(g, m, "hios-lp")
    >>> sorted(s.operators()) == sorted(g.names)
    True
    >>> hios.simulate(g, s, m).latency <= hios.simulate(g, hios.schedule(g, m, "sequential"), m).latency
    True
    """
    try:
        fn = ALGORITHMS[algorithm]
    except KeyError:
        raise HiosError(f"unknown algorithm {algorithm!r}; choose from {', '.join(ALGORITHMS)}") from None
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for k in options:
            if k not in params:
                raise HiosError(f"algorithm {algorithm!r} has no option {k!r}")
    t0 = time.perf_counter()
    sched = fn(graph, machine, stage_model=stage_model, **options)
    sched.meta["optimize_seconds"] = time.perf_counter() - t0
    sched.algorithm = sched.algorithm or algorithm
    return sched
