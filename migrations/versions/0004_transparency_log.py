"""Transparency log: Merkle leaves (one per event, in log-index order), the complete subtree
hashes the tree is served and proved from, and witness cosignatures (issue 15).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Events stored before this revision become leaves here, in log-index order, so an upgraded
registry's log covers its whole history. Leaves and nodes are append-only like events.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from pith_core.tlog import append_leaves, leaf_hash

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
LOG_INDEX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TABLES = ("tlog_leaves", "tlog_nodes")

PG_APPEND_ONLY = """
CREATE FUNCTION pith_tlog_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the transparency log is append-only: % is refused', TG_OP;
END $$;
""" + "".join(
    f"""
CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t}
  FOR EACH ROW EXECUTE FUNCTION pith_tlog_append_only();
CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t}
  FOR EACH STATEMENT EXECUTE FUNCTION pith_tlog_append_only();
"""
    for t in _TABLES
)


def _sqlite_append_only(table: str) -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_no_{op_name.lower()} BEFORE {op_name} ON {table}
        BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only: {op_name} is refused');
        END"""
        for op_name in ("UPDATE", "DELETE")
    ]


BACKFILL_BATCH = 5000


def _backfill() -> None:
    """Make every event already stored a leaf, in log-index order, a batch of events at a time
    (keyset on log_index): memory stays bounded by a batch, whatever the history holds. The
    tree grows from its frontier as `app.log` appends do. (A caller may set the batch in the
    Alembic config's attributes, `backfill_batch`.)"""
    batch = int(context.config.attributes.get("backfill_batch", BACKFILL_BATCH))
    bind = op.get_bind()
    size, front, after = 0, [], 0
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT log_index, body FROM events WHERE log_index > :after "
                "ORDER BY log_index LIMIT :n"
            ),
            {"after": after, "n": batch},
        ).all()
        if not rows:
            return
        nodes, front = append_leaves(size, front, [leaf_hash(body.encode()) for _, body in rows])
        bind.execute(
            sa.text("INSERT INTO tlog_leaves (leaf_index, event_log_index) VALUES (:i, :e)"),
            [{"i": size + k, "e": log_index} for k, (log_index, _) in enumerate(rows)],
        )
        if nodes:
            bind.execute(
                sa.text("INSERT INTO tlog_nodes (level, idx, hash) VALUES (:level, :idx, :hash)"),
                [{"level": level, "idx": idx, "hash": h} for level, idx, h in nodes],
            )
        size += len(rows)
        after = int(rows[-1][0])


def upgrade() -> None:
    op.create_table(
        "tlog_leaves",
        sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_log_index", LOG_INDEX, nullable=False),
        sa.PrimaryKeyConstraint("leaf_index", name="pk_tlog_leaves"),
        sa.UniqueConstraint("event_log_index", name="uq_tlog_leaves_event_log_index"),
        sa.ForeignKeyConstraint(
            ["event_log_index"], ["events.log_index"], name="fk_tlog_leaves_event_log_index_events"
        ),
    )
    op.create_table(
        "tlog_nodes",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_tlog_nodes"),
    )
    op.create_table(
        "tlog_cosignatures",
        sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("witness_name", sa.String(200), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("signature_line", sa.Text(), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("tree_size", "witness_name", name="pk_tlog_cosignatures"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for table in _TABLES:
            for stmt in _sqlite_append_only(table):
                op.execute(stmt)
    _backfill()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for t in _TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
            op.execute(f"DROP TRIGGER IF EXISTS {t}_append_only ON {t}")
        op.execute("DROP FUNCTION IF EXISTS pith_tlog_append_only()")
    op.drop_table("tlog_cosignatures")
    op.drop_table("tlog_nodes")
    op.drop_table("tlog_leaves")
