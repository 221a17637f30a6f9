"""The contact search line: one lower-cased line of text per contact, written by the database.

`contact_search.body` is " email name outlet role beat media_type region phone attribute-values",
each part after a space (so the start of a word is a space and the word), lower-cased by the
database itself (SQLite folds A-Z; PostgreSQL folds by the database's locale). The console's
search (mailer.contacts.search) lowers what is typed with the same function, so the two always
agree.

Triggers on `contact` write the line and remove it with the contact, whoever writes the contact:
the importer's bulk INSERT ... SELECT, an edit, an erasure, SQL of one's own. Python never
writes it, so it cannot fall behind. No foreign key: a 100,000-row import pays no per-row check,
and the delete trigger does the cascading. PostgreSQL triggers are per statement (one INSERT
... SELECT over the statement's new rows), SQLite's per row (it has no other kind).

PostgreSQL indexes the line with a pg_trgm GIN index when the extension can be created (it is
trusted since PostgreSQL 13: a database owner may create it). Without it the search gives the
same answers by reading the whole table, which is slower at 100,000 contacts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import BaseDDLElement
from sqlalchemy.sql.schema import SchemaItem

log = logging.getLogger("mailer.store")

# The contact columns in the line, in this order, then the attribute values.
FIELDS = ("email", "name", "organisation", "role", "beat", "media_type", "region", "phone")
TRIGRAM_INDEX = "ix_contact_search_body"
_TRIGGERS = ("contact_search_insert", "contact_search_update", "contact_search_delete")
_PG_FUNCTIONS = ("contact_search_write", "contact_search_forget")


def body_sql(dialect: str, row: str, fields: Sequence[str] = FIELDS) -> str:
    """The SQL expression of one contact's line, `row` naming the contact (NEW, a table alias)."""
    columns = " || ".join(f"' ' || lower(coalesce({row}.{name}, ''))" for name in fields)
    attributes = f"{row}.attributes"
    if dialect == "postgresql":
        values = (
            f"CASE WHEN json_typeof({attributes}) = 'object' THEN coalesce((SELECT "
            f"' ' || string_agg(lower(e.value), ' ') FROM json_each_text({attributes}) AS e), '') "
            "ELSE '' END"
        )
    else:
        # json_valid first: json_each() would fail the whole INSERT on text that is not JSON.
        values = (
            f"CASE WHEN json_valid({attributes}) AND json_type({attributes}) = 'object' THEN "
            f"coalesce((SELECT ' ' || group_concat(lower(value), ' ') "
            f"FROM json_each({attributes})), '') ELSE '' END"
        )
    return f"{columns} || {values}"


def create_statements(dialect: str, fields: Sequence[str] = FIELDS) -> list[str]:
    """The triggers (and, on PostgreSQL, their functions) that keep the lines."""
    if dialect == "postgresql":
        write = (
            "CREATE OR REPLACE FUNCTION contact_search_write() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO contact_search (contact_id, body) "
            f"SELECT n.id, {body_sql(dialect, 'n', fields)} FROM contact_search_new AS n "
            "ON CONFLICT (contact_id) DO UPDATE SET body = EXCLUDED.body "
            # An UPDATE that changed no searched field (updated_at, say) writes nothing here.
            "WHERE contact_search.body IS DISTINCT FROM EXCLUDED.body; "
            "RETURN NULL; END $$"
        )
        forget = (
            "CREATE OR REPLACE FUNCTION contact_search_forget() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "DELETE FROM contact_search AS s USING contact_search_old AS o "
            "WHERE s.contact_id = o.id; RETURN NULL; END $$"
        )
        # Transition tables cannot go with a column list: every UPDATE of contact runs it, as
        # one INSERT ... SELECT over the rows it changed.
        return [
            write,
            forget,
            "CREATE TRIGGER contact_search_insert AFTER INSERT ON contact "
            "REFERENCING NEW TABLE AS contact_search_new FOR EACH STATEMENT "
            "EXECUTE FUNCTION contact_search_write()",
            "CREATE TRIGGER contact_search_update AFTER UPDATE ON contact "
            "REFERENCING NEW TABLE AS contact_search_new FOR EACH STATEMENT "
            "EXECUTE FUNCTION contact_search_write()",
            "CREATE TRIGGER contact_search_delete AFTER DELETE ON contact "
            "REFERENCING OLD TABLE AS contact_search_old FOR EACH STATEMENT "
            "EXECUTE FUNCTION contact_search_forget()",
        ]
    line = body_sql(dialect, "NEW", fields)
    upsert = f"INSERT OR REPLACE INTO contact_search (contact_id, body) VALUES (NEW.id, {line})"
    watched = ", ".join([*fields, "attributes"])
    return [
        f"CREATE TRIGGER contact_search_insert AFTER INSERT ON contact BEGIN {upsert}; END",
        f"CREATE TRIGGER contact_search_update AFTER UPDATE OF {watched} ON contact "
        f"BEGIN {upsert}; END",
        "CREATE TRIGGER contact_search_delete AFTER DELETE ON contact "
        "BEGIN DELETE FROM contact_search WHERE contact_id = OLD.id; END",
    ]


def drop_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        drops = [f"DROP TRIGGER IF EXISTS {name} ON contact" for name in _TRIGGERS]
        return drops + [f"DROP FUNCTION IF EXISTS {name}()" for name in _PG_FUNCTIONS]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS]


def fill_statement(dialect: str, fields: Sequence[str] = FIELDS) -> str:
    """Write the line of every contact that has none (after the triggers exist: none missed)."""
    line = body_sql(dialect, "c", fields)
    missing = "NOT EXISTS (SELECT 1 FROM contact_search AS s WHERE s.contact_id = c.id)"
    return (
        f"INSERT INTO contact_search (contact_id, body) "
        f"SELECT c.id, {line} FROM contact AS c WHERE {missing}"
    )


def install(connection: Connection, fields: Sequence[str] = FIELDS) -> None:
    """Create the triggers and fill the lines of the contacts already there."""
    dialect = connection.dialect.name
    for statement in create_statements(dialect, fields):
        connection.exec_driver_sql(statement)
    connection.exec_driver_sql(fill_statement(dialect, fields))


def enable_trigram(connection: Connection) -> bool:
    """PostgreSQL: create pg_trgm if it is not there and this user may; whether it is there."""
    if connection.dialect.name != "postgresql":
        return False
    if not has_trigram(connection):
        try:
            # A savepoint: a refusal must not abort the caller's transaction.
            with connection.begin_nested():
                connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except DBAPIError as err:
            log.warning(
                "contact search: PostgreSQL's pg_trgm extension could not be created (%s); "
                "searching works without it but reads every contact. A superuser can run "
                "CREATE EXTENSION pg_trgm; then CREATE INDEX %s ON contact_search "
                "USING gin (body gin_trgm_ops);",
                str(err.orig).strip().splitlines()[0] if err.orig else err,
                TRIGRAM_INDEX,
            )
            return False
    return True


def has_trigram(connection: Connection) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    found = connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
    return found.scalar() is not None


def index_wanted(
    ddl: BaseDDLElement,
    target: SchemaItem | str,
    bind: Connection | None,
    tables: list[Table] | None = None,
    state: Any | None = None,
    *,
    dialect: Dialect,
    compiler: DDLCompiler | None = None,
    checkfirst: bool = False,
) -> bool:
    """ddl_if rule of the trigram index: everywhere but a PostgreSQL without pg_trgm."""
    return bind is None or dialect.name != "postgresql" or has_trigram(bind)


def before_create(target: Any, connection: Connection, **kw: Any) -> None:
    """MetaData before_create: the extension the trigram index needs, where it can be had."""
    if _creating_search(kw):
        enable_trigram(connection)


def after_create(target: Any, connection: Connection, **kw: Any) -> None:
    """MetaData after_create: the triggers, once `contact` and `contact_search` both exist."""
    if _creating_search(kw):
        install(connection)


def _creating_search(kw: dict[str, Any]) -> bool:
    tables = kw.get("tables") or []
    return any(getattr(t, "name", "") == "contact_search" for t in tables)
