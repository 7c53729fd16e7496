"""Trust policy and bounded load (issue 14): the rate-limit buckets every worker process of a
deployment shares.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

A token bucket per (kind, client), kept in the database so that N worker processes enforce one
limit between them, not N. Rows are small and rewritten in place; a client idle longer than a
bucket takes to refill is as good as absent, and `app.core.ratelimit` prunes such rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("bucket", sa.String(120), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),  # seconds since the epoch
        sa.PrimaryKeyConstraint("bucket", name="pk_rate_buckets"),
    )
    op.create_index("ix_rate_buckets_updated", "rate_buckets", ["updated"])
    # saved states are now canonical JSON, served as they are: rebuild the older ones
    op.execute("DELETE FROM state_cache")


def downgrade() -> None:
    op.drop_index("ix_rate_buckets_updated", table_name="rate_buckets")
    op.drop_table("rate_buckets")
