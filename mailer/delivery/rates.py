"""Bounce and complaint rates, over the last days and per campaign, against the line mailbox
providers draw; and the campaigns a dashboard shows (scheduled, recent) with their counts.

A rate is per message: of the messages the mail server took or refused (ledger rows `sent` or
`failed`), the share that bounced (refused at once, or a hard, soft or block report came back
about it) and the share a recipient reported as spam. A report held for review counts once a
person applies it, as everywhere else (bounces/review.py). Every figure is one grouped query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, case, exists, func, or_, select
from sqlalchemy.orm import Session, selectinload

from mailer import clock
from mailer.bounces.reasons import BLOCK, COMPLAINT, HARD, SOFT
from mailer.store.models import (
    Bounce,
    BounceReview,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
)

# Gmail's and Yahoo's rules for bulk senders (February 2024): keep the spam complaint rate
# below 0.3%. Gmail asks for under 0.1% as the everyday aim.
COMPLAINT_LINE = 0.003
COMPLAINT_AIM = 0.001
RECENT_DAYS = 30

BOUNCE_KINDS = (HARD, SOFT, BLOCK)
# mailer.bounces.review.APPLIED, written out: that module loads the bounce parsers.
_APPLIED = "applied"
_MAILED = (DeliveryStatus.SENT, DeliveryStatus.FAILED)


@dataclass(frozen=True)
class Rates:
    messages: int  # sent or refused: what the rates are shares of
    bounced: int
    complained: int

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.messages if self.messages else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.messages if self.messages else None

    @property
    def over_line(self) -> bool:
        """At or over the 0.3% complaint line (Gmail and Yahoo: stay below it)."""
        rate = self.complaint_rate
        return rate is not None and rate >= COMPLAINT_LINE


NO_MESSAGES = Rates(0, 0, 0)


def _per_delivery(since: datetime | None, campaign_ids: Sequence[int] | None) -> Any:
    """Per delivery with a report: whether it bounced, whether it drew a complaint."""
    held = exists().where(BounceReview.bounce_id == Bounce.id, BounceReview.state != _APPLIED)
    query = (
        select(
            Bounce.delivery_id.label("delivery_id"),
            func.max(case((Bounce.kind.in_(BOUNCE_KINDS), 1), else_=0)).label("bounced"),
            func.max(case((Bounce.kind == COMPLAINT, 1), else_=0)).label("complained"),
        )
        .where(Bounce.delivery_id.is_not(None), ~held)
        .group_by(Bounce.delivery_id)
    )
    if since is not None:
        # A report about a message comes after it: reports older than the window are about
        # older messages, so the subquery need not read them.
        query = query.where(Bounce.created_at >= since)
    if campaign_ids is not None:
        query = query.where(Bounce.campaign_id.in_(list(campaign_ids)))
    return query.subquery()


def _grouped(
    since: datetime | None, campaign_ids: Sequence[int] | None
) -> Select[int, DeliveryStatus, int, int, int]:
    """Ledger rows per (campaign, status), with how many bounced and drew a complaint."""
    reports = _per_delivery(since, campaign_ids)
    bounced: ColumnElement[bool] = (Delivery.status == DeliveryStatus.FAILED) | (
        reports.c.bounced == 1
    )
    query = (
        select(
            Delivery.campaign_id,
            Delivery.status,
            func.count(),
            func.count(case((bounced, 1))),
            func.count(case((reports.c.complained == 1, 1))),
        )
        .select_from(Delivery)
        .outerjoin(reports, reports.c.delivery_id == Delivery.id)
        .group_by(Delivery.campaign_id, Delivery.status)
    )
    if since is not None:
        # Only campaigns that may have sent since then, so the ledger's index on the campaign
        # keeps this to the window's rows however long the history: a done or cancelled
        # campaign sends nothing after its finished_at (set whenever it becomes either).
        active = select(Campaign.id).where(
            or_(
                Campaign.status.not_in((CampaignStatus.DONE, CampaignStatus.CANCELLED)),
                Campaign.finished_at.is_(None),
                Campaign.finished_at >= since,
            )
        )
        query = query.where(
            Delivery.campaign_id.in_(active),
            Delivery.status.in_(_MAILED),
            func.coalesce(Delivery.sent_at, Delivery.updated_at) >= since,
        )
    if campaign_ids is not None:
        query = query.where(Delivery.campaign_id.in_(list(campaign_ids)))
    return query


def _add(rates: Rates, status: str, n: int, bounced: int, complained: int) -> Rates:
    if DeliveryStatus(status) not in _MAILED:
        return rates
    return Rates(rates.messages + n, rates.bounced + bounced, rates.complained + complained)


def recent_rates(
    session: Session, *, days: int = RECENT_DAYS, now: datetime | None = None
) -> Rates:
    """Rates over the messages sent in the last `days` days (by when each was sent)."""
    since = (now or clock.now()) - timedelta(days=days)
    total = NO_MESSAGES
    for _campaign_id, status, n, bounced, complained in session.execute(_grouped(since, None)):
        total = _add(total, status, n, bounced, complained)
    return total


def campaign_rates(session: Session, campaign_ids: Sequence[int]) -> dict[int, Rates]:
    """Rates per campaign (every id given is in the answer, NO_MESSAGES when none was sent)."""
    return {f.campaign_id: f.rates for f in _per_campaign(session, campaign_ids)}


@dataclass(frozen=True)
class _Row:
    campaign_id: int
    counts: dict[str, int]
    rates: Rates


def _per_campaign(session: Session, campaign_ids: Sequence[int]) -> list[_Row]:
    counts = {i: {s.value: 0 for s in DeliveryStatus} for i in campaign_ids}
    found = dict.fromkeys(campaign_ids, NO_MESSAGES)
    if campaign_ids:
        rows = session.execute(_grouped(None, campaign_ids))
        for campaign_id, status, n, bounced, complained in rows:
            counts[campaign_id][DeliveryStatus(status).value] = n
            found[campaign_id] = _add(found[campaign_id], status, n, bounced, complained)
    return [_Row(i, counts[i], found[i]) for i in campaign_ids]


@dataclass(frozen=True)
class CampaignFigures:
    campaign: Campaign
    counts: dict[str, int]  # ledger rows by status, every status present
    rates: Rates = NO_MESSAGES

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    @property
    def waiting(self) -> int:
        """Rows not yet final: pending, claimed, deferred or in doubt."""
        done = ("sent", "failed", "skipped", "cancelled")
        return sum(n for status, n in self.counts.items() if status not in done)


def campaign_figures(session: Session, campaigns: Sequence[Campaign]) -> list[CampaignFigures]:
    """Counts by status and rates for each of `campaigns`, in one grouped query."""
    rows = _per_campaign(session, [c.id for c in campaigns])
    return [CampaignFigures(c, r.counts, r.rates) for c, r in zip(campaigns, rows, strict=True)]


def scheduled_campaigns(session: Session, limit: int = 10) -> list[Campaign]:
    """Campaigns waiting for their time, the soonest first."""
    return list(
        session.scalars(
            select(Campaign)
            .options(selectinload(Campaign.release))
            .where(Campaign.status == CampaignStatus.SCHEDULED)
            .order_by(Campaign.not_before.is_(None), Campaign.not_before, Campaign.id)
            .limit(limit)
        )
    )


def recent_campaigns(session: Session, limit: int = 8) -> list[Campaign]:
    """The newest campaigns that are not merely scheduled, newest first."""
    return list(
        session.scalars(
            select(Campaign)
            .options(selectinload(Campaign.release))
            .where(Campaign.status != CampaignStatus.SCHEDULED)
            .order_by(Campaign.id.desc())
            .limit(limit)
        )
    )
