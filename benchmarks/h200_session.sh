#!/usr/bin/env bash
# Device calls that check the merged tree on a GPU and measure what the session's issues still miss
# (2026-12-02): the pipeline end to end (hios run, default levers, both torch.compile baselines), the
# GPU fault cases, the levers at inception_v3 1280 px and nasnetalarge 331 px, and the distributed
# backend with NCCL (1 rank).  Each step is bounded; logs and files go to $OUT.
# Usage: bash benchmarks/h200_session.sh [STEP ...]   (default: every step but levers_nasnet)
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/hios-out}; mkdir -p "$OUT"
step() { local name=$1 limit=$2; shift 2; echo "=== $name (limit ${limit}s)"; local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"; local rc=$?
  echo "--- $name: exit $rc in $((SECONDS - t0)) s"; tail -n 25 "$OUT/$name.out"; grep -v '%|' "$OUT/$name.err" | tail -n 4; }
run_googlenet() { step run_googlenet 130 python -m hios run --model googlenet --image-size 224 --cost h200 --tf32 --json
  python -c "import json,sys; r=json.load(open(sys.argv[1])); b=r.get('baselines') or {}
print('SUMMARY', r['model'], r['image_size'], 'levers', r.get('levers'), 'check', r['check']['ok'], 'plan call',
      r['plan_call']['median_ms'], 'replay', (r.get('plan_replay') or {}).get('median_ms'),
      *[f'{k} {v.get(\"median_ms\")}' for k, v in b.items()], 'predicted', r['predicted_ms'])" "$OUT/run_googlenet.out"; }
gpu_faults() { step gpu_faults 160 python benchmarks/gpu_faults.py --skip-real --timeout 70 --cap-gib 0.5 --cap-size 2048; }
levers_iv3_1280() { step levers_iv3_1280 160 python benchmarks/levers.py --points inception_v3:1280 --variants base,fuse \
    --no-probe --budget-s 140 --out "$OUT/levers"; }
levers_nasnet() { step levers_nasnet 300 python benchmarks/levers.py --points nasnetalarge:331 --variants fuse --freezing 1 \
    --no-probe --budget-s 280 --out "$OUT/levers"; }
dist_nccl() { step dist_nccl 90 python -m torch.distributed.run --standalone --nproc-per-node 1 -m hios run \
    --backend distributed --model googlenet --image-size 224 --cost h200 --tf32 --no-baselines; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python -c "import torch; print('torch', torch.__version__)"
for s in "${@:-run_googlenet gpu_faults levers_iv3_1280 dist_nccl}"; do for t in $s; do "$t"; done; done
ls -la "$OUT"
