#!/usr/bin/env bash
# Every paper's GPU tests in one device call, the five groups side by side (one pytest process a
# paper, one GPU: correctness only, no timing is judged in a test), then the new papers' kernel
# benches one after the other on a quiet GPU. Per-paper scripts (bench/gpu/<paper>.sh) do the
# same for one paper with its claim; this one is for a look at all of them within one lease.
#
# Run from the repo root on the GPU machine:  bash bench/gpu/all_tests.sh   (results under $OUT:
# tests_<paper>.txt, bench_<paper>.txt — at most 8 files come back from a device call)
# Limits: tests TEST_LIMIT_S (260) wall for all groups together, benches BENCH_LIMIT_S (80) each.
# BENCHES names the benches to run after the tests (default "fp4 poet chunkft"; empty: none).
set -o pipefail
OUT=${OUT:-/tmp/all_tests_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=. PITH_CACHE_DIR=/tmp/pith_cache
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

# every test file of a paper (tests/kernels/test_<paper>_*.py), so a new file is never left out;
# FP4's are named (its claim and compile tests are CPU-only); FORGE's group also runs the shared
# runtime's and the paper registry's tests
declare -A GROUPS_=(
  [forge]="tests/kernels/test_forge_*.py tests/kernels/test_runtime*.py tests/kernels/test_papers.py"
  [sage]="tests/kernels/test_sage_*.py"
  [chunkft]="tests/kernels/test_chunkft_*.py"
  [fp4]="tests/kernels/test_fp4_quantize.py tests/kernels/test_fp4_dge.py tests/kernels/test_fp4_linear.py tests/kernels/test_fp4_fast_paths.py"
  [poet]="tests/kernels/test_poet_*.py"
)
t0=$(date +%s)
pids=()
for paper in "${!GROUPS_[@]}"; do
  files=()
  for f in ${GROUPS_[$paper]}; do
    [ -f "$f" ] || { echo "no test file matches $f" >&2; exit 2; }
    files+=("$f")
  done
  # SIGINT first: pytest stops, prints its summary
  timeout -s INT -k 15 "${TEST_LIMIT_S:-260}" python3 -m pytest -q -rfE -p no:cacheprovider \
    --durations=8 "${files[@]}" > "$OUT/tests_$paper.txt" 2>&1 &
  pids+=("$!:$paper")
done
for entry in "${pids[@]}"; do
  wait "${entry%%:*}"; echo "tests ${entry#*:} rc=$?"
done
echo "=== tests: $(( $(date +%s) - t0 )) s for all groups ==="
for paper in forge sage chunkft fp4 poet; do
  printf '%-8s ' "$paper"; tail -n 1 "$OUT/tests_$paper.txt"
  grep -E "^(FAILED|ERROR) " "$OUT/tests_$paper.txt" | head -8 | cut -c1-220
done

for paper in ${BENCHES-fp4 poet chunkft}; do
  [ -f "bench/kernels/$paper.py" ] || continue
  echo "=== bench $paper ==="
  t1=$(date +%s)
  timeout "${BENCH_LIMIT_S:-80}" python3 -m "bench.kernels.$paper" > "$OUT/bench_$paper.txt" 2>&1
  echo "bench $paper rc=$? wall_s=$(( $(date +%s) - t1 ))"
  tail -n 25 "$OUT/bench_$paper.txt" | cut -c1-160
done
