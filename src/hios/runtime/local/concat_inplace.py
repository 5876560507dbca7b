"""Concatenation in place: branches that feed a concatenation write straight into their slice of
its output buffer, so the concatenation kernel disappears from the path.

Steps:
  1. :func:`plan_inplace_cats` finds the concatenations it can remove: an operator that starts
     with a ``torch.cat`` node and starts its segment, whose every input is the single output of
     another operator, read by nothing but this concatenation, computed in the same memory space,
     with a recorded shape.  Each gets its buffer's shape and dtype and every producer its slice.
  2. The executor allocates each buffer before issuing the program (on the caller's stream, so
     every stream is ordered after the allocation; inside CUDA-graph capture it lives in the
     graph's pool), hands each producer segment a view of its slice, and the producer segment
     copies its value into it as its last step (:func:`write_into`; with Inductor the copy fuses
     into the kernel that computes the value).  The concatenation's segment reads the buffer
     instead of concatenating (:func:`read_buffer`; a segment that was only the concatenation
     runs nothing): the buffer is complete once every producer's event has fired, which the
     segment already waits for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.fx


@dataclass(frozen=True)
class Part:
    node: str          # producer's fx node (the value written into the slice)
    op: str            # producer operator
    start: int
    stop: int


@dataclass(frozen=True)
class InplaceCat:
    op: str                    # the concatenation operator
    node: str                  # its fx node (the buffer's name in the executor's values)
    dim: int
    shape: tuple[int, ...]
    dtype: str
    parts: tuple[Part, ...]


def _cat_node(captured, op):
    nodes = op.meta.get("nodes", [])
    if not nodes:
        return None
    n = next((x for x in captured.gm.graph.nodes if x.name == nodes[0]), None)
    if n is None or n.op != "call_function" or n.target not in (torch.cat, torch.concat):
        return None
    return n


def _single_output(captured, op_name: str, node_name: str) -> tuple | None:
    meta = captured.graph[op_name].meta
    shapes = meta.get("out_shapes") or []
    return tuple(shapes[0]) if len(shapes) == 1 and meta["nodes"][-1] == node_name else None


def plan_inplace_cats(captured, program, memory: list) -> list[InplaceCat]:
    """Step 1: the concatenations of ``program`` that can be removed (see the module docstring)."""
    g = captured.graph
    node_op = {n: op.name for op in g.ops for n in op.meta.get("nodes", [])}
    out = []
    for op in g.ops:
        n = _cat_node(captured, op)
        if n is None:
            continue
        seg = program.steps[program.segment_of[op.name]]
        if seg.ops[0] != op.name:
            continue
        tensors = n.args[0] if n.args else n.kwargs.get("tensors")
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(dim, int):
            continue
        parts, shapes = [], []
        for t in tensors:
            p = node_op.get(t.name) if isinstance(t, torch.fx.Node) else None
            pshape = _single_output(captured, p, t.name) if p else None
            if (p is None or len(t.users) != 1 or sum(1 for x in tensors if x is t) != 1 or pshape is None
                    or memory[program.placement[p][0]] != memory[seg.device]):
                break
            shapes.append(pshape)
            parts.append(p)
        else:
            rank = len(shapes[0])
            d = dim % rank if rank else 0
            rest = {s[:d] + s[d + 1:] for s in shapes}
            if rank == 0 or len(rest) != 1 or any(len(s) != rank for s in shapes) or len(set(parts)) != len(parts):
                continue
            start, placed = 0, []
            for t, p, sh in zip(tensors, parts, shapes):
                placed.append(Part(t.name, p, start, start + sh[d]))
                start += sh[d]
            shape = shapes[0][:d] + (start,) + shapes[0][d + 1:]
            dtype = str(g[parts[0]].meta.get("dtype") or "torch.float32")
            out.append(InplaceCat(op.name, n.name, d, shape, dtype, tuple(placed)))
    return out


def dtype_of(name: str) -> torch.dtype:
    return getattr(torch, name.replace("torch.", ""))


def read_buffer(gm: torch.fx.GraphModule, node: str, inputs: list[str]) -> list[str]:
    """Rewrite a segment module in place so that it reads the concatenation ``node`` as an input
    (the buffer its producers filled) instead of computing it; returns the new input names."""
    graph = gm.graph
    cat = next(n for n in graph.nodes if n.name == node)
    first = next((n for n in graph.nodes if n.op != "placeholder"), None)
    with graph.inserting_before(first):
        buf = graph.placeholder(f"{node}_buffer")
    cat.replace_all_uses_with(buf)
    graph.erase_node(cat)
    names = dict(zip([n for n in graph.nodes if n.op == "placeholder" and n is not buf], inputs))
    for ph, name in list(names.items()):
        if not ph.users:
            graph.erase_node(ph)
            del names[ph]
    graph.lint()
    gm.recompile()
    return [names[ph] if ph is not buf else node for ph in graph.nodes if ph.op == "placeholder"]


def write_into(gm: torch.fx.GraphModule, write: Sequence[int]) -> torch.fx.GraphModule:
    """Rewrite a segment module in place so that its outputs number ``write[k]`` are copied into
    new trailing inputs (slices of concatenation buffers) instead of being returned.  An fx
    rewrite, not a wrapper module: every segment keeps code of its own, so ``torch.compile``
    compiles each once (a shared wrapper ``forward`` would hit Dynamo's recompile limit)."""
    graph = gm.graph
    out = next(n for n in graph.nodes if n.op == "output")
    vals = list(out.args[0])
    first = next((n for n in graph.nodes if n.op != "placeholder"), out)
    slots = []
    for k in write:
        with graph.inserting_before(first):
            slots.append(graph.placeholder(f"slice_{k}"))
    for k, slot in zip(write, slots):
        with graph.inserting_before(out):
            graph.call_method("copy_", (slot, vals[k]))
    out.args = (tuple(v for k, v in enumerate(vals) if k not in set(write)),)
    graph.lint()
    gm.recompile()
    return gm


__all__ = ["InplaceCat", "Part", "dtype_of", "plan_inplace_cats", "read_buffer", "write_into"]
