"""Read models of a record's events: merged state, graph snapshot, feed (the bundle and the
event list are paged: listing.py)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from ..core.context import AppContext
from ..core.jsonbody import dumps
from ..records.service import resolve
from .repository import EventRepository
from .service import encode_cursor
from .state import state_bytes_for_read, state_for_read

JSON = "application/json"
Build = Callable[[Session], tuple[bytes, str]]


def state_json(ctx: AppContext, pith_id: str) -> Build:
    """The merged state as canonical JSON (so its bytes hash like the protocol's)."""

    def build(session: Session) -> tuple[bytes, str]:
        record = resolve(session, pith_id)
        return state_bytes_for_read(ctx.db, session, ctx.identity, record.pith_number), JSON

    return build


def graph_json(ctx: AppContext, pith_id: str) -> Build:
    def build(session: Session) -> tuple[bytes, str]:
        record = resolve(session, pith_id)
        state = state_for_read(ctx.db, session, ctx.identity, record.pith_number)
        snapshots = state["current"]["graph_snapshots"]
        latest = snapshots[-1] if snapshots else None
        doc = {
            "pith_number": record.pith_number,
            "graph_snapshot": latest["payload"]["graph_snapshot"] if latest else None,
            "verdict_id": latest["payload"].get("verdict_id") if latest else None,
            "event_id": latest["event_id"] if latest else None,
            "created_at": latest["created_at"] if latest else None,
            "signer": latest["signer"] if latest else None,
            "snapshot_count": len(snapshots),
        }
        return dumps(doc), JSON

    return build


FEED_CHUNK = 50


def feed(session: Session, after: int, limit: int, max_bytes: int = 4 * 1024 * 1024) -> bytes:
    """The changes feed: events after `after` in log order, with the cursor to go on from. A
    page ends at `limit` events or once it holds `max_bytes` (at least one event), whichever
    comes first: rows are read a chunk at a time, so memory stays bounded too."""
    repo = EventRepository(session)
    items: list[bytes] = []
    size = 0
    last = after
    full = False
    while not full and len(items) < limit:
        rows = repo.after(last, min(FEED_CHUNK, limit - len(items)))
        for index, body in rows:
            item = b'{"log_index":%d,"event":%s}' % (index, body.encode("utf-8"))
            if items and size + len(item) > max_bytes:
                full = True
                break
            items.append(item)
            size += len(item) + 1
            last = index
        if len(rows) < FEED_CHUNK:
            break
    head = repo.head()
    tail = dumps({"next": encode_cursor(last), "after": after, "head": head, "count": len(items)})
    return b'{"events":[' + b",".join(items) + b"]," + tail[1:]
