"""Message-IDs computed by the database: an HMAC per (campaign, contact), as SQL.

Planning inserts a campaign's deliveries with one INSERT ... SELECT per list, nothing loaded into
Python, so the Message-ID must be an SQL expression. It equals delivery/message.py's
message_id() exactly (tests compare them on both engines). It must be unguessable:
bounces/proof.py takes a report quoting a Message-ID from the ledger as proof that it is about
the message sent to that row's recipient.

Each database has a random part of its own (the `installation` row, migration 0010) in the
HMAC's key: two databases sharing one mailer.toml (and so one secret) both number their first
campaign 1 and their contacts from 1, and would otherwise write the same Message-IDs.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Integer, LargeBinary, String, cast, func, literal, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from mailer.delivery.message import message_id_key, message_id_maker
from mailer.store.models import Installation, new_id_part


def installation_part(session: Session) -> str:
    """This database's own random part of every Message-ID (the one `installation` row).

    Made at creation (mailer.store.schema) or by migration 0010; made here when the row is
    missing (a database whose tables were emptied), once even with several planners at once."""
    part = session.scalar(select(Installation.id_part).where(Installation.id == 1))
    if part is not None:
        return part
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite_dialect.insert
    session.execute(
        insert(Installation).values(id=1, id_part=new_id_part()).on_conflict_do_nothing()
    )
    made = session.scalar(select(Installation.id_part).where(Installation.id == 1))
    assert made is not None
    return made


def message_id_column(
    session: Session,
    campaign_id: int,
    secret_key: str,
    domain: str,
    contact_id: ColumnElement[int] | QueryableAttribute[int],
) -> ColumnElement[str]:
    """The Message-ID of (campaign_id, contact_id) as an expression for this session's database."""
    installation = installation_part(session)
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # HMAC-SHA256 written out (RFC 2104) with the built-in sha256(): no extension needed.
        key = message_id_key(secret_key, installation).ljust(64, b"\0")
        ipad = literal(bytes(b ^ 0x36 for b in key), LargeBinary)
        opad = literal(bytes(b ^ 0x5C for b in key), LargeBinary)
        text = literal(f"{campaign_id}:") + cast(func.coalesce(contact_id, 0), String)
        inner = func.sha256(ipad.op("||")(func.convert_to(text, "UTF8")), type_=LargeBinary)
        outer = func.sha256(opad.op("||")(inner), type_=LargeBinary)
        digest = func.substr(func.encode(outer, "hex", type_=String), 1, 24, type_=String)
        return literal(f"<c{campaign_id}.") + digest + literal(f"@{domain}>")
    raw = conn.connection.driver_connection
    if not isinstance(raw, sqlite3.Connection):  # pragma: no cover - mailer runs on two engines
        raise TypeError(f"unsupported database driver {type(raw).__name__}")
    make = message_id_maker(secret_key, domain, installation)
    # A function of this connection only (the statement runs on it); SQLite calls it per row.
    raw.create_function(
        "mailer_message_id",
        2,
        lambda campaign, contact: make(campaign, contact or 0),
        deterministic=True,
    )
    return func.mailer_message_id(literal(campaign_id, Integer), contact_id, type_=String)
