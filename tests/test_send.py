"""Sending against a real SMTP server on 127.0.0.1: the ledger's guarantees, on every engine."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.contact import add_contact, unsubscribe
from mailer.contacts.lists import create_list
from mailer.store.db import session_scope
from mailer.store.models import (
    Campaign,
    CampaignFigures,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Suppression,
)
from tests.support.cli import Cli
from tests.support.sending import PEOPLE, populate, use_smtp
from tests.support.smtp import Received, SmtpServer
from tests.support.web import html_part


def rfc2047(value: str) -> str:
    from email.header import decode_header, make_header

    return str(make_header(decode_header(value)))


def ledger(settings: Settings) -> dict[str, Delivery]:
    with session_scope(settings) as s:
        return {d.email: d for d in s.scalars(select(Delivery))}


def the_campaign(settings: Settings) -> Campaign:
    with session_scope(settings) as s:
        return s.scalars(select(Campaign)).one()


def test_complete_send(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--yes").output
    assert "recipients: 6" in out and "en: 3" in out and "ko: 3" in out
    assert "done" in out
    got = Counter(a.lower() for r in smtp.sink.received for a in r.rcpt_tos)
    assert got == Counter(e for e, _, _ in PEOPLE)
    rows = ledger(settings)
    assert {d.status.value for d in rows.values()} == {"sent"}
    assert {d.smtp_code for d in rows.values()} == {250}
    assert the_campaign(settings).status == CampaignStatus.DONE
    # The finished campaign's report figures were kept by the sender (delivery/reports.py).
    with session_scope(settings) as s:
        kept = s.get(CampaignFigures, the_campaign(settings).id)
        assert kept is not None and kept.figures["progress"]["counts"]["sent"] == 6
    # Each recipient got their own language, with the fallback for unknown ones.
    langs = {r.rcpt_tos[0]: r.message["Content-Language"] for r in smtp.sink.received}
    assert langs["kim.reporter@example.com"] == "ko"
    assert langs["choi@example.net"] == "ko"  # ko-KR -> ko
    assert langs["smith@example.org"] == "en"  # no French variant -> default
    assert langs["lee@example.com"] == "en"
    # Message-IDs are the ledger's.
    assert sorted(smtp.sink.message_ids()) == sorted(d.message_id for d in rows.values())
    # Sending again resumes the same campaign and sends nothing.
    again = cli("send", str(release), "--list", "press", "--yes").output
    assert "Nothing left to send" in again
    assert len(smtp.sink.received) == 6
    with session_scope(settings) as s:
        assert len(s.scalars(select(Campaign)).all()) == 1


def test_headers(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    long_from = "한울 커뮤니티 센터 (펜실베이니아 노스웨일스) " + "언론 담당 사무국"
    long_name = "김수한무거북이와두루미" + "삼천갑자동방삭치치카포" + "사리사리센타"
    settings = use_smtp(
        settings, tmp_path, smtp, reply_to="desk@hanul.example.org", from_name=long_from
    )
    populate(
        settings,
        [
            *PEOPLE,
            ("long@example.org", long_name, "ko"),
            ("newline@example.org", "Jane Doe\nThe Daily Times\r\n", "en"),
        ],
    )
    cli("send", str(release), "--list", "press", "--yes")
    for r in smtp.sink.received:
        msg = r.message
        raw = r.data
        for name in (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "Content-Language",
            "Reply-To",
        ):
            assert msg[name], name
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsub = str(msg["List-Unsubscribe"])
        assert re.fullmatch(
            r"<https://news\.hanul\.example\.org/u/[\w.-]+>,\s*"
            r"<mailto:press@hanul\.example\.org\?subject=unsubscribe%20[\w.-]+>",
            unsub,
        ), unsub
        assert str(msg["List-Id"]) == "Press 기자단 <press.hanul.example.org>"
        assert msg.get_content_type() == "multipart/alternative"
        parts = [p.get_content_type() for p in msg.iter_parts()]
        assert parts == ["text/plain", "text/html"]
        # Lines at most 998 octets; encoded words at most 75 characters; headers are ASCII.
        assert max(len(line) for line in raw.split(b"\n")) <= 998
        head = raw.split(b"\n\n", 1)[0]
        head.decode("ascii")
        for word in re.findall(rb"=\?[^?]+\?[bBqQ]\?[^?]*\?=", head):
            assert len(word) <= 75
        html_body, text_body = msg.get_body(("html",)), msg.get_body(("plain",))
        assert html_body is not None and text_body is not None
        html, text = html_body.get_content(), text_body.get_content()
        assert "__MAILER_" not in html and "__MAILER_" not in text
        assert unsub.split(">")[0][1:] in html.replace("&amp;", "&")
    assert len(smtp.sink.received) == 8
    odd = smtp.sink.to("newline@example.org")[0].message
    assert str(odd["To"]) == "Jane Doe The Daily Times <newline@example.org>"
    assert not odd.defects and odd["Message-ID"] and odd["List-Unsubscribe"]
    # RFC 2047 decoding (whitespace between adjacent encoded words is dropped; the email
    # package's modern parser keeps it, so use the strict decoder here).
    headers = dict(smtp.sink.to("long@example.org")[0].message.raw_items())
    assert rfc2047(headers["To"]) == f"{long_name} <long@example.org>"
    assert rfc2047(headers["From"]) == f"{long_from} <press@hanul.example.org>"
    kim = smtp.sink.to("kim.reporter@example.com")[0].message
    assert str(kim["To"]) == "김민수 <kim.reporter@example.com>"
    assert "한인" in str(kim["Subject"])
    jane = smtp.sink.to("jane.editor@example.net")[0].message
    assert str(jane["To"]) == "Jane O'Neil <jane.editor@example.net>"
    assert "Record turnout" in str(jane["Subject"])


def test_4xx_is_deferred_then_retried(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    smtp.sink.plan("park@example.org", "451 4.7.1 Greylisted, try again later")
    out = cli("send", str(release), "--list", "press", "--yes").output
    assert "deferred 1" in out and "retry" in out
    row = ledger(settings)["park@example.org"]
    assert row.status.value == "deferred" and row.smtp_code == 451
    assert "Greylisted" in (row.smtp_reply or "")
    assert row.next_attempt_at is not None and row.next_attempt_at > clock.now()
    assert the_campaign(settings).status == CampaignStatus.SENDING
    # Not due yet: a resume sends nothing; `retry` makes it due.
    cli("campaigns", "resume", "1")
    assert len(smtp.sink.to("park@example.org")) == 0
    cli("campaigns", "retry", "1")
    out = cli("campaigns", "resume", "1").output
    assert "done" in out
    assert len(smtp.sink.to("park@example.org")) == 1
    row = ledger(settings)["park@example.org"]
    assert row.status.value == "sent" and row.attempts == 2


def test_deferred_gives_up_after_the_give_up_age(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp, give_up_after=3600)
    populate(settings)
    smtp.sink.plan("park@example.org", "421 4.3.0 busy", "450 4.2.1 still busy")
    cli("send", str(release), "--list", "press", "--yes")
    assert ledger(settings)["park@example.org"].status.value == "deferred"
    later = datetime.now(UTC) + timedelta(hours=2)
    clock.set_clock(lambda: later)
    cli("campaigns", "resume", "1")
    row = ledger(settings)["park@example.org"]
    assert row.status.value == "failed" and "gave up" in (row.smtp_reply or "")
    assert the_campaign(settings).status == CampaignStatus.DONE


@pytest.mark.parametrize(
    "reply, suppressed",
    [
        ("550 5.1.1 <park@example.org>: Recipient address rejected: User unknown", True),
        ("554 5.7.1 Service unavailable; client host blocked using a blocklist", False),
        ("552 5.2.2 Mailbox full", False),
    ],
)
def test_5xx_fails_and_only_5_1_x_suppresses(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
    reply: str,
    suppressed: bool,
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    smtp.sink.plan("park@example.org", reply)
    cli("send", str(release), "--list", "press", "--yes")
    row = ledger(settings)["park@example.org"]
    assert row.status.value == "failed"
    assert row.smtp_code == int(reply[:3]) and reply[4:] in (row.smtp_reply or "")
    with session_scope(settings) as s:
        sup = s.scalar(select(Suppression).where(Suppression.email == "park@example.org"))
    assert (sup is not None) == suppressed
    if suppressed:
        assert sup is not None and sup.reason.value == "hard-bounce"
    assert the_campaign(settings).status == CampaignStatus.DONE
    assert len(smtp.sink.received) == 5


def test_rejection_after_data(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    smtp.sink.plan("lee@example.com", "data:554 5.6.0 Message content rejected")
    cli("send", str(release), "--list", "press", "--yes")
    row = ledger(settings)["lee@example.com"]
    assert row.status.value == "failed" and row.smtp_code == 554


def test_connection_dropped_after_data_is_in_doubt(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    smtp.sink.plan("park@example.org", "drop-after-data")
    out = cli("send", str(release), "--list", "press", "--yes").output
    assert "in doubt" in out
    rows = ledger(settings)
    assert rows["park@example.org"].status.value == "in_doubt"
    assert sum(d.status.value == "sent" for d in rows.values()) == 5
    # Never resent by itself: resuming leaves it alone and the campaign is not done.
    cli("campaigns", "resume", "1")
    assert smtp.sink.attempts["park@example.org"] == 1
    assert the_campaign(settings).status == CampaignStatus.SENDING
    # The operator resends it, with the same Message-ID.
    cli("campaigns", "resolve", "1", "--in-doubt", "resend")
    cli("campaigns", "resume", "1")
    [again] = smtp.sink.to("park@example.org")
    assert again.message_id == rows["park@example.org"].message_id
    assert the_campaign(settings).status == CampaignStatus.DONE


def test_resolve_mark_sent(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    smtp.sink.plan("park@example.org", "drop-after-data")
    cli("send", str(release), "--list", "press", "--yes")
    assert "1 in-doubt" in cli("campaigns", "resolve", "1", "--in-doubt", "mark-sent").output
    assert ledger(settings)["park@example.org"].status.value == "sent"
    assert the_campaign(settings).status == CampaignStatus.DONE


def test_expired_lease_becomes_in_doubt(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    """A row claimed by a sender on another machine that went silent: in_doubt after the lease."""
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    cli("send", str(release), "--list", "press", "--yes", "--limit", "2")
    with session_scope(settings) as s:
        row = s.scalars(
            select(Delivery).where(Delivery.status == "pending").order_by(Delivery.id)
        ).first()
        assert row is not None
        row.status = DeliveryStatus.CLAIMED
        row.claimed_by = "other-host:4242:1"
        row.lease_expires_at = clock.now() + timedelta(seconds=600)
        stuck = row.email
    cli("campaigns", "resume", "1")
    assert ledger(settings)[stuck].status.value == "claimed"  # lease still running
    assert smtp.sink.to(stuck) == []
    with session_scope(settings) as s:  # the lease runs out (leases use the database's clock)
        s.scalars(select(Delivery).where(Delivery.email == stuck)).one().lease_expires_at = (
            datetime.now(UTC) - timedelta(seconds=1)
        )
    cli("campaigns", "resume", "1")
    assert ledger(settings)[stuck].status.value == "in_doubt"
    assert smtp.sink.to(stuck) == []
    assert len(smtp.sink.received) == 5


def test_unsubscribe_during_the_send_stops_later_messages(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    # One batch holds every row: the unsubscribes land after the rows were claimed. The sender
    # looks at its claimed rows again with every commit of replies (here after each message).
    settings = use_smtp(settings, tmp_path, smtp, concurrency=1, batch_size=10, ledger_group_size=1)
    populate(settings)

    def on_first(received: Received) -> None:
        if len(smtp.sink.received) == 1:
            with session_scope(settings) as s:
                unsubscribe(s, "smith@example.org", "press", via="one-click")
                unsubscribe(s, "choi@example.net", None, via="link")

    smtp.sink.on_message = on_first
    cli("send", str(release), "--list", "press", "--yes")
    rows = ledger(settings)
    assert rows["smith@example.org"].status.value == "skipped"
    assert rows["choi@example.net"].status.value == "skipped"
    assert smtp.sink.to("smith@example.org") == [] and smtp.sink.to("choi@example.net") == []
    assert len(smtp.sink.received) == 4
    assert the_campaign(settings).status == CampaignStatus.DONE


def test_pause_and_resume(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp, concurrency=1, batch_size=10, ledger_group_size=2)
    populate(settings)

    def pause_after_two(received: Received) -> None:
        if len(smtp.sink.received) == 2:
            with session_scope(settings) as s:
                s.scalars(select(Campaign)).one().status = CampaignStatus.PAUSED

    smtp.sink.on_message = pause_after_two
    out = cli("send", str(release), "--list", "press", "--yes").output
    assert "paused" in out
    # The sender looks at the campaign with every commit of its replies (every
    # ledger_group_size messages): it stops within that many.
    assert 2 <= len(smtp.sink.received) <= 2 + 2
    assert the_campaign(settings).status == CampaignStatus.PAUSED
    counts = Counter(d.status.value for d in ledger(settings).values())
    assert counts["claimed"] == 0 and counts["pending"] == 6 - len(smtp.sink.received)
    smtp.sink.on_message = None
    cli("campaigns", "resume", "1")
    assert Counter(a for r in smtp.sink.received for a in r.rcpt_tos) == Counter(
        e for e, _, _ in PEOPLE
    )
    assert the_campaign(settings).status == CampaignStatus.DONE


def test_cancel(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    cli("send", str(release), "--list", "press", "--yes", "--limit", "2")
    assert "4 message(s) will not be sent" in cli("campaigns", "cancel", "1").output
    assert "cancelled" in cli("campaigns", "resume", "1", expect=1).output
    assert "cancelled" in cli("campaigns", "resolve", "1", "--in-doubt", "resend", expect=1).output
    assert len(smtp.sink.received) == 2
    # A cancelled campaign does not block a new one for the same audience, and the new one
    # skips the two who already have the release.
    out = cli("send", str(release), "--list", "press", "--yes").output
    assert "Planned campaign 2" in out and "recipients: 4" in out
    assert "already received this release: 2" in out
    got = Counter(a for r in smtp.sink.received for a in r.rcpt_tos)
    assert got == Counter(e for e, _, _ in PEOPLE)


def test_cancel_mid_batch_leaves_nothing_pending(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp, concurrency=1, batch_size=30, ledger_group_size=4)
    populate(settings, [(f"r{i}@example.org", f"R {i}", "en") for i in range(30)])

    def cancel_after_three(received: Received) -> None:
        if len(smtp.sink.received) == 3:
            with session_scope(settings) as s:
                from mailer.delivery.campaigns import cancel

                cancel(s, 1)

    smtp.sink.on_message = cancel_after_three
    cli("send", str(release), "--list", "press", "--yes")
    counts = Counter(d.status.value for d in ledger(settings).values())
    assert counts["pending"] == 0 and counts["claimed"] == 0
    assert counts["sent"] == len(smtp.sink.received) <= 3 + 4
    assert counts["cancelled"] == 30 - counts["sent"]


def test_overlapping_audiences_do_not_mail_anyone_twice(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    with session_scope(settings) as s:
        create_list(s, "wire", "Wire services")
        add_contact(s, "kim.reporter@example.com", "wire")
        add_contact(s, "ap@example.net", "wire", name="AP desk")
    cli("send", str(release), "--list", "press", "--yes")
    out = cli("send", str(release), "--list", "wire", "--yes").output
    assert "recipients: 1" in out
    got = Counter(a for r in smtp.sink.received for a in r.rcpt_tos)
    assert max(got.values()) == 1 and got["ap@example.net"] == 1


def test_a_refused_sender_stops_the_run_and_blames_nobody(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    smtp.sink.refuse_sender = "553 5.1.8 <press@hanul.example.org>: Sender address rejected"
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "refused the sender press@hanul.example.org" in out
    assert {d.status.value for d in ledger(settings).values()} == {"pending"}
    with session_scope(settings) as s:
        assert s.scalars(select(Suppression)).all() == []
    smtp.sink.refuse_sender = None
    cli("campaigns", "resume", "1")
    assert len(smtp.sink.received) == 6


def test_sender_address_codes_never_suppress_the_recipient() -> None:
    from mailer.delivery.transport import Outcome, classify

    assert classify(550, "5.1.1 User unknown").outcome == Outcome.BAD_ADDRESS
    assert classify(550, "5.1.10 Null MX").outcome == Outcome.BAD_ADDRESS
    assert classify(553, "5.1.8 Sender address rejected").outcome == Outcome.FAILED
    assert classify(550, "5.1.7 Bad sender mailbox syntax").outcome == Outcome.FAILED
    assert classify(550, "5.7.1 Blocked").outcome == Outcome.FAILED
    assert classify(450, "4.1.1 try later").outcome == Outcome.DEFERRED


def test_test_send(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    cli("send", str(release), "--test", "Me@Hanul.example.org")
    assert len(smtp.sink.received) == 2
    subjects = sorted(str(r.message["Subject"]) for r in smtp.sink.received)
    assert subjects == sorted(s for s in subjects if s.startswith(("[Test] ", "[테스트] ")))
    assert {r.message["Content-Language"] for r in smtp.sink.received} == {"en", "ko"}
    assert {r.rcpt_tos[0] for r in smtp.sink.received} == {"me@hanul.example.org"}
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).all() == []
        assert s.scalars(select(Delivery)).all() == []


def _with_front_matter(release: Path, extra: str) -> None:
    for f in release.parent.glob("*.md"):
        text = f.read_text(encoding="utf-8")
        f.write_text(text.replace("---\n", "---\n" + extra, 1), encoding="utf-8")


def test_embargo(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    _with_front_matter(release, f"embargo: {when.isoformat()}\n")
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "embargo" in out and smtp.sink.received == []
    cli("send", str(release), "--test", "me@hanul.example.org")
    # The test copy says what a press list's early copy says, in each variant's language.
    subjects = {
        r.message["Content-Language"]: str(r.message["Subject"]) for r in smtp.sink.received
    }
    assert subjects["en"].startswith("[Test] [EMBARGOED UNTIL ")
    assert subjects["ko"].startswith("[테스트] [엠바고: ")
    with session_scope(settings) as s:
        assert s.scalars(select(Delivery)).all() == []
    clock.set_clock(lambda: when + timedelta(minutes=1))
    cli("send", str(release), "--list", "press", "--yes")
    assert len(smtp.sink.received) == 2 + 6


def test_expiry_cancels_what_is_left(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    _with_front_matter(release, f"expires: {expires.isoformat()}\n")
    cli("send", str(release), "--list", "press", "--yes", "--limit", "2")
    clock.set_clock(lambda: expires + timedelta(minutes=1))
    cli("campaigns", "resume", "1")
    counts = Counter(d.status.value for d in ledger(settings).values())
    assert counts == {"sent": 2, "cancelled": 4}
    assert len(smtp.sink.received) == 2
    assert the_campaign(settings).status == CampaignStatus.DONE


def test_changed_release_is_not_sent_to_everyone_again(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    cli("send", str(release), "--list", "press", "--yes")
    text = release.read_text(encoding="utf-8")
    release.write_text(text + "\nA correction.\n", encoding="utf-8")
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "earlier version" in out and "--new-version" in out
    assert len(smtp.sink.received) == 6
    cli("send", str(release), "--list", "press", "--yes", "--new-version")
    assert len(smtp.sink.received) == 12


def test_dry_run_sends_and_stores_nothing(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--dry-run").output
    assert "built 6 messages" in out
    assert smtp.sink.received == []
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).all() == []


def test_outbox(settings: Settings, tmp_path: Path, release: Path, cli: Cli) -> None:
    import mailbox

    populate(settings)
    cli("send", str(release), "--list", "press", "--yes")
    box = mailbox.Maildir(settings.outbox_dir, create=False)
    messages = list(box)
    assert len(messages) == 6
    delivered = {m["Delivered-To"] for m in messages}
    assert delivered == {e for e, _, _ in PEOPLE}
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in messages)


def test_decline_stores_nothing(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    populate(settings)
    out = cli("send", str(release), "--list", "press", expect=1).output
    assert "--yes" in out
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).all() == []


@pytest.mark.parametrize("problem", ["missing-file", "unknown-list"])
def test_bad_input_is_a_clear_error(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli, problem: str
) -> None:
    populate(settings)
    if problem == "missing-file":
        out = cli("send", str(tmp_path / "nope.md"), "--list", "press", "--yes", expect=1).output
    else:
        out = cli("send", str(release), "--list", "nosuch", "--yes", expect=1).output
        assert "nosuch" in out
    assert out.startswith("Error:") and "Traceback" not in out


def test_smtputf8_address_excluded_when_server_lacks_it(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    server = SmtpServer(smtputf8=False).start()
    try:
        settings = use_smtp(settings, tmp_path, server)
        populate(settings, [*PEOPLE, ("김기자@example.com", "김기자", "ko")])
        out = cli("send", str(release), "--list", "press", "--yes").output
        assert "needs SMTPUTF8: 1" in out
        row = ledger(settings)["김기자@example.com"]
        assert row.status.value == "skipped" and "SMTPUTF8" in (row.smtp_reply or "")
        assert len(server.sink.received) == 6
    finally:
        server.stop()


def test_smtputf8_address_sent_when_server_offers_it(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings, [("김기자@example.com", "김기자", "ko")])
    cli("send", str(release), "--list", "press", "--yes")
    [got] = smtp.sink.received
    assert got.rcpt_tos == ["김기자@example.com"]
    assert ledger(settings)["김기자@example.com"].status.value == "sent"


def test_campaigns_show_json_and_report(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    smtp.sink.plan("park@example.org", "550 5.1.1 User unknown")
    cli("send", str(release), "--list", "press", "--yes")
    data = json.loads(cli("campaigns", "show", "1", "--json").output)
    assert data["counts"]["sent"] == 5 and data["counts"]["failed"] == 1
    assert data["by_language"]["ko"] == {"sent": 2, "failed": 1}
    assert data["replies"][0]["code"] == 550
    assert data["status"] == "done"
    listed = json.loads(cli("campaigns", "ls", "--json").output)
    assert [c["id"] for c in listed] == [1]
    report = tmp_path / "report.csv"
    cli("campaigns", "report", "1", "--csv", str(report))
    lines = report.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("email,language,list,status")
    assert len(lines) == 7
    assert any("park@example.org" in line and "failed" in line and "550" in line for line in lines)


def test_sqlite_refuses_a_second_sender(settings: Settings, session: Session) -> None:
    from mailer.delivery.lock import acquire_sender_lock
    from mailer.errors import AlreadyRunningError

    if settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL allows many senders")
    with session.begin():
        acquire_sender_lock(session, "otherhost:1")
    with pytest.raises(AlreadyRunningError, match="only one sender"), session.begin():
        acquire_sender_lock(session, "thishost:2")


def test_release_with_check_errors_is_not_sent(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp, postal_address="")
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "release check" in out and "postal address" in out
    assert smtp.sink.received == []
    with session_scope(settings) as s:
        assert s.scalars(select(Campaign)).all() == []


def test_second_sender_on_sqlite_is_refused_by_the_cli(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    from mailer.store.models import Lock

    if settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL allows many senders")
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    with session_scope(settings) as s:
        s.add(
            Lock(
                name="sender",
                holder="press-laptop:4242",
                expires_at=clock.now() + timedelta(seconds=60),
            )
        )
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "another sender is running (press-laptop:4242)" in out
    assert smtp.sink.received == []
    with session_scope(settings) as s:
        assert {d.status.value for d in s.scalars(select(Delivery))} == {"pending"}


def test_send_inlines_each_language_it_sends_once(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The release check of `mailer send` renders the variants the audience receives, with the
    campaign's footer, and the send uses them: premailer runs once per language sent."""
    import premailer

    calls: list[str] = []
    real = premailer.Premailer.transform

    def counting(self: premailer.Premailer, *args: object, **kwargs: object) -> str:
        out = str(real(self, *args, **kwargs))
        calls.append('lang="ko"' if 'lang="ko"' in out else 'lang="en"')
        return out

    monkeypatch.setattr(premailer.Premailer, "transform", counting)
    settings = use_smtp(settings, tmp_path, smtp)
    populate(settings)
    english = [(f"en{i}@example.org", f"Reader {i}", "en") for i in range(3)]
    populate(settings, english, slug="wire")
    cli("send", str(release), "--list", "press", "--yes")
    assert sorted(calls) == ['lang="en"', 'lang="ko"']
    calls.clear()
    cli("send", str(release), "--list", "wire", "--yes")
    assert calls == ['lang="en"']  # nobody on the wire list reads Korean: never rendered
    got = Counter(a for r in smtp.sink.received for a in r.rcpt_tos)
    assert set(got) == {e for e, _, _ in PEOPLE + english} and max(got.values()) == 1
    footer = {r.rcpt_tos[0]: html_part(r.message) for r in smtp.sink.received}
    assert "Press 기자단" in footer["park@example.org"]
