"""Workers: scheduled campaigns, shared rate limits, and four workers on PostgreSQL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import clock
from mailer.config import Settings
from mailer.store.db import session_factory, session_scope
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Delivery,
)
from mailer.store.ratelimit import take
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.sending import bulk_audience, populate, use_smtp
from tests.support.smtp import SmtpServer

ROOT = Path(__file__).parents[1]


def test_scheduled_campaign_starts_when_due_and_not_before(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    start = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)  # 09:00 in New York
    clock.set_clock(lambda: start - timedelta(days=1))
    out = cli(
        "send",
        str(release),
        "--list",
        "press",
        "--yes",
        "--at",
        "2026-12-01 09:00 America/New_York",
    ).output
    assert "Scheduled campaign 1" in out
    listed = cli("campaigns", "ls").output
    assert "scheduled" in listed
    clock.set_clock(lambda: start - timedelta(seconds=1))
    cli("worker", "--once", "--poll", "0")
    assert smtp.sink.received == []
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).one().status == CampaignStatus.SCHEDULED
    clock.set_clock(lambda: start + timedelta(seconds=1))
    cli("worker", "--once", "--poll", "0")
    assert len(smtp.sink.received) == 6
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).one().status == CampaignStatus.DONE


def test_scheduled_campaign_can_be_cancelled_before_it_starts(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    at = (datetime.now(UTC) + timedelta(hours=3)).strftime("%Y-%m-%d %H:%M")
    cli("send", str(release), "--list", "press", "--yes", "--at", f"{at} UTC")
    cli("campaigns", "cancel", "1")
    clock.set_clock(lambda: datetime.now(UTC) + timedelta(hours=4))
    cli("worker", "--once", "--poll", "0")
    assert smtp.sink.received == []


def test_schedule_must_respect_the_embargo(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    populate(settings)
    embargo = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    for f in release.parent.glob("*.md"):
        f.write_text(
            f.read_text(encoding="utf-8").replace(
                "---\n", f"---\nembargo: {embargo.isoformat()}\n", 1
            ),
            encoding="utf-8",
        )
    early = (embargo - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert (
        "embargo"
        in cli(
            "send", str(release), "--list", "press", "--yes", "--at", f"{early} UTC", expect=1
        ).output
    )
    late = (embargo + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    assert (
        "Scheduled"
        in cli("send", str(release), "--list", "press", "--yes", "--at", f"{late} UTC").output
    )


def test_rate_windows_are_shared_by_all_senders(settings: Settings) -> None:
    """Two senders (two sessions) together get exactly the window's allowance."""
    factory = session_factory(settings)
    now = datetime(2026, 12, 1, 9, 0, 0, 500000, tzinfo=UTC)
    granted = 0
    for _ in range(10):
        with factory() as s, s.begin():
            if take(s, "campaign:1", 1, 4, now) == 0:
                granted += 1
    assert granted == 4
    with factory() as s, s.begin():
        wait = take(s, "campaign:1", 1, 4, now)
    assert 0 < wait <= 0.5
    with factory() as s, s.begin():
        assert take(s, "campaign:1", 1, 4, now + timedelta(seconds=1)) == 0


def test_only_store_ratelimit_writes_the_rate_limit_table() -> None:
    """The send rate (delivery/throttle.py) and the web forms share one writer of the table."""
    writers = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "mailer").rglob("*.py")
        if re.search(r"\bRateLimit\b", p.read_text(encoding="utf-8"))
        and p.name not in ("models.py", "ratelimit.py")
        and "migrations" not in p.parts
    )
    assert writers == []


@pytest.mark.slow
@pytest.mark.parametrize("group", [1, 10])
def test_four_workers_on_postgresql_one_killed(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli, group: int
) -> None:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("several workers need PostgreSQL")
    n = 20_000
    ids_file = tmp_path / "ids.txt"
    sink_script = ROOT / "tests" / "support" / "fast_sink.py"
    sink = subprocess.Popen(
        [sys.executable, str(sink_script), str(ids_file)], stdout=subprocess.PIPE
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline().split()[1])
        write_config(
            tmp_path,
            {
                "database_url": settings.database_url,
                "transport": "smtp",
                "smtp_url": f"smtp://127.0.0.1:{port}?tls=none",
                "concurrency": 2,
                "batch_size": 50,
                "ledger_group_size": group,
            },
        )
        bulk_audience(settings, n)
        out = cli("send", str(release), "--list", "press", "--yes", "--limit", "0").output
        assert f"recipients: {n}" in out
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mailer",
                    "--config",
                    str(tmp_path / "mailer.toml"),
                    "worker",
                    "--once",
                    "--poll",
                    "0.2",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(4)
        ]
        # Kill one worker in the middle of the campaign, mid-batch.
        deadline = time.monotonic() + 600
        while _count_lines(ids_file) < n // 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(workers[0].pid, signal.SIGKILL)
        for w in workers:
            w.wait(timeout=max(1, deadline - time.monotonic()))
        assert workers[0].returncode == -signal.SIGKILL
        assert all(w.returncode == 0 for w in workers[1:]), [w.returncode for w in workers]
        # The survivors may have finished before the dead worker's rows were orphaned: one
        # more pass turns them in_doubt (its pid is gone) and sends nothing new.
        cli("worker", "--once", "--poll", "0")
        with session_scope(settings) as s:
            rows = {
                mid: st.value
                for mid, st in s.execute(select(Delivery.message_id, Delivery.status)).all()
            }
        at_sink = Counter(ids_file.read_text().split())
        assert len(rows) == n
        assert max(at_sink.values()) == 1, "a message arrived twice"
        statuses = Counter(rows.values())
        assert set(statuses) <= {"sent", "in_doubt"}, statuses
        # At most one group per connection of the killed worker (the rows proven, their
        # replies not yet recorded); the rest of its claimed batches went back to pending and
        # were sent by the others. (Killed between a claim and a proof, a connection leaves
        # none.)
        assert statuses["in_doubt"] <= 2 * group
        missing = [mid for mid, st in rows.items() if st == "sent" and at_sink[mid] != 1]
        assert missing == []
        assert set(at_sink) <= set(rows)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
        sink.kill()


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def test_at_is_honoured_for_an_earlier_unsent_plan(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    # A plan that never went out (as when Ctrl-C interrupts the confirmation prompt).
    from mailer.delivery.send import load_for_sending, plan

    plan(
        settings,
        load_for_sending(release, settings).release,
        ["press"],
        [],
        smtputf8=True,
        transport="test",
    )
    out = cli(
        "send", str(release), "--list", "press", "--yes", "--at", "2099-01-01 09:00 UTC"
    ).output
    assert "Scheduled campaign 1" in out
    assert smtp.sink.received == []
    cli("worker", "--once", "--poll", "0")
    assert smtp.sink.received == []


def test_worker_leaves_a_paused_campaign_alone(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    cli("send", str(release), "--list", "press", "--yes", "--limit", "2")
    cli("campaigns", "pause", "1")
    cli("worker", "--once", "--poll", "0")
    assert len(smtp.sink.received) == 2
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).one().status == CampaignStatus.PAUSED
    cli("campaigns", "resume", "1")
    assert len(smtp.sink.received) == 6


def test_a_layout_broken_after_planning_stops_the_worker_and_fails_nobody(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
) -> None:
    """A worker renders a scheduled campaign when it starts it; if the layout no longer renders
    the run stops with the layout's error, every row stays due, and fixing it sends them all."""
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    start = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    clock.set_clock(lambda: start - timedelta(days=1))
    cli("send", str(release), "--list", "press", "--yes", "--at", "2026-12-01 14:00 UTC")
    layout = settings.templates_dir / "email" / "release.html"
    layout.parent.mkdir(parents=True)
    layout.write_text("{% if %}broken{% endif %}", encoding="utf-8")
    clock.set_clock(lambda: start + timedelta(seconds=1))
    out = cli("worker", "--once", "--poll", "0", expect=1).output
    assert "release.html" in out
    assert smtp.sink.received == []
    with session_scope(settings) as s:
        assert {d.status.value for d in s.scalars(select(Delivery))} == {"pending"}
    layout.unlink()
    cli("worker", "--once", "--poll", "0")
    assert len(smtp.sink.received) == 6
