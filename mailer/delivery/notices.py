"""Single emails outside any campaign (the confirmation link), built like a release's messages.

The same machinery as mailer.delivery.message: headers folded by its `fold_header` and
`_address_header`, bodies encoded by its quoted-printable/base64 choice, a Message-ID on the
From domain, Date from mailer.clock, DKIM signed by `dkim_signer` when a key is configured, and
the same envelope rules as the campaign engine (bounce address, VERP, test_recipient).
"""

from __future__ import annotations

import email.utils
import secrets
from dataclasses import dataclass

from mailer import clock
from mailer.config import Settings
from mailer.contacts.addresses import mask, normalise, smtp_form, verp_encode
from mailer.delivery.dkim import dkim_signer
from mailer.delivery.message import (
    _address_header,
    _mostly_ascii,
    encode_b64,
    encode_qp,
    fold_header,
    sender_for,
    to_header,
)
from mailer.delivery.transport import Connection, Outcome, Reply
from mailer.errors import TransportError
from mailer.localtext import in_language


@dataclass(frozen=True)
class OutgoingNotice:
    """One notice's content: who it goes to and what it says (already rendered)."""

    to: str  # the contact's normalised address
    subject: str
    text: str
    html: str
    language: str
    # RFC 3834: an automatic message; vacation responders must not answer it.
    auto_submitted: str = "auto-generated"


class NoticeRefused(TransportError):
    """The server did not accept the notice; `permanent` for a 5xx (retrying cannot help)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def _part(subtype: str, body: str, boundary: bytes) -> bytes:
    ascii_like = _mostly_ascii(body)
    cte = b"quoted-printable" if ascii_like else b"base64"
    encoded = encode_qp(body) if ascii_like else encode_b64(body)
    if not encoded.endswith(b"\n"):
        encoded += b"\n"
    return (
        b"\n--"
        + boundary
        + b"\nContent-Type: text/"
        + subtype.encode()
        + b'; charset="utf-8"\nContent-Transfer-Encoding: '
        + cte
        + b"\n\n"
        + encoded
    )


def build(settings: Settings, notice: OutgoingNotice, *, deliver_to: str | None = None) -> bytes:
    """The complete message (LF line ends, DKIM-Signature first when configured)."""
    sender = sender_for(settings, "", "")
    boundary = ("=_mailer_" + secrets.token_hex(12)).encode()
    address = deliver_to or smtp_form(notice.to)[0]
    head = [
        # The From name in the notice's language when from_name is given per language.
        fold_header(
            "From",
            _address_header(
                in_language(sender.from_name, notice.language, settings.default_language),
                sender.from_address,
                "From",
            ),
        ),
        fold_header("Subject", notice.subject),
        b"MIME-Version: 1.0\n",
        fold_header("Content-Language", notice.language),
        fold_header("Auto-Submitted", notice.auto_submitted),
    ]
    if sender.reply_to:
        head.append(fold_header("Reply-To", sender.reply_to))
    head += [
        to_header("", address),
        b"Date: " + email.utils.format_datetime(clock.now()).encode() + b"\n",
        b"Message-ID: <notice."
        + secrets.token_hex(12).encode()
        + b"@"
        + sender.domain.encode()
        + b">\n",
        b'Content-Type: multipart/alternative; boundary="' + boundary + b'"\n',
    ]
    message = b"".join(
        [
            *head,
            _part("plain", notice.text, boundary),
            _part("html", notice.html, boundary),
            b"\n--" + boundary + b"--\n",
        ]
    )
    signer = dkim_signer(settings, sender.from_address)
    if signer is not None:
        message = signer(message) + message
    return message


def send(settings: Settings, conn: Connection, notice: OutgoingNotice) -> Reply:
    """Build and send `notice` on an open transport connection; TransportError unless accepted.

    NoticeRefused otherwise: the queue (mailer.subscribers.queue) tries a 4xx or a lost
    connection again, and gives a 5xx up at once.
    """
    target = settings.test_recipient or notice.to
    recipient, utf8 = smtp_form(normalise(target).key)
    message = build(settings, notice, deliver_to=recipient if settings.test_recipient else None)
    envelope_from = settings.bounce_address
    if settings.verp:
        envelope_from = verp_encode(
            envelope_from, recipient, secret_key=settings.secret_key, campaign_id=None
        )
    reply = conn.send(envelope_from, recipient, message, smtputf8=utf8)
    if reply.outcome != Outcome.SENT:
        raise NoticeRefused(
            f"the email to {mask(notice.to)} was not accepted: {reply.code} {reply.text}",
            permanent=reply.outcome in (Outcome.FAILED, Outcome.BAD_ADDRESS),
        )
    return reply
