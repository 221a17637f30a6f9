"""mailing lists: names per language

Revision ID: 0005
Revises: 0006
Create Date: 2026-12-02 10:05:00.000000

Numbered 0005 as planned, written after 0006 (segments) landed: it follows 0006.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing lists get no other-language names: their readers see `name`, as before.
    with op.batch_alter_table("mailing_list") as batch_op:
        batch_op.add_column(sa.Column("names", sa.JSON(), nullable=True))
    op.execute("UPDATE mailing_list SET names = '{}'")
    with op.batch_alter_table("mailing_list") as batch_op:
        batch_op.alter_column("names", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("mailing_list") as batch_op:
        batch_op.drop_column("names")
