"""End to end: `pith serve` as a real process on a free loopback port, driven over HTTP; the
page's `curl | jq | python3` recipe run for real; a SIGKILL in the middle of a stream of
event submissions."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pith_core.events import verify_event
from pith_core.keys import fingerprint, public_key_from_hex
from pith_core.merge import merge

from .helpers import new_key, seed_hash, seed_number, signed_event
from .live import PITH, LiveServer, start_server

pytestmark = pytest.mark.slow
SEED_IDS = ["000", "001", "002", "003", "004"]


@pytest.fixture(scope="module")
def server(backend: str, fresh_databases, tmp_path_factory) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    url = fresh_databases.new(backend, migrate=False)  # `pith serve` migrates
    url = url.replace("postgresql+psycopg://", "postgresql://")  # as an operator writes it
    live = start_server(url, tmp_path_factory.mktemp(f"serve-{backend}"))
    yield live
    live.stop()


def test_serve_imports_the_seeds_and_shows_them(server: LiveServer) -> None:
    with server.client() as c:
        index = c.get("/")
        assert index.status_code == 200
        for prefix in SEED_IDS:
            number = (
                seed_number(prefix) if prefix != "002" else "pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I"
            )
            suffix = number.rsplit(":", 1)[1]
            assert f"/pith/{suffix}" in index.text
            page = c.get(f"/pith/{suffix}")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            record = c.get(f"/pith/{suffix}.json").json()
            assert record["canonical_sha256"] == seed_hash(prefix)
            assert record["links"]["html"] == f"{server.base_url}/pith/{suffix}"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
@pytest.mark.parametrize("prefix", SEED_IDS)
def test_the_pages_recipe_prints_the_seeds_hash(server: LiveServer, prefix: str) -> None:
    number = seed_number(prefix) if prefix != "002" else "pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I"
    page = httpx.get(f"{server.base_url}/pith/{number.rsplit(':', 1)[1]}").text
    recipe = html.unescape(re.search(r'<pre id="recipe">(.*?)</pre>', page, re.S).group(1))
    assert recipe.startswith(f"curl -sH 'Accept: application/ld+json' {server.base_url}/pith/")
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", recipe], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == seed_hash(prefix)  # the hash the seed file states
    assert recipe.splitlines()[-1] == f"# expect: {seed_hash(prefix)}"


def test_the_pages_verify_command_passes(server: LiveServer) -> None:
    page = httpx.get(f"{server.base_url}/pith/KQGQ3HUF").text
    command = html.unescape(re.search(r'<pre id="verify">(.*?)</pre>', page, re.S).group(1))
    command = command.replace("| pith verify", f"| {PITH} verify")
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "record: verified" in out.stdout


def test_pith_verify_accepts_what_the_server_serves(server: LiveServer, tmp_path: Path) -> None:
    key_hex = httpx.get(f"{server.base_url}/pith-signing-key.json").json()["public_key_hex"]
    record = tmp_path / "record.json"
    record.write_bytes(httpx.get(f"{server.base_url}/pith/GWT7BTE6.json").content)
    assert subprocess.run([str(PITH), "verify", str(record)], capture_output=True).returncode == 0
    state = tmp_path / "state.json"
    state.write_bytes(httpx.get(f"{server.base_url}/pith/KQGQ3HUF/state.json").content)
    ok = subprocess.run([str(PITH), "verify", "--key", key_hex, str(state)], capture_output=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = subprocess.run([str(PITH), "verify", str(state)], capture_output=True)
    assert wrong.returncode == 1  # our receipt is not the public registry's


def test_events_round_trip_over_http(server: LiveServer) -> None:
    subject = seed_number("004")
    suffix = subject.rsplit(":", 1)[1]
    key = new_key()
    with server.client() as c:
        first = signed_event(key, subject, seq=1)
        r = c.post(f"/pith/{suffix}/action/replication_record", json=first)
        assert r.status_code == 201, r.text
        r = c.post(f"/pith/{suffix}/action/replication_record", json=first)
        assert r.status_code == 200
        bad = {**signed_event(key, subject, seq=2), "seq": 3}
        r = c.post(f"/pith/{suffix}/action/replication_record", json=bad)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "urn:pith:problem:event_id_mismatch"
        record = c.get(f"/pith/{suffix}.json").json()
        assert record["verification_status"]["replication_records"] == 1


def _submitter(
    server: LiveServer,
    subject: str,
    acked: dict[str, str],
    states: list[str],
    stop: threading.Event,
) -> None:
    """Submit a chain of events one at a time until the server dies; remember what was acked."""
    suffix = subject.rsplit(":", 1)[1]
    key = new_key("crash-worker")
    prev = None
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        for seq in range(1, 100_000):
            if stop.is_set():
                return
            event = signed_event(key, subject, seq=seq, prev=prev)
            try:
                r = c.post(f"/pith/{suffix}/action/replication_record", json=event)
            except httpx.TransportError:
                return
            if r.status_code != 201:
                return
            acked[event["event_id"]] = json.dumps(event, sort_keys=True)
            states.append(r.json()["event_id"])
            prev = event["event_id"]


@pytest.mark.parametrize("round_", [1, 2])
def test_sigkill_mid_stream_loses_no_acknowledged_event(
    backend: str, fresh_databases, tmp_path: Path, round_: int
) -> None:  # type: ignore[no-untyped-def]
    url = fresh_databases.new(backend, migrate=False)
    env = {"PITH_RATE_LIMIT_WRITES_PER_MINUTE": "0"}
    live = start_server(url, tmp_path, **env)
    subject = seed_number("000")
    acked: dict[str, str] = {}
    states: list[str] = []
    stop = threading.Event()
    worker = threading.Thread(target=_submitter, args=(live, subject, acked, states, stop))
    worker.start()
    deadline = time.monotonic() + 30
    while len(acked) < 20 * round_ and time.monotonic() < deadline:
        time.sleep(0.01)
    live.kill()  # mid-stream: a request is in flight now
    stop.set()
    worker.join(timeout=30)
    assert len(acked) >= 20 * round_, live.log.read_text()

    again = start_server(url, tmp_path, **env)
    try:
        with again.client() as c:
            key = public_key_from_hex(c.get("/pith-signing-key.json").json()["public_key_hex"])
            suffix = subject.rsplit(":", 1)[1]
            stored = c.get(f"/api/pith-number/{suffix}/events.json").json()["events"]
            state = c.get(f"/pith/{suffix}/state.json").json()
            feed = c.get("/api/events", params={"after": 0, "limit": 1000}).json()["events"]
    finally:
        again.stop()
    by_id = {e["event_id"]: e for e in stored}
    for event_id, body in acked.items():  # every acknowledged event, byte for byte
        assert event_id in by_id, f"acknowledged {event_id} lost"
        assert json.dumps(by_id[event_id], sort_keys=True) == body
    ours = [e for e in stored if e["target"] == "replication"]
    assert len(ours) - len(acked) in (0, 1)  # at most the one in flight, committed unacked
    for item in feed:  # no partial row: each stored event is whole and valid
        verify_event(item["event"], {fingerprint(key)})
    assert len(feed) == 10 + len(ours)
    offline = merge(stored, [key], subject=subject)
    assert state == offline
    if len(ours) == len(acked):
        assert set(acked) <= set(state["applied_event_ids"]) and states[-1] in acked
    assert len(state["current"]["replication_records"]) == len(ours)
