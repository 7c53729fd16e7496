"""The witnessed-log anchor: its time is the earliest witnessed checkpoint holding the record (a
later one does not move it), and only cosignature/v1 keys are witnesses (a note key's 64-byte
signature has no time: once it made every record read a 500)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from nacl.signing import SigningKey
from pydantic import ValidationError

from app.log.repository import LogRepository
from app.log.service import LogSigner, first_witnessed_size_above, witnessed_size
from app.registry.service import load_identity
from app.settings import Settings
from app.storage.engine import Database
from pith_core import note

from .conftest import make_client
from .helpers import import_seeds, new_key, seed_number, signed_event

FORGE_SUFFIX = seed_number("000").rsplit(":", 1)[1]
SAGE = seed_number("001")
SAGE_SUFFIX = SAGE.rsplit(":", 1)[1]
NAME = "witness.example/w1"


def _cosign(client: Any, key: SigningKey, when: int) -> int:
    """The current unwitnessed checkpoint cosigned by `key` at `when`; its size."""
    raw = client.get("/log/checkpoint/unwitnessed").text
    body = note.parse_note(raw).text
    cosigned = note.add_signatures(raw, [note.cosign(body, NAME, key, when)])
    assert client.post("/log/cosignature", content=cosigned).status_code == 200
    return note.parse_checkpoint(body).size


def _grow(client: Any) -> None:
    event = signed_event(new_key(), SAGE)
    r = client.post(f"/pith/{SAGE_SUFFIX}/action/replication_record", json=event)
    assert r.status_code == 201


def test_a_later_witnessed_checkpoint_does_not_move_the_anchor_time(
    settings: Settings, database: Database
) -> None:
    wkey = SigningKey.generate()
    vkey = note.verifier_key(NAME, bytes(wkey.verify_key), note.SIG_COSIGNATURE_V1)
    witnessed = settings.model_copy(update={"log_witnesses": [vkey], "log_witness_quorum": 1})
    import_seeds(database, load_identity(witnessed))
    with make_client(witnessed, database) as client:
        first = _cosign(client, wkey, 1_800_000_000)
        _grow(client)
        later = _cosign(client, wkey, 1_900_000_000)
        assert later > first
    with make_client(witnessed, database) as client:  # a fresh app: no cached document
        evidence = client.get(f"/pith/{FORGE_SUFFIX}.json").json()["trust"]["anchors"]
    anchor = evidence["witnessed_log"]
    assert anchor["tree_size"] == first and anchor["leaf_index"] < first
    assert anchor["created_at"] == "2027-01-15T08:00:00Z"  # 1_800_000_000, not 1_900_000_000


def test_a_note_key_is_refused_as_a_witness_at_startup(settings: Settings) -> None:
    note_key = note.verifier_key(NAME, bytes(SigningKey.generate().verify_key), note.SIG_ED25519)
    with pytest.raises(ValidationError, match="cosignature/v1"):
        Settings(**{**settings.model_dump(), "log_witnesses": [note_key]})


def test_a_64_byte_signature_line_neither_counts_nor_breaks_record_reads(
    settings: Settings, database: Database
) -> None:
    """A witness configured past the validator with a note key (type 0x01): its plain note
    signature is stored, but reads stay 200 and it is no witnessed-log evidence."""
    wkey = SigningKey.generate()
    vkey = note.verifier_key(NAME, bytes(wkey.verify_key), note.SIG_ED25519)
    lax = settings.model_copy(update={"log_witnesses": [vkey], "log_witness_quorum": 1})
    import_seeds(database, load_identity(lax))
    with make_client(lax, database) as client:
        raw = client.get("/log/checkpoint/unwitnessed").text
        body = note.parse_note(raw).text
        signed = note.add_signatures(raw, [note.sign_note(body, NAME, wkey)])
        client.post("/log/cosignature", content=signed)
        _grow(client)
        r = client.get(f"/pith/{FORGE_SUFFIX}.json")
        assert r.status_code == 200
        assert "witnessed_log" not in r.json()["trust"]["anchors"]
        assert client.get(f"/pith/{FORGE_SUFFIX}").status_code == 200


def test_a_rekeyed_witness_leaves_older_records_their_anchor(database: Database) -> None:
    """After a re-key there may be any number of cosignatures by the old key above an old
    record's leaf: the first size the new keys cosigned is still found."""

    from app.log.repository import LogRepository

    old, new, other = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    at = datetime(2027, 1, 1, tzinfo=UTC)

    def cosign(repo: LogRepository, size: int, name: str, key: SigningKey) -> None:
        line = note.cosign(f"log\n{size}\nroot\n", name, key, 1_800_000_000).line()[:-1]
        repo.add_cosignature(size, name, b"\0" * 32, line, at)

    other_name = "witness.example/w2_%"  # LIKE's wildcards in a name match only themselves
    with database.write() as session:
        repo = LogRepository(session)
        for size in range(2, 40):  # the old key, at many sizes
            cosign(repo, size, NAME, old)
        cosign(repo, 45, NAME, new)
        cosign(repo, 50, NAME, new)
        cosign(repo, 50, other_name, other)
    witnesses = tuple(
        note.Verifier.parse(note.verifier_key(n, bytes(k.verify_key), note.SIG_COSIGNATURE_V1))
        for n, k in ((NAME, new), (other_name, other))
    )
    one = LogSigner("log", SigningKey.generate(), witnesses[:1], 1)
    both = LogSigner("log", SigningKey.generate(), witnesses, 2)
    with database.read() as session:
        assert first_witnessed_size_above(session, one, 0) == 45
        assert first_witnessed_size_above(session, one, 45) == 50
        assert first_witnessed_size_above(session, one, 50) is None
        assert first_witnessed_size_above(session, both, 0) == 50
        assert first_witnessed_size_above(session, both, 0, page=1) == 50


def test_rows_of_another_key_at_newer_sizes_do_not_hide_the_witnessed_size(
    database: Database,
) -> None:
    """`/log/checkpoint`'s size: the largest one the configured keys cosigned, however many
    newer rows carry the witness's name under another key (one it no longer uses, or one the
    registry never configured)."""
    from app.log.repository import LogRepository

    configured, stray = SigningKey.generate(), SigningKey.generate()
    at = datetime(2027, 1, 1, tzinfo=UTC)
    with database.write() as session:
        repo = LogRepository(session)
        for size, key in [(45, configured), *((s, stray) for s in range(60, 100))]:
            line = note.cosign(f"log\n{size}\nroot\n", NAME, key, 1_800_000_000).line()[:-1]
            repo.add_cosignature(size, NAME, b"\0" * 32, line, at)
    vkey = note.verifier_key(NAME, bytes(configured.verify_key), note.SIG_COSIGNATURE_V1)
    signer = LogSigner("log", SigningKey.generate(), (note.Verifier.parse(vkey),), 1)
    with database.read() as session:
        assert witnessed_size(session, signer) == 45
        sizes = LogRepository(session).quorum_sizes([(NAME, "")], 1, largest_first=True, page=7)
        assert list(sizes)[:3] == [99, 98, 97]  # paged past the first page, newest first
