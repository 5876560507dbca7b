"""Steps 5-6 of :func:`~hios.frontend.capture.capture`: nodes grouped into operators (chains fused),
named, and emitted as a :class:`~hios.graph.Graph` whose edges carry the bytes read."""

from __future__ import annotations

import heapq
import operator
import re

import torch
import torch.fx

from ...graph import Edge, Graph, Operator
from .nodes import _COMPUTE, _RANK, _base_name, _kind
from .clean import _get_attr
from .record import _NodeInfo


def _groups(gm: torch.fx.GraphModule) -> list[list[torch.fx.Node]]:
    """Fused groups of compute nodes, in a topological order (see the module docstring)."""
    nodes = [n for n in gm.graph.nodes if n.op in _COMPUTE]
    pos = {n: k for k, n in enumerate(gm.graph.nodes)}
    gid = {n: k for k, n in enumerate(nodes)}
    members: dict[int, list[torch.fx.Node]] = {k: [n] for k, n in enumerate(nodes)}

    def find(n: torch.fx.Node) -> int:
        return gid[n]

    def merge(a: int, b: int) -> None:
        for n in members[b]:
            gid[n] = a
        members[a].extend(members.pop(b))

    for n in nodes:  # getitem on an operator's tuple output belongs to that operator
        if n.op == "call_function" and n.target is operator.getitem and isinstance(n.args[0], torch.fx.Node) \
                and n.args[0] in gid and find(n) != find(n.args[0]):
            merge(find(n.args[0]), find(n))

    def producers(g: int) -> set[int]:
        return {gid[a] for n in members[g] for a in n.all_input_nodes if a in gid} - {g}

    def consumers(g: int) -> set[int]:
        return {gid[u] for n in members[g] for u in n.users if u in gid} - {g}

    for n in nodes:
        g = find(n)
        if g not in members:
            continue
        while True:
            cons = consumers(g)
            if len(cons) != 1:
                break
            (c,) = cons
            if producers(c) != {g}:
                break
            merge(g, c)
    _gather_cheap_joins(gm, nodes, members, find, merge, producers, consumers)
    groups = [sorted(ms, key=pos.__getitem__) for ms in members.values()]
    # Kahn over the group DAG, earliest first node first
    idx = {id(g[0]): k for k, g in enumerate(groups)}
    of = {n: idx[id(g[0])] for g in groups for n in g}
    preds = [set() for _ in groups]
    succs = [set() for _ in groups]
    for k, g in enumerate(groups):
        for n in g:
            for a in n.all_input_nodes:
                if a in of and of[a] != k:
                    preds[k].add(of[a])
                    succs[of[a]].add(k)
    indeg = [len(p) for p in preds]
    heap = [(pos[groups[k][0]], k) for k in range(len(groups)) if indeg[k] == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        _, k = heapq.heappop(heap)
        order.append(groups[k])
        for s in succs[k]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, (pos[groups[s][0]], s))
    return order


#: Node kinds of a cheap group (memory-bound, no weights) that may join the group reading it.
_CHEAP = frozenset({"add", "mul", "relu", "activation", "pad", "pool", "reshape"})
#: Element-wise joins: a pool joins its reader only once it has joined one of these, or to join one.
_JOINS = frozenset({"add", "mul"})
#: Lone activations that join their producer when several groups read them.
_ACTIVATIONS = frozenset({"relu", "activation"})


def _gather_cheap_joins(gm, nodes, members, find, merge, producers, consumers) -> None:
    """The cheap-join rules of step 5 (see the package docstring), on the fused chains.

    1. A group that is one activation node, with one producer group and several consumer groups
       (a ReLU shared by branches once repeats are computed once), joins its producer.
    2. In topological order, a group of only cheap nodes (element-wise, pad, pool, view) whose
       value one other group reads joins that group; a group with a pool but no element-wise join
       does so only when the reader holds one (NASNet: pool -> add -> concatenation; Inception's
       pool branch stays beside the convolutions it runs in parallel with).
    Both contract one edge of the group DAG at an end of degree one, so it stays acyclic."""
    def kinds(g: int) -> set[str]:
        return {_kind(_base_name(gm, n)) for n in members[g]}

    for n in nodes:
        g = find(n)
        if len(members[g]) == 1 and kinds(g) <= _ACTIVATIONS and len(consumers(g)) > 1:
            prods = producers(g)
            if len(prods) == 1:
                merge(next(iter(prods)), g)
    for n in nodes:
        g = find(n)
        ks = kinds(g)
        if not ks <= _CHEAP:
            continue
        cons = consumers(g)
        if len(cons) != 1:
            continue
        (c,) = cons
        if "pool" in ks and not ks & _JOINS and not kinds(c) & _JOINS:
            continue
        merge(c, g)


def _attr_bytes(gm: torch.fx.GraphModule, node: torch.fx.Node) -> int:
    """Bytes of parameters/buffers a node reads."""
    total = 0
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        total += sum(t.numel() * t.element_size() for t in list(mod.parameters()) + list(mod.buffers()))
    for a in node.all_input_nodes:
        if a.op == "get_attr":
            t = _get_attr(gm, a.target)
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def _module_path(node: torch.fx.Node) -> str | None:
    """Qualified name of the module that ran ``node`` (export records it), "" at the root."""
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return None
    entry = list(stack.values())[-1]
    path = str(entry[0] if isinstance(entry, (tuple, list)) else entry)
    path = re.sub(r"^L\['self'\]\.?", "", path)
    return re.sub(r"[^A-Za-z0-9_.]", "_", path)


def _op_names(gm: torch.fx.GraphModule, groups: list[list[torch.fx.Node]], method: str) -> list[str]:
    """Operator names.  After symbolic tracing: the first node's fx name (already built from the
    module path).  After export, fx names are op counters ("conv2d_17") that shift when torch
    versions decompose differently, so the name is ``<module path>.<op>`` of the first node (a
    ``_k`` suffix tells repeats apart), which keeps plans and profiles portable."""
    if method != "export":
        return [g[0].name for g in groups]
    names, used = [], set()
    for g in groups:
        path = _module_path(g[0])
        base = _base_name(gm, g[0])
        cand = g[0].name if path is None else (f"{path}.{base}" if path else base)
        name, k = cand, 0
        while name in used:
            k += 1
            name = f"{cand}_{k}"
        used.add(name)
        names.append(name)
    return names


def _operators(gm: torch.fx.GraphModule, info: dict[str, _NodeInfo], name: str,
               method: str = "symbolic_trace") -> Graph:
    groups = _groups(gm)
    opnames = _op_names(gm, groups, method)
    owner = {n: opnames[k] for k, g in enumerate(groups) for n in g}
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    ops, edges = [], []
    for g, opname in zip(groups, opnames):
        members = set(g)
        kinds = [_kind(_base_name(gm, n)) for n in g]
        kind = min(kinds, key=_RANK.index)
        outputs = [n for n in g if any(u not in members for u in n.users)]
        flops = [info[n.name].flops for n in g]
        known = [f for f in flops if f is not None]
        moved = 0
        work = []  # per kernel: [tensor FLOPs, FLOPs, bytes read + written]
        for n, k in zip(g, kinds):
            if k == "reshape":
                continue
            nb = info[n.name].nbytes + _attr_bytes(gm, n)
            nb += sum(info[a.name].nbytes for a in n.all_input_nodes if a.name in info)
            work.append([info[n.name].tensor_flops, info[n.name].flops or 0, int(nb)])
            moved += nb
        kernels = len(work)
        first = next((info[n.name] for n in outputs if info[n.name].dtypes), None)
        ops.append(Operator(
            opname, 0.0, kind, sum(info[n.name].nbytes for n in outputs), 1.0,
            {"nodes": [n.name for n in g], "flops": sum(known) if known else None,
             "tensor_flops": sum(info[n.name].tensor_flops for n in g), "bytes_moved": int(moved),
             "kernel_work": work, "out_shapes": [s for n in outputs for s in info[n.name].shapes],
             "dtype": first.dtypes[0] if first else None, "kernels": kernels,
             "graph_output": any(out_node in n.users for n in g)}))
        reads: dict[str, set[str]] = {}
        for n in g:
            for a in n.all_input_nodes:
                if a in owner and a not in members:
                    reads.setdefault(owner[a], set()).add(a.name)
        for src, names in reads.items():
            edges.append(Edge(src, opname, sum(info[x].nbytes for x in names)))
    return Graph(ops, edges, name)
