"""Forgetting who clicked: the retention purge and a person's erasure.

Per-person engagement is kept `engagement_retention_days` (default 180; 0: until erased); after
that a click row keeps its link, campaign, language, time and machine verdict but loses its
person (contact_id set to NULL), so the per-link and per-language counts of old campaigns stay
right while nobody can be told apart in them any more. `contacts erase` does the same at once
for one person, and a reader who switches per-person tracking off on the preference page has
theirs forgotten too.

The purge runs by itself in `mailer serve` and `mailer worker` (their notice sender calls
`purge_when_due`, at most once an hour on the whole database: the moment is kept in the `lock`
table that every process shares), and on demand with `mailer engagement purge`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.store import audit
from mailer.store.models import Click, Lock

# The row of the `lock` table whose expires_at says when the next automatic purge is due.
PURGE_ROW = "engagement-purge"
PURGE_EVERY = timedelta(hours=1)


def cutoff(settings: Settings, now: datetime | None = None) -> datetime | None:
    """Per-person rows older than this are forgotten; None: kept until erased
    (`engagement_retention_days = 0`)."""
    days = settings.engagement_retention_days
    if days <= 0:
        return None
    return (now or clock.now()) - timedelta(days=days)


def purge(session: Session, settings: Settings, *, now: datetime | None = None) -> int:
    """Take the person off every click older than the retention; returns how many rows."""
    before = cutoff(settings, now)
    if before is None:
        return 0
    result = session.execute(
        update(Click)
        .where(Click.contact_id.is_not(None), Click.at < before)
        .values(contact_id=None)
        .execution_options(synchronize_session=False)
    )
    # execute() of an UPDATE returns a CursorResult, typed as Result (no rowcount).
    n = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if n:
        audit.record(session, "engagement.purge", rows=n, before=before.isoformat())
    return n


def forget_person(session: Session, contact_id: int) -> int:
    """Take this person off every click of theirs (erasure, or tracking switched off)."""
    result = session.execute(
        update(Click)
        .where(Click.contact_id == contact_id)
        .values(contact_id=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def purge_when_due(session: Session, settings: Settings) -> int | None:
    """The automatic purge: run it if an hour has passed since the last one on this database
    (any process's); None when not due. The caller commits."""
    now = clock.now()
    row = session.get(Lock, PURGE_ROW)
    if row is not None and row.expires_at > now:
        return None
    if row is None:
        try:
            with session.begin_nested():
                session.add(Lock(name=PURGE_ROW, holder="retention", expires_at=now + PURGE_EVERY))
        except IntegrityError:
            return None  # another process made the row this moment, and purges now
    else:
        row.expires_at = now + PURGE_EVERY
    return purge(session, settings, now=now)
