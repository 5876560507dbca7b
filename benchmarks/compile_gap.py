"""Where the time between a hios plan and torch.compile goes, on one GPU (issue 21, item 2).

Per point ``model:image_size[:logical_devices]`` (batch 1, TF32, in the order given; a point, or a
system of a point, is skipped and listed when the ``--budget-s`` left, 480 s at first, cannot
cover it: at least the longest system of that point so far; what was measured is written after
every system), these systems:

* ``hios``: the plan as ``hios run --cost h200`` makes it (:func:`hios.pipeline.plan_model`, analytic
  H200 costs, HIOS-LP), built as the runtime runs it (Inductor segments in one CUDA graph, default
  levers), checked against ``model(x)``, its replay timed (CUDA events, median), then traced
  (:func:`hios.runtime.measure.trace.record_run` with kernels: every replayed kernel attributed to
  its segment);
* ``hios_absorb`` (only with ``--absorb-joins FRACTION``): the same plan with the join-absorption
  pass (:mod:`hios.schedulers.absorb_joins`) applied to its schedule, measured as ``hios``;
* ``hios_cudnn``: the same plan with the ``cudnn_benchmark`` lever (cuDNN times its algorithms
  while the plan is warmed up and captured), measured as ``hios``;
* ``compile`` and ``compile_freezing``: ``torch.compile(mode="reduce-overhead")`` without and with
  Inductor freezing (:func:`hios.runtime.measure.bench.compile_reduce_overhead`), checked, timed
  per call, its kernels profiled over ``--calls`` calls
  (:func:`hios.runtime.measure.trace.profile_calls`);
* ``compile_freezing_cudnn``: ``compile_freezing`` built, warmed and timed with
  ``torch.backends.cudnn.benchmark`` on (so a gain of ``hios_cudnn`` is compared with what the
  same switch gives torch.compile).

Columns (per call, medians over the profiled calls; :mod:`hios.runtime.measure.critical_path`):
``segments`` (hios: segments of the program; torch.compile: Dynamo graphs), ``kernels`` launched,
``kernel_sum_ms`` (their summed durations), ``busy_ms`` (GPU busy: the union of their intervals),
``call_ms`` (hios: graph replay; torch.compile: one call), and for the plan ``critical_ms``: the
longest path through the program's segments (events and stream order) weighted by each segment's
measured duration in the replay, with ``critical_segments`` on it.  ``call_ms - busy_ms`` is time
the GPU ran nothing; ``call_ms - critical_ms`` is what gaps between segments on the longest path cost.

``--device cpu`` is a smoke test (default point ``googlenet:64``): the plan runs in stream mode on
CPU threads with eager kernels, so there are no kernels: ``busy_ms`` and ``kernel_sum_ms`` come from
the segments' wall-clock intervals (``kernel_source`` says so), and torch.compile is skipped unless
``--systems`` asks for it.

Writes under ``--out``: ``compile_gap.csv`` (one row per point and system), ``compile_gap.png`` (bars
per point), ``compile_gap_data.tar.gz`` (one JSON per point: per segment its operators, measured
duration and whether it is on the critical path; per system the raw figures and every kernel of
its first profiled call with its name and segment), ``run.json``; prints the table and, per system,
the kernel mix (:func:`hios.runtime.measure.critical_path.kernel_mix`: Triton, convolution and
matrix-product, copy and other kernels, each counted and summed per call).

Usage (GPU, one call of the device tool): ``PYTHONPATH=src python benchmarks/compile_gap.py --out $OUT``
(``--absorb-joins 0.5`` adds the absorbed plan; ``--points nasnetalarge:331`` for one point)
Smoke test: ``PYTHONPATH=src python benchmarks/compile_gap.py --device cpu --out /tmp/gap``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tarfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

POINTS = "googlenet:224,inception_v3:299,nasnetalarge:331,randwire:224,inception_v3:1280,inception_v3:2048:2"
SMOKE_POINTS = "googlenet:64"
SYSTEMS = ("hios", "hios_absorb", "hios_cudnn", "compile", "compile_freezing", "compile_freezing_cudnn")
MIX = ("triton", "conv", "copy", "other")   # kernel families (hios.runtime.measure.critical_path.kernel_family)
COLUMNS = ("point", "system", "segments", "kernels", "kernel_sum_ms", "busy_ms", "kernel_span_ms", "call_ms",
           "critical_ms", "critical_segments", "busy_over_call", "critical_over_call", "kernel_source", "check_rel",
           "check_ok", "build_s", *(f"{c}_{f}" for f in MIX for c in ("kernels", "ms")), "note")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_point(pt: str) -> tuple[str, int, int]:
    parts = pt.split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise SystemExit(f"compile_gap: bad point {pt!r} (expected model:image_size[:logical_devices])")
    try:
        return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise SystemExit(f"compile_gap: bad point {pt!r}: image size and device count must be integers") from None


def _free(dev) -> None:
    import torch
    import torch._dynamo
    torch._dynamo.reset()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _ratios(row: dict) -> dict:
    call = row.get("call_ms")
    for k in ("busy", "critical"):
        v = row.get(f"{k}_ms")
        row[f"{k}_over_call"] = v / call if isinstance(v, float) and call else None
    return row


# ------------------------------------------------------------------------------------------- measure

def measure_hios(model, x, planned, ndev: int, dev, s, calls: int, absorb: float | None = None,
                 cudnn: bool = False) -> tuple[dict, dict]:
    """The plan (with ``absorb``: its joins absorbed; with ``cudnn``: the cudnn_benchmark lever) built,
    checked, timed and traced: its CSV row and its detail (segments)."""
    import torch
    from hios.program.levers import Levers
    from hios.runtime.local.executor import compile as hios_compile
    from hios.runtime.measure.bench import RTOL_TF32, compare_outputs, time_call, time_replay
    from hios.runtime.measure.critical_path import kernel_stats, measured_critical_path, segment_graph
    from hios.runtime.measure.trace import record_run

    plan = planned.plan
    if absorb is not None:
        from dataclasses import replace
        from hios.schedulers.absorb_joins import absorb_joins
        plan = replace(plan, schedule=absorb_joins(plan.graph, plan.schedule, absorb))
    t0 = time.perf_counter()
    mod = hios_compile(model, x, plan, [str(dev)] * ndev, captured=planned.captured,
                       levers=Levers(cudnn_benchmark=cudnn))
    build_s = time.perf_counter() - t0
    with torch.no_grad():
        chk = compare_outputs(mod(*x), model(*x), RTOL_TF32)
    rep = time_replay(mod, dev, s)
    if rep is None and dev.type == "cuda":
        raise RuntimeError(f"the plan did not compile to a CUDA graph ({mod.fallback_reason})")
    rep = rep or time_call(mod, x, dev, s)
    tr = record_run(mod, x, calls=calls, kernels=True)
    replayed = [k for k in tr.kernels if k.source == "graph" and k.call is not None]
    graph_kernels = [(k.call, k.start_ms, k.end_ms) for k in replayed]
    if graph_kernels:
        ks, source = kernel_stats(graph_kernels), "replay kernels"
    else:  # CPU (or a replay the profiler did not tie to calls): the segments' intervals
        ks = kernel_stats([(r.call, r.start_ms, r.end_ms) for r in tr.segments])
        source = f"segments ({tr.clock})"
    prog = mod.program
    med = tr.median_ms()
    cp = measured_critical_path(med, segment_graph(prog))
    on_path = set(cp.path)
    row = {"system": "hios_absorb" if absorb is not None else "hios_cudnn" if cudnn else "hios",
           "segments": len(prog.segments),
           "call_ms": rep.median_ms,
           "critical_ms": cp.length, "critical_segments": len(cp.path), "kernel_source": source,
           "check_rel": chk.rel, "check_ok": chk.ok, "build_s": build_s,
           "note": "; ".join(n for n in (tr.note if tr.clock != "graph_replay_kernels" else "",
                                         f"{cp.unmeasured} segment(s) unmeasured" if cp.unmeasured else "") if n)}
    if ks is not None:
        row.update({"kernels": ks.kernels, "kernel_sum_ms": ks.summed_ms, "busy_ms": ks.busy_ms,
                    "kernel_span_ms": ks.span_ms})
    row.update(_mix_columns(replayed))
    detail = {"mode": mod.mode, "program": prog.summary(), "replay_samples": list(rep.samples), "clock": tr.clock,
              "coverage": tr.coverage.to_dict() if tr.coverage is not None else None,
              "critical_path": list(cp.path),
              "segments": [{"id": st.id, "stream": st.stream, "device": st.device, "ops": list(st.ops),
                            "measured_ms": med.get(st.id), "critical": st.id in on_path} for st in prog.segments],
              "kernel_stats": ks.to_dict() if ks is not None else None,
              "kernels_first_call": _first_call(replayed),
              "absorb_joins": plan.schedule.meta.get("absorb_joins")}
    del mod
    return row, detail


def _mix_columns(kernels) -> dict:
    """The kernel mix of a system's profiled calls as CSV columns: per family, kernels per call and
    their summed time (:func:`hios.runtime.measure.critical_path.kernel_mix`)."""
    from hios.runtime.measure.critical_path import kernel_mix
    mix = kernel_mix((k.call, k.name, k.start_ms, k.end_ms) for k in kernels)
    return {f"{col}_{fam.split('/')[0]}": v for fam, (n, ms) in mix.items()
            for col, v in (("kernels", n), ("ms", ms))}


def _first_call(kernels) -> list:
    """``[segment, name, duration ms]`` of every kernel of the first profiled call (segment None
    for torch.compile), in start order: what the kernel mix is made of."""
    if not kernels:
        return []
    first = min(k.call for k in kernels)
    return [[k.segment, k.name, k.end_ms - k.start_ms]
            for k in sorted(kernels, key=lambda k: k.start_ms) if k.call == first]


def measure_compile(model, x, dev, s, calls: int, freezing: bool, cudnn: bool = False) -> tuple[dict, dict]:
    """torch.compile reduce-overhead (with or without freezing): built, checked, timed, profiled;
    with ``cudnn``, all of it with ``torch.backends.cudnn.benchmark`` on."""
    import contextlib

    from hios.runtime.local.executor import cudnn_benchmark
    with cudnn_benchmark() if cudnn else contextlib.nullcontext():
        return _measure_compile(model, x, dev, s, calls, freezing, cudnn)


def _measure_compile(model, x, dev, s, calls: int, freezing: bool, cudnn: bool) -> tuple[dict, dict]:
    import torch
    from torch._dynamo.utils import counters
    from hios.runtime.measure.bench import RTOL_TF32, compare_outputs, compile_reduce_overhead, time_call
    from hios.runtime.measure.critical_path import kernel_stats
    from hios.runtime.measure.trace import profile_calls

    before = counters["stats"]["unique_graphs"]
    t0 = time.perf_counter()
    with torch.no_grad():
        compiled = compile_reduce_overhead(model, x, freezing=freezing)
        build_s = time.perf_counter() - t0
        graphs = counters["stats"]["unique_graphs"] - before  # Dynamo graphs compiled (graph breaks + 1)
        chk = compare_outputs(compiled(*x), model(*x), RTOL_TF32)
        st = time_call(compiled, x, dev, s)
    row = {"system": ("compile_freezing" if freezing else "compile") + ("_cudnn" if cudnn else ""),
           "segments": graphs, "call_ms": st.median_ms,
           "check_rel": chk.rel, "check_ok": chk.ok, "build_s": build_s, "kernel_source": "-"}
    detail = {"call_samples": list(st.samples), "dynamo_graphs": graphs}
    if dev.type == "cuda":
        notes: list[str] = []
        kern = profile_calls(compiled, x, calls, "compile", notes)
        ks = kernel_stats([(k.call, k.start_ms, k.end_ms) for k in kern if k.call is not None])
        if ks is not None:
            row.update({"kernels": ks.kernels, "kernel_sum_ms": ks.summed_ms, "busy_ms": ks.busy_ms,
                        "kernel_span_ms": ks.span_ms, "kernel_source": "profiled calls"})
            detail["kernel_stats"] = ks.to_dict()
        linked = [k for k in kern if k.call is not None]
        row.update(_mix_columns(linked))
        detail["kernels_first_call"] = _first_call(linked)
        unlinked = sum(1 for k in kern if k.call is None)
        row["note"] = "; ".join(notes + ([f"{unlinked} kernel(s) not tied to a call"] if unlinked else []))
    del compiled
    return row, detail


def measure_point(pt: str, args, dev, s, t_end: float, head: dict, rows: list[dict], out: Path) -> None:
    """Every system of one point; after each, the rows and the point's detail are written (so a
    run cut short keeps what it measured).  A system starts only when the budget left covers the
    longest system of this point so far (at least ``--min-system-s``)."""
    from hios.cost.options import CostOptions
    from hios.frontend import zoo
    from hios.options import ScheduleOptions
    from hios.pipeline import plan_model

    name, size, ndev = parse_point(pt)
    model, example = zoo.build(name, size, 1)
    model = model.to(dev).eval()
    x = tuple(t.to(dev) for t in example)
    planned = plan_model(model, x, schedule=ScheduleOptions(gpus=ndev),
                         cost=CostOptions(source=args.prior, tf32=True), name=pt.replace(":", "-"))
    detail = {"point": pt, "operators": len(planned.plan.graph), "systems": {},
              "predicted_ms": planned.plan.predicted, "schedule": planned.plan.schedule.to_dict(),
              "device": head["device"], "torch": head["torch"], "date": head["date"]}
    need = args.min_system_s
    for system in args.systems.split(","):
        if system.startswith("compile") and dev.type != "cuda" and not args.cpu_compile:
            continue
        left = t_end - time.perf_counter()
        if left < need:
            head["skipped"].append(f"{pt} {system}")
            continue
        log(f"{pt}: {system} ({left:.0f} s of the budget left)")
        t0 = time.perf_counter()
        try:
            if system.startswith("hios"):
                row, d = measure_hios(model, x, planned, ndev, dev, s, args.calls,
                                      args.absorb_joins if system == "hios_absorb" else None,
                                      cudnn=system == "hios_cudnn")
            else:
                row, d = measure_compile(model, x, dev, s, args.calls, freezing="freezing" in system,
                                         cudnn=system.endswith("_cudnn"))
        except Exception as e:  # one system failing must not lose the others
            traceback.print_exc()
            head["failed"][f"{pt} {system}"] = f"{type(e).__name__}: {str(e)[:300]}"
            row, d = {"system": system, "note": f"failed: {type(e).__name__}"}, {}
        need = max(need, time.perf_counter() - t0)
        rows.append(_ratios({"point": pt, **row}))
        detail["systems"][system] = d
        _free(dev)
        (out / "data" / f"{pt.replace(':', '-')}.json").write_text(json.dumps(detail, default=float))
        write_outputs(rows, head, out)


def measure(args, out: Path) -> list[dict]:
    import torch
    from hios.cost.timing import precision
    from hios.options import TimingOptions

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("compile_gap: no CUDA GPU (--device cpu for a smoke test)")
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    s = TimingOptions(5, 30, 5)
    t_end = time.perf_counter() + args.budget_s
    head = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "budget_s": args.budget_s,
            "skipped": [], "failed": {}}
    rows: list[dict] = []
    with precision(True):
        for pt in args.points.split(","):
            if t_end - time.perf_counter() < args.min_point_s:
                head["skipped"].append(pt)
                continue
            try:
                measure_point(pt, args, dev, s, t_end, head, rows, out)
            except Exception as e:  # one point failing must not lose the others
                traceback.print_exc()
                head["failed"][pt] = f"{type(e).__name__}: {str(e)[:300]}"
            write_outputs(rows, head, out)
    if (out / "compile_gap_data.tar.gz").exists():
        shutil.rmtree(data)  # packed: the device tool brings back few files
    return rows


# ------------------------------------------------------------------------------------------- report

def write_outputs(rows: list[dict], head: dict, out: Path) -> None:
    with open(out / "compile_gap.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    (out / "run.json").write_text(json.dumps(head, indent=1))
    (out / "data" / "run.json").write_text(json.dumps(head, indent=1))
    with tarfile.open(out / "compile_gap_data.tar.gz.part", "w:gz") as tf:
        tf.add(out / "data", arcname="data")
    os.replace(out / "compile_gap_data.tar.gz.part", out / "compile_gap_data.tar.gz")
    plot(rows, head, out)


def plot(rows: list[dict], head: dict, out: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot")
        return
    points = list(dict.fromkeys(r["point"] for r in rows))
    if not points:
        return
    measures = (("call_ms", "call / replay"), ("busy_ms", "GPU busy"), ("kernel_sum_ms", "summed kernels"),
                ("critical_ms", "measured critical path"))
    systems = [s for s in SYSTEMS if any(r["system"] == s for r in rows)]
    fig, axes = plt.subplots(1, len(points), figsize=(3.2 * len(points) + 1, 4), squeeze=False)
    width = 0.8 / len(measures)
    for ax, pt in zip(axes[0], points):
        by = {r["system"]: r for r in rows if r["point"] == pt}
        for m, (key, label) in enumerate(measures):
            vals = [by.get(sy, {}).get(key) for sy in systems]
            xs = [i + (m - (len(measures) - 1) / 2) * width for i in range(len(systems))]
            ax.bar(xs, [v if isinstance(v, float) else 0.0 for v in vals], width, label=label)
        ax.set_xticks(range(len(systems)))
        ax.set_xticklabels([sy.replace("_", "\n") for sy in systems], fontsize=7)
        ax.set_title(pt, fontsize=9)
        ax.set_ylabel("ms per call" if ax is axes[0][0] else "")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"hios plan against torch.compile\n{head.get('device', '?')}, {head.get('date', '?')}, batch 1, TF32",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "compile_gap.png", dpi=120)
    plt.close(fig)


def print_table(rows: list[dict], head: dict) -> None:
    def f(v, d=3):
        return "-" if v is None or v == "" else f"{v:.{d}f}" if isinstance(v, float) else str(v)
    print(f"device {head.get('device', '?')}, torch {head.get('torch', '?')}, {head.get('date', '?')}, batch 1, TF32")
    print("point | system | segments | kernels/call | summed kernels ms | GPU busy ms | call ms | busy/call | "
          "critical path ms (segments) | check | kernels from")
    for r in rows:
        crit = f"{f(r.get('critical_ms'))} ({r['critical_segments']})" if r.get("critical_ms") is not None else "-"
        print(f"{r['point']} | {r['system']} | {f(r.get('segments'))} | {f(r.get('kernels'), 1)} | "
              f"{f(r.get('kernel_sum_ms'))} | {f(r.get('busy_ms'))} | {f(r.get('call_ms'))} | "
              f"{f(r.get('busy_over_call'), 2)} | {crit} | {f(r.get('check_ok'))} | {r.get('kernel_source', '-')}"
              + (f" | {r['note']}" if r.get("note") else ""))
    mixed = [r for r in rows if any(f"kernels_{f}" in r for f in MIX)]
    if mixed:
        print("kernel mix per call, kernels (summed ms): " + " | ".join(MIX))
        for r in mixed:
            print(f"{r['point']} | {r['system']} | " + " | ".join(
                f"{f(r.get(f'kernels_{fam}'), 1)} ({f(r.get(f'ms_{fam}'))})" for fam in MIX))
    if head.get("skipped"):
        print(f"skipped (budget): {', '.join(head['skipped'])}")
    for pt, why in (head.get("failed") or {}).items():
        print(f"failed: {pt}: {why}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", default=None, help=f"default {POINTS} ({SMOKE_POINTS} with --device cpu)")
    p.add_argument("--systems", default=None,
                   help="any of " + ",".join(SYSTEMS) + " (default: all; hios_absorb only with --absorb-joins)")
    p.add_argument("--absorb-joins", type=float, default=None, metavar="FRACTION",
                   help="also measure the plan with its joins absorbed (system hios_absorb), e.g. 0.5")
    p.add_argument("--prior", default="h200", help="analytic device spec the plans are made from")
    p.add_argument("--calls", type=int, default=5, help="calls traced / profiled per system")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--cpu-compile", action="store_true", help="on CPU, also run the torch.compile systems")
    p.add_argument("--budget-s", type=float, default=480.0,
                   help="no point or system starts unless the budget left covers it (default 480 s)")
    p.add_argument("--min-point-s", type=float, default=40.0, help="a point needs this much budget left to start")
    p.add_argument("--min-system-s", type=float, default=25.0, help="a system needs this much budget left to start")
    p.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/compile_gap"))
    args = p.parse_args()
    if args.systems is None:
        args.systems = ",".join(sy for sy in SYSTEMS if sy != "hios_absorb" or args.absorb_joins is not None)
    bad = [sy for sy in args.systems.split(",") if sy not in SYSTEMS]
    if bad:
        raise SystemExit(f"compile_gap: unknown system {bad[0]!r}; choose from {', '.join(SYSTEMS)}")
    if "hios_absorb" in args.systems.split(",") and not (args.absorb_joins is not None and 0 < args.absorb_joins <= 1):
        raise SystemExit("compile_gap: system hios_absorb needs --absorb-joins FRACTION in (0, 1]")
    if args.calls < 1:
        raise SystemExit("compile_gap: --calls must be at least 1")
    if args.points is None:
        args.points = SMOKE_POINTS if args.device == "cpu" else POINTS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = measure(args, out)
    head = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    print_table(rows, head)
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
