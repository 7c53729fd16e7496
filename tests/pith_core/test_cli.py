"""The `pith` CLI as a user runs it: real console script, real files, exit codes 0/1/2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pith_core import PUBLIC_REGISTRY_KEY_HEX, canonical_sha256, pith_number, state_sha256

from .conftest import RECORD_SEEDS, SEEDS, STATE_SEEDS, load_seed

PITH = shutil.which("pith", path=str(Path(sys.executable).parent)) or "pith"


def pith(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PITH, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_hash_of_a_value_and_of_a_document(tmp_path: Path) -> None:
    out = pith("hash", stdin='{"b": 1, "a": "x"}')
    assert out.returncode == 0
    assert out.stdout.strip() == canonical_sha256({"a": "x", "b": 1})
    seed = load_seed(RECORD_SEEDS[0])
    out = pith("hash", str(SEEDS / RECORD_SEEDS[0]))
    assert out.returncode == 0 and out.stdout.strip() == seed["canonical_sha256"]
    state = load_seed(STATE_SEEDS[0])
    expected = state["current"]["record_created"]["payload"]["canonical_sha256"]
    assert pith("hash", str(SEEDS / STATE_SEEDS[0])).stdout.strip() == expected


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
def test_number_of_every_seed(name: str) -> None:
    out = pith("number", str(SEEDS / name))
    assert out.returncode == 0
    assert out.stdout.strip() == load_seed(name)["pith_number"]


@pytest.mark.parametrize("name", RECORD_SEEDS + STATE_SEEDS)
def test_verify_every_seed_under_the_public_key(name: str) -> None:
    out = pith("verify", str(SEEDS / name))
    assert out.returncode == 0, out.stderr
    assert "receipt" in out.stdout and "FAIL" not in out.stdout


def test_verify_fails_with_exit_1_and_reason(tmp_path: Path) -> None:
    doc = load_seed(RECORD_SEEDS[0])
    doc["canonical_record"]["metadata"]["license"] = ""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    out = pith("verify", str(bad))
    assert out.returncode == 1
    assert "canonical_sha256" in out.stderr and "receipt" in out.stderr
    other = "11" * 32
    out = pith("verify", "--key", other, str(SEEDS / RECORD_SEEDS[0]))
    assert out.returncode == 1 and "fingerprint" in out.stderr


def test_verify_json_output() -> None:
    out = pith("verify", "--json", str(SEEDS / STATE_SEEDS[1]))
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"] is True and report["kind"] == "state"
    assert {c["name"] for c in report["checks"]} >= {"state_sha256", "receipt", "pith_number"}


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["hash"], "{not json", "not JSON"),
        (["hash"], '{"a": 1.25}', "$.a"),
        (["number"], '{"a": 1}', "not a Pith record"),
        (["verify", "--key", "zz"], "{}", "hex"),
        (["merge"], '{"events": 3}', "array of events"),
        (["frobnicate"], "", "invalid choice"),
    ],
)
def test_malformed_input_or_usage_exits_2(args: list[str], stdin: str, message: str) -> None:
    out = pith(*args, stdin=stdin)
    assert out.returncode == 2
    assert message in out.stderr


def test_keygen_sign_event_and_merge(tmp_path: Path) -> None:
    key_file = tmp_path / "author.key"
    out = pith("keygen", "--out", str(key_file), "--key-id", "me")
    assert out.returncode == 0
    info = json.loads(out.stdout)
    assert (key_file.stat().st_mode & 0o777) == 0o600
    assert pith("keygen", "--out", str(key_file)).returncode == 2  # never overwritten

    record = load_seed(RECORD_SEEDS[0])["canonical_record"]
    subject = pith_number(record)
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"statement": "I wrote this paper"}))
    out = pith(
        "sign-event",
        "--key",
        str(key_file),
        "--subject",
        subject,
        "--target",
        "author_attestation",
        "--payload",
        str(payload),
        "--created-at",
        "2026-07-01T00:00:00Z",
        "--signer-type",
        "author",
    )
    assert out.returncode == 0, out.stderr
    event = json.loads(out.stdout)
    assert event["signer"]["public_key_fingerprint"] == info["fingerprint"]

    out = pith(
        "sign-event",
        "--key",
        str(key_file),
        "--subject",
        subject,
        "--target",
        "correction",
        "--seq",
        "2",
        "--prev",
        event["event_id"],
        stdin='{"fix": "typo"}',
    )
    second = json.loads(out.stdout)
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps([second, event, event]))
    out = pith("merge", str(events_file), "--registry-key", PUBLIC_REGISTRY_KEY_HEX)
    assert out.returncode == 0, out.stderr
    state: dict[str, Any] = json.loads(out.stdout)
    assert state["valid_event_count"] == 2 and state["invalid_event_count"] == 0
    assert state["applied_event_ids"] == [event["event_id"], second["event_id"]]
    assert state["state_sha256"] == state_sha256(state)
    # a bundle works the same
    out2 = pith("merge", stdin=json.dumps({"events": [event, second]}))
    assert json.loads(out2.stdout)["state_sha256"] == state["state_sha256"]


def test_sign_event_refuses_bad_arguments(tmp_path: Path) -> None:
    key_file = tmp_path / "k.key"
    pith("keygen", "--out", str(key_file))
    out = pith(
        "sign-event",
        "--key",
        str(key_file),
        "--subject",
        "pith:2026:" + "A" * 26,
        "--target",
        "timestamp_anchor",
        "--created-at",
        "yesterday",
        stdin="{}",
    )
    assert out.returncode == 2 and "created_at" in out.stderr
    out = pith(
        "sign-event",
        "--key",
        str(key_file),
        "--subject",
        "pith:2026:" + "A" * 26,
        "--target",
        "timestamp_anchor",
        stdin="[]",
    )
    assert out.returncode == 2 and "object" in out.stderr


def test_verify_with_a_malformed_rotations_file_is_a_usage_error(tmp_path: Path) -> None:
    rotations = tmp_path / "rotations.json"
    rotations.write_text("[1, 2]")
    out = pith("verify", str(SEEDS / RECORD_SEEDS[0]), "--rotations", str(rotations))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "rotation statements" in out.stderr
