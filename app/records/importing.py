"""Reading records published by another registry: its record documents (seeds 000/004), its
merged states (001/003), and its HTML record page rendered to text (002, no receipt).

Pure parsing and checking, no storage: each file becomes an `ImportCandidate`, or an
`ImportRefused` naming the file and what did not verify. Receipts are checked by
`pith_core.verify.verify_document` under the key the operator trusts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pith_core.canonical import canonical_sha256, parse_json
from pith_core.errors import PithError
from pith_core.merge import merge
from pith_core.number import pith_number, short_pith_number
from pith_core.record import canon_text_sha256, validate_canonical_record
from pith_core.verify import document_kind, verify_document

from ..trust.payloads import PayloadRefused, check_payload
from .snapshots import graph_snapshot, paper_details


class ImportRefused(PithError):
    """A document that may not be imported; nothing of the import is stored."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class ImportCandidate:
    """A record ready to store: with the other registry's receipt, or None to sign our own."""

    source: str
    canonical_record: dict[str, Any]
    receipt: dict[str, Any] | None
    paper: dict[str, Any]
    graph_snapshot: dict[str, Any]
    created_at: datetime  # the record's creation at the other registry
    first_computed_at: datetime | None = None
    notes: list[str] = field(default_factory=list)
    events: tuple[dict[str, Any], ...] = ()  # a bundle's signed events, verified, to store too

    @property
    def pith_number(self) -> str:
        return pith_number(self.canonical_record)


def _parse_time(text: Any, source: str, what: str) -> datetime:
    if not isinstance(text, str):
        raise ImportRefused(source, f"{what} is missing")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ImportRefused(source, f"{what} {text!r} is not a timestamp") from e
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _keys(trusted_key: bytes | Sequence[bytes]) -> list[bytes]:
    return [trusted_key] if isinstance(trusted_key, bytes) else list(trusted_key)


def _verified(doc: Any, trusted_key: bytes | Sequence[bytes], source: str) -> None:
    kind, checks = verify_document(doc, _keys(trusted_key))
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ImportRefused(
            source,
            f"{kind} does not verify under key "
            f"{', '.join(k.hex()[:16] + '…' for k in _keys(trusted_key))}: "
            + "; ".join(f"{c.name}: {c.detail}" for c in failed),
        )


def _from_record_document(doc: dict[str, Any], source: str) -> ImportCandidate:
    record = validate_canonical_record(doc["canonical_record"])
    snapshot = doc.get("graph_snapshot")
    paper = doc.get("paper") or (snapshot or {}).get("paper")
    if not isinstance(paper, dict):
        raise ImportRefused(source, "the record shows no paper details")
    if not isinstance(snapshot, dict):
        snapshot = graph_snapshot(paper, record["source"])
    return ImportCandidate(
        source=source,
        canonical_record=record,
        receipt=dict(doc["receipt"]),
        paper=paper,
        graph_snapshot=snapshot,
        created_at=_parse_time(doc.get("created_at"), source, "created_at"),
    )


def _from_state(doc: dict[str, Any], source: str) -> ImportCandidate:
    current = doc["current"]
    record = validate_canonical_record(current["canonical_record"])
    created = current.get("record_created") or {}
    snapshots = current.get("graph_snapshots") or []
    snapshot = snapshots[-1]["payload"]["graph_snapshot"] if snapshots else None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("paper"), dict):
        raise ImportRefused(source, "the state holds no graph snapshot with the paper's details")
    return ImportCandidate(
        source=source,
        canonical_record=record,
        receipt=dict(created["payload"]["receipt"]),
        paper=snapshot["paper"],
        graph_snapshot=snapshot,
        created_at=_parse_time(created.get("created_at"), source, "record_created.created_at"),
    )


def _from_bundle(
    doc: dict[str, Any], source: str, trusted_key: bytes | Sequence[bytes]
) -> ImportCandidate:
    """A bundle (issue 15): its record and receipt, and its events to store with it; the paper's
    details from the latest graph snapshot the events carry."""
    record = validate_canonical_record(doc["canonical_record"])
    events = doc["events"]
    for i, event in enumerate(events):  # the schema per target, as a live submission meets it
        if not isinstance(event, dict):
            raise ImportRefused(source, f"events[{i}] is not a signed event")
        try:
            check_payload(str(event.get("target")), event.get("payload"))
        except PayloadRefused as e:
            raise ImportRefused(source, f"events[{i}].{e.field}: {e.message}") from e
    state = merge(events, _keys(trusted_key), subject=pith_number(record))
    snapshots = state["current"]["graph_snapshots"]
    snapshot = snapshots[-1]["payload"]["graph_snapshot"] if snapshots else None
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("paper"), dict):
        raise ImportRefused(source, "the bundle holds no graph snapshot with the paper's details")
    created = state["current"].get("record_created") or {}
    when = created.get("created_at") or doc["receipt"].get("signed_at")
    return ImportCandidate(
        source=source,
        canonical_record=record,
        receipt=dict(doc["receipt"]),
        paper=snapshot["paper"],
        graph_snapshot=snapshot,
        created_at=_parse_time(when, source, "record_created.created_at"),
        notes=[f"{len(events)} events"],
        events=tuple(events),
    )


# The page: "pith:2026:<26>" then a status line, title, authors, headline, then the source line.
_FULL_NUMBER = re.compile(r"pith:\d{4}:[A-Z2-7]{26}")
_SHORT_NUMBER = re.compile(r"pith:[A-Z2-7]{8}")
_SOURCE_LINE = re.compile(r"arxiv:(\S+) v(\d+) · (\d{4}-\d{2}-\d{2}) · (.+)")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CLAIM = re.compile(r"C\d+(strongest claim|weakest assumption|one line summary)")
_REFERENCE = re.compile(r"\[(\d+)\] (.+)")
_REFERENCE_COUNTS = re.compile(
    r"(\d+) extracted · (\d+) resolved(?: · (\d+) Pith anchors?)?", re.IGNORECASE
)
_FORMAL_COUNT = re.compile(r"(\d+) machine-checked theorem links?", re.IGNORECASE)


def _after(lines: list[str], label: str) -> str | None:
    """The first non-empty line after the line `label`."""
    try:
        i = lines.index(label)
    except ValueError:
        return None
    return next((line for line in lines[i + 1 :] if line), None)


def _labelled(lines: list[str], label: str) -> str | None:
    prefix = label + " "
    return next((line[len(prefix) :].strip() for line in lines if line.startswith(prefix)), None)


def _page_canonical_record(text: str, source: str) -> dict[str, Any]:
    marker = text.find("Canonical record JSON")
    start = text.find("{", marker) if marker >= 0 else -1
    if start < 0:
        raise ImportRefused(source, "the page shows no canonical record JSON")
    try:
        record, _ = json.JSONDecoder().raw_decode(text[start:])
        record = parse_json(json.dumps(record))
        return validate_canonical_record(record)
    except (ValueError, PithError) as e:
        raise ImportRefused(source, f"the page's canonical record is not valid: {e}") from e


def read_page(text: str, source: str) -> ImportCandidate:
    """A record page rendered to text: its canonical record, checked against every hash and
    number the page prints, and the details it shows (title checked against its hash)."""
    lines = [line.strip() for line in text.splitlines()]
    record = _page_canonical_record(text, source)
    digest = canonical_sha256(record)
    number = pith_number(record)

    printed_hash = _after(lines, "Canonical hash")
    if printed_hash is None or not _HEX64.fullmatch(printed_hash):
        raise ImportRefused(source, "the page prints no canonical hash")
    if printed_hash != digest:
        raise ImportRefused(
            source, f"the page prints canonical hash {printed_hash}; its record hashes to {digest}"
        )
    for line in lines:
        if line.startswith("# expect:") and line.split(":", 1)[1].strip() != digest:
            raise ImportRefused(source, f"the page's recipe expects {line}, not {digest}")
    numbers = [line for line in lines if _FULL_NUMBER.fullmatch(line)]
    if numbers != [number]:
        raise ImportRefused(
            source, f"the page names {numbers or 'no Pith number'}; the record is {number}"
        )
    shorts = {line for line in lines if _SHORT_NUMBER.fullmatch(line)}
    if shorts and shorts != {short_pith_number(number)}:
        raise ImportRefused(source, f"the page's short number {sorted(shorts)} is not {number}'s")

    at = lines.index(number)
    body = [line for line in lines[at + 2 :] if line]  # after the status line
    src_at = next((i for i, line in enumerate(body) if _SOURCE_LINE.fullmatch(line)), None)
    if src_at is None or src_at < 2:
        raise ImportRefused(source, "the page shows no title, authors and source line")
    title, authors_text = body[0], body[1]
    headline = body[2] if src_at >= 3 else ""
    src = _SOURCE_LINE.fullmatch(body[src_at])
    assert src is not None
    arxiv_id, version, _date, cats = src.group(1), int(src.group(2)), src.group(3), src.group(4)
    if record["source"] != {"id": arxiv_id, "kind": "arxiv", "version": version}:
        raise ImportRefused(source, f"the page's source line names {arxiv_id} v{version}")
    meta = record["metadata"]
    if canon_text_sha256(title) != meta["title_canon_sha256"]:
        raise ImportRefused(
            source, f"the title read from the page ({title!r}) does not hash to the record's"
        )
    categories = re.split(r"[\s,]+", cats.strip())
    if categories[0] != meta["primary_cat"]:
        raise ImportRefused(source, f"the page's category {categories[0]} is not the record's")

    computed_text = _labelled(lines, "First computed")
    first_computed = _parse_time(computed_text, source, "First computed") if computed_text else None
    paper = paper_details(
        title=title,
        authors_text=authors_text,
        abstract="",
        headline=headline,
        primary_cat=meta["primary_cat"],
        cross_cats=meta["cross_cats_sorted"],
        license=meta["license"],
        submitted_at=meta["submitted_at"],
    )
    claims, verdict = [], {}
    for i, line in enumerate(lines):
        m = _CLAIM.fullmatch(line)
        if m:
            text_line = next((x for x in lines[i + 1 :] if x), "")
            kind = m.group(1).replace(" ", "_")
            claims.append({"id": line[: line.index(m.group(1))], "kind": kind, "text": text_line})
            verdict[kind] = text_line
    refs = []
    resolved = anchors = formal = 0
    if "References" in lines:
        for line in lines[lines.index("References") + 1 :]:
            m = _REFERENCE.fullmatch(line)
            if m:
                refs.append({"index": int(m.group(1)), "text": m.group(2)})
            elif (counts := _REFERENCE_COUNTS.fullmatch(line)) and not refs:
                resolved, anchors = int(counts.group(2)), int(counts.group(3) or 0)
            elif line and refs:
                break
    if "Formal links" in lines:
        stated = next((x for x in lines[lines.index("Formal links") + 1 :] if x), "")
        if m := _FORMAL_COUNT.fullmatch(stated):
            formal = int(m.group(1))
    snapshot = graph_snapshot(
        paper,
        record["source"],
        claims=claims,
        verdict={
            "strongest_claim": verdict.get("strongest_claim", ""),
            "weakest_assumption": verdict.get("weakest_assumption", ""),
            "one_line_summary": verdict.get("one_line_summary", ""),
            "pith_extraction_headline": headline,
        },
        references=refs,
        references_resolved=min(resolved, len(refs)),
        internal_anchors=anchors,
        formal_links=formal,
    )
    return ImportCandidate(
        source=source,
        canonical_record=record,
        receipt=None,
        paper=paper,
        graph_snapshot=snapshot,
        created_at=first_computed or datetime.now(UTC),
        first_computed_at=first_computed,
        notes=["page without receipt: this registry signs its own"],
    )


def read_candidate(
    data: bytes, source: str, trusted_key: bytes | Sequence[bytes]
) -> ImportCandidate:
    """One file or request body as an import candidate; ImportRefused when it may not be one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ImportRefused(source, f"not UTF-8 text (byte {e.start})") from e
    if not text.lstrip().startswith("{"):
        return read_page(text, source)
    try:
        doc = parse_json(text)
        kind = document_kind(doc)
    except PithError as e:
        raise ImportRefused(source, str(e)) from e
    if kind not in ("record", "state", "bundle"):
        raise ImportRefused(
            source,
            f"a {kind} cannot be imported: give a record document, a merged state or a bundle",
        )
    _verified(doc, trusted_key, source)
    try:
        if kind == "bundle":
            return _from_bundle(doc, source, trusted_key)
        return _from_record_document(doc, source) if kind == "record" else _from_state(doc, source)
    except (KeyError, TypeError) as e:
        raise ImportRefused(source, f"missing or malformed field {e}") from e
