"""The record of one run of a plan: :class:`RunRecord`, built by the local measurement
(:func:`hios.runtime.measure.plan.measure_plan`) and the distributed one
(:func:`hios.runtime.distributed.report.result_record`), printed by ``hios run`` as a table
(:func:`format_report`) or as JSON (:meth:`RunRecord.to_dict`).  Torch-free.

The record holds the model and devices, the program's shape (streams, segments, transfers), the
check against ``model(x)``, the plan's latency (per call, and per CUDA-graph replay), the PyTorch
baselines and the simulator's prediction; a distributed run adds the backend and its ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Distributed", "RunRecord", "format_report"]


@dataclass
class Distributed:
    """What a distributed run adds: the process-group backend (nccl, gloo), the world size, and
    each rank's record (:func:`hios.runtime.distributed.report.rank_record`)."""

    comm_backend: str
    world_size: int
    ranks: list[dict]


@dataclass
class RunRecord:
    """One run of a plan.  ``check``: the check against ``model(x)`` (None: not checked);
    ``plan_call``/``plan_replay``/``baselines``: timing statistics (``TimingStats.to_dict``; replay
    None without a CUDA graph, baselines None when not timed); ``levers``: the local runtime's lever
    label; ``distributed``: None for a local run."""

    model: str | None
    image_size: int | None
    batch: int | None
    devices: list[str]
    device_name: str
    algorithm: str | None
    kernels: str
    mode: str
    fallback_reason: str | None
    tf32: bool
    program: dict
    plan_call: dict | None = None
    plan_replay: dict | None = None
    predicted_ms: float | None = None
    cost_source: str | None = None
    levers: str | None = None
    check: dict | None = None
    baselines: dict | None = None
    warnings: list[str] = field(default_factory=list)
    selection: dict | None = None
    trace: dict | None = None
    distributed: Distributed | None = None

    @property
    def failed(self) -> bool:
        """Whether the check ran and failed."""
        return self.check is not None and not self.check["ok"]

    def to_dict(self) -> dict:
        """The JSON form that ``hios run --json`` prints (keys absent where a run has nothing to say)."""
        d: dict = {}
        dist = self.distributed
        if dist is not None:
            d.update(backend="distributed", comm_backend=dist.comm_backend, world_size=dist.world_size)
        d.update(model=self.model, image_size=self.image_size, batch=self.batch, devices=list(self.devices),
                 device_name=self.device_name, algorithm=self.algorithm, kernels=self.kernels, mode=self.mode,
                 fallback_reason=self.fallback_reason, tf32=self.tf32)
        if dist is None:
            d["levers"] = self.levers
        d["program"] = self.program
        if self.check is not None:
            d["check"] = self.check
            d["max_abs_diff"] = self.check["max_abs_diff"]
        d.update(plan_call=self.plan_call, plan_replay=self.plan_replay)
        if self.baselines is not None or dist is not None:
            d["baselines"] = self.baselines
        d.update(predicted_ms=self.predicted_ms, cost_source=self.cost_source, warnings=list(self.warnings))
        if self.selection is not None:
            d["selection"] = self.selection
        if self.trace is not None:
            d["trace"] = self.trace
        if dist is not None:
            d["ranks"] = dist.ranks
        return d


def _fmt(st: dict | None) -> str:
    if not st:
        return "-"
    if "error" in st:
        return "failed: " + st["error"]
    return f"{st['median_ms']:.3f}"


def format_report(r: RunRecord) -> str:
    """The run record ``r`` as a few lines of text: what ran, the check, and a latency table."""
    p = r.program
    lines = [f"{r.model} {r.image_size} px, batch {r.batch} on {r.device_name} ({','.join(r.devices)})",
             f"plan {r.algorithm}: {p['devices']} device(s), streams {p['streams']}, {p['segments']} segment(s), "
             f"{p['transfers']} transfer(s); {r.mode} mode, {r.kernels} kernels"
             + (f", levers {r.levers}" if r.levers else "")
             + (f" (fallback: {r.fallback_reason})" if r.fallback_reason else "")]
    if r.check is not None:
        c = r.check
        lines.append(f"check: max |out - model(x)| = {c['max_abs_diff']:.3g} (output scale {c['output_scale']:.3g}, "
                     f"relative {c['relative']:.2g}, tolerance {c['tolerance']:g}) {'OK' if c['ok'] else 'FAILED'}")
    rows = [("hios plan (call)", _fmt(r.plan_call))]
    if r.plan_replay:
        rows.append(("hios plan (graph replay)", _fmt(r.plan_replay)))
    names = {"eager": "PyTorch eager", "cuda_graph": "CUDA-graph replay (1 GPU)",
             "compile": "torch.compile reduce-overhead", "compile_freezing": "torch.compile reduce-overhead + freezing"}
    for k, st in (r.baselines or {}).items():
        rows.append((names.get(k, k), _fmt(st)))
    pred = r.predicted_ms
    rows.append(("simulator prediction", f"{pred:.3f}" if pred is not None else "-"))
    w = max(len(a) for a, _ in rows)
    lines.append(f"{'':{w}}  latency ms (median)")
    lines += [f"{a:{w}}  {b}" for a, b in rows]
    comp = [(st["median_ms"], k) for k, st in (r.baselines or {}).items()
            if k in ("compile", "compile_freezing") and "median_ms" in st]
    plan_ms = (r.plan_call or {}).get("median_ms")
    if comp and plan_ms:
        best, k = min(comp)
        lines.append(f"speed-up of the plan (call) over the faster torch.compile ({names[k]}): {best / plan_ms:.2f}x")
    return "\n".join(lines)
