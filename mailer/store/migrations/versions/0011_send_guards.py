"""send guards: a campaign's pause reason and acknowledged complaints; provider holds

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 15:50:00

delivery/guards.py: a campaign pauses itself when its complaints cross the line (the reason is
kept until a resume), and a mail provider refusing the sender holds its recipients.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.store.models import UTCDateTime

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode: on SQLite batch mode copies `campaign` and drops the
    # old table, and the drop would cascade to every delivery row of the ledger (see 0007).
    op.add_column("campaign", sa.Column("pause_reason", sa.Text(), nullable=True))
    op.add_column("campaign", sa.Column("complaints_acknowledged", sa.Integer(), nullable=True))

    op.create_table(
        "provider_hold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=300), nullable=False),
        sa.Column("label", sa.String(length=400), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("summary", sa.String(length=200), nullable=False),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("smtp_reply", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("held_until", UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_provider_hold_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_hold")),
        sa.UniqueConstraint(
            "campaign_id", "provider", name=op.f("uq_provider_hold_campaign_id_provider")
        ),
    )


def downgrade() -> None:
    op.drop_table("provider_hold")
    # ALTER TABLE DROP COLUMN (SQLite 3.35+), not batch mode's copy: see upgrade().
    op.drop_column("campaign", "complaints_acknowledged")
    op.drop_column("campaign", "pause_reason")
