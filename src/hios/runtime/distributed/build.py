"""Building one rank's part of a plan, for the distributed runtime.

Steps of :func:`build_rank`:
  1. Cut the schedule into segments with the single-process runtime's
     :func:`~hios.program.segmenting.stream_program`, one memory space per rank and the run's
     ``sync`` mode (``stage`` adds the simulator's stage barriers as events).
  2. Build every segment's module (only to learn which values it reads) and derive the rank
     programs (:func:`~hios.runtime.distributed.program.build_rank_programs`): which values cross
     ranks, in which batches, in a global order that cannot deadlock.
  3. Place only this rank's segments on its device (channels_last and Inductor as asked, as the
     single-process runtime does); the caller then drops the model, so the rank holds only its
     own weights, which :func:`weights_bytes` counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...options import RunOptions
from .program import DistProgram, build_rank_programs
from ...program.segmenting import ExecProgram, stream_program

__all__ = ["RankPart", "build_rank", "rank_programs", "weights_bytes"]


@dataclass
class RankPart:
    """This rank's share of the plan: the whole program, the rank programs, its placed segments."""

    exec_program: ExecProgram
    program: DistProgram
    segs: dict[int, Any]    # segment step id -> placed segment (:class:`hios.runtime.local.executor.Seg`)
    out_spec: Any           # the model's output structure, leaves named by value
    input_names: list[str]
    weights: int            # bytes of the weights this rank holds

    def streams(self, rank: int) -> int:
        return self.exec_program.streams[rank] if rank < len(self.exec_program.streams) else 1

    @property
    def operators(self) -> int:
        return sum(len(s.step.ops) for s in self.segs.values())


def weights_bytes(modules) -> int:
    """Bytes of the distinct tensors (parameters, buffers, plain tensor attributes) of ``modules``."""
    import torch
    seen = set()
    total = 0
    for m in modules:
        tensors = list(m.parameters()) + list(m.buffers())
        for mod in m.modules():
            tensors += [v for v in vars(mod).values() if isinstance(v, torch.Tensor)]
        for t in tensors:
            key = (t.device, t.data_ptr())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()
    return total


def rank_programs(captured, exec_program: ExecProgram, world: int) -> tuple[DistProgram, Any, dict]:
    """Step 2: the rank programs, the output structure, and every segment's built module."""
    import torch.utils._pytree as pytree
    from ...frontend.segments import build_segment, output_names
    built = {st.id: build_segment(captured, list(st.ops)) for st in exec_program.segments}
    reads = {sid: list(seg.inputs) for sid, seg in built.items()}
    out_spec = output_names(captured)
    outputs = [leaf for leaf in pytree.tree_leaves(out_spec) if isinstance(leaf, str)]
    values_of = {op.name: list(op.meta.get("nodes", [])) for op in captured.graph.ops}
    program = build_rank_programs(exec_program, reads, values_of, list(captured.input_names), outputs, world)
    return program, out_spec, built


def build_rank(captured, schedule, run: RunOptions, rank: int, world: int, device) -> RankPart:
    """Steps 1-3 for ``rank``: ``run`` is resolved (kernels, channels_last and sync are set)."""
    from ..local.executor import Seg
    exec_program = stream_program(captured.graph, schedule, sync=run.sync, merge=run.levers.merge_segments)
    program, out_spec, built = rank_programs(captured, exec_program, world)
    steps = {s.id: s for s in exec_program.segments}
    cache: dict = {}
    segs = {sid: Seg.build(steps[sid], seg, device, run.kernels, run.channels_last, cache,
                           fuse=run.levers.fuse_epilogues)
            for sid, seg in built.items() if steps[sid].device == rank}
    cache.clear()
    weights = weights_bytes([s.eager for s in segs.values()])
    return RankPart(exec_program, program, segs, out_spec, list(captured.input_names), weights)
