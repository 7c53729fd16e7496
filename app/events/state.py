"""A subject's merged state as stored: grown by the events that arrived since it was saved,
rebuilt by `pith_core.merge` only when growing cannot say (no saved state, other pinned keys, a
record or alias event), once per subject at a time (single flight), and saved.

Stored events were verified on the way in, so neither path checks a signature again: growing
reads only the new events' bodies; a rebuild hands the merge the (digest, signature) pairs as
already verified. Writes never compute a state: it is brought up to date after their commit, by
the first read that finds it stale (or by `refresh`), outside the log lock.
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy.orm import Session

from pith_core.canonical import canonical_json_prechecked
from pith_core.merge import STATE_LISTS, merge_sealed
from pith_core.state_update import extend_state_sealed

from ..core.timeutil import utcnow
from ..registry.service import RegistryIdentity
from ..storage.engine import Database
from .repository import EventRepository

_STRIPES = tuple(threading.Lock() for _ in range(64))
# Growing costs a few indexed look-ups per new event; past this many (a batch import), one merge
# of everything (no signature checked again) is cheaper.
GROW_MAX = 256
# The states this process saved last, parsed and as bytes: the reader that waited for a refresh
# serves the bytes without reading megabytes back (the read cache then holds the same object),
# and the next refresh grows the parsed state without parsing it again (a 30k-event state is
# 12 MB of JSON, ~100 ms of orjson holding the GIL, ~40 MB parsed). Bounded by the JSON's size.
RECENT_MAX_BYTES = 24 * 1024 * 1024
Mark = tuple[int, str, str]  # (through_log_index, registry_keys_sha256, state_sha256)


class _RecentStates:
    """subject -> (mark, canonical bytes, parsed state) of states saved here, least recently
    used dropped past `max_bytes` of JSON. An entry serves only while the saved row has its
    mark (so never a state another process, or a rolled-back unit, replaced)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[Mark, bytes, dict[str, Any]]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, subject: str, mark: Mark) -> tuple[bytes, dict[str, Any]] | None:
        with self._lock:
            entry = self._entries.get(subject)
            if entry is None or entry[0] != mark:
                return None
            self._entries.move_to_end(subject)
            return entry[1], entry[2]

    def put(self, subject: str, mark: Mark, raw: bytes, state: dict[str, Any]) -> None:
        with self._lock:
            old = self._entries.pop(subject, None)
            if old is not None:
                self._bytes -= len(old[1])
            if len(raw) > self.max_bytes:
                return
            self._entries[subject] = (mark, raw, state)
            self._bytes += len(raw)
            while self._bytes > self.max_bytes:
                _, (_, dropped, _) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)


_RECENT = _RecentStates(RECENT_MAX_BYTES)


def _stripe(subject: str) -> threading.Lock:
    return _STRIPES[zlib.crc32(subject.encode()) % len(_STRIPES)]


def _is_current(mark: Mark | None, identity: RegistryIdentity, head: int) -> bool:
    return mark is not None and mark[1] == identity.pins_sha256 and mark[0] == head


def saved_state(
    session: Session, identity: RegistryIdentity, subject: str
) -> dict[str, Any] | None:
    """The saved state when it is current, else None."""
    raw = saved_state_bytes(session, identity, subject)
    return None if raw is None else dict(orjson.loads(raw))


def saved_state_bytes(session: Session, identity: RegistryIdentity, subject: str) -> bytes | None:
    """The saved state's canonical JSON when it is current (what state.json serves: no parse, no
    re-serialisation of a large state), else None."""
    repo = EventRepository(session)
    mark = repo.state_mark(subject)  # two indexed look-ups, no state text
    if not _is_current(mark, identity, repo.subject_head(subject)):
        return None
    assert mark is not None
    recent = _RECENT.get(subject, mark)
    if recent is not None:
        return recent[0]
    saved = repo.saved_state(subject)
    if saved is None or saved[:2] != mark[:2]:  # replaced by another worker since the mark
        return None
    return saved[2].encode("utf-8")


def _answers(
    repo: EventRepository, subject: str, through: int, state: dict[str, Any]
) -> tuple[Any, Any, Any]:
    """What `extend_state` asks about the saved state's events, answered from the state itself
    and indexed look-ups of a few rows (never a scan of the paper's events)."""
    created: dict[str, str] | None = None

    def created_at_of(event_id: str) -> str:
        nonlocal created
        if created is None:  # built on first ask: only when an event sorts among older ones
            current = state["current"]
            created = {
                e["event_id"]: e["created_at"]
                for name in STATE_LISTS.values()
                for e in current[name]
            }
            if current["record_created"] is not None:
                record = current["record_created"]
                created[record["event_id"]] = record["created_at"]
        if event_id not in created:  # an alias event: no entry of its own
            row = repo.by_event_id(event_id)
            assert row is not None
            created[event_id] = row.created_at
        return created[event_id]

    def holder_of(slot: tuple[str, int]) -> str | None:
        return repo.slot_holder(slot[0], subject, slot[1], through)

    def event_of(event_id: str) -> dict[str, Any]:
        row = repo.by_event_id(event_id)
        assert row is not None  # in the saved state, so in the log (never deleted)
        return dict(json.loads(row.body))

    return created_at_of, holder_of, event_of


def build(session: Session, identity: RegistryIdentity, subject: str) -> tuple[dict[str, Any], int]:
    """The state of `subject` as of its latest event, and that event's log index (see
    `build_sealed`)."""
    state, head, _ = build_sealed(session, identity, subject)
    return state, head


def saved_base(
    repo: EventRepository, subject: str, mark: Mark
) -> tuple[int, bytes, dict[str, Any]] | None:
    """(through, canonical bytes, parsed state) of the saved state of `mark`, from this
    process's recent states or the row; None when the row no longer has that mark (mark and
    text are two statements: at READ COMMITTED another worker may replace the row between)."""
    recent = _RECENT.get(subject, mark)
    if recent is not None:
        return mark[0], recent[0], recent[1]
    saved = repo.saved_state(subject)  # through, keys and text of one row
    if saved is None or saved[:2] != mark[:2]:
        return None
    raw = saved[2].encode("utf-8")
    return saved[0], raw, orjson.loads(raw)


def build_sealed(
    session: Session, identity: RegistryIdentity, subject: str
) -> tuple[dict[str, Any], int, bytes]:
    """The state of `subject` as of its latest event, that event's log index, and the state's
    canonical bytes: the saved state (parsed here last, or read) grown by the events after it
    when it can be, else the full merge. The state is encoded once (hash and bytes alike)."""
    repo = EventRepository(session)
    head = repo.subject_head(subject)
    mark = repo.state_mark(subject)
    if (
        mark is not None
        and mark[1] == identity.pins_sha256
        and repo.count_between(subject, mark[0], head) <= GROW_MAX
    ):
        base = saved_base(repo, subject, mark)
        if base is not None:
            through, raw, state = base
            if through >= head:
                return state, head, raw
            new = [orjson.loads(b) for b in repo.bodies_between(subject, through, head)]
            grown = extend_state_sealed(state, new, *_answers(repo, subject, through, state))
            if grown is not None:
                return grown[0], head, grown[1]
    events = [orjson.loads(b) for b in repo.bodies_between(subject, 0, head)]
    verified = {(bytes.fromhex(e["event_id"][7:]), e["signature_b64"]) for e in events}
    state, raw = merge_sealed(events, identity.pinned_keys, subject=subject, verified=verified)
    return state, head, raw


def save(
    session: Session,
    identity: RegistryIdentity,
    state: dict[str, Any],
    through: int,
    raw: bytes | None = None,
) -> None:
    """Save `state` as of log index `through`; `raw`, its canonical bytes when known."""
    if raw is None:
        raw = canonical_json_prechecked(state)
    EventRepository(session).save_state(
        state["pith_number"],
        through,
        identity.pins_sha256,
        state["state_sha256"],
        raw.decode("utf-8"),
        utcnow(),
    )


def refresh(db: Database, identity: RegistryIdentity, subject: str) -> dict[str, Any]:
    """Bring the saved state of `subject` up to date in its own write unit and return it (kept
    here to grow next time: read it, never change it). One thread of this process at a time per
    subject: the others wait and then find it current."""
    with _stripe(subject):
        with db.read() as session:  # a fresh snapshot: it sees what the last holder saved
            state, through, raw = build_sealed(session, identity, subject)
            current = _is_current(EventRepository(session).state_mark(subject), identity, through)
        if not current:
            with db.write() as session:  # short: the state is computed already
                save(session, identity, state, through, raw)
        _RECENT.put(subject, (through, identity.pins_sha256, state["state_sha256"]), raw, state)
        return state


class StateStale(Exception):
    """Raised inside `deferred_refresh`: the caller leaves its read unit, refreshes `subject`
    (`refresh`) and reads again."""

    def __init__(self, subject: str) -> None:
        super().__init__(subject)
        self.subject = subject


_deferring = threading.local()


@contextmanager
def deferred_refresh(enabled: bool = True) -> Iterator[None]:
    """Within the block, a reader that finds a stale state raises StateStale instead of
    refreshing while it holds its read unit's connection."""
    before = getattr(_deferring, "on", False)
    _deferring.on = enabled
    try:
        yield
    finally:
        _deferring.on = before


def state_bytes_for_read(
    db: Database, session: Session, identity: RegistryIdentity, subject: str
) -> bytes:
    """`state_for_read` as its canonical JSON, straight from the saved text when current."""
    saved = saved_state_bytes(session, identity, subject)
    if saved is not None:
        return saved
    return canonical_json_prechecked(state_for_read(db, session, identity, subject))


def state_for_read(
    db: Database, session: Session, identity: RegistryIdentity, subject: str
) -> dict[str, Any]:
    """The current state for a reader holding `session`: the saved one, else refreshed (and
    saved) once, whoever else asks at the same time (in `deferred_refresh`: by the caller,
    after it let go of `session`)."""
    state = saved_state(session, identity, subject)
    if state is not None:
        return state
    if getattr(_deferring, "on", False):
        raise StateStale(subject)
    return refresh(db, identity, subject)
