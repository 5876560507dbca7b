"""Runtime benchmark: measured latency of hios plans against PyTorch on one GPU.

For every point (model, image size), batch 1, fp32 (TF32 off unless --tf32):
  * baselines: PyTorch eager, plain CUDA-graph replay of the model, torch.compile(mode="reduce-overhead");
  * the sequential plan (one stream, one segment) in CUDA-graph mode with eager and Inductor kernels;
  * intra-GPU plans (hios.schedulers.intra_gpu over the sequential order, for each window x streams
    asked) and the naive stream assignment (each branch on its own stream, least-used of 4);
  * every plan is checked against model(x) and its latency predicted by the simulator from a profile
    of the same point (hios.cost.profiler).
Results: one JSON line per measurement in OUT/runtime.jsonl, a CSV and a table on stdout.

Usage (GPU): PYTHONPATH=src python3 benchmarks/runtime.py --points googlenet:224,inception_v3:299 --out DIR
Tables for the docs: python3 benchmarks/runtime.py --summarize DIR/runtime.jsonl [more.jsonl ...]
Points are run in the order given; once --budget-s seconds have passed, the rest are skipped and listed.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch

from hios.frontend import zoo
from hios.frontend.capture import capture
from hios.machine import Machine
from hios.runtime.measure.bench import (RTOL_FP32, RTOL_TF32, TimingOptions, compare_outputs, predicted_latency,
                                time_call, time_replay)
from hios.runtime.local.executor import compile as hios_compile
from hios.program.levers import Levers
from hios.program.segmenting import naive_streams
from hios.cost.timing import set_precision
from hios.schedule import Schedule
from hios.cost.timing import capture_graph, event_time

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_plans(graph, sweep, stage_model, naive_k: int):
    """name -> (schedule, stream map or None): sequential, HIOS-LP on one GPU (latest-start-time
    order + the intra-GPU sliding window) for each window x streams, and the naive streams."""
    from hios.schedulers import schedule
    seq = Schedule.from_indices(graph, [[[i] for i in graph.topo]], "sequential")
    plans = {"seq": (seq, None)}
    for w, s in sweep:
        sch = schedule(graph, Machine(1), "hios-lp", stage_model=stage_model, window=w, streams=s)
        plans[f"intra-w{w}s{s}"] = (sch, None)
    nv = naive_streams(graph, naive_k)
    plans[f"naive{naive_k}"] = (nv, nv.meta["streams"])
    return plans


def run_point(model_name: str, size: int, args, out_jsonl, rows: list, t_start: float) -> None:
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    dname = torch.cuda.get_device_name(dev) if cuda else "cpu"
    base = {"model": model_name, "image_size": size, "batch": 1, "device": dname, "tf32": args.tf32,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "torch": torch.__version__}
    s = TimingOptions(args.warmup, args.repeats, args.inner)
    tol = RTOL_TF32 if args.tf32 else RTOL_FP32

    def emit(rec: dict) -> None:
        rec = {**base, **rec}
        out_jsonl.write(json.dumps(rec) + "\n")
        out_jsonl.flush()
        rows.append(rec)
        ms = rec.get("replay_ms") or rec.get("call_ms")
        log(f"  {model_name}:{size} {rec['variant']:<24} " + (f"{ms:.4f} ms" if ms else rec.get("error", "")))

    t0 = time.perf_counter()
    model, (x,) = zoo.build(model_name, size, 1)
    model = model.to(dev).eval()
    x = x.to(dev)
    with torch.no_grad():
        ref = model(x)
        cap = capture(model, (x,), model_name)
    log(f"{model_name}:{size} captured {cap.graph} in {time.perf_counter() - t0:.1f}s")
    # Baselines, all timed with CUDA events: replay-only for the CUDA graph, calls for the others.
    with torch.no_grad():
        st = time_call(model, (x,), dev, s)
        emit({"variant": "pytorch-eager", "call_ms": st.median_ms, "spread": st.spread})
        if cuda:
            graph, _out = capture_graph(model, (x,), warmup=3, device=dev)
            st = event_time(graph.replay, (), warmup=s.warmup, repeats=s.repeats, inner=s.inner, device=dev)
            emit({"variant": "cuda-graph-replay", "replay_ms": st.median_ms, "spread": st.spread})
            del graph, _out
        if cuda and "inductor" in args.kernels and not args.no_compile_baseline:
            t1 = time.perf_counter()
            try:
                compiled = torch.compile(model, mode="reduce-overhead")
                for _ in range(3):
                    y = compiled(x)
                chk = compare_outputs(y, ref, tol)
                st = time_call(compiled, (x,), dev, s)
                emit({"variant": "torch.compile-ro", "call_ms": st.median_ms, "spread": st.spread,
                      "compile_s": time.perf_counter() - t1, "rel_err": chk.rel})
            except Exception as e:
                emit({"variant": "torch.compile-ro", "error": f"{type(e).__name__}: {str(e)[:200]}"})
            del compiled
            torch._dynamo.reset()
    # Costs for the scheduler and the predictions.
    from hios.cost.profiler import ProfileSettings, calibrate, profile_detailed
    costed = {}
    for k in args.cost_kernels:
        t1 = time.perf_counter()
        res = profile_detailed(cap, str(dev), kernels=k, cache_dir=False, progress=False,
                               settings=ProfileSettings(repeats=10, groups=args.groups, transfer=False))
        costed[k] = res.graph
        log(f"{model_name}:{size} profiled ({k}) in {time.perf_counter() - t1:.1f}s, sum {res.graph.total_work():.3f} ms")
    for kernels in args.kernels:
        g = costed.get(kernels) or next(iter(costed.values()))
        g, sm = calibrate(g)  # utilizations from measured times; alpha fitted to measured groups
        fit = g.meta["profile"]["stage_model"]["fit"]
        sweep = args.sweep_inductor if kernels == "inductor" else args.sweep
        if "best" in sweep:  # the window x streams whose plan ran fastest so far at this point
            tried = [r for r in rows if r["model"] == model_name and r["image_size"] == size
                     and str(r.get("plan", "")).startswith("intra-") and r.get("replay_ms")]
            best = min(tried, key=lambda r: r["replay_ms"], default=None)
            wb = tuple(int(v) for v in best["plan"][len("intra-w"):].split("s")) if best else (2, 2)
            sweep = [wb] + [w for w in sweep if w != "best" and w != wb]
        plans = {k: (sch, smap, {}) for k, (sch, smap) in make_plans(g, sweep, sm, args.naive_streams).items()}
        if args.ablation:  # what channels_last, cuDNN's algorithm search and stage barriers change
            seq = plans["seq"][0]
            best_intra = next((k for k in plans if k.startswith("intra-")), None)
            if kernels == "eager":
                plans["seq-cl"] = (seq, None, {"channels_last": True})
                plans["seq-cl-cudnnbench"] = (seq, None, {"channels_last": True, "cudnn_benchmark": True})
            else:
                plans["seq-nocl"] = (seq, None, {"channels_last": False})
            if best_intra:
                plans[best_intra + "-stagesync"] = (plans[best_intra][0], None, {"sync": "stage"})
        if args.priority and kernels == "inductor":
            best_intra = next((k for k in plans if k.startswith("intra-")), None)
            if best_intra:
                plans[best_intra + "-prio"] = (plans[best_intra][0], None, {"levers": Levers(priority="stream0")})
        if kernels == "inductor" and args.inductor_plans != "all":
            keep = args.inductor_plans.split(",")
            plans = {k: v for k, v in plans.items() if k.split("-")[0].rstrip("0123456789") in keep}
        for pname, (sched, smap, opts) in plans.items():
            if time.perf_counter() - t_start > args.budget_s or time.perf_counter() - t0 > args.point_budget_s:
                emit({"variant": f"{pname}-{kernels}", "error": "skipped: time budget"})
                continue
            rec = {"variant": f"{pname}-{kernels}", "plan": pname, "kernels": kernels,
                   "alpha": sm.alpha, "alpha_fit": fit}
            try:
                t1 = time.perf_counter()
                opts = dict(opts)
                bench = opts.pop("cudnn_benchmark", False)
                rec["options"] = dict(opts, cudnn_benchmark=bench)
                torch.backends.cudnn.benchmark = bench
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    m = hios_compile(model, (x,), sched, [str(dev)], kernels=kernels,
                                     mode="graph" if cuda else "stream",
                                     captured=cap, streams=smap, clone_outputs=False, **opts)
                torch.backends.cudnn.benchmark = False
                rec["channels_last"] = m.channels_last
                rec["compile_s"] = time.perf_counter() - t1
                rec["warnings"] = [str(w.message)[:300] for w in caught if "hios" in str(w.message)]
                rec["mode"] = m.mode
                rec.update({k: v for k, v in m.program.summary().items() if k in ("streams", "segments", "events")})
                rec["stages"] = len(sched.stages[0])
                with torch.no_grad():
                    out = m(x)
                    chk = compare_outputs(out, ref, tol)
                    rec.update(rel_err=chk.rel, check_ok=chk.ok)
                    st = time_call(m, (x,), dev, s)
                    rec.update(call_ms=st.median_ms)
                    rp = time_replay(m, dev, s)
                    if rp is not None:
                        rec.update(replay_ms=rp.median_ms, spread=rp.spread)
                if smap is None:
                    rec["predicted_ms"] = predicted_latency(graph=g, schedule=sched, machine=Machine(1), stage_model=sm)
                    rec["sum_costs_ms"] = g.total_work()
                    # calibrated: scaled by measured / predicted of this point's sequential plan
                    seq_rec = next((r for r in rows if r["model"] == model_name and r["image_size"] == size
                                    and r.get("variant") == f"seq-{kernels}" and r.get("replay_ms")), None)
                    if seq_rec is not None and rec.get("replay_ms") and not pname.startswith("seq-"):
                        rec["predicted_cal_ms"] = rec["predicted_ms"] * seq_rec["replay_ms"] / seq_rec["predicted_ms"]
                del m
            except Exception as e:
                rec["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                traceback.print_exc(file=sys.stderr)
            emit(rec)
            torch._dynamo.reset()
            torch.cuda.empty_cache()


def table(rows: list[dict]) -> str:
    head = ("model", "px", "variant", "segs", "streams", "measured ms", "predicted ms", "calibrated", "rel err",
            "compile s")
    lines = [head]
    for r in rows:
        ms = r.get("replay_ms") or r.get("call_ms")
        lines.append((r["model"], str(r["image_size"]), r["variant"], str(r.get("segments", "")),
                      str(r.get("streams", "")), f"{ms:.4f}" if ms else r.get("error", "")[:40],
                      f"{r['predicted_ms']:.4f}" if r.get("predicted_ms") else "",
                      f"{r['predicted_cal_ms']:.4f}" if r.get("predicted_cal_ms") else "",
                      f"{r['rel_err']:.1e}" if r.get("rel_err") is not None else "",
                      f"{r['compile_s']:.1f}" if r.get("compile_s") else ""))
    w = [max(len(l[k]) for l in lines) for k in range(len(head))]
    return "\n".join("  ".join(c.ljust(w[k]) for k, c in enumerate(l)) for l in lines)


def markdown(rows: list[dict]) -> str:
    """Per point: every variant's latency, ratio to torch.compile and to CUDA-graph replay, the
    prediction (raw and calibrated) and its error."""
    out = []
    points = list(dict.fromkeys((r["model"], r["image_size"], r.get("tf32")) for r in rows))
    for model, size, tf32 in points:
        rs = [r for r in rows if (r["model"], r["image_size"], r.get("tf32")) == (model, size, tf32)]
        get = {r["variant"]: (r.get("replay_ms") or r.get("call_ms")) for r in rs}
        ro, cg = get.get("torch.compile-ro"), get.get("cuda-graph-replay")
        out.append(f"\n**{model} {size} px** ({'TF32' if tf32 else 'strict fp32'}, {rs[0].get('device')}, "
                   f"{rs[0].get('date', '')[:10]})\n")
        out.append("| variant | segments | streams | measured ms | / torch.compile | / CUDA graph | predicted ms "
                   "| pred. error | calibrated | cal. error | rel. err vs model |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rs:
            ms = r.get("replay_ms") or r.get("call_ms")
            pr, pc = r.get("predicted_ms"), r.get("predicted_cal_ms")
            f = lambda v, d=3: f"{v:.{d}f}" if isinstance(v, (int, float)) else ""
            out.append("| " + " | ".join([
                r["variant"] + (" (call)" if r.get("call_ms") and not r.get("replay_ms") else ""),
                str(r.get("segments", "")), str(r.get("streams", "")),
                f(ms) if ms else r.get("error", "")[:60],
                f(ms / ro, 2) if ms and ro else "", f(ms / cg, 2) if ms and cg else "",
                f(pr), f"{(pr - ms) / ms:+.0%}" if pr and ms else "",
                f(pc), f"{(pc - ms) / ms:+.0%}" if pc and ms else "",
                f"{r['rel_err']:.1e}" if r.get("rel_err") is not None else ""]) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--summarize":
        rows = [json.loads(l) for f in sys.argv[2:] for l in open(f) if l.strip()]
        print(markdown(rows))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--points", default="googlenet:224,inception_v3:299",
                   help="comma list of model:size (default googlenet:224,inception_v3:299)")
    p.add_argument("--kernels", default="eager,inductor", help="kernel modes of the plans")
    p.add_argument("--cost-kernels", default="eager", help="kernel mode(s) of the profile used for costs")
    p.add_argument("--sweep", default="2x2,3x3,4x4,6x6,8x8", help="intra-GPU window x streams tried with eager kernels")
    p.add_argument("--sweep-inductor", default="best",
                   help="window x streams tried with Inductor kernels ('best': the fastest eager one)")
    p.add_argument("--device", default="cuda:0", help="cuda:0 (cpu: a dry run of the flow, wall-clock times)")
    p.add_argument("--naive-streams", type=int, default=4)
    p.add_argument("--inductor-plans", default="all", help="with Inductor kernels run only these: seq,intra,naive")
    p.add_argument("--groups", type=int, default=16, help="concurrent groups the profiler measures")
    p.add_argument("--no-compile-baseline", action="store_true")
    p.add_argument("--ablation", action="store_true",
                   help="also run: eager + channels_last (+ cuDNN benchmark), Inductor without channels_last, "
                        "the first intra plan with stage barriers")
    p.add_argument("--priority", action="store_true",
                   help="also run the Inductor intra plan with stream 0 (costliest branches) at high priority")
    p.add_argument("--point-budget-s", type=float, default=1e9,
                   help="skip the rest of a point's variants after this many seconds on it")
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--inner", type=int, default=5)
    p.add_argument("--budget-s", type=float, default=1e9, help="skip what starts after this many seconds")
    p.add_argument("--out", default="benchmarks/results", help="output folder")
    args = p.parse_args(argv)
    args.kernels = [k for k in args.kernels.split(",") if k]
    args.cost_kernels = [k for k in args.cost_kernels.split(",") if k]
    args.sweep = [tuple(int(v) for v in s.split("x")) for s in args.sweep.split(",") if s]
    args.sweep_inductor = [s if s == "best" else tuple(int(v) for v in s.split("x"))
                           for s in args.sweep_inductor.split(",") if s]
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/runtime.py needs a CUDA GPU (or --device cpu for a dry run)", file=sys.stderr)
        return 2
    set_precision(args.tf32)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    rows: list[dict] = []
    skipped = []
    with open(out / "runtime.jsonl", "a") as fh:
        for pt in args.points.split(","):
            name, size = pt.split(":")
            if time.perf_counter() - t_start > args.budget_s:
                skipped.append(pt)
                continue
            try:
                run_point(name, int(size), args, fh, rows, t_start)
            except Exception as e:
                log(f"{pt} failed: {type(e).__name__}: {e}")
                traceback.print_exc(file=sys.stderr)
                rows.append({"model": name, "image_size": int(size), "variant": "point",
                             "error": f"{type(e).__name__}: {str(e)[:200]}"})
            torch._dynamo.reset()
            torch.cuda.empty_cache()
    keys = sorted({k for r in rows for k in r if not isinstance(r[k], (dict, list))})
    with open(out / "runtime.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if skipped:
        print(f"skipped (time budget): {', '.join(skipped)}")
    dname = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(f"device: {dname}, torch {torch.__version__}, "
          f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, total {time.perf_counter() - t_start:.0f}s")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
