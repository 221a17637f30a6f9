"""The delivery ledger's writes: claim a batch, prove a row before its send, record, recover.

Every function here runs inside the caller's transaction and touches the `delivery` table with
a few set-based statements (no ORM objects per row). docs/ledger.md gives the whole argument;
in short:

- A claim is one batch, identified by a holder name that ends in a random claim id
  (`host:pid:thread:c<16 hex>`), so no two batches, even of one thread, share a holder.
- Immediately before each message's SMTP transaction the sender commits its *proof*
  (`prove`): one conditional UPDATE that sets `sent_at` ("this row's transaction may start")
  only if the row is still claimed by this claim, has no proof yet, has at least half its
  lease left (by the database's clock), is still wanted (not suppressed, still subscribed) and
  its campaign is still sending. No proof, no send.
- Recovery (`recover`) changes only rows whose lease has expired (or whose holder is a dead
  process on this machine), and checks that in the very UPDATE that changes them. A proven row
  becomes `in_doubt` (never resent by itself); an unproven one goes back to `pending`.
- Both are writes to the same row, so the database orders them: either the proof commits first
  (recovery then sees it and says in_doubt) or recovery does (the proof then finds the row no
  longer held, and nothing is sent). A stall anywhere, of any length, changes only which.

Clocks: on PostgreSQL the lease is set and compared with the database server's clock
(clock_timestamp(): the time when the row is looked at, even after waiting for a lock), so the
machines' clocks never meet. SQLite is a file on one machine:
every process that opens it reads the same system clock, which is what SQLite's own 'now' is.
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
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
    UTCDateTime,
)

DELIVERY: Table = Delivery.__table__  # type: ignore[assignment]
D = DELIVERY.c
# The sender's connection threads pass a Core connection (no ORM session on the hot path);
# start-up and recovery pass the Session they already hold.
Executor = Connection | Session
_CLAIM_ID = re.compile(r":c[0-9a-f]{16}$")
_LEGACY_GROUP = re.compile(r":g(\d+)$")

SUPPRESSED_REPLY = "skipped: the address was suppressed after the campaign was planned"
UNSUBSCRIBED_REPLY = "skipped: unsubscribed after the campaign was planned"
EXPIRED_REPLY = "in doubt: its sender stopped before recording the server's reply"
DEAD_REPLY = "in doubt: its sender died before recording the server's reply"


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


class Verdict(enum.Enum):
    """What `prove` found for one row."""

    GO = "go"  # proven: send it now
    OPTED_OUT = "opted_out"  # suppressed or unsubscribed since the claim: marked skipped
    STOPPED = "stopped"  # the campaign is no longer sending (paused, cancelled)
    LOST = "lost"  # no longer held by this claim, or half its lease is gone: give the batch back


def new_holder(worker: str, thread: int) -> str:
    """The `claimed_by` of one batch: who (for people and the dead-process check) and a random
    claim id, so that nothing done to one batch can touch another."""
    return f"{worker}:{thread}:c{secrets.token_hex(8)}"


def is_claim(holder: str) -> bool:
    """True for a holder written by this version (ends in a claim id)."""
    return bool(_CLAIM_ID.search(holder))


# --- the database clock ---------------------------------------------------------------------


def _pg(s: Executor) -> bool:
    bind = s.get_bind() if isinstance(s, Session) else s
    return bind.dialect.name == "postgresql"


def _at(pg: bool, key: str) -> ColumnElement[Any]:
    """The database's clock plus the interval parameter `key` (PostgreSQL); on SQLite the
    parameter is the instant itself, computed from this machine's clock (see `_when`)."""
    if pg:
        return func.clock_timestamp() + bindparam(key, type_=Interval())
    return bindparam(key, type_=UTCDateTime())


def _when(pg: bool, now: datetime, delta: timedelta) -> datetime | timedelta:
    return delta if pg else now + delta


# --- statements of the hot path, built once per dialect -------------------------------------
# Constructing a SQLAlchemy statement costs more than executing a cached one, and the sender
# runs `prove` for every message.

_SUPPRESSED = exists().where(Suppression.email == Delivery.email)
_SUBSCRIBED = exists().where(
    Subscription.contact_id == Delivery.contact_id,
    Subscription.list_id.in_(bindparam("list_ids", expanding=True)),
    Subscription.status == SubscriptionStatus.SUBSCRIBED,
)
_SENDING = exists().where(Campaign.id == Delivery.campaign_id,
                          Campaign.status == CampaignStatus.SENDING)
_DUE_COLUMNS = (Delivery.id, Delivery.contact_id, Delivery.list_id, Delivery.email,
                Delivery.language, Delivery.message_id, Delivery.attempts,
                _SUPPRESSED.label("suppressed"), _SUBSCRIBED.label("subscribed"))
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
_NAMES = select(Contact.id, Contact.name).where(
    Contact.id.in_(bindparam("ids", expanding=True)))
# Held by this claim and not yet proven: the rows a sender may still skip or give back.
_HELD_UNPROVEN = and_(D.claimed_by == bindparam("b_holder"),
                      D.status == DeliveryStatus.CLAIMED, D.sent_at.is_(None))
_SKIP = update(DELIVERY).where(D.id == bindparam("b_id")).values(
    status=DeliveryStatus.SKIPPED, smtp_reply=bindparam("b_reply"), claimed_by=None,
    lease_expires_at=None, updated_at=bindparam("b_now"))
_SKIP_HELD = _SKIP.where(_HELD_UNPROVEN)
# A reply is written only by the claim that proved the row; over `in_doubt` too, so a sender
# that was stalled past its lease still records what the server said (the truth beats doubt).
_RECORD = update(DELIVERY).where(
    D.id == bindparam("b_id"), D.claimed_by == bindparam("b_holder"),
    D.status.in_([DeliveryStatus.CLAIMED, DeliveryStatus.IN_DOUBT]),
).values(
    status=bindparam("b_status"), smtp_code=bindparam("b_code"),
    smtp_reply=bindparam("b_reply"), sent_at=bindparam("b_sent"),
    next_attempt_at=bindparam("b_next"), claimed_by=None, lease_expires_at=None,
    updated_at=bindparam("b_now"),
)


@dataclass(frozen=True)
class _Hot:
    claim: Any
    prove: Any
    why: Any


@cache
def _hot(pg: bool) -> _Hot:
    claim = update(DELIVERY).where(D.id.in_(bindparam("ids", expanding=True))).values(
        status=DeliveryStatus.CLAIMED, claimed_by=bindparam("holder"),
        lease_expires_at=_at(pg, "lease"), attempts=D.attempts + 1, sent_at=None,
        updated_at=bindparam("now"),
    )
    fresh = D.lease_expires_at > _at(pg, "half")
    prove = update(DELIVERY).where(
        D.id == bindparam("row_id"), D.claimed_by == bindparam("holder"),
        D.status == DeliveryStatus.CLAIMED, D.sent_at.is_(None), fresh,
        ~_SUPPRESSED, _SUBSCRIBED, _SENDING,
    ).values(sent_at=bindparam("now"), updated_at=bindparam("now"))
    why = select(
        D.claimed_by, D.status, D.sent_at, fresh.label("fresh"),
        _SUPPRESSED.label("suppressed"), _SUBSCRIBED.label("subscribed"),
        select(Campaign.status).where(Campaign.id == D.campaign_id).scalar_subquery()
        .label("campaign_status"),
    ).where(D.id == bindparam("row_id"))
    return _Hot(claim, prove, why)


# --- the sender's side ------------------------------------------------------------------------


def claim(s: Executor, campaign_id: int, list_ids: Sequence[int], holder: str, size: int,
          now: datetime, lease: timedelta, *, skip_locked: bool) -> tuple[list[Claimed], int]:
    """Claim up to `size` due rows, pending first, then deferred ones that are due.

    Rows whose address was suppressed or unsubscribed since the plan are marked skipped on the
    way (and do not count against `size`). Returns the claimed rows in id order, the order they
    are sent in, and how many were skipped.
    """
    pg = _pg(s)
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
                s.execute(_hot(pg).claim, {"ids": [r.id for r in fresh], "holder": holder,
                                           "lease": _when(pg, now, lease), "now": now})
            keep += fresh
            if len(found) < want:  # nothing more of this kind is due
                break
    if not keep:
        return [], skipped
    keep.sort(key=lambda r: r.id)
    names = dict(s.execute(_NAMES, {"ids": [r.contact_id for r in keep]}).all())
    return [Claimed(r.id, r.contact_id, r.list_id, r.email, r.language, r.message_id,
                    r.attempts + 1, names.get(r.contact_id) or "") for r in keep], skipped


def prove(s: Executor, holder: str, row_id: int, list_ids: Sequence[int], half: timedelta,
          now: datetime) -> tuple[Verdict, CampaignStatus | None]:
    """The proof a sender commits immediately before one message's SMTP transaction.

    GO only when the row is still held by this claim, not proven before, has more than `half`
    of its lease left, is still wanted and its campaign is still sending; the row's `sent_at`
    then says its transaction may have started, and recovery will never give it back as
    pending. Otherwise says why (an opted-out row is marked skipped here). The second value is
    the campaign's status when the verdict is STOPPED."""
    pg = _pg(s)
    params = {"row_id": row_id, "holder": holder, "list_ids": list(list_ids),
              "half": _when(pg, now, half), "now": now}
    hot = _hot(pg)
    if s.execute(hot.prove, params).rowcount:  # type: ignore[attr-defined]
        return Verdict.GO, CampaignStatus.SENDING
    row = s.execute(hot.why, params).one_or_none()
    if row is None:
        return Verdict.LOST, None
    if row.campaign_status != CampaignStatus.SENDING:
        return Verdict.STOPPED, row.campaign_status
    if row.claimed_by != holder or row.status != DeliveryStatus.CLAIMED \
            or row.sent_at is not None or not row.fresh:
        return Verdict.LOST, row.campaign_status
    if (row.suppressed or not row.subscribed) and s.execute(_SKIP_HELD, {
            "b_id": row_id, "b_holder": holder, "b_now": now,
            "b_reply": SUPPRESSED_REPLY if row.suppressed else UNSUBSCRIBED_REPLY,
    }).rowcount:  # type: ignore[attr-defined]
        return Verdict.OPTED_OUT, row.campaign_status
    # Nothing explains the refusal (a concurrent change between the two statements): the
    # safe answer is not to send.
    return Verdict.LOST, row.campaign_status


def mark_skipped(s: Executor, rows: Iterable[tuple[int, bool]], now: datetime,
                 holder: str | None = None) -> int:
    """Mark rows skipped: (id, suppressed?) pairs; with `holder`, only rows it holds unproven."""
    params = [{"b_id": i, "b_reply": SUPPRESSED_REPLY if sup else UNSUBSCRIBED_REPLY,
               "b_now": now, "b_holder": holder} for i, sup in rows]
    if params:
        s.execute(_SKIP if holder is None else _SKIP_HELD, params)
    return len(params)


def record(s: Executor, holder: str, results: Sequence[Result], now: datetime) -> None:
    """Write a group of results in one statement; a row this claim no longer has is left
    alone (given back, resent by the operator, resolved)."""
    if not results:
        return
    s.execute(_RECORD, [{"b_id": r.id, "b_holder": holder, "b_status": r.status,
                         "b_code": r.code, "b_reply": r.reply[:2000],
                         "b_sent": now if r.status == DeliveryStatus.SENT else None,
                         "b_next": r.next_attempt_at, "b_now": now} for r in results])


def unprove(s: Executor, holder: str, row_id: int) -> None:
    """Withdraw a proof when the send is known not to have started (the server refused the
    envelope sender), so the row can be given back."""
    s.execute(update(DELIVERY).where(D.id == row_id, D.claimed_by == holder,
                                     D.status == DeliveryStatus.CLAIMED).values(sent_at=None))


def give_back(s: Executor, holder: str, ids: Sequence[int], now: datetime, *,
              cancelled: bool) -> None:
    """Unproven claimed rows go back to pending (nothing was sent), or to cancelled. A proven
    row is never given back: its message may be on its way."""
    if not ids:
        return
    held = and_(D.id.in_(list(ids)), D.claimed_by == holder,
                D.status == DeliveryStatus.CLAIMED, D.sent_at.is_(None))
    if cancelled:
        s.execute(update(DELIVERY).where(held).values(
            status=DeliveryStatus.CANCELLED, claimed_by=None, lease_expires_at=None,
            updated_at=now, smtp_reply="cancelled by the operator"))
    else:
        s.execute(update(DELIVERY).where(held).values(**_PENDING_AGAIN, updated_at=now))


# Back to pending, the attempt that never happened not counted.
_PENDING_AGAIN: dict[str, Any] = {
    "status": DeliveryStatus.PENDING, "claimed_by": None, "lease_expires_at": None,
    "sent_at": None, "attempts": case((D.attempts > 0, D.attempts - 1), else_=0)}


# --- recovery ---------------------------------------------------------------------------------


def recover(s: Executor, campaign_id: int, now: datetime,
            is_dead: Callable[[str], bool]) -> int:
    """Rows of a sender that is gone (lease expired by the database's clock, or a dead process
    on this machine): proven rows become in_doubt, unproven ones pending. The expiry is checked
    in the statements that change the rows, so a batch claimed meanwhile, or a lease that a
    stalled sender's proof still holds, is never touched. Returns how many became in_doubt."""
    pg = _pg(s)
    holders = [h or "" for h in s.scalars(
        select(D.claimed_by).where(D.campaign_id == campaign_id,
                                   D.status == DeliveryStatus.CLAIMED).distinct())]
    dead = [h for h in holders if h and is_dead(h)]
    claims = [h for h in holders if is_claim(h)]
    n = 0
    if claims:
        expired = or_(D.lease_expires_at.is_(None), D.lease_expires_at < _at(pg, "zero"),
                      D.claimed_by.in_(dead))
        gone = and_(D.campaign_id == campaign_id, D.status == DeliveryStatus.CLAIMED,
                    D.claimed_by.in_(claims), expired)
        params = {"zero": _when(pg, now, timedelta(0))}
        # The holder stays on an in_doubt row: its sender, if it was only stalled, records the
        # server's reply over the doubt when it wakes.
        n = s.execute(update(DELIVERY).where(gone, D.sent_at.is_not(None)).values(
            status=DeliveryStatus.IN_DOUBT, updated_at=now,
            smtp_reply=case((D.claimed_by.in_(dead), DEAD_REPLY), else_=EXPIRED_REPLY)),
            params).rowcount  # type: ignore[attr-defined]
        s.execute(update(DELIVERY).where(gone, D.sent_at.is_(None))
                  .values(**_PENDING_AGAIN, updated_at=now), params)
    for holder in holders:
        if not is_claim(holder):
            n += _recover_legacy(s, pg, campaign_id, holder, holder in dead, now)
    return n


def _recover_legacy(s: Executor, pg: bool, campaign_id: int, holder: str, dead: bool,
                    now: datetime) -> int:
    """Rows claimed by an earlier version (no proof, `host:pid:thread:gN`): it committed replies
    in id order every N messages, so only its lowest N rows can have gone out."""
    where = and_(D.campaign_id == campaign_id, D.status == DeliveryStatus.CLAIMED,
                 D.claimed_by == holder if holder else D.claimed_by.is_(None))
    if not dead:
        where = and_(where, or_(D.lease_expires_at.is_(None),
                                D.lease_expires_at < _at(pg, "zero")))
    params = {"zero": _when(pg, now, timedelta(0))}
    ids = list(s.scalars(select(D.id).where(where).order_by(D.id), params))
    m = _LEGACY_GROUP.search(holder)
    doubt = ids if m is None else ids[:int(m.group(1))]
    s.execute(update(DELIVERY).where(where, D.id.in_(doubt)).values(
        status=DeliveryStatus.IN_DOUBT, updated_at=now,
        smtp_reply=DEAD_REPLY if dead else EXPIRED_REPLY), params)
    rest = ids[len(doubt):]
    if rest:
        s.execute(update(DELIVERY).where(where, D.id.in_(rest))
                  .values(**_PENDING_AGAIN, updated_at=now), params)
    return len(doubt)
