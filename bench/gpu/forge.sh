#!/usr/bin/env bash
# One device call for FORGE: its GPU tests (kernel, optimizer, capture, runtime, the claim's
# GPU phases at small sizes), the claim's full profile (each optimizer eager and captured in a
# CUDA graph, timed interleaved; T=512 in 5 processes; same-run ceilings: copy_ and a bf16
# GEMM), the host overhead bench (per launch, and host issue vs GPU time per layer for each
# method) and a profiler table of one backward + step.
# Run from the repo root on the GPU machine:  bash bench/gpu/forge.sh   (results under $OUT)
# PARTS picks what runs (default "tests claim": with the benches it would not fit one 600 s
# device call): the claim alone  PARTS=claim bash bench/gpu/forge.sh ; the benches
# PARTS=bench bash bench/gpu/forge.sh
# Limits: tests TEST_LIMIT_S (150) + REPL_TEST_LIMIT_S (90), claim CLAIM_LIMIT_S (300; about
# 4 minutes expected on an H200: 4 of its 5 T=512 measurements are processes it spawns),
# benches 100 + 40 + 40 s.
set -o pipefail
OUT=${OUT:-/tmp/forge_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=. TRITON_PRINT_AUTOTUNING=1
PARTS=${PARTS:-tests claim}
# shellcheck source=bench/gpu/lib.sh
source "$(dirname "$0")/lib.sh"
gpu_env

if [[ " $PARTS " == *" tests "* ]]; then
  echo "=== GPU tests ==="
  # SIGINT first: pytest stops and prints its summary
  timeout -s INT -k 10 "${TEST_LIMIT_S:-150}" python3 -m pytest tests/kernels/test_forge_*.py \
    tests/kernels/test_runtime*.py -m gpu -q -rA --durations=15 -p no:cacheprovider 2>&1 \
    | tee "$OUT/gpu_tests.txt"
  # tests/replication/conftest.py imports the service's fixtures (fastapi, absent from the GPU
  # image); the claim's GPU tests use none of them
  timeout -s INT -k 10 "${REPL_TEST_LIMIT_S:-90}" python3 -m pytest --noconftest -q -rA \
    -p no:cacheprovider tests/replication/test_claim_forge_gpu.py 2>&1 | tee -a "$OUT/gpu_tests.txt"
fi

if [[ " $PARTS " == *" claim "* ]]; then
  echo "=== claim full ==="
  run_claim forge "${CLAIM_LIMIT_S:-300}"
  grep "::phase::\|Error\|error" "$OUT/claim_log.txt" | tail -20
  show_result "$OUT/forge_full.json"
  grep -E "^tuned|^    [0-9]|^speed|^memory|^kernel" "$OUT/claim_log.txt" | cut -c1-300
fi

if [[ " $PARTS " == *" bench "* ]]; then
  echo "=== benches ==="
  timeout 100 python3 -m bench.kernels.forge --overhead 2>&1 | tee "$OUT/overhead.txt"
  # The same host path on CPU tensors with the launch stubbed: compares this host with the CPU
  # the work was measured on (no GPU there).
  timeout 40 python3 -m bench.kernels.forge --host-cpu 2>&1 | tee "$OUT/host_cpu.txt"
  timeout 40 python3 -m bench.kernels.forge --profile --tokens 512 2>&1 | tee "$OUT/profile.txt" \
    | grep -E "^---|forge_linear|Self CUDA time|Self CPU time|adamw|nvjet" | cut -c1-120
fi
