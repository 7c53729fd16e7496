"""Every search query: full text through the index migration 0005 keeps (PostgreSQL's tsvector
with GIN, SQLite's FTS5), newest-first paging of all records."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, func, literal_column, select, text
from sqlalchemy.orm import Session

from ..storage.models import Record


class SearchRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    def matching(self, words: Sequence[str], limit: int, offset: int) -> tuple[int, list[Record]]:
        """(how many records match every word, as a prefix; the page of them, best first)."""
        if not words:
            return 0, []
        if self._postgres:
            return self._postgres_matching(words, limit, offset)
        return self._sqlite_matching(words, limit, offset)

    def _postgres_matching(
        self, words: Sequence[str], limit: int, offset: int
    ) -> tuple[int, list[Record]]:
        # Each word as typed or as an English stem, both as prefixes; every word must match.
        query: ColumnElement[object] | None = None
        for word in words:
            either = func.to_tsquery("simple", f"{word}:*").op("||")(
                func.to_tsquery("english", f"{word}:*")
            )
            query = either if query is None else query.op("&&")(either)
        tsv = literal_column("records.search_tsv")
        condition = tsv.op("@@")(query)
        total = self.session.scalar(select(func.count()).select_from(Record).where(condition))
        stmt = (
            select(Record)
            .where(condition)
            .order_by(func.ts_rank(tsv, query).desc(), Record.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return int(total or 0), list(self.session.scalars(stmt))

    def _sqlite_matching(
        self, words: Sequence[str], limit: int, offset: int
    ) -> tuple[int, list[Record]]:
        # Words are \w+ (no quotes can occur); each a quoted prefix term, all required.
        match = " ".join(f'"{word}"*' for word in words)
        total = self.session.scalar(
            text("SELECT count(*) FROM records_fts WHERE records_fts MATCH :m"), {"m": match}
        )
        ids = list(
            self.session.scalars(
                text(
                    "SELECT rowid FROM records_fts WHERE records_fts MATCH :m "
                    "ORDER BY bm25(records_fts, 10.0, 5.0, 1.0), rowid DESC "
                    "LIMIT :limit OFFSET :offset"
                ),
                {"m": match, "limit": limit, "offset": offset},
            )
        )
        if not ids:
            return int(total or 0), []
        found = {r.id: r for r in self.session.scalars(select(Record).where(Record.id.in_(ids)))}
        return int(total or 0), [found[i] for i in ids if i in found]

    def count(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Record)) or 0)

    def newest(self, limit: int, offset: int) -> tuple[int, list[Record]]:
        total = self.session.scalar(select(func.count()).select_from(Record))
        stmt = select(Record).order_by(Record.id.desc()).limit(limit).offset(offset)
        return int(total or 0), list(self.session.scalars(stmt))
