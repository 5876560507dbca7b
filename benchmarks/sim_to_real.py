"""Simulator against reality: predicted and measured graph-replay latency of hios plans, out of sample.

Two phases, so that the GPU minutes go to measuring and the models are fitted and compared on any
machine from what was measured:

**Measure** (a GPU; ``--budget-s``, 540 s by default, one run of the device tool).  Per point
``model:image_size[:logical_devices]``, batch 1, TF32, in the order given (a point is skipped, and
listed, once the budget is spent; what was measured is written after every point):

 1. the plan as ``hios run --cost h200`` makes it (:func:`hios.pipeline.plan_model`, analytic H200
    costs, HIOS-LP, default intra-GPU step); on ``N`` logical devices they all share ``cuda:0``;
 2. compiled as the runtime runs it (CUDA graph, Inductor segments), checked against ``model(x)``,
    its graph replay timed (CUDA events, median);
 3. every segment timed alone as built, captured 8 times back to back in one CUDA graph so that a
    graph launch is spread as it is in the plan's replay (and once per graph, for comparison);
 4. the replay traced (:func:`hios.runtime.measure.trace.record_run`): per segment its kernels'
    start and end in the replay, per kernel its launch size (blocks per SM) where the profiler
    gives it;
 5. the closed loop as users run it: the fed-back profile (``hios run --feedback-to``:
    :func:`hios.stage_fit.fed_back_profile`), a re-plan from it, compiled and
    timed when it differs (plan B).

Each point's measurements go to ``OUT/data/<point>.json``; everything in them is torch-free.

**Analyse** (any machine; ``--from DIR`` re-analyses saved data without measuring).  For every point
and every stage model of :data:`STAGE_MODELS`, the simulator's prediction of each measured plan
from three kinds of costs:

* ``prior``: the analytic H200 costs the plan was made from (nothing fitted);
* ``out of sample``: the analytic model fitted to the *other* points' segment times (``--spec-form
  kernels``, the default: efficiencies, an element-wise and a tensor-kernel overhead, element-wise
  runs fused, :func:`hios.cost.analytic.fit_spec_kernels`; ``roofline``: efficiencies and one
  overhead, :func:`hios.cost.analytic.fit_spec_many`), and the stage model's parameter fitted so
  that the other points' plans are predicted best (:func:`hios.stage_fit.fit_stage_parameter`);
  nothing measured on the point itself is used;
* ``in sample`` (labelled): the point's own segment times alone, stage parameter fitted on the
  other points.

Each family is judged three times: with the analytic utilizations the plan was made with (output
size over the GPU's resident threads); as ``<family>+achieved``, with utilizations derived from the
costs used (the share of peak FLOP rate or bandwidth each operator achieves); as ``<family>+work``,
with each operator's work share (the part of its cost that is roofline work at the efficiencies
fitted on the other points, :func:`hios.cost.analytic.operator_work_share`).  Families with a rate
law (``sharing``, ``concurrency``) are judged again on the plan's stream program without stage
barriers (:mod:`hios.stream_simulator`, columns ``<family>[+<utilization>]+streams``), as the
runtime runs it.  Each row also has
``sum_analytic_oos_ms``, the point's operators summed as the out-of-sample analytic model costs
them, against ``sum_alone_ms``, its segments timed alone.

``--fit-from DIR`` also judges across runs (:func:`hios.stage_fit.evaluate_transfer`): the analytic
model and every family fitted on all plans of another run's data, every plan of this run predicted
(``xrun``: nothing of this run used; ``xown``: its own segment times), written to
``OUT/sim_to_real_transfer.csv`` and ``OUT/sim_to_real_transfer_models.csv``.

Writes ``OUT/sim_to_real.csv`` (one row per point and plan), ``OUT/sim_to_real_models.csv`` (mean
and worst error per stage model and cost kind), ``OUT/sim_to_real.png`` (predicted against
measured) and prints the tables.

Usage (GPU): ``PYTHONPATH=src python benchmarks/sim_to_real.py --out $OUT``
Re-analysis: ``PYTHONPATH=src python benchmarks/sim_to_real.py --from benchmarks/results/sim_to_real_h200``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

POINTS = ("googlenet:224,inception_v3:299,nasnetalarge:331,randwire:224,squeezenet1_1:224,inception_v3:1280,"
          "googlenet:1280,inception_v3:2048:2")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- measure

def _parse_point(pt: str) -> tuple[str, int, int]:
    parts = pt.split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise SystemExit(f"sim_to_real: bad point {pt!r} (expected model:image_size[:logical_devices])")
    try:
        return parts[0], int(parts[1]), int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise SystemExit(f"sim_to_real: bad point {pt!r}: image size and device count must be integers")


def _free(dev) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def _trace_dict(tr) -> dict:
    """The trace, torch-free: per kernel ``[call, segment, start, end, blocks per SM, occupancy,
    name]`` with ``name`` an index into ``kernel_names``."""
    graph = [k for k in tr.kernels if k.source == "graph"]
    names = list(dict.fromkeys(k.name for k in graph))
    index = {n: i for i, n in enumerate(names)}
    return {"clock": tr.clock, "calls": tr.calls,
            "coverage": tr.coverage.attributed if tr.coverage is not None else None,
            "segments": [[r.call, r.step, r.start_ms, r.end_ms] for r in tr.segments],
            "kernels": [[k.call, k.segment, k.start_ms, k.end_ms, k.blocks_per_sm, k.occupancy, index[k.name]]
                        for k in graph],
            "kernel_names": names}


def _measure_plan(model, x, plan, cap, devices, dev, s, args, tag: str) -> dict:
    import torch
    from hios.runtime.local.executor import compile as hios_compile
    from hios.runtime.measure.bench import RTOL_TF32, compare_outputs, time_call, time_replay
    from hios.runtime.measure.segment_profile import ALONE_INNER, time_segments
    from hios.runtime.measure.trace import record_run

    t0 = time.perf_counter()
    mod = hios_compile(model, x, plan, devices, captured=cap)
    out = {"compile_s": time.perf_counter() - t0, "mode": mod.mode, "program": mod.program.to_dict(),
           "schedule": plan.schedule.to_dict()}
    with torch.no_grad():
        chk = compare_outputs(mod(*x), model(*x), RTOL_TF32)
    out["check_rel"], out["check_ok"] = chk.rel, chk.ok
    rep = time_replay(mod, dev, s)
    if rep is None and dev.type == "cuda":
        raise RuntimeError(f"{tag}: the plan did not compile to a CUDA graph ({mod.fallback_reason})")
    rep = rep or time_call(mod, x, dev, s)  # CPU smoke test: stream mode, wall clock
    out["replay_ms"], out["replay_samples"] = rep.median_ms, list(rep.samples)
    log(f"{tag}: replay {rep.median_ms:.3f} ms; timing {len(mod.program.segments)} segments alone")
    out["alone_ms"] = {str(k): v for k, v in time_segments(mod, x, repeats=10, inner=ALONE_INNER).items()}
    out["alone_single_ms"] = {str(k): v for k, v in time_segments(mod, x, repeats=10, inner=1).items()}
    tr = record_run(mod, x, calls=args.trace_calls, kernels=True)
    out["trace"] = _trace_dict(tr)
    out["_module"] = mod
    out["_trace"] = tr
    return out


def measure_point(pt: str, args, dev, s, out: Path, t_end: float) -> dict:
    import torch
    from hios.cost.options import CostOptions
    from hios.formats import graph_to_dict
    from hios.frontend import zoo
    from hios.options import ScheduleOptions
    from hios.pipeline import plan_model
    from hios.cost.feedback import run_record, runtime_settings
    from hios.cost.timing import precision_state
    from hios.formats import save_graph
    from hios.stage_fit import fed_back_profile

    name, size, ndev = _parse_point(pt)
    tag = pt.replace(":", "-")
    t_point = time.perf_counter()
    model, example = zoo.build(name, size, 1)
    model = model.to(dev).eval()
    x = tuple(t.to(dev) for t in example)
    devices = [str(dev)] * ndev
    planned = plan_model(model, x, schedule=ScheduleOptions(gpus=ndev), cost=CostOptions(source=args.prior, tf32=True),
                         name=tag)
    plan_a = planned.plan
    data = {"point": pt, "model": name, "image_size": size, "devices": ndev, "machine": plan_a.machine.to_dict(),
            "graph": graph_to_dict(plan_a.graph), "plans": {}}
    log(f"{tag}: {len(plan_a.graph)} operators; compiling plan A")
    a = _measure_plan(model, x, plan_a, planned.captured, devices, dev, s, args, tag)
    mod_a, tr_a = a.pop("_module"), a.pop("_trace")
    data["plans"]["A"] = a
    # the closed loop as users run it: the fed-back profile, then one re-plan from it
    settings = runtime_settings(mod_a.kernels, mod_a.channels_last, precision_state(), dev.type)
    record = run_record(plan_a.graph, mod_a.program, tr_a, settings,
                        {int(k): v for k, v in a["alone_ms"].items()})
    fb = fed_back_profile(plan_a, record, a["replay_ms"], f"sim_to_real {tag}")
    data["feedback_fit"] = fb.meta["profile"].get("replay_fit")
    fb_path = out / "data" / f"{tag}-feedback.json"
    save_graph(fb, fb_path)
    del mod_a
    _free(dev)
    planned_b = plan_model(model, x, schedule=ScheduleOptions(gpus=ndev), cost=CostOptions(source=str(fb_path), tf32=True),
                           name=tag)
    plan_b = planned_b.plan
    data["feedback_stage_model"] = plan_b.stage_model
    data["plan_b_predicted_ms"] = plan_b.predicted[plan_b.meta["algorithm"]]
    same = plan_b.schedule.stages == plan_a.schedule.stages
    data["plan_b_same_as_a"] = same
    if not same and time.perf_counter() < t_end - 60:
        log(f"{tag}: compiling the re-plan B")
        b = _measure_plan(model, x, plan_b, planned.captured, devices, dev, s, args, tag + " B")
        b.pop("_module"), b.pop("_trace")
        data["plans"]["B"] = b
    data["seconds"] = time.perf_counter() - t_point
    _free(dev)
    return data


def measure(args, out: Path) -> None:
    import torch
    from hios.cost.timing import precision
    from hios.options import TimingOptions

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("sim_to_real: no CUDA GPU (--device cpu for a smoke test; --from DIR analyses saved data)")
    (out / "data").mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    s = TimingOptions(5, 30, 5)
    t_end = time.perf_counter() + args.budget_s
    head = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "skipped": [], "failed": {}}
    with precision(True):
        for k, pt in enumerate(args.points.split(",")):
            left = t_end - time.perf_counter()
            if left < args.min_point_s:
                head["skipped"].append(pt)
                continue
            log(f"point {pt} ({left:.0f} s of the budget left)")
            try:
                d = measure_point(pt, args, dev, s, out, t_end)
                d.update({"device": head["device"], "torch": head["torch"], "date": head["date"]})
                (out / "data" / f"{pt.replace(':', '-')}.json").write_text(json.dumps(d, default=float))
            except Exception as e:  # one point failing must not lose the others
                traceback.print_exc()
                head["failed"][pt] = f"{type(e).__name__}: {str(e)[:300]}"
            (out / "data" / "run.json").write_text(json.dumps(head, indent=1))
    if args.tar:  # one file: the device tool brings back few files per call
        import tarfile
        with tarfile.open(out / "data.tar.gz", "w:gz") as tf:
            tf.add(out / "data", arcname="data")


# ------------------------------------------------------------------------------------------- analyse

def load_data(folder: Path) -> tuple[list[dict], dict]:
    """The measured points and run header of ``folder`` (a run's output folder or its ``data/``)."""
    from hios.formats import graph_from_dict
    folder = Path(folder)
    folder = folder / "data" if (folder / "data").is_dir() else folder
    head = json.loads((folder / "run.json").read_text()) if (folder / "run.json").exists() else {}
    points = []
    for p in sorted(folder.glob("*.json")):
        if p.name == "run.json" or p.name.endswith("-feedback.json"):
            continue
        d = json.loads(p.read_text())
        d["graph"] = graph_from_dict(d["graph"], str(p))
        points.append(d)
    return points, head


def _cases(points: list[dict]) -> list[dict]:
    from hios.machine import Machine
    from hios.schedule import Schedule
    cases = []
    for d in points:
        for key, pl in d["plans"].items():
            cases.append({"point": d["point"], "plan": key, "graph": d["graph"], "machine": Machine.from_dict(d["machine"]),
                          "schedule": Schedule.from_dict(pl["schedule"]), "program": pl["program"],
                          "alone_ms": {int(k): v for k, v in pl["alone_ms"].items()},
                          "measured_ms": pl["replay_ms"]})
    return cases


#: (utilization, simulator) judged besides the families' own utilizations on the stage simulator:
#: the other utilizations, and the stream program without stage barriers (families with a rate law:
#: ``sharing`` with work shares or achieved utilizations, ``concurrency``, which uses none).
_VARIANTS = (("achieved", "stages"), ("work", "stages"), ("analytic", "streams"), ("work", "streams"),
             ("achieved", "streams"))


#: The closed loop replayed offline: a family fitted to plan A's replay from A's own segment times
#: (:func:`hios.stage_fit.evaluate_transfer` from A to B), plan B predicted from B's own segment times
#: (columns ``loop[<family><tag>]``): the loop as run (``concurrency``, stage simulator) and the
#: capacity-sharing model on the stream program.
_LOOP = (("analytic", "stages", ("concurrency",)), ("work", "streams", ("sharing",)))


def _with_rates(families: dict) -> dict:
    return {k: f for k, f in families.items() if hasattr(f.make(tuple(0.5 for _ in f.params)), "rates")}


def analyse(points: list[dict], out: Path, spec_form: str = "kernels") -> list[dict]:
    from hios.stage_fit import STAGE_FAMILIES, UTILIZATIONS, evaluate_points, evaluate_transfer

    cases = _cases(points)
    rows = evaluate_points(cases, STAGE_FAMILIES, spec_form=spec_form)
    for util, sim in _VARIANTS:  # the same families with other utilizations, or without stage barriers
        fams = STAGE_FAMILIES if sim == "stages" else _with_rates(STAGE_FAMILIES)
        tag = UTILIZATIONS[util] + ("+streams" if sim == "streams" else "")
        more = {(r["point"], r["plan"]): r for r in evaluate_points(cases, fams, util, spec_form, sim)}
        for r in rows:
            r.update({k: v for k, v in more[(r["point"], r["plan"])].items() if k.endswith(f"{tag}]")})
    for pt in dict.fromkeys(c["point"] for c in cases):  # the loop offline: fitted to A's replay, B predicted
        a = [c for c in cases if c["point"] == pt and c["plan"] == "A"]
        b = [c for c in cases if c["point"] == pt and c["plan"] == "B"]
        if a and b:
            r = next(r for r in rows if r["point"] == pt and r["plan"] == "B")
            for util, sim, fams in _LOOP:
                x = evaluate_transfer(a, b, {f: STAGE_FAMILIES[f] for f in fams}, util, spec_form, sim)[0]
                r.update({"loop[" + k[10:]: v for k, v in x.items() if k.startswith("pred[xown|")})
    for d in points:  # the closed loop: plan B predicted from the fed-back profile
        b = d["plans"].get("B")
        for r in rows:
            if r["point"] == d["point"] and r["plan"] == "B":
                r["feedback_predicted_ms"] = d["plan_b_predicted_ms"]
        if b is None:
            rows.append({"point": d["point"], "plan": "B", "measured_ms": None,
                         "note": "re-plan same as A" if d.get("plan_b_same_as_a") else "not measured (budget)",
                         "feedback_predicted_ms": d["plan_b_predicted_ms"]})
    write_csv(out / "sim_to_real.csv", rows)
    return rows


def transfer(fit_points: list[dict], points: list[dict], out: Path, spec_form: str = "kernels") -> list[dict]:
    """Across runs: every family fitted on all plans of ``fit_points`` (another run), every plan of
    ``points`` predicted (:func:`hios.stage_fit.evaluate_transfer`); writes ``sim_to_real_transfer.csv``."""
    from hios.stage_fit import STAGE_FAMILIES, UTILIZATIONS, evaluate_transfer

    fit_cases, cases = _cases(fit_points), _cases(points)
    rows = []
    for util, sim in (("analytic", "stages"),) + _VARIANTS:
        fams = STAGE_FAMILIES if sim == "stages" else _with_rates(STAGE_FAMILIES)
        more = evaluate_transfer(fit_cases, cases, fams, util, spec_form, sim)
        if not rows:
            rows = more
        else:
            for r, m in zip(rows, more):
                r.update({k: v for k, v in m.items() if k not in r})
    write_csv(out / "sim_to_real_transfer.csv", rows)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def summarise(rows: list[dict], out: Path, name: str = "sim_to_real_models.csv") -> list[dict]:
    cols = [k for k in dict.fromkeys(k for r in rows for k in r) if k.startswith(("pred[", "loop["))]
    summary = []
    for c in cols:
        errs = [abs(r[c] / r["measured_ms"] - 1) for r in rows if isinstance(r.get(c), float) and r.get("measured_ms")]
        if errs:
            summary.append({"prediction": c[5:-1] if c.startswith("pred[") else c[:-1].replace("[", "|", 1),
                            "cases": len(errs), "mean_abs_error": statistics.fmean(errs),
                            "worst_abs_error": max(errs), "within_10pct": sum(e <= 0.10 for e in errs)})
    summary.sort(key=lambda r: (not r["prediction"].startswith(("oos", "xrun")), r["worst_abs_error"]))
    write_csv(out / name, summary)
    return summary


def plot(rows: list[dict], best: str, out: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot")
        return
    pts = [(r["measured_ms"], r[f"pred[{best}]"], f"{r['point']} {r['plan']}") for r in rows
           if isinstance(r.get(f"pred[{best}]"), float) and r.get("measured_ms")]
    prior = [(r["measured_ms"], r["pred[prior|hios]"]) for r in rows if isinstance(r.get("pred[prior|hios]"), float)]
    fig, ax = plt.subplots(figsize=(6.5, 6))
    lo = min(min(p[0], p[1]) for p in pts + prior) * 0.8
    hi = max(max(p[0], p[1]) for p in pts + prior) * 1.25
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.9", label="±10 %")
    ax.scatter([p[0] for p in prior], [p[1] for p in prior], marker="x", c="tab:red", label="prior (analytic, HIOS α 0.5)")
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], c="tab:blue", label=f"out of sample: {best}")
    for m, p, t in pts:
        ax.annotate(t, (m, p), fontsize=6, xytext=(3, -3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured graph replay (ms)")
    ax.set_ylabel("simulated (ms)")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("hios simulator against the H200 replay")
    fig.tight_layout()
    fig.savefig(out / "sim_to_real.png", dpi=130)


def print_tables(rows: list[dict], summary: list[dict], head: dict) -> None:
    print(f"device {head.get('device', '?')}, torch {head.get('torch', '?')}, {head.get('date', '?')}, batch 1, TF32")
    best = summary[0]["prediction"] if summary else None
    print(f"\npoint | plan | measured ms | prior | out of sample ({best}) | in sample (own segments) | fed-back plan B")
    for r in rows:
        m = r.get("measured_ms")

        def rel(k):
            v = r.get(k)
            return f"{v:.3f} ({v / m:.2f})" if isinstance(v, float) and m else "-"
        insample = best.replace("oos", "own") if best else ""
        print(f"{r['point']} | {r['plan']} | {m if m is None else f'{m:.3f}'} | {rel('pred[prior|hios]')} | "
              f"{rel(f'pred[{best}]')} | {rel(f'pred[{insample}]')} | {rel('feedback_predicted_ms')} {r.get('note', '')}")
    print("\nprediction | cases | mean |err| | worst |err| | within 10 %")
    for s in summary:
        print(f"{s['prediction']} | {s['cases']} | {100 * s['mean_abs_error']:.1f} % | "
              f"{100 * s['worst_abs_error']:.1f} % | {s['within_10pct']}/{s['cases']}")
    if head.get("skipped"):
        print(f"skipped (budget): {', '.join(head['skipped'])}")
    for pt, why in (head.get("failed") or {}).items():
        print(f"failed: {pt}: {why}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", default=POINTS)
    p.add_argument("--prior", default="h200", help="analytic device spec the plans are made from")
    p.add_argument("--trace-calls", type=int, default=10)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--budget-s", type=float, default=540.0, help="measuring stops starting points after this")
    p.add_argument("--min-point-s", type=float, default=45.0, help="a point needs this much budget left to start")
    p.add_argument("--tar", action="store_true", help="also pack the measured data into OUT/data.tar.gz")
    p.add_argument("--from", dest="source", help="analyse the data in this folder (no measuring)")
    p.add_argument("--spec-form", default="kernels", choices=("kernels", "roofline"),
                   help="form of the analytic model fitted out of sample (hios.stage_fit.SPEC_FORMS)")
    p.add_argument("--fit-from", help="also fit every model on the data in this folder (another run) and "
                                      "predict every plan of the analysed run from it")
    p.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results/sim_to_real"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.source is None:
        measure(args, out)
    folder = out if args.source is None else Path(args.source)
    points, head = load_data(folder)
    if not points:
        print(f"sim_to_real: no measured points in {folder}", file=sys.stderr)
        return 1
    rows = analyse(points, out, args.spec_form)
    summary = summarise(rows, out)
    if summary:
        plot(rows, summary[0]["prediction"], out)
    print_tables(rows, summary, head)
    if args.fit_from:
        fit_folder = Path(args.fit_from)
        fit_points, fit_head = load_data(fit_folder)
        if not fit_points:
            print(f"sim_to_real: no measured points in {fit_folder}", file=sys.stderr)
            return 1
        xrows = transfer(fit_points, points, out, args.spec_form)
        print(f"\nacross runs: fitted on {fit_folder} ({fit_head.get('date', '?')}), predicting this run")
        print("point | plan | measured ms | " + " | ".join(k[5:-1] for k in xrows[0] if k.startswith("pred[")))
        for r in xrows:
            print(f"{r['point']} | {r['plan']} | {r['measured_ms']:.3f} | "
                  + " | ".join(f"{v / r['measured_ms']:.2f}" for k, v in r.items() if k.startswith("pred[")))
        print("\nprediction | cases | mean |err| | worst |err| | within 10 %")
        for s in summarise(xrows, out, "sim_to_real_transfer_models.csv"):
            print(f"{s['prediction']} | {s['cases']} | {100 * s['mean_abs_error']:.1f} % | "
                  f"{100 * s['worst_abs_error']:.1f} % | {s['within_10pct']}/{s['cases']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
