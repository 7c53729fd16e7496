"""Trust policy and incremental state (issue 14).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Reserved in order so that the work on issues 14, 15 and 16 chains one head; a revision that has
nothing to change yet is a no-op.
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
