#!/usr/bin/env bash
# Issue 17 on nvidia-h200-x2 (two GPUs of one host): the sharded paths against one process on
# the GPUs (NCCL), then throughput and memory per GPU on 1 GPU and on 2, and the worker's
# torchrun path. One device call:
#
#   bash bench/gpu/distributed.sh        (results under $OUT: tests.txt, bench_1.json,
#                                         bench_2.json, scaling.txt, worker.txt, env.txt)
#
# Exactness: tests/kernels/test_distributed_gpu.py (FORGE tensor parallel, SAGE/SinkGD/Lion and
# the hybrids under FSDP2, data-parallel ChunkFT, each equal to the single-process run on the
# same GPU, fp32, TF32 off). Scaling: bench/kernels/distributed.py, tokens/s on 2 GPUs ÷ 1.
set -o pipefail
OUT=${OUT:-/tmp/distributed_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=. PITH_CACHE_DIR=/tmp/pith_cache NCCL_NVLS_ENABLE=0
source bench/gpu/lib.sh
gpu_env
n=$(nvidia-smi --list-gpus | wc -l)
[ "$n" -ge 2 ] || { echo "needs 2 GPUs, found $n" >&2; exit 2; }

t0=$(date +%s)
timeout -s INT -k 15 "${TEST_LIMIT_S:-240}" python3 -m pytest -q -rfE -p no:cacheprovider \
  tests/kernels/test_distributed_gpu.py > "$OUT/tests.txt" 2>&1
echo "tests rc=$? wall_s=$(( $(date +%s) - t0 ))"; tail -n 3 "$OUT/tests.txt"

for gpus in 1 2; do
  t0=$(date +%s)
  timeout "${BENCH_LIMIT_S:-150}" torchrun --standalone --nproc-per-node "$gpus" \
    -m bench.kernels.distributed --out "$OUT/bench_$gpus.json" > "$OUT/bench_$gpus.txt" 2>&1
  echo "bench gpus=$gpus rc=$? wall_s=$(( $(date +%s) - t0 ))"
done
python3 - "$OUT/bench_1.json" "$OUT/bench_2.json" <<'PY' | tee "$OUT/scaling.txt"
import json, sys
one, two = (json.load(open(p)) for p in sys.argv[1:3])
print(two["meta"])
by = {r["workload"]: r for r in one["rows"]}
for r in two["rows"]:
    base = by[r["workload"]]
    mem = ", ".join(f"{b / 2**30:.2f}" for b in r["peak_memory_bytes_per_gpu"])
    print(f"{r['workload']:<11} tokens/s 1 GPU {base['tokens_per_s']:>12,.0f}  2 GPUs "
          f"{r['tokens_per_s']:>12,.0f}  scaling {r['tokens_per_s'] / base['tokens_per_s']:.2f}x  "
          f"peak GiB per GPU [{mem}] (1 GPU: {base['peak_memory_bytes_per_gpu'][0] / 2**30:.2f})")
PY

# the worker's path: a job needing 2 GPUs runs through torchrun (selftest, two ranks)
python3 - <<'PY' | tee "$OUT/worker.txt"
from pathlib import Path
import tempfile
from replication.runner import run_claim
o = run_claim("selftest", "two_gpus", Path(tempfile.mkdtemp()), time_limit_s=120, gpus=2)
print("torchrun run:", o.error, o.result and o.result["figures"])
PY
