"""The repository's GPU check: every executor cell equals ``model(x)`` on a GPU, in one bounded call.

Run it on a machine with one GPU, from the repository root, before resolving any change that
touches the runtime, the front end or a lever:

    PYTHONPATH=src python benchmarks/gpu_check.py --out $OUT        # at most 9 minutes, then a table

Cells (each one a check of the output against ``model(x)`` computed on the same GPU, TF32, within
hios's TF32 tolerance, on the example input and on a fresh random one):

* every zoo model at its usual size (googlenet 224, inception_v3 299, squeezenet1_1 224, randwire
  224, nasnetalarge 331), planned with HIOS-LP on the analytic H200 model
  × levers {defaults, none, fuse_epilogues, merge_segments, concat_inplace, priority=critical,
  cudnn_benchmark, all}
  (``defaults`` is ``fuse_epilogues`` alone, so it is built once and reported as both)
  × mode {graph: the CUDA-graph replay, stream: the same built segments issued on their streams
  without the graph} × devices {``cuda:0``, ``cuda:0,cuda:0``}.  These modules are built
  unchecked (``run_plan``), so that a wrong build shows here instead of being repaired;
* ``hios.optimize`` then ``hios.load`` of the saved plan (every zoo model), checked by hios
  itself and again here, with any warning they gave;
* the README's flow (``hios optimize`` inception_v3 2048 px on 2 GPUs with the committed H200 profile,
  then ``hios run plan.json --tf32 --devices cuda:0,cuda:0`` as written), ``hios run --trace``
  (:mod:`benchmarks.trace_check`: the trace measures the graph replay, within issue 20's bars),
  ``hios run --choose 2``, the distributed backend with NCCL on one rank (``torchrun``), and the
  unit tests that need a GPU (``pytest -k 'gpu or cuda'``; a skip there counts as a failure).

Jobs run in spawned worker processes sharing the GPU (compilation is CPU-bound; nothing is timed
here).  The whole check has a wall-clock budget: cells not finished by then are reported as such,
never as passed.  The table is printed last and written as CSV and Markdown under ``--out``.
Exit status: 0 when every cell ran and passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import warnings

MODELS = [("nasnetalarge", 331), ("randwire", 224), ("inception_v3", 299), ("googlenet", 224),
          ("squeezenet1_1", 224)]
LEVERS = ["defaults", "none", "merge_segments", "concat_inplace", "priority", "cudnn_benchmark", "all"]
DEVICES = ["cuda:0", "cuda:0,cuda:0"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _levers(name: str):
    from hios.program.levers import Levers
    return {"defaults": Levers(), "none": Levers(fuse_epilogues=False),
            "merge_segments": Levers(fuse_epilogues=False, merge_segments=True),
            "concat_inplace": Levers(fuse_epilogues=False, concat_inplace=True),
            "priority": Levers(fuse_epilogues=False, priority="critical"),
            "cudnn_benchmark": Levers(cudnn_benchmark=True),
            "all": Levers(merge_segments=True, fuse_epilogues=True, concat_inplace=True, priority="critical",
                          cudnn_benchmark=True)}[name]


def _worker_init(threads: int) -> None:
    """Each worker gets its share of the cores: without it, a dozen processes each running
    ``cpu_count`` intra-op threads oversubscribe the machine and the CPU-side capture of the
    largest model took minutes instead of seconds (H200 machine, 16 cores, 2026-12-03)."""
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # the workers are the parallelism
    os.environ["OMP_NUM_THREADS"] = str(threads)
    warnings.simplefilter("ignore")
    import torch
    torch.set_num_threads(threads)


def _setup(model_name: str, size: int):
    import torch

    from hios.frontend.zoo import build
    from hios.cost.timing import set_precision
    set_precision(True)
    model, (x,) = build(model_name, size)
    ref_model = __import__("copy").deepcopy(model).cuda().eval()
    x2 = torch.randn(x.shape, generator=torch.Generator().manual_seed(12345))
    with torch.no_grad():
        refs = [ref_model(t.cuda()) for t in (x, x2)]
    return model, x, x2, refs


def _rel(out, ref) -> float:
    from hios.runtime.measure.bench import compare_outputs
    return compare_outputs(out, ref, 1.0).rel


def job_levers(model_name: str, size: int, devices: str, levers: list[str] = LEVERS) -> list[dict]:
    """Every lever set (of ``levers``) × mode for one model on one device list."""
    import torch

    from hios.options import CostOptions, RunOptions, ScheduleOptions
    from hios.pipeline import plan_model, run_plan
    t0 = time.time()
    model, x, x2, refs = _setup(model_name, size)
    ndev = len(devices.split(","))
    planned = plan_model(model, (x,), schedule=ScheduleOptions(gpus=ndev), cost=CostOptions(source="h200", tf32=True))
    setup_s = round(time.time() - t0, 1)
    rows = []
    for lname in levers:
        t0 = time.time()
        row = {"cell": f"{model_name} {size}", "levers": lname, "devices": devices, "setup_s": setup_s}
        try:
            rt = run_plan(model, (x,), planned.plan, RunOptions(devices=devices, tf32=True, levers=_levers(lname)),
                          captured=planned.captured)
            with torch.no_grad():
                row["graph"] = max(_rel(rt(t.cuda()), r) for t, r in zip((x, x2), refs)) if rt.mode == "graph" else None
                row["stream"] = max(_rel(rt.issue(t.cuda()), r) for t, r in zip((x, x2), refs))
            row["note"] = (f"{rt.program.summary()['segments']} segments" +
                           (f"; graph mode fell back: {rt.fallback_reason}" if rt.fallback_reason else ""))
            del rt
        except Exception as e:  # a failing cell is reported, never hidden
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        torch.cuda.empty_cache()
    return rows


def job_front_door(model_name: str, size: int) -> list[dict]:
    """``hios.optimize`` (checked by hios) and ``hios.load`` of its saved plan."""
    import torch

    import hios
    model, x, x2, refs = _setup(model_name, size)
    rows = []
    path = os.path.join(tempfile.mkdtemp(), "plan.json")
    for what in ("hios.optimize", "hios.load"):
        t0 = time.time()
        row = {"cell": f"{model_name} {size}", "levers": "defaults", "devices": "cuda:0", "mode": what}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if what == "hios.optimize":
                    fast = hios.optimize(model, x, gpus=1, cost="h200", tf32=True)
                    fast.save(path)
                else:
                    fast = hios.load(path, model, x, tf32=True)
            with torch.no_grad():
                row["graph"] = max(_rel(fast(t.cuda()), r) for t, r in zip((x, x2), refs))
            notes = [str(w.message) for w in caught if "hios" in str(w.message)]
            row["note"] = "; ".join(n[:200] for n in notes) or "no warning"
        except Exception as e:
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
    return rows


def _junit_counts(path: str) -> dict[str, int]:
    """tests / failures / errors / skipped of a pytest ``--junitxml`` report (empty when unreadable)."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    return {} if suite is None else {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def job_cli(name: str, commands: list[list[str]], timeout: float, log: str | None = None) -> list[dict]:
    """Commands run in order; the cell passes when each exits 0 and the last one's check passed
    (for pytest: every selected test ran and passed, read from its JUnit report).  With ``log``,
    every command's whole output is written there."""
    t0 = time.time()
    row = {"cell": name, "levers": "defaults", "devices": "", "mode": "cli"}
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH"))
                                                     if p), PYTHONUNBUFFERED="1")
    out, whole = "", []
    junit = os.path.join(tempfile.mkdtemp(), "junit.xml")
    commands = [c + [f"--junitxml={junit}"] if "pytest" in c else c for c in commands]
    for cmd in commands:
        left = timeout - (time.time() - t0)
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            row["error"] = f"timed out after {timeout:.0f} s: {' '.join(cmd[:6])}"
            break
        out = p.stdout + p.stderr
        whole.append(f"$ {' '.join(cmd)}\n{out}")
        if p.returncode != 0:
            last = [ln for ln in out.splitlines() if ln.strip() and "%|" not in ln][-1:] or ["(no output)"]
            row["error"] = f"exit {p.returncode}: {last[0][:200]}"
            break
    else:
        if "pytest" in commands[-1]:  # the GPU-only tests: every one must run (a skip is not a pass)
            n = _junit_counts(junit)
            row["note"] = (f"{n['tests']} tests: {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped"
                           if n else "no pytest report")
            row["ok_cli"] = bool(n) and n["tests"] > 0 and n["failures"] + n["errors"] + n["skipped"] == 0
        else:
            checks = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("check:")]
            row["note"] = checks[-1][:200] if checks else "no check line"
            row["ok_cli"] = bool(checks) and all(c.endswith("OK") for c in checks)
    row["seconds"] = round(time.time() - t0, 1)
    if log:
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w") as f:
            f.write("\n".join(whole))
    return [row]


def _cli_jobs(tmp: str, logs: str) -> list[tuple]:
    py = sys.executable
    plan = os.path.join(tmp, "plan.json")
    profile = "benchmarks/profiles/inception_v3-2048-inductor-h200.json"
    cells = [
        ("README flow (inception_v3 2048, 2 logical devices)",
         [[py, "-m", "hios", "optimize", "--model", "inception_v3", "--image-size", "2048", "--gpus", "2", "--algo",
           "all", "--cost", profile, "--tf32", "-o", plan],
          [py, "-m", "hios", "run", plan, "--tf32", "--devices", "cuda:0,cuda:0"]], 420),
        ("hios run --trace (googlenet 224: replay attributed, bars of benchmarks/trace_check.py)",
         [[py, "benchmarks/trace_check.py", "--model", "googlenet", "--image-size", "224", "--trace",
           os.path.join(tmp, "trace.json")]], 300),
        ("hios run --choose 2 (inception_v3 299)",
         [[py, "-m", "hios", "run", "--model", "inception_v3", "--image-size", "299", "--gpus", "1", "--tf32",
           "--cost", "h200", "--no-baselines", "--choose", "2"]], 400),
        ("distributed, NCCL, 1 rank (googlenet 224)",
         [[py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "hios", "run",
           "--backend", "distributed", "--model", "googlenet", "--image-size", "224", "--cost", "h200", "--tf32",
           "--no-baselines"]], 300),
        ("GPU-only unit tests (pytest -k 'gpu or cuda')",
         [[py, "-m", "pytest", "-p", "no:cacheprovider", "-k", "gpu or cuda", "tests/test_levers.py",
           "tests/test_verify.py", "tests/test_runtime.py", "tests/test_trace.py"]], 300),
    ]
    return [(name, cmds, limit, os.path.join(logs, f"cli{i}.log")) for i, (name, cmds, limit) in enumerate(cells)]


def _verdict(row: dict, tol: float) -> str:
    if "error" in row:
        return "FAIL"
    if "ok_cli" in row:
        return "ok" if row["ok_cli"] else "FAIL"
    vals = [row.get(k) for k in ("graph", "stream") if row.get(k) is not None]
    if not vals:
        return "FAIL"
    return "ok" if all(v <= tol for v in vals) else "FAIL"


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1e}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=540, help="wall-clock budget of the whole check (default 540)")
    ap.add_argument("--workers", type=int, default=min(14, max(2, (os.cpu_count() or 4) - 2)))
    ap.add_argument("--out", default=os.environ.get("OUT", "out"), help="folder for gpu_check.csv / .md")
    ap.add_argument("--models", default=",".join(m for m, _ in MODELS), help="comma list of zoo models")
    ap.add_argument("--no-extra", action="store_true", help="only the model × lever × mode × devices cells")
    args = ap.parse_args(argv)
    import torch

    from hios.runtime.measure.bench import RTOL_TF32
    if not torch.cuda.is_available():
        print("gpu_check: error: needs a CUDA GPU", file=sys.stderr)
        return 2
    t_start = time.time()
    device = torch.cuda.get_device_name(0)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="hios-gpu-check-")
    want = [m for m in args.models.split(",") if m]
    jobs: list[tuple[str, tuple, list[dict]]] = []  # (function, args, placeholder rows)
    if not args.no_extra:
        readme, *rest = _cli_jobs(tmp, os.path.join(args.out, "logs"))
        jobs.append(("job_cli", readme, [{"cell": readme[0], "levers": "defaults", "devices": "", "mode": "cli"}]))
    for name, size in MODELS:
        if name in want:
            for d in DEVICES:  # the largest model: one job per lever set, so that they run side by side
                for group in ([[lv] for lv in LEVERS] if name == "nasnetalarge" else [LEVERS]):
                    jobs.append(("job_levers", (name, size, d, group),
                                 [{"cell": f"{name} {size}", "levers": lv, "devices": d} for lv in group]))
    if not args.no_extra:
        for name, size in MODELS:
            jobs.append(("job_front_door", (name, size),
                         [{"cell": f"{name} {size}", "levers": "defaults", "devices": "cuda:0", "mode": m}
                          for m in ("hios.optimize", "hios.load")]))
        for cli in rest:
            jobs.append(("job_cli", cli, [{"cell": cli[0], "levers": "defaults", "devices": "", "mode": "cli"}]))
    print(f"gpu_check: {device}, torch {torch.__version__}, {len(jobs)} jobs on {args.workers} workers, "
          f"budget {args.budget_s:.0f} s", flush=True)
    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 2) // args.workers)
    pool = ctx.Pool(args.workers, initializer=_worker_init, initargs=(threads,), maxtasksperchild=1)
    pending = [(pool.apply_async(globals()[fn], a), rows) for fn, a, rows in jobs]
    results: list[dict] = []
    deadline = t_start + args.budget_s
    for res, rows in pending:
        try:
            got = res.get(timeout=max(0.1, deadline - time.time()))
            results += got
            for r in got:
                print(f"  {_verdict(r, RTOL_TF32):4s} {r['cell']} | {r.get('levers')} | {r.get('devices')} | "
                      f"{r.get('mode', 'graph+stream')} ({r.get('seconds')} s"
                      + (f", setup {r['setup_s']} s" if "setup_s" in r else "") + ")", flush=True)
        except mp.TimeoutError:
            results += [dict(r, error="not finished within the budget") for r in rows]
        except Exception as e:
            results += [dict(r, error=f"job failed: {type(e).__name__}: {e}") for r in rows]
    pool.terminate()
    # -- the table (defaults = fuse_epilogues alone: reported under both names)
    table = []
    for r in results:
        names = ["defaults", "fuse_epilogues"] if r.get("levers") == "defaults" and "mode" not in r else [r.get("levers")]
        for lname in names:
            table.append({"cell": r["cell"], "levers": lname, "devices": r.get("devices", ""),
                          "mode": r.get("mode", ""), "graph": r.get("graph"), "stream": r.get("stream"),
                          "verdict": _verdict(r, RTOL_TF32), "seconds": r.get("seconds", ""),
                          "note": r.get("error") or r.get("note", "")})
    with open(os.path.join(args.out, "gpu_check.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["date", "device", "torch", *table[0].keys()])
        w.writeheader()
        for row in table:
            w.writerow({"date": stamp, "device": device, "torch": torch.__version__, **row})
    head = "| cell | levers | devices | graph rel. err | stream rel. err | verdict | note |\n|---|---|---|---|---|---|---|"
    lines = [f"| {r['cell']} | {r['levers']} | {r['devices'] or '-'} | "
             f"{_fmt(r['graph']) if not r['mode'] or r['mode'] == 'hios.optimize' or r['mode'] == 'hios.load' else '-'} "
             f"| {_fmt(r['stream'])} | {r['verdict']} | {(r['mode'] + ': ') if r['mode'] else ''}{r['note']} |"
             for r in table]
    ok = sum(r["verdict"] == "ok" for r in table)
    summary = (f"GPU check {stamp} on {device} (torch {torch.__version__}, TF32, tolerance {RTOL_TF32:g} of "
               f"max |model(x)|): {ok}/{len(table)} cells ok in {time.time() - t_start:.0f} s")
    with open(os.path.join(args.out, "gpu_check.md"), "w") as f:
        f.write(summary + "\n\n" + head + "\n" + "\n".join(lines) + "\n")
    print(head)
    print("\n".join(lines))
    print(summary)
    return 0 if ok == len(table) else 1


if __name__ == "__main__":
    sys.exit(main())
