"""A record's events as `events.json` and `bundle.json` answer them: in pages bounded in bytes
(and in count), at the log's current size or at a fixed tree size `log_size`.

The log is append-only and its leaves follow log order, so "the log at tree size N" is a fixed
set of events: those up to the event of leaf N-1. A page at a fixed N (asked by `log_size`, or
reached by a `next` cursor, which carries the N of the first page) is therefore the same bytes
whenever it is asked: its checkpoint is the deterministic Ed25519 note of (origin, N, root), its
proofs are against N, and a bundle's state is the merge of exactly those events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pith_core.merge import merge
from pith_core.number import short_pith_number

from ..core.context import AppContext
from ..core.fixed import heavy_read
from ..core.jsonbody import dumps
from ..core.problems import Problem
from ..log.models import LogLeaf
from ..log.repository import LogRepository
from ..log.routes import signer_of as log_signer_of
from ..log.service import checkpoint_note, inclusion_proofs, root_at
from ..records.service import resolve
from ..storage.models import Event, Record
from .repository import EventRepository
from .service import bundle_document
from .state import saved_base, state_for_read

JSON = "application/json"
MAX_PAGE_EVENTS = 1000
_CHUNK = 200
_CURSOR_PREFIX = "page:"
_TAG_LENGTH = 12


@dataclass(frozen=True)
class PageRequest:
    """What a request asks: a tree size (None: the current one), where to go on from (the
    `next` cursor of a previous page), at most how many events, and the settings tag its
    cursors carry (`settings_tag`)."""

    log_size: int | None = None
    cursor: tuple[int, int] | None = None  # (tree size, last log index served)
    limit: int = MAX_PAGE_EVENTS
    tag: str = ""

    @property
    def fixed(self) -> bool:
        """Whether the answer is pinned to one tree size (and so never changes)."""
        return self.log_size is not None or self.cursor is not None


def settings_tag(pins_sha256: str, max_listing_bytes: int) -> str:
    """A short hash of the settings a fixed page's bytes depend on beyond the log: the pinned
    registry keys (the bundle's merged state) and PITH_MAX_LISTING_BYTES (where pages end). A
    cursor carries it, so a cursor cut under other settings is refused, not continued wrongly."""
    raw = f"{pins_sha256}:{max_listing_bytes}".encode()
    return hashlib.sha256(raw).hexdigest()[:_TAG_LENGTH]


def encode_cursor(size: int, last: int, tag: str) -> str:
    raw = f"{_CURSOR_PREFIX}{size}:{last}:{tag}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_cursor() -> Problem:
    return Problem(400, "bad_cursor", "after must be a `next` cursor of this list", field="after")


def decode_cursor(text: str) -> tuple[int, int, str]:
    """A `next` cursor back to (tree size, last log index, settings tag); 400 for anything
    else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith(_CURSOR_PREFIX):
        raise _bad_cursor()
    parts = raw.removeprefix(_CURSOR_PREFIX).split(":")
    if len(parts) != 3:
        raise _bad_cursor()
    size, last, tag = parts
    if not (
        all(p.isascii() and p.isdigit() and len(p) <= 18 for p in (size, last))
        and len(tag) == _TAG_LENGTH
        and all(c in "0123456789abcdef" for c in tag)
    ):
        raise _bad_cursor()
    return int(size), int(last), tag


def page_request(log_size: int | None, after: str | None, limit: int, tag: str = "") -> PageRequest:
    """The request's page; 400 for a cursor of another tree size or of other settings."""
    cursor = None
    if after:
        size, last, cut_under = decode_cursor(after)
        if cut_under != tag:
            raise Problem(
                400,
                "stale_cursor",
                "this cursor was cut under other settings (trusted registry keys or page "
                "size): start again from the first page",
                field="after",
            )
        cursor = (size, last)
    if cursor is not None and log_size is not None and cursor[0] != log_size:
        raise Problem(
            400,
            "bad_cursor",
            f"the cursor goes on from the log at size {cursor[0]}, not {log_size}",
            field="after",
        )
    return PageRequest(log_size, cursor, limit, tag)


@dataclass(frozen=True)
class Page:
    size: int  # the tree size the page is read at
    upto: int  # the highest log index the log holds at that size
    events: list[dict[str, Any]]
    log_indices: list[int]
    next: str | None  # the cursor of the next page; None on the last
    total: int  # the record's events at that size


def _upto(session: Session, size: int) -> int:
    """The log index of leaf `size`-1: the last event of the log at tree size `size`."""
    if size == 0:
        return 0
    found = session.scalar(select(LogLeaf.event_log_index).where(LogLeaf.leaf_index == size - 1))
    return int(found or 0)


def _window(session: Session, asked: PageRequest) -> tuple[int, int, int]:
    """(tree size, last log index at it, log index to go on after) of the page asked."""
    current = LogRepository(session).size()
    size = asked.cursor[0] if asked.cursor is not None else asked.log_size
    if size is None:
        # the current log; without leaves (bench/log.py's create_app(log_append=False)), every event
        upto = _upto(session, current) if current else EventRepository(session).head()
        return current, upto, 0
    if size > current:
        raise Problem(
            400,
            "log_size_beyond_tree",
            f"the log holds {current} entries; log_size must be at most that",
            field="log_size",
            tree_size=current,
        )
    return size, _upto(session, size), asked.cursor[1] if asked.cursor is not None else 0


def read_page(session: Session, subject: str, asked: PageRequest, max_bytes: int) -> Page:
    """The record's events after the cursor, up to the tree size asked, in log order; the page
    ends at `asked.limit` events or once it holds `max_bytes` of them (at least one event).
    Rows are read a chunk at a time, so memory stays bounded too."""
    size, upto, last = _window(session, asked)
    events: list[dict[str, Any]] = []
    indices: list[int] = []
    used = 0
    more = False
    while not more:
        stmt = (
            select(Event.log_index, Event.body)
            .where(Event.subject == subject, Event.log_index > last, Event.log_index <= upto)
            .order_by(Event.log_index)
            .limit(_CHUNK)
        )
        rows = session.execute(stmt).all()
        for index, body in rows:
            if len(events) >= asked.limit or (events and used + len(body) > max_bytes):
                more = True
                break
            events.append(json.loads(body))
            indices.append(int(index))
            used += len(body) + 1
            last = int(index)
        if len(rows) < _CHUNK:
            break
    total = session.scalar(
        select(func.count()).where(Event.subject == subject, Event.log_index <= upto)
    )
    return Page(
        size, upto, events, indices, encode_cursor(size, last, asked.tag) if more else None, total
    )


def log_document(ctx: AppContext, session: Session, page: Page) -> dict[str, Any]:
    """The `log` object of a page: the checkpoint at the page's tree size and each event's leaf
    and inclusion proof against it (keyed by event id: a mirror's log indices differ)."""
    signer = log_signer_of(ctx)
    repo = LogRepository(session)
    leaves = repo.leaf_indices(page.log_indices)
    pairs = zip(page.events, page.log_indices, strict=True)
    held = [(e["event_id"], leaves[i]) for e, i in pairs if leaves.get(i, page.size) < page.size]
    proofs = inclusion_proofs(repo, (leaf for _, leaf in held), page.size)
    return {
        "origin": signer.origin,
        "tree_size": page.size,
        "checkpoint": checkpoint_note(signer, page.size, root_at(repo, page.size)),
        "entries": {e: {"leaf_index": leaf, "inclusion_proof": proofs[leaf]} for e, leaf in held},
    }


def state_at(ctx: AppContext, session: Session, subject: str, page: Page) -> dict[str, Any]:
    """The record's merged state at the page's tree size: the saved state when it was saved
    through exactly the record's last event at that size (checked by its mark, its text read
    only then, or taken parsed from this process's recent states), else the merge of those
    events (no signature checked again: stored events were verified on the way in), which a
    rate-limited client pays for (`heavy_read`)."""
    repo = EventRepository(session)
    last = session.scalar(
        select(func.max(Event.log_index)).where(
            Event.subject == subject, Event.log_index <= page.upto
        )
    )
    mark = repo.state_mark(subject)
    if mark is not None and mark[1] == ctx.identity.pins_sha256 and mark[0] == (last or 0):
        base = saved_base(repo, subject, mark)
        if base is not None:
            return base[2]
    heavy_read()
    events = [orjson.loads(b) for b in repo.bodies_between(subject, 0, page.upto)]
    verified = {(bytes.fromhex(e["event_id"][7:]), e["signature_b64"]) for e in events}
    return merge(events, ctx.identity.pinned_keys, subject=subject, verified=verified)


def _paging(doc: dict[str, Any], asked: PageRequest, page: Page) -> dict[str, Any]:
    """`next` and `events_total` on a paged answer; a record's whole list asked plainly keeps
    the shape it always had."""
    if page.next is not None or asked.cursor is not None:
        doc["events_total"] = page.total
        doc["next"] = page.next
    return doc


def _page_for(session: Session, ctx: AppContext, record: Record, asked: PageRequest) -> Page:
    page = read_page(session, record.pith_number, asked, ctx.settings.max_listing_bytes)
    if asked.log_size is not None and page.total == 0:
        raise Problem(
            404,
            "not_in_log",
            f"the log at size {page.size} holds no event of {record.pith_number}",
            field="log_size",
        )
    return page


def events_body(ctx: AppContext, session: Session, pith_id: str, asked: PageRequest) -> bytes:
    record = resolve(session, pith_id)
    page = _page_for(session, ctx, record, asked)
    doc = {
        "pith_number": record.pith_number,
        "short_pith_number": short_pith_number(record.pith_number),
        "event_count": len(page.events),
        "events": page.events,
    }
    doc["log"] = log_document(ctx, session, page)
    return dumps(_paging(doc, asked, page))


def bundle_body(ctx: AppContext, session: Session, pith_id: str, asked: PageRequest) -> bytes:
    """The bundle (canonical record, receipt, events, state hash, log proofs); a later page
    (asked by cursor) repeats the record and the state hash of its tree size."""
    record = resolve(session, pith_id)
    page = _page_for(session, ctx, record, asked)
    if asked.fixed:
        state = state_at(ctx, session, record.pith_number, page)
    else:
        state = state_for_read(ctx.db, session, ctx.identity, record.pith_number)
    doc = bundle_document(record, page.events, state)
    doc["log"] = log_document(ctx, session, page)
    return dumps(_paging(doc, asked, page))
