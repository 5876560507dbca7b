"""Where the analytic cost model goes wrong: measured segment times against analytic features.

Reads the torch-free data that ``benchmarks/sim_to_real.py`` measured (``--from DIR``: the
``data/<point>.json`` files), and for every segment timed alone (plans A and B) compares its
measured time with the analytic time of its operators under three models:

* ``prior``: the preset the plans were made with (``h200``: compute 0.5, memory 0.7, 4 µs/kernel);
* ``roofline``: the same form, efficiencies and overhead fitted to all the segments
  (:func:`hios.cost.analytic.fit_spec_many`);
* ``kernels``: the per-kernel form fitted to all the segments
  (:func:`hios.cost.analytic.fit_spec_kernels`: tensor-kernel overhead, element-wise runs fused).

Both fits see every point (in sample): this is a diagnosis of the model's *form*; the
out-of-sample judgement is ``sim_to_real.py``'s.  Segments are grouped by the kind of their
operator (``multi`` for segments of several operators; ``/tensor`` when they have convolution or
matrix-product FLOPs) and by measured time (small < 5 µs <= mid < 20 µs <= large), then by point.
Prints, per group, the segment count, the measured sum and the ratio analytic/measured of the sums
and the geometric mean of the per-segment ratios for each model; writes ``OUT/analytic_segments.csv``.

Usage: ``PYTHONPATH=src python benchmarks/analytic_segments.py --from benchmarks/results/sim_to_real_h200/run3``
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def segments(points: list[dict]) -> list[dict]:
    """One row per segment timed alone: its point, plan, operators' metas and measured ms."""
    rows = []
    for d in points:
        ops = {op.name: op for op in d["graph"].ops}
        for plan, pl in d["plans"].items():
            for i, st in enumerate(pl["program"]["steps"]):
                if st["kind"] == "segment" and str(i) in pl["alone_ms"]:
                    kinds = {ops[n].kind for n in st["ops"]}
                    tensor = any(ops[n].meta.get("tensor_flops") for n in st["ops"])
                    ms = pl["alone_ms"][str(i)]
                    rows.append({"point": d["point"], "plan": plan, "metas": [ops[n].meta for n in st["ops"]],
                                 "kind": (kinds.pop() if len(kinds) == 1 else "multi") + ("/tensor" if tensor else ""),
                                 "size": "small" if ms < 0.005 else "mid" if ms < 0.02 else "large", "measured_ms": ms})
    return rows


def main() -> int:
    from sim_to_real import load_data
    from hios.cost.analytic import device_spec, fit_spec_kernels, fit_spec_many, operator_ms
    from hios.stage_fit import measured_costs

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--from", dest="source", required=True, help="folder of sim_to_real data")
    p.add_argument("--out", default="benchmarks/results/analytic_segments")
    args = p.parse_args()
    folder = Path(args.source)
    points, head = load_data(folder)
    if not points:
        print(f"analytic_segments: no measured points in {folder}", file=sys.stderr)
        return 1
    pairs = [(measured_costs(d["graph"], pl["program"], {int(k): v for k, v in pl["alone_ms"].items()}), d["graph"])
             for d in points for pl in d["plans"].values()]
    base = (points[0]["graph"].meta or {}).get("device_spec", {}).get("name", "h200")
    specs = {"prior": device_spec(base), "roofline": fit_spec_many(pairs, base), "kernels": fit_spec_kernels(pairs, base)}
    rows = segments(points)
    for r in rows:
        for name, sp in specs.items():
            r[name] = sum(operator_ms(m, sp) for m in r["metas"])
    print(f"device {head.get('device', '?')}, {head.get('date', '?')}; {len(rows)} segments timed alone")
    for name, sp in specs.items():
        ov_t = sp.tensor_kernel_overhead_us if sp.tensor_kernel_overhead_us is not None else sp.kernel_overhead_us
        print(f"{name}: compute {sp.compute_eff}, memory {sp.memory_eff}, {sp.kernel_overhead_us} us per element-wise "
              f"kernel, {ov_t} us per tensor kernel, element-wise runs fused: {sp.fuse_elementwise}")
    out_rows = []
    for key in (lambda r: (r["kind"], r["size"]), lambda r: (r["point"], "all")):
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault(key(r), []).append(r)
        print("\ngroup | segments | measured ms | " + " | ".join(f"{n} sum ratio (geo mean)" for n in specs))
        for g, rs in sorted(groups.items()):
            meas = sum(r["measured_ms"] for r in rs)
            row = {"group": " ".join(g), "segments": len(rs), "measured_ms": meas}
            for n in specs:
                row[f"{n}_sum_ratio"] = sum(r[n] for r in rs) / meas
                row[f"{n}_geo_ratio"] = math.exp(sum(math.log(r[n] / r["measured_ms"]) for r in rs) / len(rs))
            out_rows.append(row)
            print(f"{row['group']} | {len(rs)} | {meas:.3f} | "
                  + " | ".join(f"{row[f'{n}_sum_ratio']:.2f} ({row[f'{n}_geo_ratio']:.2f})" for n in specs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "analytic_segments.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(out_rows[0]))
        w.writeheader()
        w.writerows(out_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
