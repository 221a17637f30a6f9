"""The delivery ledger's writes: claim a batch, record results, re-check, give back, recover.

Every function here runs inside the caller's transaction and touches the `delivery` table with
a few set-based statements (no ORM objects per row): the sender's hot path is a claim per batch
and one grouped write per `ledger_group_size` replies.

What a crash can leave in doubt. A connection thread claims a batch (committed before anything
is sent), sends its rows one at a time in id order, and commits the replies in order, at least
every `ledger_group_size` messages. So among the rows a dead thread still holds, only the lowest
`group` ids can have reached the server: the replies waiting for their commit plus the message
in flight. Its holder name records the group size (`host:pid:thread:gN`), so recovery marks
those rows `in_doubt` and gives the rest back as `pending`: at most `ledger_group_size` rows in
doubt per connection per crash. This holds after a lease expires too: a live sender never starts
a message after half its lease, so a holder whose lease ran out sends at most the one message
it had already started, which is among those lowest rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, exists, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
# The sender's connection threads pass a Core connection (no ORM session on the hot path);
# start-up and recovery pass the Session they already hold.
Executor = Connection | Session
_GROUP = re.compile(r":g(\d+)$")

SUPPRESSED_REPLY = "skipped: the address was suppressed after the campaign was planned"
UNSUBSCRIBED_REPLY = "skipped: unsubscribed after the campaign was planned"


@dataclass(slots=True)
class Claimed:
    """A claimed row: what the sender needs to build and address one message."""

    id: int
    contact_id: int | None
    list_id: int | None
    email: str
    language: str
    message_id: str
    attempts: int  # counting this attempt
    name: str


@dataclass(slots=True)
class Result:
    """What to write for one row once its reply is known."""

    id: int
    status: DeliveryStatus
    code: int | None
    reply: str
    next_attempt_at: datetime | None = None


def holder_name(worker: str, thread: int, group: int) -> str:
    """The `claimed_by` of one connection thread; it carries the group size for recovery."""
    return f"{worker}:{thread}:g{group}"


def group_of(holder: str) -> int | None:
    """The group size a holder committed by, or None for a holder that did not say."""
    m = _GROUP.search(holder)
    return int(m.group(1)) if m else None


# The statements of the hot path are built once, here: constructing a SQLAlchemy statement
# costs more than executing a cached one, and the sender runs these for every group of replies.
_SUPPRESSED = exists().where(Suppression.email == Delivery.email).label("suppressed")
_SUBSCRIBED = exists().where(
    Subscription.contact_id == Delivery.contact_id,
    Subscription.list_id.in_(bindparam("list_ids", expanding=True)),
    Subscription.status == SubscriptionStatus.SUBSCRIBED,
).label("subscribed")
_DUE_COLUMNS = (Delivery.id, Delivery.contact_id, Delivery.list_id, Delivery.email,
                Delivery.language, Delivery.message_id, Delivery.attempts, _SUPPRESSED,
                _SUBSCRIBED)
# Two indexed queries, pending rows first: one with OR would scan the whole campaign.
_PENDING = (select(*_DUE_COLUMNS)
            .where(Delivery.campaign_id == bindparam("campaign_id"),
                   Delivery.status == DeliveryStatus.PENDING)
            .order_by(Delivery.id).limit(bindparam("n")))
_DEFERRED = (select(*_DUE_COLUMNS)
             .where(Delivery.campaign_id == bindparam("campaign_id"),
                    Delivery.status == DeliveryStatus.DEFERRED,
                    Delivery.next_attempt_at <= bindparam("now"))
             .order_by(Delivery.next_attempt_at).limit(bindparam("n")))
_DUE = {False: (_PENDING, _DEFERRED),
        True: tuple(q.with_for_update(skip_locked=True, of=DELIVERY)
                    for q in (_PENDING, _DEFERRED))}
_CLAIM = update(DELIVERY).where(DELIVERY.c.id.in_(bindparam("ids", expanding=True))).values(
    status=DeliveryStatus.CLAIMED, claimed_by=bindparam("holder"),
    lease_expires_at=bindparam("lease"), attempts=DELIVERY.c.attempts + 1,
    updated_at=bindparam("now"),
)
_NAMES = select(Contact.id, Contact.name).where(
    Contact.id.in_(bindparam("ids", expanding=True)))
_SKIP = update(DELIVERY).where(DELIVERY.c.id == bindparam("b_id")).values(
    status=DeliveryStatus.SKIPPED, smtp_reply=bindparam("b_reply"), claimed_by=None,
    lease_expires_at=None, updated_at=bindparam("b_now"))
_SKIP_HELD = _SKIP.where(DELIVERY.c.claimed_by == bindparam("b_holder"))
_RECORD = update(DELIVERY).where(
    DELIVERY.c.id == bindparam("b_id"), DELIVERY.c.claimed_by == bindparam("b_holder"),
    DELIVERY.c.status == DeliveryStatus.CLAIMED,
).values(
    status=bindparam("b_status"), smtp_code=bindparam("b_code"),
    smtp_reply=bindparam("b_reply"), sent_at=bindparam("b_sent"),
    next_attempt_at=bindparam("b_next"), claimed_by=None, lease_expires_at=None,
    updated_at=bindparam("b_now"),
)
_STATUS = select(Campaign.status).where(Campaign.id == bindparam("campaign_id"))
_OPTED_OUT = select(Delivery.id, _SUPPRESSED, _SUBSCRIBED).where(
    Delivery.id.in_(bindparam("ids", expanding=True)))


def claim(s: Executor, campaign_id: int, list_ids: Sequence[int], holder: str, size: int,
          now: datetime, lease: timedelta, *, skip_locked: bool) -> tuple[list[Claimed], int]:
    """Claim up to `size` due rows, pending first, then deferred ones that are due.

    Rows whose address was suppressed or unsubscribed since the plan are marked skipped on the
    way (and do not count against `size`). Returns the claimed rows in id order, the order they
    must be sent in, and how many were skipped.
    """
    keep: list[Any] = []
    skipped = 0
    lists = list(list_ids)
    for stmt in _DUE[skip_locked]:
        while len(keep) < size:
            want = size - len(keep)
            found = s.execute(stmt, {"campaign_id": campaign_id, "n": want, "now": now,
                                     "list_ids": lists}).all()
            gone = [(r.id, bool(r.suppressed)) for r in found
                    if r.suppressed or not r.subscribed or r.contact_id is None]
            skipped += mark_skipped(s, gone, now)
            gone_ids = {i for i, _ in gone}
            fresh = [r for r in found if r.id not in gone_ids]
            if fresh:
                # Claimed at once, so the next query (after skipped rows) moves past them.
                s.execute(_CLAIM, {"ids": [r.id for r in fresh], "holder": holder,
                                   "lease": now + lease, "now": now})
            keep += fresh
            if len(found) < want:  # nothing more of this kind is due
                break
    if not keep:
        return [], skipped
    keep.sort(key=lambda r: r.id)
    names = dict(s.execute(_NAMES, {"ids": [r.contact_id for r in keep]}).all())
    return [Claimed(r.id, r.contact_id, r.list_id, r.email, r.language, r.message_id,
                    r.attempts + 1, names.get(r.contact_id) or "") for r in keep], skipped


def mark_skipped(s: Executor, rows: Iterable[tuple[int, bool]], now: datetime,
                 holder: str | None = None) -> int:
    """Mark rows skipped: (id, suppressed?) pairs; with `holder`, only rows it still holds."""
    params = [{"b_id": i, "b_reply": SUPPRESSED_REPLY if sup else UNSUBSCRIBED_REPLY,
               "b_now": now, "b_holder": holder} for i, sup in rows]
    if params:
        s.execute(_SKIP if holder is None else _SKIP_HELD, params)
    return len(params)


def record(s: Executor, holder: str, results: Sequence[Result], now: datetime) -> None:
    """Write a group of results in one statement; a row no longer held is left alone."""
    if not results:
        return
    s.execute(_RECORD, [{"b_id": r.id, "b_holder": holder, "b_status": r.status,
                         "b_code": r.code, "b_reply": r.reply[:2000],
                         "b_sent": now if r.status == DeliveryStatus.SENT else None,
                         "b_next": r.next_attempt_at, "b_now": now} for r in results])


def still_wanted(
    s: Executor, campaign_id: int, list_ids: Sequence[int], holder: str,
    unsent: Sequence[Claimed], now: datetime,
) -> tuple[CampaignStatus | None, set[int]]:
    """The campaign's status, and the ids among `unsent` that were opted out since the claim
    (marked skipped here)."""
    status = s.scalar(_STATUS, {"campaign_id": campaign_id})
    if status != CampaignStatus.SENDING or not unsent:
        return status, set()
    gone = [(r.id, bool(r.suppressed)) for r in s.execute(
        _OPTED_OUT, {"ids": [d.id for d in unsent], "list_ids": list(list_ids)}).all()
        if r.suppressed or not r.subscribed]  # an erased contact (NULL) is not subscribed
    mark_skipped(s, gone, now, holder)
    return status, {i for i, _ in gone}


def give_back(s: Executor, holder: str, ids: Sequence[int], now: datetime, *,
              cancelled: bool) -> None:
    """Unsent claimed rows go back to pending (nothing was sent), or to cancelled."""
    if not ids:
        return
    held = and_(DELIVERY.c.id.in_(list(ids)), DELIVERY.c.claimed_by == holder,
                DELIVERY.c.status == DeliveryStatus.CLAIMED)
    if cancelled:
        s.execute(update(DELIVERY).where(held).values(
            status=DeliveryStatus.CANCELLED, claimed_by=None, lease_expires_at=None,
            updated_at=now, smtp_reply="cancelled by the operator"))
    else:
        s.execute(update(DELIVERY).where(held).values(
            status=DeliveryStatus.PENDING, claimed_by=None, lease_expires_at=None,
            updated_at=now, attempts=case((DELIVERY.c.attempts > 0, DELIVERY.c.attempts - 1),
                                          else_=0)))


def recover(s: Executor, campaign_id: int, now: datetime,
            is_dead: Callable[[str], bool]) -> int:
    """Rows held by a sender that is gone (lease expired, or a dead process on this machine):
    the lowest `group` of each holder become in_doubt, the rest pending. Returns how many
    became in_doubt."""
    holders = s.execute(
        select(Delivery.claimed_by, Delivery.lease_expires_at)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.CLAIMED)
        .distinct()
    ).all()
    orphaned: dict[str, str] = {}
    for holder, lease in holders:
        holder = holder or ""
        if lease is None or lease < now:
            orphaned.setdefault(holder, "in doubt: its sender stopped before recording the "
                                        "server's reply")
        elif is_dead(holder):
            orphaned[holder] = "in doubt: its sender died before recording the server's reply"
    n = 0
    for holder, why in orphaned.items():
        where = and_(DELIVERY.c.campaign_id == campaign_id,
                     DELIVERY.c.status == DeliveryStatus.CLAIMED,
                     DELIVERY.c.claimed_by == holder if holder else DELIVERY.c.claimed_by.is_(None))
        ids = list(s.scalars(select(DELIVERY.c.id).where(where).order_by(DELIVERY.c.id)))
        group = group_of(holder)
        doubt = ids if group is None else ids[:group]
        s.execute(update(DELIVERY).where(where, DELIVERY.c.id.in_(doubt)).values(
            status=DeliveryStatus.IN_DOUBT, updated_at=now, smtp_reply=why))
        give_back(s, holder, ids[len(doubt):], now, cancelled=False)
        n += len(doubt)
    return n
