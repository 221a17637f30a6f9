"""The delivery engine: claim rows from the ledger, send, record what the server said.

The guarantees (DESIGN.md, "The delivery ledger"):
- A row is claimed (status `claimed`, a lease, committed) before its SMTP transaction starts, and
  its result is committed right after the reply (or after `ledger_group_size` replies: a crash
  then leaves at most that many rows per connection in doubt, never resent by themselves).
- A claimed row whose sender died becomes `in_doubt` when its lease expires (at once when the
  sender was a process on this machine that no longer exists); only the operator resends it.
- Suppressions and unsubscribes are checked when a row is claimed, so they stop every message
  not yet sent. A campaign is done only when every row is final.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer import audit, clock, failpoints
from mailer.addresses import smtp_form, verp_encode
from mailer.campaigns import get_campaign, is_complete, status_counts
from mailer.config import Settings
from mailer.errors import AlreadyRunningError, MailerError, SendError, TransportError
from mailer.message import CompiledVariant, Recipient, dkim_signer, sender_for
from mailer.models import (
    Campaign,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    Lock,
    MailingList,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from mailer.throttle import SharedRateLimiter
from mailer.transport import Connection, Outcome, Reply, Transport

SENDER_LOCK = "sender"
# Claimed rows are looked at again (campaign paused or cancelled? address suppressed or
# unsubscribed?) every few messages or every second, whichever comes first.
RECHECK_EVERY = 4
RECHECK_SECONDS = 1.0
MAX_CONNECTION_FAILURES = 5
LOCK_TTL = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=6)


def clean_name(name: str) -> str:
    """A display name safe for a header: no line breaks or control characters (Excel's
    Alt+Enter, a pasted signature) and no runs of spaces."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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


# --- locks and recovery ---------------------------------------------------------------------


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
    if lock is not None and lock.holder != holder and lock.expires_at > now \
            and not _holder_dead(lock.holder):
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
    """Claimed rows whose sender is gone become in_doubt; returns how many."""
    now = clock.now()
    n = 0
    expired = session.execute(
        update(Delivery).where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.CLAIMED,
            Delivery.lease_expires_at < now,
        ).values(status=DeliveryStatus.IN_DOUBT, updated_at=now,
                 smtp_reply="in doubt: its sender stopped before recording the server's reply")
    )
    n += int(expired.rowcount or 0)  # type: ignore[attr-defined]
    holders = session.scalars(
        select(Delivery.claimed_by).where(Delivery.campaign_id == campaign_id,
                                          Delivery.status == DeliveryStatus.CLAIMED).distinct()
    ).all()
    dead = [h for h in holders if _holder_dead(h)]
    if dead:
        result = session.execute(
            update(Delivery).where(
                Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.CLAIMED,
                Delivery.claimed_by.in_(dead),
            ).values(status=DeliveryStatus.IN_DOUBT, updated_at=now,
                     smtp_reply="in doubt: its sender died before recording the server's reply")
        )
        n += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return n


# --- the engine -------------------------------------------------------------------------------


@dataclass
class RunResult:
    campaign_id: int
    progress: Progress
    complete: bool
    counts: dict[str, int]
    next_retry: datetime | None
    stopped_by: str = ""  # "", "paused", "cancelled", "limit", "interrupted"


class Compiler:
    """CompiledVariant per (language, list), built on first use; rendering once per language."""

    def __init__(self, settings: Settings, campaign_id: int,
                 rendered: dict[str, Any], lists: dict[int, MailingList],
                 subject_prefix: str = "") -> None:
        self.settings = settings
        self.campaign_id = campaign_id
        self.rendered = rendered
        self.lists = lists
        self.subject_prefix = subject_prefix
        self.cache: dict[tuple[str, int | None], CompiledVariant] = {}
        self.lock = threading.Lock()

    def get(self, language: str, list_id: int | None) -> CompiledVariant:
        key = (language, list_id)
        compiled = self.cache.get(key)
        if compiled is None:
            with self.lock:
                compiled = self.cache.get(key)
                if compiled is None:
                    ml = self.lists.get(list_id or 0)
                    from_address = (ml.from_address if ml and ml.from_address
                                    else self.settings.from_address)
                    sender = sender_for(self.settings, ml.name if ml else "",
                                        ml.slug if ml else "mail", from_address)
                    compiled = CompiledVariant(
                        self.rendered[language], sender, self.settings,
                        subject_prefix=self.subject_prefix, campaign_id=self.campaign_id,
                        signer=dkim_signer(self.settings, from_address),
                    )
                    self.cache[key] = compiled
        return compiled


def render_campaign(settings: Settings, campaign: Campaign,
                    list_names: dict[int, str] | None = None) -> dict[str, Any]:
    """Render the campaign's stored release (premailer once per language).

    A campaign to one list names it in the footer ("you are on the Press list"); a campaign to
    several lists uses the organisation's wording, so each language is still inlined once.
    """
    from mailer.releases import release_from_sources
    from mailer.render import render_release

    stored = campaign.release
    release = release_from_sources(
        stored.slug, {lang: v["source"] for lang, v in stored.variants.items()},
        stored.default_language,
    )
    list_ids = campaign.audience.get("list_ids", [])
    list_name = (list_names or {}).get(list_ids[0]) if len(list_ids) == 1 else None
    return render_release(release, settings, list_name=list_name)


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
    ) -> None:
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
        bind = factory.kw.get("bind")
        dialect = bind.dialect.name if bind is not None else "sqlite"
        self.sqlite = dialect == "sqlite"
        self.use_lock = self.sqlite if single_sender_lock is None else single_sender_lock
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
            rendered = render_campaign(self.settings, campaign,
                                       {i: ml.name for i, ml in lists.items()})
            self.started_at = campaign.started_at
            self.not_after = campaign.not_after
            self.compiler = Compiler(self.settings, campaign.id, rendered, lists)
            self.list_ids = list(campaign.audience.get("list_ids", []))
            audit.record(s, "campaign.send", campaign_id=campaign.id, actor=self.worker)
        self.limiter = SharedRateLimiter(self.factory, self.campaign_id, rate or 0.0,
                                         self.settings.rate_per_hour)
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
                with self.factory() as s, s.begin():
                    lock = s.get(Lock, SENDER_LOCK)
                    if lock is not None and lock.holder == self.worker:
                        lock.expires_at = clock.now() + LOCK_TTL
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
    def _thread_main(self) -> None:
        me = f"{self.worker}:{threading.get_ident()}"
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

    def _claim(self, me: str, size: int) -> list[Delivery] | None:
        """Claim up to `size` due rows (committed before any is sent); None when paused."""
        with self.factory() as s, s.begin():
            campaign = s.get(Campaign, self.campaign_id)
            assert campaign is not None
            if campaign.status != CampaignStatus.SENDING:
                self.stopped_by = campaign.status.value
                return None
            now = clock.now()
            if self.not_after is not None and now > self.not_after:
                self._expire(s, now)
                return []
            while True:
                found = self._due_rows(s, size, now)
                if not found:
                    return []
                rows = self._skip_opted_out(s, found, now)
                if rows:
                    break
                s.flush()  # every row of this batch was skipped: look at the next ones
            lease = now + timedelta(seconds=self.settings.lease_seconds)
            for d in rows:
                d.status = DeliveryStatus.CLAIMED
                d.claimed_by = me
                d.lease_expires_at = lease
                d.attempts += 1
                d.updated_at = now
            s.flush()
            for d in rows:
                s.expunge(d)
        failpoints.hit("after_claim")
        return rows

    def _due_rows(self, s: Session, size: int, now: datetime) -> list[Delivery]:
        """Pending rows first, then deferred ones that are due; two indexed queries, because
        one with OR would scan the whole campaign on every claim."""
        def query(stmt: Any) -> list[Delivery]:
            if not self.sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            return list(s.scalars(stmt))

        rows = query(select(Delivery).where(Delivery.campaign_id == self.campaign_id,
                                            Delivery.status == DeliveryStatus.PENDING)
                     .order_by(Delivery.id).limit(size))
        if len(rows) < size:
            rows += query(select(Delivery).where(Delivery.campaign_id == self.campaign_id,
                                                 Delivery.status == DeliveryStatus.DEFERRED,
                                                 Delivery.next_attempt_at <= now)
                          .order_by(Delivery.next_attempt_at).limit(size - len(rows)))
        return rows

    def _skip_opted_out(self, s: Session, rows: list[Delivery], now: datetime) -> list[Delivery]:
        emails = {d.email for d in rows}
        suppressed = set(s.scalars(select(Suppression.email).where(Suppression.email.in_(emails))))
        contact_ids = {d.contact_id for d in rows if d.contact_id is not None}
        still = set(s.scalars(
            select(Subscription.contact_id).where(
                Subscription.contact_id.in_(contact_ids),
                Subscription.list_id.in_(self.list_ids),
                Subscription.status == SubscriptionStatus.SUBSCRIBED,
            )
        ))
        keep = []
        for d in rows:
            reason = None
            if d.email in suppressed:
                reason = "skipped: the address was suppressed after the campaign was planned"
            elif d.contact_id is None or d.contact_id not in still:
                reason = "skipped: unsubscribed after the campaign was planned"
            if reason:
                d.status = DeliveryStatus.SKIPPED
                d.smtp_reply = reason
                d.updated_at = now
                self.progress.add("skipped")
            else:
                keep.append(d)
        return keep

    def _expire(self, s: Session, now: datetime) -> None:
        result = s.execute(
            update(Delivery).where(
                Delivery.campaign_id == self.campaign_id,
                Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
            ).values(status=DeliveryStatus.CANCELLED, updated_at=now,
                     smtp_reply="cancelled: the release expired before this message was sent")
        )
        self.progress.add("cancelled", int(result.rowcount or 0))  # type: ignore[attr-defined]

    def _send_batch(self, me: str, conn: Connection, rows: list[Delivery]) -> None:
        """Send a claimed batch; stop early (giving the rest back) on pause, cancel, stop, or
        when half the lease is gone, so no row is ever sent after its lease could expire."""
        assert self.compiler is not None and self.limiter is not None
        names = self._names(rows)
        pending: list[tuple[Delivery, Reply]] = []
        group = self.settings.ledger_group_size
        unsent = list(rows)
        # Half the lease: the message in flight when we stop still ends well inside it.
        deadline = time.monotonic() + self.settings.lease_seconds / 2
        next_check = time.monotonic() + RECHECK_SECONDS
        since_check = 0
        failures = 0
        try:
            while unsent:
                started = len(unsent) < len(rows)
                if self.stop.is_set() or (started and time.monotonic() >= deadline):
                    break
                if since_check >= RECHECK_EVERY or time.monotonic() >= next_check:
                    next_check = time.monotonic() + RECHECK_SECONDS
                    since_check = 0
                    if pending:
                        self._record(me, pending)
                        pending = []
                    if not self._recheck(me, unsent) or not unsent:
                        break
                d = unsent[0]
                # Waiting for a rate token counts against the lease too (an hourly quota can
                # keep a sender waiting for long): no token before the deadline, give back.
                if not self.limiter.wait(self.stop, until=deadline):
                    break
                reply = self._send_one(conn, d, names)
                since_check += 1
                unsent.pop(0)
                failpoints.hit("after_reply")
                pending.append((d, reply))
                if len(pending) >= group:
                    self._record(me, pending)
                    pending = []
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
                self._record(me, pending)
            if unsent:
                self._release(me, unsent)

    def _send_one(self, conn: Connection, d: Delivery, names: dict[int | None, str]) -> Reply:
        assert self.compiler is not None
        try:
            compiled = self.compiler.get(d.language, d.list_id)
            recipient = Recipient(d.contact_id or 0, d.email,
                                  clean_name(names.get(d.contact_id, "")), d.list_id,
                                  d.message_id)
            message = compiled.build(recipient, deliver_to=self.redirect)
            address, utf8 = smtp_form(self.redirect or d.email)
        except (MailerError, ValueError, KeyError, UnicodeError) as err:
            # One malformed row must not stop the campaign (or a worker) for everyone else.
            return Reply(0, f"could not build the message: {err}", Outcome.FAILED)
        env_from = (verp_encode(self.envelope_from, address) if self.settings.verp
                    else self.envelope_from)
        return conn.send(env_from, address, message, smtputf8=utf8)

    def _recheck(self, me: str, unsent: list[Delivery]) -> bool:
        """Once a second: is the campaign still sending, and are the claimed rows still wanted?

        Returns False to stop. Rows whose address was suppressed or unsubscribed since the claim
        are marked skipped and dropped from `unsent` (an unsubscribe stops every later message).
        """
        now = clock.now()
        with self.factory() as s, s.begin():
            status = s.scalar(select(Campaign.status).where(Campaign.id == self.campaign_id))
            if status != CampaignStatus.SENDING:
                self.stopped_by = CampaignStatus(status).value if status else "cancelled"
                return False
            # The rows are detached copies: _skip_opted_out only reads and marks them.
            keep = self._skip_opted_out(s, list(unsent), now)
            kept_ids = {d.id for d in keep}
            for d in unsent:
                if d.id not in kept_ids:
                    s.execute(update(Delivery).where(Delivery.id == d.id,
                                                     Delivery.claimed_by == me)
                              .values(status=DeliveryStatus.SKIPPED, smtp_reply=d.smtp_reply,
                                      claimed_by=None, lease_expires_at=None, updated_at=now))
        unsent[:] = [d for d in unsent if d.id in kept_ids]
        return True

    def _names(self, rows: list[Delivery]) -> dict[int | None, str]:
        ids = [d.contact_id for d in rows if d.contact_id is not None]
        with self.factory() as s:
            found = s.execute(select(Contact.id, Contact.name).where(Contact.id.in_(ids)))
            return {contact_id: name for contact_id, name in found}

    def _record(self, me: str, results: list[tuple[Delivery, Reply]]) -> None:
        now = clock.now()
        with self.factory() as s, s.begin():
            for d, reply in results:
                values: dict[str, Any] = {"smtp_code": reply.code or None,
                                          "smtp_reply": reply.text[:2000], "updated_at": now,
                                          "claimed_by": None, "lease_expires_at": None}
                outcome = reply.outcome
                if outcome == Outcome.SENT:
                    values.update(status=DeliveryStatus.SENT, sent_at=now)
                    self.progress.add("sent")
                elif outcome == Outcome.DEFERRED:
                    if now - self.started_at >= timedelta(seconds=self.settings.give_up_after):
                        values.update(status=DeliveryStatus.FAILED,
                                      smtp_reply=f"gave up after {self.settings.give_up_after}s; "
                                                 f"last reply: {reply.text}"[:2000])
                        self.progress.add("failed")
                    else:
                        delay = timedelta(seconds=self.settings.retry_base_seconds
                                          * 2 ** max(0, d.attempts - 1))
                        values.update(status=DeliveryStatus.DEFERRED,
                                      next_attempt_at=now + min(delay, MAX_BACKOFF))
                        self.progress.add("deferred")
                elif outcome == Outcome.IN_DOUBT:
                    values.update(status=DeliveryStatus.IN_DOUBT)
                    self.progress.add("in_doubt")
                else:
                    values.update(status=DeliveryStatus.FAILED)
                    self.progress.add("failed")
                    if outcome == Outcome.BAD_ADDRESS:
                        from mailer.suppressions import suppress

                        suppress(s, d.email, SuppressionReason.HARD_BOUNCE,
                                 source=f"campaign {self.campaign_id}: {reply.code} "
                                        f"{reply.text[:150]}", actor=me)
                s.execute(update(Delivery).where(Delivery.id == d.id,
                                                 Delivery.claimed_by == me).values(**values))
        failpoints.hit("after_commit")

    def _release(self, me: str, rows: list[Delivery]) -> None:
        """Give unsent claimed rows back (pause, stop, a transport error): nothing was sent.

        In a cancelled campaign they become cancelled, never pending again."""
        now = clock.now()
        with self.factory() as s, s.begin():
            status = s.scalar(select(Campaign.status).where(Campaign.id == self.campaign_id))
            if status == CampaignStatus.CANCELLED:
                s.execute(update(Delivery).where(
                    Delivery.id.in_([d.id for d in rows]), Delivery.claimed_by == me,
                    Delivery.status == DeliveryStatus.CLAIMED,
                ).values(status=DeliveryStatus.CANCELLED, claimed_by=None, lease_expires_at=None,
                         updated_at=now, smtp_reply="cancelled by the operator"))
                return
            for d in rows:
                s.execute(update(Delivery).where(
                    Delivery.id == d.id, Delivery.claimed_by == me,
                    Delivery.status == DeliveryStatus.CLAIMED,
                ).values(status=DeliveryStatus.PENDING, claimed_by=None, lease_expires_at=None,
                         updated_at=now, attempts=max(0, d.attempts - 1)))


def deliver(settings: Settings, campaign_id: int, transport: Transport, **kwargs: Any) -> RunResult:
    """Send what is due in a campaign; see Deliverer."""
    from mailer.db import session_factory

    try:
        transport.check()
    except MailerError:
        raise
    except OSError as err:  # pragma: no cover - check() wraps these
        raise TransportError(str(err)) from None
    return Deliverer(settings, session_factory(settings), campaign_id, transport, **kwargs).run()
