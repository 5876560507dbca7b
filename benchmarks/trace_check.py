"""GPU check of ``hios run --trace`` on a graph-mode plan: the trace measures the CUDA-graph replay.

    PYTHONPATH=src python benchmarks/trace_check.py [--model googlenet --image-size 224] [--trace T.json]

Runs ``hios run --model M --image-size S --gpus 1 --tf32 --cost h200 --no-baselines --trace T
--json`` in a child process and prints one ``check:`` line per bar (``OK`` or ``FAILED``), then
the coverage line and the segment table's whole-call row next to the plan's replay time:

* the model's output check passed;
* the trace's segments come from the graph replay's kernels (clock ``graph_replay_kernels``);
* at least 95 % of the replay's kernel time is attributed to segments;
* per stream, the sum of its segments' measured spans is within 10 % of the stream's busy time
  (the union of its kernels), median replay;
* nothing from the profiler on stderr.

Exit status 0 when every check passed, 1 otherwise (2 on bad arguments).  ``gpu_check.py`` runs
it as one of its cells.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIN_ATTRIBUTED = 0.95
MAX_STREAM_DEVIATION = 0.10


def checks(result: dict, stderr: str) -> list[tuple[str, bool]]:
    """(text, passed) per bar, from ``hios run --json``'s result and its stderr."""
    tr = result.get("trace") or {}
    cov = tr.get("coverage") or {}
    chk = result.get("check") or {}
    rel = chk.get("relative")
    out = [(f"model output, relative error {'-' if rel is None else f'{rel:.1e}'}", bool(chk.get("ok"))),
           (f"trace measures: {tr.get('measured')}", "replay" in str(tr.get("measured")))]
    share = cov.get("attributed_share")
    out.append((f"replay kernel time attributed to segments: "
                f"{'-' if share is None else f'{100 * share:.1f} %'} (bar {100 * MIN_ATTRIBUTED:.0f} %)",
                share is not None and share >= MIN_ATTRIBUTED))
    streams = cov.get("streams") or []
    devs = [(s, abs(s["segments_over_busy"] - 1.0)) for s in streams if s.get("segments_over_busy") is not None]
    worst = max(devs, key=lambda d: d[1]) if devs else None
    out.append((("per stream, segment sum vs busy time: worst " +
                 (f"d{worst[0]['device']}s{worst[0]['stream']} {100 * (worst[0]['segments_over_busy'] - 1):+.1f} %"
                  if worst else "-") + f" (bar ±{100 * MAX_STREAM_DEVIATION:.0f} %)"),
                worst is not None and worst[1] <= MAX_STREAM_DEVIATION))
    chatter = [ln for ln in stderr.splitlines() if "rofiler" in ln and not ln.startswith(("graph replay", "trace:"))]
    out.append(("stderr free of profiler messages" + (f" (got: {chatter[0][:120]})" if chatter else ""), not chatter))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--trace", default=None, help="where to keep the trace (default: a temporary file)")
    ap.add_argument("--timeout", type=float, default=280)
    args = ap.parse_args(argv)
    trace = args.trace or os.path.join(tempfile.mkdtemp(prefix="hios-trace-check-"), "trace.json")
    cmd = [sys.executable, "-m", "hios", "run", "--model", args.model, "--image-size", str(args.image_size),
           "--gpus", "1", "--tf32", "--cost", "h200", "--no-baselines", "--trace", trace, "--json"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (os.path.join(ROOT, "src"),
                                                                   os.environ.get("PYTHONPATH")) if p))
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"check: hios run --trace finished within {args.timeout:.0f} s FAILED")
        return 1
    if p.returncode != 0:
        last = [ln for ln in p.stderr.splitlines() if ln.strip()][-1:] or ["(no output)"]
        print(f"check: hios run --trace exited {p.returncode}: {last[0][:200]} FAILED")
        return 1
    result = json.loads(p.stdout)
    ok = True
    for text, passed in checks(result, p.stderr):
        print(f"check: {text} {'OK' if passed else 'FAILED'}")
        ok &= passed
    tr = result.get("trace") or {}
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith(("graph replay attribution", "trace:"))]
    for ln in lines:
        print(ln)
    call = next((r for r in tr.get("segments", []) if r.get("segment") == "call"), {})
    replay = (result.get("plan_replay") or {}).get("median_ms")
    print(f"whole call in the trace (replay span, median): {call.get('measured_ms')} ms; "
          f"plan's graph replay timed by CUDA events: {replay} ms; prediction {call.get('predicted_ms')} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
