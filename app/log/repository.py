"""Every query on the transparency log's tables."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from pith_core.tlog import NodeId

from ..storage.driver import Driver
from ..storage.models import Event
from .models import LogCosignature, LogLeaf, LogNode

_CHUNK = 500
COPY_THRESHOLD = 16
_EVENT_COLUMNS = (
    "event_id",
    "subject",
    "signer_fingerprint",
    "seq",
    "prev",
    "target",
    "event_type",
    "created_at",
    "received_at",
    "body",
)
_COPY_EVENTS_AT = f"COPY events (log_index, {', '.join(_EVENT_COLUMNS)}) FROM STDIN"
_RESERVE_LOG_INDICES = (
    "SELECT nextval(pg_get_serial_sequence('events', 'log_index')) FROM generate_series(1, %s)"
)
_COPY_LEAVES = "COPY tlog_leaves (leaf_index, event_log_index) FROM STDIN"
_COPY_NODES = "COPY tlog_nodes (level, idx, hash) FROM STDIN"
_COLUMNS_OF = itemgetter(*_EVENT_COLUMNS)  # a row dict's values, in column order
_OTHER_COLUMNS = tuple(c for c in _EVENT_COLUMNS if c != "received_at")
_OTHER_COLUMNS_OF = itemgetter(*_OTHER_COLUMNS)
_INSERT_EVENTS_RECEIVED_LAST = (
    f"INSERT INTO events ({', '.join(_OTHER_COLUMNS)}, received_at) "
    f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
)
_INSERT_LEAVES = "INSERT INTO tlog_leaves (leaf_index, event_log_index) VALUES (?, ?)"
_INSERT_NODES = "INSERT INTO tlog_nodes (level, idx, hash) VALUES (?, ?, ?)"
_NODE_BY_ID = "SELECT hash FROM tlog_nodes WHERE level = ? AND idx = ?"
_NODES_BY_ID_POSTGRESQL = (
    "SELECT n.level, n.idx, n.hash FROM tlog_nodes n "
    "JOIN unnest(%s::smallint[], %s::bigint[]) AS w(level, idx) USING (level, idx)"
)


class LogRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def size(self) -> int:
        """The number of leaves (the highest leaf index + 1: one index probe, not a count)."""
        top = Driver.of(self.session).scalar("SELECT max(leaf_index) FROM tlog_leaves")
        return 0 if top is None else int(top) + 1

    def _driver(self) -> Any:
        return Driver.of(self.session).connection

    def _postgresql(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def insert_events(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert event rows (dicts of the Event columns); their log indices, in order. The only
        insert into `events` (app/log owns appends). Many rows go to PostgreSQL by COPY (an order
        of magnitude cheaper than a multi-row INSERT) at log indices drawn from the column's
        sequence; to SQLite by the driver's executemany (SQLAlchemy's bulk path cost more than
        the insert)."""
        if not rows:
            return []
        if len(rows) < COPY_THRESHOLD:
            result = self.session.execute(
                insert(Event).returning(Event.log_index, sort_by_parameter_order=True), rows
            )
            return [int(i) for i in result.scalars()]
        if not self._postgresql():
            return self._sqlite_insert_events(rows)
        with self._driver().cursor() as cur:
            # the rows' log indices taken from the column's sequence first (increasing, as
            # they are drawn under the log lock), then written with the rows: nothing to read
            # back by id
            cur.execute(_RESERVE_LOG_INDICES, (len(rows),))
            indices = sorted(int(v) for (v,) in cur.fetchall())
            with cur.copy(_COPY_EVENTS_AT) as copy:
                for log_index, row in zip(indices, rows, strict=True):
                    copy.write_row((log_index, *_COLUMNS_OF(row)))
        return indices

    def _sqlite_insert_events(self, rows: list[dict[str, Any]]) -> list[int]:
        """One executemany on the driver. The caller holds the write lock (BEGIN IMMEDIATE), so
        the rows take consecutive log indices ending at last_insert_rowid(); checked on the
        first row."""
        driver = Driver.of(self.session)
        as_sqlite = driver.stamper()
        stamps: dict[datetime, Any] = {}

        def stamp(at: datetime) -> Any:  # a batch's rows share one received_at: converted once
            if at not in stamps:
                stamps[at] = as_sqlite(at)
            return stamps[at]

        cur = driver.connection.cursor()
        try:
            cur.executemany(
                _INSERT_EVENTS_RECEIVED_LAST,
                [(*_OTHER_COLUMNS_OF(row), stamp(row["received_at"])) for row in rows],
            )
            last = int(cur.execute("SELECT last_insert_rowid()").fetchone()[0])
            first = last - len(rows) + 1
            found = cur.execute(
                "SELECT log_index FROM events WHERE event_id = ?", (rows[0]["event_id"],)
            ).fetchone()
        finally:
            cur.close()
        if found is None or int(found[0]) != first:  # never: the log lock is held
            raise RuntimeError("events.log_index not consecutive under the log lock")
        return list(range(first, last + 1))

    def nodes(self, ids: Iterable[NodeId]) -> dict[NodeId, bytes]:
        """The stored hashes of the nodes `ids` (those not stored are left out). A batch reads
        the frontier and its proofs' nodes here: by the driver, a primary-key search each (one
        statement on PostgreSQL, the ids as two arrays)."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        driver = Driver.of(self.session)
        if driver.postgresql:
            levels, indices = [lv for lv, _ in wanted], [ix for _, ix in wanted]
            found = driver.rows(_NODES_BY_ID_POSTGRESQL, (levels, indices))
            return {(int(lv), int(ix)): bytes(h) for lv, ix, h in found}
        cur = driver.connection.cursor()
        try:
            out: dict[NodeId, bytes] = {}
            for node in wanted:
                row = cur.execute(_NODE_BY_ID, node).fetchone()
                if row is not None:
                    out[node] = bytes(row[0])
            return out
        finally:
            cur.close()

    def level_slice(self, level: int, begin: int, end: int) -> list[bytes]:
        """The hashes of nodes [begin, end) of Merkle `level`, in order."""
        stmt = (
            select(LogNode.hash)
            .where(LogNode.level == level, LogNode.idx >= begin, LogNode.idx < end)
            .order_by(LogNode.idx)
        )
        return [bytes(h) for h in self.session.scalars(stmt)]

    def append(
        self, leaves: Sequence[tuple[int, int]], nodes: Sequence[tuple[int, int, bytes]]
    ) -> None:
        """Insert leaves (leaf_index, event log_index) and new complete nodes (level, idx, hash).
        Many rows go to PostgreSQL by COPY, as events do (several times cheaper than INSERT)."""
        if self._postgresql() and len(leaves) >= COPY_THRESHOLD:
            with self._driver().cursor() as cur:
                with cur.copy(_COPY_LEAVES) as copy:
                    for row in leaves:
                        copy.write_row(row)
                with cur.copy(_COPY_NODES) as copy:
                    for row in nodes:
                        copy.write_row(row)
            return
        if len(leaves) >= COPY_THRESHOLD:  # SQLite: the driver's executemany, as events
            cur = self._driver().cursor()
            try:
                cur.executemany(_INSERT_LEAVES, leaves)
                cur.executemany(_INSERT_NODES, nodes)
            finally:
                cur.close()
            return
        if leaves:
            self.session.execute(
                insert(LogLeaf), [{"leaf_index": i, "event_log_index": e} for i, e in leaves]
            )
        if nodes:
            self.session.execute(
                insert(LogNode), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes]
            )

    def leaf_indices(self, event_log_indices: Iterable[int]) -> dict[int, int]:
        """event log_index → leaf index, for the events given."""
        wanted = sorted(set(event_log_indices))
        out: dict[int, int] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            stmt = select(LogLeaf.event_log_index, LogLeaf.leaf_index).where(
                LogLeaf.event_log_index.in_(chunk)
            )
            out.update((int(e), int(i)) for e, i in self.session.execute(stmt))
        return out

    def leaf_indices_all(self) -> list[tuple[int, int]]:
        """(leaf index, event log_index) of every leaf, in leaf order (for checks)."""
        stmt = select(LogLeaf.leaf_index, LogLeaf.event_log_index).order_by(LogLeaf.leaf_index)
        return [(int(i), int(e)) for i, e in self.session.execute(stmt)]

    def leaves_for_subject(self, subject: str) -> list[tuple[str, int]]:
        """(event_id, leaf index) of every event about `subject`, in log order."""
        stmt = (
            select(Event.event_id, LogLeaf.leaf_index)
            .join(LogLeaf, LogLeaf.event_log_index == Event.log_index)
            .where(Event.subject == subject)
            .order_by(LogLeaf.leaf_index)
        )
        return [(str(e), int(i)) for e, i in self.session.execute(stmt)]

    def record_leaf(self, subject: str, signers: Collection[str]) -> tuple[str, int] | None:
        """(event id, leaf index) of the first `record` event about `subject` signed by one of
        `signers` (the registry's keys): the leaf that commits to the record's hash."""
        stmt = (
            select(Event.event_id, LogLeaf.leaf_index)
            .join(LogLeaf, LogLeaf.event_log_index == Event.log_index)
            .where(
                Event.subject == subject,
                Event.target == "record",
                Event.signer_fingerprint.in_(sorted(signers)),
            )
            .order_by(LogLeaf.leaf_index)
            .limit(1)
        )
        row = self.session.execute(stmt).first()
        return None if row is None else (str(row[0]), int(row[1]))

    def signed_by(self, subject: str, signers: Collection[str]) -> list[tuple[str, str, int]]:
        """(event id, signer fingerprint, leaf index) of `subject`'s events by `signers`."""
        stmt = (
            select(Event.event_id, Event.signer_fingerprint, LogLeaf.leaf_index)
            .join(LogLeaf, LogLeaf.event_log_index == Event.log_index)
            .where(Event.subject == subject, Event.signer_fingerprint.in_(sorted(signers)))
        )
        return [(str(e), str(f), int(i)) for e, f, i in self.session.execute(stmt)]

    def entries(self, begin: int, end: int) -> list[tuple[int, str]]:
        """(leaf index, entry text) of leaves [begin, end), in order."""
        stmt = (
            select(LogLeaf.leaf_index, Event.body)
            .join(Event, Event.log_index == LogLeaf.event_log_index)
            .where(LogLeaf.leaf_index >= begin, LogLeaf.leaf_index < end)
            .order_by(LogLeaf.leaf_index)
        )
        return [(int(i), str(b)) for i, b in self.session.execute(stmt)]

    def cosignatures(
        self, tree_size: int, names: Collection[str] | None = None
    ) -> Sequence[LogCosignature]:
        """The cosignatures of the checkpoint of `tree_size` (of the witnesses `names` only)."""
        stmt = select(LogCosignature).where(LogCosignature.tree_size == tree_size)
        if names is not None:
            stmt = stmt.where(LogCosignature.witness_name.in_(sorted(names)))
        return self.session.scalars(stmt.order_by(LogCosignature.witness_name)).all()

    def last_cosigned_sizes(self, names: Collection[str]) -> dict[str, int]:
        """Witness name → the largest tree size it cosigned here."""
        stmt = (
            select(LogCosignature.witness_name, func.max(LogCosignature.tree_size))
            .where(LogCosignature.witness_name.in_(sorted(names)))
            .group_by(LogCosignature.witness_name)
        )
        return {str(n): int(s) for n, s in self.session.execute(stmt)}

    def quorum_sizes(
        self,
        witnesses: Collection[tuple[str, str]],
        quorum: int,
        *,
        above: int | None = None,
        largest_first: bool = False,
        page: int = 16,
    ) -> Iterator[int]:
        """Tree sizes with at least `quorum` cosignature rows by `witnesses` — (name, prefix
        of its line: the name and the start of its key hash, so a witness's rows under an
        earlier key are left out here) — smallest first above `above`, or largest first; read
        `page` sizes a query, as far as the caller iterates (it checks each line in full)."""
        match = or_(
            *(
                and_(
                    LogCosignature.witness_name == name,
                    LogCosignature.signature_line.startswith(prefix, autoescape=True),
                )
                for name, prefix in witnesses
            )
        )
        size = LogCosignature.tree_size
        bound = above
        while True:
            stmt = select(size).where(match)
            if bound is not None:
                stmt = stmt.where(size < bound if largest_first else size > bound)
            stmt = (
                stmt.group_by(size)
                .having(func.count() >= quorum)
                .order_by(size.desc() if largest_first else size)
                .limit(page)
            )
            sizes = [int(s) for s in self.session.scalars(stmt)]
            yield from sizes
            if len(sizes) < page:
                return
            bound = sizes[-1]

    def add_cosignature(
        self, tree_size: int, witness_name: str, root: bytes, line: str, at: datetime
    ) -> None:
        # one row a (size, witness), whoever posts it first: two identical POSTs at once
        # must not race into an IntegrityError (insert-or-ignore, not get-then-add)
        dialect = self.session.get_bind().dialect.name
        upsert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self.session.execute(
            upsert(LogCosignature)
            .values(
                tree_size=tree_size,
                witness_name=witness_name,
                root_hash=root,
                signature_line=line,
                received_at=at,
            )
            .on_conflict_do_nothing(index_elements=["tree_size", "witness_name"])
        )
