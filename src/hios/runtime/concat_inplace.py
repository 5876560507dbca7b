"""Concatenation in place: branches that feed a concatenation write straight into their slice of
its output buffer, so the concatenation kernel disappears from the path.

Steps:
  1. :func:`plan_inplace_cats` finds the concatenations it can remove: an operator that is one
     ``torch.cat`` node, alone in its segment, whose every input is the single output of another
     operator, read by nothing but this concatenation, computed in the same memory space, with a
     recorded shape.  Each gets its buffer's shape and dtype and every producer its slice.
  2. The executor allocates each buffer before issuing the program (on the caller's stream, so
     every stream is ordered after the allocation; inside CUDA-graph capture it lives in the
     graph's pool), hands each producer segment a view of its slice, and the producer segment
     copies its value into it as its last step (:class:`WriteInto`; with Inductor the copy fuses
     into the kernel that computes the value).  The concatenation's segment runs nothing: its
     value is the buffer, complete once every producer's event has fired, which the segment
     already waits for.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


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
    if len(nodes) != 1:
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
        if seg.ops != (op.name,):
            continue
        tensors = n.args[0] if n.args else n.kwargs.get("tensors")
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        shape = tuple(op.meta.get("out_shapes", [None])[0] or ())
        if not isinstance(tensors, (list, tuple)) or not shape or not isinstance(dim, int):
            continue
        dim = dim % len(shape)
        parts, start, ok = [], 0, True
        for t in tensors:
            p = node_op.get(t.name) if isinstance(t, torch.fx.Node) else None
            pshape = _single_output(captured, p, t.name) if p else None
            if (p is None or len(t.users) != 1 or sum(1 for x in tensors if x is t) != 1 or pshape is None
                    or memory[program.placement[p][0]] != memory[seg.device] or len(pshape) != len(shape)):
                ok = False
                break
            parts.append(Part(t.name, p, start, start + pshape[dim]))
            start += pshape[dim]
        if ok and start == shape[dim] and len({p.op for p in parts}) == len(parts):
            out.append(InplaceCat(op.name, n.name, dim, shape, str(op.meta.get("dtype") or "torch.float32"),
                                  tuple(parts)))
    return out


def dtype_of(name: str) -> torch.dtype:
    return getattr(torch, name.replace("torch.", ""))


class WriteInto(nn.Module):
    """Runs ``inner`` on the first ``n_in`` arguments and copies its outputs number ``write[k]``
    into the trailing argument ``k`` (a slice of a concatenation buffer); returns the others."""

    def __init__(self, inner: nn.Module, n_in: int, write: tuple[int, ...]):
        super().__init__()
        self.inner = inner
        self.n_in = n_in
        self.write = tuple(write)

    def forward(self, *args):
        outs = self.inner(*args[:self.n_in])
        for k, dst in zip(self.write, args[self.n_in:]):
            dst.copy_(outs[k])
        return tuple(o for k, o in enumerate(outs) if k not in self.write)


__all__ = ["InplaceCat", "Part", "WriteInto", "dtype_of", "plan_inplace_cats"]
