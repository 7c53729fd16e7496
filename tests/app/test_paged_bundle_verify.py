"""A page of a paged bundle verifies as a partial bundle (its events and record checked, its
state, the whole list's, reported as not checked: not a failure), and the record page's verify
command fetches every page so the state is checked."""

from __future__ import annotations

import copy
import html
import re
from typing import Any

import httpx
from fastapi.testclient import TestClient

from pith_client import PithClient
from pith_core.verify import verify_document

from .conftest import make_client
from .helpers import PUBLIC_KEY, new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]
BUNDLE = f"/pith/{SUFFIX}/bundle.json"


def _keys(client: TestClient) -> list[bytes]:
    return [
        bytes.fromhex(client.get("/pith-signing-key.json").json()["public_key_hex"]),
        PUBLIC_KEY,
    ]


def _through(client: TestClient) -> httpx.MockTransport:
    """pith_client's requests answered by the app under test."""

    def handle(request: httpx.Request) -> httpx.Response:
        r = client.request(
            request.method, str(request.url), headers={"accept-encoding": "identity"}
        )
        return httpx.Response(
            r.status_code, headers={"content-type": "application/json"}, content=r.content
        )

    return httpx.MockTransport(handle)


def test_a_page_is_a_partial_bundle_and_the_whole_bundle_checks_the_state(
    seeded: TestClient, settings: Any, database: Any
) -> None:
    key = new_key("pager")
    pad = {"claim_id": "c", "verdict": "inconclusive", "pad": "x" * 20_000}
    sent = [signed_event(key, FORGE, seq=i + 1, payload=pad) for i in range(6)]
    assert seeded.post("/api/events", json=sent).status_code == 201
    small = settings.model_copy(update={"max_listing_bytes": 64 * 1024})
    with make_client(small, database) as client:
        keys = _keys(client)
        first = client.get(BUNDLE).json()
        assert first["next"]
        later = client.get(BUNDLE, params={"after": first["next"]}).json()
        for page in (first, later):
            kind, checks = verify_document(page, keys)
            assert kind == "bundle" and all(c.passed for c in checks), checks
            merged = next(c for c in checks if c.name == "events and merged state")
            assert "partial bundle" in merged.detail and "state not checked" in merged.detail
        # a page still checks its events: a tampered one fails
        forged = copy.deepcopy(first)
        forged["events"][-1]["payload"]["verdict"] = "replicated"
        assert not all(c.passed for c in verify_document(forged, keys)[1])

        whole = PithClient(str(client.base_url), transport=_through(client)).bundle(SUFFIX)
        kind, checks = verify_document(whole, keys)
        assert all(c.passed for c in checks), checks
        merged = next(c for c in checks if c.name == "events and merged state")
        assert "state not checked" not in merged.detail
        assert whole["state_sha256"] in merged.detail
        # the page's command gives pith verify the bundle's URL (it follows every page), not
        # one page through curl
        page = client.get(f"/pith/{SUFFIX}").text
        command = html.unescape(re.search(r'<pre id="verify-bundle">(.*?)</pre>', page).group(1))
        assert command.startswith("pith verify --key ")
        assert command.endswith(f"{client.base_url}/pith/{SUFFIX}/bundle.json")
        assert "curl" not in command
