"""The worker inside `mailer serve`, and the heartbeat every worker records.

`mailer serve` runs the delivery worker (mailer.delivery.worker, what `mailer worker` runs) in a
thread of its own by default (setting `serve_worker`), so a SQLite install that sends from the
console needs no second process. On PostgreSQL separate `mailer worker` processes may do it
instead (`serve_worker = false`); each records a heartbeat, so the console can say when one was
last seen.

The heartbeat is a row of the `lock` table per worker process, named `worker-seen:HOST:PID`,
whose `expires_at` holds the moment it was last seen (the table is the one place every process
shares; nothing takes these rows as locks). Rows not seen for a day are removed by the next beat.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.errors import MailerError
from mailer.store.models import Lock

log = logging.getLogger("mailer.worker")

PREFIX = "worker-seen:"
FORGET_AFTER = timedelta(days=1)
# A failed transport check (SMTP down when the server starts) is tried again this often.
RETRY_SECONDS = 60.0


def beat(session: Session, worker: str) -> None:
    """Record that the worker `worker` (host:pid) is alive now (the caller commits)."""
    now = clock.now()
    name = (PREFIX + worker)[:100]
    row = session.get(Lock, name)
    if row is None:
        session.add(Lock(name=name, holder=worker[:200], expires_at=now))
    else:
        row.expires_at = now
    session.execute(
        delete(Lock).where(Lock.name.startswith(PREFIX), Lock.expires_at < now - FORGET_AFTER)
    )


def last_seen(session: Session) -> datetime | None:
    """When any worker process last recorded a heartbeat (None: never, or not for a day)."""
    value: datetime | None = session.scalar(
        select(func.max(Lock.expires_at)).where(Lock.name.startswith(PREFIX))
    )
    return value


class EmbeddedWorker(threading.Thread):
    """`mailer worker` as a thread of `mailer serve`: every due campaign, until stopped.

    The transport is checked the way `mailer worker` checks it (login, TLS, no placeholder
    settings); when that fails the server keeps serving its pages and the check is tried again
    every minute, with the reason in the log.
    """

    def __init__(self, settings: Settings, *, poll_seconds: float = 5.0) -> None:
        super().__init__(name="mailer-worker", daemon=True)
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.stop = threading.Event()
        self.problem = ""

    def run(self) -> None:
        # Lazy: the engine and the transport load on this thread, after the server is up.
        from mailer.delivery.send import checked_transport  # noqa: PLC0415
        from mailer.delivery.worker import Worker  # noqa: PLC0415

        while not self.stop.is_set():
            try:
                transport = checked_transport(self.settings)
            except MailerError as err:
                self.problem = str(err)
                log.error("the worker inside this server cannot send yet: %s", err)
                self.stop.wait(RETRY_SECONDS)
                continue
            self.problem = ""
            worker = Worker(self.settings, transport, poll_seconds=self.poll_seconds)
            worker.stop = self.stop
            worker.on_result = lambda r: log.info(
                "campaign %s: sent %s, failed %s, deferred %s, in doubt %s%s",
                r.campaign_id,
                r.progress.sent,
                r.progress.failed,
                r.progress.deferred,
                r.progress.in_doubt,
                " (done)" if r.complete else "",
            )
            try:
                worker.run()
            except Exception:
                # A campaign that cannot be sent (a broken layout, the database gone for a
                # while) must not stop the server's pages: logged, and tried again later.
                log.exception("the worker inside this server stopped; starting again in a minute")
                self.stop.wait(RETRY_SECONDS)
