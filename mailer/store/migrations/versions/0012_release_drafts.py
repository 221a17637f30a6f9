"""release drafts: the console's releases and every saved version of them

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 15:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.store.models import UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "release_draft",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_draft")),
        sa.UniqueConstraint("slug", name=op.f("uq_release_draft_slug")),
    )
    op.create_table(
        "release_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("draft_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("plain_language", sa.String(length=16), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["draft_id"],
            ["release_draft.id"],
            name=op.f("fk_release_version_draft_id_release_draft"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_release_version")),
        sa.UniqueConstraint("draft_id", "number", name=op.f("uq_release_version_draft_id_number")),
    )
    with op.batch_alter_table("release_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_version_draft_id"), ["draft_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("release_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_version_draft_id"))
    op.drop_table("release_version")
    op.drop_table("release_draft")
