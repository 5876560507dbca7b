"""The result of a distributed run: each rank's record, rank 0's result record, and its text.

Steps:
  1. :func:`rank_record`: what a rank ran (device, host, segments, operators, weights it holds,
     sends, receives, CUDA graph or not) and its median call time.
  2. The ranks all-gather their records through the store (:meth:`~.launch.Ctx.gather`).
  3. :func:`result_record` (rank 0): the single-process ``hios run`` record (:class:`~hios.runtime.measure.record.RunRecord`)
     plus the backend, the world size and the ranks; rank 0's timings are the ones reported,
     since a call on rank 0 spans sending the input to holding the output.
  4. :func:`format_result`: the single-process report plus one line per rank.
"""

from __future__ import annotations

import os

from .build import RankPart
from .launch import Ctx
from ..measure.record import Distributed, RunRecord, format_report

__all__ = ["format_result", "rank_record", "result_record"]


def rank_record(ctx: Ctx, part: RankPart, cuda_graph: bool, call_ms: float) -> dict:
    """Step 1."""
    import torch
    mine = part.program.ranks[ctx.rank]
    return {"rank": ctx.rank, "device": str(ctx.device), "segments": len(part.segs), "operators": part.operators,
            "weights_bytes": part.weights, "sends": len(mine.sends), "recvs": len(mine.recvs),
            "cuda_graph": cuda_graph,
            "device_name": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu",
            "host": os.uname().nodename, "plan_call_ms": call_ms, "notes": ctx.notes}


def result_record(ctx: Ctx, plan, part: RankPart, ranks: list[dict], *, kernels: str, mode: str,
                  fallback_reason: str | None, tf32: bool, call, replay, check) -> RunRecord:
    """Step 3: ``call``/``replay`` are rank 0's timings (replay None without a CUDA graph),
    ``check`` its :class:`~hios.runtime.measure.bench.CheckResult` (None with ``--no-check``)."""
    from ..measure.bench import predicted_latency
    summary = part.exec_program.summary()
    summary.update({"transfers": len(part.program.transfers), "batches": len(part.program.batches),
                    "segments": len(part.exec_program.segments)})
    spec = plan.model
    return RunRecord(
        model=spec.get("name"), image_size=spec.get("image_size"), batch=spec.get("batch", 1),
        devices=[f"rank {r['rank']}: {r['device']}@{r['host']}" for r in ranks],
        device_name=ranks[0]["device_name"], algorithm=plan.schedule.algorithm, kernels=kernels,
        mode=mode, fallback_reason=fallback_reason, tf32=tf32, program=summary,
        warnings=[n for r in ranks for n in r["notes"]],
        plan_call=call.to_dict(), plan_replay=replay.to_dict() if replay else None,
        predicted_ms=predicted_latency(plan), cost_source=plan.cost_source,
        check=check.to_dict() if check is not None else None,
        distributed=Distributed(comm_backend=ctx.backend, world_size=ctx.world, ranks=ranks))


def format_result(res: RunRecord) -> str:
    """Step 4: the single-process report, plus the ranks."""
    dist = res.distributed
    lines = [f"backend distributed: {dist.world_size} rank(s), {dist.comm_backend}; "
             f"{res.program['transfers']} value(s) cross ranks in {res.program['batches']} batch(es)",
             format_report(res)]
    for r in dist.ranks:
        lines.append(f"  rank {r['rank']} on {r['device']} ({r['device_name']}, {r['host']}): {r['operators']} operators "
                     f"in {r['segments']} segments, {r['weights_bytes'] / 2**20:.2f} MiB of weights, "
                     f"{r['sends']} sends, {r['recvs']} receives" + (", CUDA graph" if r["cuda_graph"] else ""))
    return "\n".join(lines)
