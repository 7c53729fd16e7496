"""Signed events: every fact about a paper after its record.

`event_id` = `sha256:` + hex SHA-256 of the canonical JSON of the event without `event_id` and
`signature_b64`. The signature is Ed25519 over `pith-event-v1\\n` + the 32 digest bytes: the domain
prefix keeps an event signature from ever passing as a receipt (which signs the bare digest).
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Collection, Container, Mapping
from dataclasses import dataclass
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .canonical import (
    CanonicalError,
    canonical_json,
    canonical_json_prechecked,
    canonical_sha256,
    check_canonical,
    in_profile,
)
from .errors import EventError, RecordError, SignatureError
from .keys import KeyPair, b64decode_strict, b64encode, fingerprint
from .number import is_pith_number, pith_number
from .record import validate_canonical_record
from .timefmt import is_utc_second

EVENT_DOMAIN = b"pith-event-v1\n"

# target -> event_type. The target says where an event lands in the merged state.
EVENT_TYPES: dict[str, str] = {
    "record": "record_created",
    "graph": "graph_snapshot",
    "alias": "alias",
    "author_attestation": "author_attestation",
    "timestamp_anchor": "timestamp_anchor",
    "storage_attestation": "storage_attestation",
    "citation_signature": "citation_signature",
    "replication": "replication_record",
    "correction": "correction",
    "mirror_hint": "mirror_hint",
}
TARGET_OF_EVENT_TYPE = {v: k for k, v in EVENT_TYPES.items()}
REGISTRY_ONLY_TARGETS = frozenset({"record", "graph", "alias"})
REPLICATION_VERDICTS = frozenset({"replicated", "not_replicated", "inconclusive", "error"})
# written once: _require's detail is built for every event, failing or not
_VERDICT_DETAIL = f"replication payload verdict must be one of {sorted(REPLICATION_VERDICTS)}"

SIGNED_FIELDS = frozenset(
    {
        "event_type",
        "subject_pith_number",
        "target",
        "created_at",
        "seq",
        "prev",
        "signer",
        "payload",
    }
)
EVENT_FIELDS = SIGNED_FIELDS | {"event_id", "signature_b64"}
SIGNER_FIELDS = frozenset(
    {"key_id", "public_key_b64", "public_key_fingerprint", "signer_id", "signer_type"}
)
_EVENT_ID = re.compile(r"sha256:[0-9a-f]{64}")
MAX_SEQ = 2**53 - 1


def is_event_id(value: object) -> bool:
    return isinstance(value, str) and _EVENT_ID.fullmatch(value) is not None


def signer_info(key: KeyPair, *, signer_id: str, signer_type: str) -> dict[str, str]:
    """The `signer` object of events signed with `key`."""
    return {
        "key_id": key.key_id,
        "public_key_b64": b64encode(key.public_key),
        "public_key_fingerprint": key.fingerprint,
        "signer_id": signer_id,
        "signer_type": signer_type,
    }


def build_event(
    *,
    target: str,
    subject: str,
    created_at: str,
    seq: int,
    prev: str | None,
    signer: Mapping[str, str],
    payload: Mapping[str, Any],
) -> dict[str, Any]:
    """An unsigned event (no `event_id`, no `signature_b64`)."""
    if target not in EVENT_TYPES:
        raise EventError("unknown_target", f"{target!r} is not one of {sorted(EVENT_TYPES)}")
    return {
        "event_type": EVENT_TYPES[target],
        "subject_pith_number": subject,
        "target": target,
        "created_at": created_at,
        "seq": seq,
        "prev": prev,
        "signer": dict(signer),
        "payload": dict(payload),
    }


def event_digest(event: Mapping[str, Any]) -> bytes:
    """The 32-byte digest an event's id names and its signature signs."""
    body = {k: v for k, v in event.items() if k != "event_id" and k != "signature_b64"}
    return hashlib.sha256(canonical_json(body)).digest()


def sign_event(unsigned: Mapping[str, Any], key: KeyPair) -> dict[str, Any]:
    """`unsigned` with its `event_id` and signature; the signer must be `key`."""
    signer = unsigned.get("signer") or {}
    if signer.get("public_key_fingerprint") != key.fingerprint:
        raise SignatureError("the event's signer is not the key signing it")
    digest = event_digest(unsigned)
    event = dict(unsigned)
    event["event_id"] = "sha256:" + digest.hex()
    event["signature_b64"] = b64encode(key.signing_key.sign(EVENT_DOMAIN + digest).signature)
    return event


def _require(cond: bool, reason: str, detail: str) -> None:
    if not cond:
        raise EventError(reason, detail)


def _check_payload(target: str, subject: str, payload: Mapping[str, Any]) -> None:
    if target == "record":
        record = payload.get("canonical_record")
        try:
            validate_canonical_record(record)
        except RecordError as e:
            raise EventError("bad_payload", f"record payload: {e}") from e
        digest = canonical_sha256(record)
        _require(
            payload.get("canonical_sha256") == digest,
            "bad_payload",
            "record payload's canonical_sha256 is not the hash of its canonical_record",
        )
        _require(
            pith_number(record) == subject,
            "bad_payload",
            f"record payload is the record of {pith_number(record)}, not of {subject}",
        )
    elif target == "graph":
        _require(
            isinstance(payload.get("graph_snapshot"), dict),
            "bad_payload",
            "graph payload must hold a graph_snapshot object",
        )
    elif target == "alias":
        for k in ("alias_kind", "alias_value"):
            v = payload.get(k)
            _require(isinstance(v, str) and v != "", "bad_payload", f"alias payload needs {k}")
    elif target == "replication":
        _require(
            isinstance(payload.get("claim_id"), str) and payload["claim_id"] != "",
            "bad_payload",
            "replication payload needs a claim_id string",
        )
        _require(
            payload.get("verdict") in REPLICATION_VERDICTS,
            "bad_payload",
            _VERDICT_DETAIL,
        )


@dataclass(frozen=True)
class SignerKey:
    """A signer's public key, parsed once: raw bytes, fingerprint and verifier."""

    raw: bytes
    fingerprint: str
    verifier: VerifyKey


def _decoded(text: Any, field: str, size: int, reason: str, what: str) -> bytes:
    """The `size` bytes the base64 `text` of `field` encodes; EventError(reason) otherwise."""
    try:
        raw = b64decode_strict(text, field)
    except SignatureError as e:
        raise EventError(reason, str(e)) from e
    if len(raw) != size:
        raise EventError(reason, f"{what} is not {size} bytes")
    return raw


def parse_signer_key(public_key_b64: Any) -> SignerKey:
    raw = _decoded(public_key_b64, "signer.public_key_b64", 32, "bad_signer", "signer public key")
    return SignerKey(raw, fingerprint(raw), VerifyKey(raw))


def _check_fields(event: dict[str, Any]) -> None:
    target, etype = event["target"], event["event_type"]
    if not isinstance(target, str) or not isinstance(etype, str):
        raise EventError("bad_shape", "target and event_type must be strings")
    expected = EVENT_TYPES.get(target)
    if expected != etype:
        if expected is None:
            raise EventError("bad_shape", f"unknown target {target!r}")
        raise EventError(
            "bad_shape",
            f"event_type {etype!r} does not go with target {target!r} (expected {expected!r})",
        )
    if not is_pith_number(event["subject_pith_number"]):
        raise EventError("bad_shape", "subject_pith_number is not a Pith number")
    if not is_utc_second(event["created_at"]):
        raise EventError("bad_shape", "created_at must be UTC time as YYYY-MM-DDTHH:MM:SSZ")
    seq = event["seq"]
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        raise EventError("bad_shape", "seq must be a positive integer")
    prev = event["prev"]
    if prev is not None and not (isinstance(prev, str) and _EVENT_ID.fullmatch(prev)):
        raise EventError("bad_shape", "prev must be null or sha256:<64 hex>")
    if type(event["payload"]) is not dict:
        raise EventError("bad_shape", "payload must be an object")
    if not isinstance(event["event_id"], str) or not isinstance(event["signature_b64"], str):
        raise EventError("bad_shape", "event_id and signature_b64 must be strings")
    signer = event["signer"]
    if type(signer) is not dict or signer.keys() != SIGNER_FIELDS:
        raise EventError("bad_signer", f"signer must hold exactly {sorted(SIGNER_FIELDS)}")
    for k in ("key_id", "signer_id", "signer_type"):
        if not isinstance(signer[k], str) or not signer[k]:
            raise EventError("bad_signer", f"signer.{k} must be a non-empty string")


def _signature_bytes(text: str) -> bytes:
    """The 64 bytes `signature_b64` encodes: standard base64 with padding, in its one canonical
    form. The usual text is taken without a re-encode: 88 characters ending `==`, the one before
    them one of `AQgw` (its four unused bits zero) is canonical once it decodes strictly."""
    if len(text) == 88 and text.endswith("==") and text[85] in "AQgw":
        try:
            return binascii.a2b_base64(text, strict_mode=True)
        except ValueError:  # (binascii.Error is one) the general path names what is wrong
            pass
    return _decoded(text, "signature_b64", 64, "bad_signature", "signature")


def verify_event(
    event: Any,
    registry_fingerprints: Collection[str] = (),
    *,
    signer_keys: dict[str, SignerKey] | None = None,
    verified: Container[tuple[bytes, str]] = frozenset(),
) -> dict[str, Any]:
    """Return `event` if valid; raise EventError(reason, detail) naming the first failure.

    Checks, in order: fields (bad_shape, bad_signer), the payload and signer inside the canonical
    profile (not_canonical), signer key and fingerprint (bad_signer, fingerprint_mismatch),
    event_id (event_id_mismatch), signature (bad_signature), registry-only targets signed by a
    pinned registry key (not_registry_signed), payload shape (bad_payload).
    Two caches a caller may pass across many events: `signer_keys`, each signer's parsed key;
    `verified`, (digest, signature) pairs whose signature already verified (the digest covers the
    signer's key, so an exact copy needs no second Ed25519 check); it is only read.
    """
    if type(event) is not dict:
        raise EventError("bad_shape", "an event is a JSON object")
    if event.keys() != EVENT_FIELDS:
        keys = event.keys()
        missing, extra = sorted(EVENT_FIELDS - keys), sorted(keys - EVENT_FIELDS)
        raise EventError("bad_shape", f"missing fields {missing}, unexpected fields {extra}")
    _check_fields(event)  # every top-level field and the signer are now of known JSON types
    if not in_profile(event["payload"]):
        try:
            check_canonical(event["payload"], "$.payload")
        except CanonicalError as e:
            raise EventError("not_canonical", str(e)) from e
    body = dict(event)  # (a copy and two deletions: a fifth of a comprehension's time)
    del body["event_id"], body["signature_b64"]
    try:
        body_bytes = canonical_json_prechecked(body)
    except UnicodeEncodeError as e:  # a lone surrogate in a signer string
        raise EventError("not_canonical", f"string holds a lone surrogate: {e.reason}") from e
    signer = event["signer"]
    b64 = signer["public_key_b64"]
    if not isinstance(b64, str):  # (what parse_signer_key says too, before any cache look-up)
        raise EventError("bad_signer", "signer.public_key_b64 must be a base64 string")
    key = signer_keys.get(b64) if signer_keys is not None else None
    if key is None:
        key = parse_signer_key(b64)
        if signer_keys is not None:
            signer_keys[b64] = key
    if signer["public_key_fingerprint"] != key.fingerprint:
        raise EventError(
            "fingerprint_mismatch",
            f"public_key_fingerprint {signer['public_key_fingerprint']!r} is not the key's "
            f"({key.fingerprint})",
        )
    digest = hashlib.sha256(body_bytes).digest()
    if event["event_id"] != "sha256:" + digest.hex():
        raise EventError(
            "event_id_mismatch",
            f"event_id does not recompute (the content hashes to sha256:{digest.hex()})",
        )
    signature_b64 = event["signature_b64"]
    if (digest, signature_b64) not in verified:
        signature = _signature_bytes(signature_b64)
        try:
            key.verifier.verify(EVENT_DOMAIN + digest, signature)
        except BadSignatureError as e:
            raise EventError(
                "bad_signature", "signature does not verify under the signer's key"
            ) from e
    target = event["target"]
    if target in REGISTRY_ONLY_TARGETS and key.fingerprint not in registry_fingerprints:
        raise EventError(
            "not_registry_signed",
            f"target {target!r} must be signed by a pinned registry key; "
            f"{key.fingerprint} is not one",
        )
    _check_payload(target, event["subject_pith_number"], event["payload"])
    return event
