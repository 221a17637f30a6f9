"""The notice sender: turns queued form requests into pending subscriptions and emails.

Run by a background thread of `mailer serve` (NoticeSender) and by `mailer worker`; any number
of them may run on one database. Each notice goes through two short transactions around the
SMTP conversation: the first claims it (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite's write
lock elsewhere), applies the request (optin.prepare) and leases it; the second deletes it once
the server accepted the email, or schedules a retry. A sender that dies mid-way leaves a lease
that expires, and the notice is sent again (at least once, never lost).
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from mailer import clock
from mailer.config import Settings
from mailer.delivery import notices
from mailer.delivery.transport import open_transport
from mailer.engagement import retention
from mailer.errors import MailerError
from mailer.store import audit
from mailer.store.db import session_factory
from mailer.store.models import Notice
from mailer.subscribers import optin

log = logging.getLogger("mailer.notices")

LEASE = timedelta(minutes=5)
RETRY_BASE = timedelta(minutes=1)
MAX_ATTEMPTS = 6  # about an hour of retries (1, 2, 4, 8, 16, 32 minutes)
# A notice that failed for good is kept this long for the operator, then forgotten (it holds an
# address and what the form said).
KEEP_FAILED = timedelta(days=7)
QUEUED, READY, SENDING, FAILED = "queued", "ready", "sending", "failed"


def _claim(session: Session) -> Notice | None:
    stmt = (
        select(Notice)
        .where(Notice.state.in_((QUEUED, READY, SENDING)), Notice.due_at <= clock.now())
        .order_by(Notice.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    return session.scalar(stmt)


def send_one(settings: Settings, factory: sessionmaker[Session]) -> bool:
    """Handle the next due notice; False when none is due."""
    with factory() as s:
        notice = _claim(s)
        if notice is None:
            return False
        notice_id = notice.id
        if notice.state == QUEUED:
            outcome = optin.prepare(s, settings, notice)
            if not outcome.ready:
                log.info("notice %s dropped: %s", notice_id, outcome.reason)
                s.delete(notice)
                s.commit()
                return True
        email = optin.ready_confirmation(s, settings, notice)
        if email is None:  # the contact was erased or the lists deleted since
            s.delete(notice)
            s.commit()
            return True
        notice.state = SENDING
        notice.attempts += 1
        notice.due_at = clock.now() + LEASE
        s.commit()
    error, permanent = "", False
    try:
        conn = open_transport(settings).open()
        try:
            notices.send(settings, conn, email)
        finally:
            conn.close()
    except notices.NoticeRefused as err:
        error, permanent = str(err), err.permanent
    except MailerError as err:
        error = str(err)
    with factory() as s:
        notice = s.get(Notice, notice_id)
        if notice is None:
            return True
        if not error:
            audit.record(s, "notice.sent", contact_id=notice.contact_id, notice=notice.kind)
            s.delete(notice)
        elif permanent or notice.attempts >= MAX_ATTEMPTS:
            log.error("notice %s failed for good: %s", notice_id, error)
            notice.state, notice.last_error = FAILED, error[:1000]
        else:
            log.warning("notice %s will be retried: %s", notice_id, error)
            notice.state, notice.last_error = READY, error[:1000]
            notice.due_at = clock.now() + RETRY_BASE * 2 ** (notice.attempts - 1)
        s.commit()
    return True


def send_due(settings: Settings, *, limit: int = 100) -> int:
    """Handle up to `limit` due notices now; returns how many."""
    factory = session_factory(settings)
    with factory() as s:
        s.execute(
            delete(Notice).where(
                Notice.state == FAILED, Notice.created_at < clock.now() - KEEP_FAILED
            )
        )
        s.commit()
        # Who clicked, forgotten after engagement_retention_days (at most hourly on the whole
        # database): every process that sends notices also keeps that promise.
        try:
            retention.purge_when_due(s, settings)
            s.commit()
        except MailerError as err:
            s.rollback()
            log.error("engagement purge failed: %s", err)
    done = 0
    while done < limit and send_one(settings, factory):
        done += 1
    return done


class NoticeSender(threading.Thread):
    """A daemon thread that sends due notices every `poll` seconds until `stop` is set."""

    def __init__(self, settings: Settings, *, poll: float = 2.0) -> None:
        super().__init__(name="mailer-notices", daemon=True)
        self.settings = settings
        self.poll = poll
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                send_due(self.settings)
            except Exception:  # the thread must outlive a database hiccup; the log says why
                log.exception("sending notices failed; trying again shortly")
            self.stop.wait(self.poll)
