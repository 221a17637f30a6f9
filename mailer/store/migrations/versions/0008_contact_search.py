"""contact search: one lower-cased line per contact, kept by triggers, trigram-indexed on PostgreSQL

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 12:00:00.000000

The console searches 100,000 contacts as the user types (mailer.contacts.search). Reading every
contact's columns and attributes for each keystroke took 0.5-0.9 s; the line
(mailer/store/contact_search.py) is one narrow table to read, and PostgreSQL answers from a
pg_trgm GIN index over it when the extension can be created (else the same answers, slower: the
warning says how to add the index later). Triggers on `contact` keep it, so every writer
(imports, edits, erasures, scripts) keeps it right; existing contacts get their line here.

The tag filter compares lower(tag): an index on it lets a rare tag's contacts be found at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.store import contact_search

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here as of this revision (contact_search.FIELDS may grow later).
FIELDS = ("email", "name", "organisation", "role", "beat", "media_type", "region", "phone")
INDEX = "ix_contact_search_body"
TAG_INDEX = "ix_contact_tag_lower_tag"


def upgrade() -> None:
    bind = op.get_bind()
    # The tag filter compares lower(tag) (as `--where tag = x` does).
    op.create_index(TAG_INDEX, "contact_tag", [sa.text("lower(tag)")], unique=False)
    op.create_table(
        "contact_search",
        sa.Column("contact_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_contact_search")),
    )
    # Triggers first, then the fill: a contact written in between is not missed.
    for statement in contact_search.create_statements(bind.dialect.name, FIELDS):
        bind.exec_driver_sql(statement)
    bind.exec_driver_sql(contact_search.fill_statement(bind.dialect.name, FIELDS))
    if bind.dialect.name == "postgresql":
        if contact_search.enable_trigram(bind):
            # After the fill: one index build is quicker than 100,000 index inserts.
            op.create_index(
                INDEX,
                "contact_search",
                ["body"],
                postgresql_using="gin",
                postgresql_ops={"body": "gin_trgm_ops"},
            )
        # Statistics on the new line and on lower(tag) now, not when autovacuum comes by.
        bind.exec_driver_sql("ANALYZE contact_search")
        bind.exec_driver_sql("ANALYZE contact_tag")
    else:
        # SQLite has no trigram index: an empty one keeps the schema the models' (see there).
        op.create_index(INDEX, "contact_search", ["body"], sqlite_where=sa.text("0"))


def downgrade() -> None:
    bind = op.get_bind()
    for statement in contact_search.drop_statements(bind.dialect.name):
        bind.exec_driver_sql(statement)
    op.drop_table("contact_search")
    op.drop_index(TAG_INDEX, table_name="contact_tag")
