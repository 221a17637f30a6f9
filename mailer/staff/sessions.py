"""Signed-in browsers, kept server-side so that they can be ended: by idle time, by age, by the
user ("sign out everywhere"), by an admin (disable, role change) or by a password reset.

The cookie holds 32 random bytes; the row's key is their SHA-256. A session starts at the
"password" stage when a second factor is owed, at "setup" when the user's role requires a
second factor they have not set up, and at "full" otherwise; `upgrade` moves it on and gives
it a new token, so a token seen before sign-in finished is worth nothing after (no fixation).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.store.models import StaffSession, StaffUser

PASSWORD = "password"  # the password was right; a TOTP or recovery code is owed
SETUP = "setup"  # signed in only to set up two-factor login, which the role requires
FULL = "full"


@dataclass(frozen=True)
class Current:
    """A valid session and its user, as a request sees them."""

    session: StaffSession
    user: StaffUser

    @property
    def stage(self) -> str:
        return self.session.stage


def _key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def start(
    session: Session, user: StaffUser, stage: str, *, ip: str = "", user_agent: str = ""
) -> str:
    """A new session for `user`; returns the cookie's token."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session.add(
        StaffSession(
            id=_key(token),
            user_id=user.id,
            stage=stage,
            created_at=now,
            last_seen_at=now,
            ip=ip[:64],
            user_agent=user_agent[:300],
        )
    )
    session.flush()
    return token


def load(settings: Settings, session: Session, token: str | None) -> Current | None:
    """The session for a cookie's token when it is valid now; ends it when it timed out.

    Valid: it exists, its user is enabled, it was used within `console_idle_minutes` and began
    within `console_session_hours`. A valid session's last-seen time moves to now.
    """
    if not token or len(token) > 100:
        return None
    row = session.get(StaffSession, _key(token))
    if row is None:
        return None
    now = clock.now()
    idle = timedelta(minutes=settings.console_idle_minutes)
    age = timedelta(hours=settings.console_session_hours)
    # A half-finished sign-in (second factor owed) gets a few minutes, not the idle time.
    if row.stage == PASSWORD:
        idle = min(idle, timedelta(minutes=5))
    user = session.get(StaffUser, row.user_id)
    if user is None or user.disabled or now - row.last_seen_at > idle or now - row.created_at > age:
        session.delete(row)
        session.flush()
        return None
    # Written at most once a minute: a page and its htmx requests need not each write a row.
    if now - row.last_seen_at > timedelta(seconds=60):
        row.last_seen_at = now
    return Current(row, user)


def upgrade(session: Session, current: Current, stage: str) -> str:
    """Move the session to `stage` under a new token (the old one stops working)."""
    user = current.user
    ip, agent = current.session.ip, current.session.user_agent
    session.delete(current.session)
    session.flush()
    return start(session, user, stage, ip=ip, user_agent=agent)


def end(session: Session, token: str | None) -> None:
    """Sign this browser out."""
    if token and len(token) <= 100:
        session.execute(delete(StaffSession).where(StaffSession.id == _key(token)))


def end_all(session: Session, user: StaffUser, *, keep: str | None = None) -> int:
    """Sign the user out everywhere (but the session whose token is `keep`); returns how many."""
    query = delete(StaffSession).where(StaffSession.user_id == user.id)
    if keep:
        query = query.where(StaffSession.id != _key(keep))
    result = session.execute(query)
    return int(getattr(result, "rowcount", 0) or 0)


def purge(settings: Settings, session: Session) -> int:
    """Delete sessions past the absolute limit (the idle ones are deleted when next seen)."""
    cutoff = clock.now() - timedelta(hours=settings.console_session_hours)
    result = session.execute(delete(StaffSession).where(StaffSession.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
