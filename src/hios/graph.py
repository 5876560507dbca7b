"""Operator graph: the DAG every other part of hios works on.

An :class:`Operator` is one schedulable unit (a convolution, a fused conv→relu
chain, a pool, …) with a cost in milliseconds, the size of its output in bytes
and a *utilization*: the share of one GPU it can use when it runs alone.
An :class:`Edge` carries the bytes that would cross GPUs and/or an explicit
transfer time.

A :class:`Graph` is immutable once built and validated.  Besides the name-based
view it keeps an integer-indexed view (``preds``/``succs``/``topo``) that the
simulator and the schedulers use inside their search loops, so nothing ever
has to copy a graph to try a candidate.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .errors import HiosError
from .limits import MAX_BYTES, MAX_COST_MS, check_graph_size, number_problem

__all__ = ["Edge", "Graph", "GraphError", "Operator"]


class GraphError(HiosError, ValueError):
    """A graph, file or schedule is invalid.  The message is one line and names the culprit."""


@dataclass(frozen=True)
class Operator:
    name: str
    cost: float = 0.0
    kind: str = "generic"
    output_bytes: int = 0
    utilization: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def with_cost(self, cost: float, utilization: float | None = None) -> "Operator":
        return Operator(self.name, cost, self.kind, self.output_bytes,
                        self.utilization if utilization is None else utilization, self.meta)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    bytes: int = 0
    time: float | None = None  # explicit transfer time in ms; overrides bytes/bandwidth


def _bad_number(x: float) -> bool:
    """Not a finite real number (bools and strings are bad too; numpy scalars are fine)."""
    t = type(x)
    if t is float:
        return not math.isfinite(x)
    if t is int:
        return False
    return not isinstance(x, numbers.Real) or isinstance(x, bool) or not math.isfinite(x)


def _show(x) -> str:
    """``repr`` of a bad value, shortened to stay on one line (a 400-digit integer, a long string)."""
    r = repr(x) if not isinstance(x, int) or abs(x) < 10 ** 30 else f"{'-' if x < 0 else ''}<{len(str(abs(x)))}-digit integer>"
    r = " ".join(r.split())
    return r if len(r) <= 60 else r[:57] + "..."


class Graph:
    """A validated DAG of operators, immutable once built.

    Parameters
    ----------
    operators : iterable of Operator
        Unique names; ``cost`` in ms, ``utilization`` in (0, 1] (the share of the GPU it keeps busy).
    edges : iterable of Edge
        ``src -> dst`` by name; ``bytes`` moved, or an explicit transfer ``time`` in ms.
    name : str
    meta : dict, optional

    Attributes
    ----------
    ops, edges : tuple
    index : dict
        Operator name -> index.
    preds, succs : list of list of int
        Neighbour indices of each operator.
    in_edges : list of list of (int, Edge)
    topo : list of int
        A topological order (stable: ties keep insertion order).

    Raises
    ------
    GraphError
        One line naming the culprit: empty graph, duplicate or unknown name, bad number, cycle.

    Examples
    --------
    >>> from hios import Edge, Graph, Operator
    >>> g = Graph([Operator("a", 1.0), Operator("b", 2.0), Operator("c", 1.5)],
    ...           [Edge("a", "b", 4096), Edge("a", "c", 4096)], name="fork")
    >>> [g.ops[i].name for i in g.topo], g.total_work()
    (['a', 'b', 'c'], 4.5)
    >>> Graph([Operator("a"), Operator("a")], [])
    Traceback (most recent call last):
        ...
    hios.graph.GraphError: duplicate operator name 'a'
    """

    def __init__(self, operators: Iterable[Operator], edges: Iterable[Edge], name: str = "graph",
                 meta: dict[str, Any] | None = None):
        self.name = name
        if meta is not None and not isinstance(meta, dict):
            raise GraphError(f"graph {name!r}: meta must be a mapping, got {type(meta).__name__}")
        self.meta = dict(meta or {})
        self.ops: tuple[Operator, ...] = tuple(operators)
        self.edges: tuple[Edge, ...] = tuple(edges)
        if not self.ops:
            raise GraphError(f"graph {name!r} is empty: it has no operators")
        try:
            check_graph_size(len(self.ops), len(self.edges), f"graph {name!r}")
        except HiosError as e:
            raise GraphError(str(e)) from None
        self.index: dict[str, int] = {}
        for i, op in enumerate(self.ops):
            if not isinstance(op, Operator):
                raise GraphError(f"operator #{i} is not an Operator: {op!r}")
            if not isinstance(op.name, str) or not op.name:
                raise GraphError(f"operator #{i} has no name (a non-empty string is needed, got {op.name!r})")
            if op.name in self.index:
                raise GraphError(f"duplicate operator name {op.name!r}")
            if not isinstance(op.kind, str):
                raise GraphError(f"operator {op.name!r} has kind {op.kind!r}; a kind is a string")
            why = number_problem(op.cost, MAX_COST_MS, " ms")
            if why:
                raise GraphError(f"operator {op.name!r} has an invalid cost {_show(op.cost)}: {why}")
            if _bad_number(op.utilization) or not 0 < op.utilization <= 1:
                raise GraphError(f"operator {op.name!r} has utilization {_show(op.utilization)} outside (0, 1]")
            why = number_problem(op.output_bytes, MAX_BYTES)
            if why:
                raise GraphError(f"operator {op.name!r} has invalid output_bytes {_show(op.output_bytes)}: {why}")
            self.index[op.name] = i
        n = len(self.ops)
        self.preds: list[list[int]] = [[] for _ in range(n)]
        self.succs: list[list[int]] = [[] for _ in range(n)]
        self.in_edges: list[list[tuple[int, Edge]]] = [[] for _ in range(n)]
        self.out_edges: list[list[tuple[int, Edge]]] = [[] for _ in range(n)]
        seen: set[tuple[int, int]] = set()
        for e in self.edges:
            if not isinstance(e, Edge):
                raise GraphError(f"edge {e!r} is not an Edge")
            if not isinstance(e.src, str) or not isinstance(e.dst, str):
                raise GraphError(f"edge {e.src!r} -> {e.dst!r}: endpoints must be operator names (strings)")
            u = self.index.get(e.src)
            v = self.index.get(e.dst)
            if u is None or v is None:
                missing = e.src if u is None else e.dst
                raise GraphError(f"edge {e.src!r} -> {e.dst!r} names unknown operator {missing!r}")
            if u == v:
                raise GraphError(f"edge {e.src!r} -> {e.dst!r} is a self-loop")
            if (u, v) in seen:
                raise GraphError(f"duplicate edge {e.src!r} -> {e.dst!r}")
            why = number_problem(e.bytes, MAX_BYTES)
            if why:
                raise GraphError(f"edge {e.src!r} -> {e.dst!r} has invalid bytes {_show(e.bytes)}: {why}")
            why = None if e.time is None else number_problem(e.time, MAX_COST_MS, " ms")
            if why:
                raise GraphError(f"edge {e.src!r} -> {e.dst!r} has invalid time {_show(e.time)}: {why}")
            seen.add((u, v))
            self.preds[v].append(u)
            self.succs[u].append(v)
            self.in_edges[v].append((u, e))
            self.out_edges[u].append((v, e))
        self.topo: list[int] = self._toposort()
        self.position: list[int] = [0] * n  # position of each operator in ``topo``
        for k, i in enumerate(self.topo):
            self.position[i] = k

    # -- structure -------------------------------------------------------
    def _toposort(self) -> list[int]:
        n = len(self.ops)
        indeg = [len(p) for p in self.preds]
        order = [i for i in range(n) if indeg[i] == 0]
        head = 0
        while head < len(order):
            u = order[head]
            head += 1
            for v in self.succs[u]:
                indeg[v] -= 1
                if indeg[v] == 0:
                    order.append(v)
        if len(order) < n:
            stuck = next(i for i in range(n) if indeg[i] > 0)
            cycle = self._find_cycle(stuck, indeg)
            raise GraphError("graph has a cycle: " + " -> ".join(self.ops[i].name for i in cycle))
        return order

    def _find_cycle(self, start: int, indeg: list[int]) -> list[int]:
        # Walk backwards through operators that still have unresolved inputs; we must revisit one.
        path: list[int] = []
        where: dict[int, int] = {}
        u = start
        while u not in where:
            where[u] = len(path)
            path.append(u)
            u = next(p for p in self.preds[u] if indeg[p] > 0)
        cyc = path[where[u]:]
        cyc.reverse()
        return cyc + [cyc[0]]

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self):
        return iter(self.ops)

    def __getitem__(self, name: str) -> Operator:
        return self.ops[self.index[name]]

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self.ops)} operators, {len(self.edges)} edges)"

    @property
    def names(self) -> list[str]:
        return [op.name for op in self.ops]

    @property
    def costs(self) -> list[float]:
        return [op.cost for op in self.ops]

    def sources(self) -> list[int]:
        return [i for i in range(len(self.ops)) if not self.preds[i]]

    def sinks(self) -> list[int]:
        return [i for i in range(len(self.ops)) if not self.succs[i]]

    def total_work(self) -> float:
        return sum(op.cost for op in self.ops)

    def ancestors_mask(self) -> list[int]:
        """Bit mask of all ancestors of every operator (bit *j* set if *j* reaches *i*)."""
        anc = [0] * len(self.ops)
        for v in self.topo:
            m = 0
            for u in self.preds[v]:
                m |= anc[u] | (1 << u)
            anc[v] = m
        return anc

    def with_costs(self, costs: Sequence[float] | dict[str, float],
                   utilization: Sequence[float] | dict[str, float] | None = None) -> "Graph":
        """A new graph with the same structure and other operator costs."""
        def pick(src, i, op):
            return src[op.name] if isinstance(src, dict) else src[i]
        ops = [op.with_cost(pick(costs, i, op),
                            None if utilization is None else pick(utilization, i, op))
               for i, op in enumerate(self.ops)]
        return Graph(ops, self.edges, self.name, self.meta)
