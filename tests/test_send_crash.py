"""The sending process killed with SIGKILL at several points, then resumed: every recipient
exactly once except the in-doubt ones, none missing, every row accounted for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.config import Settings
from mailer.store.db import session_scope
from mailer.store.models import Campaign, CampaignStatus, Delivery
from tests.support.cli import Cli
from tests.support.sending import populate, use_smtp
from tests.support.smtp import SmtpServer

RECIPIENTS = [
    (f"reader{i:02d}@example.org", f"Reader {i}", "ko" if i % 3 else "en") for i in range(24)
]
ROOT = Path(__file__).parents[1]


def run_killed(config: Path, release_path: Path, failpoint: str) -> int:
    env = {
        **os.environ,
        "MAILER_FAILPOINTS": failpoint,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailer",
            "--config",
            str(config),
            "send",
            str(release_path),
            "--list",
            "press",
            "--yes",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode


@pytest.mark.parametrize(
    "failpoint, batch, group",
    [
        ("after_claim:2", 3, 1),
        ("after_reply:5", 3, 1),
        ("after_commit:7", 3, 1),
        ("after_reply:9", 12, 1),
        ("after_commit:3", 12, 1),
        # ledger_group_size 5: a connection proves five rows in one commit, then sends them.
        ("after_commit:1", 12, 5),
        ("after_reply:4", 12, 5),
        ("after_reply:9", 12, 5),
    ],
)
def test_killed_then_resumed(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
    failpoint: str,
    batch: int,
    group: int,
) -> None:
    settings = use_smtp(
        settings, tmp_path, smtp, concurrency=2, batch_size=batch, ledger_group_size=group
    )
    populate(settings, RECIPIENTS)
    rc = run_killed(tmp_path / "mailer.toml", release, failpoint)
    assert rc == -signal.SIGKILL, "the failpoint did not fire"
    before = len(smtp.sink.received)
    assert 0 < before < len(RECIPIENTS) or failpoint in ("after_claim:2", "after_commit:1")
    cli("campaigns", "resume", "1")
    with session_scope(settings) as s:
        rows = {d.email: d.status.value for d in s.scalars(select(Delivery))}
        status = s.scalars(select(Campaign)).one().status
    at_sink = Counter(a for r in smtp.sink.received for a in r.rcpt_tos)
    assert set(rows) == {e for e, _, _ in RECIPIENTS}
    assert set(rows.values()) <= {"sent", "in_doubt"}
    in_doubt = [e for e, st in rows.items() if st == "in_doubt"]
    for email, st in rows.items():
        if st == "sent":
            assert at_sink[email] == 1, email
        else:
            assert at_sink[email] <= 1, email
    assert max(at_sink.values()) == 1  # nobody twice
    # A crash leaves at most one group per connection in doubt: the rows whose proof was
    # committed and whose reply was not (the replies so far are committed with each proof).
    # Every other row it held went back to pending and was sent once on resume.
    assert len(in_doubt) <= 2 * group
    if not failpoint.startswith("after_claim"):
        assert len(in_doubt) >= 1
    if failpoint == "after_commit:1":
        # Killed before its first message: the whole proven group is in doubt, none of it sent
        # (a group of one would leave one row).
        assert len(in_doubt) >= group and before == 0
    if failpoint.startswith("after_reply"):
        # The message whose reply was lost did arrive: it is in doubt, not resent.
        assert any(at_sink[e] == 1 for e in in_doubt)
    if not in_doubt:  # killed between a claim and its first proof: nothing in doubt
        assert status == CampaignStatus.DONE
        return
    assert status == CampaignStatus.SENDING  # not done while rows are in doubt
    cli("campaigns", "resolve", "1", "--in-doubt", "resend")
    cli("campaigns", "resume", "1")
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).one().status == CampaignStatus.DONE
