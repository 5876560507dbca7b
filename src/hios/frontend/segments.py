"""Runnable pieces of a captured model.

A *segment* is a set of operators of a :class:`~hios.frontend.capture.Captured` model compiled into
one ``torch.fx.GraphModule``: its inputs are the values it reads from outside (other operators'
outputs or model inputs, by fx node name), its outputs the values it produces that something
outside needs (another operator or the model output).  Parameters are shared with
``captured.gm`` (never copied).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.fx
import torch.utils._pytree as pytree

from ..errors import HiosError
from .capture import Captured

__all__ = ["Segment", "assemble_output", "build_segment", "output_names", "run_by_operators"]


@dataclass
class Segment:
    module: torch.fx.GraphModule   # forward(*inputs) -> tuple of outputs
    inputs: list[str]              # fx node names it reads from outside
    outputs: list[str]             # fx node names it produces that something outside needs


def _nodes_by_name(captured: Captured) -> dict[str, torch.fx.Node]:
    return {n.name: n for n in captured.gm.graph.nodes}


def build_segment(captured: Captured, op_names: Sequence[str]) -> Segment:
    """Compile the given operators (run in the given order) into one module."""
    g = captured.graph
    by_name = _nodes_by_name(captured)
    order: list[torch.fx.Node] = []
    for op in op_names:
        if op not in g.index:
            raise HiosError(f"segment names unknown operator {op!r} of {g.name!r}")
        order.extend(by_name[x] for x in g[op].meta["nodes"])
    inside = set(order)
    if len(inside) != len(order):
        raise HiosError("segment lists an operator twice")
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {}
    inputs: list[str] = []
    for n in order:
        for a in n.all_input_nodes:
            if a in env or a in inside:
                continue
            if a.op == "get_attr":
                env[a] = graph.get_attr(a.target)
            else:
                env[a] = graph.placeholder(a.name)
                inputs.append(a.name)
    for n in order:
        missing = [a.name for a in n.all_input_nodes if a not in env]
        if missing:
            raise HiosError(f"segment runs {n.name!r} before its input {missing[0]!r}: "
                            "operators must be given in a topological order")
        env[n] = graph.node_copy(n, env.__getitem__)
    outputs = [n for n in order if any(u not in inside for u in n.users)]
    graph.output(tuple(env[n] for n in outputs))
    module = torch.fx.GraphModule(captured.gm, graph, class_name="Segment")
    return Segment(module, inputs, [n.name for n in outputs])


def output_names(captured: Captured) -> Any:
    """The model output's structure with fx node names as leaves (non-node leaves kept as is)."""
    out = next(n for n in captured.gm.graph.nodes if n.op == "output")
    flat = out.args[0]
    names = torch.fx.node.map_arg(flat, lambda n: n.name)
    info = getattr(captured.gm.graph._codegen, "pytree_info", None)
    if info is not None and info.out_spec is not None:
        leaves = list(names) if isinstance(names, (tuple, list)) else [names]
        return pytree.tree_unflatten(leaves, info.out_spec)
    return names


def assemble_output(captured: Captured, env: dict[str, torch.Tensor]) -> Any:
    """The model's output, same structure as ``model(*inputs)``, from values by node name."""
    def pick(leaf):
        if isinstance(leaf, str):
            try:
                return env[leaf]
            except KeyError:
                raise HiosError(f"value {leaf!r} of the model output was not computed") from None
        return leaf
    return pytree.tree_map(pick, output_names(captured))


def run_by_operators(captured: Captured, *inputs) -> Any:
    """Run every operator as its own segment in topological order (the reference path)."""
    if len(inputs) != len(captured.input_names):
        raise HiosError(f"{captured.graph.name} takes {len(captured.input_names)} input(s), got {len(inputs)}")
    env: dict[str, Any] = dict(zip(captured.input_names, inputs))
    g = captured.graph
    with torch.no_grad():
        for i in g.topo:
            seg = build_segment(captured, [g.ops[i].name])
            outs = seg.module(*[env[x] for x in seg.inputs])
            env.update(zip(seg.outputs, outs))
    return assemble_output(captured, env)
