"""Receipts: the registry's Ed25519 signature over the 32 raw bytes of a record's digest.

The public registry signs the bare digest (no domain prefix); we keep that form so its receipts
verify here and ours verify there.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .canonical import canonical_sha256
from .errors import SignatureError
from .keys import KeyPair, b64decode_strict, b64encode, fingerprint
from .timefmt import format_utc_micro

BUILDER_VERSION = "pith-number-builder-2026-05-17-v1"
RECEIPT_VERSION = "0.3"


def sign_receipt(
    record: dict[str, Any],
    key: KeyPair,
    *,
    signed_at: datetime,
    first_computed_at: datetime | None = None,
    builder_version: str = BUILDER_VERSION,
) -> dict[str, Any]:
    """A receipt of the public registry's shape for `record`, signed with `key`."""
    digest_hex = canonical_sha256(record)
    computed = format_utc_micro(first_computed_at or signed_at)
    signature = key.signing_key.sign(bytes.fromhex(digest_hex)).signature
    return {
        "kind": "pith_receipt",
        "key_id": key.key_id,
        "algorithm": "ed25519",
        "signed_at": format_utc_micro(signed_at),
        "signature_b64": b64encode(signature),
        "signed_message": "canonical_sha256_bytes",
        "builder_version": builder_version,
        "receipt_version": RECEIPT_VERSION,
        "canonical_sha256": digest_hex,
        "last_reissued_at": computed,
        "signature_status": "signed_v1",
        "first_computed_at": computed,
        "public_key_fingerprint": key.fingerprint,
    }


def verify_receipt(
    receipt: Mapping[str, Any], canonical_sha256_hex: str, public_key: bytes
) -> None:
    """Raise SignatureError unless `receipt` signs `canonical_sha256_hex` under `public_key`."""
    if not isinstance(receipt, Mapping):
        raise SignatureError("receipt must be an object")
    if receipt.get("algorithm") != "ed25519":
        raise SignatureError(f"receipt algorithm {receipt.get('algorithm')!r} is not ed25519")
    if receipt.get("signed_message") != "canonical_sha256_bytes":
        raise SignatureError("receipt does not sign canonical_sha256_bytes")
    if not hmac.compare_digest(str(receipt.get("canonical_sha256", "")), canonical_sha256_hex):
        raise SignatureError(
            f"receipt names digest {receipt.get('canonical_sha256')!r}, "
            f"the record hashes to {canonical_sha256_hex}"
        )
    if receipt.get("public_key_fingerprint") != fingerprint(public_key):
        raise SignatureError(
            f"receipt key fingerprint {receipt.get('public_key_fingerprint')!r} is not the "
            f"trusted key's ({fingerprint(public_key)})"
        )
    signature = b64decode_strict(receipt.get("signature_b64"), "receipt signature_b64")
    if len(signature) != 64:
        raise SignatureError("receipt signature is not 64 bytes")
    try:
        VerifyKey(public_key).verify(bytes.fromhex(canonical_sha256_hex), signature)
    except BadSignatureError as e:
        raise SignatureError("receipt signature does not verify under the trusted key") from e
