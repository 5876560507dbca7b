"""Latency overhead of the distributed backend against the single-process executor, same plan.

For each model: :func:`hios.pipeline.plan_model` makes a 1-GPU plan in this process (analytic
costs, so nothing is profiled) and saves it, then the plan runs twice, each in a fresh process:

* single process: ``hios run plan.json --json --no-baselines``;
* distributed:    ``torchrun --standalone --nproc-per-node 1 -m hios run plan.json --backend distributed --json``
  (one rank: NCCL process group on a GPU, gloo on CPU; the rank's part captured as a CUDA graph).

Both report ``plan_call`` (input copy + one inference, per call, CUDA events around back-to-back
calls; wall clock on CPU) and, in graph mode, ``plan_replay`` (graph replay only).  The table
shows both and the difference.  With one GPU no value crosses ranks, so this measures the cost of
the distributed machinery itself (process group, comm stream, fork/join events), not of NCCL
transfers.  Writes ``distributed_overhead<tag>.csv`` and ``.json`` (with both runs' full results)
to ``--out``.

    python benchmarks/distributed_overhead.py --models googlenet:224,inception_v3:299
    python benchmarks/distributed_overhead.py --device cpu --models googlenet:64 --repeats 5   # quick check
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hios.errors import HiosError

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], timeout: float, env: dict) -> tuple[dict | None, str, float]:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:g} s", time.monotonic() - t0
    took = time.monotonic() - t0
    if p.returncode not in (0, 1) or "{" not in p.stdout:
        tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        return None, f"exit {p.returncode}: {tail[:300]}", took
    try:
        return json.loads(p.stdout[p.stdout.index("{"):]), "", took
    except json.JSONDecodeError as e:
        return None, f"unreadable JSON: {e}", took


def _ms(st) -> float | None:
    return st.get("median_ms") if isinstance(st, dict) and "median_ms" in st else None


def _fmt(x, nd=3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="googlenet:224,inception_v3:299", help="model:size,... (default %(default)s)")
    ap.add_argument("--algo", default="hios-lp", help="scheduling algorithm of the 1-GPU plan (default hios-lp)")
    ap.add_argument("--cost", default="h100", help="cost source of the plan (default: analytic h100)")
    ap.add_argument("--kernels", default="eager", choices=["eager", "inductor"],
                    help="segment kernels in both runs (default eager: no compile time)")
    ap.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--inner", type=int, default=5)
    ap.add_argument("--modes", default="graph", help="graph and/or stream, comma-separated (default graph; "
                                                     "stream needs no CUDA graph)")
    ap.add_argument("--timeout", type=float, default=150, help="limit of each subprocess in s (default 150)")
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    ap.add_argument("--plans", default=None, help="folder for the plan files (default: --out)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="output folder")
    args = ap.parse_args(argv)

    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1" if device == "cpu" else env.get("OMP_NUM_THREADS", "4"))
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__, "device": device,
            "device_name": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "nccl": ".".join(map(str, torch.cuda.nccl.version())) if device == "cuda" else None,
            "algo": args.algo, "cost": args.cost, "kernels": args.kernels,
            "warmup": args.warmup, "repeats": args.repeats, "inner": args.inner}
    print(f"# {info['date']}, {info['device_name']}, torch {info['torch']}"
          + (f", NCCL {info['nccl']}" if info["nccl"] else ""), file=sys.stderr)
    timing = ["--warmup", str(args.warmup), "--repeats", str(args.repeats), "--inner", str(args.inner),
              "--kernels", args.kernels]
    rows = []
    for spec in [s for s in args.models.split(",") if s]:
        name, _, size = spec.rpartition(":")
        if not size.isdigit():
            name, size = spec, "224"
        plans = Path(args.plans or out)
        plans.mkdir(parents=True, exist_ok=True)
        plan = plans / f"plan_{name.replace(':', '_').replace('.', '_')}_{size}.json"
        print(f"{name} {size}px: plan...", file=sys.stderr)
        try:
            _make_plan(name, int(size), args.algo, args.cost, plan)
        except HiosError as e:
            print(f"  plan failed: {e}", file=sys.stderr)
            rows.append({"model": name, "size": size, "error": f"plan: {e}"})
            continue
        modes = [("stream" if device == "cpu" else m) for m in args.modes.split(",") if m]
        for mode in dict.fromkeys(modes):
            rows.append(_compare(name, size, plan, mode, device, timing, args.timeout, env))
            (out / f"distributed_overhead{args.tag}.json").write_text(  # after every row: partial runs count
                json.dumps({"info": info, "rows": rows}, indent=1, default=str))
    _report(rows, info, args, out, device)
    return 0


def _make_plan(name: str, size: int, algo: str, cost: str, path: Path) -> None:
    """A 1-GPU plan of a zoo model, made by the library pipeline and saved to ``path``."""
    from hios.frontend import zoo
    from hios.options import CostOptions, ScheduleOptions
    from hios.pipeline import plan_model
    model, x = zoo.build(name, size)
    planned = plan_model(model, x, schedule=ScheduleOptions(gpus=1, algorithms=algo), cost=CostOptions(source=cost),
                         name=f"{name.split(':')[-1]}-{size}", model_info={"name": name, "image_size": size, "batch": 1})
    planned.plan.save(path)


def _compare(name, size, plan, mode, device, timing, timeout, env) -> dict:
    named = ["--model", name] if ":" in name else []  # a plan's factory is imported only when named
    single_cmd = [sys.executable, "-m", "hios", "run", str(plan), *named, "--json", "--no-baselines", "--mode", mode,
                  *timing]
    if device == "cpu":
        single_cmd += ["--devices", "cpu"]
    dist_cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                "-m", "hios", "run", str(plan), *named, "--backend", "distributed", "--device", device, "--json",
                "--mode", mode, *timing]
    print(f"{name} {size}px, {mode} mode: single process...", file=sys.stderr)
    single, err_s, t_s = _run(single_cmd, timeout, env)
    print(f"{name} {size}px, {mode} mode: distributed, 1 rank...", file=sys.stderr)
    dist, err_d, t_d = _run(dist_cmd, timeout, env)
    row = {"model": name, "size": size, "mode": mode,
           "single_call_ms": _ms((single or {}).get("plan_call")),
           "dist_call_ms": _ms((dist or {}).get("plan_call")),
           "single_replay_ms": _ms((single or {}).get("plan_replay")),
           "dist_replay_ms": _ms((dist or {}).get("plan_replay")),
           "single_mode": (single or {}).get("mode"), "dist_mode": (dist or {}).get("mode"),
           "dist_fallback": (dist or {}).get("fallback_reason"),
           "single_check": ((single or {}).get("check") or {}).get("ok"),
           "dist_check": ((dist or {}).get("check") or {}).get("ok"),
           "single_seconds": round(t_s, 1), "dist_seconds": round(t_d, 1),
           "error": "; ".join(e for e in (f"single: {err_s}" if err_s else "",
                                          f"distributed: {err_d}" if err_d else "") if e)}
    for k in ("call", "replay"):
        a, b = row[f"single_{k}_ms"], row[f"dist_{k}_ms"]
        row[f"overhead_{k}_ms"] = None if a is None or b is None else b - a
        row[f"overhead_{k}_pct"] = None if a is None or b is None or a <= 0 else 100 * (b - a) / a
    row["single_result"] = single
    row["dist_result"] = dist
    return row


def _report(rows, info, args, out, device) -> None:
    head = ["model", "px", "mode", "single call", "dist call", "overhead", "single replay", "dist replay", "overhead",
            "dist mode", "checks"]
    table = [head]
    for r in rows:
        if "single_call_ms" not in r:
            table.append([r["model"], r["size"], "", "plan failed", "", "", "", "", "", "", ""])
            continue
        table.append([r["model"], r["size"], r["mode"], _fmt(r["single_call_ms"]), _fmt(r["dist_call_ms"]),
                      f"{_fmt(r['overhead_call_ms'])} ({_fmt(r['overhead_call_pct'], 1)}%)",
                      _fmt(r["single_replay_ms"]), _fmt(r["dist_replay_ms"]),
                      f"{_fmt(r['overhead_replay_ms'])} ({_fmt(r['overhead_replay_pct'], 1)}%)",
                      str(r["dist_mode"]), f"{r['single_check']}/{r['dist_check']}"])
    w = [max(len(str(row[k])) for row in table) for k in range(len(head))]
    print(f"# {info['date']} on {info['device_name']} (torch {info['torch']}), {args.algo} 1-GPU plans, "
          f"{args.cost} costs, {args.kernels} kernels; latency ms, median of {args.repeats} x {args.inner} calls")
    for k, row in enumerate(table):
        print("  ".join(str(c).ljust(w[i]) for i, c in enumerate(row)))
        if k == 0:
            print("  ".join("-" * x for x in w))
    for r in rows:
        if r.get("error"):
            print(f"# {r['model']}: {r['error']}")
        if r.get("dist_fallback") and device == "cuda":
            print(f"# {r['model']}: distributed fallback: {r['dist_fallback']}")
    with open(out / f"distributed_overhead{args.tag}.csv", "w", newline="") as f:
        keys = sorted({k for r in rows for k in r if not k.endswith("_result")})
        wr = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(rows)


if __name__ == "__main__":
    sys.exit(main())
