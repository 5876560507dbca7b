"""Check the profiler against whole-model timings and the analytic model.

For each ``model:size`` (batch 1, fp32):

* whole model, BN-folded captured module: CUDA-graph replay time (eager kernels) and plain eager
  time; the original (unfolded) model's CUDA-graph time for reference;
* ``--kernels eager`` profile: sum of operator times against the folded module's CUDA-graph time
  (target: within ±5%);
* ``--kernels inductor`` profile: sum against ``torch.compile(mode="reduce-overhead")`` of the
  folded module (the difference is the fusion lost at operator boundaries);
* the analytic model's error on the measured profile, per operator kind and whole model;
* each profile is written, slimmed, as ``<out>/<model>-<size>-<kernels>-<tag>.json``.

A short table is printed last; everything measured goes to ``<out>/profile_check-<tag>.json``.
On CPU (``--device cpu``) the same runs by wall clock, for testing the script.

Usage: ``PYTHONPATH=src python3 benchmarks/profile_check.py --models inception_v3:1280 --out DIR``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


SLIM_KEEP = ("flops", "tensor_flops", "bytes_moved", "out_shapes", "dtype", "kernels")


def slim(graph_dict: dict) -> dict:
    """Drop bulky per-operator meta (fx node lists, timing details) from a profile graph dict."""
    keep = SLIM_KEEP + ("timing",)
    d = dict(graph_dict)
    d["operators"] = [{**o, "meta": {k: v for k, v in (o.get("meta") or {}).items() if k in keep}}
                      for o in graph_dict["operators"]]
    for o in d["operators"]:
        t = o["meta"].get("timing")
        if t:
            o["meta"]["timing"] = {k: t[k] for k in ("min_ms", "max_ms", "inner") if k in t}
    meta = dict(d.get("meta") or {})
    prof = dict(meta.get("profile") or {})
    tr = prof.get("transfer") or {}
    prof["transfer"] = {k: ({kk: vv for kk, vv in v.items() if kk != "points"} if isinstance(v, dict) else v)
                        for k, v in tr.items()}
    meta["profile"] = prof
    d["meta"] = meta
    return d


def analytic_report(graph) -> dict | None:
    """Error of hios.cost.analytic (H100 datasheet spec) on a measured profile graph."""
    try:
        from hios.cost.analytic import analytic_error, costed_graph
    except ImportError:
        return None
    rep = analytic_error(graph, costed_graph(graph, "h100"))
    return {"table": rep.format(), **rep.to_dict()}


def refresh_meta(path: Path, out: Path) -> None:
    """Re-capture the model of a saved profile on this machine and copy the capture's operator meta
    (flops, tensor_flops, bytes...) into it; the operator names must match exactly."""
    from hios.formats import graph_from_dict
    from hios.frontend.capture import capture
    from hios.frontend.zoo import build
    d = json.loads(path.read_text())
    name, size = d["name"].rsplit("-", 1)
    model, ex = build(name, int(size), 1)
    cap = capture(model, ex, name=d["name"])
    ops = d["operators"]
    if [o["name"] for o in ops] != cap.graph.names:
        raise SystemExit(f"{path}: operators differ from a fresh capture; not refreshed")
    for o in ops:
        fresh = cap.graph[o["name"]].meta
        o["meta"] = {**{k: v for k, v in fresh.items() if k in SLIM_KEEP}, "timing": o["meta"].get("timing")}
    graph_from_dict(d, str(path))  # still valid
    out.write_text(json.dumps(d, indent=0) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="inception_v3:1280,inception_v3:2048,nasnetalarge:1280")
    ap.add_argument("--kernels", default="eager,inductor")
    ap.add_argument("--channels-last", default="", metavar="SPECS",
                    help="model:size list also profiled with channels_last weights/inputs")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--tag", default="h100")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--groups", type=int, default=24)
    ap.add_argument("--compile-workers", type=int, default=None)
    ap.add_argument("--no-whole-compile", action="store_true", help="skip torch.compile of the whole model")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds; later steps are skipped past it")
    ap.add_argument("--analytic", nargs="*", metavar="PROFILE",
                    help="only print the analytic model's error on these saved profiles (no timing)")
    ap.add_argument("--refresh-meta", nargs="*", metavar="PROFILE",
                    help="only re-capture these saved profiles' models here and refresh their operator meta")
    args = ap.parse_args(argv)
    if args.refresh_meta:
        for f in args.refresh_meta:
            refresh_meta(Path(f), Path(f))
            print(f"refreshed {f}")
        return 0
    if args.analytic:
        from hios.formats import load_graph
        for f in args.analytic:
            rep = analytic_report(load_graph(f))
            print(f"\n{f}\n{rep['table'] if rep else 'hios.cost.analytic missing'}")
        return 0
    t_start = time.perf_counter()

    import torch
    from hios.formats import graph_to_dict
    from hios.frontend.capture import capture
    from hios.cost.profiler import ProfileSettings, device_name, profile_detailed, resolve_device
    from hios.frontend.zoo import build
    from hios.cost.timing import cuda_graph_time, event_time, wall_time

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(args.device)
    gpu = dev.type == "cuda"
    summary = {"device": device_name(dev), "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": []}
    print(f"device {summary['device']}, torch {torch.__version__}", flush=True)

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start)

    def whole(fn, x):
        with torch.inference_mode():
            if gpu:
                return cuda_graph_time(fn, (x,), warmup=3, repeats=args.repeats, device=dev).median_ms
            return wall_time(fn, (x,), warmup=1, repeats=3).median_ms

    cl_specs = [c for c in args.channels_last.split(",") if c]
    jobs = [(spec, False) for spec in args.models.split(",") if spec] + [(spec, True) for spec in cl_specs]
    for spec, cl in jobs:
        name, size = spec.split(":")
        size = int(size)
        if left() < 30:
            print(f"skip {spec}: budget spent", flush=True)
            continue
        run = {"model": name, "size": size, "channels_last": cl}
        summary["runs"].append(run)
        t0 = time.perf_counter()
        model, ex = build(name, size, 1)
        model.to(dev)
        x = ex[0].to(dev)
        cap = capture(model, (x,), name=f"{name}-{size}")
        run["operators"] = len(cap.graph)
        run["capture_s"] = time.perf_counter() - t0
        fmt = torch.channels_last if cl else torch.contiguous_format
        gm = cap.gm.to(memory_format=fmt) if cl else cap.gm
        xin = x.contiguous(memory_format=fmt)
        run["whole_graph_folded_ms"] = whole(gm, xin)
        if not cl:
            run["whole_graph_original_ms"] = whole(model, x)
        if gpu:
            with torch.inference_mode():
                run["whole_eager_folded_ms"] = event_time(gm, (xin,), warmup=3, repeats=args.repeats,
                                                          device=dev).median_ms
            run["eager_overhead_per_op_ms"] = ((run["whole_eager_folded_ms"] - run["whole_graph_folded_ms"])
                                               / len(cap.graph))
        print(f"{spec}{' channels_last' if cl else ''}: {run['operators']} ops; whole folded graph "
              f"{run['whole_graph_folded_ms']:.3f} ms, eager {run.get('whole_eager_folded_ms', 0):.3f} ms, "
              f"original graph {run.get('whole_graph_original_ms', 0):.3f} ms", flush=True)
        for kernels in args.kernels.split(","):
            if kernels == "inductor" and left() < 100:
                print(f"skip {spec} inductor: {left():.0f} s left", flush=True)
                run["inductor_skipped"] = f"budget ({left():.0f} s left)"
                continue
            settings = ProfileSettings(repeats=args.repeats, groups=args.groups, channels_last=cl)
            try:
                res = profile_detailed(cap, str(dev), kernels, cache_dir=False, progress=False,
                                       settings=settings, compile_workers=args.compile_workers)
            except Exception:
                traceback.print_exc()
                run[kernels + "_error"] = traceback.format_exc().splitlines()[-1]
                continue
            g = res.graph
            prof = g.meta["profile"]
            r = {"sum_ms": g.total_work(), "seconds": res.seconds, "compile": prof.get("compile"),
                 "launch": prof.get("launch_overhead"), "stage_fit": prof["stage_model"]["fit"],
                 "groups": res.groups, "transfer": prof.get("transfer")}
            kinds: dict[str, float] = {}
            for op in g.ops:
                kinds[op.kind] = kinds.get(op.kind, 0.0) + op.cost
            r["per_kind_ms"] = kinds
            r["op_ms"] = {op.name: op.cost for op in g.ops}
            rep = analytic_report(g)
            if rep:
                r["analytic"] = rep["rows"]
            run[kernels] = r
            suffix = "-cl" if cl else ""
            fname = out / f"{name}-{size}-{kernels}{suffix}-{args.tag}.json"
            fname.write_text(json.dumps(slim(graph_to_dict(g)), indent=0) + "\n")
            print(f"{spec} {kernels}{suffix}: sum {r['sum_ms']:.3f} ms in {res.seconds:.1f} s; "
                  f"compile {r['compile']}; stage fit {r['stage_fit']}", flush=True)
            if kernels == "inductor" and gpu and not args.no_whole_compile:
                if left() < 80:
                    run["whole_compile_skipped"] = f"budget ({left():.0f} s left)"
                    continue
                t0 = time.perf_counter()
                gm.to(dev)
                try:
                    comp = torch.compile(gm, mode="reduce-overhead")
                    with torch.no_grad():
                        for _ in range(3):
                            comp(xin)
                        run["compile_whole_s"] = time.perf_counter() - t0
                        run["whole_compiled_ms"] = event_time(comp, (xin,), warmup=3, repeats=args.repeats,
                                                              device=dev).median_ms
                except Exception:
                    traceback.print_exc()
                    run["whole_compile_error"] = traceback.format_exc().splitlines()[-1]
                    continue
                finally:
                    torch._dynamo.reset()
                print(f"{spec}{suffix}: torch.compile reduce-overhead {run['whole_compiled_ms']:.3f} ms "
                      f"(compiled in {run['compile_whole_s']:.0f} s)", flush=True)
        del cap, gm, model
        if gpu:
            torch.cuda.empty_cache()
        (out / f"profile_check-{args.tag}.json").write_text(json.dumps(summary, indent=1) + "\n")

    print("\nmodel                 kernels   ops   sum ms  whole ms  ratio  (whole = folded CUDA graph for eager,"
          " torch.compile reduce-overhead for inductor)")
    for run in summary["runs"]:
        for kernels in ("eager", "inductor"):
            r = run.get(kernels)
            if not r:
                continue
            ref = run.get("whole_graph_folded_ms") if kernels == "eager" else run.get("whole_compiled_ms")
            ratio = f"{r['sum_ms'] / ref:.3f}" if ref else "-"
            label = f"{run['model']}:{run['size']}{' cl' if run['channels_last'] else ''}"
            print(f"{label:21s} {kernels:8s} {run['operators']:4d} {r['sum_ms']:8.3f} "
                  f"{ref if ref else float('nan'):9.3f}  {ratio}")
    print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
