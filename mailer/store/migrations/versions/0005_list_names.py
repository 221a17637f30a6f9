"""mailing lists: names per language

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 10:05:00.000000

Numbered 0005 as planned, written after 0006 (segments) landed: it follows 0006.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing lists get no other-language names: their readers see `name`, as before. A plain
    # ADD COLUMN, not batch mode: on SQLite batch mode copies the table and drops the old one,
    # and the drop would cascade to every subscription of every list.
    op.add_column(
        "mailing_list",
        sa.Column("names", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    )


def downgrade() -> None:
    # ALTER TABLE DROP COLUMN (SQLite 3.35+), not batch mode's copy: see upgrade().
    op.drop_column("mailing_list", "names")
