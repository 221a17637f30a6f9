"""installation: this database's own random part of every Message-ID

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 15:40:00

One row, made here for an existing database (and by mailer.store.schema for a new one):
two databases sharing one mailer.toml no longer write the same Message-IDs.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("id_part", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )
    # Made in the migration itself, so every database has its own from the start.
    op.bulk_insert(table, [{"id": 1, "id_part": secrets.token_hex(16)}])


def downgrade() -> None:
    op.drop_table("installation")
