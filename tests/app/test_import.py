"""Importing another registry's records: the seeds, tampered copies, the page without receipt,
and `pith import` (all verify, or nothing is stored)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from app.cli import import_files
from app.events.service import compute_state
from app.records.importing import ImportRefused, read_candidate
from app.records.repository import RecordRepository
from app.settings import Settings
from app.storage.engine import Database
from pith_core.keys import public_key_from_hex
from pith_core.merge import state_sha256
from pith_core.receipt import verify_receipt

from .helpers import PUBLIC_KEY, SEED_FILES, SEEDS_DIR, import_seeds, seed_hash, seed_json

PAGE = SEEDS_DIR / "002_208f6f75bdc33b35.txt"


def _counts(connection: Connection) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        int(connection.execute(text(f"SELECT count(*) FROM {t}")).scalar() or 0)
        for t in ("records", "aliases", "events")
    )


@pytest.mark.parametrize("prefix", ["000", "001", "003", "004"])
def test_a_seed_keeps_its_number_and_receipt(prefix: str, database: Database, identity) -> None:  # type: ignore[no-untyped-def]
    import_seeds(database, identity)
    doc = seed_json(prefix)
    if "current" in doc:
        number = doc["pith_number"]
        receipt = doc["current"]["record_created"]["payload"]["receipt"]
        aliases = doc["current"]["source_aliases"]
    else:
        number, receipt, aliases = doc["pith_number"], doc["receipt"], doc["aliases"]
    with database.read() as session:
        record = RecordRepository(session).by_number(number)
        assert record is not None
        assert json.loads(record.receipt) == receipt
        assert record.canonical_sha256 == seed_hash(prefix)
        state = compute_state(session, identity, number, save=False)
    # The public registry's receipt still verifies (here, on what we stored).
    verify_receipt(json.loads(record.receipt), record.canonical_sha256, PUBLIC_KEY)
    # Our own record + graph events, merged under our key: the seed's aliases, in its order.
    assert state["valid_event_count"] == 2 and state["invalid_event_count"] == 0
    assert [(a["alias_kind"], a["alias_value"]) for a in state["current"]["source_aliases"]] == [
        (a["alias_kind"], a["alias_value"]) for a in aliases
    ]
    created = state["current"]["record_created"]
    assert created["signer"]["public_key_fingerprint"] == identity.fingerprint
    assert created["payload"]["receipt"] == receipt
    assert state["state_sha256"] == state_sha256(state)


def test_the_page_seed_gets_this_registrys_receipt(database: Database, identity) -> None:  # type: ignore[no-untyped-def]
    import_seeds(database, identity)
    with database.read() as session:
        record = RecordRepository(session).by_number("pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I")
        assert record is not None
    receipt = json.loads(record.receipt)
    assert record.canonical_sha256 == seed_hash("002")
    assert receipt["public_key_fingerprint"] == identity.fingerprint
    assert receipt["first_computed_at"] == "2026-06-26T01:15:51.382011Z"  # as the page shows
    verify_receipt(receipt, seed_hash("002"), identity.key.public_key)
    paper = json.loads(record.paper)
    assert paper["title"] == "SAGE: Sign-Adaptive Gradient for Memory-Efficient LLM Optimization"
    assert paper["authors_text"] == "Hyun-Tae Kim, Wooin Lee"
    assert paper["headline"].startswith("SAGE replaces AdamW in hybrid LLM optimizers")


def test_importing_twice_stores_nothing_new(database: Database, identity, connection) -> None:  # type: ignore[no-untyped-def]
    import_seeds(database, identity)
    before = _counts(connection)
    import_seeds(database, identity)
    assert _counts(connection) == before == (5, 30, 10)


def _tampered(path: Path, old: str, new: str) -> bytes:
    data = path.read_text()
    assert old in data
    return data.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("prefix", "old", "new", "why"),
    [
        ("000", "bdlghSSwiaWo2h", "bdlghSSwiaWo2i", "receipt"),  # signature byte
        (
            "004",
            '"primary_cat":"cs.LG","submitted_at"',
            '"primary_cat":"cs.CV","submitted_at"',
            "canonical_sha256",
        ),
        ("001", '"state_sha256":"7db3', '"state_sha256":"7db4', "state_sha256"),
    ],
)
def test_a_tampered_document_is_refused(prefix: str, old: str, new: str, why: str) -> None:
    (path,) = [p for p in SEED_FILES if p.name.startswith(prefix)]
    with pytest.raises(ImportRefused, match=why):
        read_candidate(_tampered(path, old, new), path.name, PUBLIC_KEY)


def test_a_receipt_under_another_key_is_refused() -> None:
    other = public_key_from_hex("11" * 32)
    with pytest.raises(ImportRefused, match="receipt"):
        read_candidate(SEED_FILES[0].read_bytes(), "000", other)


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        ("540d0d9e85a8fb04de63", "540d0d9e85a8fb04de64", "canonical hash"),
        ('"version": 2', '"version": 3', "canonical hash"),
        ("SAGE: Sign-Adaptive Gradient for", "SAGE: Sign Adaptive Gradient for", "title"),
        ("pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I", "pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6J", "names"),
    ],
)
def test_a_page_that_does_not_add_up_is_refused(old: str, new: str, why: str) -> None:
    with pytest.raises(ImportRefused, match=why):
        read_candidate(_tampered(PAGE, old, new), "page", PUBLIC_KEY)


def test_a_bundle_or_garbage_is_refused() -> None:
    with pytest.raises(ImportRefused, match="not a Pith record"):
        read_candidate(b'{"hello": 1}', "x", PUBLIC_KEY)
    with pytest.raises(ImportRefused, match="canonical record"):
        read_candidate(b"just some text", "x", PUBLIC_KEY)
    with pytest.raises(ImportRefused, match="UTF-8"):
        read_candidate(b"\xff\xfe", "x", PUBLIC_KEY)


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(database_url=url, key_file=tmp_path / "k.json")


def _stored_count(url: str) -> int:
    db = Database(url)
    try:
        with db.read() as session:
            return RecordRepository(session).count()
    finally:
        db.dispose()


def test_cli_import_stores_all_or_nothing(
    fresh_databases, backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    url = fresh_databases.new(backend)
    settings = _settings(url, tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(_tampered(SEED_FILES[0], "bdlghSSwiaWo2h", "bdlghSSwiaWo2i"))
    assert import_files(settings, [*SEED_FILES, bad], settings.trusted_registry_keys[0]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "bad.txt" in err and "nothing stored" in err
    assert _stored_count(url) == 0

    assert import_files(settings, SEED_FILES, settings.trusted_registry_keys[0]) == 0
    out = capsys.readouterr().out
    assert out.count("imported ") == 5
    assert _stored_count(url) == 5
    key_mode = stat.S_IMODE((tmp_path / "k.json").stat().st_mode)
    assert key_mode == 0o600

    assert import_files(settings, SEED_FILES[:1], settings.trusted_registry_keys[0]) == 0
    assert "present" in capsys.readouterr().out
    assert import_files(settings, SEED_FILES[:1], "not-a-key") == 2


def test_pith_import_command_line(fresh_databases, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The real `pith import` entry point (registered through the pith.cli group)."""
    from pith_core.cli import main

    url = fresh_databases.new("sqlite", migrate=False)  # `pith import` migrates first
    monkeypatch.setenv("PITH_KEY_FILE", str(tmp_path / "k.json"))
    assert main(["import", "--database-url", url, str(SEED_FILES[3])]) == 0
    assert _stored_count(url) == 1
    assert (
        main(["import", "--database-url", url, "--trusted-key", "ab" * 32, str(SEED_FILES[4])]) == 1
    )
    assert _stored_count(url) == 1


def test_a_bundles_events_meet_the_payload_schemas_as_live_submissions_do(seeded) -> None:  # type: ignore[no-untyped-def]
    """A validly signed event whose payload its target's schema refuses (a live submission gets
    422 bad_payload) does not come in through a bundle either; a sound bundle does."""
    from pith_core.merge import merge as merge_events

    from .helpers import new_key, seed_number, signed_event

    suffix = seed_number("000").rsplit(":", 1)[1]
    bundle = seeded.get(f"/pith/{suffix}/bundle.json").json()
    keys = [bytes.fromhex(seeded.get("/pith-signing-key.json").json()["public_key_hex"])]
    keys.append(PUBLIC_KEY)
    sound = read_candidate(json.dumps(bundle).encode(), "bundle.json", keys)
    assert len(sound.events) == len(bundle["events"])
    bad = signed_event(
        new_key(),
        seed_number("000"),
        payload={"claim_id": "c", "verdict": "replicated", "figures": {"speedup": 1}},
    )
    live = seeded.post(f"/pith/{suffix}/action/replication_record", json=bad)
    assert live.status_code == 422 and live.json()["field"].startswith("payload")
    events = [*bundle["events"], bad]
    forged = {**bundle, "events": events, "log": None}
    forged["state_sha256"] = merge_events(events, keys, subject=seed_number("000"))["state_sha256"]
    with pytest.raises(ImportRefused, match=rf"events\[{len(events) - 1}\]\.payload\.figures"):
        read_candidate(json.dumps(forged).encode(), "bundle.json", keys)
