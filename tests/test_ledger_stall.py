"""Stalls, not crashes: real `mailer worker` processes on PostgreSQL with a 3-second lease,
sending to an SMTP sink (its own process) that records every RCPT.

(a) One worker is frozen (SIGSTOP) past its lease while another sender resumes the campaign,
    then thawed (SIGCONT), several times.
(b) No signal at all: a transaction holds `LOCK TABLE delivery IN SHARE MODE` (what a long
    CREATE INDEX or migration holds) for longer than the lease while another sender starts.

Either way nobody may get the message twice and every row must end accounted for
(docs/ledger.md gives the argument), with one proof per message (ledger_group_size 1) and with
groups of ten rows proven in one commit (ledger_group_size 10). SQLite allows one sender at a
time (a lock that outlives any stall here), so these run on PostgreSQL only; the ordering of a
proof and recovery on one row, which is what makes them pass, is tested on both engines in
tests/test_ledger.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, select, text

from mailer.config import Settings
from mailer.store.db import session_scope
from mailer.store.models import Delivery
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.sending import bulk_audience

ROOT = Path(__file__).parents[1]
LEASE = 3  # seconds
pytestmark = pytest.mark.slow


@dataclass
class Rig:
    settings: Settings
    config: Path
    log: Path
    n: int
    procs: list[subprocess.Popen[bytes]]

    def sender(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailer", "--config", str(self.config), *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "mailer-stall") -> subprocess.Popen[bytes]:
        # libpq names the worker's database sessions, so the test can find them.
        return self.sender("worker", "--poll", "0.2", env={"PGAPPNAME": name})

    def freeze_inside_a_transaction(self, proc: subprocess.Popen[bytes], name: str) -> None:
        """SIGSTOP `proc` while one of its database sessions is inside a transaction that wrote
        to `delivery` (holding row locks that recovery must wait for), or after a few seconds
        whatever it does."""
        url = self.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
        deadline = time.monotonic() + 5
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                busy = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                    "WHERE a.application_name = %s AND l.relation = 'delivery'::regclass "
                    "AND l.mode = 'RowExclusiveLock'",
                    (name,),
                    prepare=True,
                ).fetchone()
                if busy and busy[0]:
                    break
        os.kill(proc.pid, signal.SIGSTOP)

    def rcpts(self) -> Counter[str]:
        return Counter(self.log.read_text(encoding="utf-8").split())

    def wait_for(self, at_sink: int, timeout: float = 20) -> None:
        """Until the sink has seen `at_sink` RCPTs (or a while: the check says what is wrong)."""
        deadline = time.monotonic() + timeout
        while sum(self.rcpts().values()) < at_sink and time.monotonic() < deadline:
            time.sleep(0.05)

    def statuses(self) -> dict[str, str]:
        with session_scope(self.settings) as s:
            return {e: st.value for e, st in s.execute(select(Delivery.email, Delivery.status))}

    def wait_until_final(self, timeout: float = 180) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            rows = self.statuses()
            if set(rows.values()) <= {"sent", "in_doubt", "failed", "skipped"}:
                return rows
            assert time.monotonic() < deadline, Counter(rows.values())
            time.sleep(0.2)

    def check(self) -> None:
        """Nobody twice; every row final, every sent row received exactly once."""
        rows = self.wait_until_final()
        at_sink = self.rcpts()
        twice = {e: k for e, k in at_sink.items() if k > 1}
        assert twice == {}, f"{len(twice)} recipients got the message more than once"
        assert len(rows) == self.n
        assert set(at_sink) <= set(rows)
        statuses = Counter(rows.values())
        assert set(statuses) <= {"sent", "in_doubt"}, statuses
        assert [e for e, st in rows.items() if st == "sent" and at_sink[e] != 1] == []


@pytest.fixture(params=[1, 10], ids=["group1", "group10"])
def rig(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli, request: pytest.FixtureRequest
) -> Iterator[Rig]:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several senders at once need PostgreSQL")
    n = 900
    log = tmp_path / "rcpt.log"
    log.touch()
    # 30 ms per message: two workers of two connections send ~130 a second, so the
    # campaign is still running when the test stalls one of them; a batch of 30 takes about
    # a second, well inside half the lease.
    sink_script = ROOT / "tests" / "support" / "rcpt_sink.py"
    sink = subprocess.Popen(
        [sys.executable, str(sink_script), str(log), "0.03"], stdout=subprocess.PIPE
    )
    procs: list[subprocess.Popen[bytes]] = [sink]
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline().split()[1])
        config = write_config(
            tmp_path,
            {
                "database_url": settings.database_url,
                "transport": "smtp",
                "smtp_url": f"smtp://127.0.0.1:{port}?tls=none",
                "concurrency": 2,
                "batch_size": 30,
                "lease_seconds": LEASE,
                "ledger_group_size": request.param,
            },
        )
        bulk_audience(settings, n)
        out = cli("send", str(release), "--list", "press", "--yes", "--limit", "0").output
        assert f"recipients: {n}" in out
        yield Rig(settings, config, log, n, procs)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
            p.wait()


def test_a_worker_frozen_past_its_lease_sends_nothing_twice(rig: Rig) -> None:
    frozen = rig.worker("mailer-frozen")
    rig.worker()
    for cycle in range(1, 5):
        rig.wait_for(sum(rig.rcpts().values()) + 60)  # every sender is busy again
        if cycle < 4:
            rig.freeze_inside_a_transaction(frozen, "mailer-frozen")
        else:
            os.kill(frozen.pid, signal.SIGSTOP)  # wherever it is (most often in SMTP)
        # Past the lease (by the database's clock), another sender resumes the campaign: it
        # recovers the frozen worker's rows, and it and the other worker send them.
        time.sleep(LEASE + 0.5)
        rig.sender("campaigns", "resume", "1")
        time.sleep(1.5)
        os.kill(frozen.pid, signal.SIGCONT)
        time.sleep(0.3)
    rig.check()


def test_a_table_lock_longer_than_the_lease_sends_nothing_twice(rig: Rig) -> None:
    rig.worker()
    rig.worker()
    engine = create_engine(rig.settings.database_url)
    try:
        for cycle in (1, 2):
            rig.wait_for(rig.n * cycle // 4)
            with engine.connect() as conn:
                conn.execute(text("LOCK TABLE delivery IN SHARE MODE"))
                # Every sender now waits on its next write, its leases running out; another
                # sender resumes the campaign meanwhile.
                time.sleep(1)
                rig.sender("campaigns", "resume", "1")
                time.sleep(LEASE + 1)
                conn.commit()
    finally:
        engine.dispose()
    rig.check()
