"""press fields on contact: role, beat, media type, region, phone (moved out of attributes)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 09:00:00.000000

The importer used to file these five under `contact.attributes` ("role", "beat", "media_type",
"region", "phone"). They become columns ("" when unknown), and every existing value moves:
- a string value no longer than its column is moved, and its key leaves `attributes`;
- any other value (a number, a list, an over-long text) stays an attribute, so nothing is lost
  (`--where attr.beat ...` still reaches it);
- media types are written the one way mailer compares them (print, tv, radio, online, ethnic;
  mailer.contacts.press): "Newspaper" and "신문" both become "print"; a word mailer does not
  know is kept as written.
Then lower(field) is indexed (what `--where` compares: the beat and the outlet on SQLite, every
press field and the language on PostgreSQL) and, on PostgreSQL, the table analysed, so the
planner has statistics on those expressions from the start.

A downgrade moves non-empty values back into `attributes` (a media type stays normalised).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mailer.contacts.press import media_type

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen here as of this revision (mailer.contacts.press.LIMITS may change later).
FIELDS = {"role": 200, "beat": 200, "media_type": 100, "region": 200, "phone": 100}
INDEXES = {
    "ix_contact_organisation": "lower(organisation)",
    "ix_contact_beat": "lower(beat)",
}
# PostgreSQL only: for their statistics (SQLite keeps none, and each index costs every import).
PG_INDEXES = {
    "ix_contact_language": "lower(coalesce(language, ''))",
    "ix_contact_role": "lower(role)",
    "ix_contact_media_type": "lower(media_type)",
    "ix_contact_region": "lower(region)",
}


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    # Plain ADD COLUMN, never batch mode: on SQLite batch mode copies `contact` and drops the
    # old table, and the drop would cascade to every subscription, tag and notice.
    for name, length in FIELDS.items():
        op.add_column(
            "contact",
            sa.Column(name, sa.String(length=length), nullable=False, server_default=sa.text("''")),
        )
    for name, length in FIELDS.items():
        bind.execute(sa.text(_move_pg(name) if pg else _move_sqlite(name)), {"limit": length})
    _normalise_media_types(bind)
    for index, expression in {**INDEXES, **(PG_INDEXES if pg else {})}.items():
        op.create_index(index, "contact", [sa.text(expression)], unique=False)
    if pg:
        # Statistics on the new expression indexes now, not when autovacuum gets round to it:
        # `--where` estimates come from them (ANALYZE is transactional, unlike VACUUM).
        bind.execute(sa.text("ANALYZE contact"))


def _move_sqlite(name: str) -> str:
    path = f"'$.\"{name}\"'"
    return (
        f"UPDATE contact SET {name} = json_extract(attributes, {path}), "
        f"attributes = json_remove(attributes, {path}) "
        f"WHERE json_type(attributes, {path}) = 'text' "
        f"AND length(json_extract(attributes, {path})) <= :limit"
    )


def _move_pg(name: str) -> str:
    # `attributes` is json (not jsonb): rebuilt from json_each in its own order, so the keys
    # left keep the order they had (exports list attribute columns in that order).
    return (
        f"UPDATE contact SET {name} = attributes ->> '{name}', "
        "attributes = (SELECT coalesce(json_object_agg(e.key, e.value ORDER BY e.n), '{}'::json) "
        "FROM json_each(contact.attributes) WITH ORDINALITY AS e(key, value, n) "
        f"WHERE e.key <> '{name}') "
        f"WHERE json_typeof(attributes -> '{name}') = 'string' "
        f"AND length(attributes ->> '{name}') <= :limit"
    )


def _normalise_media_types(bind: sa.Connection) -> None:
    # One UPDATE per distinct way of writing a media type (a handful), never one per contact.
    written = bind.execute(
        sa.text("SELECT DISTINCT media_type FROM contact WHERE media_type <> ''")
    ).scalars()
    for value in list(written):
        kind = media_type(value)
        if kind is not None and kind != value:
            bind.execute(
                sa.text("UPDATE contact SET media_type = :kind WHERE media_type = :value"),
                {"kind": kind, "value": value},
            )


def downgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    for name in FIELDS:
        if pg:
            back = (
                f"UPDATE contact SET attributes = (SELECT json_object_agg(x.key, x.value "
                "ORDER BY x.n) FROM (SELECT e.key, e.value, e.n FROM json_each(contact.attributes) "
                f"WITH ORDINALITY AS e(key, value, n) WHERE e.key <> '{name}' "
                f"UNION ALL SELECT '{name}', to_json(contact.{name}), 1000000) AS x) "
                f"WHERE {name} <> ''"
            )
        else:
            back = (
                f"UPDATE contact SET attributes = json_set(attributes, '$.\"{name}\"', {name}) "
                f"WHERE {name} <> ''"
            )
        bind.execute(sa.text(back))
    for index in {**INDEXES, **(PG_INDEXES if pg else {})}:
        op.drop_index(index, table_name="contact")
    # ALTER TABLE DROP COLUMN (SQLite 3.35+), not batch mode's copy: see upgrade().
    for name in FIELDS:
        op.drop_column("contact", name)
