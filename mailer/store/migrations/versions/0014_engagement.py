"""engagement: click tracking per list, the reader's switch, tracked links and clicks

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:00:00

Issue 17 (mailer.engagement, docs/engagement.md): lists gain track_clicks and track_people
(on for existing press lists, off for the rest: the rule new lists follow too), contacts the
switch a reader turns per-person tracking off with, and two tables: the links of each
campaign's email and the clicks (and opens) on them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.store.models import UTCDateTime

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, never batch mode: on SQLite batch mode copies the table and drops the
    # old one, and the drop would cascade to every subscription (and lose contact's
    # expression indexes, which batch mode cannot copy): see 0007 and 0009.
    op.add_column(
        "mailing_list",
        sa.Column("track_clicks", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column(
        "mailing_list",
        sa.Column("track_people", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.execute("UPDATE mailing_list SET track_clicks = press, track_people = press")
    op.add_column(
        "contact",
        sa.Column(
            "track_people_off", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )

    op.create_table(
        "tracked_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_tracked_link_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracked_link")),
        sa.UniqueConstraint(
            "campaign_id",
            "language",
            "position",
            name=op.f("uq_tracked_link_campaign_id_language_position"),
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "click",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Integer(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("machine", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "machine_reason", sa.String(length=40), server_default=sa.text("''"), nullable=False
        ),
        sa.Column("kind", sa.String(length=8), server_default=sa.text("'click'"), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaign.id"],
            name=op.f("fk_click_campaign_id_campaign"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
            name=op.f("fk_click_contact_id_contact"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["tracked_link.id"],
            name=op.f("fk_click_link_id_tracked_link"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_click")),
    )
    with op.batch_alter_table("click", schema=None) as batch_op:
        batch_op.create_index("ix_click_campaign_link", ["campaign_id", "link_id"], unique=False)
        batch_op.create_index(
            "ix_click_contact_campaign", ["contact_id", "campaign_id"], unique=False
        )
        batch_op.create_index("ix_click_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("click", schema=None) as batch_op:
        batch_op.drop_index("ix_click_at")
        batch_op.drop_index("ix_click_contact_campaign")
        batch_op.drop_index("ix_click_campaign_link")
    op.drop_table("click")
    op.drop_table("tracked_link")
    # ALTER TABLE DROP COLUMN (SQLite 3.35+), not batch mode's copy: see upgrade().
    op.drop_column("contact", "track_people_off")
    op.drop_column("mailing_list", "track_people")
    op.drop_column("mailing_list", "track_clicks")
