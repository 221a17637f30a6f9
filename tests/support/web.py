"""Shared helpers and fixtures of the web tests (the Flask test client, a real `mailer serve`).

The app runs on the test's database through its own sessions; the tests read and prepare data in
short committed units of work (`web.db()`), never holding a transaction the app would wait for.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import html
import mailbox
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import itsdangerous
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from mailer import tokens
from mailer.config import Settings
from mailer.contacts.lists import create_list
from mailer.store.db import session_scope
from mailer.store.models import (
    Contact,
    Event,
    MailingList,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from mailer.subscribers.queue import send_due
from mailer.web import create_app
from tests.support.smtp import free_port

UA = "Mozilla/5.0 (test) mailer-web-tests"


@dataclass
class Web:
    app: Flask
    settings: Settings

    def client(self, **environ: Any) -> FlaskClient:
        client = self.app.test_client()
        client.environ_base.update({"HTTP_USER_AGENT": UA, **environ})
        return client

    @contextmanager
    def db(self) -> Iterator[Session]:
        with session_scope(self.settings) as s:
            yield s

    def send_notices(self) -> int:
        """What `mailer serve`'s sender thread does a moment after a form is posted."""
        return send_due(self.settings)

    def outbox(self) -> list[EmailMessage]:
        """Every message in the outbox maildir, parsed (queued notices are sent first)."""
        self.send_notices()
        if not self.settings.outbox_dir.exists():
            return []
        box = mailbox.Maildir(self.settings.outbox_dir, create=False)
        out = []
        for key in sorted(box.keys()):
            msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            out.append(msg)
        return out

    def path(self, url: str) -> str:
        """The path of one of our public URLs (base_url is not where the test client runs)."""
        base = self.settings.base_url.rstrip("/")
        assert url.startswith(base + "/"), url
        return url[len(base) :]

    def confirm_path(self, msg: EmailMessage) -> str:
        return self.path(confirm_url(msg))

    def subscribe(
        self,
        client: FlaskClient,
        address: str,
        lists: list[str],
        *,
        lang: str = "en",
        language: str | None = None,
        name: str = "",
        form: str = "subscribe",
        **extra: str,
    ) -> TestResponse:
        """Post the form, then run the notice sender (under the same pinned clock, if any)."""
        data: dict[str, Any] = {
            "email": address,
            "name": name,
            "list": lists,
            "form": form,
            "lang": lang,
            "language": language or lang,
            **extra,
        }
        response = client.post("/subscribe", data=data)
        self.send_notices()
        return response


@pytest.fixture(name="web")
def web_fixture(settings: Settings) -> Web:
    return Web(create_app(settings), settings)


@pytest.fixture(name="lists")
def lists_fixture(web: Web) -> dict[str, int]:
    """Two public lists and a private one; their ids by slug."""
    with web.db() as s:
        news = create_list(
            s, "news", "Community newsletter", "Monthly news and events", public=True
        )
        press = create_list(
            s, "press", "Press releases", "Announcements for journalists", public=True
        )
        board = create_list(s, "board", "Board members", "Private", public=False)
        return {"news": news.id, "press": press.id, "board": board.id}


def text_part(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def confirm_url(msg: EmailMessage) -> str:
    m = re.search(r"https?://\S+/confirm/[A-Za-z0-9._-]+", text_part(msg))
    assert m, text_part(msg)
    return m.group(0)


def page_text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def consent_paragraph(page: str) -> str:
    """The consent statement exactly as a reader sees it on the page."""
    m = re.search(r'<p class="consent">(.*?)</p>', page, re.S)
    assert m, page
    return html.unescape(m.group(1))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def subscription(s: Session, address: str, slug: str) -> Subscription | None:
    return s.scalar(
        select(Subscription)
        .join(Contact)
        .join(MailingList)
        .where(Contact.email == address, MailingList.slug == slug)
    )


def status_of(web: Web, address: str, slug: str) -> SubscriptionStatus | None:
    with web.db() as s:
        sub = subscription(s, address, slug)
        return sub.status if sub else None


def snapshot(web: Web) -> dict[str, Any]:
    """Everything a visit could change: contacts, subscriptions, suppressions, events."""
    with web.db() as s:
        subs = sorted(
            (
                sub.contact_id,
                sub.list_id,
                sub.status.value,
                str(sub.consent_at),
                str(sub.confirmed_at),
                str(sub.unsubscribed_at),
                sub.unsubscribed_via,
            )
            for sub in s.scalars(select(Subscription))
        )
        return {
            "contacts": sorted((c.email, c.name, c.language) for c in s.scalars(select(Contact))),
            "subscriptions": subs,
            "suppressions": sorted(
                (x.email, x.reason.value) for x in s.scalars(select(Suppression))
            ),
            "events": s.scalar(select(func.count()).select_from(Event)),
        }


def expired_confirm_token(settings: Settings, contact_id: int, list_ids: tuple[int, ...]) -> str:
    """A genuine confirmation token made eight days ago (the default lifetime is seven)."""

    class EightDaysAgo(itsdangerous.TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 8 * 86400

    serializer = itsdangerous.URLSafeTimedSerializer(
        settings.secret_key, salt=tokens.CONFIRM, signer=EightDaysAgo
    )
    return str(serializer.dumps([contact_id, list(list_ids)]))


@contextmanager
def serving(tmp_path: Path) -> Iterator[int]:
    """A real `mailer serve` subprocess on the test's mailer.toml; yields its port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer",
            "--config",
            str(tmp_path / "mailer.toml"),
            "serve",
            "--port",
            str(port),
            "--threads",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        for _ in range(600):  # a loaded machine may take a while to start Python
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr and proc.stderr.read()
                time.sleep(0.1)
        else:
            pytest.fail("mailer serve did not answer /healthz")
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
