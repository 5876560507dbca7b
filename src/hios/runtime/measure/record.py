"""The report of one run of a plan: the record that ``hios run`` (either backend) prints as a table
or as JSON, and its table.  Torch-free.

The record holds the model and devices, the program's shape (streams, segments, transfers), the
check against ``model(x)``, the plan's latency (per call, and per CUDA-graph replay), the PyTorch
baselines and the simulator's prediction; see :func:`format_report`.
"""

from __future__ import annotations

__all__ = ["format_report"]


def _fmt(st: dict | None) -> str:
    if not st:
        return "-"
    if "error" in st:
        return "failed: " + st["error"]
    return f"{st['median_ms']:.3f}"


def format_report(r: dict) -> str:
    """The run record ``r`` as a few lines of text: what ran, the check, and a latency table."""
    p = r["program"]
    lines = [f"{r['model']} {r['image_size']} px, batch {r['batch']} on {r['device_name']} ({','.join(r['devices'])})",
             f"plan {r['algorithm']}: {p['devices']} device(s), streams {p['streams']}, {p['segments']} segment(s), "
             f"{p['transfers']} transfer(s); {r['mode']} mode, {r['kernels']} kernels"
             + (f", levers {r['levers']}" if r.get("levers") else "")
             + (f" (fallback: {r['fallback_reason']})" if r.get("fallback_reason") else "")]
    if "check" in r:
        c = r["check"]
        lines.append(f"check: max |out - model(x)| = {c['max_abs_diff']:.3g} (output scale {c['output_scale']:.3g}, "
                     f"relative {c['relative']:.2g}, tolerance {c['tolerance']:g}) {'OK' if c['ok'] else 'FAILED'}")
    rows = [("hios plan (call)", _fmt(r["plan_call"]))]
    if r.get("plan_replay"):
        rows.append(("hios plan (graph replay)", _fmt(r["plan_replay"])))
    names = {"eager": "PyTorch eager", "cuda_graph": "CUDA-graph replay (1 GPU)",
             "compile": "torch.compile reduce-overhead", "compile_freezing": "torch.compile reduce-overhead + freezing"}
    for k, st in (r.get("baselines") or {}).items():
        rows.append((names.get(k, k), _fmt(st)))
    pred = r.get("predicted_ms")
    rows.append(("simulator prediction", f"{pred:.3f}" if pred is not None else "-"))
    w = max(len(a) for a, _ in rows)
    lines.append(f"{'':{w}}  latency ms (median)")
    lines += [f"{a:{w}}  {b}" for a, b in rows]
    comp = [(st["median_ms"], k) for k, st in (r.get("baselines") or {}).items()
            if k in ("compile", "compile_freezing") and "median_ms" in st]
    plan_ms = (r.get("plan_call") or {}).get("median_ms")
    if comp and plan_ms:
        best, k = min(comp)
        lines.append(f"speed-up of the plan (call) over the faster torch.compile ({names[k]}): {best / plan_ms:.2f}x")
    return "\n".join(lines)
