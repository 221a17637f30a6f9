"""newsroom: publications, media files, press and archive flags on lists

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 12:06:20.715243

Also an index for the console's suppression list (newest first, a page at a time).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.store.models import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media_file",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("original_sha256", sa.String(length=64), nullable=True),
        sa.Column("scale", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_media_file")),
    )
    with op.batch_alter_table("media_file", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_media_file_original_sha256"), ["original_sha256"], unique=False
        )

    op.create_table(
        "publication",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=200), nullable=False),
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("embargo", UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_sent_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("publish", sa.Boolean(), nullable=False),
        sa.Column("lists", sa.JSON(), nullable=False),
        sa.Column("withdrawn_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_note", sa.Text(), nullable=False),
        sa.Column("corrections", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["release_id"], ["release.id"], name=op.f("fk_publication_release_id_release")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publication")),
        sa.UniqueConstraint("slug", name=op.f("uq_publication_slug")),
    )
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_publication_first_sent_at"), ["first_sent_at"], unique=False
        )
        batch_op.create_index("ix_publication_year_month", ["year", "month"], unique=False)

    op.create_table(
        "release_media",
        sa.Column("release_slug", sa.String(length=200), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["media_file.sha256"],
            name=op.f("fk_release_media_sha256_media_file"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("release_slug", "sha256", name=op.f("pk_release_media")),
    )
    with op.batch_alter_table("release_media", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_release_media_sha256"), ["sha256"], unique=False)

    # Plain ADD COLUMN, not batch mode: on SQLite batch mode copies the table and drops the old
    # one, and the drop would cascade to every subscription of every list (see 0005).
    op.add_column(
        "mailing_list",
        sa.Column("press", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "mailing_list",
        sa.Column("archive", sa.Boolean(), server_default=sa.text("true"), nullable=False),
    )

    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.create_index("ix_suppression_created_at_id", ["created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_index("ix_suppression_created_at_id")

    # ALTER TABLE DROP COLUMN (SQLite 3.35+), not batch mode's copy: see upgrade().
    op.drop_column("mailing_list", "archive")
    op.drop_column("mailing_list", "press")

    with op.batch_alter_table("release_media", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_release_media_sha256"))

    op.drop_table("release_media")
    with op.batch_alter_table("publication", schema=None) as batch_op:
        batch_op.drop_index("ix_publication_year_month")
        batch_op.drop_index(batch_op.f("ix_publication_first_sent_at"))

    op.drop_table("publication")
    with op.batch_alter_table("media_file", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_file_original_sha256"))

    op.drop_table("media_file")
