"""C2SP tlog-witness (issue 15): `pith witness serve` answers add-checkpoint as the spec says
(409 with its size on a stale old size, 422 on a proof that does not verify, 403 without the
log's signature, 404 for an unknown log, 400 for a malformed body), checking consistency before
it cosigns; and a live registry pushes each new checkpoint to its configured witness and
publishes it once cosigned (uvicorn on loopback, httpx, both databases)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from nacl.signing import SigningKey
from starlette.testclient import TestClient

from app.log.witness import Witness, WitnessState, witness_app
from pith_core import note, tlog
from pith_core.keyfile import save_key
from pith_core.keys import KeyPair
from pith_core.logcheck import SIZE_MEDIA_TYPE, add_checkpoint_body

from .helpers import new_key, seed_number, signed_event
from .live import PITH, free_port, start_server

ORIGIN = "log.example/test"
NAME = "witness.example/w1"


class _Log:
    """A log of n leaves, signed as the registry signs: proofs and checkpoints at any size."""

    def __init__(self, key: SigningKey, leaves: int) -> None:
        self.key = key
        self.hashes = [tlog.leaf_hash(b"entry %d" % i) for i in range(leaves)]
        nodes, _ = tlog.append_leaves(0, [], self.hashes)
        self.nodes = {(level, idx): h for level, idx, h in nodes}

    def checkpoint(self, size: int, key: SigningKey | None = None) -> str:
        root = tlog.tree_root(self.hashes[:size])
        return note.sign_checkpoint(note.Checkpoint(ORIGIN, size, root), ORIGIN, key or self.key)

    def proof(self, old: int, size: int) -> list[str]:
        ranges = tlog.consistency_ranges(old, size)
        return [base64.b64encode(h).decode() for h in tlog.build_proof(ranges, self.nodes.get)]


def _witness(tmp_path: Path, log_key: SigningKey) -> tuple[TestClient, SigningKey, Path]:
    key = SigningKey.generate()
    logs = {ORIGIN: note.Verifier(ORIGIN, bytes(log_key.verify_key))}
    state = tmp_path / "witness-state.json"
    app = witness_app(Witness(NAME, key, logs, WitnessState(state), clock=lambda: 1_800_000_000))
    return TestClient(app), key, state


def test_add_checkpoint_cosigns_only_what_extends_the_last_it_cosigned(tmp_path: Path) -> None:
    log = _Log(SigningKey.generate(), 40)
    client, key, state = _witness(tmp_path, log.key)

    def post(old: int, proof: list[str], checkpoint: str) -> httpx.Response:
        return client.post("/add-checkpoint", content=add_checkpoint_body(old, proof, checkpoint))

    first = log.checkpoint(10)
    r = post(0, [], first)
    assert r.status_code == 200, r.text
    cosigned = note.parse_note(first + r.text)  # the answer: signature lines to append
    verifier = note.Verifier(NAME, bytes(key.verify_key), note.SIG_COSIGNATURE_V1)
    assert [v.name for v in note.count_cosigners(cosigned, [verifier])] == [NAME]
    assert note.cosignature_time(cosigned.signatures[-1]) == 1_800_000_000
    # a stale old size: 409, the size it holds as text/x.tlog.size
    stale = post(0, [], log.checkpoint(20))
    assert stale.status_code == 409
    assert stale.headers["content-type"].startswith(SIZE_MEDIA_TYPE) and stale.text == "10\n"
    # a proof that does not verify (from the wrong size's proof): 422, nothing recorded
    assert post(10, log.proof(11, 20), log.checkpoint(20)).status_code == 422
    # another history at size 20 (a rewritten leaf) with a proof of its own: 422
    forked = _Log(log.key, 40)
    forked.hashes[3] = tlog.leaf_hash(b"rewritten")
    forked.nodes = {(lv, ix): h for lv, ix, h in tlog.append_leaves(0, [], forked.hashes)[0]}
    assert post(10, forked.proof(10, 20), forked.checkpoint(20)).status_code == 422
    # the same size again: equal roots cosign, another root is a 409
    assert post(10, [], first).status_code == 200
    assert post(10, [], forked.checkpoint(10)).status_code == 409
    # the right proof: cosigned, recorded before the answer
    assert post(10, log.proof(10, 20), log.checkpoint(20)).status_code == 200
    held = json.loads(state.read_text())[ORIGIN]
    assert held["size"] == 20 and held["checkpoint"] == log.checkpoint(20)
    # not the log's key: 403; an unknown origin: 404; old above the size, malformed: 400
    other = SigningKey.generate()
    assert post(20, log.proof(20, 30), log.checkpoint(30, other)).status_code == 403
    stranger = note.sign_checkpoint(note.Checkpoint("other.example/log", 5, bytes(32)),
                                    "other.example/log", log.key)  # fmt: skip
    assert post(0, [], stranger).status_code == 404
    assert post(30, [], log.checkpoint(20)).status_code == 400
    for body in (b"old 01\n\n" + first.encode(), b"new 0\n\n", b"old 0\nnot base64\n\nx\n"):
        assert client.post("/add-checkpoint", content=body).status_code == 400
    # a restarted witness keeps what it cosigned
    again, _, _ = _witness(tmp_path, log.key)
    assert (
        again.post("/add-checkpoint", content=add_checkpoint_body(0, [], log.checkpoint(30))).text
        == "20\n"
    )


def _serve_witness(tmp_path: Path, registry_vkey: str, key_file: Path) -> tuple[Any, str]:
    port = free_port()
    log = (tmp_path / "witness.log").open("wb")
    process = subprocess.Popen(
        [str(PITH), "witness", "serve", "--key", str(key_file), "--name", NAME,
         "--log", registry_vkey, "--state", str(tmp_path / "w-state.json"),
         "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"{url}/add-checkpoint", content=b"", timeout=2)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise RuntimeError((tmp_path / "witness.log").read_text())


def _published(c: httpx.Client, size: int, witness: note.Verifier) -> note.Note:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = c.get("/log/checkpoint")
        if r.status_code == 200:
            parsed = note.parse_note(r.text)
            if note.parse_checkpoint(parsed.text).size == size:
                assert note.count_cosigners(parsed, [witness]) == [witness]
                return parsed
        time.sleep(0.1)
    raise AssertionError(f"no cosigned checkpoint of size {size}: {r.status_code} {r.text}")


def test_a_cosigned_size_is_durable_before_the_answer_leaves(tmp_path: Path, monkeypatch) -> None:
    """The state file and its directory are fsynced before the cosignature is answered (a
    witness that lost a cosigned size in a power loss could cosign a fork of it later), and the
    request's work runs off the event loop (no running loop in the thread that fsyncs)."""
    import asyncio

    import app.log.witness as witness_module

    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def spy(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), on_loop()))
        real_fsync(fd)

    monkeypatch.setattr(witness_module.os, "fsync", spy)
    log = _Log(SigningKey.generate(), 4)
    client, _key, state = _witness(tmp_path, log.key)
    r = client.post("/add-checkpoint", content=add_checkpoint_body(0, [], log.checkpoint(2)))
    assert r.status_code == 200, r.text
    assert [p for p, _ in synced] == [str(state.with_suffix(".tmp")), str(tmp_path)]
    assert not any(loop for _, loop in synced)
    assert json.loads(state.read_text())[ORIGIN]["size"] == 2


def test_the_registry_pushes_each_new_checkpoint_to_its_witness(
    backend: str, fresh_databases, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    registry = KeyPair(SigningKey.generate(), "pith-test")
    save_key(tmp_path / "registry-key.json", registry)
    witness = KeyPair(SigningKey.generate(), "w1")
    save_key(tmp_path / "witness-key.json", witness)
    wvkey = note.verifier_key(NAME, witness.public_key, note.SIG_COSIGNATURE_V1)
    log_vkey = note.verifier_key(ORIGIN, registry.public_key)
    process, url = _serve_witness(tmp_path, log_vkey, tmp_path / "witness-key.json")
    try:
        live = start_server(
            fresh_databases.new(backend, migrate=False),
            tmp_path,
            PITH_LOG_ORIGIN=ORIGIN,
            PITH_LOG_WITNESSES=json.dumps([wvkey]),
            PITH_LOG_WITNESS_QUORUM="1",
            PITH_LOG_WITNESS_URLS=json.dumps({NAME: url}),
            PITH_LOG_WITNESS_PUSH_SECONDS="0.2",
        )
        try:
            verifier = note.Verifier.parse(wvkey)
            with live.client() as c:
                assert c.get("/log").json()["verifier_key"] == log_vkey
                seeded = c.get("/log").json()["tree_size"]
                _published(c, seeded, verifier)  # the seeds' tree, pushed from size 0
                subject = seed_number("000")
                event = signed_event(new_key(), subject)
                r = c.post(f"/pith/{subject.rsplit(':', 1)[1]}/action/replication_record",
                           json=event)  # fmt: skip
                assert r.status_code == 201, r.text
                grown = _published(c, seeded + 1, verifier)  # pushed with a consistency proof
            held = json.loads((tmp_path / "w-state.json").read_text())[ORIGIN]
            assert held["size"] == seeded + 1
            assert note.parse_note(held["checkpoint"]).text == grown.text
        finally:
            live.stop()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
