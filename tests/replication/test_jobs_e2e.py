"""End to end, on SQLite and PostgreSQL: a real `pith serve` (two uvicorn workers, short lease
TTL) and real `pith-worker` processes running the selftest and FORGE `smoke` claims on the CPU.

Records arrive, verify offline (`pith verify` on the bundle, `pith_core.merge`) and are in
`state.json`; workers never share a job; a SIGKILLed worker's lease expires and another worker
finishes the job; SIGTERM releases the lease; a crashing claim still yields a record; records
signed by an unregistered key or for another job are refused. Tests share one server and queue,
so each leaves no job queued behind it.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pith_core.keyfile import save_key
from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX, KeyPair, public_key_from_hex
from pith_core.merge import merge
from replication.client import JobAPIError
from tests.app.helpers import new_key
from tests.app.live import PITH, LiveServer, start_server
from tests.replication.jobs_support import (
    FORGE,
    SAGE,
    job_client,
    queue,
    record_event,
    register,
)

pytestmark = pytest.mark.slow
WORKER = Path(sys.executable).parent / "pith-worker"
TTL_S = 4


@dataclass
class Live:
    server: LiveServer
    http: httpx.Client
    key_hex: str
    workdir: Path
    committed: dict[str, Any]


@pytest.fixture(scope="module")
def live(backend: str, fresh_databases, tmp_path_factory) -> Iterator[Live]:  # type: ignore[no-untyped-def]
    workdir = tmp_path_factory.mktemp(f"jobs-{backend}")
    results = workdir / "results"
    results.mkdir()
    committed = record_event(
        new_key("gpu-evidence"),
        {
            "job_id": "job_00000000000000aa",
            "claim_id": "forge",
            "profile": "h100",
            "pith_number": FORGE,
        },
        created_at="2026-11-20T10:00:00Z",
    )
    (results / "forge.json").write_text(json.dumps([committed]))
    url = fresh_databases.new(backend, migrate=False)
    server = start_server(
        url,
        workdir,
        PITH_WORKERS="2",
        PITH_LEASE_TTL_SECONDS=str(TTL_S),
        PITH_RESULTS_DIR=str(results),
        PITH_READ_CACHE_SECONDS="0",
        PITH_RATE_LIMIT_WRITES_PER_MINUTE="0",
        PITH_RATE_LIMIT_READS_PER_MINUTE="0",
    )
    http = server.client()
    key_hex = http.get("/pith-signing-key.json").json()["public_key_hex"]
    yield Live(server, http, key_hex, workdir, committed)
    http.close()
    server.stop()


def _worker_key(live: Live, name: str) -> tuple[KeyPair, Path]:
    key = new_key(name)
    path = live.workdir / f"{name}.key"
    save_key(path, key)
    register(live.http, name, key)
    return key, path


def _start_worker(live: Live, key_path: Path, claims: str, *extra: str) -> subprocess.Popen[str]:
    cmd = [
        str(WORKER),
        "run",
        "--server",
        live.server.base_url,
        "--key",
        str(key_path),
        "--claims",
        claims,
        "--json",
        "--poll",
        "0.5",
        "--time-limit",
        "120",
        "--workdir",
        str(live.workdir / "runs"),
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PITH_GIT_COMMIT": "test-commit"},
    )


def _lines(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, list[Any]]:
    """The worker's exit status and its output: JSON lines parsed, anything else kept as text."""
    out, _ = proc.communicate(timeout=timeout)
    lines = [json.loads(ln) if ln.startswith("{") else ln for ln in out.splitlines()]
    return proc.returncode, lines


def _one(lines: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [ln for ln in lines if isinstance(ln, dict) and ln["event"] == kind]
    assert len(found) == 1, lines
    return found[0]


def _job(live: Live, job_id: str) -> dict[str, Any]:
    return live.http.get(f"/api/jobs/{job_id}").json()


def _wait_for(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(message)


def _state(live: Live, pith: str) -> dict[str, Any]:
    return live.http.get(f"/pith/{pith.rsplit(':', 1)[1]}/state.json").json()


def _page_verify(live: Live, pith: str) -> None:
    """Run the paper page's command (`pith verify --key … <bundle URL>`: it fetches every page
    of the bundle) in a shell, as a reader would, with this venv's pith on the PATH."""
    page = live.http.get(f"/pith/{pith.rsplit(':', 1)[1]}").text
    command = html.unescape(re.search(r'<pre id="verify-bundle">(.*?)</pre>', page, re.S).group(1))
    assert command.startswith("pith verify ") and command.endswith("/bundle.json")
    path = f"{PITH.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    run = subprocess.run(
        ["bash", "-c", command.replace("pith verify ", "pith verify --json ")],
        env={**os.environ, "PATH": path},
        capture_output=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["kind"] == "bundle" and report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {"receipt", "events and merged state"}
    assert "state not checked" not in json.dumps(report)  # every page fetched: state checked


def _offline_state(live: Live, pith: str) -> dict[str, Any]:
    """The state recomputed here from the bundle's signed events (both pinned registry keys)."""
    events = live.http.get(f"/pith/{pith.rsplit(':', 1)[1]}/bundle.json").json()["events"]
    keys = [public_key_from_hex(live.key_hex), public_key_from_hex(PUBLIC_REGISTRY_KEY_HEX)]
    return merge(events, keys, subject=pith)


def _no_job_queued(live: Live) -> bool:
    return live.http.get("/api/jobs", params={"state": "queued"}).json()["jobs"] == []


def test_committed_records_are_loaded_at_start(live: Live) -> None:
    ids = [r["event_id"] for r in _state(live, FORGE)["current"]["replication_records"]]
    assert live.committed["event_id"] in ids
    assert "1 stored, 0 already present" in live.server.log.read_text()
    page = live.http.get(f"/pith/{FORGE.rsplit(':', 1)[1]}").text
    assert 'id="replications"' in page and "speedup_vs_torch" in page and "gpu-evidence" in page


def test_two_worker_processes_each_run_their_own_job(live: Live) -> None:
    jobs = [queue(live.http, SAGE, "selftest") for _ in range(2)]
    keys = [_worker_key(live, f"cpu-{i}") for i in range(2)]
    procs = [_start_worker(live, path, "selftest", "--once") for _, path in keys]
    results = [_lines(p) for p in procs]
    for code, lines in results:
        assert code == 0, lines
    submitted = [_one(lines, "submitted") for _, lines in results]
    assert sorted(s["job"] for s in submitted) == sorted(j["job_id"] for j in jobs)
    state = _state(live, SAGE)
    by_id = {r["event_id"]: r for r in state["current"]["replication_records"]}
    for (key, _), sent in zip(keys, submitted, strict=True):
        assert sent["verdict"] == "replicated" and sent["state"] == "done"
        job = _job(live, sent["job"])
        assert (job["state"], job["record_event_id"], job["attempts"]) == (
            "done",
            sent["event_id"],
            1,
        )
        record = by_id[sent["event_id"]]  # in state.json, signed by this worker's key
        assert record["signer"]["public_key_fingerprint"] == key.fingerprint
        assert record["payload"]["job_id"] == sent["job"]
        assert record["payload"]["environment"]["git_commit"] == "test-commit"
        assert len(record["payload"]["log_sha256"]) == 64
    assert _offline_state(live, SAGE) == state
    page = live.http.get(f"/pith/{SAGE.rsplit(':', 1)[1]}").text
    assert "selftest" in page and "sha256_mb_per_s" in page and "cpu-0" in page
    _page_verify(live, SAGE)  # our receipt: one key
    assert _no_job_queued(live)


def test_a_crashing_claim_still_yields_an_error_record(live: Live) -> None:
    job = queue(live.http, SAGE, "selftest", "crash")
    _, path = _worker_key(live, "cpu-crash")
    code, lines = _lines(_start_worker(live, path, "selftest", "--once"))
    assert code == 0, lines
    sent = _one(lines, "submitted")
    assert (sent["job"], sent["verdict"]) == (job["job_id"], "error")
    (record,) = [
        r
        for r in _state(live, SAGE)["current"]["replication_records"]
        if r["event_id"] == sent["event_id"]
    ]
    # the public record names the kind of failure, never the claim's own words
    assert record["payload"]["error"] == "claim exited with status 3"
    assert "crashing" not in json.dumps(record)
    # the person running the worker gets the real error and the log's last lines
    failed = _one(lines, "claim_failed")
    assert failed["error"] == "claim exited with status 3: selftest: crashing on purpose"
    assert "selftest: crashing on purpose" in failed["log_tail"]
    # the log the record's digest names outlives the removed run directory
    digest = record["payload"]["log_sha256"]
    kept = Path(sent["log"])
    assert kept == path.parent / "logs" / f"{digest}.log" == Path(failed["log"])
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
    assert list((live.workdir / "runs").glob(f"job-{job['job_id']}-*")) == []
    assert _job(live, job["job_id"])["state"] == "done"


def test_concurrent_lease_calls_take_each_job_once(live: Live) -> None:
    jobs = {queue(live.http, SAGE, "selftest")["job_id"] for _ in range(8)}
    clients = [
        job_client(live.server.client(), _worker_key(live, f"racer-{i}")[0]) for i in range(4)
    ]
    taken: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(clients))

    errors: list[BaseException] = []

    def race(worker: Any) -> None:
        seq, prev = 0, None
        start.wait()
        try:
            while (leased := worker.lease(["selftest"])) is not None:
                job = leased["job"]
                with lock:
                    taken.append((job["job_id"], job["leased_by"]))
                seq += 1
                event = record_event(worker.key, job, seq=seq, prev=prev)
                worker.submit_record(job["job_id"], event)
                prev = event["event_id"]
        except BaseException as e:  # reported below, from the test's thread
            errors.append(e)

    threads = [threading.Thread(target=race, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for c in clients:
        c.close()
    assert errors == []
    leased_ids = [job_id for job_id, _ in taken]
    assert sorted(leased_ids) == sorted(jobs)  # every job leased, none twice
    for job_id, holder in taken:
        job = _job(live, job_id)
        assert (job["state"], job["attempts"], job["leased_by"]) == ("done", 1, holder)
    assert _state(live, SAGE)["equivocation_count"] == 0
    assert _no_job_queued(live)


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def test_a_killed_workers_lease_expires_and_another_worker_finishes(live: Live) -> None:
    job = queue(live.http, FORGE, "forge", "smoke")
    _, path_a = _worker_key(live, "doomed")
    key_b, path_b = _worker_key(live, "survivor")
    doomed = _start_worker(live, path_a, "forge")
    leased = _wait_for(
        lambda: (j := _job(live, job["job_id"]))["state"] == "leased" and j, 60, "never leased"
    )
    assert leased["leased_by"] == "doomed"
    claims = _wait_for(lambda: _children(doomed.pid), 30, "the claim never started")
    doomed.kill()  # SIGKILL: no release, no goodbye
    doomed.wait(timeout=10)
    for child in claims:  # the claim runs in its own session: stop it too
        os.killpg(child, signal.SIGKILL)
    expires = datetime.fromisoformat(_job(live, job["job_id"])["lease_expires_at"])
    assert _job(live, job["job_id"])["state"] == "leased"  # nobody released it
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
    code, lines = _lines(_start_worker(live, path_b, "forge", "--once"), timeout=180)
    assert code == 0, lines
    sent = _one(lines, "submitted")
    assert sent["job"] == job["job_id"] and sent["verdict"] != "error"
    done = _job(live, job["job_id"])
    assert (done["state"], done["attempts"], done["leased_by"]) == ("done", 2, "survivor")
    (record,) = [
        r
        for r in _state(live, FORGE)["current"]["replication_records"]
        if r["event_id"] == sent["event_id"]
    ]
    assert record["signer"]["public_key_fingerprint"] == key_b.fingerprint
    assert (record["payload"]["claim_id"], record["payload"]["profile"]) == ("forge", "smoke")
    assert {c["name"] for c in record["payload"]["checks"]} >= {
        "exact_fp32_loss_rel_diff_over_steps"
    }
    _page_verify(live, FORGE)  # the public registry's receipt (seed 000): two keys
    assert _offline_state(live, FORGE) == _state(live, FORGE)
    assert _no_job_queued(live)


def test_sigterm_releases_the_lease_and_the_worker_exits_cleanly(live: Live) -> None:
    job = queue(live.http, SAGE, "selftest", "hang")
    key, path = _worker_key(live, "stopping")
    worker = _start_worker(live, path, "selftest")
    _wait_for(lambda: _job(live, job["job_id"])["state"] == "leased", 60, "never leased")
    claims = _wait_for(lambda: _children(worker.pid), 30, "the claim never started")
    worker.send_signal(signal.SIGTERM)
    code, lines = _lines(worker, timeout=60)
    assert code == 0, lines
    assert _one(lines, "released")["job"] == job["job_id"]
    back = _job(live, job["job_id"])
    assert (back["state"], back["leased_by"], back["lease_expires_at"]) == ("queued", None, None)
    assert not any(Path(f"/proc/{pid}").exists() for pid in claims)  # the claim was stopped
    # the queue goes on: another lease takes the job (and records it, leaving the queue empty)
    other = job_client(live.server.client(), key)
    leased = other.lease(["selftest"])
    assert leased["job"]["job_id"] == job["job_id"] and leased["job"]["attempts"] == 2
    other.submit_record(job["job_id"], record_event(key, leased["job"], verdict="inconclusive"))
    other.close()
    assert _no_job_queued(live)


def test_foreign_records_are_refused_over_http(live: Live) -> None:
    job_a = queue(live.http, SAGE, "selftest")
    job_b = queue(live.http, SAGE, "selftest")
    key, _ = _worker_key(live, "honest")
    worker = job_client(live.server.client(), key)
    first = worker.lease(["selftest"])["job"]
    second = worker.lease(["selftest"])["job"]
    assert {first["job_id"], second["job_id"]} == {job_a["job_id"], job_b["job_id"]}

    def refused(submit: Callable[[], Any]) -> tuple[int, str]:
        with pytest.raises(JobAPIError) as info:
            submit()
        return info.value.status, info.value.problem["type"].rsplit(":", 1)[1]

    forged = record_event(new_key("unregistered"), first)
    assert refused(lambda: worker.submit_record(first["job_id"], forged)) == (403, "wrong_signer")
    stranger = job_client(live.server.client(), new_key("unregistered"))
    assert refused(lambda: stranger.submit_record(first["job_id"], forged)) == (
        401,
        "unknown_worker",
    )
    stranger.close()
    for_second = record_event(key, second)
    assert refused(lambda: worker.submit_record(first["job_id"], for_second)) == (422, "wrong_job")
    stored = {r["event_id"] for r in _state(live, SAGE)["current"]["replication_records"]}
    assert forged["event_id"] not in stored and for_second["event_id"] not in stored
    worker.submit_record(second["job_id"], for_second)
    later = record_event(key, first, seq=2, prev=for_second["event_id"])
    worker.submit_record(first["job_id"], later)
    worker.close()
    assert _no_job_queued(live)
