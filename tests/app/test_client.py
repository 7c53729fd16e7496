"""The Python client against a live `pith serve` (real HTTP): get, resolve, search, verify
offline, submit, follow the feed, and retries of 429 that honour Retry-After."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from pith_client import PithAPIError, PithClient
from pith_client.client import retry_after_seconds
from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX

from .helpers import new_key, seed_json, signed_event
from .live import PITH, LiveServer, start_server

FORGE = seed_json("000")["pith_number"]
SAGE = seed_json("001")["pith_number"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("client")
    server = start_server(
        f"sqlite:///{work / 'pith.db'}",
        work,
        PITH_RATE_LIMIT_READS_PER_MINUTE="30",
        PITH_TRUST_FORWARDED_FOR="true",  # each test reads as its own client
    )
    yield server
    server.stop()


def _client(live: LiveServer, name: str, **kwargs: object) -> PithClient:
    return PithClient(live.base_url, headers={"x-forwarded-for": name}, **kwargs)  # type: ignore[arg-type]


def test_reads(live: LiveServer) -> None:
    with _client(live, "10.0.0.1") as pith:
        source = seed_json("000")["source"]["id"]
        record = pith.get(source)
        assert record["pith_number"] == FORGE
        assert record["canonical_sha256"] == seed_json("000")["canonical_sha256"]
        assert pith.resolve(arxiv=source).pith_number == FORGE
        assert pith.resolve(doi=f"10.48550/arXiv.{source}").pith_number == FORGE
        found = pith.search("FORGE")
        assert found.total == 1 and found.results[0]["pith_number"] == FORGE
        with pytest.raises(PithAPIError) as missing:
            pith.get("AAAAAAAAAAAAAAAAAAAAAAAAAA")
        assert missing.value.status == 404 and missing.value.code == "not_found"
        with pytest.raises(ValueError):
            pith.resolve()


def test_verify_is_offline_and_catches_a_wrong_key(live: LiveServer) -> None:
    with _client(live, "10.0.0.2") as pith:
        report = pith.verify(FORGE, trust_server_key=True)
        assert report.ok, report.failed
        # by default only the public registry's key: this registry's own events are not trusted
        assert not pith.verify(FORGE).ok
        assert report.kind and len(report.checks) >= 4
        stranger = new_key().public_key
        assert not pith.verify(FORGE, keys=[stranger]).ok


def test_submit_and_follow(live: LiveServer) -> None:
    with _client(live, "10.0.0.3") as pith:
        before = list(pith.follow(after=0, stop_when_idle=True, limit=7))
        indices = [item.log_index for item in before]
        assert indices == sorted(indices) and len(set(indices)) == len(indices) > 0
        event = signed_event(new_key(), FORGE, payload={"claim_id": "c", "verdict": "replicated"})
        first = pith.submit(event)
        assert first.created and first.event_id == event["event_id"] and first.pith_number == FORGE
        assert not pith.submit(event).created  # the same event again: a duplicate, not an error
        after = list(pith.follow(after=indices[-1], stop_when_idle=True))
        assert [item.event["event_id"] for item in after] == [event["event_id"]]
        assert after[0].log_index == first.log_index
        bad = {**event, "signature_b64": "A" * 88}
        with pytest.raises(PithAPIError) as refused:
            pith.submit({**bad, "seq": 2})
        assert 400 <= refused.value.status < 500


def test_429_is_retried_after_retry_after(live: LiveServer) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with _client(live, "10.0.0.4", sleep=sleep, max_retries=10) as pith:
        for _ in range(34):  # 30 a minute, in a burst of 30: the last ones wait
            assert pith.signing_key()
    assert waits and all(1 <= w <= 3 for w in waits), waits
    with _client(live, "10.0.0.4", max_retries=0) as impatient:
        with pytest.raises(PithAPIError) as limited:
            for _ in range(5):
                impatient.signing_key()
        assert limited.value.status == 429 and limited.value.code == "rate_limited"


def test_retry_after_forms() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert retry_after_seconds(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_a_record_name_is_one_path_segment_and_retry_after_is_ascii() -> None:
    from pith_client.client import _suffix, retry_after_seconds

    assert _suffix("pith:2026:../../log/cosignature?") == "..%2F..%2Flog%2Fcosignature%3F"
    assert _suffix("pith:2026:GWT7BTE6QQH6QFVV76TWP23RSF") == "GWT7BTE6QQH6QFVV76TWP23RSF"
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("\u00b2") is None  # a Unicode digit, not a number of seconds


@pytest.fixture(scope="module")
def small_pages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("client-pages")
    server = start_server(
        f"sqlite:///{work / 'pith.db'}",
        work,
        PITH_RATE_LIMIT_READS_PER_MINUTE="0",
        PITH_MAX_LISTING_BYTES="65536",
    )
    yield server
    server.stop()


def _padded_events(subject: str, signer: str) -> list[dict[str, Any]]:
    """Eight events of ~20 kB each: a few fill a 64 kB page (the fixture's byte bound)."""
    key = new_key(signer)
    payload = {"claim_id": "c", "verdict": "inconclusive", "pad": "p" * 20_000}
    return [signed_event(key, subject, seq=i + 1, payload=payload) for i in range(8)]


def test_follow_and_bundle_go_through_pages_that_end_on_the_byte_bound(
    small_pages: LiveServer,
) -> None:
    padded = _padded_events(FORGE, "pager")
    with small_pages.client() as http:
        assert http.post("/api/events", json=padded).status_code == 201
        page = http.get("/api/events", params={"after": 0, "limit": 1000}).json()
        head = page["head"]
        assert page["count"] < 1000 and page["events"][-1]["log_index"] < head  # cut by bytes
    with PithClient(small_pages.base_url) as pith:
        seen = [item.log_index for item in pith.follow(after=0, limit=1000, stop_when_idle=True)]
        assert seen == sorted(set(seen)) and seen[-1] == head
        ids = {item.event["event_id"] for item in pith.follow(after=0, stop_when_idle=True)}
        assert {e["event_id"] for e in padded} <= ids
        bundle = pith.bundle(FORGE)
        assert {e["event_id"] for e in padded} <= {e["event_id"] for e in bundle["events"]}
        assert "next" not in bundle
        report = pith.verify(FORGE, trust_server_key=True)
        assert report.ok, report.failed


def test_pith_verify_of_a_bundle_url_checks_the_whole_paged_bundle(
    small_pages: LiveServer,
) -> None:
    """`pith verify <bundle URL>` (the command record pages show) fetches every page, so the
    merged state is checked; the bytes of one page alone verify only as a partial bundle, and
    a URL that answers 404 is a usage error (exit 2), not a traceback."""
    padded = _padded_events(SAGE, "pager-cli")
    with small_pages.client() as http:
        assert http.post("/api/events", json=padded).status_code == 201
        registry_key = http.get("/pith-signing-key.json").json()["public_key_hex"]
        one_page = http.get(f"/pith/{SAGE}/bundle.json")
        assert "next" in one_page.json()  # the byte bound really pages this bundle
    keys = ["--key", registry_key, "--key", PUBLIC_REGISTRY_KEY_HEX]
    url = f"{small_pages.base_url}/pith/{SAGE}/bundle.json"
    whole = subprocess.run([str(PITH), "verify", "--json", *keys, url], capture_output=True)
    assert whole.returncode == 0, whole.stdout + whole.stderr
    report = json.loads(whole.stdout)
    assert report["ok"] is True and "state not checked" not in json.dumps(report)
    page = subprocess.run(
        [str(PITH), "verify", "--json", *keys, "-"], input=one_page.content, capture_output=True
    )
    assert "state not checked" in page.stdout.decode()
    missing = subprocess.run(
        [str(PITH), "verify", *keys, f"{small_pages.base_url}/pith/AAAAAAAA/bundle.json"],
        capture_output=True,
    )
    assert missing.returncode == 2 and b"cannot read" in missing.stderr
    assert b"Traceback" not in missing.stderr
