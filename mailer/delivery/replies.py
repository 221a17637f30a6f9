"""What a server's reply makes of a ledger row, and writing a connection's replies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.suppressions import suppress
from mailer.delivery import ledger
from mailer.delivery.guards import Hold, refusal
from mailer.delivery.ledger import Claimed
from mailer.delivery.transport import Outcome, Reply
from mailer.store.models import DeliveryStatus, SuppressionReason

MAX_BACKOFF = timedelta(hours=6)
# delivery/guards.py: the provider hold a refused row waits for, if any.
Waits = Callable[[Claimed, Reply, datetime], Hold | None]


def result_for(
    settings: Settings, started_at: datetime, d: Claimed, reply: Reply, now: datetime
) -> ledger.Result:
    """The ledger row's new state for one reply."""
    code = reply.code or None
    outcome = reply.outcome
    if outcome == Outcome.SENT:
        return ledger.Result(d.id, DeliveryStatus.SENT, code, reply.text)
    if outcome == Outcome.DEFERRED:
        if now - started_at >= timedelta(seconds=settings.give_up_after):
            return ledger.Result(
                d.id,
                DeliveryStatus.FAILED,
                code,
                f"gave up after {settings.give_up_after}s; last reply: {reply.text}",
            )
        delay = timedelta(seconds=settings.retry_base_seconds * 2 ** max(0, d.attempts - 1))
        return ledger.Result(
            d.id, DeliveryStatus.DEFERRED, code, reply.text, now + min(delay, MAX_BACKOFF)
        )
    if outcome == Outcome.IN_DOUBT:
        return ledger.Result(d.id, DeliveryStatus.IN_DOUBT, code, reply.text)
    return ledger.Result(d.id, DeliveryStatus.FAILED, code, reply.text)


def write(
    s: Connection,
    settings: Settings,
    campaign_id: int,
    started_at: datetime,
    holder: str,
    pending: Sequence[tuple[Claimed, Reply]],
    waits: Waits | None = None,
) -> list[ledger.Result]:
    """Record replies (for rows this claim proved) and suppress the addresses a server said
    do not exist; returns what was written. A refusal of the sender by a provider that is
    held (`waits`) is deferred to the end of the hold, never failed."""
    if not pending:
        return []
    now = clock.now()
    results = []
    for d, reply in pending:
        hold = waits(d, reply, now) if waits is not None else None
        if hold is not None:
            results.append(
                ledger.Result(d.id, DeliveryStatus.DEFERRED, reply.code, reply.text, hold.until)
            )
        else:
            results.append(result_for(settings, started_at, d, reply, now))
    ledger.record(s, holder, results, now)
    # A provider refusing the sender ("550 mailbox unavailable: your IP is blocked") says
    # nothing about the recipient's address.
    bad = [
        (d, reply)
        for (d, reply), r in zip(pending, results, strict=True)
        if reply.outcome == Outcome.BAD_ADDRESS
        and r.status == DeliveryStatus.FAILED
        and refusal(reply.code, reply.text) is None
    ]
    if bad:
        # A session inside this transaction: suppress() works on ORM objects.
        with Session(bind=s) as orm:
            for d, reply in bad:
                suppress(
                    orm,
                    d.email,
                    SuppressionReason.HARD_BOUNCE,
                    source=f"campaign {campaign_id}: {reply.code} {reply.text[:150]}",
                    actor=holder,
                )
            orm.flush()
    return results
