"""`contacts export`: contacts as CSV that Excel opens correctly and `contacts import` reads back.

The file is UTF-8 with a byte-order mark (Excel then shows Korean correctly), CRLF line ends.
Columns: email (as typed), name, organisation (the outlet), language, tags, the press fields
some exported contact has (role, beat, media_type, region, phone), one column per attribute,
then `mailer:subscriptions` ("list:status; ...") and `mailer:suppressed` (the reason). The
`mailer:` columns are informational: the importer recognises them, ignores them, and knows from
them that the file is an export. An attribute whose name the importer would read as a field
(e.g. "Email" or "이름") is written as `attribute:NAME`.

Every cell that starts like a spreadsheet formula (= + - @ tab CR), or like an already neutralised
one (quotes then one of those), gets one extra leading quote, except plain numbers and phone
numbers (+1 215-555-0101); the importer takes exactly one off again, and only in files that
carry the `mailer:subscriptions` column, so a user's own cells are never altered (the rule is
in mailer.csvsafe, shared by every CSV mailer writes).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from mailer.contacts.lists import get_list
from mailer.contacts.press import PRESS_FIELDS
from mailer.contacts.segments import contact_filter, mailbox_sql
from mailer.contacts.suppressions import covers_mailbox
from mailer.csvsafe import write_csv
from mailer.errors import InvalidInputError, MailerError
from mailer.imports.columns import ALIASES, ATTRIBUTE_PREFIX, EXPORT_MARKER, FIELDS, header_key
from mailer.private import PRIVATE_MODE
from mailer.store.models import Contact, Subscription, SubscriptionStatus, Suppression

BASE_COLUMNS = ["email", "name", "organisation", "language", "tags"]
INFO_COLUMNS = [EXPORT_MARKER, "mailer:suppressed"]
S = TypeVar("S", bound="Select[*tuple[Any, ...]]")


def _where(stmt: S, list_id: int | None, status: str | None, chosen: Any = None) -> S:
    if chosen is not None:
        stmt = stmt.where(chosen)  # --where / --segment (mailer.contacts.segments)
    if list_id is None and status is None:
        return stmt
    cond = select(Subscription.id).where(Subscription.contact_id == Contact.id)
    if list_id is not None:
        cond = cond.where(Subscription.list_id == list_id)
    if status is not None:
        cond = cond.where(Subscription.status == SubscriptionStatus(status))
    return stmt.where(cond.exists())


def attribute_header(key: str) -> str:
    """The column name for an attribute, prefixed when the importer would misread it.

    A header the importer reads as a press field ("Beat") is not prefixed: the export writes
    that field's own column before it (press_columns), and the importer takes the first."""
    field = ALIASES.get(header_key(key))
    if (
        key in FIELDS
        or key.startswith(("mailer:", ATTRIBUTE_PREFIX))
        or (field is not None and field not in PRESS_FIELDS)
        or key in BASE_COLUMNS
    ):
        return ATTRIBUTE_PREFIX + key
    return key


def press_columns(filled: set[str], attribute_keys: list[str]) -> list[str]:
    """The press fields written: those some exported contact has, and those an attribute's
    header would otherwise be read as (so the field's own column comes first)."""
    misread = {ALIASES.get(header_key(k)) for k in attribute_keys}
    return [name for name in PRESS_FIELDS if name in filled or name in misread]


def export_contacts(
    session: Session,
    out: IO[bytes],
    list_slug: str | None = None,
    status: str | None = None,
    *,
    where: Sequence[str] = (),
    segment: str | None = None,
) -> int:
    """Write the selected contacts as CSV (UTF-8 with BOM) to a binary stream; returns the count.

    `where` / `segment`: only the contacts they choose (mailer.contacts.segments)."""
    if status is not None and status not in {s.value for s in SubscriptionStatus}:
        raise InvalidInputError(f"unknown status {status!r} (pending, subscribed or unsubscribed)")
    list_id = get_list(session, list_slug).id if list_slug is not None else None
    chosen = contact_filter(session, segment, where)
    keys: dict[str, None] = {}
    filled: set[str] = set()
    fields = [getattr(Contact, name) for name in PRESS_FIELDS]
    first_pass = _where(select(Contact.attributes, *fields), list_id, status, chosen)
    for attrs, *values in session.execute(
        first_pass.order_by(Contact.email).execution_options(yield_per=1000)
    ):
        for key in attrs or {}:
            keys.setdefault(key, None)
        filled.update(name for name, value in zip(PRESS_FIELDS, values, strict=True) if value)
    attribute_keys = list(keys)
    press = press_columns(filled, attribute_keys)
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="", write_through=False)
    try:
        header = [
            *BASE_COLUMNS,
            *press,
            *(attribute_header(k) for k in attribute_keys),
            *INFO_COLUMNS,
        ]
        rows = _rows(session, header, press, attribute_keys, list_id, status, chosen)
        n = write_csv(text, rows) - 1
        text.flush()
    finally:
        text.detach()
    return n


def _rows(
    session: Session,
    header: list[str],
    press: list[str],
    keys: list[str],
    list_id: int | None,
    status: str | None,
    chosen: Any = None,
) -> Iterator[list[str]]:
    yield header
    # The suppression of this address or of another spelling of its mailbox (+tag, Gmail
    # dots): one reason per contact, the exact address's first.
    reason_of = func.coalesce(
        select(Suppression.reason).where(Suppression.email == Contact.email).scalar_subquery(),
        select(Suppression.reason)
        .where(Suppression.mailbox == mailbox_sql(session, Contact.email), covers_mailbox())
        .order_by(Suppression.id)
        .limit(1)
        .scalar_subquery(),
        type_=Suppression.reason.type,
    )
    stmt = _where(
        select(Contact, reason_of).options(
            selectinload(Contact.subscriptions).selectinload(Subscription.mailing_list),
            selectinload(Contact.tags),
        ),
        list_id,
        status,
        chosen,
    ).order_by(Contact.email)
    for contact, reason in session.execute(stmt.execution_options(yield_per=500)):
        attrs = contact.attributes or {}
        subs = sorted(contact.subscriptions, key=lambda s: s.mailing_list.slug)
        yield [
            contact.email_original or contact.email,
            contact.name,
            contact.organisation,
            contact.language or "",
            ", ".join(sorted(t.tag for t in contact.tags)),
            *(getattr(contact, name) for name in press),
            *(_text(attrs.get(k)) for k in keys),
            "; ".join(f"{s.mailing_list.slug}:{SubscriptionStatus(s.status).value}" for s in subs),
            reason.value if reason is not None else "",
        ]


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def export_to_file(
    session: Session,
    path: str | Path,
    list_slug: str | None = None,
    status: str | None = None,
    *,
    where: Sequence[str] = (),
    segment: str | None = None,
) -> int:
    """Export to a file, written beside it first and renamed, so a failure leaves no half file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Addresses: readable by the owner only, whatever the umask (mailer.private).
        with os.fdopen(
            os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE), "wb"
        ) as fh:
            os.fchmod(fh.fileno(), PRIVATE_MODE)
            n = export_contacts(session, fh, list_slug, status, where=where, segment=segment)
        os.replace(tmp, path)
    except OSError as err:
        raise MailerError(f"{path}: cannot write the export: {err.strerror}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return n
