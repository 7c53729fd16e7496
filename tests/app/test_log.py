"""The transparency log through the API (SQLite and PostgreSQL): every stored event is a leaf,
the checkpoint is a C2SP signed note under the registry key, tiles and entry bundles re-derive
the root, proofs verify with pith_core alone, bad input is a problem and stores nothing."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from nacl.signing import SigningKey
from sqlalchemy import text

from pith_core import note, tiles, tlog
from pith_core.canonical import canonical_json
from pith_core.logcheck import LogCheckError, check_events_in_log
from pith_core.verify import verify_document

from .helpers import PUBLIC_KEY, assert_problem, new_key, seed_number, signed_event


def _key(client: TestClient) -> bytes:
    return bytes.fromhex(client.get("/pith-signing-key.json").json()["public_key_hex"])


def _checkpoint(client: TestClient, path: str = "/log/checkpoint") -> note.Checkpoint:
    r = client.get(path)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    origin = client.get("/log").json()["origin"]
    checkpoint, _ = note.open_checkpoint(r.text, note.Verifier(origin, _key(client)), origin)
    return checkpoint


def _submit(client: TestClient, subject: str, seq: int, prev: str | None, key: Any) -> dict:
    suffix = subject.rsplit(":", 1)[1]
    event = signed_event(key, subject, seq=seq, prev=prev)
    r = client.post(f"/pith/{suffix}/action/replication_record", json=event)
    assert r.status_code == 201, r.text
    return r.json()


def _mth(entries: list[bytes]) -> bytes:
    """RFC 6962 §2.1 as written: MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    if len(entries) == 1:
        return hashlib.sha256(b"\x00" + entries[0]).digest()
    k = 1
    while k * 2 < len(entries):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(entries[:k]) + _mth(entries[k:])).digest()


def _all_entries(client: TestClient, size: int) -> list[bytes]:
    out: list[bytes] = []
    for tile in tiles.tiles_of(size):
        if tile.level == tiles.ENTRIES:
            r = client.get(f"/log/{tile.path()}")
            assert r.status_code == 200, tile.path()
            out += tiles.decode_entry_bundle(r.content)
    return out


def test_every_stored_event_is_a_leaf_and_the_tiles_rederive_the_signed_root(
    seeded: TestClient,
) -> None:
    checkpoint = _checkpoint(seeded)
    feed = seeded.get("/api/events", params={"after": 0, "limit": 1000}).json()["events"]
    assert checkpoint.size == len(feed) > 0
    entries = _all_entries(seeded, checkpoint.size)
    # the entries are the events' canonical JSON, in log-index order
    assert entries == [canonical_json(item["event"]) for item in feed]
    # an independent RFC 6962 MTH of the entries (plain hashlib) gives the signed root
    assert _mth(entries) == checkpoint.root
    r = seeded.get(f"/log/{tiles.Tile(0, 0, checkpoint.size).path()}")
    assert r.status_code == 200
    assert r.content == b"".join(hashlib.sha256(b"\x00" + e).digest() for e in entries)
    assert r.headers["cache-control"] == "no-cache"  # a partial tile changes


def test_a_submitted_event_carries_its_inclusion_proof_and_extends_the_last_checkpoint(
    seeded: TestClient,
) -> None:
    before = _checkpoint(seeded)
    subject = seed_number("001")
    body = _submit(seeded, subject, 1, None, new_key())
    log = body["log"]
    assert log["tree_size"] == before.size + 1
    assert log["leaf_index"] == before.size  # the next leaf
    origin = seeded.get("/log").json()["origin"]
    checkpoint, _ = note.open_checkpoint(
        log["checkpoint"], note.Verifier(origin, _key(seeded)), origin
    )
    leaf = hashlib.sha256(b"\x00" + canonical_json(body["event"])).digest()
    proof = [base64.b64decode(p) for p in log["inclusion_proof"]]
    tlog.verify_inclusion(log["leaf_index"], checkpoint.size, leaf, proof, checkpoint.root)
    with pytest.raises(tlog.ProofError):  # the proof is of this event, not any other
        other = hashlib.sha256(b"\x00" + canonical_json({**body["event"], "seq": 2})).digest()
        tlog.verify_inclusion(log["leaf_index"], checkpoint.size, other, proof, checkpoint.root)

    r = seeded.get("/log/proof/consistency", params={"from": before.size, "to": checkpoint.size})
    assert r.status_code == 200
    consistency = [base64.b64decode(p) for p in r.json()["proof"]]
    tlog.verify_consistency(before.size, checkpoint.size, consistency, before.root, checkpoint.root)
    r = seeded.get(
        "/log/proof/inclusion",
        params={"leaf_index": log["leaf_index"], "tree_size": checkpoint.size},
    )
    assert r.json()["proof"] == log["inclusion_proof"]


def test_events_json_and_bundles_prove_every_event_and_pith_verify_checks_it(
    seeded: TestClient,
) -> None:
    subject = seed_number("000")
    key = new_key()
    first = _submit(seeded, subject, 1, None, key)
    _submit(seeded, subject, 2, first["event_id"], key)
    suffix = subject.rsplit(":", 1)[1]
    keys = [_key(seeded), PUBLIC_KEY]
    events = seeded.get(f"/api/pith-number/{suffix}/events.json").json()
    assert "2 events" in check_events_in_log(
        [e for e in events["events"] if e["target"] == "replication"], events["log"], keys
    )
    bundle = seeded.get(f"/pith/{suffix}/bundle.json").json()
    _kind, checks = verify_document(bundle, keys)
    by_name = {c.name: c for c in checks}
    assert by_name["transparency log inclusion"].passed, by_name
    # an event the log never held, slipped into the bundle, is caught
    extra = signed_event(key, subject, seq=3, prev=first["event_id"])
    forged = {**bundle, "events": [*bundle["events"], extra]}
    _, checks = verify_document(forged, keys)
    assert not {c.name: c for c in checks}["transparency log inclusion"].passed
    # and one rewritten event no longer proves against the signed root
    rewritten = json.loads(json.dumps(bundle))
    mine = next(e for e in rewritten["events"] if e["event_id"] == first["event_id"])
    mine["created_at"] = "2026-11-23T05:00:01Z"
    with pytest.raises(LogCheckError):
        check_events_in_log([mine], rewritten["log"], keys)
    # a checkpoint under a key nobody trusts proves nothing
    with pytest.raises(LogCheckError, match="not signed by a trusted key"):
        check_events_in_log(bundle["events"], bundle["log"], [PUBLIC_KEY])


def test_full_tiles_are_immutable_and_bad_tile_paths_are_problems(seeded: TestClient) -> None:
    subject = seed_number("003")
    key = new_key()
    prev = None
    size = _checkpoint(seeded).size
    batch = []
    for seq in range(1, 257 - size + 1):  # one batch fills the first tile and starts the next
        batch.append(signed_event(key, subject, seq=seq, prev=prev))
        prev = batch[-1]["event_id"]
    r = seeded.post("/api/events", json=batch)
    assert r.status_code == 201, r.text
    assert [x["log"]["leaf_index"] for x in r.json()["results"]] == list(range(size, 257))
    checkpoint = _checkpoint(seeded)
    assert checkpoint.size == 257
    full = seeded.get("/log/tile/0/000")
    assert full.status_code == 200 and len(full.content) == 256 * 32
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
    (last,) = tiles.decode_entry_bundle(seeded.get("/log/tile/entries/001.p/1").content)
    assert seeded.get("/log/tile/0/001.p/1").content == hashlib.sha256(b"\x00" + last).digest()
    level1 = seeded.get("/log/tile/1/000.p/1")
    assert level1.content == tlog.tree_root(tiles.split_tile(tiles.Tile(0, 0), full.content))
    assert len(_all_entries(seeded, 257)) == 257
    assert_problem(seeded.get("/log/tile/0/000.p/3"), 404, "no_such_tile")  # not at the edge
    assert_problem(seeded.get("/log/tile/0/002"), 404, "no_such_tile")
    assert_problem(seeded.get("/log/tile/0/x000/001"), 404, "no_such_tile")
    assert_problem(seeded.get("/log/tile/zz/000"), 404, "no_such_tile")


def test_a_batch_answer_proves_each_event_against_its_checkpoint(seeded: TestClient) -> None:
    """Issue 15: a batch's results carry each event's inclusion proof, as a single submission's
    does, against the checkpoint the answer gives once; those stored before (duplicates) too."""
    subject = seed_number("004")
    key = new_key()
    first = _submit(seeded, subject, 1, None, key)["event"]  # in the log before the batch
    batch, prev = [first], first["event_id"]
    for seq in range(2, 40):
        batch.append(signed_event(key, subject, seq=seq, prev=prev))
        prev = batch[-1]["event_id"]
    r = seeded.post("/api/events", json=batch)
    assert r.status_code == 201, r.text
    answer = r.json()
    origin = seeded.get("/log").json()["origin"]
    checkpoint, _ = note.open_checkpoint(
        answer["log"]["checkpoint"], note.Verifier(origin, _key(seeded)), origin
    )
    assert checkpoint.size == answer["log"]["tree_size"] == _checkpoint(seeded).size
    assert [x["status"] for x in answer["results"]] == ["duplicate"] + ["created"] * 38
    for event, result in zip(batch, answer["results"], strict=True):
        leaf = hashlib.sha256(b"\x00" + canonical_json(event)).digest()
        proof = [base64.b64decode(p) for p in result["log"]["inclusion_proof"]]
        tlog.verify_inclusion(
            result["log"]["leaf_index"], checkpoint.size, leaf, proof, checkpoint.root
        )
    served = seeded.get(
        "/log/proof/inclusion",
        params={
            "leaf_index": answer["results"][7]["log"]["leaf_index"],
            "tree_size": checkpoint.size,
        },
    )
    assert served.json()["proof"] == answer["results"][7]["log"]["inclusion_proof"]


def test_bad_proof_requests_are_problems(seeded: TestClient) -> None:
    size = _checkpoint(seeded).size
    assert_problem(seeded.get("/log/proof/consistency", params={"from": 3, "to": 2}), 400)
    assert_problem(
        seeded.get("/log/proof/consistency", params={"from": 1, "to": size + 1}),
        400,
        "bad_tree_sizes",
    )
    assert seeded.get("/log/proof/consistency", params={"from": 0, "to": 1}).status_code == 422
    assert_problem(
        seeded.get("/log/proof/inclusion", params={"leaf_index": size, "tree_size": size}), 400
    )


def test_an_event_too_large_for_a_log_entry_is_refused_whole(
    seeded: TestClient, database: Any
) -> None:
    size = _checkpoint(seeded).size
    subject = seed_number("004")
    suffix = subject.rsplit(":", 1)[1]
    big = signed_event(
        new_key(), subject, payload={"claim_id": "x", "verdict": "replicated", "notes": "a" * 70000}
    )
    r = seeded.post(f"/pith/{suffix}/action/replication_record", json=big)
    assert_problem(r, 413, "entry_too_large")
    assert _checkpoint(seeded).size == size
    with database.read() as session:
        n = session.execute(
            text("SELECT count(*) FROM events WHERE event_id = :e"), {"e": big["event_id"]}
        ).scalar()
    assert n == 0


def test_leaves_and_nodes_are_append_only(seeded: TestClient, database: Any) -> None:
    for stmt in (
        "UPDATE tlog_nodes SET hash = hash WHERE level = 0",
        "DELETE FROM tlog_leaves WHERE leaf_index = 0",
    ):
        with pytest.raises(Exception, match="append-only"), database.write() as session:
            session.execute(text(stmt))


def test_witness_cosignatures_publish_a_checkpoint_once_the_quorum_signed(
    settings: Any, database: Any, identity: Any
) -> None:
    from .conftest import make_client
    from .helpers import import_seeds

    witnesses = [SigningKey.generate() for _ in range(3)]
    names = [f"witness.example/w{i}" for i in range(3)]
    vkeys = [
        note.verifier_key(n, bytes(w.verify_key), note.SIG_COSIGNATURE_V1)
        for n, w in zip(names, witnesses, strict=True)
    ]
    configured = settings.model_copy(update={"log_witnesses": vkeys[:2], "log_witness_quorum": 2})
    import_seeds(database, identity)
    with make_client(configured, database) as client:
        assert_problem(client.get("/log/checkpoint"), 404, "no_witnessed_checkpoint")
        raw = client.get("/log/checkpoint/unwitnessed").text
        body = note.parse_note(raw).text

        def cosigned(i: int) -> str:
            return note.add_signatures(
                raw, [note.cosign(body, names[i], witnesses[i], 1_700_000_000)]
            )

        assert_problem(client.post("/log/cosignature", content=cosigned(2)), 403, "unknown_witness")
        r = client.post("/log/cosignature", content=cosigned(0))
        assert r.status_code == 200 and r.json()["cosignatures"] == 1
        assert_problem(client.get("/log/checkpoint"), 404)  # 1 of 2
        assert client.post("/log/cosignature", content=cosigned(1)).json()["cosignatures"] == 2
        published = client.get("/log/checkpoint").text
        parsed = note.parse_note(published)
        cosigners = note.count_cosigners(parsed, [note.Verifier.parse(v) for v in vkeys])
        assert [v.name for v in cosigners] == names[:2]
        # a cosignature on a root this log never had is refused
        fake = note.Checkpoint(parsed.text.split("\n")[0], 1, b"\x00" * 32).text()
        forged = note.Note(
            fake, (note.cosign(fake, names[0], witnesses[0], 1_700_000_000),)
        ).serialize()
        assert_problem(client.post("/log/cosignature", content=forged), 409, "not_this_tree")
    # w0 taken off the list: its stored cosignature neither counts toward the quorum nor shows
    dropped = settings.model_copy(update={"log_witnesses": vkeys[1:], "log_witness_quorum": 2})
    with make_client(dropped, database) as client:
        assert_problem(client.get("/log/checkpoint"), 404, "no_witnessed_checkpoint")
    one = settings.model_copy(update={"log_witnesses": vkeys[1:], "log_witness_quorum": 1})
    with make_client(one, database) as client:
        shown = note.parse_note(client.get("/log/checkpoint").text).signatures
        assert [s.name for s in shown] == [client.get("/log").json()["origin"], names[1]]
    # w1 re-keyed under its name: the line its old key signed is not the new key's
    rekeyed = note.verifier_key(
        names[1], bytes(SigningKey.generate().verify_key), note.SIG_COSIGNATURE_V1
    )
    moved = settings.model_copy(
        update={"log_witnesses": [vkeys[0], rekeyed], "log_witness_quorum": 2}
    )
    with make_client(moved, database) as client:
        assert_problem(client.get("/log/checkpoint"), 404, "no_witnessed_checkpoint")


def test_the_key_document_and_mirror_manifest_name_the_log(seeded: TestClient) -> None:
    doc = seeded.get("/pith-signing-key.json").json()
    manifest = seeded.get("/pith-mirrors.json").json()
    assert doc["transparency_log"] == manifest["transparency_log"]
    entry = doc["transparency_log"]
    verifier = note.Verifier.parse(entry["verifier_key"])
    assert verifier.public_key == bytes.fromhex(doc["public_key_hex"])
    assert verifier.name == entry["origin"] == "testserver/log"  # host of PITH_PUBLIC_URL
    note.open_checkpoint(seeded.get("/log/checkpoint").text, verifier, entry["origin"])


def test_key_rotation_keeps_old_signatures_and_refuses_the_old_keys_later_ones(
    settings: Any, database: Any, identity: Any, tmp_path: Any
) -> None:
    from datetime import timedelta

    from app.core.timeutil import utcnow
    from pith_core.cli import main as pith_main
    from pith_core.keyfile import save_key
    from pith_core.keys import KeyPair
    from pith_core.rotation import sign_rotation
    from pith_core.timefmt import format_utc_second

    from .conftest import make_client
    from .helpers import import_seeds

    import_seeds(database, identity)
    subject = seed_number("000")
    suffix = subject.rsplit(":", 1)[1]
    with make_client(settings, database) as old_client:
        _submit(old_client, subject, 1, None, new_key())
        before = old_client.get(f"/pith/{suffix}/bundle.json").json()
        old_state = old_client.get(f"/pith/{suffix}/state.json").json()["state_sha256"]
    new = KeyPair(SigningKey.generate(), "pith-local-v2")
    save_key(tmp_path / "new-key.json", new)
    statement = sign_rotation(
        identity.key.signing_key,
        identity.key.key_id,
        new.public_key,
        new.key_id,
        takes_over_at=format_utc_second(utcnow() + timedelta(seconds=2)),
        checkpoints_through=before["log"]["tree_size"],
    )
    (tmp_path / "rotation.json").write_text(json.dumps(statement))
    rotated = type(settings)(  # a new Settings: model_copy would keep cached properties
        **{
            **settings.model_dump(),
            "key_file": tmp_path / "new-key.json",
            "key_rotations": [tmp_path / "rotation.json"],
        }
    )
    with make_client(rotated, database) as client:
        doc = client.get("/pith-signing-key.json").json()
        assert doc["public_key_hex"] == new.public_key.hex()
        assert [k["key_id"] for k in doc["keys"]] == [identity.key.key_id, "pith-local-v2"]
        assert (
            doc["keys"][0]["valid_until"]
            == statement["takes_over_at"]
            == doc["keys"][1]["valid_from"]
        )
        # the old key stays pinned: the state of events it signed is unchanged
        assert client.get(f"/pith/{suffix}/state.json").json()["state_sha256"] == old_state
        after = client.get(f"/pith/{suffix}/bundle.json").json()
        (tmp_path / "keys.json").write_text(json.dumps(doc))
        _submit(client, subject, 1, None, new_key())
        grown = client.get(f"/pith/{suffix}/bundle.json").json()
        # the old key after its window, its event dated before the takeover (backdated): the
        # position it would take in the log decides, on both ways in; nothing is stored
        size = client.get("/log").json()["tree_size"]
        backdated = signed_event(identity.key, subject, created_at="2026-11-23T05:00:00Z")
        assert backdated["created_at"] < statement["takes_over_at"]
        r = client.post(f"/pith/{suffix}/action/replication_record", json=backdated)
        assert_problem(r, 422, "key_retired")
        assert_problem(client.post("/api/events", json=[backdated]), 422, "key_retired")
        assert client.get("/log").json()["tree_size"] == size
    # a receipt of the old key, logged now (its record event the next leaf): refused too,
    # whatever signed_at it claims; one of the current key is not judged
    from app.core.problems import Problem
    from app.log.service import refuse_retired_receipt
    from app.registry.service import load_identity

    retired = load_identity(rotated).retired_windows
    old_receipt = {"public_key_fingerprint": identity.key.fingerprint, "signed_at": "2020-01-01"}
    with database.write() as session:
        with pytest.raises(Problem) as refused:
            refuse_retired_receipt(session, retired, old_receipt)
        assert refused.value.status == 422 and refused.value.code == "key_retired"
        refuse_retired_receipt(session, retired, {"public_key_fingerprint": new.fingerprint})
    assert after["log"]["checkpoint"] != before["log"]["checkpoint"]  # now signed by the new key
    old_hex = identity.key.public_key.hex()
    base = ["verify", "--key", old_hex, "--key", PUBLIC_KEY.hex()]
    rot = ["--rotations", str(tmp_path / "keys.json")]
    for n, doc_ in enumerate((before, after, grown)):
        (tmp_path / f"b{n}.json").write_text(json.dumps(doc_))
        assert pith_main([*base, str(tmp_path / f"b{n}.json"), *rot]) == 0, n
    # the old key signing the grown tree after the rotation: valid Ed25519, outside its window
    origin = grown["log"]["origin"]
    cp = note.parse_checkpoint(note.parse_note(grown["log"]["checkpoint"]).text)
    late = note.sign_checkpoint(cp, origin, identity.key.signing_key)
    forged = {**grown, "log": {**grown["log"], "checkpoint": late}}
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    assert pith_main([*base, str(tmp_path / "forged.json")]) == 0  # plain trust can't tell
    assert pith_main([*base, str(tmp_path / "forged.json"), *rot]) == 1  # the windows can


def test_a_revocation_voids_what_the_old_key_logged_after_the_last_good_size(
    settings: Any, database: Any, identity: Any, tmp_path: Any
) -> None:
    """A stolen registry key's strong author claim, logged before the operator revoked the
    key, dated before the takeover: its log position is past the last size known good, so it
    is flagged and counts for nothing."""
    from app.registry.service import load_identity
    from pith_core.keyfile import save_key
    from pith_core.keys import KeyPair
    from pith_core.rotation import sign_rotation

    from .conftest import make_client
    from .helpers import import_seeds

    import_seeds(database, identity)
    subject = seed_number("000")
    suffix = subject.rsplit(":", 1)[1]
    payload = {"author": "A. Author", "strength": "strong"}
    with make_client(settings, database) as client:
        good_size = client.get("/log").json()["tree_size"]
        events = client.get(f"/api/pith-number/{suffix}/events.json").json()["events"]
        tip = max(
            (e for e in events if e["signer"]["public_key_fingerprint"] == identity.fingerprint),
            key=lambda e: e["seq"],
        )  # the stolen key continues the registry's own chain
        stolen = signed_event(
            identity.key, subject, target="author_attestation", payload=payload,
            seq=tip["seq"] + 1, prev=tip["event_id"], created_at="2026-11-23T05:00:00Z",
            signer_type="pith_registry",
        )  # fmt: skip
        r = client.post(f"/pith/{suffix}/action/author_attestation", json=stolen)
        assert r.status_code == 201, r.text
        assert client.get(f"/pith/{suffix}.json").json()["verification_status"][
            "strong_author_claims"
        ] == 1  # fmt: skip
    new = KeyPair(SigningKey.generate(), "pith-local-v2")
    save_key(tmp_path / "new-key.json", new)
    statement = sign_rotation(
        identity.key.signing_key, identity.key.key_id, new.public_key, new.key_id,
        takes_over_at="2026-12-01T00:00:00Z", checkpoints_through=good_size,
        revoked_since="2026-11-01T00:00:00Z",
    )  # fmt: skip
    (tmp_path / "rotation.json").write_text(json.dumps(statement))
    rotated = type(settings)(
        **{
            **settings.model_dump(),
            "key_file": tmp_path / "new-key.json",
            "key_rotations": [tmp_path / "rotation.json"],
        }
    )
    assert load_identity(rotated).retired_windows  # the old key, retired at good_size
    with make_client(rotated, database) as client:
        doc = client.get(f"/pith/{suffix}.json").json()
    assert doc["verification_status"]["strong_author_claims"] == 0
    assert doc["trust"]["outside_key_window"]["event_ids"] == [stolen["event_id"]]
