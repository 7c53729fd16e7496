"""The deterministic merge: one subject's events, as a set, into its state.

Validity first, then deduplication (valid events by `event_id`, invalid ones by their whole
canonical bytes, so a tampered copy reusing a real id never hides the real event), equivocations
set aside with their proof, the rest applied in (`created_at`, `event_id`) order. The state depends
only on the set of events: any order, duplication or split across mirrors gives the same bytes.

An invalid event is listed by the SHA-256 of its canonical bytes with a reason code only (never
free text, which would make the state's hash depend on an implementation's wording). The code is
the first failing check, in the order of `events.verify_event`: bad_shape, not_canonical,
bad_signer, fingerprint_mismatch, event_id_mismatch, bad_signature, not_registry_signed,
bad_payload; then wrong_subject.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from .canonical import CanonicalError, canonical_json, canonical_json_prechecked, canonical_sha256
from .errors import EventError, PithError
from .events import SignerKey, is_event_id, verify_event
from .keys import fingerprint
from .number import record_aliases

STATE_TYPE = "pith_open_graph_state"
STATE_VERSION = "1.0"
MERGE_VERSION = "pith-open-graph-merge-v1"

_BY_ID = itemgetter("event_id")

# target -> its list under `current` (record and alias are special: see _current)
STATE_LISTS: dict[str, str] = {
    "graph": "graph_snapshots",
    "author_attestation": "author_attestations",
    "timestamp_anchor": "timestamp_anchors",
    "storage_attestation": "storage_attestations",
    "citation_signature": "citation_signatures",
    "replication": "replication_records",
    "correction": "corrections",
    "mirror_hint": "mirror_hints",
}


def _identity_bytes(event: Any) -> bytes:
    """What an invalid event is deduplicated by: its canonical bytes, else a stable dump."""
    try:
        return canonical_json(event)
    except CanonicalError:
        pass
    try:
        return json.dumps(event, sort_keys=True, ensure_ascii=True, default=repr).encode()
    except (TypeError, ValueError, RecursionError):
        return repr(event).encode("utf-8", "backslashreplace")


def _subject_of(events: list[Any]) -> str:
    subjects = {
        e.get("subject_pith_number")
        for e in events
        if isinstance(e, dict) and isinstance(e.get("subject_pith_number"), str)
    }
    if len(subjects) != 1:
        raise PithError(
            "cannot tell which subject to merge: the events name "
            f"{len(subjects)} subjects; pass the subject explicitly"
        )
    return subjects.pop()


def _entry(event: dict[str, Any]) -> dict[str, Any]:
    s = event["signer"]
    return {
        "event_id": event["event_id"],
        "target": event["target"],
        "created_at": event["created_at"],
        "signer": {
            "key_id": s["key_id"],
            "public_key_fingerprint": s["public_key_fingerprint"],
            "signer_id": s["signer_id"],
            "signer_type": s["signer_type"],
        },
        "payload": event["payload"],
    }


def _current(applied: list[dict[str, Any]]) -> dict[str, Any]:
    """The `current` part of a state from the entries of the applied events, in apply order."""
    current: dict[str, Any] = {
        "canonical_record": None,
        "source_aliases": [],
        **{name: [] for name in STATE_LISTS.values()},
        "record_created": None,
    }
    aliases: dict[tuple[str, str], str] = {}
    for entry in applied:
        target = entry["target"]
        if target == "record":
            if current["record_created"] is None:
                current["record_created"] = entry
                record = entry["payload"]["canonical_record"]
                current["canonical_record"] = record
                for kind, value in record_aliases(record):
                    aliases.setdefault((kind, value), entry["created_at"])
        elif target == "alias":
            key = (entry["payload"]["alias_kind"], entry["payload"]["alias_value"])
            aliases.setdefault(key, entry["created_at"])
        else:
            current[STATE_LISTS[target]].append(entry)
    current["source_aliases"] = [
        {"alias_kind": k, "alias_value": v, "created_at": at}
        for (k, v), at in sorted(aliases.items())
    ]
    return current


def merge(
    events: Iterable[Any],
    registry_keys: Iterable[bytes],
    subject: str | None = None,
    *,
    verified: set[tuple[bytes, str]] | None = None,
) -> dict[str, Any]:
    """The merged state of `subject` (inferred when all events name one) from `events` (see
    `merge_sealed`, which also returns the state's canonical bytes)."""
    return merge_sealed(events, registry_keys, subject, verified=verified)[0]


def merge_sealed(
    events: Iterable[Any],
    registry_keys: Iterable[bytes],
    subject: str | None = None,
    *,
    verified: set[tuple[bytes, str]] | None = None,
) -> tuple[dict[str, Any], bytes]:
    """The merged state of `subject` (inferred when all events name one) from `events`, and its
    canonical bytes (encoded once, by `seal`).

    `registry_keys` are the raw 32-byte public keys pinned as the registry's: only they may sign
    the registry-only targets (record, graph, alias). `verified` may carry (digest, signature)
    pairs whose Ed25519 check already passed (a store that verified events when it took them).
    """
    events = list(events)
    if subject is None:
        subject = _subject_of(events)
    registry_fps = frozenset(fingerprint(bytes(k)) for k in registry_keys)
    signer_keys: dict[str, SignerKey] = {}

    # pairs known good: the caller's (never changed), plus those of events seen twice here
    # (added when a copy comes: a tuple kept per event costs more in garbage collection)
    known: set[tuple[bytes, str]] = set() if verified is None else verified
    known_is_ours = verified is None
    valid: dict[str, dict[str, Any]] = {}
    invalid: dict[str, dict[str, Any]] = {}
    # Per distinct valid event, while it is still in the CPU's cache: its state entry and its
    # (signer, seq) slot. Walking 100k events a second time, in apply order, cost more than
    # the work done on them.
    entries: list[dict[str, Any]] = []
    order_keys: list[str] = []
    holder: dict[str, dict[int, str]] = {}  # signer -> seq -> event id (no tuple per event)
    shared: dict[tuple[str, int], list[str]] = {}  # slots held by more than one event
    for event in events:
        kept = None
        if type(event) is dict:
            copy_of = event.get("event_id")
            kept = valid.get(copy_of) if type(copy_of) is str else None
            if kept is not None:
                if not known_is_ours:
                    known, known_is_ours = set(known), True
                known.add((bytes.fromhex(copy_of[7:]), kept["signature_b64"]))
        try:
            verify_event(event, registry_fps, signer_keys=signer_keys, verified=known)
            if event["subject_pith_number"] != subject:
                about = event["subject_pith_number"]
                raise EventError("wrong_subject", f"the event is about {about}")
        except EventError as e:
            digest = hashlib.sha256(_identity_bytes(event)).hexdigest()
            claimed = event.get("event_id") if isinstance(event, dict) else None
            invalid[digest] = {
                "event_sha256": digest,
                "claimed_event_id": claimed if is_event_id(claimed) else None,
                "reason": e.reason,
            }
            continue
        event_id = event["event_id"]
        if kept is not None:  # (looked up above, before the checks)
            # one signed body may come with two valid signatures: keep the least, whatever
            # the order (the body, and so the entry, is the same)
            if event["signature_b64"] < kept["signature_b64"]:
                valid[event_id] = event
            continue
        valid[event_id] = event
        entries.append(_entry(event))
        # its place in apply order: created_at is fixed-width, so the string orders the pair
        order_keys.append(event["created_at"] + event_id)
        signer_fp, seq = event["signer"]["public_key_fingerprint"], event["seq"]
        slots = holder.get(signer_fp)
        if slots is None:
            slots = holder[signer_fp] = {}
        first = slots.setdefault(seq, event_id)
        if first != event_id:
            shared.setdefault((signer_fp, seq), [first]).append(event_id)

    equivocations = []
    equivocating: set[str] = set()
    for (fp, seq), ids in sorted(shared.items()):
        group = sorted((valid[i] for i in ids), key=_BY_ID)
        equivocating.update(ids)
        equivocations.append(
            {
                "signer_fingerprint": fp,
                "subject_pith_number": subject,
                "seq": seq,
                "event_ids": [e["event_id"] for e in group],
                "events": group,
            }
        )

    # apply order: (`created_at`, `event_id`), as one string each, made while the event was
    # hot and sorted as positions (a third of the time of sorting the entries by a tuple)
    order = sorted(range(len(entries)), key=order_keys.__getitem__)
    applied = [entries[i] for i in order]
    if equivocating:
        applied = [e for e in applied if e["event_id"] not in equivocating]
    state: dict[str, Any] = {
        "state_type": STATE_TYPE,
        "state_version": STATE_VERSION,
        "pith_number": subject,
        "merge_version": MERGE_VERSION,
        "event_count": len(valid) + len(invalid),
        "valid_event_count": len(valid),
        "invalid_event_count": len(invalid),
        "equivocation_count": len(equivocations),
        "current": _current(applied),
        "equivocations": equivocations,
        "invalid_events": [invalid[k] for k in sorted(invalid)],
        "applied_event_ids": [e["event_id"] for e in applied],
    }
    return state, seal(state)


def seal(state: dict[str, Any]) -> bytes:
    """Set `state_sha256` (the hash of the state without it) and return the canonical bytes of
    the whole state, encoding it once: the hash is spliced into the bytes of the rest, before
    `"state_type"`, the top-level key that follows it in sorted order. Only `state_version` and
    `valid_event_count` (a string and an integer) come after that key, so its last occurrence
    is the top-level one."""
    body = {k: v for k, v in state.items() if k != "state_sha256"}
    # every value in the state came from a verified event or from the merge: no re-check
    raw = canonical_json_prechecked(body)
    digest = hashlib.sha256(raw).hexdigest()
    state["state_sha256"] = digest
    at = raw.rindex(b',"state_type":')
    view = memoryview(raw)  # (slices of a view are not copies: one copy of the bytes, not two)
    return b"".join((view[:at], b',"state_sha256":"', digest.encode(), b'"', view[at:]))


def state_sha256(state: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a state without its `state_sha256`."""
    return canonical_sha256({k: v for k, v in state.items() if k != "state_sha256"})
