"""A batch of bounce reports: what the policy reads, loaded in a few queries; what it writes,
written in bulk.

bounces/policy.py decides message by message, in mailbox order, exactly as if each message were
processed alone; its reads come from here instead of one query each, and each of its writes
first updates this state, so a later message of the same batch sees what an earlier one did
(a duplicate report, a suppression, a soft bounce that now counts). `write` then inserts the
Bounce, BounceSource, BounceReview, Event and Suppression rows with one executemany each and
updates subscriptions and suppressions with a few statements. The number of queries per batch
does not grow with the number of messages (tests/test_bounces.py counts them), except for the rare
signed-token unsubscribes, which go through contacts/contact.py after a `write`.

Over 400 lines on purpose: the loads and the bulk writes of a batch are one unit: what is loaded
is exactly what the writes assume.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Boolean, LargeBinary, Table, bindparam, exists, insert, select, update
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces.parse import BLOCK, SOFT
from mailer.bounces.review import APPLIED, NOT_DELIVERED
from mailer.config import Settings
from mailer.contacts.addresses import mailbox_key, normalise
from mailer.errors import InvalidInputError
from mailer.store.models import (
    Base,
    Bounce,
    BounceReview,
    BounceSource,
    Campaign,
    Contact,
    Delivery,
    DeliveryStatus,
    Event,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)

# The ORM's bulk insert leaves out the None values of a row, so rows whose None columns differ
# would each be a statement of their own: every row gives every column, one executemany.
_ALL_COLUMNS = {"render_nulls": True}
# Bound parameters per IN (...): well under SQLite's limit (32766) and PostgreSQL's (65535).
CHUNK = 1000


@dataclass(frozen=True)
class DRow:
    """The columns of a delivery the policy reads."""

    id: int
    campaign_id: int
    email: str
    status: DeliveryStatus
    message_id: str
    sent_at: datetime | None


@dataclass
class Sup:
    """A suppression of a mailbox: a row (id) or one this batch inserts (row)."""

    order: int  # the row id, or above every id for one inserted here (get_suppression's order)
    email: str
    reason: SuppressionReason
    id: int | None = None
    row: dict[str, Any] | None = None


def _table(model: type[Base]) -> Table:
    return model.metadata.tables[model.__tablename__]


def chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    items = sorted(set(values), key=str)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


@lru_cache(maxsize=65536)
def address_key(value: str) -> str | None:
    """contacts/addresses.normalise's key, None if `value` is not an address. Cached:
    email-validator costs more than everything else matching does."""
    try:
        return normalise(value).key
    except InvalidInputError:
        return None


_DCOLS = (
    Delivery.id,
    Delivery.campaign_id,
    Delivery.email,
    Delivery.status,
    Delivery.message_id,
    Delivery.sent_at,
)


class Batch:
    """Reads and pending writes of one batch (see the module docstring)."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.contacts: dict[str, int] = {}
        self.by_email: dict[str, list[DRow]] = {}
        self.by_mid: dict[str, list[DRow]] = {}
        self.campaigns: dict[int, bool] = {}
        self.seen: set[str] = set()
        self.sups: dict[str, list[Sup]] = {}
        self.soft: dict[str, list[tuple[str, datetime]]] = {}
        self.not_delivered: set[int] = set()
        self._next = 1 << 62
        # pending writes, in the order the policy made them
        self.bounces: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.new_sups: list[dict[str, Any]] = []
        self.sup_updates: dict[int, dict[str, Any]] = {}
        self.unsubscribe_all: dict[SuppressionReason, list[int]] = {}
        self.unsubscribed: set[int] = set()
        self.reviews: list[tuple[dict[str, Any], Any]] = []
        # The report message being decided (bounces/policy.py sets it): every bounce row
        # recorded for it keeps these bytes in bounce_source, cut at bounce_raw_max_bytes.
        self.raw: bytes | None = None
        self.sources: list[dict[str, Any]] = []

    # -- loading --------------------------------------------------------------------------

    def load_people(self, addresses: Iterable[str], message_ids: Iterable[str]) -> None:
        """Deliveries quoted by Message-ID, then contacts and deliveries of every address.

        Addresses are looked up as written (lower-cased) first: one that is a stored key needs
        no validation (see `key`); only the others go through email-validator."""
        s = self.session
        written = {a for a in addresses if a}
        wanted = {a.strip().lower() for a in written if a.isascii() and "@" in a}
        for part in chunks(i for i in message_ids if i):
            for row in s.execute(
                select(*_DCOLS).where(Delivery.message_id.in_(part)).order_by(Delivery.id)
            ):
                d = DRow(*row)
                self.by_mid.setdefault(d.message_id, []).append(d)
                wanted.add(d.email)
        self._load_emails(wanted)
        keys = {self.key(a) for a in written}
        self._load_emails({k for k in keys if k is not None} - set(self.by_email))

    def _load_emails(self, emails: set[str]) -> None:
        s = self.session
        for part in chunks(emails):
            self.contacts.update(
                (e, i)
                for e, i in s.execute(
                    select(Contact.email, Contact.id).where(Contact.email.in_(part))
                )
            )
            for row in s.execute(
                select(*_DCOLS).where(Delivery.email.in_(part)).order_by(Delivery.id)
            ):
                d = DRow(*row)
                self.by_email.setdefault(d.email, []).append(d)
        for email in emails:
            self.by_email.setdefault(email, [])

    def key(self, value: str) -> str | None:
        """address_key(value), without email-validator when `value` lower-cased is the address
        of a contact or delivery: those are keys already, and an ASCII address differing from a
        key only in case has that key."""
        low = value.strip().lower()
        if value.isascii() and (low in self.contacts or self.by_email.get(low)):
            return low
        return address_key(value)

    def load_state(
        self, emails: Iterable[str], source_ids: Iterable[str], campaign_ids: Iterable[int]
    ) -> None:
        """Reports already recorded, campaigns, suppressions and soft scores of `emails`."""
        s = self.session
        emails = set(emails)
        for part in chunks(source_ids):
            self.seen.update(
                s.scalars(
                    select(Bounce.source_message_id).where(Bounce.source_message_id.in_(part))
                )
            )
        ids = set(campaign_ids) | {d.campaign_id for e in emails for d in self.by_email.get(e, ())}
        for part in chunks(ids):
            found = set(s.scalars(select(Campaign.id).where(Campaign.id.in_(part))))
            self.campaigns.update({i: i in found for i in part})
        self._load_suppressions({mailbox_key(e) for e in emails})
        unproven = exists().where(
            BounceReview.bounce_id == Bounce.id, BounceReview.state != APPLIED
        )
        for part in chunks(emails):
            rows = s.execute(
                select(Bounce.email, Bounce.kind, Bounce.created_at, Delivery.sent_at)
                .outerjoin(Delivery, Delivery.id == Bounce.delivery_id)
                .where(Bounce.email.in_(part), Bounce.kind.in_((SOFT, BLOCK)), ~unproven)
                .order_by(Bounce.id)
            )
            for email, kind, created_at, sent_at in rows:
                if email is not None:
                    self.soft.setdefault(email, []).append((kind, sent_at or created_at))
        delivery_ids = [d.id for e in emails for d in self.by_email.get(e, ())]
        for part in chunks(delivery_ids):
            self.not_delivered.update(
                s.scalars(
                    select(Bounce.delivery_id).where(
                        Bounce.delivery_id.in_(part), Bounce.kind.in_(NOT_DELIVERED)
                    )
                )
            )

    def _load_suppressions(self, mailboxes: set[str]) -> None:
        for box in mailboxes:
            self.sups[box] = []
        for part in chunks(mailboxes):
            for sup in self.session.execute(
                select(Suppression.id, Suppression.mailbox, Suppression.email, Suppression.reason)
                .where(Suppression.mailbox.in_(part))
                .order_by(Suppression.id)
            ):
                self.sups[sup.mailbox].append(Sup(sup.id, sup.email, sup.reason, id=sup.id))

    def reload_suppressions(self, email: str) -> None:
        """After contacts/contact.py changed them (a token unsubscribe, written already)."""
        self._load_suppressions({mailbox_key(email)})

    # -- reads ----------------------------------------------------------------------------

    def known(self, email: str) -> bool:
        return email in self.contacts or bool(self.by_email.get(email))

    def deliveries(self, message_ids: Iterable[str]) -> list[DRow]:
        ids = [i for i in message_ids if i][:10]
        return sorted(
            (d for i in dict.fromkeys(ids) for d in self.by_mid.get(i, ())), key=lambda d: d.id
        )

    def campaign_delivery(self, campaign_id: int | None, email: str) -> DRow | None:
        if campaign_id is None:
            return None
        return next((d for d in self.by_email.get(email, ()) if d.campaign_id == campaign_id), None)

    def latest_delivery(self, email: str) -> DRow | None:
        """For the campaign report only: the most recent message sent to this address."""
        now = clock.now()
        sent = [
            d for d in self.by_email.get(email, ()) if d.sent_at is not None and d.sent_at <= now
        ]
        return max(sent, key=lambda d: d.sent_at or now, default=None)

    def campaign(self, campaign_id: int | None) -> int | None:
        """`campaign_id` if that campaign still exists."""
        if campaign_id is None:
            return None
        if campaign_id not in self.campaigns:
            self.campaigns[campaign_id] = self.session.get(Campaign, campaign_id) is not None
        return campaign_id if self.campaigns[campaign_id] else None

    def already(self, source_id: str) -> bool:
        return source_id in self.seen

    def suppression(self, email: str) -> Sup | None:
        """contacts/suppressions.get_suppression: one the person cannot lift wins."""
        rows = self.sups.get(mailbox_key(email), [])
        return min(
            rows,
            key=lambda r: (r.reason == SuppressionReason.UNSUBSCRIBE_ALL, r.order),
            default=None,
        )

    def soft_score(self, email: str) -> tuple[int, int]:
        """bounces/review.soft_score over this batch's state."""
        now = clock.now()
        since = now - timedelta(days=self.settings.soft_bounce_window_days)
        done = [
            d.sent_at
            for d in self.by_email.get(email, ())
            if d.status == DeliveryStatus.SENT
            and d.sent_at is not None
            and d.id not in self.not_delivered
        ]
        reset = max(done, default=None)
        counted = [
            kind
            for kind, at in self.soft.get(email, ())
            if at >= since and (reset is None or at > reset)
        ]
        return len(counted), sum(1 for k in counted if k == SOFT)

    # -- writes ---------------------------------------------------------------------------

    def record(
        self,
        *,
        source_id: str,
        email: str | None,
        kind: str,
        status: str | None = None,
        diagnostic: str | None = None,
        delivery: DRow | None = None,
        campaign_id: int | None = None,
        proven: bool = True,
    ) -> dict[str, Any]:
        """A Bounce row; a proven soft or block bounce counts toward its address's score."""
        now = clock.now()
        row = {
            "source_message_id": source_id,
            "email": email,
            "kind": kind,
            "status_code": status,
            "diagnostic": diagnostic,
            "delivery_id": delivery.id if delivery else None,
            "campaign_id": campaign_id,
            "created_at": now,
        }
        self.bounces.append(row)
        if self.raw is not None:
            cut = self.settings.bounce_raw_max_bytes
            self.sources.append(
                {"sid": source_id, "raw": self.raw[:cut], "truncated": len(self.raw) > cut}
            )
        self.seen.add(source_id)
        if delivery is not None and kind in NOT_DELIVERED:
            self.not_delivered.add(delivery.id)
        if proven and email is not None and kind in (SOFT, BLOCK):
            at = delivery.sent_at if delivery and delivery.sent_at else now
            self.soft.setdefault(email, []).append((kind, at))
        return row

    def hold(self, bounce: dict[str, Any], email: str, why: str, item: Any) -> None:
        """A BounceReview for `bounce`; `item.action` gets its id once written."""
        self.reviews.append(
            (
                {
                    "bounce": bounce["source_message_id"],
                    "email": email,
                    "action": bounce["kind"],
                    "why": why[:2000],
                    "state": "pending",
                    "created_at": clock.now(),
                },
                item,
            )
        )

    def audit(
        self,
        kind: str,
        *,
        contact_id: int | None = None,
        campaign_id: int | None = None,
        actor: str = "",
        **data: Any,
    ) -> None:
        self.events.append(
            {
                "at": clock.now(),
                "kind": kind,
                "contact_id": contact_id,
                "list_id": None,
                "campaign_id": campaign_id,
                "actor": actor,
                "data": data,
            }
        )

    def suppress(self, email: str, reason: SuppressionReason, source: str, actor: str) -> bool:
        """contacts/suppressions.suppress; True if the mailbox was suppressed already."""
        existing = self.suppression(email)
        contact_id = self.contacts.get(email)
        if contact_id is not None and contact_id not in self.unsubscribed:
            # Every subscription still on ends, with the first reason of this batch (later
            # ones find none left, as they would one message at a time).
            self.unsubscribed.add(contact_id)
            self.unsubscribe_all.setdefault(reason, []).append(contact_id)
        if existing is not None:
            if reason in (
                SuppressionReason.COMPLAINT,
                SuppressionReason.HARD_BOUNCE,
            ) and existing.reason not in (SuppressionReason.COMPLAINT, SuppressionReason.ERASED):
                existing.reason = reason
                if existing.row is not None:
                    existing.row.update(reason=reason, source=source)
                elif existing.id is not None:
                    self.sup_updates[existing.id] = {
                        "id": existing.id,
                        "reason": reason,
                        "source": source,
                    }
            return True
        box = mailbox_key(email)
        row = {
            "email": email,
            "mailbox": box,
            "reason": reason,
            "source": source,
            "created_at": clock.now(),
        }
        self.new_sups.append(row)
        self._next += 1
        self.sups.setdefault(box, []).append(Sup(self._next, email, reason, row=row))
        self.audit(
            "suppress", contact_id=contact_id, actor=actor, reason=reason.value, source=source
        )
        return False

    def write(self) -> None:
        """Everything pending, in bulk; held items get their review id."""
        s = self.session
        # What the ORM has pending (a token unsubscribe's rows) goes first, as it would before
        # an ORM insert: the rows keep the order in which the policy made them.
        s.flush()
        # Text from a report is hostile: a NUL byte, which SQLite keeps and PostgreSQL refuses,
        # would fail the whole batch's insert. Stored as U+FFFD, the rest stays readable.
        for rows in (self.bounces, self.new_sups, self.events):
            rows[:] = [_without_nul(row) if _has_nul(row) else row for row in rows]
        self.reviews = [(_without_nul(r), extra) for r, extra in self.reviews]
        for src in self.sources:  # its key must be its bounce row's, NUL replaced alike
            src["sid"] = _without_nul(src["sid"])
        # Inserted through the tables (Core): every row gives every column, so the ORM's bulk
        # insert would only sort the same dictionaries again, at a third of the write's time.
        if self.bounces:
            s.execute(insert(_table(Bounce)), self.bounces)
        if self.sources:
            # One executemany: each row finds its bounce's new id by the report's unique key.
            s.execute(_INSERT_SOURCE, self.sources)
        if self.new_sups:
            s.execute(insert(_table(Suppression)), self.new_sups)
        if self.sup_updates:
            s.execute(update(Suppression), list(self.sup_updates.values()))
            # A bulk update by primary key leaves objects already loaded as they were.
            for obj in list(s.identity_map.values()):
                if isinstance(obj, Suppression) and obj.id in self.sup_updates:
                    s.expire(obj)
        for reason, contact_ids in self.unsubscribe_all.items():
            for part in chunks(contact_ids):
                s.execute(
                    update(Subscription)
                    .where(
                        Subscription.contact_id.in_(part),
                        Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
                    )
                    .values(
                        status=SubscriptionStatus.UNSUBSCRIBED,
                        unsubscribed_at=clock.now(),
                        unsubscribed_via=reason.value,
                    )
                    .execution_options(synchronize_session="fetch")
                )
        if self.events:
            s.execute(insert(_table(Event)), self.events)
        if self.reviews:
            self._write_reviews()
        self.bounces, self.events, self.new_sups, self.reviews = [], [], [], []
        self.sources = []
        self.sup_updates, self.unsubscribe_all = {}, {}

    def _write_reviews(self) -> None:
        s = self.session
        ids: dict[str, int] = {}
        for part in chunks(r["bounce"] for r, _ in self.reviews):
            ids.update(
                (k, i)
                for k, i in s.execute(
                    select(Bounce.source_message_id, Bounce.id).where(
                        Bounce.source_message_id.in_(part)
                    )
                )
            )
        rows = [
            {**{k: v for k, v in r.items() if k != "bounce"}, "bounce_id": ids[r["bounce"]]}
            for r, _ in self.reviews
        ]
        s.execute(insert(BounceReview), rows, execution_options=_ALL_COLUMNS)
        made: dict[int, int] = {}
        for part in chunks(r["bounce_id"] for r in rows):
            made.update(
                (b, i)
                for b, i in s.execute(
                    select(BounceReview.bounce_id, BounceReview.id).where(
                        BounceReview.bounce_id.in_(part)
                    )
                )
            )
        for (_, item), row in zip(self.reviews, rows, strict=True):
            item.action = f"held for review {made[row['bounce_id']]}"


_INSERT_SOURCE = insert(_table(BounceSource)).from_select(
    ["bounce_id", "raw", "truncated"],
    select(
        Bounce.id,
        bindparam("raw", type_=LargeBinary),
        bindparam("truncated", type_=Boolean),
    ).where(Bounce.source_message_id == bindparam("sid")),
)


def _has_nul(row: dict[str, Any]) -> bool:
    """Whether a NUL is in any string of `row` (also inside its dicts and lists)."""
    for value in row.values():
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif (
            isinstance(value, dict | list | tuple)
            # repr writes a NUL as \x00: only then is it worth a closer look.
            and r"\x00" in repr(value)
            and _without_nul(value) != value
        ):
            return True
    return False


def _without_nul(value: Any) -> Any:
    """`value` with every NUL in its strings (also inside dicts and lists) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {k: _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_without_nul(v) for v in value)
    return value
