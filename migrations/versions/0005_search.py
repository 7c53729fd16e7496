"""Search and discovery: full-text index of records (issue 16).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

PostgreSQL: a stored generated `tsvector` column on `records` (title weighted A, authors B,
abstract C; English stems beside the plain words, so "optimizers" finds "optimizer" and an
author's name is found as written) with a GIN index. SQLite: an FTS5 table (porter stemming)
kept by triggers on `records`. Both are derived from `records.paper`, never written by hand.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PG_DOCUMENT = """
    setweight(to_tsvector('english', coalesce((paper::jsonb)->>'title', '')), 'A') ||
    setweight(to_tsvector('simple', coalesce((paper::jsonb)->>'title', '')), 'A') ||
    setweight(to_tsvector('simple', coalesce((paper::jsonb)->>'authors_text', '')), 'B') ||
    setweight(to_tsvector('english', coalesce((paper::jsonb)->>'abstract_excerpt', '')), 'C') ||
    setweight(to_tsvector('simple', coalesce((paper::jsonb)->>'abstract_excerpt', '')), 'C')
"""
SQLITE_ROW = (
    "new.id, coalesce(json_extract(new.paper, '$.title'), ''), "
    "coalesce(json_extract(new.paper, '$.authors_text'), ''), "
    "coalesce(json_extract(new.paper, '$.abstract_excerpt'), '')"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"ALTER TABLE records ADD COLUMN search_tsv tsvector "
            f"GENERATED ALWAYS AS ({PG_DOCUMENT}) STORED"
        )
        op.execute("CREATE INDEX ix_records_search_tsv ON records USING gin (search_tsv)")
        return
    op.execute(
        "CREATE VIRTUAL TABLE records_fts USING fts5("
        "title, authors, abstract, tokenize = 'porter unicode61 remove_diacritics 2')"
    )
    op.execute(
        "INSERT INTO records_fts (rowid, title, authors, abstract) SELECT "
        + SQLITE_ROW.replace("new.", "")
        + " FROM records"
    )
    op.execute(
        "CREATE TRIGGER records_fts_insert AFTER INSERT ON records BEGIN "
        f"INSERT INTO records_fts (rowid, title, authors, abstract) VALUES ({SQLITE_ROW}); END"
    )
    op.execute(
        "CREATE TRIGGER records_fts_update AFTER UPDATE OF paper ON records BEGIN "
        "DELETE FROM records_fts WHERE rowid = old.id; "
        f"INSERT INTO records_fts (rowid, title, authors, abstract) VALUES ({SQLITE_ROW}); END"
    )
    op.execute(
        "CREATE TRIGGER records_fts_delete AFTER DELETE ON records BEGIN "
        "DELETE FROM records_fts WHERE rowid = old.id; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_records_search_tsv")
        op.execute("ALTER TABLE records DROP COLUMN IF EXISTS search_tsv")
        return
    for trigger in ("records_fts_insert", "records_fts_update", "records_fts_delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS records_fts")
