"""The delivery engine: claim rows from the ledger, prove each row, send, record the reply.

The guarantees (docs/ledger.md gives the argument; the SQL is in delivery/ledger.py):
- A batch is claimed (status `claimed`, a lease, a unique claim id, committed) before any of
  its messages is sent.
- Before a message's SMTP transaction, after any wait for the rate limit, the sender commits
  a proof that it still holds the row with half its lease left, that the address is still
  wanted and the campaign still sending (ledger.prove_group). It proves its next
  `ledger_group_size` rows in one statement (default 1: each message's proof immediately
  before it). No proof, no send; a failed proof gives the batch back. The replies so far are
  committed in the same transaction, so a crash leaves at most `ledger_group_size` messages
  per connection in doubt.
- Opt-outs: a proven group whose last look is older than RECHECK_SECONDS is looked at again
  (ledger.recheck) before its next message, so an unsubscribe, a suppression or a pause
  committed that long before a message's SMTP transaction stops it, whatever the group size.
- Rows of a sender that is gone (lease expired by the database's clock, or a dead process on
  this machine) are recovered: proven ones become `in_doubt` (only the operator resends them),
  the others `pending`. A stalled sender cannot send a row that was given back.
- A campaign is done only when every row is final.

Over 400 lines on purpose: the send loop and the transactions around it (claim, prove, recheck,
record, give back) are one argument, which docs/ledger.md follows step by step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.orm import Session, sessionmaker

from mailer import clock
from mailer.config import Settings
from mailer.contacts.addresses import smtp_form, verp_encode
from mailer.delivery import failpoints, guards, ledger, replies
from mailer.delivery.campaigns import get_campaign, is_complete, status_counts
from mailer.delivery.compiler import Compiler, campaign_renderer
from mailer.delivery.ledger import Claimed, Verdict, new_holder
from mailer.delivery.lock import (
    LOCK_TTL,
    SENDER_LOCK,
    acquire_sender_lock,
    recover_orphans,
    release_sender_lock,
    this_process,
)
from mailer.delivery.message import Recipient
from mailer.delivery.progress import Progress, RunResult, clean_name
from mailer.delivery.throttle import SharedRateLimiter
from mailer.delivery.transport import Connection, Outcome, Reply, Transport
from mailer.engagement.links import LinkRegistry
from mailer.errors import MailerError, SendError, TransportError
from mailer.newsroom import state as publication
from mailer.store import audit
from mailer.store.db import session_factory
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Lock,
    MailingList,
)

MAX_CONNECTION_FAILURES = 5
# The opt-out bound for proven groups: a proven row is sent without another look only while its
# last look (the proof, or a recheck) is younger than this. docs/ledger.md promises opt-outs
# within a second; the rest of the second is left for building and the SMTP transaction.
RECHECK_SECONDS = 0.5

log = logging.getLogger("mailer.delivery")


def _stamp() -> tuple[float, float]:
    """When a look at the ledger started: monotonic and wall clocks (see _age)."""
    return time.monotonic(), time.time()


def _age(since: tuple[float, float]) -> float:
    """Seconds since `since`, by whichever clock says longer: the monotonic clock cannot go
    back, and the wall clock keeps counting while a virtual machine was paused."""
    return max(time.monotonic() - since[0], time.time() - since[1])


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
        # Complaints over the line pause the campaign; a provider refusing the sender holds
        # its recipients (delivery/guards.py).
        self.guard = guards.SendGuard(settings, campaign_id)

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
            if campaign.status == CampaignStatus.PAUSED:
                guards.acknowledge(s, campaign)  # sending it again is a resume
            self.guard.load(s)
            if campaign.status in (
                CampaignStatus.DRAFT,
                CampaignStatus.SCHEDULED,
                CampaignStatus.PAUSED,
            ):
                campaign.status = CampaignStatus.SENDING
            if campaign.started_at is None:
                campaign.started_at = clock.now()
                # The newsroom's clock starts with the first send (and a newer version shows).
                publication.on_start(s, self.settings, campaign)
            rate = self.rate_per_second or campaign.rate_per_second or self.settings.rate_per_second
            lists = {ml.id: ml for ml in s.scalars(select(MailingList))}
            for ml in lists.values():
                s.expunge(ml)
            render = campaign_renderer(
                self.settings,
                campaign,
                {i: ml.local_name(self.settings.default_language) for i, ml in lists.items()},
            )
            self.started_at = campaign.started_at
            self.not_after = campaign.not_after
            self.compiler = Compiler(
                self.settings,
                campaign.id,
                self.prerendered,
                lists,
                render=render,
                links=LinkRegistry(self.settings, campaign.id, open_session=self._link_session),
            )
            self.list_ids = list(campaign.audience.get("list_ids", []))
            audit.record(s, "campaign.send", campaign_id=campaign.id, actor=self.worker)
        self.limiter = SharedRateLimiter(
            self.factory,
            self.campaign_id,
            rate or 0.0,
            self.settings.rate_per_hour,
            lock=self.write_lock,
        )
        # A batch should finish well inside its lease even at a slow rate (the rate is shared
        # by every connection); _send_batch also stops at half the lease whatever happens.
        self.batch = self.settings.batch_size
        lease = self.settings.lease_seconds
        if rate:
            self.batch = min(self.batch, int(rate * lease / 4 / self.concurrency))
        if self.settings.rate_per_hour:
            self.batch = min(
                self.batch, int(self.settings.rate_per_hour * lease / 3600 / 4 / self.concurrency)
            )
        self.batch = max(1, self.batch)
        threads = [
            threading.Thread(target=self._thread_main, name=f"mailer-send-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
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
                    conn.execute(
                        update(Lock)
                        .where(Lock.name == SENDER_LOCK, Lock.holder == self.worker)
                        .values(expires_at=clock.now() + LOCK_TTL)
                    )
            except Exception:
                pass

    def _keep_figures(self) -> None:
        """The finished campaign's report figures, read once now so that its first report reads
        no ledger row (mailer/delivery/reports.py). A convenience: never fails the send."""
        # Lazy: the report's module loads the bounce vocabulary (~50 ms), which a send that
        # ends otherwise never needs.
        from mailer.delivery import reports  # noqa: PLC0415

        try:
            with self.factory() as s, s.begin():
                reports.keep(s, self.campaign_id)
        except Exception as err:  # the figures are read again at the first report
            log.warning("campaign %s: report figures not kept: %s", self.campaign_id, err)

    def _finish(self) -> RunResult:
        with self.factory() as s, s.begin():
            campaign = get_campaign(s, self.campaign_id)
            recover_orphans(s, campaign.id)
            complete = is_complete(s, campaign.id)
            finished = complete and campaign.status == CampaignStatus.SENDING
            if finished:
                campaign.status = CampaignStatus.DONE
                campaign.finished_at = clock.now()
                audit.record(s, "campaign.done", campaign_id=campaign.id)
            if self.stopped_by == "paused" and campaign.status == CampaignStatus.SENDING:
                campaign.status = CampaignStatus.PAUSED
            next_retry = s.scalar(
                select(Delivery.next_attempt_at)
                .where(
                    Delivery.campaign_id == campaign.id,
                    Delivery.status == DeliveryStatus.DEFERRED,
                )
                .order_by(Delivery.next_attempt_at)
                .limit(1)
            )
            if self.use_lock:
                release_sender_lock(s, self.worker)
            self.guard.write(s, clock.now())
            counts = status_counts(s, campaign.id)
        if finished:
            self._keep_figures()
        if self.errors:
            err = self.errors[0]
            raise err
        return RunResult(
            self.campaign_id, self.progress, complete, counts, next_retry, self.stopped_by
        )

    # --- connection threads ---
    @contextmanager
    def _link_session(self) -> Iterator[Session]:
        """A session for the campaign's tracked links, taking its turn like _transaction."""
        with self.write_lock, self.factory.begin() as s:
            yield s

    @contextmanager
    def _transaction(self) -> Iterator[DbConnection]:
        """One write transaction on a Core connection (the ledger's statements need no ORM
        session). On SQLite the connection threads take turns on a Python lock: SQLite's own
        busy handler would make a waiting thread sleep for milliseconds at a time (then every
        message waits); PostgreSQL locks rows, so its threads go in parallel."""
        with self.write_lock, self.engine.begin() as conn:
            yield conn

    def _thread_main(self) -> None:
        conn = self.transport.open()
        try:
            while not self.stop.is_set():
                size = self._take_quota(self.batch)
                if size == 0:
                    self.stopped_by = self.stopped_by or "limit"
                    break
                me = new_holder(self.worker, threading.get_ident())  # one per batch
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
            self._check_complaints(s)
            status = s.scalar(select(Campaign.status).where(Campaign.id == self.campaign_id))
            if status != CampaignStatus.SENDING:
                self.stopped_by = CampaignStatus(status).value if status else "cancelled"
                return None
            now = clock.now()
            if self.not_after is not None and now > self.not_after:
                self._expire(s, now)
                return []
            rows, skipped = ledger.claim(
                s,
                self.campaign_id,
                self.list_ids,
                me,
                size,
                now,
                timedelta(seconds=self.settings.lease_seconds),
                skip_locked=not self.sqlite,
            )
        self.progress.add("skipped", skipped)
        failpoints.hit("after_claim")
        return rows

    def _expire(self, s: DbConnection, now: datetime) -> None:
        result = s.execute(
            update(Delivery)
            .where(
                Delivery.campaign_id == self.campaign_id,
                Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
            )
            .values(
                status=DeliveryStatus.CANCELLED,
                updated_at=now,
                smtp_reply="cancelled: the release expired before this message was sent",
            )
        )
        self.progress.add("cancelled", int(result.rowcount or 0))

    def _send_batch(self, me: str, conn: Connection, rows: list[Claimed]) -> None:
        """Send a claimed batch in id order, in groups of `ledger_group_size`. Before a group's
        first message (after its rate token) the group's proof is committed, with the replies
        so far; before a later message of the group, if the group's last look is older than
        RECHECK_SECONDS, its rows are looked at again. So the last word on an unsubscribe, a
        pause or a lost claim comes after every wait and within that bound of the SMTP
        transaction. A failed proof or a stop gives the rest of the batch back, proven rows not
        yet sent included (their proofs withdrawn: they were not sent and will not be)."""
        assert self.limiter is not None and self.compiler is not None
        half = timedelta(seconds=self.settings.lease_seconds / 2)
        # The rate limiter gives up once half the lease is gone (an hourly quota can keep a
        # sender waiting for long); the proof would refuse the row after that anyway.
        deadline = time.monotonic() + half.total_seconds()
        group_size = max(1, self.settings.ledger_group_size)
        pending: list[tuple[Claimed, Reply]] = []  # sent, reply not yet committed
        proven: list[Claimed] = []  # proven, not sent yet: lowest id first
        unsent = list(reversed(rows))  # not proven: popped from the end, lowest id first
        looked = _stamp()  # when the proven rows were last looked at
        failures = 0
        try:
            while (proven or unsent) and not self.stop.is_set():
                if not proven and self.guard.active:
                    # Rows of a provider that refuses the sender wait, unsent and unproven.
                    held = self.guard.held(unsent, clock.now())
                    if held:
                        self._defer(me, held, pending)
                        pending = []
                        gone = {d.id for d, _ in held}
                        unsent = [d for d in unsent if d.id not in gone]
                        continue
                if not self.limiter.wait(self.stop, until=deadline):
                    break
                if not proven:
                    group = unsent[-group_size:][::-1]
                    # A variant that cannot be rendered stops the run (see _send_one): find
                    # out before the proof, so the rows go back untouched.
                    for d in group:
                        self.compiler.get(d.language, d.list_id)
                    looked = _stamp()
                    proof = self._prove(me, group, pending, half)
                    pending = []
                    del unsent[-len(group) :]
                    go, skipped = set(proof.go), set(proof.skipped)
                    proven = [d for d in group if d.id in go]
                    unsent += [d for d in reversed(group) if d.id not in go | skipped]
                    self.progress.add("skipped", len(skipped))
                    if proof.stop is not None:
                        break
                elif _age(looked) > RECHECK_SECONDS:
                    looked = _stamp()
                    going = self._recheck(me, proven, pending)
                    pending = []
                    if going is None:  # the campaign stopped: the rest is withdrawn below
                        break
                    proven = going
                if not proven:
                    continue
                d = proven.pop(0)
                failpoints.hit("after_commit")
                try:
                    reply = self._send_one(conn, d)
                except TransportError:
                    # Raised only before the server accepted anything of this message (the
                    # sender refused): it was not sent, so it goes back with the rest.
                    proven.insert(0, d)
                    raise
                failpoints.hit("after_reply")
                self.guard.observe(d, reply, clock.now())
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
            if pending or proven or unsent:
                self._release(me, pending, [d.id for d in proven], [d.id for d in proven + unsent])

    def _send_one(self, conn: Connection, d: Claimed) -> Reply:
        assert self.compiler is not None
        # Outside the try: a variant that cannot be rendered or compiled (a broken layout, no
        # secret_key) stops the run with its error, rather than failing every reader of it.
        compiled = self.compiler.get(d.language, d.list_id)
        try:
            recipient = Recipient(
                d.contact_id or 0, d.email, clean_name(d.name), d.list_id, d.message_id
            )
            message = compiled.build(recipient, deliver_to=self.redirect)
            address, utf8 = smtp_form(self.redirect or d.email)
        except (MailerError, ValueError, KeyError, UnicodeError) as err:
            # One malformed row must not stop the campaign (or a worker) for everyone else.
            return Reply(0, f"could not build the message: {err}", Outcome.FAILED)
        env_from = (
            verp_encode(
                self.envelope_from,
                address,
                secret_key=self.settings.secret_key,
                campaign_id=self.campaign_id,
            )
            if self.settings.verp
            else self.envelope_from
        )
        return conn.send(env_from, address, message, smtputf8=utf8)

    def _prove(
        self, me: str, group: list[Claimed], pending: list[tuple[Claimed, Reply]], half: timedelta
    ) -> ledger.GroupProof:
        """One transaction: commit the replies so far, then the proof of `group`."""
        with self._transaction() as s:
            self._write_replies(s, me, pending)
            self._check_complaints(s)  # over the line: paused, so the proof stops the sender
            proof = ledger.prove_group(
                s, me, [d.id for d in group], self.list_ids, half, clock.now()
            )
        if proof.stop == Verdict.STOPPED:
            status = proof.campaign_status
            self.stopped_by = CampaignStatus(status).value if status else "cancelled"
        return proof

    def _recheck(
        self, me: str, proven: list[Claimed], pending: list[tuple[Claimed, Reply]]
    ) -> list[Claimed] | None:
        """One transaction: commit the replies so far, look at the proven rows again. Returns
        the rows still to send, or None when the campaign is no longer sending."""
        with self._transaction() as s:
            self._write_replies(s, me, pending)
            check = ledger.recheck(s, me, [d.id for d in proven], self.list_ids, clock.now())
        if check.campaign_status != CampaignStatus.SENDING:
            status = check.campaign_status
            self.stopped_by = CampaignStatus(status).value if status else "cancelled"
            return None
        self.progress.add("skipped", len(check.skipped))
        keep = set(check.keep)
        return [d for d in proven if d.id in keep]

    def _write_replies(
        self, s: DbConnection, me: str, pending: list[tuple[Claimed, Reply]]
    ) -> None:
        results = replies.write(
            s, self.settings, self.campaign_id, self.started_at, me, pending, self.guard.waits
        )
        for r in results:
            self.progress.add(r.status.value)
        self.guard.write(s, clock.now())

    def _check_complaints(self, s: DbConnection) -> None:
        """Every few seconds: pause the campaign if its complaints are over the line (the
        caller's next look at the campaign's status then stops the sender)."""
        if self.guard.complaints_due():
            guards.check_complaints(s, self.settings, self.campaign_id, self.worker)

    def _defer(
        self, me: str, held: list[tuple[Claimed, guards.Hold]], pending: list[tuple[Claimed, Reply]]
    ) -> None:
        """One transaction: commit the replies so far; claimed rows whose provider is held wait
        for the hold, unsent (they were never proven)."""
        now = clock.now()
        with self._transaction() as s:
            self._write_replies(s, me, pending)
            for hold in {id(h): h for _, h in held}.values():
                ids = [d.id for d, h in held if h is hold]
                n = ledger.defer_held(s, me, ids, hold.until, hold.note, now)
                self.progress.add("deferred", n)

    def _release(
        self, me: str, pending: list[tuple[Claimed, Reply]], withdraw: list[int], ids: list[int]
    ) -> None:
        """End of a batch, in one transaction: commit the replies not yet committed, withdraw
        the proofs of rows that were not sent (`withdraw`: the sender stops and will not send
        them), give unsent rows back (pause, stop, a transport error).

        In a cancelled campaign they become cancelled, never pending again."""
        now = clock.now()
        with self._transaction() as s:
            self._write_replies(s, me, pending)
            ledger.unprove(s, me, withdraw)
            if not ids:
                return
            status = s.scalar(select(Campaign.status).where(Campaign.id == self.campaign_id))
            ledger.give_back(s, me, ids, now, cancelled=status == CampaignStatus.CANCELLED)


def deliver(settings: Settings, campaign_id: int, transport: Transport, **kwargs: Any) -> RunResult:
    """Send what is due in a campaign; see Deliverer."""
    try:
        transport.check()
    except MailerError:
        raise
    except OSError as err:  # pragma: no cover - check() wraps these
        raise TransportError(str(err)) from None
    return Deliverer(settings, session_factory(settings), campaign_id, transport, **kwargs).run()
