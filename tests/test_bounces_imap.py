"""`bounces process` against a real IMAP server (dovecot, started by tests/support/imap.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.bounces.sources import MailboxError, open_source
from mailer.contacts.suppressions import get_suppression
from mailer.store.models import Bounce, SuppressionReason
from tests.bounce_corpus import world
from tests.support.bounces import dsn, mail
from tests.support.cli import Cli
from tests.support.imap import ImapServer


@pytest.fixture
def loaded(session: Session, imap_server: ImapServer) -> ImapServer:
    """Three contacts, and an INBOX with a hard bounce, an auto-reply, garbage and a stranger."""
    w = world.build(session)
    session.commit()
    imap_server.append(dsn("kim.minji@news.example.kr", about=world.message_id(1)))
    imap_server.append(
        mail(
            "Automatic reply: festival", "Away until Monday.", sender="shin.eunji@corp.example.com"
        )
    )
    imap_server.append(b"X-Junk: \x00\x01\n\n")
    imap_server.append(dsn("nobody@unknown.example"))
    assert w.campaign.id
    return imap_server


def outcomes(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i["outcome"], i["email"] or "-") for i in data["items"]]


def test_imaps_moves_processed_messages_and_leaves_the_rest(
    cli: Cli, session: Session, loaded: ImapServer
) -> None:
    data = json.loads(cli("bounces", "process", loaded.url(), "--json").output)
    assert outcomes(data) == [
        ("hard", "kim.minji@news.example.kr"),
        ("autoreply", "shin.eunji@corp.example.com"),
        ("unparseable", "-"),
        ("unknown-address", "-"),
    ]
    assert data["acknowledged"] == "moved 2 message(s) to 'mailer-processed'"
    assert "secret" not in data["source"] and "****" in data["source"]
    assert "mailer-processed" in loaded.folders()
    inbox = loaded.folder("INBOX")
    assert len(inbox) == 2 and b"nobody@unknown.example" in inbox[1][1]
    # BODY.PEEK: what stays behind is not marked as read for the person who looks at it.
    assert all(b"\\Seen" not in flags for flags, _ in inbox)
    assert len(loaded.folder("mailer-processed")) == 2
    sup = get_suppression(session, "kim.minji@news.example.kr")
    assert sup is not None and sup.reason == SuppressionReason.HARD_BOUNCE
    session.rollback()
    # A second run sees only what was left, and counts nothing twice.
    again = json.loads(cli("bounces", "process", loaded.url(), "--json").output)
    assert outcomes(again) == [("unparseable", "-"), ("unknown-address", "-")]
    assert again["acknowledged"] == "nothing to move"
    assert session.scalar(select(func.count()).select_from(Bounce)) == 2


def test_dry_run_moves_and_records_nothing(cli: Cli, session: Session, loaded: ImapServer) -> None:
    data = json.loads(cli("bounces", "process", loaded.url(), "--dry-run", "--json").output)
    assert data["suppressed"] == ["kim.minji@news.example.kr"]
    assert data["acknowledged"] == "dry run: nothing moved"
    assert len(loaded.folder("INBOX")) == 4
    assert "mailer-processed" not in loaded.folders()
    assert session.scalar(select(func.count()).select_from(Bounce)) == 0
    assert get_suppression(session, "kim.minji@news.example.kr") is None


def test_flag_mode_and_a_folder_with_a_korean_name(
    cli: Cli, session: Session, loaded: ImapServer
) -> None:
    data = json.loads(cli("bounces", "process", loaded.url(after="flag"), "--json").output)
    assert data["acknowledged"] == "flagged 2 message(s) $MailerProcessed"
    flags = [f for f, _ in loaded.folder("INBOX")]
    assert [b"$MailerProcessed" in f for f in flags] == [True, True, False, False]
    session.rollback()
    again = json.loads(cli("bounces", "process", loaded.url(after="flag"), "--json").output)
    assert again["messages"] == 2
    session.rollback()
    loaded.append(mail("Out of office", "Back soon.", sender="oh.jinwoo@mail.example.kr"))
    moved = json.loads(cli("bounces", "process", loaded.url(processed="처리됨"), "--json").output)
    assert moved["acknowledged"] == "moved 1 message(s) to '처리됨'"
    assert "&zJi5rLQo-" in loaded.folders()  # modified UTF-7, as IMAP stores it


def test_starttls_and_plaintext_on_loopback(cli: Cli, session: Session, loaded: ImapServer) -> None:
    data = json.loads(
        cli("bounces", "process", loaded.url(scheme="imap"), "--dry-run", "--json").output
    )
    assert data["messages"] == 4
    plain = loaded.url(scheme="imap", tls="none").replace(f"ca_file={loaded.ca_file}&", "")
    data = json.loads(cli("bounces", "process", plain, "--dry-run", "--json").output)
    assert data["messages"] == 4


def test_refused_login_is_a_clear_error(cli: Cli, imap_server: ImapServer) -> None:
    result = cli("bounces", "process", imap_server.url(password="wrong"), expect=1)
    assert "the server refused the login for 'press'" in result.output
    assert "AUTHENTICATIONFAILED" in result.output or "Authentication failed" in result.output
    assert "wrong" not in result.output and "Traceback" not in result.output


def test_unreachable_server_untrusted_certificate_and_missing_folder(
    cli: Cli, imap_server: ImapServer, tmp_path: Path
) -> None:
    with pytest.raises(MailboxError, match="cannot connect"):
        open_source(
            f"imaps://press:secret@127.0.0.1:{imap_server.port + 0}/INBOX"
            "?ca_file=" + str(imap_server.ca_file)
        )  # imaps on the plain port
    no_ca = imap_server.url().split("?")[0]
    result = cli("bounces", "process", no_ca, expect=1)
    assert "cannot connect" in result.output and "CERTIFICATE_VERIFY_FAILED" in result.output
    result = cli("bounces", "process", imap_server.url("Nope"), expect=1)
    assert "cannot open the folder 'Nope'" in result.output


def test_a_refused_move_is_reported_after_the_results(
    cli: Cli, session: Session, loaded: ImapServer
) -> None:
    result = cli("bounces", "process", loaded.url(processed="bad/name"), "--json", expect=1)
    report = json.loads(result.output[: result.output.rindex("}") + 1])
    assert report["suppressed"] == ["kim.minji@news.example.kr"]
    assert "the messages are recorded, so the next run skips them" in report["acknowledge_error"]
    assert "Error: " in result.output and len(loaded.folder("INBOX")) == 4
    session.rollback()
    again = json.loads(cli("bounces", "process", loaded.url(), "--json").output)
    assert [i["outcome"] for i in again["items"]][:2] == ["duplicate", "duplicate"]
    assert again["acknowledged"] == "moved 2 message(s) to 'mailer-processed'"
