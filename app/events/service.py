"""Use cases on events: take a signed event (or a batch), sign the registry's own, merge a
subject's events into its state, and serve bundles and the changes feed. Every check and every
hash is `pith_core`'s; this module decides statuses and what is stored."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy.orm import Session

from pith_core.bundle import build_bundle
from pith_core.canonical import canonical_json_prechecked, parse_json
from pith_core.errors import CanonicalError, EventError
from pith_core.events import EVENT_FIELDS, SignerKey, build_event, sign_event, verify_event
from pith_core.timefmt import format_utc_second

from ..core.problems import Problem
from ..core.timeutil import utcnow
from ..log.service import append as append_to_log
from ..records.repository import RecordRepository
from ..registry.service import RegistryIdentity
from ..storage.models import Record
from ..trust.payloads import PayloadRefused, check_payload
from . import state as state_store
from .repository import EventRepository

# The action URLs of DESIGN §3 and the target each one takes.
ACTION_TARGETS: dict[str, str] = {
    "timestamp_anchor": "timestamp_anchor",
    "storage_attestation": "storage_attestation",
    "author_attestation": "author_attestation",
    "citation_signature": "citation_signature",
    "replication_record": "replication",
}
_REASON_FIELDS = {
    "bad_signer": "signer",
    "fingerprint_mismatch": "signer.public_key_fingerprint",
    "event_id_mismatch": "event_id",
    "bad_signature": "signature_b64",
    "not_registry_signed": "signer",
    "bad_payload": "payload",
}
_LEADING_WORD = re.compile(r"[a-z_]+")
FEED_CURSOR_PREFIX = "log:"
# Parsed public keys of recent signers (pith_core.verify_event reuses them); bounded.
_SIGNER_KEYS: dict[str, SignerKey] = {}
_SIGNER_KEYS_MAX = 10_000


class StoredEvent(NamedTuple):
    """An event as the log holds it (a tuple: a batch makes hundreds, and one costs about half
    what a frozen dataclass does to build, 0.21 against 0.38 µs)."""

    event: dict[str, Any]
    log_index: int
    created: bool  # False: the log already held it (an idempotent resubmission)


def parse_event_body(raw: bytes) -> Any:
    """The JSON of a request body, refusing duplicate keys and NaN (400, naming where)."""
    if not raw.strip():
        raise Problem(400, "empty_body", "the request body is empty; send a signed event as JSON")
    try:
        return parse_json(raw)
    except CanonicalError as e:
        raise Problem(400, "malformed_json", e.reason, field=e.path) from e


def _field_of(error: EventError) -> str | None:
    if error.reason in _REASON_FIELDS:
        return _REASON_FIELDS[error.reason]
    if error.reason == "not_canonical":
        return error.detail.split(":", 1)[0] or None
    word = _LEADING_WORD.match(error.detail)
    if word and word.group(0) in EVENT_FIELDS:
        return word.group(0)
    return None


@dataclass(frozen=True)
class Clock:
    """The latest `created_at` this registry accepts: its clock plus the allowed skew."""

    latest: str
    skew_seconds: int

    @classmethod
    def now(cls, skew_seconds: int) -> Clock:
        return cls(format_utc_second(utcnow() + timedelta(seconds=skew_seconds)), skew_seconds)


def check_event(
    event: Any,
    identity: RegistryIdentity,
    clock: Clock,
    expect_target: str | None = None,
) -> dict[str, Any]:
    """`event` verified by `pith_core.events.verify_event` and its payload by its target's
    schema; a 422 problem naming what failed. With `expect_target`, another target is refused
    before the payload is read (the URL said what it takes)."""
    if len(_SIGNER_KEYS) > _SIGNER_KEYS_MAX:
        _SIGNER_KEYS.clear()
    try:
        verify_event(event, identity.pinned_fingerprints, signer_keys=_SIGNER_KEYS)
    except EventError as e:
        raise Problem(422, e.reason, str(e), field=_field_of(e)) from e
    if expect_target is not None and event["target"] != expect_target:
        raise Problem(
            422,
            "wrong_target",
            f"this URL takes events with target {expect_target!r}, not {event['target']!r}",
            field="target",
        )
    try:
        check_payload(event["target"], event["payload"])
    except PayloadRefused as e:
        raise Problem(
            422,
            "bad_payload",
            f"{e.field}: {e.message} (the schema of a {event['target']} payload is at "
            f"/schemas/{event['target']}.json)",
            field=e.field,
        ) from e
    if event["created_at"] > clock.latest:
        raise Problem(
            422,
            "created_in_future",
            f"created_at {event['created_at']} is ahead of this registry's clock "
            f"by more than {clock.skew_seconds} s",
            field="created_at",
        )
    return event


def _row(event: Mapping[str, Any], received_at: datetime) -> dict[str, Any]:
    return {
        "event_id": event["event_id"],
        "subject": event["subject_pith_number"],
        "signer_fingerprint": event["signer"]["public_key_fingerprint"],
        "seq": event["seq"],
        "prev": event["prev"],
        "target": event["target"],
        "event_type": event["event_type"],
        "created_at": event["created_at"],
        "received_at": received_at,
        "body": canonical_json_prechecked(event).decode("utf-8"),  # verified: in the profile
    }


def earliest_dates(submitted: Mapping[str, str], margin_seconds: int) -> dict[str, str]:
    """subject -> the earliest `created_at` an event about it may carry: its paper's
    submission less the trust policy's margin."""
    out = {}
    for subject, at in submitted.items():
        when = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        out[subject] = format_utc_second(when - timedelta(seconds=margin_seconds))
    return out


def _check_not_predating(event: Mapping[str, Any], earliest: Mapping[str, str]) -> None:
    limit = earliest.get(event["subject_pith_number"])
    if limit is not None and event["created_at"] < limit:
        raise Problem(
            422,
            "predates_record",
            f"created_at {event['created_at']} is earlier than the paper's submission allows "
            f"(events about {event['subject_pith_number']} are dated {limit} or later)",
            field="created_at",
        )


def store_events(
    session: Session,
    events: Sequence[dict[str, Any]],
    known_subjects: set[str] | Mapping[str, str],
    *,
    retired: Mapping[str, Any] | None = None,
) -> list[StoredEvent]:
    """Append the verified `events` not yet in the log (all about subjects in `known_subjects`),
    in the order given; duplicates come back with the log's copy. Caller holds the log lock.
    When `known_subjects` maps each subject to the earliest date allowed (`earliest_dates`), a
    new event dated before it is refused; with `retired` (`RegistryIdentity.retired_windows`),
    one of a retired registry key outside its window (by log position) is."""
    repo = EventRepository(session)
    now = utcnow()
    existing = repo.existing_ids(e["event_id"] for e in events)
    fresh: dict[str, dict[str, Any]] = {}
    earliest = known_subjects if isinstance(known_subjects, Mapping) else {}
    for event in events:
        if event["subject_pith_number"] not in known_subjects:
            raise Problem(
                404,
                "unknown_subject",
                f"no record {event['subject_pith_number']} in this registry",
                field="subject_pith_number",
            )
        if event["event_id"] not in existing:
            _check_not_predating(event, earliest)
        if event["event_id"] not in existing:
            fresh.setdefault(event["event_id"], event)
    repo.add_signers((e["signer"] for e in fresh.values()), now)
    rows = [_row(e, now) for e in fresh.values()]
    # app/log stores them and makes each its next leaf, in this transaction (both or neither)
    indices = dict(zip(fresh, append_to_log(session, rows, retired=retired), strict=True))
    out: list[StoredEvent] = []
    for event in events:
        eid = event["event_id"]
        if eid in indices:
            out.append(StoredEvent(event, indices.pop(eid), True))
        else:
            kept = repo.by_event_id(eid)
            assert kept is not None  # present before the lock was taken, never deleted
            out.append(StoredEvent(json.loads(kept.body), kept.log_index, False))
    return out


def sign_registry_event(
    session: Session,
    identity: RegistryIdentity,
    *,
    subject: str,
    target: str,
    payload: Mapping[str, Any],
    created_at: str,
) -> StoredEvent:
    """Sign an event of the registry's own chain about `subject` (next seq, prev = tip) and
    append it. Caller holds the log lock."""
    repo = EventRepository(session)
    tip = repo.chain_tip(identity.fingerprint, subject)
    unsigned = build_event(
        target=target,
        subject=subject,
        created_at=created_at,
        seq=tip[0] + 1 if tip else 1,
        prev=tip[1] if tip else None,
        signer=identity.signer,
        payload=payload,
    )
    event = sign_event(unsigned, identity.key)
    return store_events(session, [event], {subject})[0]


def compute_state(
    session: Session, identity: RegistryIdentity, subject: str, *, save: bool
) -> dict[str, Any]:
    """The merged state of `subject` (see `app.events.state`), saved in this unit when `save`
    and not current. Readers call `state.state_for_read`, which saves in a unit of its own."""
    state, through = state_store.build(session, identity, subject)
    if save:
        state_store.save(session, identity, state, through)
    return state


def is_equivocating(state: Mapping[str, Any], event_id: str) -> bool:
    return any(event_id in group["event_ids"] for group in state["equivocations"])


def submit_action(
    session: Session,
    identity: RegistryIdentity,
    record: Record,
    action: str,
    event: dict[str, Any],
    margin_seconds: int = 86_400,
) -> tuple[StoredEvent, bool]:
    """Take one verified event posted to `record`'s `action` URL; return it and whether it
    equivocates (another event of its signer holds its seq). The state is not computed here:
    its readers bring it up to date after this commit (`app.events.state`)."""
    target = ACTION_TARGETS[action]
    if event["target"] != target:
        raise Problem(
            422,
            "wrong_target",
            f"the {action} action takes events with target {target!r}, "
            f"this one has {event['target']!r}",
            field="target",
        )
    if event["subject_pith_number"] != record.pith_number:
        raise Problem(
            422,
            "wrong_subject",
            f"the event is about {event['subject_pith_number']}, "
            f"this URL is {record.pith_number}'s",
            field="subject_pith_number",
        )
    repo = EventRepository(session)
    repo.lock_log()
    submitted_at = json.loads(record.canonical_record)["metadata"]["submitted_at"]
    earliest = earliest_dates({record.pith_number: submitted_at}, margin_seconds)
    stored = store_events(session, [event], earliest, retired=identity.retired_windows)[0]
    kept = stored.event
    signer = kept["signer"]["public_key_fingerprint"]
    return stored, repo.slot_taken(signer, record.pith_number, kept["seq"], kept["event_id"])


def ingest_batch(
    session: Session,
    events: Sequence[dict[str, Any]],
    margin_seconds: int = 86_400,
    identity: RegistryIdentity | None = None,
) -> list[StoredEvent]:
    """Append a batch of verified events, all or nothing; states recompute when next read."""
    repo = EventRepository(session)
    repo.lock_log()
    subjects = {e["subject_pith_number"] for e in events}
    known = RecordRepository(session).submitted_at_of(subjects)
    retired = identity.retired_windows if identity is not None else None
    return store_events(session, events, earliest_dates(known, margin_seconds), retired=retired)


def bundle_document(
    record: Record, events: Sequence[dict[str, Any]], state: Mapping[str, Any]
) -> dict[str, Any]:
    return build_bundle(
        json.loads(record.canonical_record),
        json.loads(record.receipt),
        events,
        source_aliases=state["current"]["source_aliases"],
        state_sha256=state["state_sha256"],
    )


def encode_cursor(log_index: int) -> str:
    raw = f"{FEED_CURSOR_PREFIX}{log_index}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> int:
    """`after` is a log index or a `next` cursor; 400 for anything else."""
    if text.isascii() and text.isdigit() and len(text) < 19:  # ("²".isdigit() is True)
        return int(text)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    number = raw[len(FEED_CURSOR_PREFIX) :]
    if (
        not raw.startswith(FEED_CURSOR_PREFIX)
        or not (number.isascii() and number.isdigit())
        or len(number) > 18
    ):
        raise Problem(
            400, "bad_cursor", "after must be a log index or a `next` cursor", field="after"
        )
    return int(number)
