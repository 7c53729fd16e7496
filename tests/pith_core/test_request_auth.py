"""Signed worker requests: verify, and refuse every altered part, old timestamps, other keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pith_core import SignatureError
from pith_core.request_auth import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    request_signer,
    sign_request,
    verify_request,
)

from .conftest import new_key

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
NONCE = "n0nce-0123456789abcdef"


def test_round_trip() -> None:
    key = new_key("worker", 3)
    headers = sign_request(
        key, "post", "/api/jobs/lease", b'{"claims":["forge"]}', now=NOW, nonce=NONCE
    )
    assert request_signer(headers) == key.fingerprint
    got = verify_request(
        headers,
        "POST",
        "/api/jobs/lease",
        b'{"claims":["forge"]}',
        key.public_key,
        now=NOW + timedelta(seconds=30),
    )
    assert got == NONCE


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/jobs/lease", b"{}"),
        ("POST", "/api/jobs/other", b"{}"),
        ("POST", "/api/jobs/lease", b'{"x":1}'),
    ],
)
def test_any_change_breaks_the_signature(method: str, path: str, body: bytes) -> None:
    key = new_key("worker", 3)
    headers = sign_request(key, "POST", "/api/jobs/lease", b"{}", now=NOW, nonce=NONCE)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_request(headers, method, path, body, key.public_key, now=NOW)


def test_other_key_nonce_or_timestamp_is_refused() -> None:
    key, other = new_key("worker", 3), new_key("other", 4)
    headers = sign_request(key, "POST", "/p", b"", now=NOW, nonce=NONCE)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_request(headers, "POST", "/p", b"", other.public_key, now=NOW)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_request(
            dict(headers, **{HEADER_NONCE: "another-nonce-value-1"}),
            "POST",
            "/p",
            b"",
            key.public_key,
            now=NOW,
        )
    with pytest.raises(SignatureError, match="clock"):
        verify_request(headers, "POST", "/p", b"", key.public_key, now=NOW + timedelta(hours=1))
    with pytest.raises(SignatureError, match="UTC"):
        verify_request(
            dict(headers, **{HEADER_TIMESTAMP: "now"}), "POST", "/p", b"", key.public_key, now=NOW
        )
    with pytest.raises(SignatureError, match="base64"):
        verify_request(
            dict(headers, **{HEADER_SIGNATURE: "***"}), "POST", "/p", b"", key.public_key, now=NOW
        )
    with pytest.raises(SignatureError, match="nonce"):
        sign_request(key, "POST", "/p", b"", now=NOW, nonce="short")
