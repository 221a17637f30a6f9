"""The delivery ledger's writes: claim a batch, prove a row before its send, record, recover.

Every function here runs inside the caller's transaction and touches the `delivery` table with
a few set-based statements (no ORM objects per row). docs/ledger.md gives the whole argument;
in short:

- A claim is one batch, identified by a holder name that ends in a random claim id
  (`host:pid:thread:c<16 hex>`), so no two batches, even of one thread, share a holder.
- Before a row's SMTP transaction the sender commits its *proof* (`prove_group`): one
  conditional UPDATE ... RETURNING that sets `sent_at` ("this row's transaction may start") on
  the next `ledger_group_size` rows it will send, each only if it is still claimed by this
  claim, has no proof yet, has more than half its lease left (by the database's clock), is
  still wanted (not suppressed, still subscribed) and its campaign is still sending. No proof,
  no send. With a group of one (the default) that is immediately before each message; a larger
  group is re-checked (`recheck`) before any of its messages once its last look is older than
  the opt-out bound.
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

Over 400 lines on purpose: every statement that changes a claimed row is in this one module, so
the argument in docs/ledger.md can be checked against a single file.
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

# A mapped class's __table__ is typed as FromClause; Delivery's is a Table.
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


@dataclass(slots=True)
class GroupProof:
    """What `prove_group` found for a group of rows, in the order they were given."""

    go: list[int]  # proven: send these now, in this order
    skipped: list[int]  # opted out since the claim: marked skipped
    # Set when the group cannot go (STOPPED or LOST): then none of it is proven.
    stop: Verdict | None = None
    campaign_status: CampaignStatus | None = CampaignStatus.SENDING


@dataclass(slots=True)
class Recheck:
    """What `recheck` found for rows this claim proved and has not sent yet."""

    keep: list[int]  # still this claim's and still wanted: send them
    skipped: list[int]  # opted out since the proof: marked skipped, not sent
    campaign_status: CampaignStatus | None


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
_SENDING = exists().where(
    Campaign.id == Delivery.campaign_id, Campaign.status == CampaignStatus.SENDING
)
_DUE_COLUMNS = (
    Delivery.id,
    Delivery.contact_id,
    Delivery.list_id,
    Delivery.email,
    Delivery.language,
    Delivery.message_id,
    Delivery.attempts,
    _SUPPRESSED.label("suppressed"),
    _SUBSCRIBED.label("subscribed"),
)
# Two indexed queries, pending rows first: one with OR would scan the whole campaign.
_PENDING = (
    select(*_DUE_COLUMNS)
    .where(
        Delivery.campaign_id == bindparam("campaign_id"), Delivery.status == DeliveryStatus.PENDING
    )
    .order_by(Delivery.id)
    .limit(bindparam("n"))
)
_DEFERRED = (
    select(*_DUE_COLUMNS)
    .where(
        Delivery.campaign_id == bindparam("campaign_id"),
        Delivery.status == DeliveryStatus.DEFERRED,
        Delivery.next_attempt_at <= bindparam("now"),
    )
    .order_by(Delivery.next_attempt_at)
    .limit(bindparam("n"))
)
_DUE = {
    False: (_PENDING, _DEFERRED),
    True: tuple(q.with_for_update(skip_locked=True, of=DELIVERY) for q in (_PENDING, _DEFERRED)),
}
_NAMES = select(Contact.id, Contact.name).where(Contact.id.in_(bindparam("ids", expanding=True)))
# Held by this claim and not yet proven: the rows a sender may still skip or give back.
_HELD_UNPROVEN = and_(
    D.claimed_by == bindparam("b_holder"), D.status == DeliveryStatus.CLAIMED, D.sent_at.is_(None)
)
_SKIP = (
    update(DELIVERY)
    .where(D.id == bindparam("b_id"))
    .values(
        status=DeliveryStatus.SKIPPED,
        smtp_reply=bindparam("b_reply"),
        claimed_by=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)
_SKIP_HELD = _SKIP.where(_HELD_UNPROVEN)
# A reply is written only by the claim that proved the row; over `in_doubt` too, so a sender
# that was stalled past its lease still records what the server said (the truth beats doubt).
_RECORD = (
    update(DELIVERY)
    .where(
        D.id == bindparam("b_id"),
        D.claimed_by == bindparam("b_holder"),
        # Not IN (...): that is an expanding parameter, which executemany cannot take.
        or_(D.status == DeliveryStatus.CLAIMED, D.status == DeliveryStatus.IN_DOUBT),
    )
    .values(
        status=bindparam("b_status"),
        smtp_code=bindparam("b_code"),
        smtp_reply=bindparam("b_reply"),
        sent_at=bindparam("b_sent"),
        next_attempt_at=bindparam("b_next"),
        claimed_by=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)


# Proven by this claim and not recorded (in_doubt too: recovery may have passed by).
_RECHECK = select(
    D.id,
    and_(
        D.claimed_by == bindparam("holder"),
        D.status.in_([DeliveryStatus.CLAIMED, DeliveryStatus.IN_DOUBT]),
        D.sent_at.is_not(None),
    ).label("ours"),
    _SUPPRESSED.label("suppressed"),
    _SUBSCRIBED.label("subscribed"),
    select(Campaign.status)
    .where(Campaign.id == D.campaign_id)
    .scalar_subquery()
    .label("campaign_status"),
).where(D.id.in_(bindparam("row_ids", expanding=True)))


@dataclass(frozen=True)
class _Hot:
    claim: Any
    prove: Any
    why: Any


@cache
def _hot(pg: bool) -> _Hot:
    claim = (
        update(DELIVERY)
        .where(D.id.in_(bindparam("ids", expanding=True)))
        .values(
            status=DeliveryStatus.CLAIMED,
            claimed_by=bindparam("holder"),
            lease_expires_at=_at(pg, "lease"),
            attempts=D.attempts + 1,
            sent_at=None,
            updated_at=bindparam("now"),
        )
    )
    fresh = D.lease_expires_at > _at(pg, "half")
    # One statement for the whole group: every condition is checked on each row, on its latest
    # committed version (PostgreSQL re-checks a row it had to wait for).
    prove = (
        update(DELIVERY)
        .where(
            D.id.in_(bindparam("row_ids", expanding=True)),
            D.claimed_by == bindparam("holder"),
            D.status == DeliveryStatus.CLAIMED,
            D.sent_at.is_(None),
            fresh,
            ~_SUPPRESSED,
            _SUBSCRIBED,
            _SENDING,
        )
        .values(sent_at=bindparam("now"), updated_at=bindparam("now"))
        .returning(D.id)
    )
    why = select(
        D.claimed_by,
        D.status,
        D.sent_at,
        fresh.label("fresh"),
        _SUPPRESSED.label("suppressed"),
        _SUBSCRIBED.label("subscribed"),
        select(Campaign.status)
        .where(Campaign.id == D.campaign_id)
        .scalar_subquery()
        .label("campaign_status"),
    ).where(D.id == bindparam("row_id"))
    return _Hot(claim, prove, why)


# --- the sender's side ------------------------------------------------------------------------


def claim(
    s: Executor,
    campaign_id: int,
    list_ids: Sequence[int],
    holder: str,
    size: int,
    now: datetime,
    lease: timedelta,
    *,
    skip_locked: bool,
) -> tuple[list[Claimed], int]:
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
            found = s.execute(
                stmt, {"campaign_id": campaign_id, "n": want, "now": now, "list_ids": lists}
            ).all()
            gone = [
                (r.id, bool(r.suppressed))
                for r in found
                if r.suppressed or not r.subscribed or r.contact_id is None
            ]
            skipped += mark_skipped(s, gone, now)
            gone_ids = {i for i, _ in gone}
            fresh = [r for r in found if r.id not in gone_ids]
            if fresh:
                # Claimed at once, so the next query (after skipped rows) moves past them.
                s.execute(
                    _hot(pg).claim,
                    {
                        "ids": [r.id for r in fresh],
                        "holder": holder,
                        "lease": _when(pg, now, lease),
                        "now": now,
                    },
                )
            keep += fresh
            if len(found) < want:  # nothing more of this kind is due
                break
    if not keep:
        return [], skipped
    keep.sort(key=lambda r: r.id)
    names = dict(s.execute(_NAMES, {"ids": [r.contact_id for r in keep]}).all())
    return [
        Claimed(
            r.id,
            r.contact_id,
            r.list_id,
            r.email,
            r.language,
            r.message_id,
            r.attempts + 1,
            names.get(r.contact_id) or "",
        )
        for r in keep
    ], skipped


def prove(
    s: Executor, holder: str, row_id: int, list_ids: Sequence[int], half: timedelta, now: datetime
) -> tuple[Verdict, CampaignStatus | None]:
    """`prove_group` for one row: its verdict, and the campaign's status when STOPPED."""
    g = prove_group(s, holder, [row_id], list_ids, half, now)
    if g.go:
        return Verdict.GO, CampaignStatus.SENDING
    if g.skipped:
        return Verdict.OPTED_OUT, g.campaign_status
    return g.stop or Verdict.LOST, g.campaign_status


def prove_group(
    s: Executor,
    holder: str,
    row_ids: Sequence[int],
    list_ids: Sequence[int],
    half: timedelta,
    now: datetime,
) -> GroupProof:
    """The proof a sender commits before sending `row_ids` (the next rows of its batch, in the
    order it will send them), in one UPDATE ... RETURNING.

    A row is proven only when it is still held by this claim, not proven before, has more than
    `half` of its lease left, is still wanted and its campaign is still sending; its `sent_at`
    then says its transaction may have started, and recovery will never give it back as
    pending. Opted-out rows are marked skipped here. If any other row is refused (the campaign
    stopped, the claim lost, half the lease gone), the proofs just made are withdrawn in the
    same transaction: all or nothing, so a stopping sender never holds proven rows."""
    pg = _pg(s)
    hot = _hot(pg)
    ids = list(row_ids)
    go = set(
        s.scalars(
            hot.prove,
            {
                "row_ids": ids,
                "holder": holder,
                "list_ids": list(list_ids),
                "half": _when(pg, now, half),
                "now": now,
            },
        )
    )
    if len(go) == len(ids):
        return GroupProof(ids, [])
    skipped: list[int] = []
    stop: Verdict | None = None
    status: CampaignStatus | None = CampaignStatus.SENDING
    for row_id in ids:
        if row_id in go:
            continue
        verdict, why_status = _refused(s, hot, holder, row_id, list_ids, half, now)
        if verdict == Verdict.OPTED_OUT:
            skipped.append(row_id)
        elif stop != Verdict.STOPPED:  # a stopped campaign says more than a lost row
            stop, status = verdict, why_status
    if stop is not None and go:
        unprove(s, holder, list(go))
        go = set()
    return GroupProof([i for i in ids if i in go], skipped, stop, status)


def _refused(
    s: Executor,
    hot: _Hot,
    holder: str,
    row_id: int,
    list_ids: Sequence[int],
    half: timedelta,
    now: datetime,
) -> tuple[Verdict, CampaignStatus | None]:
    """Why the proof refused one row (an opted-out row is marked skipped here)."""
    params = {
        "row_id": row_id,
        "holder": holder,
        "list_ids": list(list_ids),
        "half": _when(_pg(s), now, half),
    }
    row = s.execute(hot.why, params).one_or_none()
    if row is None:
        return Verdict.LOST, None
    if row.campaign_status != CampaignStatus.SENDING:
        return Verdict.STOPPED, row.campaign_status
    if (
        row.claimed_by != holder
        or row.status != DeliveryStatus.CLAIMED
        or row.sent_at is not None
        or not row.fresh
    ):
        return Verdict.LOST, row.campaign_status
    if (row.suppressed or not row.subscribed) and s.execute(
        _SKIP_HELD,
        {
            "b_id": row_id,
            "b_holder": holder,
            "b_now": now,
            "b_reply": SUPPRESSED_REPLY if row.suppressed else UNSUBSCRIBED_REPLY,
        },
    ).rowcount:  # type: ignore[attr-defined]  # a CursorResult, typed as Result
        return Verdict.OPTED_OUT, row.campaign_status
    # Nothing explains the refusal (a concurrent change between the two statements): the
    # safe answer is not to send.
    return Verdict.LOST, row.campaign_status


def mark_skipped(
    s: Executor, rows: Iterable[tuple[int, bool]], now: datetime, holder: str | None = None
) -> int:
    """Mark rows skipped: (id, suppressed?) pairs; with `holder`, only rows it holds unproven."""
    params = [
        {
            "b_id": i,
            "b_reply": SUPPRESSED_REPLY if sup else UNSUBSCRIBED_REPLY,
            "b_now": now,
            "b_holder": holder,
        }
        for i, sup in rows
    ]
    if params:
        s.execute(_SKIP if holder is None else _SKIP_HELD, params)
    return len(params)


def record(s: Executor, holder: str, results: Sequence[Result], now: datetime) -> None:
    """Write a group of results in one statement; a row this claim no longer has is left
    alone (given back, resent by the operator, resolved)."""
    if not results:
        return
    s.execute(
        _RECORD,
        [
            {
                "b_id": r.id,
                "b_holder": holder,
                "b_status": r.status,
                "b_code": r.code,
                "b_reply": r.reply[:2000],
                "b_sent": now if r.status == DeliveryStatus.SENT else None,
                "b_next": r.next_attempt_at,
                "b_now": now,
            }
            for r in results
        ],
    )


def unprove(s: Executor, holder: str, row_ids: Sequence[int]) -> None:
    """Withdraw this claim's proofs of rows whose send is known not to have started (the
    server refused the envelope sender; the rest of a proven group when the sender stops), so
    they can be given back. Only the sender that proved a row can send it, and it withdraws
    only rows it will not send. A row recovery already made in_doubt stays in doubt."""
    if row_ids:
        s.execute(
            update(DELIVERY)
            .where(
                D.id.in_(list(row_ids)), D.claimed_by == holder, D.status == DeliveryStatus.CLAIMED
            )
            .values(sent_at=None)
        )


def recheck(
    s: Executor, holder: str, row_ids: Sequence[int], list_ids: Sequence[int], now: datetime
) -> Recheck:
    """Look again at rows this claim proved and has not sent yet (a group older than the
    opt-out bound): rows opted out since are marked skipped; rows no longer this claim's (the
    operator resolved them) are dropped. Nothing is sent for either."""
    rows = s.execute(
        _RECHECK, {"row_ids": list(row_ids), "holder": holder, "list_ids": list(list_ids)}
    ).all()
    status = rows[0].campaign_status if rows else None
    if status != CampaignStatus.SENDING:
        return Recheck([], [], status)
    found = {r.id: r for r in rows}
    keep: list[int] = []
    gone: list[Result] = []
    for row_id in row_ids:
        r = found.get(row_id)
        if r is None or not r.ours:
            continue
        if r.suppressed or not r.subscribed:
            gone.append(
                Result(
                    row_id,
                    DeliveryStatus.SKIPPED,
                    None,
                    SUPPRESSED_REPLY if r.suppressed else UNSUBSCRIBED_REPLY,
                )
            )
        else:
            keep.append(row_id)
    record(s, holder, gone, now)
    return Recheck(keep, [g.id for g in gone], status)


def give_back(
    s: Executor, holder: str, ids: Sequence[int], now: datetime, *, cancelled: bool
) -> None:
    """Unproven claimed rows go back to pending (nothing was sent), or to cancelled. A proven
    row is never given back: its message may be on its way."""
    if not ids:
        return
    held = and_(
        D.id.in_(list(ids)),
        D.claimed_by == holder,
        D.status == DeliveryStatus.CLAIMED,
        D.sent_at.is_(None),
    )
    if cancelled:
        s.execute(
            update(DELIVERY)
            .where(held)
            .values(
                status=DeliveryStatus.CANCELLED,
                claimed_by=None,
                lease_expires_at=None,
                updated_at=now,
                smtp_reply="cancelled by the operator",
            )
        )
    else:
        s.execute(update(DELIVERY).where(held).values(**_PENDING_AGAIN, updated_at=now))


# --- provider holds (delivery/guards.py) -----------------------------------------------------
# A provider refusing the sender: its recipients wait instead of being refused one by one. Each
# statement changes only rows nobody can be sending: unproven rows of this claim, rows nobody
# holds (pending, deferred), or rows a server already refused (failed on a 5xx: not delivered).


def defer_held(
    s: Executor, holder: str, ids: Sequence[int], until: datetime, reply: str, now: datetime
) -> int:
    """Rows this claim holds and has not proven, deferred to `until` without being sent (the
    attempt that never happened not counted). A proven row is never touched."""
    if not ids:
        return 0
    return int(
        s.execute(
            update(DELIVERY)
            .where(
                D.id.in_(list(ids)),
                D.claimed_by == holder,
                D.status == DeliveryStatus.CLAIMED,
                D.sent_at.is_(None),
            )
            .values(
                status=DeliveryStatus.DEFERRED,
                next_attempt_at=until,
                smtp_reply=reply[:2000],
                claimed_by=None,
                lease_expires_at=None,
                attempts=case((D.attempts > 0, D.attempts - 1), else_=0),
                updated_at=now,
            )
        ).rowcount  # type: ignore[attr-defined]  # a CursorResult, typed as Result
        or 0
    )


def defer_waiting(
    s: Executor,
    campaign_id: int,
    domains: Iterable[str],
    until: datetime,
    reply: str,
    now: datetime,
) -> int:
    """Rows of the campaign nobody holds (pending, or deferred to before `until`) whose
    address is at one of `domains`: deferred to `until`. A row claimed meanwhile is left to
    its claim (on PostgreSQL the condition is checked again after any row lock)."""
    at = [D.email.endswith("@" + d, autoescape=True) for d in sorted({x.lower() for x in domains})]
    if not at:
        return 0
    return int(
        s.execute(
            update(DELIVERY)
            .where(
                D.campaign_id == campaign_id,
                or_(
                    D.status == DeliveryStatus.PENDING,
                    and_(
                        D.status == DeliveryStatus.DEFERRED,
                        or_(D.next_attempt_at.is_(None), D.next_attempt_at < until),
                    ),
                ),
                or_(*at),
            )
            .values(
                status=DeliveryStatus.DEFERRED,
                next_attempt_at=until,
                smtp_reply=reply[:2000],
                updated_at=now,
            )
        ).rowcount  # type: ignore[attr-defined]  # a CursorResult, typed as Result
        or 0
    )


def defer_refused(s: Executor, ids: Sequence[int], until: datetime, now: datetime) -> int:
    """Rows recorded `failed` on the refusals that made a provider's streak: the server refused
    them (5xx, nothing delivered), and the refusal was of the sender, so they wait with the
    rest of the provider's recipients instead."""
    if not ids:
        return 0
    return int(
        s.execute(
            update(DELIVERY)
            .where(
                D.id.in_(list(ids)),
                D.status == DeliveryStatus.FAILED,
                D.claimed_by.is_(None),
            )
            .values(status=DeliveryStatus.DEFERRED, next_attempt_at=until, updated_at=now)
        ).rowcount  # type: ignore[attr-defined]  # a CursorResult, typed as Result
        or 0
    )


# Back to pending, the attempt that never happened not counted.
_PENDING_AGAIN: dict[str, Any] = {
    "status": DeliveryStatus.PENDING,
    "claimed_by": None,
    "lease_expires_at": None,
    "sent_at": None,
    "attempts": case((D.attempts > 0, D.attempts - 1), else_=0),
}


# --- recovery ---------------------------------------------------------------------------------


def recover(s: Executor, campaign_id: int, now: datetime, is_dead: Callable[[str], bool]) -> int:
    """Rows of a sender that is gone (lease expired by the database's clock, or a dead process
    on this machine): proven rows become in_doubt, unproven ones pending. The expiry is checked
    in the statements that change the rows, so a batch claimed meanwhile, or a lease that a
    stalled sender's proof still holds, is never touched. Returns how many became in_doubt."""
    pg = _pg(s)
    holders = [
        h or ""
        for h in s.scalars(
            select(D.claimed_by)
            .where(D.campaign_id == campaign_id, D.status == DeliveryStatus.CLAIMED)
            .distinct()
        )
    ]
    dead = [h for h in holders if h and is_dead(h)]
    claims = [h for h in holders if is_claim(h)]
    n = 0
    if claims:
        expired = or_(
            D.lease_expires_at.is_(None),
            D.lease_expires_at < _at(pg, "zero"),
            D.claimed_by.in_(dead),
        )
        gone = and_(
            D.campaign_id == campaign_id,
            D.status == DeliveryStatus.CLAIMED,
            D.claimed_by.in_(claims),
            expired,
        )
        params = {"zero": _when(pg, now, timedelta(0))}
        # The holder stays on an in_doubt row: its sender, if it was only stalled, records the
        # server's reply over the doubt when it wakes.
        n = s.execute(
            update(DELIVERY)
            .where(gone, D.sent_at.is_not(None))
            .values(
                status=DeliveryStatus.IN_DOUBT,
                updated_at=now,
                smtp_reply=case((D.claimed_by.in_(dead), DEAD_REPLY), else_=EXPIRED_REPLY),
            ),
            params,
        ).rowcount  # type: ignore[attr-defined]  # a CursorResult, typed as Result
        s.execute(
            update(DELIVERY)
            .where(gone, D.sent_at.is_(None))
            .values(**_PENDING_AGAIN, updated_at=now),
            params,
        )
    for holder in holders:
        if not is_claim(holder):
            n += _recover_legacy(s, pg, campaign_id, holder, holder in dead, now)
    return n


def _recover_legacy(
    s: Executor, pg: bool, campaign_id: int, holder: str, dead: bool, now: datetime
) -> int:
    """Rows claimed by an earlier version (no proof, `host:pid:thread:gN`): it committed replies
    in id order every N messages, so only its lowest N rows can have gone out."""
    where = and_(
        D.campaign_id == campaign_id,
        D.status == DeliveryStatus.CLAIMED,
        D.claimed_by == holder if holder else D.claimed_by.is_(None),
    )
    if not dead:
        where = and_(where, or_(D.lease_expires_at.is_(None), D.lease_expires_at < _at(pg, "zero")))
    params = {"zero": _when(pg, now, timedelta(0))}
    ids = list(s.scalars(select(D.id).where(where).order_by(D.id), params))
    m = _LEGACY_GROUP.search(holder)
    doubt = ids if m is None else ids[: int(m.group(1))]
    s.execute(
        update(DELIVERY)
        .where(where, D.id.in_(doubt))
        .values(
            status=DeliveryStatus.IN_DOUBT,
            updated_at=now,
            smtp_reply=DEAD_REPLY if dead else EXPIRED_REPLY,
        ),
        params,
    )
    rest = ids[len(doubt) :]
    if rest:
        s.execute(
            update(DELIVERY).where(where, D.id.in_(rest)).values(**_PENDING_AGAIN, updated_at=now),
            params,
        )
    return len(doubt)
