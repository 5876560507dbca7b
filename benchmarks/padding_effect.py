"""What switching off Inductor's comprehensive padding costs: plan graph replay with and without it.

hios compiles every segment with ``comprehensive_padding=False`` (``compile_pool.INDUCTOR_OPTIONS``)
because PyTorch 2.11's padded strides made RandWire 224 wrong on an H200.  This measures the price:

    PYTHONPATH=src python benchmarks/padding_effect.py --out $OUT      # one GPU, about 3 minutes

Steps, per model (one spawned process per model; builds run side by side, timings one model at a
time under a lock so that no compile competes with a timed replay):

1. capture and plan the model (HIOS-LP, analytic H200 costs, TF32, default levers);
2. build the plan twice, Inductor padding off (hios's setting) and on (Inductor's default);
3. check each build against ``model(x)`` on a fresh input (relative error printed, never hidden);
4. time each build's CUDA-graph replay (CUDA events, median) in the order off, on, off, on.

Prints a table last and writes ``padding_effect.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import multiprocessing as mp
import os
import sys
import warnings

MODELS = [("googlenet", 224), ("inception_v3", 299), ("inception_v3", 1280), ("nasnetalarge", 331), ("randwire", 224)]
_LOCK = None


def _init(lock, threads: int) -> None:
    global _LOCK
    _LOCK = lock
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    warnings.simplefilter("ignore")
    import torch
    torch.set_num_threads(threads)


def measure(name: str, size: int) -> dict:
    import torch

    from hios.cost import compile_pool
    from hios.frontend.zoo import build
    from hios.options import CostOptions, RunOptions, ScheduleOptions, TimingOptions
    from hios.pipeline import plan_model, run_plan
    from hios.runtime.measure.bench import compare_outputs, time_replay
    from hios.cost.timing import set_precision
    set_precision(True)
    model, (x,) = build(name, size)
    planned = plan_model(model, (x,), schedule=ScheduleOptions(gpus=1), cost=CostOptions(source="h200", tf32=True))
    ref_model = __import__("copy").deepcopy(model).cuda().eval()
    x2 = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).cuda()
    with torch.no_grad():
        ref = ref_model(x2)
    kept = dict(compile_pool.INDUCTOR_OPTIONS)
    built, errs = {}, {}
    for label, opts in (("off", kept), ("on", {**kept, "comprehensive_padding": True})):
        compile_pool.INDUCTOR_OPTIONS.clear()
        compile_pool.INDUCTOR_OPTIONS.update(opts)
        built[label] = run_plan(model, (x,), planned.plan, RunOptions(devices="cuda:0", tf32=True),
                                captured=planned.captured)
        with torch.no_grad():
            errs[label] = compare_outputs(built[label](x2), ref, 1.0).rel
    compile_pool.INDUCTOR_OPTIONS.clear()
    compile_pool.INDUCTOR_OPTIONS.update(kept)
    times = {"off": [], "on": []}
    dev = torch.device("cuda:0")
    with _LOCK:
        for label in ("off", "on", "off", "on"):
            times[label].append(time_replay(built[label], dev, TimingOptions(warmup=20, repeats=50, inner=10)).median_ms)
    return {"model": f"{name} {size}", "off_ms": min(times["off"]), "on_ms": min(times["on"]),
            "off_spread": abs(times["off"][0] - times["off"][1]), "on_spread": abs(times["on"][0] - times["on"][1]),
            "off_err": errs["off"], "on_err": errs["on"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--models", default=",".join(f"{m}:{s}" for m, s in MODELS), help="comma list of MODEL:SIZE")
    args = ap.parse_args(argv)
    models = [(m, int(s)) for m, s in (p.split(":") for p in args.models.split(",") if p)]
    import torch
    if not torch.cuda.is_available():
        print("padding_effect: error: needs a CUDA GPU", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    ctx = mp.get_context("spawn")
    lock = ctx.Lock()
    threads = max(1, (os.cpu_count() or 2) // len(models))
    with ctx.Pool(len(models), initializer=_init, initargs=(lock, threads)) as pool:
        rows = pool.starmap(measure, models)
    device = torch.cuda.get_device_name(0)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with open(os.path.join(args.out, "padding_effect.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["date", "device", "torch", *rows[0]])
        w.writeheader()
        for r in rows:
            w.writerow({"date": stamp, "device": device, "torch": torch.__version__, **r})
    print(f"padding_effect {stamp} on {device} (torch {torch.__version__}, TF32, batch 1); replay ms = better of "
          f"two medians, spread = |difference| of the two")
    print("| model | padding off ms (spread) | padding on ms (spread) | on / off | rel. err off | rel. err on |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['off_ms']:.3f} ({r['off_spread']:.3f}) | {r['on_ms']:.3f} ({r['on_spread']:.3f}) | "
              f"{r['on_ms'] / r['off_ms']:.3f} | {r['off_err']:.1e} | {r['on_err']:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
