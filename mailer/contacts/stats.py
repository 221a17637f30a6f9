"""List sizes and growth: how many are subscribed to each list now and at each week before, who
joined and who left lately. One aggregated query over the subscriptions, whatever their number.

History is read from the subscriptions themselves (no snapshot table): a subscription counts
as subscribed from when it began (`confirmed_at`, else `created_at`, the rule `--where
subscribed_since` uses) until it was unsubscribed (`unsubscribed_at`). A person who left and
came back counts from their return, so sizes before that are an estimate on the low side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.store.models import MailingList, Subscription, SubscriptionStatus

WEEKS = 12  # the chart's reach: twelve weeks, thirteen points
RECENT_DAYS = 30  # "joined" and "left" count this many days back

_STATUSES = tuple(s.value for s in SubscriptionStatus)


@dataclass(frozen=True)
class ListGrowth:
    """One list: its counts by status now, who joined and left lately, its size over time."""

    slug: str
    name: str
    names: dict[str, str]
    public: bool
    counts: dict[str, int]  # pending, subscribed, unsubscribed (every status, 0 when none)
    joined: int  # subscriptions that began in the last `days` (and lasted past their start)
    left: int  # subscriptions that ended in the last `days`
    sizes: list[int]  # subscribed at each of Growth.points, oldest first; the last is now

    @property
    def subscribed(self) -> int:
        return self.counts[SubscriptionStatus.SUBSCRIBED.value]


@dataclass(frozen=True)
class Growth:
    points: list[datetime]  # the moments the sizes are for, oldest first; the last is now
    days: int
    lists: list[ListGrowth]  # by slug

    @property
    def total_sizes(self) -> list[int]:
        """Subscriptions across every list at each point (a person on two lists counts twice)."""
        return [sum(g.sizes[i] for g in self.lists) for i in range(len(self.points))]

    def one(self, slug: str) -> ListGrowth | None:
        return next((g for g in self.lists if g.slug == slug), None)


def _began() -> ColumnElement[Any]:
    return func.coalesce(Subscription.confirmed_at, Subscription.created_at)


def _subscribed_at(moment: datetime) -> ColumnElement[bool]:
    """Whether a subscription row was subscribed at `moment` (see the module's docstring)."""
    began = _began()
    return and_(
        began <= moment,
        or_(
            Subscription.status == SubscriptionStatus.SUBSCRIBED,
            and_(
                Subscription.status == SubscriptionStatus.UNSUBSCRIBED,
                Subscription.unsubscribed_at > moment,
            ),
        ),
    )


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    # COUNT of a CASE without ELSE counts the rows where it holds: 0, never NULL, on both engines.
    return func.count(case((condition, 1)))


def list_growth(
    session: Session, *, weeks: int = WEEKS, days: int = RECENT_DAYS, now: datetime | None = None
) -> Growth:
    """Every list's counts, recent joins and leaves, and weekly sizes, in one grouped query."""
    now = now or clock.now()
    points = [now - timedelta(weeks=weeks - k) for k in range(weeks + 1)]
    since = now - timedelta(days=days)
    began = _began()
    ended = Subscription.unsubscribed_at
    unsubscribed = Subscription.status == SubscriptionStatus.UNSUBSCRIBED
    columns: list[ColumnElement[Any]] = [
        *(_count(Subscription.status == status) for status in _STATUSES),
        _count(
            and_(
                began >= since,
                or_(
                    Subscription.status == SubscriptionStatus.SUBSCRIBED,
                    and_(unsubscribed, ended > began),
                ),
            )
        ),
        _count(and_(unsubscribed, ended >= since, ended > began)),
        *(_count(_subscribed_at(p)) for p in points),
    ]
    rows = {
        list_id: values
        for list_id, *values in session.execute(
            select(Subscription.list_id, *columns).group_by(Subscription.list_id)
        )
    }
    n = len(_STATUSES)
    out = []
    for ml in session.scalars(select(MailingList).order_by(MailingList.slug)):
        values = rows.get(ml.id) or [0] * (n + 2 + len(points))
        out.append(
            ListGrowth(
                slug=ml.slug,
                name=ml.name,
                names=dict(ml.names or {}),
                public=ml.public,
                counts=dict(zip(_STATUSES, values[:n], strict=True)),
                joined=values[n],
                left=values[n + 1],
                sizes=list(values[n + 2 :]),
            )
        )
    return Growth(points=points, days=days, lists=out)
