"""Use cases on records: register a paper, store an imported record, resolve any name of a
record, and build the record document (the shape of `seeds/000_*.txt`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from pith_core.canonical import canonical_json, canonical_sha256
from pith_core.errors import PithNumberError, RecordError, SignatureError
from pith_core.keys import fingerprint
from pith_core.merge import STATE_LISTS
from pith_core.number import parse_pith_id, pith_number, record_aliases, short_pith_number
from pith_core.receipt import sign_receipt, verify_receipt
from pith_core.record import canonical_record
from pith_core.timefmt import format_utc_second

from ..core.problems import Problem, not_found
from ..core.timeutil import as_utc, iso, utcnow
from ..events.repository import EventRepository
from ..events.service import compute_state, ingest_batch, sign_registry_event
from ..log.service import refuse_retired_receipt
from ..registry.service import RegistryIdentity
from ..storage.models import Record
from .importing import ImportCandidate
from .record_schema import RECORD_SCHEMA_PATH
from .repository import RecordRepository
from .schemas import RegisterPaper
from .snapshots import graph_snapshot, paper_details

VERSIONLESS_ALIASES = frozenset({"arxiv", "doi"})
RECORD_EVENTS_MAX = 100
ACTION_LINKS = {
    "anchor_timestamp": "timestamp_anchor",
    "attest_storage": "storage_attestation",
    "attest_author": "author_attestation",
    "sign_citation": "citation_signature",
    "submit_replication": "replication_record",
}


@dataclass(frozen=True)
class Stored:
    record: Record
    created: bool


def _version_of(session: Session, record_id: int) -> int:
    rec = session.get(Record, record_id)
    return rec.source_version if rec else 0


def _store_aliases(
    session: Session, record: Record, canonical: dict[str, Any], at: datetime
) -> None:
    """The six standard aliases; a version-less one (arxiv id, DOI) names the newest version,
    and a short alias already taken by another record is left to that record."""
    repo = RecordRepository(session)
    for kind, value in record_aliases(canonical):
        existing = repo.alias(kind, value)
        if existing is None:
            repo.add_alias(record.id, kind, value, at)
        elif (
            kind in VERSIONLESS_ALIASES
            and _version_of(session, existing.record_id) < record.source_version
        ):
            repo.point_alias(existing.id, record.id)


def store_record(
    session: Session,
    identity: RegistryIdentity,
    candidate: ImportCandidate,
    *,
    origin: str,
) -> Stored:
    """Store a record with its receipt (signing ours when it has none) and sign this registry's
    `record` and `graph` events for it; the same record again is returned as it is."""
    EventRepository(session).lock_log()
    repo = RecordRepository(session)
    canonical = candidate.canonical_record
    number = pith_number(canonical)
    existing = repo.by_number(number)
    if existing is not None:
        return Stored(existing, False)
    source = canonical["source"]
    other = repo.by_source(source["kind"], source["id"], source["version"])
    if other is not None:
        raise Problem(
            409,
            "source_conflict",
            f"arxiv {source['id']}v{source['version']} is already registered as "
            f"{other.pith_number} with different metadata",
            pith_number=other.pith_number,
        )
    if candidate.receipt is not None:  # judged by the position it is logged at (app/log)
        refuse_retired_receipt(session, identity.retired_windows, candidate.receipt)
    now = utcnow()
    receipt = candidate.receipt or sign_receipt(
        canonical, identity.key, signed_at=now, first_computed_at=candidate.first_computed_at
    )
    digest = canonical_sha256(canonical)
    record = repo.add(
        Record(
            pith_number=number,
            suffix=number.rsplit(":", 1)[1],
            canonical_sha256=digest,
            source_kind=source["kind"],
            source_id=source["id"],
            source_version=source["version"],
            canonical_record=canonical_json(canonical).decode(),
            receipt=canonical_json(receipt).decode(),
            receipt_key_fingerprint=str(receipt.get("public_key_fingerprint", "")),
            paper=json.dumps(candidate.paper, ensure_ascii=False, sort_keys=True),
            origin=origin,
            created_at=candidate.created_at,
        )
    )
    _store_aliases(session, record, canonical, candidate.created_at)
    created_at = format_utc_second(candidate.created_at)
    sign_registry_event(
        session,
        identity,
        subject=number,
        target="record",
        payload={
            "attestation_state": "computed",
            "canonical_record": canonical,
            "canonical_sha256": digest,
            "receipt": receipt,
            "source_id": source["id"],
            "source_kind": source["kind"],
            "source_version": source["version"],
        },
        created_at=created_at,
    )
    sign_registry_event(
        session,
        identity,
        subject=number,
        target="graph",
        payload={"graph_snapshot": candidate.graph_snapshot, "verdict_id": None},
        created_at=created_at,
    )
    compute_state(session, identity, number, save=True)
    return Stored(record, True)


def register_paper(session: Session, identity: RegistryIdentity, body: RegisterPaper) -> Stored:
    """The registry's own act: build the record of a paper, sign its receipt and events."""
    meta = body.metadata()
    try:
        canonical = canonical_record(meta)
    except RecordError as e:
        raise Problem(422, "bad_metadata", str(e)) from e
    paper = paper_details(
        title=meta.title,
        authors_text=", ".join(a.strip() for a in meta.authors if a.strip()),
        abstract=meta.abstract,
        headline=body.headline,
        primary_cat=meta.primary_cat,
        cross_cats=meta.cross_cats,
        license=meta.license,
        submitted_at=meta.submitted_at,
    )
    now = utcnow()
    candidate = ImportCandidate(
        source="request",
        canonical_record=canonical,
        receipt=None,
        paper=paper,
        graph_snapshot=graph_snapshot(paper, canonical["source"]),
        created_at=now.replace(microsecond=0),
    )
    return store_record(session, identity, candidate, origin="registered")


def import_candidates(
    session: Session, identity: RegistryIdentity, candidates: Sequence[ImportCandidate]
) -> list[Stored]:
    stored = [store_record(session, identity, c, origin="imported") for c in candidates]
    events = [e for c in candidates for e in c.events]  # a bundle's events (issue 15)
    if events:
        ingest_batch(session, events, identity=identity)
    return stored


def resolve(session: Session, text: str) -> Record:
    """A record by full number, 26-character suffix, unique prefix (≥ 8) or arXiv id."""
    if not _searchable(text):
        raise not_found(f"{text[:80]!r} names no record here")
    repo = RecordRepository(session)
    try:
        pid = parse_pith_id(text)
    except PithNumberError:
        value = text.strip()
        kind = "arxiv_version" if _has_version(value) else "arxiv"
        record = repo.by_alias(kind, value)
        if record is None:
            raise not_found(
                f"{text!r} names no record here: give a Pith number (pith:YYYY:<26>), its "
                "suffix, a prefix of 8 or more characters, or an arXiv id"
            ) from None
        return record
    if pid.is_full:
        record = repo.by_number(f"pith:{pid.year}:{pid.prefix}")
        if record is None:
            raise not_found(f"no record pith:{pid.year}:{pid.prefix} in this registry")
        return record
    found = repo.by_suffix_prefix(pid.prefix)
    if not found:
        raise not_found(f"no record whose number starts with {pid.prefix}")
    if len(found) > 1:
        raise Problem(
            409,
            "ambiguous_prefix",
            f"{pid.prefix} is the prefix of more than one record; give more characters",
            candidates=[r.pith_number for r in found],
        )
    return found[0]


def _has_version(value: str) -> bool:
    head, sep, tail = value.rpartition("v")
    return bool(sep and head and tail.isdigit())


def _searchable(text: str) -> bool:
    """Whether a name may be looked up at all: no name of ours is longer or holds a NUL (which
    PostgreSQL refuses in any string, and would turn into a server error)."""
    return len(text) <= 300 and "\x00" not in text


def resolve_alias(session: Session, kind: str, value: str) -> Record:
    if not _searchable(value):
        raise not_found(f"no record with {kind} {value[:80]!r} in this registry")
    repo = RecordRepository(session)
    value = value.strip()
    if kind == "pith":
        return resolve(session, value)
    if kind == "doi":
        record = repo.by_alias("doi", value.lower())
    elif kind == "arxiv":
        value = value.removeprefix("arXiv:").removeprefix("arxiv:")
        record = repo.by_alias("arxiv_version" if _has_version(value) else "arxiv", value)
    else:  # pragma: no cover (the route only passes the three kinds)
        record = None
    if record is None:
        raise not_found(f"no record with {kind} {value!r} in this registry")
    return record


def receipt_verifies(identity: RegistryIdentity, record: Record) -> bool:
    receipt = json.loads(record.receipt)
    for key in identity.pinned_keys:
        if fingerprint(key) == record.receipt_key_fingerprint:
            try:
                verify_receipt(receipt, record.canonical_sha256, key)
                return True
            except SignatureError:
                return False
    return False


def links(base_url: str, record: Record) -> dict[str, Any]:
    s = record.suffix
    short = s[:8]
    api = f"{base_url}/api/pith-number/{s}"
    return {
        "html": f"{base_url}/pith/{s}",
        "json": f"{base_url}/pith/{s}.json",
        "graph_json": f"{api}/graph.json",
        "events_json": f"{api}/events.json",
        "state_json": f"{base_url}/pith/{s}/state.json",
        "bundle_json": f"{base_url}/pith/{s}/bundle.json",
        "paper": f"{base_url}/paper/{short}",
    }


def agent_actions(base_url: str, record: Record) -> dict[str, Any]:
    s = record.suffix
    api = f"{base_url}/api/pith-number/{s}"
    return {
        "view_html": f"{base_url}/pith/{s}",
        "download_json": f"{base_url}/pith/{s}.json",
        "view_paper": f"{base_url}/paper/{s[:8]}",
        "resolve_alias": f"{base_url}/api/pith-number/resolve?arxiv={record.source_id}&json=true",
        "fetch_graph": f"{api}/graph.json",
        "fetch_events": f"{api}/events.json",
        "actions": {
            name: f"{base_url}/pith/{s}/action/{action}" for name, action in ACTION_LINKS.items()
        },
    }


def _event_entries(current: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for target, name in STATE_LISTS.items():
        if target != "graph":
            entries.extend(current[name])
    return sorted(entries, key=lambda e: (e["created_at"], e["event_id"]))


def _section(snapshot: Mapping[str, Any] | None, section: str, count: str) -> int:
    """A count a graph snapshot section states (0 where it states none)."""
    value = ((snapshot or {}).get(section) or {}).get(count)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def record_document(
    record: Record,
    state: Mapping[str, Any],
    *,
    base_url: str,
    identity: RegistryIdentity,
    updated_at: datetime | None,
    trust: Mapping[str, Any],
) -> dict[str, Any]:
    """The record as the public registry serves it (`seeds/000_*.txt`), links to this server.

    `trust` is `app.trust.service.verification` of the state: the statuses it moves are evidence
    under the trust policy, not counts of signed statements. `events` holds the latest
    `RECORD_EVENTS_MAX` entries (the full list is events.json's, paged)."""
    current = state["current"]
    paper = json.loads(record.paper)
    snapshots = current["graph_snapshots"]
    snapshot = snapshots[-1]["payload"]["graph_snapshot"] if snapshots else None
    events = _event_entries(current)
    summary: dict[str, int] = {}
    for entry in events:
        summary[entry["target"]] = summary.get(entry["target"], 0) + 1
    events_total = len(events)
    events = events[-RECORD_EVENTS_MAX:]
    claims = ((snapshot or {}).get("claims") or {}).get("items") or []
    return {
        "record_type": "pith_number_record",
        "schema_url": f"{base_url}{RECORD_SCHEMA_PATH}",  # served here (records/routes.py)
        "pith_number": record.pith_number,
        "short_pith_number": short_pith_number(record.pith_number),
        "schema_version": "1.0",
        "canonical_sha256": record.canonical_sha256,
        "source": {
            "kind": record.source_kind,
            "id": record.source_id,
            "version": record.source_version,
        },
        "attestation_state": "computed",
        "paper": paper,
        "verification_status": {
            "content_addressed": True,
            "pith_receipt": receipt_verifies(identity, record),
            "author_attested": trust["author_attested"],
            "weak_author_claims": trust["weak_author_claims"],
            "strong_author_claims": trust["strong_author_claims"],
            "externally_anchored": trust["externally_anchored"],
            "storage_verified": trust["storage_verified"],
            "citation_signatures": len(current["citation_signatures"]),
            "replication_records": len(current["replication_records"]),
            "replication_status": trust["replication_status"],
            "graph_snapshot": snapshot is not None,
            "references_resolved": _section(snapshot, "references", "resolved_work") > 0,
            "formal_links_present": _section(snapshot, "formal_canon", "evidence_count") > 0,
            "equivocations": state["equivocation_count"],
        },
        "canonical_record": json.loads(record.canonical_record),
        "receipt": json.loads(record.receipt),
        "graph_snapshot": snapshot,
        "aliases": current["source_aliases"],
        "events": events,
        "events_total": events_total,
        "event_summary": summary,
        "trust": {k: v for k, v in trust.items() if isinstance(v, dict)},
        "paper_claims": claims,
        "inbound_citations": {
            "count": len(current["citation_signatures"]),
            "internal_anchor_count": 0,
            "sample": current["citation_signatures"][:5],
        },
        "formal_canon": {"evidence_count": 0, "sample": [], "anchors": []},
        "state_sha256": state["state_sha256"],
        "links": links(base_url, record),
        "agent_actions": agent_actions(base_url, record),
        "created_at": iso(record.created_at),
        "updated_at": iso(as_utc(updated_at) if updated_at else record.created_at),
    }
