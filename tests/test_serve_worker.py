"""`mailer serve` carries out the sends started from the console with the worker inside it: a
real server process sends a campaign planned the console's way to a real SMTP server; killed
with SIGKILL in the middle of the send and started again, it gives everyone exactly one copy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.config import Settings
from mailer.delivery.handoff import hand_off
from mailer.store.db import dispose_engines, session_scope
from mailer.store.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from tests.support.sending import populate, use_smtp
from tests.support.smtp import SmtpServer, free_port

ROOT = Path(__file__).parents[1]
RECIPIENTS = [
    (f"reader{i:02d}@example.org", f"Reader {i}", "ko" if i % 3 else "en") for i in range(24)
]
UNFINISHED = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.DEFERRED)


def _serve(
    config: Path, *extra: str, failpoint: str = "", port: int = 0
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    if failpoint:
        env["MAILER_FAILPOINTS"] = failpoint
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer",
            "--config",
            str(config),
            "serve",
            "--port",
            str(port or free_port()),
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors="replace")


def _unfinished(settings: Settings) -> int:
    with session_scope(settings) as s:
        return len(list(s.scalars(select(Delivery.id).where(Delivery.status.in_(UNFINISHED)))))


def _wait_until_sent(settings: Settings, proc: subprocess.Popen[bytes]) -> None:
    """Until no row is left to send (the server must stay up meanwhile)."""
    for _ in range(1200):
        if _unfinished(settings) == 0:
            return
        assert proc.poll() is None, _stop(proc)
        time.sleep(0.1)
    raise AssertionError(f"the worker inside `mailer serve` did not finish: {_stop(proc)}")


def _planned(settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path) -> Settings:
    s = use_smtp(settings, tmp_path, smtp, concurrency=1, batch_size=3)
    populate(s, RECIPIENTS)
    # As the console plans it: scheduled for now, left to a worker.
    plan = hand_off(s, release, ["press"], actor="user:sender@staff.example.org")
    assert plan.campaign.status == CampaignStatus.SCHEDULED
    assert smtp.sink.received == []
    # The server's processes open the database themselves: no connection of ours in the way.
    dispose_engines()
    return s


@pytest.mark.slow
def test_serve_sends_a_planned_campaign_with_its_worker(
    engine_name: str, settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path
) -> None:
    s = _planned(settings, tmp_path, smtp, release)
    proc = _serve(tmp_path / "mailer.toml")
    try:
        _wait_until_sent(s, proc)
    finally:
        log = _stop(proc)
    assert "worker inside this server" in log
    at_sink = Counter(a for r in smtp.sink.received for a in r.rcpt_tos)
    assert at_sink == Counter(e for e, _n, _l in RECIPIENTS)
    with session_scope(s) as db:
        assert db.scalars(select(Campaign)).one().status == CampaignStatus.DONE


@pytest.mark.slow
def test_serve_killed_mid_send_then_restarted_sends_everyone_once(
    engine_name: str, settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path
) -> None:
    s = _planned(settings, tmp_path, smtp, release)
    # SIGKILL of the whole server the fifth time a reply comes back, before it is recorded.
    first = _serve(tmp_path / "mailer.toml", failpoint="after_reply:5")
    try:
        first.wait(timeout=120)
    finally:
        log = _stop(first)
    assert first.returncode == -signal.SIGKILL, log
    before = len(smtp.sink.received)
    assert 0 < before < len(RECIPIENTS)
    second = _serve(tmp_path / "mailer.toml")
    try:
        _wait_until_sent(s, second)
    finally:
        _stop(second)
    # Counted by Message-ID (each recipient's is deterministic): nobody twice, nobody missing.
    by_id = Counter(r.message_id for r in smtp.sink.received)
    assert max(by_id.values()) == 1, by_id.most_common(3)
    at_sink = Counter(a for r in smtp.sink.received for a in r.rcpt_tos)
    assert at_sink == Counter(e for e, _n, _l in RECIPIENTS)
    with session_scope(s) as db:
        rows = {d.email: d.status for d in db.scalars(select(Delivery))}
    # The message whose reply was lost is in doubt (never resent by itself): it did arrive.
    in_doubt = [e for e, st in rows.items() if st == DeliveryStatus.IN_DOUBT]
    assert len(in_doubt) == 1
    assert set(rows.values()) == {DeliveryStatus.SENT, DeliveryStatus.IN_DOUBT}


@pytest.mark.slow
def test_no_worker_leaves_sending_to_separate_workers(
    settings: Settings, tmp_path: Path, smtp: SmtpServer
) -> None:
    use_smtp(settings, tmp_path, smtp)
    port = free_port()
    proc = _serve(tmp_path / "mailer.toml", "--no-worker", port=port)
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", proc)
    finally:
        log = _stop(proc)
    assert "separate `mailer worker` processes" in log
    assert "worker inside this server" not in log


def _wait_for(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            assert proc.poll() is None, _stop(proc)
            time.sleep(0.1)
    raise AssertionError(f"nothing answers at {url}")
