"""Who is sending: the process name in every claim, the SQLite one-sender lock, orphan recovery.

On SQLite one sender runs at a time (a row in `lock`, refreshed while it runs); a holder that is
a dead process on this machine is recognised at once instead of after the lock's lifetime.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from sqlalchemy.orm import Session

from mailer import clock
from mailer.delivery import ledger
from mailer.errors import AlreadyRunningError
from mailer.store.models import Lock

SENDER_LOCK = "sender"
LOCK_TTL = timedelta(seconds=60)


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_dead(holder: str | None) -> bool:
    """True only when the holder was a process on this machine that no longer exists."""
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid = rest.split(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid))


def acquire_sender_lock(session: Session, holder: str) -> None:
    """SQLite allows one sender at a time; refuse a second one clearly."""
    now = clock.now()
    lock = session.get(Lock, SENDER_LOCK)
    if (
        lock is not None
        and lock.holder != holder
        and lock.expires_at > now
        and not _holder_dead(lock.holder)
    ):
        raise AlreadyRunningError(
            f"another sender is running ({lock.holder}); on SQLite only one sender may run at a "
            "time (use PostgreSQL and `mailer worker` to send from several processes)"
        )
    if lock is None:
        session.add(Lock(name=SENDER_LOCK, holder=holder, expires_at=now + LOCK_TTL))
    else:
        lock.holder = holder
        lock.expires_at = now + LOCK_TTL


def release_sender_lock(session: Session, holder: str) -> None:
    lock = session.get(Lock, SENDER_LOCK)
    if lock is not None and lock.holder == holder:
        session.delete(lock)


def recover_orphans(session: Session, campaign_id: int) -> int:
    """Rows held by a sender that is gone: the one each connection had proven (and maybe sent)
    becomes in_doubt, the others go back to pending (ledger.recover); returns how many became
    in_doubt."""
    return ledger.recover(session, campaign_id, clock.now(), _holder_dead)
