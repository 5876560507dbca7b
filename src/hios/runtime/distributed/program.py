"""Per-rank programs of the distributed runtime (torch-free).

The single-process runtime cuts a schedule into per-device, per-stream segments and an issue
order (:func:`hios.program.segmenting.stream_program`).  The distributed runtime runs the same
program with one rank per device; this module adds what crosses ranks and when.

Steps of :func:`build_rank_programs`:
  1. Every value (fx node name) a segment reads comes from a producer: the segment of the
     operator owning it, or rank 0 for the model inputs.  A value read on another rank than its
     producer's is sent once per destination rank, whatever the number of readers there; the
     model outputs produced off rank 0 are sent to rank 0.
  2. The global order: rank 0's input batch (the model inputs to the ranks that read them), then
     the program's issue order, where each segment is followed by the batch of everything it
     sends (one batch per producing segment: the producer sends right after producing).  A rank's
     program is this order restricted to it: ``segment`` (its own segments), ``send`` (batches
     it sends), ``recv`` (its part of batches sent to it, posted where the sender posts them).
  3. A segment waits for the receives of the values it reads (on its own stream) and for the
     events of its own device that the program lists; rank 0 ends by waiting for the outputs.
  4. Tags: every transferred value gets a unique tag (its index in the global order), so
     back-ends that match messages by tag (gloo) can never pair the wrong tensors.

Why it cannot deadlock: every rank posts its sends and receives in the global order, a batch
at a time, and both sides of every pair of ranks post their common transfers in that same order.
The order is topological (a batch comes right after its producer, before any reader, because
readers come after the producer in the issue order).  By induction along the order, every item
completes once all earlier items have: a segment needs only earlier values; a batch is posted by
its sender after its producer and met by receives its destinations posted after all their
earlier communication.  This holds for in-order GPU queues (NCCL: one group per batch and rank)
and for gloo's host-side posting alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ...errors import HiosError

__all__ = ["Action", "Batch", "DistProgram", "INPUT", "RankProgram", "Transfer", "build_rank_programs"]

INPUT = -1  # producer id of the model inputs (held by rank 0)


@dataclass(frozen=True)
class Transfer:
    value: str
    src: int
    dst: int
    tag: int


@dataclass(frozen=True)
class Batch:
    index: int                     # position among all batches
    src: int                       # sending rank
    producer: int                  # segment step id whose values it sends (INPUT: the model inputs)
    transfers: tuple[Transfer, ...]

    def to(self, rank: int) -> tuple[Transfer, ...]:
        return tuple(t for t in self.transfers if t.dst == rank)


@dataclass(frozen=True)
class Action:
    kind: str                      # "segment", "send", "recv"
    step: int = -1                 # segment: step id in the ExecProgram
    batch: Batch | None = None     # send/recv
    local_waits: tuple[int, ...] = ()   # segment: event ids (recorded on this rank) to wait for
    recv_waits: tuple[int, ...] = ()    # segment: batch indices whose receives it reads
    feeds: bool = False            # segment: a send batch follows it (record an event for it)


@dataclass
class RankProgram:
    rank: int
    actions: list[Action] = field(default_factory=list)
    outputs: tuple[str, ...] = ()          # rank 0: model output values
    output_waits: tuple[int, ...] = ()     # rank 0: batches to wait for before the output is complete

    @property
    def sends(self) -> list[Transfer]:
        return [t for a in self.actions if a.kind == "send" for t in a.batch.transfers]

    @property
    def recvs(self) -> list[Transfer]:
        return [t for a in self.actions if a.kind == "recv" for t in a.batch.to(self.rank)]

    def segments(self) -> list[int]:
        return [a.step for a in self.actions if a.kind == "segment"]


@dataclass
class DistProgram:
    world: int
    batches: list[Batch]
    ranks: list[RankProgram]

    @property
    def transfers(self) -> list[Transfer]:
        return [t for b in self.batches for t in b.transfers]

    def summary(self) -> dict:
        return {"world_size": self.world, "batches": len(self.batches), "transfers": len(self.transfers),
                "per_rank": [{"rank": p.rank, "segments": len(p.segments()), "sends": len(p.sends),
                              "recvs": len(p.recvs)} for p in self.ranks]}


def build_rank_programs(prog, reads: dict[int, Sequence[str]], values_of: dict[str, Sequence[str]],
                        inputs: Sequence[str], outputs: Sequence[str], world: int) -> DistProgram:
    """Rank programs for an :class:`~hios.program.segmenting.ExecProgram` (steps 1-4 above).

    ``reads[step_id]`` lists the values segment ``step_id`` reads from outside itself (its
    ``Segment.inputs``); ``values_of[op]`` the values (fx nodes) operator ``op`` computes;
    ``inputs`` the model input names (on rank 0); ``outputs`` the model output value names.
    """
    if world != prog.devices:
        raise HiosError(f"the plan runs on {prog.devices} GPU(s) but {world} rank(s) were started: "
                        f"start one rank per GPU of the plan (--nproc-per-node {prog.devices} in all)")
    segs = {s.id: s for s in prog.steps if s.kind == "segment"}
    xfer_events = {s.record for s in prog.steps if s.kind == "transfer"}
    producer_seg: dict[str, int] = {v: INPUT for v in inputs}
    for op, vals in values_of.items():
        sid = prog.segment_of.get(op)
        if sid is None:
            raise HiosError(f"operator {op!r} is in no segment of the program")
        for v in vals:
            producer_seg[v] = sid

    def rank_of(sid: int) -> int:
        return 0 if sid == INPUT else segs[sid].device

    needs: dict[int, dict[int, list[str]]] = {}  # producer segment -> dst rank -> values (first-read order)

    def need(v: str, dst: int, who: str) -> None:
        sid = producer_seg.get(v)
        if sid is None:
            raise HiosError(f"{who} reads value {v!r} that no operator or model input produces")
        if rank_of(sid) != dst:
            lst = needs.setdefault(sid, {}).setdefault(dst, [])
            if v not in lst:
                lst.append(v)

    for sid, s in segs.items():
        if sid not in reads:
            raise HiosError(f"no inputs given for segment {sid} ({', '.join(s.ops)})")
        for v in reads[sid]:
            need(v, s.device, f"segment {sid} ({s.ops[0]}...)")
    for v in outputs:
        need(v, 0, "the model output")

    batches: list[Batch] = []
    order: list[tuple[str, int]] = []  # ("segment", step id) | ("batch", batch index)
    tag = 0

    def add_batch(sid: int) -> None:
        nonlocal tag
        if sid not in needs:
            return
        ts = []
        for dst in sorted(needs[sid]):
            for v in needs[sid][dst]:
                ts.append(Transfer(v, rank_of(sid), dst, tag))
                tag += 1
        batches.append(Batch(len(batches), rank_of(sid), sid, tuple(ts)))
        order.append(("batch", len(batches) - 1))

    add_batch(INPUT)
    for s in prog.steps:
        if s.kind == "segment":
            order.append(("segment", s.id))
            add_batch(s.id)
    batch_of: dict[tuple[str, int], int] = {(t.value, t.dst): b.index for b in batches for t in b.transfers}

    ranks = [RankProgram(r) for r in range(world)]
    for kind, k in order:
        if kind == "segment":
            s = segs[k]
            waits = tuple(e for e in s.waits if e not in xfer_events)
            recv = sorted({batch_of[(v, s.device)] for v in reads[k] if (v, s.device) in batch_of})
            ranks[s.device].actions.append(Action("segment", k, None, waits, tuple(recv), k in needs))
        else:
            b = batches[k]
            ranks[b.src].actions.append(Action("send", batch=b))
            for dst in sorted({t.dst for t in b.transfers}):
                ranks[dst].actions.append(Action("recv", batch=b))
    ranks[0].outputs = tuple(outputs)
    ranks[0].output_waits = tuple(sorted({batch_of[(v, 0)] for v in outputs if (v, 0) in batch_of}))
    return DistProgram(world, batches, ranks)
