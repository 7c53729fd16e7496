"""The transparency log with live `pith serve` processes (SQLite and PostgreSQL): a SIGKILL in
the middle of a stream of events leaves every event with its leaf (both or neither) and `pith log
fsck` re-derives the signed root; a witness cosigns, the registry publishes the cosigned
checkpoint at its quorum, and a registry that shows the witness a rewritten history is caught
with a self-contained split-view proof."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from pith_core import note, tiles
from pith_core.canonical import canonical_json
from pith_core.keyfile import save_key
from pith_core.keys import public_key_from_hex

from .helpers import new_key, seed_number, signed_event
from .live import PITH, LiveServer, free_port, start_server
from .test_e2e import _submitter


def _pith(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PITH), *args], capture_output=True, text=True, timeout=120)


def _entries(c: httpx.Client, size: int) -> list[bytes]:
    out: list[bytes] = []
    for tile in tiles.tiles_of(size):
        if tile.level == tiles.ENTRIES:
            out += tiles.decode_entry_bundle(c.get(f"/log/{tile.path()}").content)
    return out


def test_sigkill_mid_stream_leaves_every_event_with_its_leaf(
    backend: str, fresh_databases, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = fresh_databases.new(backend, migrate=False)
    env = {"PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0"}
    live = start_server(url, tmp_path, **env)
    acked: dict[str, str] = {}
    stop = threading.Event()
    worker = threading.Thread(target=_submitter, args=(live, seed_number("000"), acked, [], stop))
    worker.start()
    deadline = time.monotonic() + 30
    while len(acked) < 25 and time.monotonic() < deadline:
        time.sleep(0.01)
    live.kill()  # a request is in flight: its event row and its leaf commit together or not
    stop.set()
    worker.join(timeout=30)
    assert len(acked) >= 25, live.log.read_text()

    again = start_server(url, tmp_path, **env)
    try:
        fsck = _pith("log", "fsck", again.base_url)
        with again.client() as c:
            feed = c.get("/api/events", params={"after": 0, "limit": 1000}).json()["events"]
            size = c.get("/log").json()["tree_size"]
            entries = _entries(c, size)
    finally:
        again.stop()
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert json.loads(fsck.stdout)["tree_size"] == size
    # one leaf per stored event, in log order, and nothing else
    assert entries == [canonical_json(item["event"]) for item in feed]
    logged = {json.loads(e)["event_id"] for e in entries}
    assert set(acked) <= logged


def _witness(server: LiveServer, tmp: Path, key_hex: str) -> subprocess.CompletedProcess[str]:
    return _pith(
        "witness", server.base_url, "--key", str(tmp / "witness.json"), "--name",
        "witness.test/w1", "--state", str(tmp / "witness-state.json"), "--log-key", key_hex,
        "--rounds", "1",
    )  # fmt: skip


def test_a_witness_cosigns_and_catches_a_rewritten_history(fresh_databases, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = "sqlite"  # client logic; the server side runs on both backends in test_log.py
    save_key(tmp_path / "witness.json", new_key("witness"))
    vkey = _pith(
        "log", "witness-key", "--key", str(tmp_path / "witness.json"), "--name", "witness.test/w1"
    ).stdout.strip()
    env = {
        "PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0",
        "PITH_LOG_ORIGIN": "registry.test/log",
        "PITH_LOG_WITNESSES": json.dumps([vkey]),
        "PITH_LOG_WITNESS_QUORUM": "1",
    }
    subject = seed_number("003")
    suffix = subject.rsplit(":", 1)[1]
    honest = start_server(fresh_databases.new(backend, migrate=False), tmp_path / "a", **env)
    try:
        with honest.client() as c:
            key_hex = c.get("/pith-signing-key.json").json()["public_key_hex"]
            assert c.get("/log/checkpoint").status_code == 404  # nobody cosigned yet
            first = _witness(honest, tmp_path, key_hex)
            assert first.returncode == 0, first.stderr
            published = c.get("/log/checkpoint").text
            cosigned = note.parse_note(published)
            witness = note.Verifier.parse(vkey)
            assert note.count_cosigners(cosigned, [witness]) == [witness]
            key = new_key()
            event = signed_event(key, subject, seq=1)
            assert (
                c.post(f"/pith/{suffix}/action/replication_record", json=event).status_code == 201
            )
            second = _witness(honest, tmp_path, key_hex)  # grew: consistent, cosigned again
            assert second.returncode == 0, second.stderr
            assert (
                json.loads(second.stdout)["tree_size"] == json.loads(first.stdout)["tree_size"] + 1
            )
    finally:
        honest.stop()
    # The same registry key and origin, serving another history (a restored, rewritten store).
    (tmp_path / "b").mkdir()
    copied = tmp_path / "b" / "registry-key.json"
    copied.write_bytes((tmp_path / "a" / "registry-key.json").read_bytes())
    copied.chmod(0o600)
    rewriter = start_server(fresh_databases.new(backend, migrate=False), tmp_path / "b", **env)
    try:
        with rewriter.client() as c:
            assert c.get("/pith-signing-key.json").json()["public_key_hex"] == key_hex
            other = signed_event(new_key(), subject, seq=1)
            c.post(f"/pith/{suffix}/action/replication_record", json=other)
            c.post(
                f"/pith/{suffix}/action/replication_record",
                json=signed_event(new_key(), subject, seq=1),
            )
        caught = _witness(rewriter, tmp_path, key_hex)
    finally:
        rewriter.stop()
    assert caught.returncode == 1, caught.stdout + caught.stderr
    evidence = json.loads(caught.stdout)
    assert evidence["kind"] == "pith_log_split_view"
    # the evidence stands alone: both notes verify under the log key, their proof does not
    for name in ("checkpoint_a", "checkpoint_b"):
        log_verifier = note.Verifier("registry.test/log", public_key_from_hex(key_hex))
        note.open_checkpoint(evidence[name], log_verifier)
    for name in ("checkpoint_a", "checkpoint_b"):
        (tmp_path / name).write_text(evidence[name])
    (tmp_path / "proof.json").write_text(json.dumps(evidence["consistency_proof"]))
    offline = _pith(
        "log", "consistency", str(tmp_path / "checkpoint_a"), str(tmp_path / "checkpoint_b"),
        "--proof", str(tmp_path / "proof.json"), "--key", key_hex,
    )  # fmt: skip
    assert offline.returncode == 1 and "split_view" in offline.stdout


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _static_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m http.server` over `root`, ready."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/log/checkpoint", timeout=2)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("http.server did not start")


def test_two_mirrors_converge_and_a_rewritten_history_is_refused(
    fresh_databases, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    backend = "sqlite"  # client logic; the server side runs on both backends in test_log.py
    env = {"PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0", "PITH_LOG_ORIGIN": "registry.test/log"}
    registry = start_server(fresh_databases.new(backend, migrate=False), tmp_path / "a", **env)
    a, b = tmp_path / "mirror-a", tmp_path / "mirror-b"
    try:
        with registry.client() as c:
            doc = c.get("/pith-signing-key.json").json()
            keys = [
                doc["public_key_hex"],
                *(k["public_key_hex"] for k in doc["trusted_registry_keys"]),
            ]
            key_args = [arg for k in keys for arg in ("--key", k)]
            first = _pith("mirror", "pull", registry.base_url, "--dir", str(a), *key_args)
            assert first.returncode == 0, first.stderr
            subject = seed_number("000")
            suffix = subject.rsplit(":", 1)[1]
            key, prev = new_key(), None
            for seq in (1, 2, 3):
                event = signed_event(key, subject, seq=seq, prev=prev)
                assert (
                    c.post(f"/pith/{suffix}/action/replication_record", json=event).status_code
                    == 201
                )
                prev = event["event_id"]
            again = _pith("mirror", "pull", registry.base_url, "--dir", str(a), *key_args)
            assert again.returncode == 0, again.stderr
            assert json.loads(again.stdout)["new_entries"] == 3
            once = _pith("mirror", "pull", registry.base_url, "--dir", str(b), *key_args)
            assert once.returncode == 0, once.stderr
            state = c.get(f"/pith/{suffix}/state.json").content
            root_line = c.get("/log/checkpoint").text.split("\n")[2]
        assert _tree(a) == _tree(b)  # byte-identical copies
        static = _static_server(b)  # any static web server serves the copy at the same URLs
        try:
            fsck = _pith("log", "fsck", static[1], *key_args)
        finally:
            static[0].kill()
            static[0].wait(timeout=10)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        assert json.loads(fsck.stdout)["root_b64"] == root_line
        assert (a / "pith" / suffix / "state.json").read_bytes() == state  # the registry's state
        assert json.loads(once.stdout)["root"] == root_line
        verify = _pith("verify", str(a / "pith" / suffix / "bundle.json"), *key_args)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        registry.stop()
    copied = tmp_path / "b" / "registry-key.json"
    copied.parent.mkdir()
    copied.write_bytes((tmp_path / "a" / "registry-key.json").read_bytes())
    copied.chmod(0o600)
    rewriter = start_server(fresh_databases.new(backend, migrate=False), tmp_path / "b", **env)
    try:
        with rewriter.client() as c:
            for _ in range(4):
                c.post(
                    f"/pith/{suffix}/action/replication_record",
                    json=signed_event(new_key(), subject, seq=1),
                )
        before = _tree(a)
        caught = _pith("mirror", "pull", rewriter.base_url, "--dir", str(a), *key_args)
    finally:
        rewriter.stop()
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert json.loads(caught.stdout)["kind"] == "pith_log_split_view"
    assert _tree(a) == before  # nothing written


def test_a_bundle_imports_with_its_events_as_log_leaves(tmp_path: Path, fresh_databases) -> None:  # type: ignore[no-untyped-def]
    env = {"PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0"}
    source = start_server(fresh_databases.new("sqlite", migrate=False), tmp_path / "a", **env)
    subject = seed_number("004")
    suffix = subject.rsplit(":", 1)[1]
    try:
        with source.client() as c:
            key_a = c.get("/pith-signing-key.json").json()["public_key_hex"]
            event = signed_event(new_key(), subject, seq=1)
            assert (
                c.post(f"/pith/{suffix}/action/replication_record", json=event).status_code == 201
            )
            bundle = c.get(f"/pith/{suffix}/bundle.json").json()
    finally:
        source.stop()
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    url = fresh_databases.new("sqlite", migrate=False)
    public = "b2d552b68890857171a78b36a5dccf368a953413288c353f7c9d9d6f94b709b3"
    refused = _pith("import", str(tmp_path / "bundle.json"), "--database-url", url)
    assert refused.returncode == 1  # A's registry events do not verify under the public key alone
    imported = _pith(
        "import", str(tmp_path / "bundle.json"), "--database-url", url,
        "--trusted-key", key_a, "--trusted-key", public,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    mirror = start_server(url, tmp_path / "b", PITH_IMPORT_SEEDS_WHEN_EMPTY="false", **env)
    try:
        with mirror.client() as c:
            held = {
                e["event_id"]
                for e in c.get(f"/api/pith-number/{suffix}/events.json").json()["events"]
            }
        fsck = _pith("log", "fsck", mirror.base_url)
    finally:
        mirror.stop()
    assert {e["event_id"] for e in bundle["events"]} <= held  # every event of the bundle, kept
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert json.loads(fsck.stdout)["tree_size"] == len(held)  # each a leaf of B's log
