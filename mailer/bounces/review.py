"""What a report does to an address, and the queue of reports held for a person.

A proven report (bounces/proof.py) is applied at once by `act`. An unproven one is recorded in
the Bounce table with a BounceReview row in state "pending": it suppresses nothing, and a soft
or block bounce under review counts toward no score. `bounces review --apply ID` applies it
exactly as a proven report would have been; `--dismiss ID` closes it for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces.parse import BLOCK, COMPLAINT, DELAYED, HARD, SOFT, UNSUBSCRIBE
from mailer.config import Settings
from mailer.contacts.contact import unsubscribe
from mailer.contacts.suppressions import get_suppression, suppress
from mailer.errors import InvalidInputError
from mailer.store import audit
from mailer.store.models import (
    Bounce,
    BounceReview,
    Contact,
    Delivery,
    DeliveryStatus,
    SuppressionReason,
)

PENDING, APPLIED, DISMISSED = "pending", "applied", "dismissed"
STATES = (PENDING, APPLIED, DISMISSED)
# Kinds that change something for the address, so need proof (or a person) first.
ACTIONABLE = (HARD, SOFT, BLOCK, COMPLAINT, UNSUBSCRIBE)
# Reports that say a delivery did not (yet) arrive: such a delivery never resets the score.
NOT_DELIVERED = (HARD, SOFT, BLOCK, DELAYED)


def act(
    session: Session,
    settings: Settings,
    kind: str,
    email: str,
    source: str,
    status: str | None = None,
    actor: str = "bounces",
) -> str:
    """Apply one proven (or reviewed) report to `email`; returns what was done."""
    if kind == HARD:
        return _suppress(
            session, email, SuppressionReason.HARD_BOUNCE, f"bounce {status or ''} {source}", actor
        )
    if kind == COMPLAINT:
        return _suppress(session, email, SuppressionReason.COMPLAINT, f"complaint {source}", actor)
    if kind == UNSUBSCRIBE:
        changed = unsubscribe(session, email, None, via="mailto", actor=actor)
        return "unsubscribed from every list (suppressed)" + (
            f": {', '.join(changed)}" if changed else ""
        )
    if kind in (SOFT, BLOCK):
        score, soft = soft_score(session, settings, email)
        threshold = settings.soft_bounce_threshold
        done = f"score {score}/{threshold or 'off'}"
        if threshold and score >= threshold and soft:
            return (
                _suppress(
                    session,
                    email,
                    SuppressionReason.HARD_BOUNCE,
                    f"{score} soft bounces in {settings.soft_bounce_window_days} days",
                    actor,
                )
                + f" (score {score}/{threshold})"
            )
        if threshold and score >= threshold:
            done += " (blocks only: not suppressed)"
        return done
    return "none"


def _suppress(
    session: Session, email: str, reason: SuppressionReason, source: str, actor: str
) -> str:
    existing = get_suppression(session, email)
    suppress(session, email, reason, source=source[:200], actor=actor)
    return "already suppressed" if existing is not None else "suppressed"


def hold(session: Session, bounce: Bounce, email: str, why: str) -> BounceReview:
    """Queue a recorded, unproven report for a person."""
    review = BounceReview(
        bounce_id=bounce.id,
        email=email,
        action=bounce.kind,
        why=why[:2000],
        state=PENDING,
        created_at=clock.now(),
    )
    session.add(review)
    session.flush()
    return review


def soft_score(session: Session, settings: Settings, email: str) -> tuple[int, int]:
    """(soft and block bounces that count now, how many of them are soft) for one address.

    Only proven reports count: one held for review counts once a person applies it.
    """
    now = clock.now()
    since = now - timedelta(days=settings.soft_bounce_window_days)
    unproven = exists().where(BounceReview.bounce_id == Bounce.id, BounceReview.state != APPLIED)
    rows = session.execute(
        select(Bounce.kind, Bounce.created_at, Delivery.sent_at)
        .outerjoin(Delivery, Delivery.id == Bounce.delivery_id)
        .where(Bounce.email == email, Bounce.kind.in_((SOFT, BLOCK)), ~unproven)
    ).all()
    reset = _last_success(session, email)
    counted = []
    for kind, created_at, sent_at in rows:
        at: datetime = sent_at or created_at
        if at >= since and (reset is None or at > reset):
            counted.append(kind)
    return len(counted), sum(1 for k in counted if k == SOFT)


def _last_success(session: Session, email: str) -> datetime | None:
    """The sending time of the last delivery that no bounce or delay report names."""
    not_delivered = select(Bounce.delivery_id).where(
        Bounce.delivery_id.is_not(None), Bounce.kind.in_(NOT_DELIVERED)
    )
    return session.scalar(
        select(func.max(Delivery.sent_at)).where(
            Delivery.email == email,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at.is_not(None),
            Delivery.id.not_in(not_delivered),
        )
    )


@dataclass
class Held:
    """One row of `bounces review` (its JSON shape is documented in docs/bounces.md)."""

    id: int
    state: str
    email: str
    action: str
    status: str | None
    why: str
    source_message_id: str
    diagnostic: str | None
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    outcome: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


def list_held(session: Session, state: str | None = PENDING) -> list[Held]:
    """Held reports, oldest first; `state` None lists every state."""
    if state is not None and state not in STATES:
        raise InvalidInputError(f"state: expected one of {', '.join(STATES)}, got {state!r}")
    query = (
        select(BounceReview, Bounce)
        .join(Bounce, Bounce.id == BounceReview.bounce_id)
        .order_by(BounceReview.id)
    )
    if state is not None:
        query = query.where(BounceReview.state == state)
    return [_held(r, b) for r, b in session.execute(query).all()]


def _held(r: BounceReview, b: Bounce) -> Held:
    return Held(
        r.id,
        r.state,
        r.email,
        r.action,
        b.status_code,
        r.why,
        b.source_message_id,
        b.diagnostic,
        r.created_at,
        r.decided_at,
        r.decided_by,
        r.outcome,
    )


def decide(
    session: Session, settings: Settings, review_id: int, *, apply: bool, actor: str
) -> Held:
    """Apply or dismiss one pending report; an unknown or decided id is a clear error."""
    row = session.execute(
        select(BounceReview, Bounce)
        .join(Bounce, Bounce.id == BounceReview.bounce_id)
        .where(BounceReview.id == review_id)
        .with_for_update(of=BounceReview)
    ).first()
    if row is None:
        raise InvalidInputError(f"no held report with id {review_id} (see `mailer bounces review`)")
    review, bounce = row
    if review.state != PENDING:
        when = review.decided_at.isoformat() if review.decided_at else "?"
        raise InvalidInputError(
            f"held report {review_id} was already {review.state} "
            f"({when}, by {review.decided_by or '?'})"
        )
    review.state = APPLIED if apply else DISMISSED
    review.decided_at, review.decided_by = clock.now(), actor[:200]
    session.flush()  # an applied soft bounce must count in the score computed below
    contact_id = session.scalar(select(Contact.id).where(Contact.email == review.email))
    if apply:
        review.outcome = act(
            session,
            settings,
            review.action,
            review.email,
            f"review {review_id}: {bounce.source_message_id}",
            bounce.status_code,
            actor=actor,
        )
        if review.action != UNSUBSCRIBE:
            audit.record(
                session,
                "bounce",
                contact_id=contact_id,
                actor=actor,
                bounce_kind=review.action,
                status=bounce.status_code,
                source=bounce.source_message_id,
                review=review_id,
            )
    else:
        review.outcome = "dismissed: nothing done"
    audit.record(
        session,
        "bounce.review",
        contact_id=contact_id,
        actor=actor,
        review=review_id,
        decision=review.state,
        outcome=review.outcome,
    )
    session.flush()
    return _held(review, bounce)
