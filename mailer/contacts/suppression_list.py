"""The suppression list a page at a time (search, reason, keyset), and adding or lifting one
with a staff member's note: what the console's suppression pages call.

Adding and lifting are `suppressions.add_suppression` and `remove_suppression`, the functions
`mailer suppressions add|rm` call: same rules, same rows, same event. The console adds only the
note: on an add it becomes the suppression's source, on a lift it is kept in the `unsuppress`
event the library writes, so the log says why an address may be mailed again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, event, func, or_, select
from sqlalchemy.orm import Session

from mailer.contacts.addresses import mailbox_key, normalise
from mailer.contacts.suppressions import add_suppression, covers_mailbox, remove_suppression
from mailer.errors import InvalidInputError
from mailer.store.models import Event, Suppression, SuppressionReason

PAGE = 50
# Suppression.source holds 200 characters: "console: " and the note must fit.
SOURCE_PREFIX = "console"
MAX_ADD_NOTE = 190
MAX_LIFT_NOTE = 500
_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: below this (created_at, id) in newest-first order."""

    at: datetime
    id: int

    def encode(self) -> str:
        return f"{self.at.astimezone(UTC).strftime('%Y%m%dT%H%M%S.%f')}~{self.id}"

    @classmethod
    def decode(cls, value: str) -> Cursor | None:
        """The cursor of a `next` link, or None for anything that is not one (the first page)."""
        stamp, _, ident = value.partition("~")
        if not ident.isdigit() or len(ident) > 18:
            return None
        try:
            at = datetime.strptime(stamp, "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)
        except ValueError:
            return None
        return cls(at, int(ident))


@dataclass
class Page:
    rows: list[Suppression]
    next: Cursor | None


def search_condition(query: str) -> ColumnElement[bool]:
    """Suppressions whose address contains `query`; for a whole address, also the suppression
    that covers its mailbox under the library's rule (a dot or +tag spelling of it)."""
    text = query.strip().lower()
    parts: list[ColumnElement[bool]] = [Suppression.email.contains(text, autoescape=True)]
    if "@" in text:
        try:
            key = normalise(text).key
        except InvalidInputError:
            key = ""
        if key:
            parts.append(
                or_(
                    Suppression.email == key,
                    and_(Suppression.mailbox == mailbox_key(key), covers_mailbox()),
                )
            )
    return or_(*parts)


def page(
    session: Session,
    *,
    query: str = "",
    reason: SuppressionReason | None = None,
    after: Cursor | None = None,
    size: int = PAGE,
) -> Page:
    """One page, newest first (the order of `suppressions ls`), at any depth in one index scan."""
    stmt = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if query.strip():
        stmt = stmt.where(search_condition(query))
    if reason is not None:
        stmt = stmt.where(Suppression.reason == reason)
    if after is not None:
        stmt = stmt.where(
            or_(
                Suppression.created_at < after.at,
                and_(Suppression.created_at == after.at, Suppression.id < after.id),
            )
        )
    rows = list(session.scalars(stmt.limit(size + 1)))
    more = len(rows) > size
    rows = rows[:size]
    last = rows[-1] if more and rows else None
    return Page(rows, Cursor(last.created_at, last.id) if last is not None else None)


def counts_by_reason(session: Session) -> dict[SuppressionReason, int]:
    """How many suppressions each reason has (every reason listed, zero included)."""
    counts = dict.fromkeys(SuppressionReason, 0)
    for why, n in session.execute(
        select(Suppression.reason, func.count()).group_by(Suppression.reason)
    ):
        counts[SuppressionReason(why)] = n
    return counts


def check_note(value: str, field: str, limit: int, *, required: bool) -> str:
    """A note typed by staff, on one line; InvalidInputError names the field and what is wrong."""
    note = _SPACES.sub(" ", _CONTROL.sub("", value)).strip()
    if required and not note:
        raise InvalidInputError(f"{field}: say why (it is kept in the event log)")
    if len(note) > limit:
        raise InvalidInputError(f"{field}: {len(note)} characters, at most {limit}")
    return note


def add(
    session: Session, email: str, reason: str, note: str = "", *, actor: str
) -> tuple[Suppression, bool]:
    """`suppressions add EMAIL --reason R --source "console: NOTE"` for a staff member."""
    text = check_note(note, "note", MAX_ADD_NOTE, required=False)
    source = f"{SOURCE_PREFIX}: {text}" if text else SOURCE_PREFIX
    return add_suppression(session, email, reason, source, actor=actor)


def lift(session: Session, email: str, note: str, *, actor: str) -> Suppression:
    """`suppressions rm EMAIL`, with the staff member's reason added to the event it logs."""
    text = check_note(note, "reason for removing", MAX_LIFT_NOTE, required=True)
    logged: list[Event] = []

    def seen(_session: Session, instance: object) -> None:
        if isinstance(instance, Event):
            logged.append(instance)

    # The library writes its own `unsuppress` event; catching it as it is added (rather than
    # querying the log afterwards) can never pick another request's event.
    event.listen(session, "transient_to_pending", seen)
    try:
        sup = remove_suppression(session, email, actor=actor)
    finally:
        event.remove(session, "transient_to_pending", seen)
    for ev in logged:
        if ev.kind == "unsuppress":
            ev.data = {**ev.data, "note": text}
    session.flush()
    return sup
