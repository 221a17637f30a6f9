"""One-time links for staff: invitations and password resets.

The link carries 32 random bytes; the table keeps only their SHA-256, so reading the database
(a backup, a leaked copy) gives no working link. A link works once and until it expires; taking
a new one of the same purpose voids the older ones.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailer import clock
from mailer.store.models import StaffToken, StaffUser

INVITE = "invite"
RESET = "reset"
LIFETIME = {INVITE: timedelta(days=7), RESET: timedelta(hours=1)}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def issue(session: Session, user: StaffUser, purpose: str) -> str:
    """A new link token for `user`; earlier unused tokens of the same purpose stop working."""
    now = clock.now()
    session.execute(
        update(StaffToken)
        .where(
            StaffToken.user_id == user.id,
            StaffToken.purpose == purpose,
            StaffToken.used_at.is_(None),
        )
        .values(used_at=now)
    )
    token = secrets.token_urlsafe(32)
    session.add(
        StaffToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=digest(token),
            created_at=now,
            expires_at=now + LIFETIME[purpose],
        )
    )
    session.flush()
    return token


def peek(session: Session, token: str, purpose: str) -> StaffUser | None:
    """The user a valid, unused, unexpired token of `purpose` is for (the token stays valid)."""
    row = _find(session, token, purpose)
    return None if row is None else session.get(StaffUser, row.user_id)


def redeem(session: Session, token: str, purpose: str) -> StaffUser | None:
    """Like `peek`, and marks the token used (in the caller's transaction)."""
    row = _find(session, token, purpose, lock=True)
    if row is None:
        return None
    row.used_at = clock.now()
    return session.get(StaffUser, row.user_id)


def _find(session: Session, token: str, purpose: str, *, lock: bool = False) -> StaffToken | None:
    if not token or len(token) > 100:
        return None
    query = select(StaffToken).where(
        StaffToken.token_hash == digest(token),
        StaffToken.purpose == purpose,
        StaffToken.used_at.is_(None),
        StaffToken.expires_at > clock.now(),
    )
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()
