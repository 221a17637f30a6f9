"""Parsing without a database: status codes, report forms, IMAP URLs and mbox splitting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailer.bounces.parse import Unparseable, classify, parse
from mailer.bounces.sources import MailboxError, MboxSource, encode_mutf7, parse_imap_url


@pytest.mark.parametrize(("action", "status", "diagnostic", "kind", "code"), [
    ("failed", "5.1.1", "smtp; 550 5.1.1 User unknown", "hard", "5.1.1"),
    ("failed", "5.1.10", "smtp; 550 5.1.10 RecipientNotFound", "hard", "5.1.10"),
    ("failed", "5.0.0", "smtp; 550 5.1.1 <x@y>... User unknown", "hard", "5.1.1"),
    ("failed", "5.0.0", "smtp; 550 Requested action not taken: mailbox unavailable", "soft",
     "5.0.0"),
    ("failed", "5.0.0", "smtp; 550 user unknown", "hard", "5.0.0"),
    ("failed", "5.0.0", "smtp; 550 user unknown, blocked by policy", "block", "5.0.0"),
    ("failed", "5.2.2", "smtp; 552 5.2.2 Mailbox full", "soft", "5.2.2"),
    ("failed", "4.2.2", "smtp; 452 4.2.2 over quota", "soft", "4.2.2"),
    ("failed", "5.7.1", "smtp; 550 5.7.1 user unknown", "block", "5.7.1"),  # the code wins
    ("failed", "5.7.26", "smtp; 550 5.7.26 unauthenticated", "block", "5.7.26"),
    ("failed", "4.7.0", "smtp; 421 4.7.0 try again later", "block", "4.7.0"),
    ("failed", "5.6.0", "smtp; 554 5.6.0 content rejected", "block", "5.6.0"),
    ("failed", "5.1.8", "smtp; 553 5.1.8 sender domain not found", "block", "5.1.8"),
    ("failed", "5.4.4", "smtp; 554 5.4.4 unrouteable", "soft", "5.4.4"),
    ("failed", None, None, "soft", None),
    ("delayed", "4.4.1", "connection timed out", "delayed", "4.4.1"),
    ("delayed", "5.1.1", "smtp; 550 5.1.1 User unknown", "delayed", "5.1.1"),
    ("relayed", "2.0.0", "smtp; 250 ok", "ignored", "2.0.0"),
    ("delivered", None, None, "ignored", None),
])
def test_classify(action: str, status: str | None, diagnostic: str | None, kind: str,
                  code: str | None) -> None:
    got_kind, got_code, why = classify(action, status, diagnostic, permanent=True)
    assert (got_kind, got_code) == (kind, code), why


def test_without_a_code_only_a_permanent_failure_can_be_hard() -> None:
    assert classify("failed", None, "user unknown", permanent=True)[0] == "hard"
    assert classify("failed", None, "user unknown", permanent=False)[0] == "soft"
    assert classify("failed", None, "451 user unknown, try later", permanent=True)[0] == "soft"


def report(headers: str, body: str = "") -> bytes:
    return (headers.strip() + "\n\n" + body).encode()


def test_garbage_and_truncation_raise_unparseable() -> None:
    for raw in (b"", b"   \n", b"\x00\x01\x02 binary", b"just words\nmore words\n"):
        with pytest.raises(Unparseable):
            parse(raw)
    cut = report("From: a@b.example\nSubject: x\nContent-Type: multipart/report; boundary=Q",
                 "--Q\nContent-Type: text/plain\n\nhello\n")
    with pytest.raises(Unparseable, match="truncated"):
        parse(cut)


def test_arf_without_feedback_type_and_dsn_without_recipient_are_unrecognised() -> None:
    arf = report(
        "From: fbl@isp.example\nSubject: r\nMessage-ID: <a@b>\n"
        "Content-Type: multipart/report; report-type=feedback-report; boundary=F",
        "--F\nContent-Type: message/feedback-report\n\nUser-Agent: x\nVersion: 1\n\n--F--\n")
    assert parse(arf).form == "unrecognised"
    dsn = report(
        "From: MAILER-DAEMON@mx.example\nSubject: Undelivered\nMessage-ID: <d@b>\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=D",
        "--D\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        "Action: failed\nStatus: 5.1.1\n\n--D--\n")
    parsed = parse(dsn)
    assert parsed.form == "unrecognised" and "names no recipient" in parsed.note


def test_a_bounce_that_says_auto_replied_is_still_a_bounce() -> None:
    raw = report(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example>\nSubject: Mail delivery failed\n"
        "Auto-Submitted: auto-replied\nX-Failed-Recipients: kim@news.example\nMessage-ID: <e@x>",
        "This is a permanent error. The following address(es) failed:\n\n"
        "  kim@news.example\n    550 5.1.1 unknown user\n")
    parsed = parse(raw)
    assert parsed.form == "bounce"
    assert [(r.final, r.kind, r.status) for r in parsed.recipients] == [
        ("kim@news.example", "hard", "5.1.1")]


def test_unsubscribe_subject_forms() -> None:
    token = "WzEsMiwzXQ.AbCdEf_-12"
    for subject in (f"unsubscribe {token}", f"Re: Unsubscribe {token}",
                    f"RE: Fwd: unsubscribe: {token}", f"답장: unsubscribe {token}"):
        parsed = parse(report(f"From: a@b.example\nSubject: {subject}\nMessage-ID: <u@b>"))
        assert (parsed.form, parsed.tokens) == ("unsubscribe", [token]), subject
    for subject, body in (("Unsubscribe", ""), ("Re: remove me", ""), ("수신 거부", ""),
                          ("hello", "Please unsubscribe me\n")):
        parsed = parse(report(f"From: a@b.example\nSubject: {subject}\nMessage-ID: <u@b>",
                              body))
        assert parsed.form == "unsubscribe" and parsed.intent, subject
    # The word inside a sentence, or in quoted text, is not a request.
    for subject, body in (("How do readers unsubscribe?", ""),
                          ("Re: festival", "> unsubscribe WzEsMiwzXQ.AbCdEf\nThanks!\n")):
        parsed = parse(report(f"From: a@b.example\nSubject: {subject}\nMessage-ID: <u@b>",
                              body))
        assert parsed.form == "unrecognised", subject


def test_modified_utf7_folder_names() -> None:
    assert encode_mutf7("mailer-processed") == "mailer-processed"
    assert encode_mutf7("A&B") == "A&-B"
    # The standard library's UTF-7 is the same base64 of UTF-16 with '+' instead of '&'.
    assert encode_mutf7("처리됨") == "처리됨".encode("utf-7").decode().replace("+", "&")
    assert encode_mutf7("Bounces/처리") == "Bounces/&zJi5rA-"


def test_imap_urls() -> None:
    u = parse_imap_url("imaps://bounce%40example.org:p%40ss@mail.example.org/Bounces?after=flag",
                       env={})
    assert (u.tls, u.port, u.user, u.password, u.folder, u.after) == (
        "ssl", 993, "bounce@example.org", "p@ss", "Bounces", "flag")
    assert "p@ss" not in u.label and "****" in u.label
    u = parse_imap_url("imap://me@127.0.0.1:1143?tls=none", env={"MAILER_IMAP_PASSWORD": "pw"})
    assert (u.tls, u.port, u.password, u.folder, u.processed_folder) == (
        "none", 1143, "pw", "INBOX", "mailer-processed")
    for bad, message in (("imaps://mail.example.org/INBOX", "USER:PASSWORD"),
                         ("imaps://me@mail.example.org/INBOX", "no password"),
                         ("imaps://me:pw@mail.example.org/?after=delete", "after"),
                         ("imap://me:pw@mail.example.org/?tls=maybe", "tls"),
                         ("imaps://me:pw@mail.example.org/?colour=red", "unknown option")):
        with pytest.raises(MailboxError, match=message):
            parse_imap_url(bad, env={})


def test_mbox_splitting_unquotes_from_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.mbox"
    path.write_bytes(
        b"From a@b Mon Mar  3 09:00:00 2025\nSubject: one\n\n>From the editor\nFrom here on\n\n"
        b"From c@d Mon Mar  3 09:01:00 2025\nSubject: two\n\nbody\n\n"
    )
    got = list(MboxSource(path).messages())
    assert [m.key for m in got] == ["1 (line 1)", "2 (line 7)"]
    assert got[0].raw == b"Subject: one\n\nFrom the editor\nFrom here on\n\n"
    assert got[1].raw == b"Subject: two\n\nbody\n\n"
    path.write_bytes(b"Subject: no From line\n\nbody\n")
    [only] = list(MboxSource(path).messages())
    assert only.raw is None and "not an mbox file" in (only.problem or "")


def test_a_heuristic_that_crashes_is_reported_not_raised() -> None:
    # flufl.bounce's Yale detector raises IndexError on a bounce without a From header.
    raw = report("Subject: Undelivered Mail Returned to Sender\nMessage-ID: <nf@x>",
                 "<kim@news.example>: 550 5.1.1 User unknown\n")
    parsed = parse(raw)
    assert parsed.form == "bounce"
    assert "flufl.bounce failed on this message: IndexError" in parsed.note
    # No address from the text heuristics: VERP or the Message-ID may still name the recipient.
    assert [(r.final, r.kind) for r in parsed.recipients] == [(None, "hard")]
    # flufl.bounce logs the failure with a traceback; outside pytest's log capture, that would
    # reach the terminal through logging's last-resort handler.
    code = ("import sys; from mailer.bounces.parse import parse; "
            "print(parse(sys.stdin.buffer.read()).form)")
    done = subprocess.run([sys.executable, "-c", code], input=raw, capture_output=True,
                          check=True)
    assert done.stdout.strip() == b"bounce"
    assert b"Traceback" not in done.stderr, done.stderr.decode()
