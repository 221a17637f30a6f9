"""bounce review queue: reports that prove nothing wait for a person

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.store.models import UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bounce_review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bounce_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("why", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["bounce_id"],
            ["bounce.id"],
            name=op.f("fk_bounce_review_bounce_id_bounce"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounce_review")),
        sa.UniqueConstraint("bounce_id", name=op.f("uq_bounce_review_bounce_id")),
    )
    with op.batch_alter_table("bounce_review", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bounce_review_email"), ["email"], unique=False)
        batch_op.create_index(batch_op.f("ix_bounce_review_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("bounce_review", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bounce_review_state"))
        batch_op.drop_index(batch_op.f("ix_bounce_review_email"))
    op.drop_table("bounce_review")
