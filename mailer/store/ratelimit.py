"""Fixed-window rate limits kept in the database: the only module that writes `rate_limit`.

Two users: the web forms and the console's sign-in (`hit`, `clear`, `purge`: keys under "web:"),
and the sender's shared send rate (`take`, `untake`, `purge_send`: keys under "send:", used by
delivery/throttle.py).

Web forms. Limits hold across `mailer serve` processes.

A window starts at the first hit on a key and lasts `seconds`; the hit that finds the window over
starts a new one. Counting is one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING` statement:
atomic on PostgreSQL (the row is locked until the request commits, so two processes counting the
same key take turns) and on SQLite (every write transaction there holds the database lock).
With a limit of 1 in 24 hours this means "at most one in any 24 hours", not merely "one per day".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.store.models import RateLimit

PREFIX = "web:"
SEND_PREFIX = "send:"
# Rows older than this belong to windows that are long over (the longest window is a day).
PURGE_AFTER = timedelta(days=2)


@dataclass(frozen=True)
class Limit:
    """At most `count` hits per `seconds` for one key."""

    count: int
    seconds: int


@dataclass(frozen=True)
class Hit:
    count: int
    allowed: bool
    retry_after: int  # seconds until the window ends (0 when allowed)


def hit(session: Session, key: str, limit: Limit) -> Hit:
    """Count one hit on `key` and say whether it is within `limit`."""
    now = clock.now()
    cutoff = now - timedelta(seconds=limit.seconds)
    table = cast(Table, RateLimit.__table__)
    ts_type = table.c.window_start.type
    now_param = bindparam("rl_now", now, type_=ts_type)
    cutoff_param = bindparam("rl_cutoff", cutoff, type_=ts_type)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    current = table.c.window_start > cutoff_param
    # Both expressions read the row as it was before this statement (SQL semantics of SET).
    stmt = (
        insert(table)
        .values(key=PREFIX + key, window_start=now, count=1)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((current, table.c.count + 1), else_=1),
                "window_start": case((current, table.c.window_start), else_=now_param),
            },
        )
        .returning(table.c.count, table.c.window_start)
    )
    row = session.execute(stmt).one()
    count = int(row[0])
    start: datetime = row[1]
    if start.tzinfo is None:  # SQLite hands back the stored naive UTC value
        start = start.replace(tzinfo=now.tzinfo)
    allowed = count <= limit.count
    retry = 0 if allowed else max(1, int((start - cutoff).total_seconds()))
    return Hit(count, allowed, retry)


def clear(session: Session, key: str) -> None:
    """Forget `key`'s counter: the console's sign-in counts every try on an account before it
    checks the password (atomic, so parallel guesses cannot slip past the limit) and forgets
    them once the right password is given; an admin unlocking an account forgets them too."""
    session.execute(delete(RateLimit).where(RateLimit.key == PREFIX + key))


def purge(session: Session) -> int:
    """Delete this module's counters whose windows ended long ago; returns how many."""
    cutoff = clock.now() - PURGE_AFTER
    result = session.execute(
        delete(RateLimit).where(RateLimit.key.like(PREFIX + "%"), RateLimit.window_start < cutoff)
    )
    return int(getattr(result, "rowcount", 0) or 0)


# --- the sender's windows ---------------------------------------------------------------------
# Aligned fixed windows (every sender on the database agrees where a window starts) so that a
# campaign's rate and the provider's hourly quota hold for all senders together.


def _send_key(key: str, window: int, now: datetime) -> tuple[str, int]:
    epoch = int(now.timestamp())
    start = epoch - epoch % window
    return f"{SEND_PREFIX}{key}:{window}:{start}", start


def take(session: Session, key: str, window: int, allowance: int, now: datetime) -> float:
    """Take one token from the `window`-second window holding `now`; 0 when granted, else the
    seconds to wait. `key` is e.g. "campaign:1" (stored under "send:")."""
    row_key, start = _send_key(key, window, now)
    granted = session.execute(
        update(RateLimit)
        .where(RateLimit.key == row_key, RateLimit.count < allowance)
        .values(count=RateLimit.count + 1)
    )
    # execute() of an UPDATE/DELETE returns a CursorResult, typed as Result (no rowcount).
    if granted.rowcount:  # type: ignore[attr-defined]
        return 0.0
    exists = session.scalar(select(RateLimit.count).where(RateLimit.key == row_key))
    if exists is None:
        try:
            with session.begin_nested():
                session.add(
                    RateLimit(
                        key=row_key, count=1, window_start=datetime.fromtimestamp(start, now.tzinfo)
                    )
                )
            return 0.0
        except IntegrityError:  # another sender opened the window first: try again
            return 0.001
    return max(0.001, start + window - now.timestamp())


def untake(session: Session, key: str, window: int, now: datetime) -> None:
    """Give back a token taken by `take` in the window holding `now` (it was not used)."""
    row_key, _ = _send_key(key, window, now)
    session.execute(
        update(RateLimit)
        .where(RateLimit.key == row_key, RateLimit.count > 0)
        .values(count=RateLimit.count - 1)
    )


def purge_send(session: Session, now: datetime) -> None:
    """Delete the sender's windows that ended long ago (the longest is an hour)."""
    session.execute(
        delete(RateLimit).where(
            RateLimit.key.like(SEND_PREFIX + "%"), RateLimit.window_start < now - timedelta(hours=2)
        )
    )
