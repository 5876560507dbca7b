"""GPU fault cases of ``hios run``: each must end cleanly, with the exit code and message it promises.

Cases (each runs the real CLI in a subprocess, with ``--cost h100`` so that nothing is profiled, and
``--kernels eager`` so that nothing waits for Inductor):
  * ``oom-capped`` — out of memory while compiling/running a plan: the process may use only
    ``--cap-gib`` GiB of the GPU (``torch.cuda.set_per_process_memory_fraction``, set by a small
    wrapper before ``hios.cli.main``), and runs inception_v3 at ``--cap-size`` px;
    expected: exit 2, the last stderr line names the model, the size and the device;
  * ``oom-real`` — the same without a cap: nasnetalarge at ``--oom-size`` px (default 4096) on the
    whole GPU (the capture before it runs on the CPU and takes minutes and host memory at this size;
    skipped with ``--skip-real``); expected: exit 2 with that line — or exit 0 if the GPU holds it,
    which the table then says;
  * ``capture-fallback`` — a model that reads a value back to the host inside ``forward``
    (``hios.testing.fault_models:host_sync``): the CUDA-graph capture fails and the run falls back
    to stream mode; expected: exit 0 and a warning line naming the capture failure;
  * ``check-fails`` — a model that adds fresh noise on every call (``hios.testing.fault_models:noisy``):
    ``--check`` must fail; expected: exit 1 and a stdout line ``check: ... FAILED`` with the difference.

Prints a table (case, expected, exit code, verdict, key stderr/stdout line) and writes
``gpu_faults.csv`` to ``$OUT`` when set, else to ``benchmarks/results/``.

Usage (on a GPU machine): PYTHONPATH=src python3 benchmarks/gpu_faults.py [--device cuda:0] [--skip-real]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = ("import sys, torch; torch.cuda.set_per_process_memory_fraction({frac}, {index}); "
           "from hios.cli import main; sys.exit(main(sys.argv[1:]))")


def cases(a) -> list[dict]:
    run = ["run", "--cost", "h100", "--kernels", "eager", "--no-baselines", "--warmup", "1", "--repeats", "3", "--inner", "1",
           "--devices", a.device]
    out = []
    try:
        import torch
        total = torch.cuda.get_device_properties(torch.device(a.device)).total_memory
        frac = min(1.0, a.cap_gib * 2 ** 30 / total)
    except Exception:  # no GPU here: the case will show the CLI's own refusal
        frac = 0.05
    index = a.device.split(":")[1] if ":" in a.device else 0
    out.append({"case": "oom-capped", "expect": "exit 2, last line names model/size/device",
                "argv": [sys.executable, "-c", WRAPPER.format(frac=frac, index=index)]
                + run + ["--model", "inception_v3", "--image-size", str(a.cap_size)],
                "ok": lambda r: r.returncode == 2 and _oom_line_ok(r, "inception_v3", a.cap_size, a.device)})
    if not a.skip_real:
        out.append({"case": "oom-real", "expect": "exit 2, last line names model/size/device (or 0 if it fits)",
                    "argv": [sys.executable, "-m", "hios"] + run + ["--model", "nasnetalarge", "--image-size",
                                                                    str(a.oom_size)],
                    "ok": lambda r: r.returncode == 0 or (r.returncode == 2 and _oom_line_ok(r, "nasnetalarge",
                                                                                               a.oom_size, a.device))})
    out.append({"case": "capture-fallback", "expect": "exit 0, warning: CUDA-graph capture failed",
                "argv": [sys.executable, "-m", "hios"] + run + ["--model", "hios.testing.fault_models:host_sync",
                                                                "--image-size", "64", "--mode", "graph"],
                "ok": lambda r: r.returncode == 0 and "CUDA-graph capture failed" in r.stderr})
    out.append({"case": "check-fails", "expect": "exit 1, check ... FAILED with the difference",
                "argv": [sys.executable, "-m", "hios"] + run + ["--model", "hios.testing.fault_models:noisy",
                                                                "--image-size", "64"],
                "ok": lambda r: r.returncode == 1 and "FAILED" in r.stdout and "max |out - model(x)|" in r.stdout})
    return out


def _oom_line_ok(r, model: str, size: int, device: str) -> bool:
    last = (r.stderr.strip().splitlines() or [""])[-1]
    return (last.startswith("hios run: error: out of memory") and model in last and f"{size} px" in last
            and device in last and "Traceback" not in r.stderr)


def key_line(r, case: str) -> str:
    if case == "check-fails":
        return next((ln for ln in r.stdout.splitlines() if ln.startswith("check:")), r.stdout.strip()[:200])
    if case == "capture-fallback":
        lines = [ln for ln in r.stderr.splitlines() if "warning" in ln]
        return lines[0] if lines else "(no warning line)"
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--cap-gib", type=float, default=2.0, help="GPU memory cap of the oom-capped case (GiB)")
    p.add_argument("--cap-size", type=int, default=1024, help="inception_v3 image size of the oom-capped case")
    p.add_argument("--oom-size", type=int, default=4096, help="nasnetalarge image size of the oom-real case")
    p.add_argument("--skip-real", action="store_true", help="skip the oom-real case (minutes of CPU capture)")
    p.add_argument("--timeout", type=float, default=540, help="seconds per case")
    a = p.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    rows = []
    for c in cases(a):
        t0 = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {c['case']}: {' '.join(c['argv'][3 if c['argv'][1] == '-c' else 1:])}",
              file=sys.stderr, flush=True)
        try:
            r = subprocess.run(c["argv"], capture_output=True, text=True, env=env, timeout=a.timeout, cwd=ROOT)
            code, ok, line = r.returncode, bool(c["ok"](r)), key_line(r, c["case"])
        except subprocess.TimeoutExpired:
            code, ok, line = "timeout", False, f"no answer in {a.timeout:g} s"
        rows.append({"case": c["case"], "expected": c["expect"], "exit_code": code, "ok": ok,
                     "seconds": round(time.perf_counter() - t0, 1), "line": line[:400]})
    w = max(len(r["case"]) for r in rows)
    print(f"{'case':{w}}  exit  ok     s  key line")
    for r in rows:
        print(f"{r['case']:{w}}  {str(r['exit_code']):>4}  {'yes' if r['ok'] else 'NO':3}  {r['seconds']:5.1f}  {r['line']}")
    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "gpu_faults.csv"
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["date", "device", *rows[0].keys()])
        wr.writeheader()
        stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        for r in rows:
            wr.writerow({"date": stamp, "device": a.device, **r})
    print(f"wrote {path}", file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
