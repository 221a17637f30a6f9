"""Outside review of the public pages, on cases the issue 12 tests did not cover.

- A stranger types a mailbox VARIANT of the victim's address into the form (`victim+x@` on a
  provider without subaddresses): the confirmation email genuinely hard-bounces, with a signed
  VERP address, and the hard bounce is stored against the whole mailbox, so it suppresses the
  victim's real address. No forgery needed.
- Tokens of other purposes, and altered tokens, on every page.
"""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer import tokens
from mailer.bounces.policy import process_message
from mailer.config import Settings
from mailer.contacts.contact import add_contact
from mailer.contacts.suppressions import get_suppression
from mailer.store.models import Contact, Notice
from mailer.web import create_app
from tests.support.bounces import dsn
from tests.support.web import Web, serving

BOUNCES = "bounces@hanul.example.org"


def _return_path(msg: EmailMessage) -> str:
    value = str(msg.get("Return-Path", "") or msg.get("X-Envelope-From", ""))
    return value.strip("<> ")


def test_bounce_of_a_variant_typed_by_a_stranger_does_not_suppress_the_victim(
    settings: Settings, lists: dict[str, int]
) -> None:
    verp = replace(settings, verp=True, envelope_sender=BOUNCES)
    web = Web(create_app(verp), verp)
    with web.db() as s:
        add_contact(s, "victim@yahoo.example", "news")
    web.subscribe(web.client(REMOTE_ADDR="198.51.100.7"), "victim+x@yahoo.example", ["news"])
    [msg] = web.outbox()
    envelope = _return_path(msg)
    assert envelope.startswith("bounces+victim+x=yahoo.example="), envelope
    # yahoo.example has no subaddresses: its server answers 550 5.1.1 to the confirmation.
    with web.db() as s:
        [item] = process_message(s, verp, "1", dsn("victim+x@yahoo.example", to=envelope))
        assert item.matched_by == "verp" and item.action == "suppressed"
        assert get_suppression(s, "victim+x@yahoo.example") is not None
    with web.db() as s:
        assert get_suppression(s, "victim@yahoo.example") is None
        # Nor does planning or a segment count the victim as suppressed (the SQL side of the
        # same rule: contacts/suppressions.covers_mailbox).
        from mailer.contacts.segments import suppressed

        hidden = s.scalars(select(Contact.email).where(suppressed(s))).all()
        assert "victim@yahoo.example" not in hidden


def _other_purpose_tokens(settings: Settings, contact_id: int, list_id: int) -> list[str]:
    unsub = tokens.make_unsubscribe(settings, contact_id, list_id)
    prefs = tokens.make_preferences(settings, contact_id)
    confirm = tokens.make_confirm(settings, contact_id, (list_id,))
    other_key = replace(settings, secret_key=settings.secret_key + "x")
    return [
        unsub,
        prefs,
        confirm,
        unsub + "=",
        unsub.upper(),
        unsub + "%3D",
        unsub + "%00",
        unsub + "%E2%80%8B",
        "\uff0e".join(unsub.split(".")),
        unsub[:-1] + ("A" if unsub[-1] != "A" else "B"),
        tokens.make_unsubscribe(other_key, contact_id, list_id),
        "%20" + unsub,
        unsub + "%0A",
        "." + unsub,
    ]


def test_a_token_opens_only_its_own_page(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        contact, _ = add_contact(s, "kim@example.org", "news")
        cid = contact.id
    unsub, prefs, confirm, *altered = _other_purpose_tokens(web.settings, cid, lists["news"])
    client = web.client()
    wrong = {
        "/u/": [prefs, confirm],
        "/preferences/": [unsub, confirm],
        "/confirm/": [unsub, prefs],
    }
    for page, ts in wrong.items():
        for t in ts + altered:
            for method in (client.get, client.post):
                r = method(page + t)
                assert r.status_code == 404, (page, t, method, r.status_code)
    with web.db() as s:
        sess: Session = s
        assert get_suppression(sess, "kim@example.org") is None
    assert client.get("/u/" + unsub).status_code == 200


def _chunked_post(port: int, total: int, *, chunk: int = 8192) -> bytes:
    """POST /subscribe with a chunked body of `total` bytes (no Content-Length); the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
        )
        body = b"email=a%40example.org&list=news&name=" + b"A" * chunk
        sent = 0
        try:
            while sent < total:
                piece = body[: min(len(body), total - sent)]
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sent += len(piece)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close as soon as it has refused: that is the point
        sock.settimeout(20)
        try:
            return sock.recv(4096)
        except OSError:
            return b""


def test_chunked_body_over_the_limit_is_refused_and_one_click_still_answers(
    web: Web, lists: dict[str, int], tmp_path: Path
) -> None:
    with web.db() as s:
        contact_id = add_contact(s, "busy@example.org", "news")[0].id
    token = tokens.make_unsubscribe(web.settings, contact_id, lists["news"])
    with serving(tmp_path) as port:
        # Small chunked posts are ordinary form posts.
        assert _chunked_post(port, 100).startswith(b"HTTP/1.1 200")
        # 4 MiB with no Content-Length: refused once it passes web_max_body_bytes.
        head = _chunked_post(port, 4 * 1024 * 1024)
        assert head == b"" or head.startswith(b"HTTP/1.1 413"), head[:200]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/u/{token}",
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
    with web.db() as s:
        # Only the small post queued a notice (still queued, or sent by serve's sender thread).
        queued = s.scalar(select(func.count()).select_from(Notice)) or 0
    outbox = web.settings.outbox_dir
    sent = len(list(outbox.glob("*/*"))) if outbox.exists() else 0
    assert queued + sent == 1, (queued, sent)
