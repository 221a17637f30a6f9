"""bounce source: the report message behind each bounce row, as received (cut at a setting)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Bounces recorded before this revision keep no report: the console says so for them.
    op.create_table(
        "bounce_source",
        sa.Column("bounce_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bounce_id"],
            ["bounce.id"],
            name=op.f("fk_bounce_source_bounce_id_bounce"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bounce_id", name=op.f("pk_bounce_source")),
    )


def downgrade() -> None:
    op.drop_table("bounce_source")
