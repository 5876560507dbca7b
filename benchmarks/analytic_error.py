"""Error of the analytic cost model against measured GPU profiles.

For every measured profile graph (``hios profile -o``; default ``benchmarks/profiles/*.json``) the
model is rebuilt and captured on the CPU, costed with the analytic model of ``--spec`` (datasheet
peaks, default efficiencies), and compared operator by operator: per kind and whole model.  With
two or more profiles the efficiencies are also fitted (``fit_spec_many``) leaving the profile under
test out, and the error of that calibrated model is reported too.

Prints the tables and writes ``analytic_error.csv`` under ``--out``.

    python benchmarks/analytic_error.py [--profiles DIR_OR_FILES...] [--spec h100] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from hios.formats import load_graph
from hios.cost.analytic import analytic_error, fit_spec_many, costed_graph
from hios.frontend.capture import capture
from hios.frontend.zoo import build


def model_of(graph) -> tuple[str, int, int]:
    m = graph.meta.get("model")
    if isinstance(m, dict) and "name" in m and "image_size" in m:
        return m["name"], int(m["image_size"]), int(m.get("batch", 1))
    hit = re.match(r"(.+)-(\d+)$", graph.name)
    if not hit:
        raise SystemExit(f"{graph.name}: cannot tell the model and image size of this profile")
    return hit.group(1), int(hit.group(2)), 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profiles", nargs="*", default=["benchmarks/profiles"])
    ap.add_argument("--spec", default="h100")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    files: list[Path] = []
    for p in map(Path, args.profiles):
        files += sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not files:
        print(f"no measured profiles found in {', '.join(args.profiles)}", file=sys.stderr)
        return 1
    runs = []
    for f in files:
        measured = load_graph(f)
        name, size, batch = model_of(measured)
        model, example = build(name, size, batch)
        captured = capture(model, example, measured.name)
        runs.append((f, measured, captured))
    rows = []
    for k, (f, measured, captured) in enumerate(runs):
        device = measured.meta.get("profile", {}).get("device", "?")
        variants = [("datasheet", costed_graph(captured, args.spec))]
        others = [(m, c.graph) for j, (_, m, c) in enumerate(runs) if j != k]
        if others:
            fit = fit_spec_many(others, args.spec)
            variants.append((f"calibrated on {len(others)} other profile(s) (compute {fit.compute_eff}, "
                             f"memory {fit.memory_eff}, {fit.kernel_overhead_us} us/kernel)",
                             costed_graph(captured, fit)))
        for label, analytic in variants:
            rep = analytic_error(measured, analytic)
            print(f"\n{f.name} ({device}) vs analytic {args.spec}, {label}:")
            print(rep.format())
            for r in rep.rows:
                rows.append({"profile": f.name, "device": device, "spec": args.spec, "variant": label.split(" (")[0],
                             "kind": r.kind, "operators": r.operators, "measured_ms": r.measured_ms,
                             "analytic_ms": r.analytic_ms, "ratio": r.ratio, "median_rel_error": r.median_rel_error,
                             "mean_rel_error": r.mean_rel_error})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "analytic_error.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"\nwrote {out / 'analytic_error.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
