"""Schedulers, all reached through :func:`schedule`.

Each algorithm lives in its own module named after it and is a function
``algo(graph, machine, *, stage_model=None, **options) -> Schedule``.
"""

from __future__ import annotations

import inspect
import time
from typing import Callable

from ..cost.costmodel import StageModel
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

__all__ = ["ALGORITHMS", "PASS_OPTIONS", "parse_algorithms", "refusal", "schedule"]

#: Options of :func:`schedule` itself, taken by every algorithm: passes run on its schedule
#: (``absorb_joins``: :mod:`.absorb_joins`, off unless given a fraction).
PASS_OPTIONS = ("absorb_joins",)

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
    includes ``optimal`` when ``graph`` is given and OR-Tools is installed (a graph beyond its
    reach is then skipped where it runs: :func:`refusal`)."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return [n for n in ALGORITHMS if n != "optimal" or (graph is not None and _have_ortools())]
    for n in names:
        if n not in ALGORITHMS:
            raise HiosError(f"unknown algorithm {n!r}; choose from {', '.join(ALGORITHMS)} or 'all'")
    if not names:
        raise HiosError("no algorithm given")
    return names


def _have_ortools() -> bool:
    from importlib.util import find_spec

    return find_spec("ortools") is not None


def refusal(algorithm: str, graph: Graph, stage_model: StageModel | None = None, **options) -> str | None:
    """Why ``algorithm`` will not take ``graph`` with these options (None: it will): the exact
    solver's size limits (:func:`hios.schedulers.optimal.size_problem`); every other algorithm
    takes every graph."""
    if algorithm != "optimal":
        return None
    from .optimal import size_problem
    return size_problem(graph, options.get("streams"), stage_model, options.get("resolution_us", 0.01),
                        options.get("intra", True), options.get("window"))


def schedule(graph: Graph, machine: Machine, algorithm: str = "hios-lp", stage_model: StageModel | None = None,
             **options) -> Schedule:
    """Schedule ``graph`` on ``machine`` with ``algorithm`` (a name of :data:`ALGORITHMS`).

    Each algorithm's steps are in its module's docstring (``hios.schedulers.hios_lp``, ...).
    ``options`` are the algorithm's own knobs (e.g. ``window``, ``streams``, ``intra`` for HIOS,
    ``time_limit`` for ``optimal``); an option it does not take is an error.  ``absorb_joins``
    (a fraction in (0, 1], default None: off) runs :func:`hios.schedulers.absorb_joins.absorb_joins`
    on the result.  The wall time (the pass included) is recorded in
    ``schedule.meta['optimize_seconds']``.

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
    absorb = options.pop("absorb_joins", None)
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for k in options:
            if k not in params:
                raise HiosError(f"algorithm {algorithm!r} has no option {k!r}")
    t0 = time.perf_counter()
    sched = fn(graph, machine, stage_model=stage_model, **options)
    if absorb is not None:
        from .absorb_joins import absorb_joins
        sched = absorb_joins(graph, sched, absorb)
    sched.meta["optimize_seconds"] = time.perf_counter() - t0
    sched.algorithm = sched.algorithm or algorithm
    return sched
