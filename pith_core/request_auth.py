"""Signed HTTP requests: how a key holder (a GPU worker) proves who sends a request.

No shared secret: the worker signs method, path, a hash of the body, a timestamp and a nonce with
its Ed25519 key, under its own domain prefix (so a request signature never passes as an event
signature or a receipt). The server checks the signature against the key it registered, the clock
skew, and (in its store) that the nonce was not used before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .canonical import canonical_json
from .errors import SignatureError
from .keys import KeyPair, b64decode_strict, b64encode
from .timefmt import format_utc_second, is_utc_second

REQUEST_DOMAIN = b"pith-request-v1\n"
HEADER_KEY = "x-pith-key-fingerprint"
HEADER_TIMESTAMP = "x-pith-timestamp"
HEADER_NONCE = "x-pith-nonce"
HEADER_SIGNATURE = "x-pith-signature"
MAX_SKEW_SECONDS = 300
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def request_digest(method: str, path: str, body: bytes, timestamp: str, nonce: str) -> bytes:
    """The 32 bytes a request signature covers."""
    statement = {
        "method": method.upper(),
        "path": path,
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "timestamp": timestamp,
        "nonce": nonce,
    }
    return hashlib.sha256(canonical_json(statement)).digest()


def sign_request(
    key: KeyPair, method: str, path: str, body: bytes, *, now: datetime, nonce: str
) -> dict[str, str]:
    """Headers that authenticate this request as sent by `key`'s holder."""
    if not _NONCE.fullmatch(nonce):
        raise SignatureError("a nonce is 16-64 characters of [A-Za-z0-9_-]")
    timestamp = format_utc_second(now)
    digest = request_digest(method, path, body, timestamp, nonce)
    return {
        HEADER_KEY: key.fingerprint,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: b64encode(key.signing_key.sign(REQUEST_DOMAIN + digest).signature),
    }


def request_signer(headers: Mapping[str, str]) -> str:
    """The fingerprint a request claims to be signed by (to look its key up)."""
    fp = headers.get(HEADER_KEY)
    if not fp or not re.fullmatch(r"[0-9a-f]{32}", fp):
        raise SignatureError(f"missing or malformed {HEADER_KEY} header")
    return fp


def verify_request(
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    public_key: bytes,
    *,
    now: datetime,
    max_skew_seconds: int = MAX_SKEW_SECONDS,
) -> str:
    """Check a signed request; return its nonce (for the caller's replay check)."""
    timestamp = headers.get(HEADER_TIMESTAMP, "")
    nonce = headers.get(HEADER_NONCE, "")
    if not is_utc_second(timestamp):
        raise SignatureError(f"{HEADER_TIMESTAMP} must be UTC time as YYYY-MM-DDTHH:MM:SSZ")
    if not _NONCE.fullmatch(nonce):
        raise SignatureError(f"{HEADER_NONCE} must be 16-64 characters of [A-Za-z0-9_-]")
    sent = datetime.fromisoformat(timestamp[:-1] + "+00:00")
    skew = abs((now - sent).total_seconds())
    if skew > max_skew_seconds:
        raise SignatureError(
            f"request timestamp is {skew:.0f} s away from the server's clock "
            f"(at most {max_skew_seconds} s)"
        )
    signature = b64decode_strict(headers.get(HEADER_SIGNATURE, ""), HEADER_SIGNATURE)
    digest = request_digest(method, path, body, timestamp, nonce)
    try:
        VerifyKey(public_key).verify(REQUEST_DOMAIN + digest, signature)
    except (BadSignatureError, ValueError) as e:
        raise SignatureError("request signature does not verify under the registered key") from e
    return nonce
