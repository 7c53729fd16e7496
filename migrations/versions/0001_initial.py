"""Records, aliases, signer keys, the append-only event log and the state cache.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LOG_INDEX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)

PG_APPEND_ONLY = """
CREATE FUNCTION pith_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are append-only: % is refused', TG_OP;
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION pith_events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION pith_events_append_only();
"""
SQLITE_APPEND_ONLY = [
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE is refused'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE is refused'); END""",
]


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("pith_number", sa.String(40), nullable=False),
        sa.Column("suffix", sa.String(26), nullable=False),
        sa.Column("canonical_sha256", sa.String(64), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("source_version", sa.Integer(), nullable=False),
        sa.Column("canonical_record", sa.Text(), nullable=False),
        sa.Column("receipt", sa.Text(), nullable=False),
        sa.Column("receipt_key_fingerprint", sa.String(32), nullable=False),
        sa.Column("paper", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_records"),
        sa.UniqueConstraint("pith_number", name="uq_records_pith_number"),
        sa.UniqueConstraint("suffix", name="uq_records_suffix"),
        sa.UniqueConstraint("canonical_sha256", name="uq_records_canonical_sha256"),
        sa.UniqueConstraint(
            "source_kind", "source_id", "source_version", name="uq_records_source_kind"
        ),
    )
    # Prefix look-ups (`suffix LIKE 'ABCDEFGH%'`) use a pattern index on PostgreSQL.
    op.create_index(
        "ix_records_suffix_pattern",
        "records",
        ["suffix"],
        postgresql_ops={"suffix": "text_pattern_ops"},
    )
    op.create_table(
        "aliases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"], name="fk_aliases_record_id_records"),
        sa.UniqueConstraint("kind", "value", name="uq_aliases_kind"),
    )
    op.create_index("ix_aliases_record_id", "aliases", ["record_id"])
    op.create_table(
        "signer_keys",
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("public_key_b64", sa.String(44), nullable=False),
        sa.Column("key_id", sa.String(200), nullable=False),
        sa.Column("signer_id", sa.String(200), nullable=False),
        sa.Column("signer_type", sa.String(64), nullable=False),
        sa.Column("first_seen_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("fingerprint", name="pk_signer_keys"),
    )
    op.create_table(
        "events",
        sa.Column("log_index", LOG_INDEX, sa.Identity(), nullable=False),
        sa.Column("event_id", sa.String(71), nullable=False),
        sa.Column("subject", sa.String(40), nullable=False),
        sa.Column("signer_fingerprint", sa.String(32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev", sa.String(71), nullable=True),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(20), nullable=False),
        sa.Column("received_at", TZ, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("log_index", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["subject"], ["records.pith_number"], name="fk_events_subject_records"
        ),
        sa.ForeignKeyConstraint(
            ["signer_fingerprint"],
            ["signer_keys.fingerprint"],
            name="fk_events_signer_fingerprint_signer_keys",
        ),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_subject_log", "events", ["subject", "log_index"])
    op.create_index("ix_events_chain", "events", ["signer_fingerprint", "subject", "seq"])
    op.create_table(
        "state_cache",
        sa.Column("subject", sa.String(40), nullable=False),
        sa.Column("through_log_index", sa.BigInteger(), nullable=False),
        sa.Column("registry_keys_sha256", sa.String(64), nullable=False),
        sa.Column("state_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("computed_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_state_cache"),
        sa.ForeignKeyConstraint(
            ["subject"], ["records.pith_number"], name="fk_state_cache_subject_records"
        ),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_no_truncate ON events")
        op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
        op.execute("DROP FUNCTION IF EXISTS pith_events_append_only()")
    op.drop_table("state_cache")
    op.drop_index("ix_events_chain", table_name="events")
    op.drop_index("ix_events_subject_log", table_name="events")
    op.drop_table("events")
    op.drop_table("signer_keys")
    op.drop_index("ix_aliases_record_id", table_name="aliases")
    op.drop_table("aliases")
    op.drop_index("ix_records_suffix_pattern", table_name="records")
    op.drop_table("records")
