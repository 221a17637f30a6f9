"""Parsing without a database: status codes, report forms, IMAP URLs and mbox splitting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mailer.bounces.parse import Unparseable, classify, parse
from mailer.bounces.reasons import smtp_stage
from mailer.bounces.sources import MailboxError, MboxSource, encode_mutf7, parse_imap_url


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "kind", "code"),
    [
        ("failed", "5.1.1", "smtp; 550 5.1.1 User unknown", "hard", "5.1.1"),
        ("failed", "5.1.10", "smtp; 550 5.1.10 RecipientNotFound", "hard", "5.1.10"),
        ("failed", "5.0.0", "smtp; 550 5.1.1 <x@y>... User unknown", "hard", "5.1.1"),
        (
            "failed",
            "5.0.0",
            "smtp; 550 Requested action not taken: mailbox unavailable",
            "soft",
            "5.0.0",
        ),
        # "User unknown" with nothing that ties it to the address (no x.1.x code, no stage) is what
        # a recipient's filter answers too (Japanese carriers): kept. At RCPT TO it is the address.
        ("failed", "5.0.0", "smtp; 550 user unknown", "soft", "5.0.0"),
        ("failed", "5.0.0", "smtp;550 : User unknown", "soft", "5.0.0"),
        (
            "failed",
            "5.0.0",
            "smtp; 550 user unknown (in reply to RCPT TO command)",
            "hard",
            "5.0.0",
        ),
        ("failed", "5.1.0", "smtp; 550 5.1.0 <a@x.example>: unknown recipient", "hard", "5.1.0"),
        ("failed", "5.0.0", "smtp; 550 user unknown, blocked by policy", "block", "5.0.0"),
        ("failed", "5.2.2", "smtp; 552 5.2.2 Mailbox full", "soft", "5.2.2"),
        ("failed", "4.2.2", "smtp; 452 4.2.2 over quota", "soft", "4.2.2"),
        ("failed", "5.7.1", "smtp; 550 5.7.1 user unknown", "block", "5.7.1"),  # the code wins
        ("failed", "5.7.26", "smtp; 550 5.7.26 unauthenticated", "block", "5.7.26"),
        ("failed", "4.7.0", "smtp; 421 4.7.0 try again later", "block", "4.7.0"),
        ("failed", "5.6.0", "smtp; 554 5.6.0 content rejected", "block", "5.6.0"),
        ("failed", "5.1.8", "smtp; 553 5.1.8 sender domain not found", "block", "5.1.8"),
        # x.4.4 "unable to route": the domain has no mail server at all, so the address is dead.
        ("failed", "5.4.4", "smtp; 554 5.4.4 unrouteable", "hard", "5.4.4"),
        # The remote server's own code wins over the reporting MTA's summary (Sendmail).
        ("failed", "5.1.1", "smtp; 550 5.7.1 IP address blacklisted", "block", "5.7.1"),
        # After the end of DATA a bare "user unknown" is a content filter; at RCPT TO it is not.
        (
            "failed",
            "5.0.0",
            "smtp; 550 Unknown user (in reply to end of DATA command)",
            "soft",
            "5.0.0",
        ),
        (
            "failed",
            "5.0.0",
            "smtp; 550 Unknown user (in reply to RCPT TO command)",
            "hard",
            "5.0.0",
        ),
        # A refusal of MAIL FROM is about our sender, whatever it says.
        (
            "failed",
            None,
            "SMTP error from remote mail server after MAIL FROM:<a@b.example>: "
            "550 Unroutable sender address",
            "block",
            None,
        ),
        # Words inside an address mean nothing ("filtered@..."); the text around it does.
        ("failed", "5.1.1", "smtp; 550 5.1.1 <filtered@x.example>: User unknown", "hard", "5.1.1"),
        # DNS trouble is not proof that the domain is gone.
        (
            "failed",
            "5.4.4",
            "X-Postfix; Name service error for name=x.example type=MX: "
            "Malformed or unexpected name server reply",
            "soft",
            "5.4.4",
        ),
        (
            "failed",
            "5.4.4",
            "X-Postfix; Host or domain name not found. Name service error for "
            "name=x.example type=A: Host not found",
            "hard",
            "5.4.4",
        ),
        # A full mailbox is never hard, even under 5.1.1; a disabled one is soft unless 5.1.1.
        (
            "failed",
            "5.2.1",
            "smtp; 550 5.2.1 The email account that you tried to reach is disabled",
            "soft",
            "5.2.1",
        ),
        # x.2.1 is the mailbox's state: its "user unknown" is a filter's unless said at RCPT TO.
        ("failed", "5.2.1", "smtp; 550 5.2.1 <k@x.example>... User Unknown", "soft", "5.2.1"),
        (
            "failed",
            "5.2.1",
            "SMTP error from remote server after RCPT command: 550 5.2.1 "
            "<k@x.example>... User Unknown",
            "hard",
            "5.2.1",
        ),
        # At RCPT TO the server judges the recipient: its words outweigh a policy code (Sendmail
        # reports Status 5.7.1 for a bare "553 Invalid recipient"), not words about spam.
        (
            "failed",
            "5.7.1",
            "smtp; 553 Invalid recipient <a@x.example> (in reply to RCPT TO command)",
            "hard",
            "5.7.1",
        ),
        (
            "failed",
            "5.7.1",
            "smtp; 550 5.7.1 user unknown, spam refused (in reply to RCPT TO command)",
            "block",
            "5.7.1",
        ),
        # Office 365's directory-based edge blocking names a recipient it does not have, at RCPT TO.
        (
            "failed",
            "5.4.1",
            "smtp; 550 5.4.1 Recipient address rejected: Access denied. (in reply "
            "to RCPT TO command)",
            "hard",
            "5.4.1",
        ),
        (
            "failed",
            "5.4.1",
            "smtp; 550 5.4.1 Recipient address rejected: Access denied.",
            "soft",
            "5.4.1",
        ),
        # RFC 7505: the destination host takes no mail (Sendmail reports it as 5.7.27).
        ("failed", "5.7.27", "SMTP; 550 Host does not accept mail", "hard", "5.7.27"),
        # The receiving system's own directory verdicts need no code or stage (Exchange 2003, Yahoo
        # refusing an unknown user after DATA, Lotus Notes).
        (
            "failed",
            "5.0.0",
            "The recipient name is not recognized MSEXCH:IMS:CAT:NEKO 0 (000C05A6)",
            "hard",
            "5.0.0",
        ),
        (
            "failed",
            "5.0.0",
            "SMTP; 554 delivery error: dd This user doesn't have a yahoo.example "
            "account (a@yahoo.example) [0] (in reply to end of DATA command)",
            "hard",
            "5.0.0",
        ),
        ("failed", None, "User not listed in public Name & Address Book", "hard", None),
        # RFC 7504: 521 and 556 say the host or domain takes no mail at all.
        (
            "failed",
            None,
            "521 5.3.2 <a@x.example>: System not accepting network messages",
            "hard",
            "5.3.2",
        ),
        # Other languages' words for the same things.
        (
            "failed",
            None,
            "550 존재하지 않는 계정입니다 (in reply to RCPT TO command)",
            "hard",
            None,
        ),
        ("failed", None, "552 메일함이 가득 찼습니다", "soft", None),
        ("failed", None, "550 Empfänger unbekannt (in reply to RCPT TO command)", "hard", None),
        ("failed", None, "552 Boîte aux lettres pleine", "soft", None),
        ("failed", None, None, "soft", None),
        ("delayed", "4.4.1", "connection timed out", "delayed", "4.4.1"),
        ("delayed", "5.1.1", "smtp; 550 5.1.1 User unknown", "delayed", "5.1.1"),
        ("relayed", "2.0.0", "smtp; 250 ok", "ignored", "2.0.0"),
        ("delivered", None, None, "ignored", None),
    ],
)
def test_classify(
    action: str, status: str | None, diagnostic: str | None, kind: str, code: str | None
) -> None:
    got_kind, got_code, why = classify(action, status, diagnostic, permanent=True)
    assert (got_kind, got_code) == (kind, code), why


def test_without_a_code_only_a_permanent_failure_can_be_hard() -> None:
    at_rcpt = "user unknown (in reply to RCPT TO command)"
    assert classify("failed", None, at_rcpt, permanent=True)[0] == "hard"
    assert classify("failed", None, at_rcpt, permanent=False)[0] == "soft"
    assert classify("failed", None, "451 user unknown, try later", permanent=True)[0] == "soft"


def report(headers: str, body: str = "") -> bytes:
    return (headers.strip() + "\n\n" + body).encode()


def test_garbage_and_truncation_raise_unparseable() -> None:
    for raw in (b"", b"   \n", b"\x00\x01\x02 binary", b"just words\nmore words\n"):
        with pytest.raises(Unparseable):
            parse(raw)
    cut = report(
        "From: a@b.example\nSubject: x\nContent-Type: multipart/report; boundary=Q",
        "--Q\nContent-Type: text/plain\n\nhello\n",
    )
    with pytest.raises(Unparseable, match="truncated"):
        parse(cut)


def test_arf_without_feedback_type_and_dsn_without_recipient_are_unrecognised() -> None:
    arf = report(
        "From: fbl@isp.example\nSubject: r\nMessage-ID: <a@b>\n"
        "Content-Type: multipart/report; report-type=feedback-report; boundary=F",
        "--F\nContent-Type: message/feedback-report\n\nUser-Agent: x\nVersion: 1\n\n--F--\n",
    )
    assert parse(arf).form == "unrecognised"
    dsn = report(
        "From: MAILER-DAEMON@mx.example\nSubject: Undelivered\nMessage-ID: <d@b>\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=D",
        "--D\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        "Action: failed\nStatus: 5.1.1\n\n--D--\n",
    )
    parsed = parse(dsn)
    assert parsed.form == "unrecognised" and "names no recipient" in parsed.note


def test_a_bounce_that_says_auto_replied_is_still_a_bounce() -> None:
    raw = report(
        "From: Mail Delivery System <MAILER-DAEMON@mx.example>\nSubject: Mail delivery failed\n"
        "Auto-Submitted: auto-replied\nX-Failed-Recipients: kim@news.example\nMessage-ID: <e@x>",
        "This is a permanent error. The following address(es) failed:\n\n"
        "  kim@news.example\n    550 5.1.1 unknown user\n",
    )
    parsed = parse(raw)
    assert parsed.form == "bounce"
    assert [(r.final, r.kind, r.status) for r in parsed.recipients] == [
        ("kim@news.example", "hard", "5.1.1")
    ]


def test_unsubscribe_subject_forms() -> None:
    token = "WzEsMiwzXQ.AbCdEf_-12"
    for subject in (
        f"unsubscribe {token}",
        f"Re: Unsubscribe {token}",
        f"RE: Fwd: unsubscribe: {token}",
        f"답장: unsubscribe {token}",
    ):
        parsed = parse(report(f"From: a@b.example\nSubject: {subject}\nMessage-ID: <u@b>"))
        assert (parsed.form, parsed.tokens) == ("unsubscribe", [token]), subject
    for subject, body in (
        ("Unsubscribe", ""),
        ("Re: remove me", ""),
        ("수신 거부", ""),
        ("hello", "Please unsubscribe me\n"),
    ):
        parsed = parse(report(f"From: a@b.example\nSubject: {subject}\nMessage-ID: <u@b>", body))
        assert parsed.form == "unsubscribe" and parsed.intent, subject
    # The word inside a sentence, or in quoted text, is not a request.
    for subject, body in (
        ("How do readers unsubscribe?", ""),
        ("Re: festival", "> unsubscribe WzEsMiwzXQ.AbCdEf\nThanks!\n"),
    ):
        parsed = parse(report(f"From: a@b.example\nSubject: {subject}\nMessage-ID: <u@b>", body))
        assert parsed.form == "unrecognised", subject


def test_modified_utf7_folder_names() -> None:
    assert encode_mutf7("mailer-processed") == "mailer-processed"
    assert encode_mutf7("A&B") == "A&-B"
    # The standard library's UTF-7 is the same base64 of UTF-16 with '+' instead of '&'.
    assert encode_mutf7("처리됨") == "처리됨".encode("utf-7").decode().replace("+", "&")
    assert encode_mutf7("Bounces/처리") == "Bounces/&zJi5rA-"


def test_imap_urls() -> None:
    u = parse_imap_url(
        "imaps://bounce%40example.org:p%40ss@mail.example.org/Bounces?after=flag", env={}
    )
    assert (u.tls, u.port, u.user, u.password, u.folder, u.after) == (
        "ssl",
        993,
        "bounce@example.org",
        "p@ss",
        "Bounces",
        "flag",
    )
    assert "p@ss" not in u.label and "****" in u.label
    u = parse_imap_url("imap://me@127.0.0.1:1143?tls=none", env={"MAILER_IMAP_PASSWORD": "pw"})
    assert (u.tls, u.port, u.password, u.folder, u.processed_folder) == (
        "none",
        1143,
        "pw",
        "INBOX",
        "mailer-processed",
    )
    for bad, message in (
        ("imaps://mail.example.org/INBOX", "USER:PASSWORD"),
        ("imaps://me@mail.example.org/INBOX", "no password"),
        ("imaps://me:pw@mail.example.org/?after=delete", "after"),
        ("imap://me:pw@mail.example.org/?tls=maybe", "tls"),
        ("imaps://me:pw@mail.example.org/?colour=red", "unknown option"),
    ):
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
    # flufl.bounce is asked only when the text names no address.
    raw = report(
        "Subject: Undelivered Mail Returned to Sender\nMessage-ID: <nf@x>",
        "550 5.1.1 User unknown\n",
    )
    parsed = parse(raw)
    assert parsed.form == "bounce"
    assert "flufl.bounce failed on this message: IndexError" in parsed.note
    # No address anywhere: VERP or the Message-ID may still name the recipient.
    assert [(r.final, r.kind) for r in parsed.recipients] == [(None, "hard")]
    # flufl.bounce logs the failure with a traceback; outside pytest's log capture, that would
    # reach the terminal through logging's last-resort handler.
    code = (
        "import sys; from mailer.bounces.parse import parse; "
        "print(parse(sys.stdin.buffer.read()).form)"
    )
    done = subprocess.run([sys.executable, "-c", code], input=raw, capture_output=True, check=True)
    assert done.stdout.strip() == b"bounce"
    assert b"Traceback" not in done.stderr, done.stderr.decode()


def test_the_text_names_the_failed_address_when_flufl_bounce_cannot() -> None:
    raw = report(
        "Subject: Undelivered Mail Returned to Sender\nMessage-ID: <nf2@x>",
        "<kim@news.example>: 550 5.1.1 User unknown\n",
    )
    parsed = parse(raw)
    assert [(r.final, r.kind) for r in parsed.recipients] == [("kim@news.example", "hard")]


def test_amazon_ses_notifications_by_mail() -> None:
    bounce = report(
        "From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message\nMessage-ID: <s1@x>",
        '{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":'
        '[{"emailAddress":"kim@news.example","action":"failed","status":"5.1.1",'
        '"diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},"mail":{"messageId":"abc"}}\n',
    )
    parsed = parse(bounce)
    assert parsed.form == "dsn" and parsed.original_ids == ["<abc@email.amazonses.com>"]
    assert [(r.final, r.kind, r.status) for r in parsed.recipients] == [
        ("kim@news.example", "hard", "5.1.1")
    ]
    complaint = report(
        "From: no-reply@sns.amazonaws.com\nSubject: AWS Notification Message\nMessage-ID: <s2@x>",
        '{"notificationType":"Complaint","complaint":{"complainedRecipients":'
        '[{"emailAddress":"lee@daily.example"}],"complaintFeedbackType":"abuse"}}\n',
    )
    parsed = parse(complaint)
    assert parsed.form == "arf" and [(r.original, r.kind) for r in parsed.recipients] == [
        ("lee@daily.example", "complaint")
    ]


def test_an_old_hotmail_complaint_names_the_recipient_in_the_copy() -> None:
    raw = report(
        "From: staff@hotmail.example\nSubject: complaint about message from 192.0.2.1\n"
        "Message-ID: <j@x>\nContent-Type: multipart/mixed; boundary=B",
        "--B\nContent-Type: message/rfc822\n\nX-HmXmrOriginalRecipient: kim@news.example\n"
        "From: press@hanul.example\nTo: kim@news.example\nMessage-ID: <c1@hanul.example>\n\n"
        "Hello\n--B--\n",
    )
    parsed = parse(raw)
    assert parsed.form == "arf" and parsed.original_ids == ["<c1@hanul.example>"]
    assert [(r.original, r.kind) for r in parsed.recipients] == [("kim@news.example", "complaint")]


def dsn_fields(fields: str, *, tail: str = "--D--\n") -> bytes:
    return report(
        "From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\nMessage-ID: <d2@x>\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=D",
        "--D\nContent-Type: text/plain\n\nThe mail system\n\n"
        "--D\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        + fields
        + "\n"
        + tail,
    )


def test_recipients_run_together_in_one_block_are_read_one_by_one() -> None:
    parsed = parse(
        dsn_fields(
            "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.2.2\n"
            "Final-Recipient: rfc822; b@x.example\nAction: failed\nStatus: 5.1.1\n"
        )
    )
    assert [(r.final, r.kind) for r in parsed.recipients] == [
        ("a@x.example", "soft"),
        ("b@x.example", "hard"),
    ]


def test_truncation_inside_the_report_part() -> None:
    whole_fields = "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1\n"
    # Cut after the recipient's fields: they are whole, so the report is read.
    parsed = parse(dsn_fields(whole_fields, tail=""))
    assert [(r.final, r.kind) for r in parsed.recipients] == [("a@x.example", "hard")]
    assert "truncated" in parsed.note
    # Cut before its Status: half a report, never acted on.
    with pytest.raises(Unparseable, match="report part"):
        parse(dsn_fields("Final-Recipient: rfc822; a@x.example\nAction: failed\n", tail=""))


def test_a_multipart_whose_boundary_never_appears_is_read_as_text() -> None:
    raw = report(
        "From: MAILER-DAEMON@mx.example\nSubject: Returned mail\nMessage-ID: <nb@x>\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=NEVER",
        "The following addresses had permanent fatal errors\n\n"
        "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1\n",
    )
    parsed = parse(raw)
    assert [(r.final, r.kind) for r in parsed.recipients] == [("a@x.example", "hard")]
    assert "boundary never appears" in parsed.note


def test_plain_text_bounces_name_the_failed_addresses_not_ours() -> None:
    raw = report(
        "From: MAILER-DAEMON@mx.example\nTo: bounces@hanul.example\n"
        "Subject: failure notice\nMessage-ID: <q@x>\nContent-Type: multipart/mixed; boundary=Q",
        "--Q\nContent-Type: text/plain\n\nHi. This is the qmail-send program at mx.example.\n"
        "Reply to postmaster... or write to bounces@hanul.example\n\n"
        "<a@x.example>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "<b@x.example>:\n552 5.2.2 Mailbox full\n\n"
        "--Q\nContent-Type: message/rfc822\n\nFrom: press@hanul.example\n"
        "To: a@x.example\nMessage-ID: <c1@hanul.example>\n\nHello\n--Q--\n",
    )
    parsed = parse(raw)
    assert [(r.final, r.kind) for r in parsed.recipients] == [
        ("a@x.example", "hard"),
        ("b@x.example", "soft"),
    ]
    assert parsed.original_ids == ["<c1@hanul.example>"]


def test_a_filtering_gateways_user_unknown_needs_5_1_1() -> None:
    def gateway_bounce(code: str) -> bytes:
        return report(
            "From: MAILER-DAEMON@gw.example\nX-Mailer: SurfControl E-mail Filter\n"
            "Subject: Undeliverable mail\nMessage-ID: <g@x>",
            f"Unable to deliver to <a@x.example>: 550 {code}No such user\n",
        )

    [verdict] = parse(gateway_bounce("")).recipients
    assert verdict.kind == "soft" and "SurfControl" in verdict.why
    [verdict] = parse(gateway_bounce("5.1.1 ")).recipients
    assert verdict.kind == "hard"


def test_delay_warnings_in_plain_text_are_delays() -> None:
    raw = report(
        "From: postmaster@mx.example\nSubject: Delivery failure notification\nMessage-ID: <w@x>",
        "Your message could not be delivered to the following recipients:\n"
        "a@x.example\nDelivery attempts will continue to be made for 5 day(s).\n",
    )
    assert [(r.final, r.kind) for r in parse(raw).recipients] == [("a@x.example", "delayed")]


def test_hostile_input_is_bounded_not_fatal() -> None:
    """Shapes that made regexes or parsers quadratic: each is read within fixed bounds."""
    head = b"From: MAILER-DAEMON@x.example\nSubject: Undelivered Mail\n"
    many = parse(
        head
        + b"\n"
        + b"".join(b"<u%d@x.example>: 550 5.1.1 user unknown\n" % i for i in range(2000))
    )
    assert len(many.recipients) == 100 and {r.kind for r in many.recipients} == {"hard"}
    blocks = parse(
        head + b"Content-Type: multipart/report; report-type=delivery-status; "
        b"boundary=D\n\n--D\nContent-Type: message/delivery-status\n\n"
        + b"".join(
            b"Final-Recipient: rfc822; u%d@x.example\nAction: failed\nStatus: 5.1.1\n\n" % i
            for i in range(600)
        )
        + b"--D--\n"
    )
    assert len(blocks.recipients) == 500
    with pytest.raises(Unparseable, match="multipart MIME parts"):
        parse(
            head
            + b"Content-Type: multipart/mixed; boundary=A\n\n"
            + b"".join(
                b"--A\nContent-Type: multipart/mixed; boundary=A%d\n\n" % i for i in range(300)
            )
        )
    # An HTML part of opening tags that never close, a run without spaces, a huge header.
    for body in (
        b"Content-Type: text/html\n\n" + b"<style><a " * 20000,
        b"\n" + b"a" * 200000 + b"\n<kim@x.example>: 550 user unknown\n",
        b"To: " + b"a@b.example, " * 5000 + b"\n\n<kim@x.example>: 550 no such user\n",
    ):
        parsed = parse(head + body)
        assert parsed.form == "bounce"


@pytest.mark.parametrize(
    ("text", "stage"),
    [
        (
            "host mx.x.example said: 550 5.1.1 <a@x.example>: User unknown (in reply to RCPT TO "
            "command)",
            "RCPT TO",
        ),
        ("SMTP error from remote mail server after RCPT TO:<a@x.example>:", "RCPT TO"),
        ("SMTP error from remote mail server after end of data:", "DATA"),
        (
            "SMTP error from remote mail server after MAIL FROM:<b@y.example> SIZE=1234:",
            "MAIL FROM",
        ),
        # The last command named is the one refused (a Sendmail transcript).
        (">>> RCPT To:<a@x.example>\n<<< 250 2.1.5 Ok\n>>> DATA\n<<< 550 User unknown", "DATA"),
        ("192.0.2.1 does not like recipient.\nRemote host said: 550 User unknown", "RCPT TO"),
        ("Sorry, no SMTP connection got far enough; most progress was RCPT TO response", "RCPT TO"),
        (
            "Remote host said: 554 Message refused\n192.0.2.1 failed after I sent the message.",
            "DATA",
        ),
        ("550 5.2.1 <a@x.example>... User Unknown\n[RCPT_TO]", "RCPT TO"),
        ("mx.x.example [192.0.2.25] did not like our RCPT TO:", "RCPT TO"),
        ("550 User unknown", None),
    ],
)
def test_the_smtp_stage_in_each_mail_systems_words(text: str, stage: str | None) -> None:
    assert smtp_stage(text) == stage


def _sendmail_v5(transcript: str) -> bytes:
    return report(
        "From: MAILER-DAEMON@relay.example\nSubject: Returned mail: User unknown\n"
        "Message-ID: <v5@relay.example>\nTo: press@hanul.example.org",
        "   ----- Transcript of session follows -----\nWhile talking to mx.x.example:\n"
        f"{transcript}\n\n   ----- Unsent message follows -----\nTo: a@x.example\n",
    )


def test_a_transcript_names_the_stage_before_the_address() -> None:
    """ ">>> RCPT To:<a>" (or ">>> DATA") comes before the reply that names the address."""
    [at_rcpt] = parse(
        _sendmail_v5(
            ">>> RCPT To:<a@x.example>\n<<< 550 <a@x.example>, User Unknown\n"
            "550 <a@x.example>... User unknown"
        )
    ).recipients
    assert (at_rcpt.final, at_rcpt.kind) == ("a@x.example", "hard"), at_rcpt.why
    [after_data] = parse(
        _sendmail_v5(
            ">>> DATA\n<<< 550 <a@x.example>... User Unknown\n550 <a@x.example>... User unknown"
        )
    ).recipients
    assert (after_data.final, after_data.kind) == ("a@x.example", "soft"), after_data.why
    assert "after DATA" in after_data.why


def test_a_dsns_stage_is_read_in_its_text_before_the_address() -> None:
    def dsn(transcript: str) -> bytes:
        return report(
            "From: MAILER-DAEMON@relay.example\nSubject: Returned mail: see transcript\n"
            "Message-ID: <d@relay.example>\nMIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B",
            f"--B\nContent-Type: text/plain\n\n{transcript}\n"
            "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example\n\n"
            "Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.0.0\n"
            "Diagnostic-Code: smtp; 550 User unknown\n--B--\n",
        )

    [r] = parse(dsn(">>> RCPT To:<a@x.example>\n<<< 550 User unknown")).recipients
    assert r.kind == "hard", r.why
    [r] = parse(dsn(">>> DATA\n<<< 550 <a@x.example>... User unknown")).recipients
    assert r.kind == "soft", r.why
    [r] = parse(dsn("The following address failed: <a@x.example>")).recipients
    assert r.kind == "soft", r.why  # no stage, no x.1.x code: a filter's answer as often


def test_a_mail_systems_own_unknown_user_line_is_hard() -> None:
    """IMail's "Unknown user: <addr>" is the server's own directory verdict; the same words
    with only a bare reply are not."""

    def bounce(line: str) -> bytes:
        return report(
            "From: postmaster@mail.x.example\nSubject: Undeliverable Mail\n"
            "Message-ID: <i@x>\nTo: press@hanul.example.org",
            f"{line}\n\n\nOriginal message follows.\n\nTo: a@x.example\n",
        )

    [r] = parse(bounce("Unknown user: a@x.example")).recipients
    assert (r.final, r.kind) == ("a@x.example", "hard"), r.why
    [r] = parse(bounce("a@x.example [User unknown]")).recipients
    assert (r.final, r.kind) == ("a@x.example", "soft"), r.why


def test_each_recipients_stage_is_its_own_in_a_shared_transcript() -> None:
    """One transcript, two recipients: the command before each reply is that reply's stage."""
    blocks = "".join(
        f"Final-Recipient: rfc822; {a}\nAction: failed\nStatus: 5.0.0\n"
        "Diagnostic-Code: smtp; 550 User unknown\n\n"
        for a in ("a@x.example", "b@x.example")
    )
    raw = report(
        "From: MAILER-DAEMON@relay.example\nSubject: Returned mail: see transcript\n"
        "Message-ID: <t@relay.example>\nMIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=B",
        "--B\nContent-Type: text/plain\n\n"
        "   ----- Transcript of session follows -----\n... while talking to mx.x.example.:\n"
        ">>> RCPT To:<a@x.example>\n<<< 550 <a@x.example>... User unknown\n"
        ">>> RCPT To:<b@x.example>\n<<< 250 2.1.5 <b@x.example>... Recipient ok\n"
        ">>> DATA\n<<< 550 <b@x.example>... User unknown\n\n"
        f"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example\n\n"
        f"{blocks}--B--\n",
    )
    kinds = {r.final: r.kind for r in parse(raw).recipients}
    assert kinds == {"a@x.example": "hard", "b@x.example": "soft"}
