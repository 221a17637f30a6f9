"""The global suppression list: addresses that are never mailed and never re-subscribed."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import audit, clock
from mailer.models import (
    Contact,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)


def is_suppressed(session: Session, key: str) -> bool:
    return session.scalar(select(Suppression.id).where(Suppression.email == key)) is not None


def get_suppression(session: Session, key: str) -> Suppression | None:
    return session.scalar(select(Suppression).where(Suppression.email == key))


def suppress(
    session: Session,
    key: str,
    reason: SuppressionReason,
    source: str = "",
    *,
    actor: str = "",
) -> tuple[Suppression, bool]:
    """Suppress `key` (already normalised); every subscription of its contact ends too.

    Returns the suppression and whether it is new. An existing suppression keeps its first
    reason, except that a stronger one (complaint, hard bounce) replaces a weaker one.
    """
    existing = get_suppression(session, key)
    now = clock.now()
    contact = session.scalar(select(Contact).where(Contact.email == key))
    if contact is not None:
        subs = session.scalars(
            select(Subscription).where(
                Subscription.contact_id == contact.id,
                Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
            )
        ).all()
        for sub in subs:
            sub.status = SubscriptionStatus.UNSUBSCRIBED
            sub.unsubscribed_at = now
            sub.unsubscribed_via = reason.value
    if existing is not None:
        if reason in (SuppressionReason.COMPLAINT, SuppressionReason.HARD_BOUNCE) and \
                existing.reason not in (SuppressionReason.COMPLAINT, SuppressionReason.ERASED):
            existing.reason = reason
            existing.source = source
        return existing, False
    sup = Suppression(email=key, reason=reason, source=source, created_at=now)
    session.add(sup)
    session.flush()
    audit.record(session, "suppress", contact_id=contact.id if contact else None, actor=actor,
                 reason=reason.value, source=source)
    return sup, True
