"""Outside review of the bounce proof: a stranger who received ONE genuine message (Mallory: she
knows her own Message-ID, her own signed VERP address and her own List-Unsubscribe token) tries
to get somebody else suppressed or unsubscribed. None of it may touch the victim.

The campaign is really sent through the SMTP sink (tests/support/forgery.py's `sent`).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.bounces.policy import process_message
from mailer.store.models import Bounce, BounceReview, Event, Subscription, SubscriptionStatus
from tests.support.bounces import arf, dsn, mail
from tests.support.forgery import BOUNCES, MALLORY, VICTIM, Sent, suppressed

_n = iter(range(10**6))


def run(db: Session, sent: Sent, raw: bytes) -> None:
    process_message(db, sent.settings, str(next(_n)), raw)


def victim_untouched(db: Session) -> None:
    assert suppressed(db, VICTIM) is None
    subs = db.scalars(
        select(Subscription.status)
        .join(Subscription.contact)
        .where(Subscription.contact.has(email=VICTIM))
    ).all()
    assert subs and all(s != SubscriptionStatus.UNSUBSCRIBED for s in subs)


def own(sent: Sent) -> tuple[str, str]:
    """Mallory's own Message-ID and signed VERP address, read from the copy she received."""
    real = sent.received[MALLORY]
    return real.message_id, real.mail_from


def two_recipient_dsn(first: str, second: str, *, to: str, about: str) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.net
To: {to}
Subject: Undelivered Mail Returned to Sender
Message-Id: <dsn2.{next(_n)}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

The mail system

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {first}
Action: failed
Status: 5.1.1

Original-Recipient: rfc822; {first}
Final-Recipient: rfc822; {second}
Action: failed
Status: 5.1.1

--B
Content-Type: text/rfc822-headers

From: press@hanul.example.org
Message-ID: {about}

--B--
""".encode()


def exim(failed: str, *, to: str, about: str, body_names: str = "") -> bytes:
    return f"""From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {to}
Subject: Mail delivery failed: returning message to sender
Message-Id: <exim.{next(_n)}@mx.example.net>
X-Failed-Recipients: {failed}

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {body_names or failed}
    mailbox unavailable

------ This is a copy of the message, including all the headers. ------

From: press@hanul.example.org
Message-ID: {about}
Subject: Hello

Hello.
""".encode()


def test_own_verp_and_message_id_with_the_victim_named(sent: Sent, db: Session) -> None:
    mid, verp = own(sent)
    for raw in (
        dsn(VICTIM, to=verp, about=mid),
        dsn(VICTIM.upper(), to=verp, about=mid),
        dsn(VICTIM, about=mid),
        dsn("Victim@Example.COM", about=mid),
        dsn("victim@EXAMPLE.com.", about=mid),
        two_recipient_dsn(MALLORY, VICTIM, to=verp, about=mid),
        two_recipient_dsn(VICTIM, MALLORY, to=verp, about=mid),
        exim(VICTIM, to=verp, about=mid),
        exim(VICTIM, to=BOUNCES, about=mid),
        exim(f"{MALLORY}, {VICTIM}", to=verp, about=mid),
        exim(MALLORY, to=verp, about=mid, body_names=f"{MALLORY}\n  {VICTIM}"),
        arf(VICTIM, about=mid),
        dsn("xn--victim-unknown@example.com", about=mid),
        dsn("vіctim@example.com", about=mid),  # Cyrillic і: another address (Mallory's own)
    ):
        run(db, sent, raw)
        victim_untouched(db)
    # Everything Mallory achieved concerns Mallory; the victim is at most held for review.
    assert set(db.scalars(select(BounceReview.email))) <= {VICTIM}
    named = set(db.scalars(select(Bounce.email).where(Bounce.delivery_id.is_not(None))))
    assert named <= {MALLORY}


def test_verp_tag_moved_to_another_campaign_or_recipient_is_unsigned(
    sent: Sent, db: Session
) -> None:
    _, verp = own(sent)
    local = verp.split("@")[0]
    tag = local.rsplit("=", 1)[1]
    cid, mac = tag.split(".")
    forged = [
        verp.replace(f"={cid}.", f"={int(cid) + 1}."),
        verp.replace("mallory=evil.example", "victim=example.com"),
        verp.replace("mallory=evil.example", "VICTIM=EXAMPLE.COM"),
        f"bounces+victim=example.com={tag}@hanul.example.org",
        f"bounces+victim=example.com={cid}.{mac.upper()}@hanul.example.org",
        f"bounces+victim=example.com=0.{mac}@hanul.example.org",
    ]
    for address in forged:
        run(db, sent, dsn(VICTIM, to=address))
        victim_untouched(db)


def test_own_unsubscribe_token_with_the_victim_as_sender(sent: Sent, db: Session) -> None:
    real = sent.received[MALLORY]
    header = str(real.message["List-Unsubscribe"]).replace("\n", "")
    token = re.search(r"subject=unsubscribe%20([^>]+)>", header)
    assert token is not None
    for raw in (
        mail(f"unsubscribe {token.group(1)}", sender=f"Victim <{VICTIM}>"),
        mail("unsubscribe", body=f"unsubscribe {token.group(1)}\n{VICTIM}", sender=VICTIM),
        mail(f"unsubscribe {token.group(1)}x", sender=VICTIM),
        mail(f"unsubscribe {token.group(1)}=", sender=VICTIM),
        mail(f"unsubscribe {token.group(1).upper()}", sender=VICTIM),
    ):
        run(db, sent, raw)
        victim_untouched(db)


@pytest.mark.parametrize("shape", ["huge", "deep", "many-parts", "bad-encoding", "binary"])
def test_malformed_reports_change_nothing(sent: Sent, db: Session, shape: str) -> None:
    mid, _ = own(sent)
    if shape == "huge":
        raw = dsn(VICTIM, about=mid) + b"x" * (20 * 1024 * 1024)
    elif shape == "deep":
        raw = b"Content-Type: multipart/mixed; boundary=a0\n\n"
        for i in range(1, 400):
            raw += f"--a{i - 1}\nContent-Type: multipart/mixed; boundary=a{i}\n\n".encode()
        raw += f"Final-Recipient: rfc822; {VICTIM}\nAction: failed\nStatus: 5.1.1\n".encode()
    elif shape == "many-parts":
        part = (
            f"--B\nContent-Type: message/delivery-status\n\nFinal-Recipient: rfc822; "
            f"{VICTIM}\nAction: failed\nStatus: 5.1.1\n\n"
        )
        raw = (
            "From: MAILER-DAEMON@mx.example.net\nSubject: failure\nMIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
            + part * 5000
            + "--B--\n"
        ).encode()
    elif shape == "bad-encoding":
        raw = (
            b"From: =?utf-8?b?////?= <MAILER-DAEMON@mx.example.net>\nSubject: =?x-bad?q?\xff?=\n"
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="B\n\n'
            b"--B\nContent-Transfer-Encoding: base64\nContent-Type: message/delivery-status\n\n"
            b"@@@@\xff\xfe\n--B--\n"
        )
    else:
        raw = bytes(range(256)) * 4096
    run(db, sent, raw)
    victim_untouched(db)
    assert db.scalar(select(func.count()).select_from(Event).where(Event.kind == "suppress")) == 0
