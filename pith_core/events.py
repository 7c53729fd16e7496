"""Signed events: every fact about a paper after its record.

`event_id` = `sha256:` + hex SHA-256 of the canonical JSON of the event without `event_id` and
`signature_b64`. The signature is Ed25519 over `pith-event-v1\\n` + the 32 digest bytes: the domain
prefix keeps an event signature from ever passing as a receipt (which signs the bare digest).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from .canonical import (
    CanonicalError,
    canonical_json,
    canonical_json_prechecked,
    canonical_sha256,
    check_canonical,
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
            f"replication payload verdict must be one of {sorted(REPLICATION_VERDICTS)}",
        )


def verify_event(
    event: Any,
    registry_fingerprints: Collection[str] = (),
    *,
    already_canonical: bool = False,
    verify_keys: dict[bytes, VerifyKey] | None = None,
) -> dict[str, Any]:
    """Return `event` if valid; raise EventError(reason, detail) naming the first failure.

    Checks, in order: shape, canonical profile, field types, signer key and fingerprint, event_id,
    signature, registry-only targets signed by a pinned registry key, payload shape.
    `verify_keys` is a cache the caller may pass to reuse parsed public keys across events.
    """
    _require(isinstance(event, dict), "bad_shape", "an event is a JSON object")
    keys = event.keys()
    if keys != EVENT_FIELDS:
        missing, extra = sorted(EVENT_FIELDS - keys), sorted(keys - EVENT_FIELDS)
        raise EventError("bad_shape", f"missing fields {missing}, unexpected fields {extra}")
    if not already_canonical:
        try:
            check_canonical(event)
        except CanonicalError as e:
            raise EventError("not_canonical", str(e)) from e
    target, etype = event["target"], event["event_type"]
    _require(target in EVENT_TYPES, "bad_shape", f"unknown target {target!r}")
    _require(
        EVENT_TYPES[target] == etype,
        "bad_shape",
        f"event_type {etype!r} does not go with target {target!r} "
        f"(expected {EVENT_TYPES[target]!r})",
    )
    subject = event["subject_pith_number"]
    _require(is_pith_number(subject), "bad_shape", "subject_pith_number is not a Pith number")
    _require(
        is_utc_second(event["created_at"]),
        "bad_shape",
        "created_at must be UTC time as YYYY-MM-DDTHH:MM:SSZ",
    )
    seq = event["seq"]
    _require(
        type(seq) is int and 1 <= seq <= MAX_SEQ, "bad_shape", "seq must be a positive integer"
    )
    prev = event["prev"]
    _require(
        prev is None or (isinstance(prev, str) and _EVENT_ID.fullmatch(prev) is not None),
        "bad_shape",
        "prev must be null or sha256:<64 hex>",
    )
    _require(isinstance(event["payload"], dict), "bad_shape", "payload must be an object")
    _require(isinstance(event["event_id"], str), "bad_shape", "event_id must be a string")
    signer = event["signer"]
    _require(
        isinstance(signer, dict) and signer.keys() == SIGNER_FIELDS,
        "bad_signer",
        f"signer must hold exactly {sorted(SIGNER_FIELDS)}",
    )
    for k in ("key_id", "signer_id", "signer_type"):
        _require(
            isinstance(signer[k], str) and signer[k] != "", "bad_signer", f"signer.{k} is empty"
        )
    try:
        public_key = b64decode_strict(signer["public_key_b64"], "signer.public_key_b64")
        _require(len(public_key) == 32, "bad_signer", "signer public key is not 32 bytes")
        fp = fingerprint(public_key)
    except SignatureError as e:
        raise EventError("bad_signer", str(e)) from e
    _require(
        signer["public_key_fingerprint"] == fp,
        "fingerprint_mismatch",
        f"public_key_fingerprint {signer['public_key_fingerprint']!r} is not the key's ({fp})",
    )
    body = {k: v for k, v in event.items() if k != "event_id" and k != "signature_b64"}
    digest = hashlib.sha256(canonical_json_prechecked(body)).digest()
    _require(
        event["event_id"] == "sha256:" + digest.hex(),
        "event_id_mismatch",
        f"event_id does not recompute (the content hashes to sha256:{digest.hex()})",
    )
    try:
        signature = b64decode_strict(event["signature_b64"], "signature_b64")
    except SignatureError as e:
        raise EventError("bad_signature", str(e)) from e
    _require(len(signature) == 64, "bad_signature", "signature is not 64 bytes")
    vk = verify_keys.get(public_key) if verify_keys is not None else None
    if vk is None:
        vk = VerifyKey(public_key)
        if verify_keys is not None:
            verify_keys[public_key] = vk
    try:
        vk.verify(EVENT_DOMAIN + digest, signature)
    except BadSignatureError as e:
        raise EventError("bad_signature", "signature does not verify under the signer's key") from e
    if target in REGISTRY_ONLY_TARGETS:
        _require(
            fp in registry_fingerprints,
            "not_registry_signed",
            f"target {target!r} must be signed by a pinned registry key; {fp} is not one",
        )
    _check_payload(target, subject, event["payload"])
    return event
