"""Start-up checks of the distributed runtime: every rank runs the same plan, model and options.

Steps:
  1. :func:`check_world`: the world size equals the plan's GPU count.
  2. :func:`run_signature`: every rank hashes the plan, its own capture of the model and the run
     options (SHA-256 of canonical JSON).
  3. :func:`check_signatures`: the ranks all-gather their start-up records through the store;
     :func:`compare_signatures` names the first rank whose record differs from rank 0's, and in
     what (plan, model, options or the captured graph); then every rank refuses to start.
"""

from __future__ import annotations

import hashlib
import json

from .launch import Ctx, DistError, quiet

__all__ = ["check_signatures", "check_world", "compare_signatures", "run_signature"]


def check_world(plan_gpus: int, world: int) -> None:
    """Step 1 (every rank sees it alike: rank 0 says it)."""
    if plan_gpus != world:
        raise quiet(DistError(f"the plan has {plan_gpus} GPU(s) but {world} rank(s) were started: start exactly one "
                              f"rank per GPU of the plan (torchrun --nproc-per-node {plan_gpus} on one node)"))


def run_signature(plan_dict: dict, graph, options: dict) -> str:
    """SHA-256 of what every rank must agree on: the plan, the captured model, the run options."""
    cap = {"ops": [[op.name, op.meta.get("nodes", [])] for op in graph.ops],
           "edges": sorted([e.src, e.dst] for e in graph.edges),
           "inputs": graph.meta.get("inputs")}
    blob = json.dumps({"plan": plan_dict, "capture": cap, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def compare_signatures(sigs: dict[int, dict]) -> str | None:
    """A one-line complaint about ranks whose start-up record differs from rank 0's, or None."""
    ref = sigs[0]
    for r in sorted(sigs):
        s = sigs[r]
        if s.get("world") != ref.get("world"):
            return f"rank {r} sees world size {s.get('world')}, rank 0 sees {ref.get('world')}"
        if s.get("hash") != ref.get("hash"):
            why = [k.replace("_hash", "") for k in ("plan_hash", "model", "options") if s.get(k) != ref.get(k)]
            return (f"rank {r} runs a different plan or model than rank 0 (differs in: "
                    f"{', '.join(why) or 'the captured graph'}; hash {s.get('hash', '')[:12]} vs "
                    f"{ref.get('hash', '')[:12]}); start every rank with the same plan and options")
    return None


def check_signatures(ctx: Ctx, plan_dict: dict, graph, model: dict, options: dict) -> None:
    """Steps 2-3 on this rank; a :class:`DistError` said once by rank 0 when the ranks differ."""
    mine = {"world": ctx.world, "hash": run_signature(plan_dict, graph, options),
            "plan_hash": hashlib.sha256(json.dumps(plan_dict, sort_keys=True).encode()).hexdigest(),
            "model": model, "options": options}
    texts = ctx.gather("hello", json.dumps(mine, sort_keys=True, default=str), "every rank's start-up check")
    bad = compare_signatures({r: json.loads(v) for r, v in texts.items()})
    if bad:
        raise quiet(DistError(f"refusing to start: {bad}"))
