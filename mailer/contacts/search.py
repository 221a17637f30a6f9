"""The console's contact search: words typed, filters, and keyset pages, all in SQL.

Each word typed must be found in the contact's search line (mailer/store/contact_search.py:
address, name, outlet, press fields, attribute values). A word of three characters or more is
found anywhere ("rod" finds Rodriguez, "김민서" finds 김민서). A word of one or two characters
is found at the start of a word: "k" finds Kim but not Park, "김" finds 김민서, "민서" finds
민서영 but not 김민서. That is what people type first, and what a trigram index can answer
(it has no trigrams of two characters but has those of a word's start).

The filters are `contacts ls`': a list, a subscription status (on that list, or on any), a tag,
a saved segment (its lists and expressions: segments.contact_filter) and a `--where` expression
(mailer.contacts.filters, errors with a caret). Pages are newest first and keyset-paged by id:
the next page is the contacts with an id below the last one shown, however deep, never OFFSET.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Boolean, ColumnElement, Select, and_, exists, func, literal, select, text
from sqlalchemy.orm import Session

from mailer.contacts.lists import get_list
from mailer.contacts.segments import contact_filter
from mailer.errors import InvalidInputError
from mailer.store.models import (
    Contact,
    ContactSearch,
    ContactTag,
    MailingList,
    Subscription,
    SubscriptionStatus,
)

PAGE = 50
MAX_TEXT = 200  # characters of the search box read
MAX_WORDS = 6
SHORT = 3  # words shorter than this match the start of a word
STATUSES = tuple(s.value for s in SubscriptionStatus)


@dataclass(frozen=True)
class Search:
    """What the contacts page asks for ("" means no such filter)."""

    text: str = ""
    list_slug: str = ""
    status: str = ""
    tag: str = ""
    segment: str = ""
    where: str = ""
    after: int | None = None  # keyset: only contacts with a smaller id (the next page)


@dataclass
class Row:
    """One contact as the results table shows it."""

    id: int
    email: str
    name: str
    organisation: str
    lists: list[tuple[str, str]] = field(default_factory=list)  # (slug, status), by slug
    tags: list[str] = field(default_factory=list)


@dataclass
class Page:
    rows: list[Row] = field(default_factory=list)
    next_after: int | None = None  # the `after` of the next page; None on the last page


def words(text_typed: str) -> list[str]:
    """The words of a search, in order, each once (at most MAX_WORDS)."""
    return list(dict.fromkeys(text_typed[:MAX_TEXT].split()))[:MAX_WORDS]


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def word_condition(word: str) -> ColumnElement[bool]:
    """The contact's search line holds `word` (anywhere, or at a word's start when short)."""
    needle = " " + word if len(word) < SHORT else word
    # LIKE on both engines: PostgreSQL's trigram index serves it, and SQLite runs it over the
    # table twice as fast as instr() (which counts characters). lower() by the database, as
    # the line's; the word's own % and _ are escaped.
    pattern = func.lower(literal("%" + _escape_like(needle) + "%"))
    return ContactSearch.body.like(pattern, escape="\\")


def conditions(session: Session, search: Search) -> list[ColumnElement[bool]]:
    """The filters of `search` (not its words) as conditions on Contact.

    Raises NotFoundError for an unknown list or segment, InvalidInputError for an unknown
    status, FilterError (with the caret) for a bad expression. An unknown tag matches nobody."""
    out: list[ColumnElement[bool]] = []
    status = search.status.strip()
    if status and status not in STATUSES:
        raise InvalidInputError(f"unknown status {status!r} (pending, subscribed or unsubscribed)")
    if search.list_slug.strip() or status:
        subs = [Subscription.contact_id == Contact.id]
        if search.list_slug.strip():
            subs.append(Subscription.list_id == get_list(session, search.list_slug.strip()).id)
        if status:
            subs.append(Subscription.status == SubscriptionStatus(status))
        out.append(exists().where(*subs))
    tag = search.tag.strip()
    if tag:
        # As `--where tag = x`: A-Z case ignored. IN, not EXISTS: the contacts come from the
        # index on lower(tag), so a rare tag does not walk every contact to fill a page.
        tagged = select(ContactTag.contact_id).where(func.lower(ContactTag.tag) == func.lower(tag))
        out.append(Contact.id.in_(tagged))
    where = [search.where] if search.where.strip() else []
    chosen = contact_filter(session, search.segment.strip() or None, where)
    if chosen is not None:
        out.append(chosen)
    return out


def statement(session: Session, search: Search, limit: int = PAGE) -> Select[int, str, str, str]:
    """The SELECT of one page (limit + 1 rows: the extra one says whether there is a next)."""
    found = words(search.text)
    stmt = select(Contact.id, Contact.email, Contact.name, Contact.organisation)
    if found:
        # The search line drives (its rows are narrow) and gives the order, so SQLite reads it
        # newest first and stops at a full page; each row found picks its contact by id.
        key = ContactSearch.contact_id
        stmt = stmt.select_from(ContactSearch).join(Contact, Contact.id == ContactSearch.contact_id)
        stmt = stmt.where(*(word_condition(w) for w in found))
    else:
        key = Contact.id
    filters = conditions(session, search)
    if found and filters and session.get_bind().dialect.name == "sqlite":
        # SQLite plans without statistics and takes an equality on an indexed expression (a
        # segment's `beat = x`) for a handful of rows, when it may be a quarter of the contacts
        # to check and sort. With words typed, reading the narrow search line newest first and
        # stopping at a page is bounded; likely() (SQLite's planner hint) keeps the filters
        # from being used to choose the plan. PostgreSQL has statistics and chooses well.
        filters = [func.likely(and_(*filters), type_=Boolean)]
    stmt = stmt.where(*filters)
    if search.after is not None:
        stmt = stmt.where(key < search.after)
    return stmt.order_by(key.desc()).limit(limit + 1)


def search(session: Session, query: Search, limit: int = PAGE) -> Page:
    """One page of contacts, with their lists and tags (three queries, plain rows: no ORM
    objects, which cost more than the query at a page of 50)."""
    if session.get_bind().dialect.name == "postgresql":
        # A plan for these very words each time: a reused generic plan cannot tell a rare word
        # (the trigram index) from a common one (newest first, stop at a page). This
        # transaction only.
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    found = [Row(*r) for r in session.execute(statement(session, query, limit))]
    more = len(found) > limit
    found = found[:limit]
    by_id = {row.id: row for row in found}
    if by_id:
        subs = session.execute(
            select(Subscription.contact_id, MailingList.slug, Subscription.status)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(Subscription.contact_id.in_(list(by_id)))
            .order_by(MailingList.slug)
        )
        for contact_id, slug, status in subs:
            by_id[contact_id].lists.append((slug, SubscriptionStatus(status).value))
        tags = session.execute(
            select(ContactTag.contact_id, ContactTag.tag)
            .where(ContactTag.contact_id.in_(list(by_id)))
            .order_by(ContactTag.tag)
        )
        for contact_id, tag in tags:
            by_id[contact_id].tags.append(tag)
    return Page(found, found[-1].id if more and found else None)


def tag_names(session: Session, limit: int = 200) -> list[str]:
    """The tags in use, A-Z (the first `limit`), for the tag filter's suggestions."""
    # A loose index scan: each step asks the tag index for the first tag after the last one,
    # so the cost is one probe per tag shown; DISTINCT would read every tagged contact's row.
    first = select(func.min(ContactTag.tag).label("tag"), literal(1).label("n"))
    steps = first.cte("tag_steps", recursive=True)
    after = select(func.min(ContactTag.tag)).where(ContactTag.tag > steps.c.tag)
    steps = steps.union_all(
        select(after.scalar_subquery(), steps.c.n + 1).where(
            steps.c.tag.is_not(None), steps.c.n < limit
        )
    )
    query = select(steps.c.tag).where(steps.c.tag.is_not(None)).order_by(steps.c.n)
    return [str(t) for t in session.scalars(query)]
