"""Bounce reports built for tests (DSN, ARF, plain mail) and the corpus helpers."""

from __future__ import annotations

import re
from itertools import count
from pathlib import Path

_ids = count(1)  # unique Message-IDs across every report a test builds


def dsn(
    recipient: str,
    status: str = "5.1.1",
    *,
    action: str = "failed",
    diagnostic: str = "smtp; 550 5.1.1 User unknown",
    about: str | None = None,
    to: str = "bounces@hanul.example.org",
    report_id: str | None = None,
) -> bytes:
    """A minimal RFC 3464 report about `recipient` (and the Message-ID `about`)."""
    report_id = report_id or f"<dsn.{next(_ids)}@mx.example.net>"
    headers = f"Message-ID: {about}\n" if about else ""
    return f"""From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-Id: {report_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

The mail system

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}

--B
Content-Type: text/rfc822-headers

From: press@hanul.example.org
{headers}
--B--
""".encode()


def arf(recipient: str, feedback: str = "abuse", about: str | None = None) -> bytes:
    inner = f"Message-ID: {about}\n" if about else ""
    return f"""From: fbl@isp.example
To: fbl@hanul.example.org
Subject: complaint
Message-ID: <arf.{next(_ids)}@isp.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="F"

--F
Content-Type: text/plain

An abuse report.

--F
Content-Type: message/feedback-report

Feedback-Type: {feedback}
User-Agent: Test/1.0
Version: 1
Original-Rcpt-To: {recipient}

--F
Content-Type: message/rfc822

From: press@hanul.example.org
To: {recipient}
{inner}
Hello.

--F--
""".encode()


def mail(subject: str, body: str = "", sender: str = "someone@example.org") -> bytes:
    return (
        f"From: {sender}\nTo: press@hanul.example.org\nSubject: {subject}\n"
        f"Message-ID: <m.{next(_ids)}@example.org>\nContent-Type: text/plain; charset=utf-8"
        f"\n\n{body}\n"
    ).encode()


# Temporary-failure samples from flufl.bounce: never to be read as hard bounces.
FLUFL_TEMPORARY = Path(__file__).parents[1] / "bounce_corpus" / "flufl_temporary"


def cut_in_copy(raw: bytes) -> bytes | None:
    """The message cut off half-way through its returned copy (message/rfc822 or headers)."""
    found = re.search(rb"(?im)^content-type:\s*(message/rfc822|text/rfc822-headers)", raw)
    if found is None:
        return None
    start = raw.find(b"\n\n", found.end())
    start = raw.find(b"\r\n\r\n", found.end()) if start < 0 else start
    if start < 0:
        return None
    return raw[: start + (len(raw) - start) // 2]
