"""A campaign followed live in headless Chromium against `mailer serve`, in English and Korean.

The release goes out in a thread of this test, throttled, to a real SMTP server on 127.0.0.1
(aiosmtpd) while the browser shows the campaign's page: the progress must change on the page
without a reload (server-sent events, static/progress.js) and reach "done"; the figures shown
must be the ledger's, and the SMTP server must have what the page says was sent. Then the
report. Each page is checked at 375 px and 1280 px (axe-core serious/critical, nothing sticking
out sideways, no CSP refusal) with a screenshot of each under /tmp/console-screenshots.

`mailer serve` here is configured with the same SMTP server: whichever sends the campaign (this
thread, or the worker a server may run inside itself), the messages reach the same place.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from sqlalchemy import select

from mailer.config import Settings, load_settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.delivery import campaigns as campaigns_lib
from mailer.delivery.send import send_release
from mailer.errors import MailerError
from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import Campaign, CampaignStatus, StaffRole
from mailer.translations import gettext
from tests.support.config import write_config
from tests.support.console_browser import (
    Live,
    check_page,
    mark_page,
    same_page,
    sign_in,
    wait_until,
)
from tests.support.sending import use_smtp
from tests.support.smtp import SmtpServer, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.db]

PASSWORD = "a quiet morning at the press office"
RECIPIENTS = 24
RATE = 3.0  # messages a second: the send lasts several seconds, long enough to watch


@pytest.fixture
def serve_smtp(settings: Settings, tmp_path: Path, smtp: SmtpServer) -> Iterator[Live]:
    """`mailer serve` on a free port, its transport the test's SMTP server."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    folder = tmp_path / "serve"
    folder.mkdir()
    write_config(
        folder,
        {
            "database_url": settings.database_url,
            "base_url": url,
            "transport": "smtp",
            "smtp_url": smtp.url(),
            "concurrency": 1,
            "batch_size": 2,
        },
    )
    config = folder / "mailer.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "--config", str(config), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr and proc.stderr.read().decode()
                time.sleep(0.1)
        yield Live(load_settings(config, env={}), url, config)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def audience(settings: Settings) -> None:
    with session_scope(settings) as s:
        create_list(s, "press", "Press 기자단")
        for i in range(RECIPIENTS):
            lang = "ko" if i % 3 else "en"
            contact, _sub = add_contact(
                s,
                f"reporter{i}@news{i % 4}.example.org",
                "press",
                name=f"Reporter {i}",
                language=lang,
                organisation=["한겨레", "Daily News", "Wire", ""][i % 4],
            )
            contact.beat = ["politics", "economy", ""][i % 3]


def figures(driver: Any) -> dict[str, str]:
    found = driver.execute_script(
        "var out = {}; document.querySelectorAll('#progress [data-figure]').forEach("
        "function (e) { out[e.getAttribute('data-figure')] = e.textContent.trim(); });"
        "out.final = (document.getElementById('progress') || {getAttribute: function () "
        "{ return ''; }}).getAttribute('data-final'); return out;"
    )
    return dict(found)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_progress_live_then_the_report(
    serve_smtp: Live,
    chromium: Any,
    smtp: SmtpServer,
    release: Path,
    tmp_path: Path,
    lang: str,
) -> None:
    live, driver = serve_smtp, chromium
    folder = tmp_path / "screenshots"
    sender_folder = tmp_path / "sender"
    sender_folder.mkdir()
    sending = use_smtp(live.settings, sender_folder, smtp, concurrency=1, batch_size=2)
    audience(live.settings)
    email = f"sender.{lang}@press.example.org"
    with session_scope(live.settings) as s:
        user, _token = accounts.add(s, email, StaffRole.SENDER, language=lang)
        accounts.set_password(s, user, PASSWORD)
    sign_in(driver, live, email, PASSWORD)

    problems: list[str] = []

    def send() -> None:
        try:
            send_release(sending, release, ["press"], confirm=lambda _plan: True, rate=RATE)
        except MailerError as err:  # e.g. the server's own worker holds SQLite's sender lock
            problems.append(str(err))

    thread = threading.Thread(target=send, name="send", daemon=True)
    thread.start()
    try:
        cid = wait_for_campaign(live.settings)
        driver.get(f"{live.url}/admin/campaigns/{cid}")
        mark_page(driver)
        seen: list[str] = []

        def finished(d: Any) -> bool:
            f = figures(d)
            if f.get("sent") and (not seen or seen[-1] != f["sent"]):
                seen.append(f["sent"])
            return f.get("final") == "yes"

        wait_until(driver, finished, timeout=120)
        assert same_page(driver), "the page was reloaded instead of updated"
        assert len(seen) >= 2, f"the sent figure never changed on the page: {seen}"
        assert driver.execute_script(
            "return document.getElementById('progress-panel').getAttribute('data-live')"
        ) in ("sse", "done"), "the events were not used"
    finally:
        thread.join(timeout=120)
    with session_scope(live.settings) as s:
        c = s.get(Campaign, cid)
        assert c is not None and c.status == CampaignStatus.DONE, problems
        counts = campaigns_lib.status_counts(s, cid)
    assert counts["sent"] == RECIPIENTS
    shown = figures(driver)
    assert shown["sent"] == f"{counts['sent']:,}" and shown["waiting"] == "0"
    assert len(smtp.sink.received) == counts["sent"]
    page = lxml.html.fromstring(driver.page_source)
    badge = page.find_class("badge")[0].text_content().strip()
    assert badge == gettext(lang, "Done")
    check_page(driver, folder, f"{lang}-campaign-progress-done")

    driver.get(f"{live.url}/admin/campaigns/{cid}/report")
    report = lxml.html.fromstring(driver.page_source)
    assert report.xpath("//svg//rect[@class='bar']"), "no timeline chart"
    # The "All" row: recipients, then pending, claimed, sent, ... (DeliveryStatus's order).
    total = [
        td.text_content().strip() for td in report.xpath("//table[@class='outcomes']/tfoot//td")
    ]
    assert total[0] == total[3] == str(RECIPIENTS), total
    check_page(driver, folder, f"{lang}-campaign-report")

    driver.get(f"{live.url}/admin/campaigns")
    check_page(driver, folder, f"{lang}-campaigns")


def wait_for_campaign(settings: Settings) -> int:
    """The id of the campaign the send thread planned (it appears within seconds)."""
    for _ in range(300):
        with session_scope(settings) as s:
            found = s.scalar(select(Campaign.id).order_by(Campaign.id.desc()))
        if found is not None:
            return int(found)
        time.sleep(0.1)
    raise AssertionError("the send thread planned no campaign")
