"""Message-IDs computed by the database: an HMAC per (campaign, contact), as SQL.

Planning inserts a campaign's deliveries with one INSERT ... SELECT per list, nothing loaded into
Python, so the Message-ID must be an SQL expression. It equals delivery/message.py's
message_id() exactly (tests compare them on both engines). It must be unguessable:
bounces/proof.py takes a report quoting a Message-ID from the ledger as proof that it is about
the message sent to that row's recipient.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Integer, LargeBinary, String, cast, func, literal
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from mailer.delivery.message import message_id_key, message_id_maker


def message_id_column(
    session: Session,
    campaign_id: int,
    secret_key: str,
    domain: str,
    contact_id: ColumnElement[int] | QueryableAttribute[int],
) -> ColumnElement[str]:
    """The Message-ID of (campaign_id, contact_id) as an expression for this session's database."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        # HMAC-SHA256 written out (RFC 2104) with the built-in sha256(): no extension needed.
        key = message_id_key(secret_key).ljust(64, b"\0")
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
    make = message_id_maker(secret_key, domain)
    # A function of this connection only (the statement runs on it); SQLite calls it per row.
    raw.create_function(
        "mailer_message_id",
        2,
        lambda campaign, contact: make(campaign, contact or 0),
        deterministic=True,
    )
    return func.mailer_message_id(literal(campaign_id, Integer), contact_id, type_=String)
