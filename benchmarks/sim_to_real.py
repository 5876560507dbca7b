"""Simulator against reality on one GPU: predicted and measured latency of hios plans, closing the loop.

Per point (model:image size), batch 1, TF32 convolutions and matrix products (the setting of the
issue's reference figures):

 1. capture; prior costs from the analytic model of the device (``--prior``; a per-operator
    Inductor profile costs 40-75 s per model, more than this script's lease allows);
 2. plan A: HIOS-LP on one GPU (default intra-GPU window/streams) under the HIOS stage model;
 3. compile A as the runtime runs it (CUDA-graph mode, Inductor segments, channels_last), check it
    against model(x), time it (CUDA events around calls; graph replays alone too);
 4. profile what runs: each segment of A timed alone as built (hios.runtime.measure.segment_profile) -> costs S;
 5. real-run trace of A (hios.runtime.measure.trace: stream-mode issue timed by CUDA events per segment,
    kernels attributed by torch.profiler, plus the kernels of graph replays) -> OUT/<point>-trace.json
    with the simulator's trace of A beside it; the per-segment table goes to OUT/<point>-segments.txt;
 6. concurrency model: beta fitted on the trace's segment intervals (stream-mode issue: on a GPU
    host-bound, so usually nothing overlaps and beta is "n/a"), on the kernel timeline of graph
    replays, and (after all points, leave one point out) beta / alpha fitted so that the simulated
    latency of the other points' plans equals their measured replay;
 7. closed loop: beta fitted so that A's replay is predicted exactly, plan B re-made from S under
    that model, compiled and timed when it differs from A (its prediction is out of sample);
 8. choice by measurement (hios.selection): A, B, torch.compile reduce-overhead with and without
    freezing, timed the same way; the fastest is kept.

Writes OUT/sim_to_real.csv (one row per point) and prints a table.  Once --budget-s seconds have
passed, remaining points are skipped (listed).

Usage (GPU): PYTHONPATH=src python benchmarks/sim_to_real.py --points googlenet:224,inception_v3:299 --out $OUT
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

import torch

from hios.cost.concurrency import Interval, fit_beta_to_latency, fit_concurrency, timeline_row
from hios.cost.costmodel import ConcurrencyStageModel, HIOSStageModel
from hios.cost.feedback import run_record, runtime_settings
from hios.frontend import zoo
from hios.cost.analytic import costed_graph
from hios.frontend.capture import capture
from hios.machine import Machine
from hios.options import TimingOptions
from hios.runtime.measure.bench import (RTOL_TF32, compare_outputs, compile_reduce_overhead, time_call,
                                time_replay)
from hios.runtime.local.executor import compile as hios_compile
from hios.runtime.measure.segment_profile import segment_profile
from hios.runtime.measure.trace import chrome_trace, format_table, record_run, segment_table, write_trace
from hios.schedulers import schedule
from hios.selection import Candidate, choose
from hios.simulator import Simulator
from hios.cost.timing import precision_state, set_precision


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def simulate(graph, sched, model) -> float:
    return Simulator(graph, Machine(1), model).simulate(sched).latency


def kernel_stats(trace) -> dict:
    """Per replay: kernels, their summed time and the union of their intervals (GPU busy)."""
    ks = sorted(((k.start_ms, k.end_ms) for k in trace.kernels if k.source == "graph"))
    if not ks:
        return {}
    busy, cur = 0.0, None
    for a, b in ks:
        if cur is None or a > cur[1]:
            if cur:
                busy += cur[1] - cur[0]
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    busy += cur[1] - cur[0]
    n = trace.calls
    return {"kernels_per_replay": len(ks) / n, "kernel_sum_ms": sum(b - a for a, b in ks) / n,
            "gpu_busy_ms": busy / n}


def run_point(model_name: str, size: int, args, dev, s: TimingOptions, out: Path) -> dict:
    tag = f"{model_name}-{size}"
    row: dict = {"point": tag}
    t_point = time.perf_counter()
    model, example = zoo.build(model_name, size, 1)
    model = model.to(dev).eval()
    x = tuple(t.to(dev) for t in example)
    cap = capture(model, x, name=tag)
    prior = costed_graph(cap, args.prior)
    hios_model = HIOSStageModel(0.5)
    plan_a = schedule(prior, Machine(1), "hios-lp", stage_model=hios_model)
    row["ops"] = len(prior)

    log(f"{tag}: compiling plan A ({len(plan_a.stages[0])} stages)")
    t0 = time.perf_counter()
    mod_a = hios_compile(model, x, plan_a, [str(dev)], captured=cap)
    row["compile_a_s"] = time.perf_counter() - t0
    with torch.no_grad():
        chk = compare_outputs(mod_a(*x), model(*x), RTOL_TF32)
    row["check_a"] = f"{chk.rel:.1e}{'' if chk.ok else ' FAILED'}"
    row["mode_a"] = mod_a.mode
    row["segments_a"] = len(mod_a.program.segments)
    row["streams_a"] = max(mod_a.program.streams)
    rep = time_replay(mod_a, dev, s)
    row["call_a_ms"] = time_call(mod_a, x, dev, s).median_ms
    row["measured_a_ms"] = rep.median_ms if rep else row["call_a_ms"]

    log(f"{tag}: timing {len(mod_a.program.segments)} segments alone (profile what runs)")
    seg_graph, seg_times = segment_profile(mod_a, x, prior, str(dev), repeats=10)
    row["segments_alone_sum_ms"] = sum(seg_times.values())

    log(f"{tag}: real-run trace")
    try:
        tr = record_run(mod_a, x, calls=args.trace_calls, kernels=dev.type == "cuda")
    except Exception as e:  # the kernel profile is optional; segment intervals are not
        row["kernel_trace_error"] = f"{type(e).__name__}: {str(e)[:160]}"
        tr = record_run(mod_a, x, calls=args.trace_calls)
    row.update(kernel_stats(tr))
    issued = tr.stream_segments or tr.segments  # graph mode: tr.segments are the replay's
    row["stream_issue_call_ms"] = statistics.median(
        max(r.end_ms for r in issued if r.call == c) for c in sorted({r.call for r in issued}))
    row["trace_segments_from"] = tr.clock
    if tr.coverage is not None:
        row["replay_attributed"] = tr.coverage.attributed
    alone = {k: seg_times[k] for k in seg_times}
    ivs = [Interval((r.call, r.step), (r.call, r.mem), r.start_ms, r.end_ms) for r in tr.segments]
    try:
        conc = fit_concurrency(intervals=ivs, alone={(r.call, r.step): alone[r.step] for r in tr.segments},
                               with_overhead=False)
        row["beta_trace"] = conc.beta
    except Exception as e:  # no concurrent segments (one stream)
        conc = None
        row["beta_trace"] = f"n/a ({e})"
    graph_kernels = [Interval(k, 0, kr.start_ms, kr.end_ms) for k, kr in enumerate(tr.kernels) if kr.source == "graph"]
    if graph_kernels:
        try:
            row["beta_kernels"] = fit_concurrency(
                timelines=[timeline_row(graph_kernels, row["segments_alone_sum_ms"] * tr.calls)],
                with_overhead=False).beta
        except Exception as e:
            row["beta_kernels"] = f"n/a ({e})"
    res_s = Simulator(seg_graph, Machine(1), hios_model).simulate(plan_a)
    rows = segment_table(tr, mod_a.program, seg_graph, res_s)
    (out / f"{tag}-segments.txt").write_text(format_table(rows) + "\n")
    settings = runtime_settings(mod_a.kernels, mod_a.channels_last, precision_state(), dev.type)
    write_trace(out / f"{tag}-trace.json",
                chrome_trace(tr, mod_a.program, seg_graph, plan_a, res_s,
                             extra={"hiosRun": run_record(seg_graph, mod_a.program, tr, settings)}))

    row["pred_prior_hios_ms"] = simulate(prior, plan_a, hios_model)
    row["pred_segments_hios_ms"] = res_s.latency
    row["pred_segments_conc_trace_ms"] = simulate(seg_graph, plan_a, conc) if conc is not None else None

    # closed loop: beta such that this run's replay of A is predicted exactly, then re-plan with it;
    # plan B's measured latency is an out-of-sample check of that model
    beta_self = fit_beta_to_latency(lambda v: simulate(seg_graph, plan_a, ConcurrencyStageModel(v)),
                                    row["measured_a_ms"])
    loop_model = ConcurrencyStageModel(beta_self)
    row["beta_loop"] = beta_self
    plan_b = schedule(seg_graph, Machine(1), "hios-lp", stage_model=loop_model)
    same = plan_b.stages == plan_a.stages
    row["replan_differs"] = not same
    mod_b = None
    if not same and time.perf_counter() - args.t_start < args.budget_s * 0.6:
        log(f"{tag}: compiling re-plan B")
        mod_b = hios_compile(model, x, plan_b, [str(dev)], captured=cap)
        with torch.no_grad():
            chk = compare_outputs(mod_b(*x), model(*x), RTOL_TF32)
        row["check_b"] = f"{chk.rel:.1e}{'' if chk.ok else ' FAILED'}"
        rep = time_replay(mod_b, dev, s)
        row["measured_b_ms"] = rep.median_ms if rep else time_call(mod_b, x, dev, s).median_ms
        row["pred_b_loop_ms"] = simulate(seg_graph, plan_b, loop_model)

    log(f"{tag}: choosing by measurement (plans and both torch.compile baselines)")
    cands = [Candidate("plan A", lambda m=mod_a: m, row["pred_segments_hios_ms"], key="A")]
    if mod_b is not None:
        cands.append(Candidate("plan B", lambda m=mod_b: m, row["pred_b_loop_ms"], key="B"))
    if dev.type == "cuda":
        cands += [Candidate("torch.compile", lambda: compile_reduce_overhead(model, x, False)),
                  Candidate("torch.compile+freezing", lambda: compile_reduce_overhead(model, x, True))]
    with torch.no_grad():
        sel = choose(cands, lambda fn: time_call(fn, x, dev, s).median_ms, top=None)
    row["chosen"] = sel.winner
    row["choose_s"] = sel.seconds
    for name, ms in sel.measured_ms.items():
        row[f"call_ms[{name}]"] = ms
    for name, err in sel.errors.items():
        row[f"error[{name}]"] = err
    comp = [sel.measured_ms[n] for n in ("torch.compile", "torch.compile+freezing") if n in sel.measured_ms]
    if comp:
        row["best_compile_ms"] = min(comp)
        row["speedup_chosen_vs_best_compile"] = min(comp) / sel.measured_ms[sel.winner]
        row["speedup_a_vs_best_compile"] = min(comp) / sel.measured_ms["plan A"]
    row["point_s"] = time.perf_counter() - t_point
    # what the leave-one-out fit needs (torch-free)
    row["_loo"] = (seg_graph, plan_a, row["measured_a_ms"])
    del mod_a, mod_b
    torch.cuda.empty_cache()
    return row


def leave_one_out(rows: list[dict]) -> None:
    """beta (concurrency model) and alpha (HIOS model) fitted so that the simulated replay of the
    other points' plans equals their measurement (mean over them), then used to predict this point."""
    fits = []
    for r in rows:
        g, sched, meas = r["_loo"]
        b = fit_beta_to_latency(lambda v: simulate(g, sched, ConcurrencyStageModel(v)), meas)
        a = fit_beta_to_latency(lambda v: simulate(g, sched, HIOSStageModel(v)), meas)
        fits.append((b, a))
        r["beta_replay_self"], r["alpha_replay_self"] = b, a
    for k, r in enumerate(rows):
        others = [f for j, f in enumerate(fits) if j != k]
        if not others:
            continue
        b = statistics.mean(f[0] for f in others)
        a = statistics.mean(f[1] for f in others)
        g, sched, meas = r["_loo"]
        r["beta_loo"], r["alpha_loo"] = b, a
        r["pred_conc_loo_ms"] = simulate(g, sched, ConcurrencyStageModel(b))
        r["pred_hios_loo_ms"] = simulate(g, sched, HIOSStageModel(a))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", default="googlenet:224,inception_v3:299")
    p.add_argument("--prior", default="h200", help="analytic device spec for the prior costs")
    p.add_argument("--trace-calls", type=int, default=10)
    p.add_argument("--device", default="cuda:0", help="cuda:0, or cpu for a smoke test (eager kernels, stream mode)")
    p.add_argument("--budget-s", type=float, default=250.0)
    p.add_argument("--out", default=os.environ.get("OUT", "benchmarks/results"))
    args = p.parse_args()
    args.t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    warnings.simplefilter("ignore")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print("sim_to_real: no CUDA GPU (use --device cpu for a smoke test)", file=sys.stderr)
        return 2
    set_precision(True)
    s = TimingOptions(5, 30, 5)
    rows, skipped = [], []
    for pt in args.points.split(","):
        name, size = pt.split(":")
        if time.perf_counter() - args.t_start > args.budget_s * 0.45 and rows:
            skipped.append(pt)
            continue
        try:
            rows.append(run_point(name, int(size), args, dev, s, out))
        except Exception as e:
            traceback.print_exc()
            rows.append({"point": pt, "error": f"{type(e).__name__}: {str(e)[:200]}"})
        write_results(out, rows, skipped, dev)  # after every point: a timeout keeps what was measured
    leave_one_out([r for r in rows if "_loo" in r])
    write_results(out, rows, skipped, dev)
    print_table(rows, skipped, dev)
    return 0


def write_results(out: Path, rows: list[dict], skipped: list[str], dev) -> None:
    rows = [{k: v for k, v in r.items() if k != "_loo"} for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(out / "sim_to_real.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    (out / "sim_to_real.json").write_text(json.dumps(
        {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__, "precision": precision_state(),
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows, "skipped": skipped}, indent=1,
        default=str))


def print_table(rows: list[dict], skipped: list[str], dev) -> None:
    def f(v, fmt="{:.3f}"):
        return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v or "-")
    dname = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"device {dname}, torch {torch.__version__}, {precision_state()}")
    print("point | meas A ms | pred prior | pred seg+hios | pred seg+conc(trace) | pred LOO conc | pred LOO hios "
          "| beta trace/self/loo | B differs / meas B (pred B) | chosen | best compile ms | speed-up chosen")
    for r in rows:
        if "error" in r:
            print(f"{r['point']} | error {r['error']}")
            continue
        m = r["measured_a_ms"]
        rel = lambda k: f"{f(r.get(k))} ({r[k] / m:.2f})" if isinstance(r.get(k), float) and m else "-"  # noqa: E731
        print(f"{r['point']} | {f(m)} | {rel('pred_prior_hios_ms')} | {rel('pred_segments_hios_ms')} | "
              f"{rel('pred_segments_conc_trace_ms')} | {rel('pred_conc_loo_ms')} | {rel('pred_hios_loo_ms')} | "
              f"{f(r.get('beta_trace'), '{:.2f}')}/{f(r.get('beta_replay_self'), '{:.2f}')}/"
              f"{f(r.get('beta_loo'), '{:.2f}')} | {r.get('replan_differs')} / {f(r.get('measured_b_ms'))} "
              f"({f(r.get('pred_b_loop_ms'))}) | "
              f"{r.get('chosen')} | {f(r.get('best_compile_ms'))} | {f(r.get('speedup_chosen_vs_best_compile'), '{:.2f}')}")
    if skipped:
        print(f"skipped (budget): {', '.join(skipped)}")


if __name__ == "__main__":
    sys.exit(main())
