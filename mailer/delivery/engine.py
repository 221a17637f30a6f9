"""The delivery engine: claim rows from the ledger, send, record what the server said.

The guarantees (docs/architecture.md, "The delivery ledger"; the SQL is in delivery/ledger.py):
- A row is claimed (status `claimed`, a lease, committed) before its SMTP transaction starts.
  Replies are committed in order, every `ledger_group_size` messages and at least once a second,
  so a crash leaves at most that many rows per connection in doubt, never resent by themselves.
- The claimed rows of a sender that is gone (lease expired, or a dead process on this machine)
  are recovered: its lowest `ledger_group_size` become `in_doubt` (only the operator resends
  them), the rest `pending`.
- Suppressions and unsubscribes are checked when a row is claimed and again, for the rows about
  to be sent, with every commit of replies. A campaign is done only when every row is final.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.orm import Session, sessionmaker

from mailer import clock
from mailer.config import Settings
from mailer.contacts.addresses import smtp_form, verp_encode
from mailer.delivery import failpoints, ledger
from mailer.delivery.campaigns import get_campaign, is_complete, status_counts
from mailer.delivery.compiler import Compiler, campaign_renderer
from mailer.delivery.ledger import Claimed, holder_name
from mailer.delivery.lock import (
    LOCK_TTL,
    SENDER_LOCK,
    acquire_sender_lock,
    recover_orphans,
    release_sender_lock,
    this_process,
)
from mailer.delivery.message import Recipient
from mailer.delivery.throttle import SharedRateLimiter
from mailer.delivery.transport import Connection, Outcome, Reply, Transport
from mailer.errors import MailerError, SendError, TransportError
from mailer.store import audit
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Lock,
    MailingList,
    SuppressionReason,
)

# A connection commits its replies every `ledger_group_size` messages or every second, whichever
# comes first, and looks again at the campaign (paused? cancelled?) and at its claimed rows
# (unsubscribed? suppressed?) in the same transaction.
RECHECK_SECONDS = 1.0
MAX_CONNECTION_FAILURES = 5
MAX_BACKOFF = timedelta(hours=6)


def clean_name(name: str) -> str:
    """A display name safe for a header: no line breaks or control characters (Excel's
    Alt+Enter, a pasted signature) and no runs of spaces."""
    if name.isprintable() and "  " not in name and name == name.strip():
        return name
    return " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())


# --- progress -----------------------------------------------------------------------------


@dataclass
class Progress:
    """Counters of one run, shared by the connection threads."""

    total: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    in_doubt: int = 0
    cancelled: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + n)

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.deferred + self.skipped + self.in_doubt \
            + self.cancelled

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("sent", "failed", "deferred", "skipped",
                                               "in_doubt", "cancelled")}


# --- the engine -------------------------------------------------------------------------------


@dataclass
class RunResult:
    campaign_id: int
    progress: Progress
    complete: bool
    counts: dict[str, int]
    next_retry: datetime | None
    stopped_by: str = ""  # "", "paused", "cancelled", "limit", "interrupted"


class Deliverer:
    """Sends one campaign's due rows over `concurrency` connections."""

    def __init__(
        self,
        settings: Settings,
        factory: sessionmaker[Session],
        campaign_id: int,
        transport: Transport,
        *,
        concurrency: int | None = None,
        limit: int | None = None,
        rate_per_second: float | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        worker: str | None = None,
        single_sender_lock: bool | None = None,
        resume_paused: bool = True,
        rendered: dict[str, Any] | None = None,
    ) -> None:
        # `rendered`: variants already rendered for this campaign (its release and its list's
        # footer), e.g. by the release check of `mailer send`; others are rendered when needed.
        self.prerendered = rendered or {}
        self.settings = settings
        self.factory = factory
        self.campaign_id = campaign_id
        self.resume_paused = resume_paused
        self.transport = transport
        self.concurrency = concurrency or settings.concurrency
        self.limit = limit
        self.progress = Progress()
        self.on_progress = on_progress
        self.worker = worker or this_process()
        self.stop = threading.Event()
        self.done = threading.Event()
        self.stopped_by = ""
        self.remaining = limit
        self.count_lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.engine: Engine = factory.kw["bind"]
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.use_lock = self.sqlite if single_sender_lock is None else single_sender_lock
        self.write_lock: Any = threading.Lock() if self.sqlite else nullcontext()
        self.rate_per_second = rate_per_second
        self.limiter: SharedRateLimiter | None = None
        self.compiler: Compiler | None = None
        self.envelope_from = settings.bounce_address
        self.redirect = settings.test_recipient or None

    # The main thread: prepare, start the connection threads, wait, finish.
    def run(self) -> RunResult:
        with self.factory() as s, s.begin():
            campaign = get_campaign(s, self.campaign_id)
            self._check_startable(campaign)
            if campaign.status == CampaignStatus.PAUSED and not self.resume_paused:
                # Only the operator (send, campaigns resume) restarts a paused campaign.
                raise SendError(f"campaign {campaign.id} is paused")
            if self.use_lock:
                acquire_sender_lock(s, self.worker)
            recover_orphans(s, campaign.id)
            if campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED,
                                   CampaignStatus.PAUSED):
                campaign.status = CampaignStatus.SENDING
            if campaign.started_at is None:
                campaign.started_at = clock.now()
            rate = self.rate_per_second or campaign.rate_per_second or \
                self.settings.rate_per_second
            lists = {ml.id: ml for ml in s.scalars(select(MailingList))}
            for ml in lists.values():
                s.expunge(ml)
            render = campaign_renderer(self.settings, campaign,
                                       {i: ml.name for i, ml in lists.items()})
            self.started_at = campaign.started_at
            self.not_after = campaign.not_after
            self.compiler = Compiler(self.settings, campaign.id, self.prerendered, lists,
                                     render=render)
            self.list_ids = list(campaign.audience.get("list_ids", []))
            audit.record(s, "campaign.send", campaign_id=campaign.id, actor=self.worker)
        self.limiter = SharedRateLimiter(self.factory, self.campaign_id, rate or 0.0,
                                         self.settings.rate_per_hour, lock=self.write_lock)
        # A batch should finish well inside its lease even at a slow rate (the rate is shared
        # by every connection); _send_batch also stops at half the lease whatever happens.
        self.batch = self.settings.batch_size
        lease = self.settings.lease_seconds
        if rate:
            self.batch = min(self.batch, int(rate * lease / 4 / self.concurrency))
        if self.settings.rate_per_hour:
            self.batch = min(self.batch,
                             int(self.settings.rate_per_hour * lease / 3600 / 4 / self.concurrency))
        self.batch = max(1, self.batch)
        threads = [threading.Thread(target=self._thread_main, name=f"mailer-send-{i}",
                                    daemon=True) for i in range(self.concurrency)]
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        for t in threads:
            t.start()
        heartbeat.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)
                    if self.on_progress:
                        self.on_progress(self.progress)
        except KeyboardInterrupt:
            self.stopped_by = "interrupted"
            self.stop.set()
            for t in threads:
                t.join()
        finally:
            self.done.set()
            heartbeat.join()
        if self.on_progress:
            self.on_progress(self.progress)
        return self._finish()

    def _check_startable(self, campaign: Campaign) -> None:
        if campaign.status == CampaignStatus.CANCELLED:
            raise SendError(f"campaign {campaign.id} was cancelled")
        now = clock.now()
        if campaign.not_before and now < campaign.not_before:
            raise SendError(
                f"campaign {campaign.id} may not start before "
                f"{campaign.not_before.isoformat()} (embargo or schedule)"
            )

    def _heartbeat(self) -> None:
        while not self.done.wait(LOCK_TTL.total_seconds() / 3):
            if not self.use_lock:
                continue
            try:
                with self._transaction() as conn:
                    conn.execute(update(Lock).where(Lock.name == SENDER_LOCK,
                                                    Lock.holder == self.worker)
                                 .values(expires_at=clock.now() + LOCK_TTL))
            except Exception:
                pass

    def _finish(self) -> RunResult:
        with self.factory() as s, s.begin():
            campaign = get_campaign(s, self.campaign_id)
            recover_orphans(s, campaign.id)
            complete = is_complete(s, campaign.id)
            if complete and campaign.status == CampaignStatus.SENDING:
                campaign.status = CampaignStatus.DONE
                campaign.finished_at = clock.now()
                audit.record(s, "campaign.done", campaign_id=campaign.id)
            if self.stopped_by == "paused" and campaign.status == CampaignStatus.SENDING:
                campaign.status = CampaignStatus.PAUSED
            next_retry = s.scalar(
                select(Delivery.next_attempt_at).where(
                    Delivery.campaign_id == campaign.id,
                    Delivery.status == DeliveryStatus.DEFERRED,
                ).order_by(Delivery.next_attempt_at).limit(1)
            )
            if self.use_lock:
                release_sender_lock(s, self.worker)
            counts = status_counts(s, campaign.id)
        if self.errors:
            err = self.errors[0]
            raise err
        return RunResult(self.campaign_id, self.progress, complete, counts, next_retry,
                         self.stopped_by)

    # --- connection threads ---
    @contextmanager
    def _transaction(self) -> Iterator[DbConnection]:
        """One write transaction on a Core connection (the ledger's statements need no ORM
        session). On SQLite the connection threads take turns on a Python lock: SQLite's own
        busy handler would make a waiting thread sleep for milliseconds at a time (then every
        message waits); PostgreSQL locks rows, so its threads go in parallel."""
        with self.write_lock, self.engine.begin() as conn:
            yield conn

    def _thread_main(self) -> None:
        me = holder_name(self.worker, threading.get_ident(), self.settings.ledger_group_size)
        conn = self.transport.open()
        try:
            while not self.stop.is_set():
                size = self._take_quota(self.batch)
                if size == 0:
                    self.stopped_by = self.stopped_by or "limit"
                    break
                rows = self._claim(me, size)
                if rows is None:  # paused or cancelled
                    self._give_back_quota(size)
                    break
                self._give_back_quota(size - len(rows))
                if not rows:
                    break
                self._send_batch(me, conn, rows)
        except BaseException as err:
            self.errors.append(err)
            self.stop.set()
        finally:
            conn.close()

    def _take_quota(self, want: int) -> int:
        with self.count_lock:
            if self.remaining is None:
                return want
            n = min(want, self.remaining)
            self.remaining -= n
            return n

    def _give_back_quota(self, n: int) -> None:
        with self.count_lock:
            if self.remaining is not None and n > 0:
                self.remaining += n

    def _claim(self, me: str, size: int) -> list[Claimed] | None:
        """Claim up to `size` due rows (committed before any is sent); None when paused."""
        with self._transaction() as s:
            status = s.scalar(select(Campaign.status).where(Campaign.id == self.campaign_id))
            if status != CampaignStatus.SENDING:
                self.stopped_by = CampaignStatus(status).value if status else "cancelled"
                return None
            now = clock.now()
            if self.not_after is not None and now > self.not_after:
                self._expire(s, now)
                return []
            rows, skipped = ledger.claim(
                s, self.campaign_id, self.list_ids, me, size, now,
                timedelta(seconds=self.settings.lease_seconds), skip_locked=not self.sqlite)
        self.progress.add("skipped", skipped)
        failpoints.hit("after_claim")
        return rows

    def _expire(self, s: DbConnection, now: datetime) -> None:
        result = s.execute(
            update(Delivery).where(
                Delivery.campaign_id == self.campaign_id,
                Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
            ).values(status=DeliveryStatus.CANCELLED, updated_at=now,
                     smtp_reply="cancelled: the release expired before this message was sent")
        )
        self.progress.add("cancelled", int(result.rowcount or 0))

    def _send_batch(self, me: str, conn: Connection, rows: list[Claimed]) -> None:
        """Send a claimed batch in id order (recovery relies on it), committing the replies at
        least every `ledger_group_size` messages and every second; each commit also looks at
        the campaign again (paused? cancelled?) and at the rows still to send (unsubscribed?).
        Stop early, giving the rest back, on pause, cancel, stop, or when half the lease is
        gone, so no message is ever started after its lease could expire."""
        assert self.limiter is not None
        group = self.settings.ledger_group_size
        pending: list[tuple[Claimed, Reply]] = []
        unsent = deque(rows)
        deadline = time.monotonic() + self.settings.lease_seconds / 2
        next_check = time.monotonic() + RECHECK_SECONDS
        failures = 0
        try:
            while unsent:
                if self.stop.is_set() or (len(unsent) < len(rows)
                                          and time.monotonic() >= deadline):
                    break
                if pending and (len(pending) >= group or time.monotonic() >= next_check):
                    next_check = time.monotonic() + RECHECK_SECONDS
                    go_on = self._flush(me, pending, unsent)
                    pending = []
                    if not go_on or not unsent:
                        break
                d = unsent[0]
                # Waiting for a rate token counts against the lease too (an hourly quota can
                # keep a sender waiting for long): no token before the deadline, give back.
                if not self.limiter.wait(self.stop, until=deadline):
                    break
                reply = self._send_one(conn, d)
                unsent.popleft()
                failpoints.hit("after_reply")
                pending.append((d, reply))
                # A server that keeps failing before accepting anything is down or refusing
                # us: stop instead of deferring the whole audience one row at a time.
                lost = reply.code == 0 and reply.outcome == Outcome.DEFERRED
                failures = failures + 1 if lost else 0
                if failures >= MAX_CONNECTION_FAILURES:
                    raise TransportError(
                        f"the mail server failed {failures} times in a row ({reply.text}); "
                        "stopped. Resume the campaign when it is reachable again."
                    )
        finally:
            if pending:
                self._flush(me, pending, deque())
            if unsent:
                self._release(me, [d.id for d in unsent])

    def _send_one(self, conn: Connection, d: Claimed) -> Reply:
        assert self.compiler is not None
        # Outside the try: a variant that cannot be rendered or compiled (a broken layout, no
        # secret_key) stops the run with its error, rather than failing every reader of it.
        compiled = self.compiler.get(d.language, d.list_id)
        try:
            recipient = Recipient(d.contact_id or 0, d.email, clean_name(d.name), d.list_id,
                                  d.message_id)
            message = compiled.build(recipient, deliver_to=self.redirect)
            address, utf8 = smtp_form(self.redirect or d.email)
        except (MailerError, ValueError, KeyError, UnicodeError) as err:
            # One malformed row must not stop the campaign (or a worker) for everyone else.
            return Reply(0, f"could not build the message: {err}", Outcome.FAILED)
        env_from = (verp_encode(self.envelope_from, address) if self.settings.verp
                    else self.envelope_from)
        return conn.send(env_from, address, message, smtputf8=utf8)

    def _flush(self, me: str, pending: list[tuple[Claimed, Reply]],
               unsent: deque[Claimed]) -> bool:
        """Commit a group of replies and, in the same transaction, look at the campaign and the
        rows still to send. Returns False when the sender must stop (paused, cancelled)."""
        now = clock.now()
        results = [self._result(d, reply, now) for d, reply in pending]
        with self._transaction() as s:
            ledger.record(s, me, results, now)
            bad = [(d, reply) for d, reply in pending if reply.outcome == Outcome.BAD_ADDRESS]
            if bad:
                from mailer.contacts.suppressions import suppress

                # A session inside this transaction: suppress() works on ORM objects.
                with Session(bind=s) as orm:
                    for d, reply in bad:
                        suppress(orm, d.email, SuppressionReason.HARD_BOUNCE,
                                 source=f"campaign {self.campaign_id}: {reply.code} "
                                        f"{reply.text[:150]}", actor=me)
                    orm.flush()
            # The rows sent before the next commit (a group) are the ones to look at: each
            # later row is looked at by the commit just before its turn. A row found opted out
            # makes room for the next one, which is looked at too.
            group = self.settings.ledger_group_size
            rows, start, kept = list(unsent), 0, 0
            gone: set[int] = set()
            while True:
                upcoming = rows[start:start + group - kept]
                status, out = ledger.still_wanted(s, self.campaign_id, self.list_ids, me,
                                                  upcoming, now)
                gone |= out
                start += len(upcoming)
                kept += len(upcoming) - len(out)
                if not out or status != CampaignStatus.SENDING or start >= len(rows):
                    break
        failpoints.hit("after_commit")
        for r in results:
            self.progress.add(r.status.value)
        if gone:
            self.progress.add("skipped", len(gone))
            still = [d for d in unsent if d.id not in gone]
            unsent.clear()
            unsent.extend(still)
        if status != CampaignStatus.SENDING:
            self.stopped_by = CampaignStatus(status).value if status else "cancelled"
            return False
        return True

    def _result(self, d: Claimed, reply: Reply, now: datetime) -> ledger.Result:
        """The ledger row's new state for one reply."""
        code = reply.code or None
        outcome = reply.outcome
        if outcome == Outcome.SENT:
            return ledger.Result(d.id, DeliveryStatus.SENT, code, reply.text)
        if outcome == Outcome.DEFERRED:
            if now - self.started_at >= timedelta(seconds=self.settings.give_up_after):
                return ledger.Result(d.id, DeliveryStatus.FAILED, code,
                                     f"gave up after {self.settings.give_up_after}s; "
                                     f"last reply: {reply.text}")
            delay = timedelta(seconds=self.settings.retry_base_seconds
                              * 2 ** max(0, d.attempts - 1))
            return ledger.Result(d.id, DeliveryStatus.DEFERRED, code, reply.text,
                                 now + min(delay, MAX_BACKOFF))
        if outcome == Outcome.IN_DOUBT:
            return ledger.Result(d.id, DeliveryStatus.IN_DOUBT, code, reply.text)
        return ledger.Result(d.id, DeliveryStatus.FAILED, code, reply.text)

    def _release(self, me: str, ids: list[int]) -> None:
        """Give unsent claimed rows back (pause, stop, a transport error): nothing was sent.

        In a cancelled campaign they become cancelled, never pending again."""
        now = clock.now()
        with self._transaction() as s:
            status = s.scalar(select(Campaign.status).where(Campaign.id == self.campaign_id))
            ledger.give_back(s, me, ids, now, cancelled=status == CampaignStatus.CANCELLED)


def deliver(settings: Settings, campaign_id: int, transport: Transport, **kwargs: Any) -> RunResult:
    """Send what is due in a campaign; see Deliverer."""
    from mailer.store.db import session_factory

    try:
        transport.check()
    except MailerError:
        raise
    except OSError as err:  # pragma: no cover - check() wraps these
        raise TransportError(str(err)) from None
    return Deliverer(settings, session_factory(settings), campaign_id, transport, **kwargs).run()
