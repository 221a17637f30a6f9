"""Batched, durable click recording: the redirect answers at once, a thread writes in batches.

A click (or open) is queued in memory and appended, as one line, to this process's journal
file before the redirect is answered; a background thread writes the queue to the database
every BATCH_SECONDS (0.5 s) or as soon as BATCH_SIZE (200) are ready. A click is "ready" once
SWEEP_SECONDS (2 s) old, so the sweep rule (mailer.engagement.machines) sees the whole sweep.

No click lost across a restart, and the exact bound:
- graceful stop (`mailer serve` ended by Ctrl-C or SIGTERM, the waitress server closed, atexit):
  the queue is written in full, then the journal removed;
- the process dies (SIGKILL, a crash): nothing answered is lost. The line was written (each
  click is one write(2) to the O_APPEND file, no buffer in the process) before the 302 left; the
  next recorder to start on the same folder replays every journal no live process holds (each
  holds its own with flock) and removes it. A batch written just before the death may be
  counted twice only if the process died between the database commit and the one-line "done"
  marker written right after it: at most one batch (BATCH_SIZE, or all ready clicks);
- the machine dies (power, kernel panic): there is no fsync per click, so what the kernel had
  not yet written back is lost: on Linux at most vm.dirty_expire_centisecs plus
  vm.dirty_writeback_centisecs (30 s + 5 s by default) of clicks.

The journal lives in `engagement/` beside mailer.toml (settings.base_dir). It holds what the
database will hold (ids, times, the machine reason, a hash of the client address and agent for
the sweep rule), never an address or a URL.

Over 400 lines on purpose: the queue, the journal, its replay and the batch writes together make
the no-click-lost bound; split, the bound would be argued across files.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailer import clock
from mailer.config import Settings
from mailer.engagement import machines
from mailer.store.models import Click, Contact, Delivery, MailingList, TrackedLink

log = logging.getLogger("mailer.engagement")

BATCH_SECONDS = 0.5
BATCH_SIZE = 200
HOLD_SECONDS = machines.SWEEP_SECONDS  # a click waits this long for the rest of a sweep
RECENT_SECONDS = 2 * machines.SWEEP_SECONDS  # written clicks kept for the sweep rule
COMPACT_LINES = 20000
JOURNAL_DIR = "engagement"
# The table itself: a Core insert of plain rows skips the ORM's bulk machinery (a third of the
# writer's time per click).
_CLICK = cast(Table, Click.__table__)


@dataclass
class Hit:
    """One request to /l/ or /o/, as queued, journalled and written."""

    seq: int
    kind: str  # "click" or "open"
    campaign_id: int
    link_id: int | None
    language: str
    contact_id: int | None  # as the token named it; kept only if the list and reader allow
    at: float  # epoch seconds
    reason: str  # the request's own machine reason ("" when it looked like a person)
    key: str  # the message, for the sweep rule (machines.Seen.key)
    links_in_message: int = 0
    when: datetime | None = None  # `at` as a datetime (not journalled; made when needed)

    def line(self) -> str:
        """One journal line: comma-separated (no field holds a comma), "" for None."""
        link = "" if self.link_id is None else self.link_id
        contact = "" if self.contact_id is None else self.contact_id
        return (
            f"{self.seq},{self.kind},{self.campaign_id},{link},{self.language},{contact},"
            f"{self.at!r},{self.reason},{self.key},{self.links_in_message}"
        )

    @classmethod
    def parse(cls, line: str) -> Hit | None:
        try:
            seq, kind, campaign, link, language, contact, at, reason, key, links = line.split(",")
            return cls(
                int(seq), kind, int(campaign), int(link) if link else None, language,
                int(contact) if contact else None, float(at), reason, key, int(links),
            )  # fmt: skip
        except ValueError:
            return None  # a line cut short by a crash


def message_key(campaign_id: int, contact_id: int | None, address: str, agent: str) -> str:
    """The sweep rule's "same message": the reader, or else client address and agent hashed
    (so neither is ever written anywhere)."""
    if contact_id:
        return f"p:{campaign_id}:{contact_id}"
    digest = hashlib.blake2b(f"{address}\n{agent}".encode(), digest_size=8).hexdigest()
    return f"a:{campaign_id}:{digest}"


class Recorder:
    """The queue, the journal and the writer thread of one process (see the module's text)."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session]) -> None:
        self.settings = settings
        self.factory = factory
        self.folder = settings.base_dir / JOURNAL_DIR
        self.lock = threading.Lock()
        # One batch written at a time (the writer thread, flush, stop): the journal's "done"
        # markers and compaction rely on batches being written in arrival order.
        self.writing = threading.Lock()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.queue: list[Hit] = []
        self.recent: list[Hit] = []  # written in the last RECENT_SECONDS (the sweep rule)
        self.seq = 0
        self.lines = 0
        # The journal's file descriptor (O_APPEND: each line one write(2), never under a lock
        # held across it, so a write that waits for the GIL does not hold up other requests).
        self.journal: int | None = None
        self.retired: list[int] = []  # descriptors replaced by a compaction, closed later
        self.path: Path | None = None
        self.thread: threading.Thread | None = None
        self.written = 0

    # -- the request side -------------------------------------------------------------------

    def record(
        self,
        kind: str,
        campaign_id: int,
        link_id: int | None,
        language: str,
        contact_id: int | None,
        reason: str,
        key: str,
        links_in_message: int = 0,
    ) -> None:
        """Queue one hit and journal it (returns once the line is in the kernel)."""
        now = clock.now()
        with self.lock:
            if self.journal is None:
                self._start()
            self.seq += 1
            hit = Hit(
                self.seq,
                kind,
                campaign_id,
                link_id,
                language,
                contact_id,
                now.timestamp(),
                reason,
                key,
                links_in_message,
                now,
            )
            journal = self.journal
            self.lines += 1
            self.queue.append(hit)
            # The writer is woken early only when a whole batch is ready (past its hold), so
            # a queue kept long by the hold does not wake it on every click.
            queue = self.queue
            if len(queue) >= BATCH_SIZE and queue[BATCH_SIZE - 1].at <= hit.at - HOLD_SECONDS:
                self.wake.set()
        # Outside the lock (see self.journal). Queued first: a compaction that starts now
        # copies this hit into the new file, and a line landing in the old one is harmless.
        assert journal is not None
        try:
            os.write(journal, (hit.line() + "\n").encode())
        except OSError:  # stopped meanwhile: the stop wrote the queue, this hit with it
            log.warning("engagement: a click was not journalled (the recorder stopped)")

    # -- starting and stopping --------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            if self.journal is None:
                self._start()

    def _start(self) -> None:
        """Replay what dead processes left, open our journal, start the writer (lock held)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.replay()
        name = f"journal-{os.getpid()}-{secrets.token_hex(4)}.log"
        self.path = self.folder / name
        self.journal = _open_journal(self.path)
        self.thread = threading.Thread(target=self._run, name="mailer-clicks", daemon=True)
        self.thread.start()
        atexit.register(self.stop)

    def replay(self) -> int:
        """Write the clicks of every journal no live process holds, then remove it."""
        total = 0
        for path in sorted(self.folder.glob("journal-*.log")):
            if path == self.path:
                continue
            try:
                handle = open(path, "r+", encoding="utf-8")  # noqa: SIM115
            except FileNotFoundError:
                continue
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process's own
                hits = _journalled(handle.read().splitlines())
                for start in range(0, len(hits), 1000):
                    self._write(hits[start : start + 1000], context=[])
                total += len(hits)
                path.unlink()
        if total:
            log.info("engagement: %d clicks replayed from journals", total)
        return total

    def stop(self) -> None:
        """Write everything queued, then remove the journal (graceful stop; idempotent)."""
        self.stopping.set()
        self.wake.set()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        try:
            self.flush()
        except Exception:  # the journal keeps them: the next start replays them
            log.exception("engagement: clicks left in the journal %s", self.path)
            return
        with self.lock:
            if self.journal is not None and not self.queue:
                for fd in [self.journal, *self.retired]:
                    os.close(fd)
                self.journal, self.retired = None, []
                if self.path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                self.thread = None
                self.stopping.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def flush(self) -> int:
        """Write every queued click now, ready or not (tests, stop); how many were written."""
        return self._write_queued(ready_only=False)

    # -- the writer -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(BATCH_SECONDS)
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                # A batch at a time, with a breath between: a long run of the writer holding
                # the GIL would hold up the redirects (their p99).
                while self._write_queued(ready_only=True) >= BATCH_SIZE:
                    self.stopping.wait(0.01)
            except Exception:  # the thread outlives a database hiccup; the journal keeps all
                log.exception("engagement: writing clicks failed; trying again shortly")
                self.stopping.wait(1.0)

    def _write_queued(self, *, ready_only: bool) -> int:
        """Write the queue's first clicks (the ready ones: HOLD_SECONDS old; one batch)
        and mark them done in the journal; on failure they go back to the queue's front."""
        with self.writing:
            cutoff = clock.now().timestamp() - HOLD_SECONDS
            with self.lock:
                count = 0
                for hit in self.queue:  # in arrival order: the ready ones are a prefix
                    if ready_only and (hit.at > cutoff or count >= BATCH_SIZE):
                        break
                    count += 1
                batch = self.queue[:count]
                del self.queue[:count]
            if not batch:
                return 0
            now = clock.now().timestamp()
            self.recent = [h for h in self.recent if h.at >= now - RECENT_SECONDS]
            try:
                self._write(batch, context=self.recent)
            except BaseException:
                with self.lock:
                    self.queue[:0] = batch
                raise
            self.recent += batch
            self.written += len(batch)
            with self.lock:
                if self.journal is not None:
                    # Replay skips what this marker covers: a crash now counts nothing twice.
                    os.write(self.journal, f"done,{batch[-1].seq}\n".encode())
                    self.lines += 1
                    self._compact(batch[-1].seq)
            return len(batch)

    def _compact(self, done: int) -> None:
        """Empty the journal when nothing waits, or rewrite it with what waits (lock held).
        Each starts with the "done" marker: a line of a written hit landing late is skipped."""
        if self.journal is None or self.path is None:
            return
        marker = f"done,{done}\n"
        if not self.queue:
            os.ftruncate(self.journal, 0)
            os.write(self.journal, marker.encode())
            self.lines = 1
        elif self.lines > COMPACT_LINES:
            tmp = self.path.with_suffix(".new")
            tmp.write_text(marker + "".join(h.line() + "\n" for h in self.queue), "utf-8")
            fresh = _open_journal(tmp)
            os.replace(tmp, self.path)
            # Not closed yet: a request may be writing to it now, and a closed number could be
            # reused by a socket. The compaction after next closes it.
            for fd in self.retired:
                os.close(fd)
            self.retired = [self.journal]
            self.journal = fresh
            self.lines = len(self.queue) + 1

    def _write(self, batch: Sequence[Hit], context: Sequence[Hit]) -> None:
        """Decide each hit (person kept or not, machine or not) and insert them, one commit."""
        try:
            with self.factory.begin() as s:
                s.execute(insert(_CLICK), decide(s, self.settings, batch, context))
        except IntegrityError:
            # A campaign (and its links) deleted since: its clicks go; the rest are written.
            with self.factory.begin() as s:
                alive = _live_links(s, {h.link_id for h in batch if h.link_id is not None})
                camps = _live_campaigns(s, {h.campaign_id for h in batch})
                keep = [
                    h
                    for h in batch
                    if h.campaign_id in camps and (h.link_id is None or h.link_id in alive)
                ]
                if keep:
                    s.execute(insert(_CLICK), decide(s, self.settings, keep, context))


def _open_journal(path: Path) -> int:
    """Our journal for appending, held with flock (a live process's journal is never replayed)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _journalled(lines: Iterable[str]) -> list[Hit]:
    hits: list[Hit] = []
    done = 0
    for line in lines:
        if line.startswith("done,"):
            with contextlib.suppress(ValueError):
                done = max(done, int(line[5:]))
            continue
        hit = Hit.parse(line)
        if hit is not None:
            hits.append(hit)
    return [h for h in hits if h.seq > done]


def _live_links(s: Session, ids: set[int]) -> set[int]:
    if not ids:
        return set()
    return set(s.scalars(select(TrackedLink.id).where(TrackedLink.id.in_(ids))))


def _live_campaigns(s: Session, ids: set[int]) -> set[int]:
    from mailer.store.models import Campaign  # noqa: PLC0415 - only after a failed batch

    return set(s.scalars(select(Campaign.id).where(Campaign.id.in_(ids))))


def decide(
    s: Session, settings: Settings, batch: Sequence[Hit], context: Sequence[Hit]
) -> list[dict[str, Any]]:
    """The click rows of `batch`: the reader kept only where the list tracks people and the
    reader has not switched it off (else NULL); machine and its reason by
    mailer.engagement.machines (`context`: clicks written just before, for sweeps)."""
    people = {(h.campaign_id, h.contact_id) for h in batch if h.contact_id}
    facts: dict[tuple[int, int | None], tuple[datetime | None, bool]] = {}
    if people:
        campaigns = sorted({c for c, _ in people})
        contacts = sorted({p for _, p in people})
        for start in range(0, len(contacts), 500):
            rows = s.execute(
                select(
                    Delivery.campaign_id,
                    Delivery.contact_id,
                    Delivery.sent_at,
                    MailingList.track_people,
                    Contact.track_people_off,
                )
                .outerjoin(MailingList, MailingList.id == Delivery.list_id)
                .outerjoin(Contact, Contact.id == Delivery.contact_id)
                .where(
                    Delivery.campaign_id.in_(campaigns),
                    Delivery.contact_id.in_(contacts[start : start + 500]),
                )
            )
            for campaign_id, contact_id, sent_at, track, off in rows:
                allowed = bool(track) and not bool(off)
                facts[(campaign_id, contact_id)] = (sent_at, allowed)
    # Only the messages this batch has clicks of can hold a sweep that concerns it.
    keys = {h.key for h in batch if h.kind == "click"}
    clicks = [
        h
        for h in [*context, *batch]
        if h.kind == "click" and h.link_id is not None and h.key in keys
    ]
    seen = [machines.Seen(h.key, h.link_id or 0, h.at, h.links_in_message) for h in clicks]
    swept = {id(clicks[i]) for i in machines.sweeps(seen)}
    rows_out: list[dict[str, Any]] = []
    for h in batch:
        at = h.when or datetime.fromtimestamp(h.at, UTC)
        sent_at, allowed = facts.get((h.campaign_id, h.contact_id or 0), (None, False))
        reason = h.reason
        if (
            not reason
            and h.kind == "click"
            and machines.is_early(at, sent_at, settings.click_machine_seconds)
        ):
            reason = machines.EARLY
        if not reason and id(h) in swept:
            reason = machines.SWEEP
        rows_out.append(
            {
                "link_id": h.link_id,
                "campaign_id": h.campaign_id,
                "language": h.language,
                "contact_id": h.contact_id if h.contact_id and allowed else None,
                "at": at,
                "machine": bool(reason),
                "machine_reason": reason,
                "kind": h.kind,
            }
        )
    return rows_out


_recorders: dict[tuple[str, str], Recorder] = {}
_recorders_lock = threading.Lock()


def recorder_for(settings: Settings, factory: sessionmaker[Session]) -> Recorder:
    """This process's recorder for the database and folder (every app in the process shares
    it: the public and the console server of one `mailer serve`)."""
    key = (settings.database_url, str(settings.base_dir))
    with _recorders_lock:
        found = _recorders.get(key)
        if found is None:
            found = _recorders[key] = Recorder(settings, factory)
        return found


def stop_all() -> None:
    """Write every process recorder's queue and close its journal (a graceful stop)."""
    with _recorders_lock:
        every = list(_recorders.values())
        _recorders.clear()
    for recorder in every:
        recorder.stop()


def wait_written(recorder: Recorder, count: int, timeout: float = 10.0) -> bool:
    """Until `count` hits have been written by `recorder` (benchmarks and tests)."""
    deadline = time.monotonic() + timeout
    while recorder.written < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return recorder.written >= count
