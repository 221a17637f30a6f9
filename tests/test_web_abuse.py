"""Abuse of the public pages (issue 12): mail bombing, name injection, address probing by the
answer, reused ids in old links, altered tokens, what the confirmation email is built with, the
notice queue, and `mailer serve` under slow and oversized requests. One file (over 400 lines) on
purpose: each test is one finding of the review, and they share the serving helper.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import dkim
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from mailer import clock, tokens
from mailer.config import Settings
from mailer.contacts.addresses import mailbox_key
from mailer.contacts.contact import add_contact, erase, unsubscribe
from mailer.contacts.lists import create_list, remove_list
from mailer.contacts.suppressions import suppress
from mailer.delivery.dkim import generate_dkim_key
from mailer.errors import TokenError
from mailer.store.db import get_engine
from mailer.store.models import (
    Contact,
    Event,
    MailingList,
    Notice,
    SubscriptionStatus,
    SuppressionReason,
)
from mailer.web import create_app
from tests.support.smtp import SmtpServer
from tests.support.web import (
    Web,
    confirm_url,
    html_part,
    page_text,
    serving,
    snapshot,
    status_of,
    text_part,
)


def test_mailbox_key_folds_tags_and_gmail_dots() -> None:
    assert mailbox_key("victim+1@gmail.com") == "victim@gmail.com"
    assert mailbox_key("v.i.c.t.i.m+x@googlemail.com") == "victim@gmail.com"
    assert mailbox_key("Kim.Lee+news@Example.ORG") == "kim.lee@example.org"  # dots count here
    assert mailbox_key("+only@example.org") == "+only@example.org"


def test_plus_and_dot_variants_get_one_confirmation(web: Web, lists: dict[str, int]) -> None:
    variants = [f"victim+{i}@gmail.com" for i in range(1, 21)] + [
        "v.ictim@gmail.com",
        "victim@googlemail.com",
        "vic.tim+x@googlemail.com",
    ]
    for i, address in enumerate(variants):
        client = web.client(REMOTE_ADDR=f"192.0.2.{i % 3 + 1}")  # three attackers' addresses
        assert web.subscribe(client, address, ["news"]).status_code == 200
    assert len(web.outbox()) == 1
    # A day later the mailbox may get one more, not one per variant.
    with clock.pinned(clock.now() + timedelta(hours=24, seconds=1)):
        web.subscribe(web.client(), "victim+21@gmail.com", ["news"])
        web.subscribe(web.client(), "victim+22@gmail.com", ["news"])
    assert len(web.outbox()) == 2


def test_domain_and_global_caps(settings: Settings, lists: dict[str, int]) -> None:
    web = Web(
        create_app(replace(settings, confirm_domain_per_hour=3, confirm_global_per_hour=5)),
        replace(settings, confirm_domain_per_hour=3, confirm_global_per_hour=5),
    )
    for i in range(5):
        web.subscribe(web.client(REMOTE_ADDR=f"198.51.100.{i}"), f"user{i}@one.example", ["news"])
    assert len(web.outbox()) == 3  # the per-domain cap
    for i in range(5):
        web.subscribe(web.client(REMOTE_ADDR=f"203.0.113.{i}"), f"user@d{i}.example", ["news"])
    assert len(web.outbox()) == 5  # the global cap
    with clock.pinned(clock.now() + timedelta(hours=1, seconds=1)):
        web.subscribe(web.client(), "later@d9.example", ["news"])
    assert len(web.outbox()) == 6


def test_suppression_covers_dot_and_plus_variants(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        suppress(s, "kimlee@gmail.com", SuppressionReason.HARD_BOUNCE, source="test")
    for address in ("kim.lee@gmail.com", "kim.lee+news@googlemail.com", "KIMLEE+x@gmail.com"):
        assert web.subscribe(web.client(), address, ["news"]).status_code == 200
    assert web.outbox() == []
    with web.db() as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == 0
        refused = s.scalars(select(Event).where(Event.kind == "subscribe.refused")).all()
        assert len(refused) == 3


def test_confirmation_does_not_print_the_typed_name(web: Web, lists: dict[str, int]) -> None:
    bait = "URGENT: your account is locked, log in at https://evil.example/login"
    web.subscribe(web.client(), "stranger@example.org", ["news"], name=bait)
    (msg,) = web.outbox()
    for part in (text_part(msg), html_part(msg), str(msg["Subject"]), str(msg["To"])):
        assert "evil.example" not in part and "URGENT" not in part
    assert text_part(msg).startswith("Hello,")


@contextmanager
def statements(settings: Settings) -> Iterator[list[str]]:
    """Every SQL statement the app runs meanwhile (text only: values differ, shapes must not)."""
    seen: list[str] = []
    engine: Engine = get_engine(settings)

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_form_answer_and_work_do_not_depend_on_the_address(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        add_contact(s, "known@example.org", "news")
        add_contact(s, "left@example.org", "news")
        unsubscribe(s, "left@example.org", None, via="web")
        suppress(s, "bounced@example.org", SuppressionReason.HARD_BOUNCE, source="test")
        add_contact(s, "erased@example.org", "news")
        erase(s, "erased@example.org")
    web.subscribe(web.client(), "pending@example.org", ["news"])  # pending and throttled now
    states = [
        "new@example.org",
        "known@example.org",
        "left@example.org",
        "bounced@example.org",
        "erased@example.org",
        "pending@example.org",
    ]
    answers, works = [], []
    for address in states:
        before = snapshot(web)
        with web.db() as s:
            queued = s.scalar(select(func.count()).select_from(Notice))
        client = web.client(REMOTE_ADDR="192.0.2.200")
        with statements(web.settings) as seen:
            r = client.post(
                "/subscribe",
                data={
                    "email": address,
                    "list": "news",
                    "name": "X",
                    "lang": "en",
                    "form": "subscribe",
                },
            )
        answers.append(
            (
                r.status_code,
                page_text(r).replace(address, "ADDRESS"),
                sorted((k, v) for k, v in r.headers.items() if k != "Content-Length"),
            )
        )
        works.append(seen)
        # The only row written is the queued notice: nothing else moved before the sender runs.
        assert snapshot(web) == before
        with web.db() as s:
            assert s.scalar(select(func.count()).select_from(Notice)) == (queued or 0) + 1
    assert all(a == answers[0] for a in answers) and answers[0][0] == 200
    assert all(w == works[0] for w in works), [len(w) for w in works]
    mailed = {m["To"] for m in web.outbox()}
    assert mailed == {
        "pending@example.org",
        "new@example.org",
        "known@example.org",
        "left@example.org",
    }


def test_old_links_never_reach_the_next_contact(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        old_id = add_contact(s, "old@example.org", "news", name="Old Person")[0].id
    s_ = web.settings
    unsub = tokens.make_unsubscribe(s_, old_id, lists["news"])
    prefs = tokens.make_preferences(s_, old_id)
    confirm = tokens.make_confirm(s_, old_id, (lists["news"],))
    with web.db() as s:
        erase(s, "old@example.org")
    with web.db() as s:
        new = add_contact(s, "new@example.org", "news", name="New Person")[0]
        assert new.id != old_id  # SQLite without AUTOINCREMENT gave it the erased one's id
    assert web.client().get(f"/preferences/{prefs}").status_code == 404
    assert web.client().get(f"/confirm/{confirm}").status_code == 404
    assert web.client().post(f"/confirm/{confirm}").status_code == 404
    page = web.client().get(f"/u/{unsub}")
    assert "New Person" not in page_text(page) and "n*w@example.org" not in page_text(page)
    web.client().post(f"/u/{unsub}", data={"List-Unsubscribe": "One-Click"})
    assert status_of(web, "new@example.org", "news") == SubscriptionStatus.SUBSCRIBED


def test_confirm_link_of_a_deleted_list_subscribes_to_nothing_new(
    web: Web, lists: dict[str, int]
) -> None:
    with web.db() as s:
        late = create_list(s, "late", "Late list", "", public=True)
        late_id = late.id
    web.subscribe(web.client(), "ann@example.org", ["late"])
    path = web.path(confirm_url(web.outbox()[0]))
    with web.db() as s:
        remove_list(s, "late")
    with web.db() as s:
        secret = create_list(s, "secret", "Secret list", "", public=False)
        assert secret.id != late_id
    web.client().post(path)
    assert status_of(web, "ann@example.org", "secret") is None


def _altered(token: str) -> list[str]:
    last = token[-1]
    # A different last character that decodes to the same bytes (unused low bits differ).
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    same_bits = [
        c for c in alphabet if c != last and alphabet.index(c) >> 2 == alphabet.index(last) >> 2
    ]
    out = [token + "=", token + "==", token + "%C3%A9", token + "%20", token + "."]
    out += [token[:-1] + c for c in same_bits[:1]]
    return out


def test_only_the_canonical_token_text_opens_a_page(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        contact_id = add_contact(s, "tok@example.org", "news")[0].id
    s_ = web.settings
    pages = [
        ("/preferences/", tokens.make_preferences(s_, contact_id)),
        ("/u/", tokens.make_unsubscribe(s_, contact_id, lists["news"])),
        ("/confirm/", tokens.make_confirm(s_, contact_id, (lists["news"],))),
    ]
    for prefix, token in pages:
        assert web.client().get(prefix + token).status_code == 200
        for bad in _altered(token):
            assert web.client().get(prefix + bad).status_code == 404, (prefix, bad)
    for bad in _altered(tokens.make_preferences(s_, contact_id)):
        with pytest.raises(TokenError):
            tokens.read_preferences(s_, bad.replace("%C3%A9", "é").replace("%20", " "))


def test_confirmation_is_built_like_a_release(
    web: Web, lists: dict[str, int], tmp_path: Path
) -> None:
    record = generate_dkim_key(tmp_path / "dkim.pem", "sel", "hanul.example.org")
    settings = replace(
        web.settings,
        dkim_key_file=tmp_path / "dkim.pem",
        dkim_selector="sel",
        envelope_sender="bounces@hanul.example.org",
    )
    signed = Web(create_app(settings), settings)
    signed.subscribe(signed.client(), "dkim@example.org", ["news"])
    (msg,) = signed.outbox()
    raw = msg.as_bytes()
    assert msg["Return-Path"] == "<bounces@hanul.example.org>"  # the bounce address
    assert re.fullmatch(r"<notice\.[0-9a-f]{24}@hanul\.example\.org>", msg["Message-ID"])
    assert msg["Date"] and msg["Auto-Submitted"] == "auto-generated"
    assert msg["DKIM-Signature"]
    txt = record.value.encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.hanul.example.org."
        return txt

    body = raw.split(b"\n", 2)[2] if raw.startswith(b"Return-Path") else raw
    assert dkim.verify(body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), dnsfunc=dns)


def test_failed_sends_are_retried_then_delivered(settings: Settings, lists: dict[str, int]) -> None:
    server = SmtpServer().start()
    try:
        smtp = replace(settings, transport="smtp", smtp_url=server.url())
        web = Web(create_app(smtp), smtp)
        server.sink.plan("retry@example.org", "451 4.3.0 try later")
        web.subscribe(web.client(), "retry@example.org", ["news"])
        assert server.sink.to("retry@example.org") == []
        with web.db() as s:
            notice = s.scalar(select(Notice))
            assert notice is not None and notice.state == "ready" and notice.attempts == 1
            assert "451" in (notice.last_error or "")
        with clock.pinned(clock.now() + timedelta(minutes=2)):
            web.send_notices()
        (got,) = server.sink.to("retry@example.org")
        assert "/confirm/" in text_part(got.message)
        with web.db() as s:
            assert s.scalar(select(func.count()).select_from(Notice)) == 0
    finally:
        server.stop()


def test_worker_sends_queued_confirmations(web: Web, lists: dict[str, int], tmp_path: Path) -> None:
    from tests.support.cli import Cli

    web.client().post("/subscribe", data={"email": "w@example.org", "list": "news"})
    assert len(list(web.settings.outbox_dir.glob("*/*"))) == 0
    Cli(tmp_path / "mailer.toml")("worker", "--once")
    assert len(list(web.settings.outbox_dir.glob("*/*"))) == 1
    with web.db() as s:
        assert s.scalar(select(MailingList.slug).where(MailingList.id == lists["news"]))
        assert s.scalar(select(func.count()).select_from(Notice)) == 0


def test_app_refuses_a_long_declared_body_unread(web: Web, lists: dict[str, int]) -> None:
    r = web.client().post(
        "/subscribe",
        data={"email": "a@example.org", "list": "news"},
        environ_overrides={"CONTENT_LENGTH": str(300 * 1024 * 1024)},
    )
    assert r.status_code == 413
    with web.db() as s:
        assert s.scalar(select(func.count()).select_from(Notice)) == 0


def test_one_click_answers_while_slow_clients_hold_connections(
    web: Web, lists: dict[str, int], tmp_path: Path
) -> None:
    with web.db() as s:
        contact_id = add_contact(s, "busy@example.org", "news")[0].id
    token = tokens.make_unsubscribe(web.settings, contact_id, lists["news"])
    with serving(tmp_path) as port:
        slow = []
        try:
            for _ in range(150):  # more than waitress' default limit of 100 connections
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                # A head that never ends: each holds a connection open (slowloris).
                sock.sendall(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                slow.append(sock)
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/u/{token}",
                data=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 200
        finally:
            for sock in slow:
                sock.close()
    assert status_of(web, "busy@example.org", "news") == SubscriptionStatus.UNSUBSCRIBED


def test_huge_declared_body_gets_413_before_it_is_sent(
    web: Web, lists: dict[str, int], tmp_path: Path
) -> None:
    with (
        serving(tmp_path) as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        # 300 MiB announced, not one byte of it sent: the answer cannot have waited for it.
        sock.sendall(
            b"POST /subscribe HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 314572800\r\n\r\n"
        )
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head


def test_serve_sends_queued_confirmations_in_the_background(
    web: Web, lists: dict[str, int], tmp_path: Path
) -> None:
    with serving(tmp_path) as port:
        data = b"email=bg%40example.org&list=news&form=subscribe"
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/subscribe", data=data, timeout=10
        ) as r:
            assert r.status == 200
        for _ in range(300):  # the sender thread polls every 2 seconds
            if list(web.settings.outbox_dir.glob("*/*")):
                break
            time.sleep(0.1)
    (msg,) = web.outbox()
    assert msg["To"] == "bg@example.org"


def test_upgrade_keeps_every_row_and_stops_id_reuse(tmp_path: Path) -> None:
    from sqlalchemy import text

    from mailer.store.db import make_engine
    from mailer.store.schema import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0001")
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        for i in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO contact (id, email, email_original, name, organisation,"
                    " attributes, created_at, updated_at) VALUES (:i, :e, :e, '', '', '{}', :t, :t)"
                ),
                {"i": i, "e": f"p{i}@example.org", "t": now},
            )
        conn.execute(
            text(
                "INSERT INTO mailing_list (id, slug, name, description, public, "
                "created_at) VALUES (1, 'news', 'News', '', 1, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            text(
                "INSERT INTO subscription (contact_id, list_id, status, source, "
                "created_at, updated_at) VALUES (2, 1, 'subscribed', 'cli', :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(text("INSERT INTO contact_tag (contact_id, tag) VALUES (2, 'vip')"))
        conn.execute(
            text(
                "INSERT INTO suppression (email, reason, source, created_at) "
                "VALUES ('a.b+x@gmail.com', 'manual', '', :t)"
            ),
            {"t": now},
        )
    upgrade(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscription")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM contact_tag")).scalar() == 1
        assert conn.execute(text("SELECT mailbox FROM suppression")).scalar() == "ab@gmail.com"
        for table in ("contact", "mailing_list"):
            ddl = conn.execute(
                text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": table}
            ).scalar()
            assert "AUTOINCREMENT" in str(ddl).upper()
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        conn.execute(text("DELETE FROM contact WHERE id = 2"))
        assert conn.execute(text("SELECT count(*) FROM subscription")).scalar() == 0  # cascade
        conn.execute(
            text(
                "INSERT INTO contact (email, email_original, name, organisation, attributes,"
                " created_at, updated_at) VALUES ('n@example.org', 'n', '', '', '{}', :t, :t)"
            ),
            {"t": now},
        )
        assert conn.execute(text("SELECT max(id) FROM contact")).scalar() == 3
    engine.dispose()


def test_confirmation_follows_the_envelope_rules(web: Web, lists: dict[str, int]) -> None:
    from mailer.contacts.addresses import verp_decode

    settings = replace(web.settings, verp=True, envelope_sender="bounces@hanul.example.org")
    verp = Web(create_app(settings), settings)
    verp.subscribe(verp.client(), "Verp.Me@Example.org", ["news"])
    (msg,) = verp.outbox()
    envelope = str(msg["Return-Path"]).strip("<>")
    decoded = verp_decode("bounces@hanul.example.org", envelope, secret_key=settings.secret_key)
    assert decoded is not None and decoded.email == "verp.me@example.org" and decoded.signed
    redirected = replace(web.settings, test_recipient="dev@hanul.example.org")
    dev = Web(create_app(redirected), redirected)
    dev.subscribe(dev.client(), "real@example.org", ["news"])
    (msg2,) = [m for m in dev.outbox() if m["Delivered-To"] == "dev@hanul.example.org"]
    assert msg2["To"] == "dev@hanul.example.org"


def test_a_notice_that_keeps_failing_is_given_up_then_forgotten(
    settings: Settings, lists: dict[str, int]
) -> None:
    from mailer.subscribers import queue

    server = SmtpServer().start()
    try:
        smtp = replace(settings, transport="smtp", smtp_url=server.url())
        web = Web(create_app(smtp), smtp)
        server.sink.plan("never@example.org", *["451 4.3.0 later"] * queue.MAX_ATTEMPTS)
        web.subscribe(web.client(), "never@example.org", ["news"])
        for hour in range(1, queue.MAX_ATTEMPTS + 2):  # each retry is due within an hour
            with clock.pinned(clock.now() + timedelta(hours=hour)):
                web.send_notices()
        with web.db() as s:
            notice = s.scalar(select(Notice))
            assert notice is not None and notice.state == queue.FAILED
            assert notice.attempts == queue.MAX_ATTEMPTS and "451" in (notice.last_error or "")
        # A refusal (5xx) is given up at once: retrying cannot change the answer.
        server.sink.plan("refused@example.org", "550 5.7.1 no")
        web.subscribe(web.client(), "refused@example.org", ["news"])
        with web.db() as s:
            refused = s.scalar(select(Notice).where(Notice.email == "refused@example.org"))
            assert refused is not None and refused.state == queue.FAILED
            assert refused.attempts == 1
        with clock.pinned(clock.now() + timedelta(days=8)):
            web.send_notices()
        with web.db() as s:
            assert s.scalar(select(func.count()).select_from(Notice)) == 0
    finally:
        server.stop()
