"""Jobs that span GPUs: the number of GPUs a job's claim profile needs (issue 17).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

A lease goes only to a worker that advertises at least that many GPUs. Existing jobs need one.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("gpus", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("gpus")
