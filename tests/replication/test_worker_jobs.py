"""`Worker.run_job` in-process against the real job API (SQLite and PostgreSQL): the log its
signed record names is kept after the run directory goes, a failure's own words reach the
operator's stderr but not the public record, and the lease heartbeat stops however the run ends."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from replication import worker as worker_module
from replication.signer import ChainState
from replication.worker import Reporter, Worker, keep_log
from tests.app.helpers import new_key
from tests.replication.jobs_support import SAGE, job_client, queue, register


def _worker(client: TestClient, tmp_path: Path, name: str = "w-local") -> Worker:
    key = new_key(name)
    register(client, name, key)
    (tmp_path / "runs").mkdir()  # as `pith-worker run` makes it
    return Worker(
        client=job_client(client, key),
        key=key,
        chain=ChainState(tmp_path / "chain.json"),
        reporter=Reporter(True, json_to_stdout=False),  # JSON events on stderr
        claims=["selftest"],
        worker_id=name,
        workdir=tmp_path / "runs",
        time_limit_s=60,
        poll_s=0.1,
        logs_dir=tmp_path / "logs",
        env={"gpu_name": "none"},
    )


def _events(err: str) -> dict[str, dict[str, Any]]:
    return {e["event"]: e for e in map(json.loads, filter(None, err.splitlines()))}


def _lease(w: Worker, client: TestClient, profile: str) -> dict[str, Any]:
    queue(client, SAGE, "selftest", profile)
    leased = w.client.lease(["selftest"])
    assert leased is not None
    return leased


def _record(client: TestClient, event_id: str) -> dict[str, Any]:
    state = client.get(f"/pith/{SAGE.rsplit(':', 1)[1]}/state.json").json()
    (record,) = [r for r in state["current"]["replication_records"] if r["event_id"] == event_id]
    return record


@pytest.mark.parametrize("profile", ["smoke", "crash"])
def test_the_log_its_record_names_is_kept_after_the_run_directory_goes(
    seeded: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: str
) -> None:
    w = _worker(seeded, tmp_path)
    leased = _lease(w, seeded, profile)
    w.run_job(leased["job"], leased["lease"])
    events = _events(capsys.readouterr().err)
    sent = events["submitted"]
    digest = _record(seeded, sent["event_id"])["payload"]["log_sha256"]
    kept = tmp_path / "logs" / f"{digest}.log"
    assert sent["log"] == str(kept)
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == digest
    assert list((tmp_path / "runs").iterdir()) == []  # the run directory itself is gone


def test_a_crash_shows_its_words_to_the_operator_and_only_a_code_in_public(
    seeded: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = _worker(seeded, tmp_path)
    leased = _lease(w, seeded, "crash")
    w.run_job(leased["job"], leased["lease"])
    events = _events(capsys.readouterr().err)
    failed = events["claim_failed"]
    assert failed["error"] == "claim exited with status 3: selftest: crashing on purpose"
    assert failed["log_tail"][-1] == "selftest: crashing on purpose"
    record = _record(seeded, events["submitted"]["event_id"])
    assert record["payload"]["verdict"] == "error"
    assert record["payload"]["error"] == "claim exited with status 3"
    assert "crashing" not in json.dumps(record)


def test_a_failure_is_printed_with_its_log_tail_for_people(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Reporter(False).claim_failed("claim exited with status 1: ValueError: bad x", ["a", "b"])
    err = capsys.readouterr().err
    assert "ValueError: bad x" in err and "last lines of its log" in err and "  | b" in err


def test_the_heartbeat_stops_when_running_the_claim_raises(
    seeded: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _worker(seeded, tmp_path)
    leased = _lease(w, seeded, "smoke")
    beats: list[str] = []
    real = w.client.heartbeat

    def counted(job_id: str, lease_id: str) -> dict[str, Any]:
        beats.append(job_id)
        return real(job_id, lease_id)

    def broken(*_args: Any, **_kw: Any) -> None:
        time.sleep(1.6)  # long enough for a beat
        raise OSError("no space left on device")

    monkeypatch.setattr(w.client, "heartbeat", counted)
    monkeypatch.setattr(worker_module, "run_claim", broken)
    lease = dict(leased["lease"], ttl_s=3)  # a beat a second
    with pytest.raises(OSError, match="no space left"):
        w.run_job(leased["job"], lease)
    assert beats, "no heartbeat while the claim ran"
    seen = len(beats)
    time.sleep(2.5)
    assert len(beats) == seen, "the heartbeat went on after run_job raised"
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_log_that_cannot_be_kept_still_leaves_a_signed_record(
    seeded: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = _worker(seeded, tmp_path)
    w.logs_dir.write_text("a file where the logs directory should be")  # mkdir fails
    leased = _lease(w, seeded, "smoke")
    w.run_job(leased["job"], leased["lease"])
    err = capsys.readouterr().err.splitlines()
    assert any(line.startswith("pith-worker: could not keep the claim's log") for line in err)
    events = _events("\n".join(line for line in err if line.startswith("{")))
    assert "File exists" in events["log_not_kept"]["error"]
    assert events["submitted"]["log"] is None
    record = _record(seeded, events["submitted"]["event_id"])
    assert record["payload"]["verdict"] == "replicated"
    state = seeded.get(f"/api/jobs/{leased['job']['job_id']}").json()["state"]
    assert state != "leased"


def test_two_workers_keeping_the_same_log_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each copies to a temporary name of its own: with one shared name, the second rename of
    two copies in flight finds its file gone."""
    log = tmp_path / "claim.log"
    log.write_bytes(b"the same claim's log\n")
    digest = hashlib.sha256(log.read_bytes()).hexdigest()
    both_copied = threading.Barrier(2, timeout=10)
    real_replace = os.replace

    def replace_together(src: Any, dst: Any) -> None:
        both_copied.wait()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_together)
    logs = tmp_path / "logs"
    errors: list[BaseException] = []

    def keep() -> None:
        try:
            keep_log(log, digest, logs)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=keep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in logs.iterdir()] == [f"{digest}.log"]  # no temporary left behind
    assert (logs / f"{digest}.log").read_bytes() == log.read_bytes()


def test_a_smoke_job_is_signed_as_using_no_gpu(
    seeded: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = _worker(seeded, tmp_path)
    leased = _lease(w, seeded, "smoke")
    assert leased["job"]["gpus"] == 0
    w.run_job(leased["job"], leased["lease"])
    record = _record(seeded, _events(capsys.readouterr().err)["submitted"]["event_id"])
    assert record["payload"]["environment"]["gpus_used"] == "0"


def _two_gpu_job_on_a_one_gpu_worker(seeded: TestClient, tmp_path: Path) -> tuple[Any, dict]:
    """A worker offering 1 GPU holding the lease of a 2-GPU job (as a registry that misjudged
    it would hand out)."""
    w = _worker(seeded, tmp_path)
    queue(seeded, SAGE, "selftest", "two_gpus")
    leased = w.client.lease(["selftest"], gpus=2)
    assert leased is not None and leased["job"]["gpus"] == 2
    w.gpus = 1
    return w, leased


def test_a_job_needing_more_gpus_than_the_worker_offers_is_released_unrun(
    seeded: TestClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w, leased = _two_gpu_job_on_a_one_gpu_worker(seeded, tmp_path)
    ran: list[str] = []
    monkeypatch.setattr(worker_module, "run_claim", lambda *a, **k: ran.append("ran"))
    w.run_job(leased["job"], leased["lease"])
    assert ran == []
    released = _events(capsys.readouterr().err)["released"]
    assert "needs 2 GPUs" in released["reason"] and "offers 1" in released["reason"]
    job = seeded.get(f"/api/jobs/{leased['job']['job_id']}").json()
    assert job["state"] == "queued"


class _Waits(threading.Event):
    """A stop event that records how long the worker waited on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return super().wait(0)


def test_a_released_job_is_followed_by_a_poll_interval_not_a_lease_at_once(
    seeded: TestClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w, leased = _two_gpu_job_on_a_one_gpu_worker(seeded, tmp_path)
    w.stop = _Waits()
    monkeypatch.setattr(worker_module, "run_claim", lambda *a, **k: pytest.fail("launched"))
    w.run_job(leased["job"], leased["lease"])
    assert "released" in _events(capsys.readouterr().err)
    assert w.stop.waits == [w.poll_s]


def test_a_job_of_an_older_registry_runs_on_a_worker_with_no_gpu(
    seeded: TestClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    w = _worker(seeded, tmp_path)
    leased = _lease(w, seeded, "smoke")
    job = {k: v for k, v in leased["job"].items() if k != "gpus"}  # a registry without counts
    w.gpus = 0
    w.run_job(job, leased["lease"])
    events = _events(capsys.readouterr().err)
    assert "released" not in events
    record = _record(seeded, events["submitted"]["event_id"])
    assert record["payload"]["verdict"] == "replicated"
