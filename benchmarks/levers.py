"""Levers benchmark (issue 13): each way of shortening the critical path on and off, in one run.

For every point (model, image size), batch 1, one GPU, TF32 convolutions (PyTorch's default;
matmul TF32 off):
  * baselines: torch.compile(mode="reduce-overhead") without and with freezing
    (``torch._inductor.config.freezing``), timed per call (CUDA events);
  * one plan, HIOS-LP on one GPU (window 4, streams 4) from analytic H200 costs, run as one CUDA
    graph with Inductor segments, for each lever setting: ``base`` (no lever, channels_last),
    ``nchw`` (layout lever off), ``merge``, ``fuse``, ``concat``, ``prio-s0``, ``prio-crit``
    and ``all`` (every lever), and one lever on top of the defaults (``fuse+merge``,
    ``fuse+concat``, ``fuse+prio-crit``);
  * per variant: output checked against model(x), kernels per call and summed kernel time
    (torch.profiler over replays), segments and events, the predicted critical path
    (analytic costs with the levers applied, :func:`hios.program.levers.lever_costs`), and the
    median replay and call latency (CUDA events; 30 samples x 5 back-to-back replays);
  * once per run, a probe of whether a CUDA graph keeps stream priorities (:func:`priority_probe`).
Results: table on stdout (last), ``levers.csv`` and ``levers.jsonl`` under --out.

Usage (GPU): PYTHONPATH=src python benchmarks/levers.py --points googlenet:224 --out $OUT
Points: googlenet:224, inception_v3:299, inception_v3:1280, nasnetalarge:331 (the issue's four);
any zoo model:size (e.g. randwire:224).
Once --budget-s seconds have passed, the remaining variants and points are skipped and listed.
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
from dataclasses import replace
from pathlib import Path

import torch

from hios.bounds import critical_path
from hios.frontend import zoo
from hios.cost.analytic import costed_graph
from hios.frontend.capture import capture
from hios.machine import Machine
from hios.options import TimingOptions
from hios.runtime.measure.bench import RTOL_TF32, compare_outputs, time_call, time_replay
from hios.runtime.local.executor import HiosModule
from hios.program.levers import Levers, lever_costs
from hios.program.priority import critical_operators
from hios.program.segmenting import stream_program
from hios.schedulers import schedule

POINTS = "googlenet:224,inception_v3:299,inception_v3:1280,nasnetalarge:331"
VARIANTS = ("base", "all", "fuse", "concat", "prio-crit", "nchw", "prio-s0", "merge",
            "fuse+merge", "fuse+concat", "fuse+prio-crit")
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def levers_of(variant: str, critical: frozenset) -> tuple[Levers, bool]:
    """(levers, channels_last) of a variant: one lever on against all off (``base``), and all on."""
    off = Levers(merge_segments=False, fuse_epilogues=False, concat_inplace=False, priority="none")
    return {
        "base": (off, True),
        "nchw": (off, False),
        "merge": (replace(off, merge_segments=True), True),
        "fuse": (replace(off, fuse_epilogues=True), True),
        "concat": (replace(off, concat_inplace=True), True),
        "prio-s0": (replace(off, priority="stream0"), True),
        "prio-crit": (replace(off, priority="critical", critical=critical), True),
        "all": (Levers(True, True, True, "critical", critical), True),
        # one lever on top of the defaults (fused epilogues on): the question of issue 21
        "fuse+merge": (Levers(merge_segments=True), True),
        "fuse+concat": (Levers(concat_inplace=True), True),
        "fuse+prio-crit": (Levers(priority="critical", critical=critical), True),
    }[variant]


def kernels_per_call(fn, dev, calls: int = 3) -> tuple[float, float]:
    """(kernels, summed kernel time in ms) per call, from torch.profiler (memcpy/memset excluded)."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize(dev)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize(dev)
    ks = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA
          and not e.name.startswith(("Memcpy", "Memset", "memcpy", "memset"))]
    return len(ks) / calls, sum(e.time_range.elapsed_us() for e in ks) / calls / 1000.0


def baseline(model, x, ref, dev, s, freezing: bool) -> dict:
    import torch._inductor.config as icfg
    t = time.perf_counter()
    old = icfg.freezing
    torch._dynamo.reset()
    try:
        icfg.freezing = freezing
        compiled = torch.compile(model, mode="reduce-overhead")
        with torch.no_grad():
            for _ in range(3):
                y = compiled(x)
            chk = compare_outputs(y, ref, RTOL_TF32)
            st = time_call(compiled, (x,), dev, s)
            k, kt = kernels_per_call(lambda: compiled(x), dev)
        return {"call_ms": st.median_ms, "spread": st.spread, "kernels": k, "kernel_ms": kt,
                "rel_err": chk.rel, "build_s": time.perf_counter() - t}
    except Exception as e:
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
    finally:
        icfg.freezing = old
        torch._dynamo.reset()


def run_variant(variant, cap, g, sched, crit, model, x, ref, dev, s) -> dict:
    levers, cl = levers_of(variant, crit)
    t = time.perf_counter()
    prog = stream_program(cap.graph, sched, memory=[str(dev)], merge=levers.merge_segments)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cuda = dev.type == "cuda"
        m = HiosModule(cap, prog, [str(dev)], "inductor" if cuda else "eager", "graph" if cuda else "stream",
                       cl and cuda, False, 2, False, levers=levers)
    rec = {"build_s": time.perf_counter() - t, "mode": m.mode, "segments": len(prog.segments),
           "events": prog.events, "streams": prog.streams[0],
           "warnings": [str(w.message)[:200] for w in caught if "hios" in str(w.message)][:3]}
    segs = [sg for sg in m._segs if sg is not None]
    fused_ops = {op for sg in segs if sg.fused for op in sg.step.ops}
    cats = [sg.step.ops[0] for sg in segs if sg.skip]  # concatenations that run nothing now
    rec.update(fused_convs=sum(sg.fused for sg in segs), inplace_cats=len(m._cats),
               fallbacks=sum(1 for sg in segs if sg.fn is sg.eager and not sg.skip))
    rec["cp_pred_ms"] = critical_path(lever_costs(g, fused_ops=fused_ops, inplace_cats=cats))
    with torch.no_grad():
        x2 = torch.randn_like(x)
        chk = compare_outputs(m(x2).clone(), model(x2), RTOL_TF32 if cuda else 1e-4)
        rec["rel_err"], rec["ok"] = chk.rel, chk.ok
        if m.mode == "graph":
            rec["replay_ms"] = time_replay(m, dev, s).median_ms
            rec["kernels"], rec["kernel_ms"] = kernels_per_call(m.replay, dev)
        st = time_call(m, (x,), dev, s)
        rec["call_ms"], rec["spread"] = st.median_ms, st.spread
    del m
    return rec


def priority_probe(dev, s) -> dict:
    """Does a CUDA graph keep stream priorities?  Finish time (ms after the start) of a chain of
    200 dependent 512x512 matrix products on stream H, beside three 4096x4096 products on stream L
    (longer than the chain), H at default or high priority, and the chain alone; issued eagerly
    and replayed from a CUDA graph.  The times come from timing events recorded inside the graph
    (``external=True`` events become event-record nodes)."""
    big = torch.randn(4096, 4096, device=dev)
    bo = torch.empty_like(big)
    a = torch.randn(512, 512, device=dev) / 32
    bufs = [torch.empty_like(a), torch.empty_like(a)]
    out: dict = {}
    for case in ("alone", "no-prio", "prio"):
        lo = torch.cuda.Stream(dev, priority=0)
        hi = torch.cuda.Stream(dev, priority=-1 if case == "prio" else 0)
        start = torch.cuda.Event(enable_timing=True, external=True)
        end = torch.cuda.Event(enable_timing=True, external=True)

        def run():
            cur = torch.cuda.current_stream(dev)
            start.record(cur)
            lo.wait_stream(cur)
            hi.wait_stream(cur)
            if case != "alone":
                with torch.cuda.stream(lo):
                    for _ in range(3):
                        torch.mm(big, big, out=bo)
            with torch.cuda.stream(hi):
                y = a
                for k in range(200):
                    y = torch.mm(y, a, out=bufs[k % 2])
                end.record(hi)
            cur.wait_stream(lo)
            cur.wait_stream(hi)

        def finish_ms(fn) -> float:
            samples = []
            for k in range(3 + max(5, s.repeats // 3)):
                fn()
                torch.cuda.synchronize(dev)
                if k >= 3:
                    samples.append(start.elapsed_time(end))
            return sorted(samples)[len(samples) // 2]

        out[f"eager-{case}"] = finish_ms(run)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                run()
            out[f"graph-{case}"] = finish_ms(graph.replay)
            del graph
        except Exception as e:
            out[f"graph-{case}-error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return out


def run_point(name: str, size: int, args, dev, s, emit) -> None:
    t = time.perf_counter()
    model, (x,) = zoo.build(name, size, 1)
    model = model.to(dev).eval()
    x = x.to(dev)
    with torch.no_grad():
        ref = model(x)
        cap = capture(model, (x,), name)
    g = costed_graph(cap, "h200")
    sched = schedule(g, Machine(1), "hios-lp", window=4, streams=4)
    crit = critical_operators(g)
    base = {"model": name, "image_size": size}
    emit({**base, "variant": "plan", "ops": len(g.ops), "critical_ops": len(crit),
          "cp_pred_ms": critical_path(g), "build_s": time.perf_counter() - t})
    for freezing in args.freezing:
        if time.perf_counter() - T0 > args.budget_s:
            emit({**base, "variant": f"torch.compile-ro{'-freeze' if freezing else ''}", "error": "skipped: budget"})
            continue
        emit({**base, "variant": f"torch.compile-ro{'-freeze' if freezing else ''}",
              **baseline(model, x, ref, dev, s, freezing)})
    for v in args.variants:
        if time.perf_counter() - T0 > args.budget_s:
            emit({**base, "variant": v, "error": "skipped: budget"})
            continue
        try:
            emit({**base, "variant": v, **run_variant(v, cap, g, sched, crit, model, x, ref, dev, s)})
        except Exception as e:
            traceback.print_exc()
            emit({**base, "variant": v, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"})


COLS = ["model", "image_size", "variant", "kernels", "kernel_ms", "segments", "events", "fused_convs",
        "inplace_cats", "cp_pred_ms", "replay_ms", "call_ms", "spread", "rel_err", "build_s", "error"]


def table(rows: list[dict]) -> str:
    lines = ["point | variant | kernels | kernel ms | segs | events | fused | cats | CP pred ms | replay ms | "
             "call ms | x best compile (call) | rel err"]
    best: dict = {}
    for r in rows:
        if r["variant"].startswith("torch.compile") and r.get("call_ms"):
            key = (r["model"], r["image_size"])
            best[key] = min(best.get(key, 1e9), r["call_ms"])
    f = lambda v, d=3: "" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))
    for r in rows:
        if r["variant"] == "plan":
            continue
        b = best.get((r["model"], r["image_size"]))
        ratio = f(b / r["call_ms"], 2) if b and r.get("call_ms") else ""
        lines.append(" | ".join([f"{r['model']}:{r['image_size']}", r["variant"], f(r.get("kernels"), 0),
                                 f(r.get("kernel_ms")), f(r.get("segments")), f(r.get("events")),
                                 f(r.get("fused_convs")), f(r.get("inplace_cats")), f(r.get("cp_pred_ms")),
                                 f(r.get("replay_ms"), 4), f(r.get("call_ms"), 4), ratio,
                                 f(r.get("rel_err"), 6) if "rel_err" in r else r.get("error", "")]))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", default=POINTS)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--freezing", default="0,1", help="torch.compile baselines: 0 = without, 1 = with freezing")
    p.add_argument("--no-probe", action="store_true", help="skip the stream-priority probe")
    p.add_argument("--budget-s", type=float, default=270.0)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", default="benchmarks/results/levers")
    p.add_argument("--cpu-smoke", action="store_true", help="run on the CPU: eager kernels, stream mode, no timing "
                   "of graphs, no baselines (checks the script, measures nothing worth recording)")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.freezing = [bool(int(v)) for v in args.freezing.split(",") if v]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)}")
    if not torch.cuda.is_available() and not args.cpu_smoke:
        print("levers.py needs a CUDA GPU (--cpu-smoke: a quick check of the script with eager kernels)",
              file=sys.stderr)
        return 2
    dev = torch.device("cpu" if args.cpu_smoke else "cuda:0")
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False
    s = TimingOptions(5, args.repeats, 5)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    head = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    jl = open(out / "levers.jsonl", "a")

    def emit(rec: dict) -> None:
        rec = {**head, **rec}
        rows.append(rec)
        jl.write(json.dumps(rec, default=str) + "\n")
        jl.flush()
        log(f"{rec.get('model', '')}:{rec.get('image_size', '')} {rec['variant']:<22} "
            + " ".join(f"{k}={rec[k]:.4g}" if isinstance(rec.get(k), float) else f"{k}={rec[k]}"
                       for k in ("kernels", "replay_ms", "call_ms", "rel_err", "build_s", "error") if k in rec))

    log(f"{head}")
    if args.cpu_smoke:
        args.no_probe, args.freezing = True, []
    if not args.no_probe:
        emit({"variant": "priority-probe", **priority_probe(dev, s)})
    for spec in args.points.split(","):
        name, size = spec.split(":")
        if time.perf_counter() - T0 > args.budget_s:
            emit({"model": name, "image_size": int(size), "variant": "point", "error": "skipped: budget"})
            continue
        run_point(name, int(size), args, dev, s, emit)
    with open(out / "levers.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLS, extrasaction="ignore")
        w.writeheader()
        w.writerows(r for r in rows if "model" in r)
    probe = next((r for r in rows if r["variant"] == "priority-probe"), None)
    if probe:
        print("priority probe, chain finish ms: " + ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                                              for k, v in probe.items() if k.startswith(("eager", "graph"))))
    print(table([r for r in rows if "model" in r]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
