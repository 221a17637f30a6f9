"""Bounces and complaints across campaigns, for the console: newest first a page at a time
(keyset), filtered by kind, each with what the database keeps of the report behind it (the
report's Message-ID, status and diagnostic text, the review it is held in) and the suppression
on its address, telling whether this report made it. Only reads; lifting a suppression is
mailer.contacts.suppression_list's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from mailer.bounces.reasons import (
    AUTOREPLY,
    BLOCK,
    COMPLAINT,
    DELAYED,
    HARD,
    IGNORED,
    SOFT,
    UNSUBSCRIBE,
)

# The keyset cursor of the suppression list: the same newest-first (created_at, id) order.
from mailer.contacts.suppression_list import Cursor
from mailer.store.models import (
    Bounce,
    BounceReview,
    BounceSource,
    Campaign,
    Delivery,
    Release,
    Suppression,
    SuppressionReason,
)

# Every kind a bounce row can have (mailer.bounces.policy.KINDS, written out: that module loads
# the bounce parsers, which a page showing counts has no use for).
BOUNCE_KINDS = (HARD, SOFT, BLOCK, DELAYED, COMPLAINT, UNSUBSCRIBE, AUTOREPLY, IGNORED)
PAGE = 50


@dataclass(frozen=True)
class BounceRow:
    bounce: Bounce
    campaign_title: str | None
    suppression: Suppression | None  # the suppression on the address now, if any

    @property
    def caused(self) -> bool:
        """Whether that suppression was made by this report (its source names the report)."""
        return _caused_by(self.suppression, self.bounce)


@dataclass(frozen=True)
class BouncePage:
    rows: list[BounceRow]
    next: Cursor | None


def _caused_by(sup: Suppression | None, bounce: Bounce) -> bool:
    if sup is None or sup.reason not in (
        SuppressionReason.HARD_BOUNCE,
        SuppressionReason.COMPLAINT,
    ):
        return False
    # bounces.policy writes "bounce STATUS SOURCE-ID" or "complaint TYPE SOURCE-ID" (200 chars).
    words = sup.source.split()
    return bool(words) and (
        bounce.source_message_id in words or sup.source.endswith(bounce.source_message_id[:150])
    )


def bounce_page(
    session: Session,
    *,
    kind: str | None = None,
    after: Cursor | None = None,
    size: int = PAGE,
) -> BouncePage:
    """Bounces and complaints of every campaign, newest first, one page at a time."""
    stmt = (
        select(Bounce, Release.title)
        .outerjoin(Campaign, Campaign.id == Bounce.campaign_id)
        .outerjoin(Release, Release.id == Campaign.release_id)
        .order_by(Bounce.created_at.desc(), Bounce.id.desc())
    )
    if kind:
        stmt = stmt.where(Bounce.kind == kind)
    if after is not None:
        stmt = stmt.where(
            or_(
                Bounce.created_at < after.at,
                and_(Bounce.created_at == after.at, Bounce.id < after.id),
            )
        )
    found = list(session.execute(stmt.limit(size + 1)))
    more = len(found) > size
    found = found[:size]
    emails = {b.email for b, _t in found if b.email}
    sups = {
        s.email: s
        for s in session.scalars(select(Suppression).where(Suppression.email.in_(emails)))
    }
    rows = [BounceRow(b, title, sups.get(b.email or "")) for b, title in found]
    last = rows[-1].bounce if more and rows else None
    return BouncePage(rows, Cursor(last.created_at, last.id) if last is not None else None)


def bounce_kind_counts(session: Session) -> dict[str, int]:
    """Bounce rows of every campaign by kind (every kind listed, zero included)."""
    counts = dict.fromkeys(BOUNCE_KINDS, 0)
    for kind, n in session.execute(select(Bounce.kind, func.count()).group_by(Bounce.kind)):
        counts[kind] = n
    return counts


@dataclass(frozen=True)
class BounceDetail:
    bounce: Bounce
    campaign: Campaign | None
    delivery: Delivery | None
    review: BounceReview | None
    suppression: Suppression | None
    # The report message as received (none for bounces recorded before migration 0015, or
    # after `contacts erase` of their address).
    source: BounceSource | None = None

    @property
    def caused(self) -> bool:
        return _caused_by(self.suppression, self.bounce)

    @property
    def raw_text(self) -> str | None:
        """The report's bytes as text for the page (escaped there, never HTML): UTF-8, any
        other byte as U+FFFD, and NUL too (a browser would show nothing for it)."""
        if self.source is None:
            return None
        return self.source.raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def bounce_detail(session: Session, bounce_id: int) -> BounceDetail | None:
    """One report as the database keeps it, with its campaign, message, review and the
    suppression on its address (None when there is no such report)."""
    bounce = session.get(Bounce, bounce_id)
    if bounce is None:
        return None
    review = session.scalar(select(BounceReview).where(BounceReview.bounce_id == bounce.id))
    sup = (
        session.scalar(select(Suppression).where(Suppression.email == bounce.email))
        if bounce.email
        else None
    )
    return BounceDetail(
        bounce=bounce,
        campaign=session.get(Campaign, bounce.campaign_id) if bounce.campaign_id else None,
        delivery=session.get(Delivery, bounce.delivery_id) if bounce.delivery_id else None,
        review=review,
        suppression=sup,
        source=session.get(BounceSource, bounce.id),
    )
