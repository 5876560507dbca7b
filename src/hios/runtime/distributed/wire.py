"""Wire format of the distributed runtime: how a value travels between ranks.

A value is sent as one contiguous tensor in the dim order that its producer's memory layout
already has (so a channels_last activation is sent without a copy) and received into a buffer of
that order, viewed back in the logical order.  Steps:
  1. The first time a rank sends a value, :meth:`Layouts.publish` records its :class:`Wire`
     (logical shape, dtype, dim order) in the rendezvous store; receivers read it there
     (:meth:`Layouts.lookup`) before their first receive, and keep it: later calls reuse it.
  2. :func:`post_sends`: the batch's values as :func:`to_wire` tensors, posted as one
     ``batch_isend_irecv`` group.
  3. :func:`post_recvs`: a :func:`wire_buffer` per value, posted as one group; the receiving
     rank reads the value as :func:`from_wire` of the buffer once the group is done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .launch import Ctx, DistError

__all__ = ["Layouts", "Wire", "from_wire", "post_recvs", "post_sends", "to_wire", "wire_buffer"]


@dataclass(frozen=True)
class Wire:
    """How a value travels: its logical shape, dtype and the dim order that makes it contiguous."""

    shape: tuple[int, ...]
    dtype: str
    perm: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps([list(self.shape), self.dtype, list(self.perm)])

    @classmethod
    def from_json(cls, s: str) -> "Wire":
        shape, dtype, perm = json.loads(s)
        return cls(tuple(shape), dtype, tuple(perm))

    @classmethod
    def of(cls, t) -> "Wire":
        order = sorted(range(t.dim()), key=lambda i: (-t.stride(i), i))
        return cls(tuple(t.shape), str(t.dtype).replace("torch.", ""), tuple(order))


def to_wire(t, w: Wire):
    """The contiguous tensor to send (no copy when the layout matches ``w.perm``)."""
    return t.permute(w.perm).contiguous()


def from_wire(buf, w: Wire):
    """The received buffer seen in the value's logical dim order."""
    inv = [0] * len(w.perm)
    for k, p in enumerate(w.perm):
        inv[p] = k
    return buf.permute(inv)


def wire_buffer(w: Wire, device):
    """An empty buffer that receives a value of layout ``w``."""
    import torch
    return torch.empty([w.shape[p] for p in w.perm], dtype=getattr(torch, w.dtype), device=device)


class Layouts:
    """The wires of the values a rank sends or receives, shared through the store (step 1)."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.wires: dict[str, Wire] = {}

    def publish(self, value: str, t) -> Wire:
        w = self.wires.get(value)
        if w is None:
            import torch
            if not isinstance(t, torch.Tensor):
                raise DistError(f"value {value!r} is a {type(t).__name__}, not a tensor: it cannot be sent")
            w = self.wires[value] = Wire.of(t)
            self.ctx.store.set(self.ctx.key(f"wire/{value}"), w.to_json())
        return w

    def lookup(self, value: str, src: int) -> Wire:
        w = self.wires.get(value)
        if w is None:
            text = self.ctx.wait_get(f"wire/{value}", f"the layout of {value!r} from rank {src}")
            w = self.wires[value] = Wire.from_json(text)
        return w


def post_sends(batch, env: dict[str, Any], layouts: Layouts) -> list:
    """Step 2: post the sends of ``batch``; returns their works."""
    import torch.distributed as dist
    ops = [dist.P2POp(dist.isend, to_wire(env[t.value], layouts.publish(t.value, env[t.value])), t.dst, tag=t.tag)
           for t in batch.transfers]
    return dist.batch_isend_irecv(ops)


def post_recvs(batch, rank: int, env: dict[str, Any], layouts: Layouts, device) -> list:
    """Step 3: post this rank's receives of ``batch`` into fresh buffers (seen in ``env`` at once,
    valid once the returned works are done)."""
    import torch.distributed as dist
    ops = []
    for t in batch.to(rank):
        w = layouts.lookup(t.value, t.src)
        buf = wire_buffer(w, device)
        env[t.value] = from_wire(buf, w)
        ops.append(dist.P2POp(dist.irecv, buf, t.src, tag=t.tag))
    return dist.batch_isend_irecv(ops)
