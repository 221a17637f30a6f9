"""The database side of `contacts import`: bulk lookups, a plan, then bulk writes.

`plan()` reads what the database knows about every address of the file with a few IN (...)
queries per 1,000 addresses and decides, for each, what the import does (the rules are in
imports/importer.py). `apply()` writes the plan with one statement per 1,000 rows; the caller
holds the SAVEPOINT that makes it all or nothing.

Over 400 lines on purpose: the bulk lookups and the writes of the plan must agree on every key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import JSON, Text, bindparam, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from mailer import clock
from mailer.contacts.press import PRESS_FIELDS
from mailer.store.models import (
    Base,
    Contact,
    ContactImport,
    ContactTag,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

CHUNK = 1000  # addresses per IN (...) lookup and rows per bulk statement
ANALYZE_AFTER = 5000  # new subscriptions after which PostgreSQL's statistics are refreshed
MAX_EXAMPLES = 5  # rows kept per outcome for the console's report (ImportReport.examples)
T = TypeVar("T")


class Record:
    """One contact of the file, after merging duplicates."""

    __slots__ = (
        "attributes",
        "key",
        "language",
        "line",
        "name",
        "organisation",
        "original",
        "press",
        "tags",
    )

    def __init__(
        self,
        key: str,
        original: str,
        line: int,
        name: str,
        organisation: str,
        language: str | None,
        tags: list[str] | None,
        attributes: dict[str, str] | None,
        press: dict[str, str] | None = None,
    ) -> None:
        self.key = key
        self.original = original
        self.line = line
        self.name = name
        self.organisation = organisation
        self.language = language
        self.tags = tags
        self.attributes = attributes
        self.press = press  # the non-empty press fields (mailer.contacts.press), or None

    def merge(self, other: Record) -> None:
        """Fill this record's empty fields from a later duplicate."""
        self.name = self.name or other.name
        self.organisation = self.organisation or other.organisation
        self.language = self.language or other.language
        if other.tags:
            self.tags = list(dict.fromkeys((self.tags or []) + other.tags))
        if other.attributes:
            self.attributes = {**other.attributes, **(self.attributes or {})}
        if other.press:
            self.press = {**other.press, **(self.press or {})}

    def field(self, name: str) -> str:
        return (self.press or {}).get(name, "")


def keep_example(examples: dict[str, list[Record]] | None, outcome: str, record: Record) -> None:
    """Keep `record` as an example of `outcome` (a COUNTS name) while there are few."""
    if examples is None:
        return
    kept = examples.setdefault(outcome, [])
    if len(kept) < MAX_EXAMPLES:
        kept.append(record)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass
class Plan:
    """The writes an import will make, computed from bulk lookups."""

    new_contacts: list[Record] = field(default_factory=list)
    contact_updates: list[dict[str, Any]] = field(default_factory=list)
    new_subscriptions: list[int] = field(default_factory=list)  # existing contact ids
    promote: list[int] = field(default_factory=list)  # pending subscription ids
    new_tags: list[tuple[int, str]] = field(default_factory=list)


def plan(
    session: Session,
    records: dict[str, Record],
    list_id: int,
    update_attributes: bool,
    counts: dict[str, int],
    examples: dict[str, list[Record]] | None = None,
) -> Plan:
    """Look every address up in bulk and decide what to write, counting each outcome.

    `examples`: the first few records of each outcome are added to it (keep_example)."""
    columns: list[Any] = [Contact.id, Contact.email]
    if update_attributes:
        columns += [Contact.name, Contact.organisation, Contact.language, Contact.attributes]
        columns += [getattr(Contact, name) for name in PRESS_FIELDS]
    # Only what the plan needs is kept, so a 100,000-row re-import stays small in memory.
    existing: dict[str, Any] = {}
    suppressed: set[str] = set()
    for keys in chunks(list(records)):
        for found in session.execute(select(*columns).where(Contact.email.in_(keys))):
            existing[found.email] = found if update_attributes else found.id
        suppressed.update(
            session.scalars(select(Suppression.email).where(Suppression.email.in_(keys)))
        )
    status: dict[int, SubscriptionStatus] = {}
    pending: dict[int, int] = {}  # contact id -> its pending subscription's id
    have_tags: dict[int, set[str]] = {}
    want_tags = any(r.tags for r in records.values())
    all_ids = [c.id if update_attributes else c for c in existing.values()]
    for ids in chunks(all_ids):
        for sub_id, contact_id, value in session.execute(
            select(Subscription.id, Subscription.contact_id, Subscription.status).where(
                Subscription.list_id == list_id, Subscription.contact_id.in_(ids)
            )
        ):
            status[contact_id] = SubscriptionStatus(value)
            if status[contact_id] == SubscriptionStatus.PENDING:
                pending[contact_id] = sub_id
        if want_tags:
            for contact_id, tag in session.execute(
                select(ContactTag.contact_id, ContactTag.tag).where(ContactTag.contact_id.in_(ids))
            ):
                have_tags.setdefault(contact_id, set()).add(tag)
    todo = Plan()
    for key, rec in records.items():
        known = existing.get(key)
        if known is None:
            if key in suppressed:
                counts["kept_unsubscribed"] += 1  # and no personal data stored for it
                keep_example(examples, "kept_unsubscribed", rec)
                continue
            todo.new_contacts.append(rec)
            counts["contacts_added"] += 1
            counts["subscribed"] += 1
            keep_example(examples, "contacts_added", rec)
            continue
        contact_id = known.id if update_attributes else known
        changed = False
        if update_attributes:
            change = _changes(known, rec)
            if change:
                todo.contact_updates.append({"_id": contact_id, **change})
                changed = True
        if rec.tags:
            have = have_tags.get(contact_id, set())
            missing = [t for t in rec.tags if t not in have]
            if missing:
                todo.new_tags.extend((contact_id, t) for t in missing)
                changed = True
        counts["contacts_updated"] += changed
        if changed:
            keep_example(examples, "contacts_updated", rec)
        if key in suppressed:
            counts["kept_unsubscribed"] += 1
            keep_example(examples, "kept_unsubscribed", rec)
            continue
        current = status.get(contact_id)
        if current is None:
            todo.new_subscriptions.append(contact_id)
            counts["subscribed"] += 1
            keep_example(examples, "subscribed", rec)
        elif current == SubscriptionStatus.SUBSCRIBED:
            counts["already_subscribed"] += 1
            keep_example(examples, "already_subscribed", rec)
        elif current == SubscriptionStatus.UNSUBSCRIBED:
            counts["kept_unsubscribed"] += 1
            keep_example(examples, "kept_unsubscribed", rec)
        else:
            todo.promote.append(pending[contact_id])
            counts["subscribed"] += 1
            counts["pending_confirmed"] += 1
            keep_example(examples, "pending_confirmed", rec)
    return todo


def _changes(known: Any, rec: Record) -> dict[str, Any]:
    """--update-attributes: non-empty file values replace stored ones; attributes merge."""
    values = {
        "_name": known.name,
        "_organisation": known.organisation,
        "_language": known.language,
        "_attributes": dict(known.attributes or {}),
        **{f"_{name}": getattr(known, name) for name in PRESS_FIELDS},
    }
    new = dict(values)
    for name, value in (rec.press or {}).items():
        new[f"_{name}"] = value
    if rec.name:
        new["_name"] = rec.name
    if rec.organisation:
        new["_organisation"] = rec.organisation
    if rec.language:
        new["_language"] = rec.language
    if rec.attributes:
        new["_attributes"] = {**values["_attributes"], **rec.attributes}
    return new if new != values else {}


def _constant(session: Session, column: sa.Column[Any], value: datetime) -> Any:
    """A timestamp converted for the database once, then bound to every row as it is.

    Converting the same value again for each of 100,000 rows was a quarter of the insert time.
    SQLite stores the text form (bound as a string), PostgreSQL the aware datetime.
    """
    dialect = session.get_bind().dialect
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    raw = process(value) if process else value
    return literal(raw, sa.String() if isinstance(raw, str) else sa.DateTime(timezone=True))


CONTACT_COLUMNS = (
    "email",
    "email_original",
    "name",
    "language",
    "organisation",
    *PRESS_FIELDS,
    "attributes",
)


def _insert_contacts(session: Session, recs: Sequence[Record], stamp: Any) -> Any:
    """Insert contacts in one statement; returns (id, email) rows.

    The rows travel as one parameter, not six per row: a multi-row VALUES statement spends
    more time binding 6,000 placeholders (SQLAlchemy) and parsing them (psycopg) than the
    database spends inserting. PostgreSQL gets one array per column to unnest, SQLite one
    JSON array to walk with json_each.
    """
    contact_t = _table(Contact)
    columns = [*CONTACT_COLUMNS, "created_at", "updated_at"]
    returning = (contact_t.c.id, contact_t.c.email)
    if session.get_bind().dialect.name == "postgresql":
        values: dict[str, list[Any]] = {
            "email": [r.key for r in recs],
            "email_original": [r.original for r in recs],
            "name": [r.name for r in recs],
            "language": [r.language for r in recs],
            "organisation": [r.organisation for r in recs],
            **{name: [r.field(name) for r in recs] for name in PRESS_FIELDS},
            "attributes": [json.dumps(r.attributes or {}, ensure_ascii=False) for r in recs],
        }
        rows = (
            func.unnest(
                *(bindparam(name, values[name], type_=ARRAY(Text)) for name in CONTACT_COLUMNS)
            )
            .table_valued(*CONTACT_COLUMNS)
            .render_derived()
        )
        source = select(
            *(rows.c[name] for name in CONTACT_COLUMNS[:-1]),
            sa.cast(rows.c["attributes"], JSON),
            stamp,
            stamp,
        )
        return session.execute(
            contact_t.insert().from_select(columns, source).returning(*returning)
        )
    payload = json.dumps(
        [
            [
                r.key,
                r.original,
                r.name,
                r.language,
                r.organisation,
                *(r.field(name) for name in PRESS_FIELDS),
                r.attributes or {},
            ]
            for r in recs
        ],
        ensure_ascii=False,
    )
    each = func.json_each(bindparam("rows", payload, type_=Text)).table_valued("value")
    value = each.c["value"]
    last = len(CONTACT_COLUMNS) - 1  # attributes, the one JSON value
    source = select(
        *(func.json_extract(value, f"$[{i}]") for i in range(last)),
        func.json(func.json_extract(value, f"$[{last}]")),
        stamp,
        stamp,
    )
    return session.execute(contact_t.insert().from_select(columns, source).returning(*returning))


def _table(model: type[Base]) -> sa.Table:
    table = model.__table__
    assert isinstance(table, sa.Table)
    return table


def apply(
    session: Session,
    plan: Plan,
    list_id: int,
    *,
    file: str,
    sha256: str,
    consent_source: str | None,
) -> ContactImport:
    """Write the plan with bulk statements; returns the import row its evidence points to."""
    now = clock.now()
    imp = ContactImport(
        filename=file[-500:],
        sha256=sha256,
        list_id=list_id,
        consent_source=consent_source,
        report={},
        created_at=now,
    )
    session.add(imp)
    session.flush()
    contact_t, sub_t, tag_t = _table(Contact), _table(Subscription), _table(ContactTag)
    pg = session.get_bind().dialect.name == "postgresql"
    stamp = _constant(session, contact_t.c.created_at, now)
    ids: dict[str, int] = {}
    for recs in chunks(plan.new_contacts):
        ids.update((email, cid) for cid, email in _insert_contacts(session, recs, stamp))
    new_tags = list(plan.new_tags)
    for rec in plan.new_contacts:
        if rec.tags:
            new_tags.extend((ids[rec.key], t) for t in rec.tags)
    evidence = {
        "status": SubscriptionStatus.SUBSCRIBED,
        "source": "import",
        "consent_at": now,
        "consent_form": f"import:{imp.id}",
        "consent_note": consent_source,
        "updated_at": now,
    }
    # One INSERT ... SELECT per chunk: every value but the contact id is a constant.
    contact_ids = [ids[r.key] for r in plan.new_contacts] + plan.new_subscriptions
    constants = {"list_id": list_id, "created_at": now, **evidence}
    names = list(constants)
    for cids in chunks(contact_ids):
        fixed = [literal(constants[n], sub_t.c[n].type) for n in names]
        if pg:
            # An array parameter: the planner never has to guess how to match 1,000 ids.
            each = (
                func.unnest(bindparam("ids", list(cids), type_=ARRAY(sa.Integer)))
                .table_valued("id")
                .render_derived()
            )
            source = select(each.c["id"], *fixed)
        else:
            source = select(contact_t.c.id, *fixed).where(contact_t.c.id.in_(cids))
        session.execute(sub_t.insert().from_select(["contact_id", *names], source))
    for sids in chunks(plan.promote):
        session.execute(
            update(sub_t).where(sub_t.c.id == bindparam("_id")).values(**evidence),
            [{"_id": sid} for sid in sids],
        )
    set_details = (
        update(contact_t)
        .where(contact_t.c.id == bindparam("_id"))
        .values(
            name=bindparam("_name"),
            organisation=bindparam("_organisation"),
            language=bindparam("_language"),
            attributes=bindparam("_attributes", type_=JSON()),
            **{name: bindparam(f"_{name}") for name in PRESS_FIELDS},
            updated_at=now,
        )
    )
    for changes in chunks(plan.contact_updates):
        session.execute(set_details, list(changes))
    for pairs in chunks(new_tags):
        session.execute(tag_t.insert(), [{"contact_id": c, "tag": t} for c, t in pairs])
    if pg and max(len(contact_ids), len(plan.contact_updates)) >= ANALYZE_AFTER:
        # After a bulk load PostgreSQL's statistics still describe the tables before it, and
        # the next import's lookups (or a campaign's planning) would scan instead of using the
        # indexes: a re-import of 30,000 rows took 47 s instead of 3. Updated press fields need
        # it as much: `--where "beat = ..."` is estimated from them. ANALYZE is transactional.
        session.execute(text("ANALYZE contact, subscription, contact_tag"))
    return imp
