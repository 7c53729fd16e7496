"""The worker's local parts: running a claim in a child process, and signing its record."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from pith_core import merge, verify_event
from pith_core.keys import KeyPair, generate_signing_key
from replication.runner import RunOutcome, run_claim
from replication.signer import ChainState, record_payload, sign_record

SUBJECT = "pith:2026:GWT7BTE6QQH6QFVV76TWP23RSF"


def test_selftest_claim_runs_and_its_log_digest_matches(tmp_path: Path) -> None:
    phases: list[str] = []
    out = run_claim("selftest", "smoke", tmp_path, time_limit_s=60, on_phase=phases.append)
    assert out.error is None and out.exit_code == 0
    assert out.result["verdict"] == "replicated"
    assert phases == ["hashing", "done"]
    assert out.log_sha256 == hashlib.sha256(out.log_path.read_bytes()).hexdigest()


def test_a_single_process_claim_ignores_a_rank_it_inherits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker started under a launcher (RANK=1 ...) still gets its one-process claim's result:
    only rank 0 writes it, and the claim is no rank of the worker's world."""
    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29555")
    out = run_claim("selftest", "smoke", tmp_path, time_limit_s=60, gpus=0)
    assert out.error is None, out.log_tail
    assert out.result is not None and out.result["verdict"] == "replicated"


def test_a_crash_is_an_outcome_with_its_log(tmp_path: Path) -> None:
    out = run_claim("selftest", "crash", tmp_path, time_limit_s=60)
    assert out.result is None and out.exit_code == 3
    assert out.error == "claim exited with status 3: selftest: crashing on purpose"
    assert out.log_tail[-1] == "selftest: crashing on purpose"
    assert b"crashing on purpose" in out.log_path.read_bytes()


def test_the_public_error_names_the_failure_never_the_claims_words(tmp_path: Path) -> None:
    """What a signed record says of a failure: a fixed phrase, the exit status and the
    exception's class; the message and the traceback (paths, data) stay in `error`."""

    def outcome(tail: tuple[str, ...], exit_code: int | None = 1, **kw: bool) -> RunOutcome:
        return RunOutcome(
            "selftest", "smoke", None, exit_code, kw.get("timed_out", False),
            kw.get("cancelled", False), tmp_path / "log", "0" * 64, 1.0, tail,
        )  # fmt: skip

    traceback = (
        "Traceback (most recent call last):",
        '  File "/home/alice/private/run.py", line 3, in <module>',
        "torch.OutOfMemoryError: CUDA out of memory on host gpu-7.alice.example",
    )
    oom = outcome(traceback)
    assert oom.public_error == "claim exited with status 1 (torch.OutOfMemoryError)"
    assert oom.error is not None and "gpu-7.alice.example" in oom.error  # for the operator
    assert outcome(("KeyError: 'secret'",)).public_error == "claim exited with status 1 (KeyError)"
    assert outcome(("printed a line",), 3).public_error == "claim exited with status 3"
    assert outcome(("x",), None, timed_out=True).public_error == "time limit exceeded"
    assert outcome(("x",), None, cancelled=True).public_error == "cancelled"
    assert outcome((), 0).public_error == "claim wrote no result"


def test_the_time_limit_kills_the_claim(tmp_path: Path) -> None:
    t0 = time.monotonic()
    out = run_claim("selftest", "hang", tmp_path, time_limit_s=2)
    assert out.timed_out and out.error == "time limit exceeded"
    assert time.monotonic() - t0 < 20


def test_cancel_stops_the_claim(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    out = run_claim("selftest", "hang", tmp_path, time_limit_s=60, cancel=cancel)
    assert out.cancelled and out.error == "cancelled"


def test_unknown_claim_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown claim"):
        run_claim("nope", "smoke", tmp_path, time_limit_s=1)


def test_records_chain_and_verify(tmp_path: Path) -> None:
    key = KeyPair(generate_signing_key(), "worker-1")
    chain = ChainState(tmp_path / "chain.json")
    ok = run_claim("selftest", "smoke", tmp_path / "a", time_limit_s=60)
    bad = run_claim("selftest", "crash", tmp_path / "b", time_limit_s=60)
    env = {"gpu_name": "none"}
    first = sign_record(
        key,
        chain,
        subject=SUBJECT,
        worker_id="w1",
        payload=record_payload(ok, job_id="j1", environment=env),
    )
    second = sign_record(
        key,
        chain,
        subject=SUBJECT,
        worker_id="w1",
        payload=record_payload(bad, job_id="j2", environment=env),
    )
    for ev in (first, second):
        verify_event(ev)
    assert (first["seq"], first["prev"]) == (1, None)
    assert (second["seq"], second["prev"]) == (2, first["event_id"])
    assert first["payload"]["verdict"] == "replicated"
    assert second["payload"]["verdict"] == "error"
    assert second["payload"]["error"] == "claim exited with status 3"  # not the claim's words
    assert second["payload"]["log_sha256"] == bad.log_sha256
    # the chain survives a restart: pending until submitted, seq never reused
    reloaded = ChainState(tmp_path / "chain.json")
    assert [e["event_id"] for e in reloaded.pending] == [first["event_id"], second["event_id"]]
    assert reloaded.next_link(SUBJECT) == (3, second["event_id"])
    reloaded.record_submitted(first["event_id"])
    assert [e["event_id"] for e in ChainState(tmp_path / "chain.json").pending] == [
        second["event_id"]
    ]
    state = merge([first, second], [], subject=SUBJECT)
    assert state["equivocation_count"] == 0
    assert len(state["current"]["replication_records"]) == 2
