"""Offline verification of what a registry publishes: a record, a bundle or a merged state.

Each check is reported, passed or not, so a person sees what was verified and what was not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .bundle import BUNDLE_TYPE
from .canonical import canonical_sha256
from .errors import PithError
from .keys import fingerprint
from .logcheck import check_events_in_log
from .merge import STATE_TYPE, merge, state_sha256
from .number import pith_number, short_pith_number
from .receipt import verify_receipt
from .record import validate_canonical_record

RECORD_TYPE = "pith_number_record"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def document_kind(doc: Any) -> str:
    """`record`, `bundle`, `state` or `canonical_record`; PithError for anything else."""
    if isinstance(doc, dict):
        if doc.get("record_type") == RECORD_TYPE:
            return "record"
        if doc.get("bundle_type") == BUNDLE_TYPE:
            return "bundle"
        if doc.get("state_type") == STATE_TYPE:
            return "state"
        if set(doc) == {"metadata", "schema_version", "source"}:
            return "canonical_record"
    raise PithError(
        "not a Pith record, bundle, state or canonical record "
        "(expected record_type, bundle_type, state_type, or a bare canonical record)"
    )


def canonical_record_of(doc: Any) -> dict[str, Any]:
    """The canonical record inside a record, bundle or state (or `doc` itself)."""
    kind = document_kind(doc)
    if kind == "state":
        record = (doc.get("current") or {}).get("canonical_record")
    elif kind == "canonical_record":
        record = doc
    else:
        record = doc.get("canonical_record")
    if record is None:
        raise PithError(f"this {kind} holds no canonical record")
    return validate_canonical_record(record)


def _run(name: str, checks: list[Check], fn: Any) -> Any:
    try:
        detail = fn()
    except PithError as e:
        checks.append(Check(name, False, str(e)))
        return None
    except (KeyError, TypeError, AttributeError) as e:
        checks.append(Check(name, False, f"missing or malformed field: {e}"))
        return None
    checks.append(Check(name, True, detail or ""))
    return detail


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise PithError(message)


def _receipt_key(receipt: Any, keys: Sequence[bytes]) -> bytes:
    """The trusted key the receipt names by fingerprint (the first key when it names none)."""
    named = receipt.get("public_key_fingerprint") if isinstance(receipt, dict) else None
    for key in keys:
        if fingerprint(key) == named:
            return key
    return keys[0]


def is_page(doc: Any) -> bool:
    """Whether a bundle is one page of a paged list: it names a `next` page, or holds fewer
    events than its `events_total`. Its events are that page's, while its state hash is the
    whole list's merge. A bundle that holds every event (`next` null, all `events_total` of
    them) is whole, and its state is checked."""
    if not isinstance(doc, dict):
        return False
    if doc.get("next"):
        return True
    total, events = doc.get("events_total"), doc.get("events")
    return isinstance(total, int) and isinstance(events, list) and len(events) < total


def verify_document(doc: Any, trusted_keys: bytes | Sequence[bytes]) -> tuple[str, list[Check]]:
    """Check `doc` under the registry keys `trusted_keys` (raw 32 bytes each): the receipt must
    verify under one of them (an imported record keeps another registry's receipt), and they are
    the keys the merge pins for registry-only events. Returns (kind, checks)."""
    keys = [trusted_keys] if isinstance(trusted_keys, bytes) else list(trusted_keys)
    if not keys:
        raise PithError("verification needs at least one trusted registry key")
    kind = document_kind(doc)
    checks: list[Check] = []
    record = _run("canonical record shape", checks, lambda: canonical_record_of(doc) and "ok")
    if record is None:
        return kind, checks
    record = canonical_record_of(doc)
    digest = canonical_sha256(record)
    number = pith_number(record)

    def claimed(field: str, actual: str) -> str:
        value = doc.get(field)
        _expect(value == actual, f"{field} is {value!r}; recomputed {actual}")
        return actual

    receipt: Any = None
    if kind in ("record", "bundle"):
        _run("canonical_sha256", checks, lambda: claimed("canonical_sha256", digest))
        _run("pith_number", checks, lambda: claimed("pith_number", number))
        receipt = doc.get("receipt")
    if kind in ("record", "bundle"):
        _run(
            "short_pith_number",
            checks,
            lambda: claimed("short_pith_number", short_pith_number(number)),
        )
    if kind == "state":
        _run("pith_number", checks, lambda: claimed("pith_number", number))
        _run(
            "state_sha256",
            checks,
            lambda: claimed("state_sha256", state_sha256(doc)),
        )
        created = doc["current"].get("record_created") or {}
        receipt = (created.get("payload") or {}).get("receipt")
    if kind == "canonical_record":
        checks.append(Check("canonical_sha256", True, digest))
        checks.append(Check("pith_number", True, number))
    else:
        _run(
            "receipt",
            checks,
            lambda: (
                _expect(receipt is not None, "no receipt to verify")
                or verify_receipt(receipt, digest, _receipt_key(receipt, keys))
                or f"signed by {receipt.get('key_id')} ({receipt.get('public_key_fingerprint')})"
            ),
        )
    if kind == "bundle":

        def recompute() -> str:
            events = doc.get("events")
            _expect(isinstance(events, list), "bundle events must be a list")
            state = merge(events, keys, subject=number)
            _expect(
                state["invalid_event_count"] == 0,
                f"{state['invalid_event_count']} invalid events: "
                + ", ".join(e["reason"] for e in state["invalid_events"]),
            )
            if is_page(doc):  # its state hash is the whole list's, its events one page's
                return (
                    f"{state['valid_event_count']} valid events; partial bundle (a page of "
                    f"{doc.get('events_total')} events): state not checked; fetch every page "
                    "(follow `next`) to check it"
                )
            if doc.get("state_sha256") is not None:
                _expect(
                    doc["state_sha256"] == state["state_sha256"],
                    f"bundle names state {doc['state_sha256']}; "
                    f"merge gives {state['state_sha256']}",
                )
            return (
                f"{state['valid_event_count']} valid events, "
                f"{state['equivocation_count']} equivocations, state {state['state_sha256']}"
            )

        _run("events and merged state", checks, recompute)
        if doc.get("log") is not None:  # issue 15: each event a leaf under a signed checkpoint
            _run(
                "transparency log inclusion",
                checks,
                lambda: check_events_in_log(doc["events"], doc["log"], keys),
            )
    return kind, checks
