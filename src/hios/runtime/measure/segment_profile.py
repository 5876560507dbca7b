"""Profile what runs: time each segment of a compiled plan alone, exactly as the runtime built it
(same compiled code, layout, precision and folding), and turn the times into a costed graph.

Steps of :func:`segment_profile`:

1. One forward pass through the module's stream program with a hook on its segment runner that
   keeps each segment's input values (:func:`segment_inputs`).
2. Each segment's built callable is timed alone on those inputs: on a GPU captured in a CUDA graph
   and replayed between CUDA events (:func:`hios.cost.timing.cuda_graph_time`, median), on a CPU by
   wall clock.
3. The times are fed back into the graph (:func:`hios.cost.feedback.feed_back`: each segment's time
   split over its operators in proportion to their prior costs), and the graph's
   ``meta.profile`` records the settings the segments ran under
   (:func:`hios.cost.feedback.runtime_settings`), so a plan made from it is checked against the run.
"""

from __future__ import annotations

import time

from ...cost.feedback import feed_back, runtime_settings
from ...graph import Graph

__all__ = ["ALONE_INNER", "segment_inputs", "segment_profile", "time_segments"]

#: Copies of a segment per CUDA graph when it is timed alone for a plan's costs: one graph launch
#: spread over eight copies, as a plan's replay spreads one launch over its segments.
ALONE_INNER = 8


def segment_inputs(module, inputs: tuple) -> dict[int, list]:
    """Step 1: step id -> the values each segment of ``module`` reads, from one forward pass."""
    import torch
    seen: dict[int, list] = {}
    run = module._run_segment

    def keep(seg, env, first):
        seen[seg.step.id] = [env[n] for n in seg.inputs]
        run(seg, env, first)
    module._run_segment = keep
    try:
        with torch.no_grad():
            module._issue(tuple(inputs))
        if module.is_cuda:
            torch.cuda.synchronize()
    finally:
        del module._run_segment
    return seen


def time_segments(module, inputs: tuple, warmup: int = 3, repeats: int = 20, inner: int = 1) -> dict[int, float]:
    """Step 2: step id -> median ms of the segment run alone, as built.  On a GPU ``inner`` copies of
    the segment are captured back to back in one graph and the time of one copy is reported: with
    ``inner > 1`` the graph's own launch cost is spread over the copies, as it is over a plan's
    segments when the plan's graph replays."""
    import torch
    from ...cost.timing import cuda_graph_time, wall_time
    args = segment_inputs(module, inputs)
    out = {}
    with torch.no_grad():
        for seg in module._segs:
            if seg is None:
                continue
            a = args[seg.step.id]
            if module.is_cuda:
                dev = torch.device(seg.mem)
                st = cuda_graph_time(seg.fn, a, warmup=warmup, repeats=repeats, inner=inner, device=dev)
            else:
                st = wall_time(seg.fn, a, warmup=1, repeats=max(5, repeats // 2), min_time_ms=1.0)
            out[seg.step.id] = st.median_ms
    return out


def segment_profile(module, inputs: tuple, prior: Graph, device_name: str = "", warmup: int = 3,
                    repeats: int = 20, inner: int = 1) -> tuple[Graph, dict[int, float]]:
    """Step 3: ``prior`` with costs from the module's segments timed alone, and those times."""
    from ...cost.timing import precision_state
    t0 = time.perf_counter()
    times = time_segments(module, inputs, warmup, repeats, inner)
    steps = {s.id: s for s in module.program.segments}
    segs = [{"ops": list(steps[k].ops), "measured_ms": ms, "concurrency": 1.0} for k, ms in times.items()]
    g = feed_back(prior, segs, 0.0, "segments timed alone")
    dev_type = "cuda" if module.is_cuda else "cpu"
    prof = dict(g.meta.get("profile") or {})
    prof.update(runtime_settings(module.kernels, module.channels_last, precision_state(), dev_type))
    prof.update({"device": device_name or module.devices[0], "method": "segments", "folding": "batchnorm",
                 "segments": len(segs), "inner": inner, "seconds": time.perf_counter() - t0})
    g.meta = {**g.meta, "profile": prof}
    return g, times
