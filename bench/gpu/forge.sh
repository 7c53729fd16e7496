#!/usr/bin/env bash
# One device call: FORGE's and the runtime's GPU tests (bf16, real sizes), the claim's full
# profile (same-run ceilings: copy_ and a bf16 GEMM), the host overhead bench (per launch, and
# host issue vs GPU time per layer for each method) and a profiler table of one backward + step.
# Run from the repo root on the GPU machine: bash bench/gpu/forge.sh  (writes under $OUT)
# Limits sum to 530 s (tests 150, claim 200, benches 100 + 40 + 40); the claim took ~90 s on an
# H100.
set -o pipefail
OUT=${OUT:-/tmp/forge_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=. TRITON_PRINT_AUTOTUNING=1
{
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv
  python3 -c "import torch, triton, transformers, numpy; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)"
  git rev-parse HEAD 2>/dev/null || true
} 2>&1 | tee "$OUT/env.txt"
timeout -s INT -k 10 "${TEST_LIMIT:-150}" python3 -m pytest tests/kernels/test_forge_kernel.py \
  tests/kernels/test_forge_optimizer.py tests/kernels/test_runtime.py -m gpu -q -rA \
  --durations=15 -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.txt"
timeout "${CLAIM_LIMIT:-200}" python3 -m replication.claims.forge --profile full \
  --out "$OUT/forge_full.json" > "$OUT/claim_stdout.json" 2> "$OUT/claim_log.txt"
echo "claim exit: $?"; grep "::phase::\|Error\|error" "$OUT/claim_log.txt" | tail -20
python3 - "$OUT/forge_full.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("verdict:", r["verdict"])
for c in r["checks"]:
    print(f"  {'PASS' if c['passed'] else 'FAIL'} {'G' if c['gating'] else ' '} {c['name']}: {c['measured']} {c['op']} {c['target']}")
for k, v in sorted(r["figures"].items()):
    print(f"  {k} = {v}")
PY
timeout 100 python3 -m bench.kernels.forge --overhead 2>&1 | tee "$OUT/overhead.txt"
# The same host path on CPU tensors with the launch stubbed: compares this host with the CPU
# the work was measured on (no GPU there).
timeout 40 python3 -m bench.kernels.forge --host-cpu 2>&1 | tee "$OUT/host_cpu.txt"
timeout 40 python3 -m bench.kernels.forge --profile --tokens 512 2>&1 | tee "$OUT/profile.txt" \
  | grep -E "^---|forge_linear|Self CUDA time|Self CPU time|adamw|nvjet" | cut -c1-120
grep -E "^tuned|^    [0-9]|^speed|^memory|^kernel" "$OUT/claim_log.txt" | cut -c1-200
