"""Outside review: text a stranger writes (a forged bounce's Message-ID, Status and diagnostic,
a mailed unsubscribe's subject) reaches the terminal of the person running `bounces process`
and `bounces review`. Control characters must come out escaped, as everywhere else."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.store.models import BounceReview
from tests.support.cli import Cli

EVIL = "\x1b]0;owned\x07\x1b[2J\u202e\x9b31m"


def forged(n: int) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.net
To: bounces@example.org
Subject: Undelivered {EVIL}
Message-Id: <evil.{n}.{EVIL}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain; charset=utf-8

The mail system {EVIL}

--B
Content-Type: message/delivery-status; charset=utf-8

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; victim@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 {EVIL} user unknown

--B--
""".encode()


def clean(text: str) -> None:
    for bad in ("\x1b", "\x07", "\u202e", "\x9b"):
        assert bad not in text, repr(text)


def test_bounce_commands_escape_what_a_report_says(
    session: Session, cli: Cli, tmp_path: Path
) -> None:
    create_list(session, "press", "Press")
    add_contact(session, "victim@example.com", "press")
    session.commit()
    box = mailbox.mbox(str(tmp_path / "in.mbox"))
    for n in range(2):
        box.add(forged(n))
    box.add(
        f"From: someone@example.org\nSubject: unsubscribe {EVIL}\n"
        f"Message-ID: <u.{EVIL}@x>\n\nunsubscribe\n".encode()
    )
    box.flush()
    out = cli("bounces", "process", str(tmp_path / "in.mbox"), "--dry-run").output
    clean(out)
    assert "held for review" in out or "hard" in out
    out = cli("bounces", "process", str(tmp_path / "in.mbox")).output
    clean(out)
    clean(cli("bounces", "process", str(tmp_path / "in.mbox"), "--json").output)
    ids = list(session.scalars(select(BounceReview.id).order_by(BounceReview.id)))
    assert len(ids) == 2
    session.rollback()
    listing = cli("bounces", "review").output
    clean(listing)
    assert "\\x1b]0;owned" in listing  # shown, escaped: the reviewer sees what was sent
    clean(cli("bounces", "review", "--json").output)
    clean(cli("bounces", "review", "--apply", str(ids[0]), "--by", f"ed{EVIL}").output)
    clean(cli("bounces", "review", "--dismiss", str(ids[1]), "--json").output)
    clean(cli("bounces", "review", "--all").output)
    data = json.loads(cli("bounces", "review", "--all", "--json").output)
    assert {d["state"] for d in data} == {"applied", "dismissed"}
    clean(cli("bounces", "classify", str(tmp_path / "in.mbox")).output)
