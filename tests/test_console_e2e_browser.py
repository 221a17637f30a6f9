"""The whole path of a release through the console in headless Chromium, in English and Korean
(the staff users' console language), against a real `mailer serve` whose transport and embedded
worker send to a real SMTP server on 127.0.0.1 (aiosmtpd), with `require_approval = true`:

an editor creates a release, types its English and Korean text into the editor (the preview
follows), saves it, test-sends it to themself (both languages arrive, marked as a test), asks
for approval; a sender, signed in from another browser, approves and schedules it with the
picker a little ahead; the worker inside the server sends it when it is due to ~20 contacts in
both languages; the campaign page reaches "done" without a reload; the report opens and its CSV
(fetched in the signed-in browser) is the very text `mailer campaigns report --csv` writes.
Then: every contact got exactly one message (Message-IDs at the SMTP server), in their language,
and the audit log holds the test, the request, the approval, the hand-off and the send.

Every page is checked at 375 px and 1280 px (axe-core serious/critical, nothing sticking out
sideways, no CSP refusal) and screenshotted to /tmp/console-screenshots (e2e-LANG-*.png).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from mailer.config import Settings, load_settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.delivery import campaigns as campaigns_lib
from mailer.releases import drafts
from mailer.releases.dates import format_when
from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    Event,
    ReleaseDraft,
    StaffRole,
)
from mailer.translations import gettext
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.console_browser import (
    CHROMEDRIVER,
    CHROMIUM,
    Live,
    by,
    check_page,
    click_through,
    mark_page,
    same_page,
    sign_in,
    speak,
    wait_until,
)
from tests.support.smtp import Received, SmtpServer, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.db]

PASSWORD = "a quiet morning at the press office"
CONTACTS = [
    (f"reporter{i:02d}@news{i % 3}.example.org", "ko" if i % 2 else "en") for i in range(20)
]
TITLE = {"en": "Library opens on Sundays", "ko": "도서관, 일요일에도 문을 엽니다"}
SUMMARY = {
    "en": "From March the community library opens every Sunday afternoon.",
    "ko": "3월부터 마을 도서관이 매주 일요일 오후에 문을 엽니다.",
}
BODY = {
    "en": "The community library will open every Sunday from 1 pm to 5 pm, starting in March.\n\n"
    "Volunteers read to children at 2 pm in English and in Korean.",
    "ko": "마을 도서관이 3월부터 매주 일요일 오후 1시부터 5시까지 문을 엽니다.\n\n"
    "오후 2시에는 자원봉사자들이 영어와 한국어로 아이들에게 책을 읽어 줍니다.",
}
ZONE = "America/New_York"  # the picker's zone: not the organisation's, so the page converts
AHEAD = timedelta(seconds=20)  # the schedule: after the page checks before it is posted


@dataclass(frozen=True)
class E2E:
    live: Live
    smtp: SmtpServer


@pytest.fixture
def e2e_serve(settings: Settings, tmp_path: Path, smtp: SmtpServer) -> Iterator[E2E]:
    """`mailer serve` with its embedded worker, approval required, sending to `smtp`."""
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
            "require_approval": True,
            "timezone": "Asia/Seoul",
            "concurrency": 1,
            "batch_size": 2,
            # Slow enough that the progress page shows figures between 0 and done.
            "rate_per_second": 5.0,
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
        yield E2E(Live(load_settings(config, env={}), url, config), smtp)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def other_browser() -> Iterator[Any]:
    """A second Chromium with a profile of its own: the approver's session, not the editor's.
    (The `chromium` fixture gives one browser per test; its options are repeated here.)"""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--font-render-hinting=none",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_page_load_timeout(30)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def _frame_text(driver: Any, lang: str) -> str:
    """The text of the preview frame of `lang` (its source when the sandbox refuses scripts)."""
    frame = by(driver, f"#rel-preview iframe[data-lang='{lang}']")
    driver.switch_to.frame(frame)
    try:
        return str(driver.page_source)
    finally:
        driver.switch_to.default_content()


def _notice(driver: Any) -> str:
    return str(
        driver.execute_script(
            "var n = document.querySelector('.alert-ok'); return n ? n.innerText.trim() : ''"
        )
    )


def _figures(driver: Any) -> dict[str, str]:
    found = driver.execute_script(
        "var out = {}; document.querySelectorAll('#progress [data-figure]').forEach("
        "function (e) { out[e.getAttribute('data-figure')] = e.textContent.trim(); });"
        "var p = document.getElementById('progress');"
        "out.final = p ? p.getAttribute('data-final') : ''; return out;"
    )
    return dict(found)


def _type(driver: Any, css: str, text: str, *, clear: bool = False) -> None:
    field = by(driver, css)
    if clear:
        field.clear()
    field.send_keys(text)


def _fetch(driver: Any, url: str) -> dict[str, str]:
    """GET `url` from the page, with the browser's session cookie (the signed-in user)."""
    result = driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(function (r) {"
        " return r.text().then(function (t) { done({status: String(r.status), text: t,"
        " type: r.headers.get('Content-Type') || '',"
        " disposition: r.headers.get('Content-Disposition') || ''}); }); },"
        " function (e) { done({status: 'error', text: String(e), type: '', disposition: ''}); });",
        url,
    )
    return dict(result)


def _people(settings: Settings, lang: str) -> tuple[str, str]:
    editor, sender = f"editor.{lang}@staff.example.org", f"sender.{lang}@staff.example.org"
    with session_scope(settings) as s:
        for email, role in ((editor, StaffRole.EDITOR), (sender, StaffRole.SENDER)):
            user, _token = accounts.add(s, email, role, language=lang)
            accounts.set_password(s, user, PASSWORD)
        create_list(s, "press", "Press 기자단")
        for i, (email, language) in enumerate(CONTACTS):
            add_contact(s, email, "press", name=f"Reporter {i}", language=language)
    return editor, sender


def _to(smtp: SmtpServer, address: str) -> list[Received]:
    return smtp.sink.to(address)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_write_test_approve_schedule_send_report(
    e2e_serve: E2E, chromium: Any, tmp_path: Path, lang: str
) -> None:
    live, smtp, driver = e2e_serve.live, e2e_serve.smtp, chromium
    shots = tmp_path / "screenshots"

    def check(name: str, browser: Any = None) -> None:
        check_page(browser or driver, shots, f"e2e-{lang}-{name}")

    editor, sender = _people(live.settings, lang)

    # --- the editor writes the release ---------------------------------------------------------
    speak(driver, lang)
    sign_in(driver, live, editor, PASSWORD)
    driver.get(f"{live.url}/admin/releases/new")
    check("new")
    _type(driver, "#rel-title", TITLE["en"])
    _type(driver, "#rel-slug", "sunday-library")
    boxes = driver.find_elements("css selector", "input[name=language]")
    assert {b.get_attribute("value") for b in boxes if b.is_selected()} == {"en", "ko"}
    click_through(driver, by(driver, "form button[type=submit].primary"))
    assert _notice(driver) == gettext(lang, "Draft %(name)s created.", name="sunday-library")
    with session_scope(live.settings) as s:
        draft_id = s.scalars(
            select(ReleaseDraft.id).where(ReleaseDraft.slug == "sunday-library")
        ).one()

    _type(driver, "#rel-date", "2026-03-01")
    _type(driver, "#rel-lists", "press")
    for code in ("en", "ko"):
        _type(driver, f"#{code}-title", TITLE[code], clear=True)
        _type(driver, f"#{code}-summary", SUMMARY[code])
        _type(driver, f"#{code}-body", BODY[code])
    # The preview follows the typing (nothing saved yet): each frame shows its language's text.
    for code in ("en", "ko"):
        last_words = BODY[code].split("\n")[-1][:30]
        wait_until(driver, lambda d, c=code, w=last_words: w in _frame_text(d, c))
        assert TITLE[code] in _frame_text(driver, code)
    assert BODY["ko"][:20] not in _frame_text(driver, "en")
    check("editor-typed")
    click_through(driver, by(driver, "#rel-form button.primary"))
    assert _notice(driver) == gettext(lang, "Saved as version %(number)s.", number=2)
    with session_scope(live.settings) as s:
        version = drafts.get_version(s, draft_id)
        assert version.number == 2 and version.author == f"user:{editor}"
        assert TITLE["ko"] in version.sources["ko"] and BODY["ko"] in version.sources["ko"]
        assert BODY["en"] in version.sources["en"]
    check("editor-saved")

    # --- the test send, read at the SMTP server ------------------------------------------------
    driver.get(f"{live.url}/admin/releases/{draft_id}/test")
    check("test")
    click_through(driver, by(driver, "form button[type=submit].primary"))
    rows = driver.find_elements("css selector", "table.test-results tbody tr")
    assert len(rows) == 2, driver.page_source[-2000:]
    tests = _to(smtp, editor)
    assert len(tests) == 2
    subjects = {str(r.message["Subject"]) for r in tests}
    assert subjects == {f"[Test] {TITLE['en']}", f"[테스트] {TITLE['ko']}"}, subjects
    bodies = " ".join(r.message.get_body(("plain",)).get_content() for r in tests)  # type: ignore[union-attr]
    assert "Sunday from 1 pm" in bodies and "오후 1시부터" in bodies
    check("test-sent")

    # --- the plan, and approval asked for -------------------------------------------------------
    driver.get(f"{live.url}/admin/releases/{draft_id}/send?list=press")
    plan_total = by(driver, "#plan-total").text
    assert str(len(CONTACTS)) in plan_total, plan_total
    # An editor plans and asks; sending is a sender's (and no form to send is offered).
    assert gettext(lang, "Only senders and admins send releases.") in by(driver, "#send").text
    assert not driver.find_elements("css selector", "#send form")
    check("plan-editor")
    click_through(driver, by(driver, "#approval form button[type=submit]"))
    assert _notice(driver) == gettext(
        lang, "Approval asked for; %(count)s senders were emailed.", count=1
    )
    check("approval-asked")
    # The sender's email arrives after the response (the request's commit comes first).
    wait_until(driver, lambda _d: _to(smtp, sender))
    (asked,) = _to(smtp, sender)
    assert str(asked.message["Subject"]) == gettext(
        lang, "Approval asked for: %(release)s", release="sunday-library"
    )
    asked_text = asked.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"{live.url}/admin/releases/{draft_id}/send" in asked_text

    # --- a sender, in another browser, approves and schedules ------------------------------------
    with other_browser() as second:
        speak(second, lang)
        sign_in(second, live, sender, PASSWORD)
        second.get(f"{live.url}/admin/approvals")
        assert "sunday-library" in second.page_source
        check("approvals", second)
        second.get(f"{live.url}/admin/releases/{draft_id}/send?list=press")
        _type(second, "#approval-comment", "OK" if lang == "en" else "좋습니다")
        click_through(second, by(second, "#approval button[value=approve]"))
        assert _notice(second) == gettext(lang, "Approved.")
        assert sender in by(second, "#approval-state").text
        check("approved", second)

        # The picker: a moment a little ahead in New York time; the server shows it in the
        # organisation's zone (Asia/Seoul) and in UTC.
        from selenium.webdriver.support.ui import Select

        by(second, "input[name=mode][value=schedule]").click()
        Select(by(second, "#send-zone")).select_by_value(ZONE)
        # The picker takes whole minutes (a time input's step): the next minute at least AHEAD
        # from now, so the page checks below end before it and the worker picks it up later.
        due = (datetime.now(UTC) + AHEAD + timedelta(minutes=1)).replace(second=0, microsecond=0)
        local = due.astimezone(ZoneInfo(ZONE))
        second.execute_script(
            "var d = document.getElementById('send-date'), t = document.getElementById("
            "'send-time'); d.value = arguments[0]; t.value = arguments[1];"
            "t.dispatchEvent(new Event('change', {bubbles: true}));",
            local.strftime("%Y-%m-%d"),
            local.strftime("%H:%M"),
        )
        wait_until(second, lambda d: d.find_elements("css selector", "#when-utc"))
        seoul = ZoneInfo("Asia/Seoul")
        assert by(second, "#when-utc").text == format_when(due, lang)
        assert by(second, "#when-local").text == format_when(due.astimezone(seoul), lang)
        check("scheduled-picked", second)
        click_through(second, by(second, "#send button.primary"))
        with session_scope(live.settings) as s:
            campaign = s.scalars(select(Campaign)).one()
            cid = campaign.id
            assert campaign.not_before is not None
            assert campaign.not_before.replace(tzinfo=UTC) == due, campaign.not_before
        notice = _notice(second)
        assert str(cid) in notice and str(len(CONTACTS)) in notice, notice

        # --- the campaign page: scheduled, then sent by the worker, followed without reload ----
        mark_page(second)
        seen: list[str] = []

        def finished(d: Any) -> bool:
            f = _figures(d)
            if f.get("sent") and (not seen or seen[-1] != f["sent"]):
                seen.append(f["sent"])
            return f.get("final") == "yes"

        assert _figures(second).get("final") == "no"
        check("campaign-scheduled", second)
        wait_until(second, finished, timeout=150)
        assert same_page(second), "the campaign page was reloaded instead of updated"
        assert seen[0] == "0" and seen[-1] == str(len(CONTACTS)), seen
        assert second.execute_script(
            "return document.getElementById('progress-panel').getAttribute('data-live')"
        ) in ("sse", "done"), "the events were not used"
        assert _figures(second)["waiting"] == "0"
        check("campaign-done", second)

        # --- the report and its CSV -----------------------------------------------------------
        second.get(f"{live.url}/admin/campaigns/{cid}/report")
        total = second.execute_script(
            "return Array.from(document.querySelectorAll('table.outcomes tfoot td'))"
            ".map(function (td) { return td.textContent.trim(); })"
        )
        assert total[0] == total[3] == str(len(CONTACTS)), total
        check("report", second)
        link = by(second, f"a[href$='/campaigns/{cid}/report.csv']").get_attribute("href")
        got = _fetch(second, link)
        assert got["status"] == "200" and got["type"].startswith("text/csv"), got["status"]
        assert f"campaign-{cid}-report.csv" in got["disposition"]
        second.get(f"{live.url}/admin/campaigns")
        check("campaigns", second)

    out = tmp_path / "cli-report.csv"
    Cli(live.config)("campaigns", "report", str(cid), "--csv", str(out))
    cli_text = out.read_bytes().decode("utf-8-sig")  # as written: CSV's CRLF kept
    # fetch's text() drops the BOM, as utf-8-sig reading does: the same text, byte for byte.
    assert got["text"].lstrip("\ufeff") == cli_text
    lines = cli_text.splitlines()
    assert len(lines) == len(CONTACTS) + 1 and "email" in lines[0]

    # --- every contact got exactly one message, in their language -----------------------------
    mine = {email for email, _l in CONTACTS}
    sent = [r for r in smtp.sink.received if set(a.lower() for a in r.rcpt_tos) & mine]
    by_id = Counter(r.message_id for r in sent)
    assert len(by_id) == len(CONTACTS) and max(by_id.values()) == 1, by_id.most_common(3)
    at_sink = Counter(a.lower() for r in sent for a in r.rcpt_tos)
    assert at_sink == Counter(mine)
    for email, language in CONTACTS:
        (message,) = [r.message for r in sent if email in r.rcpt_tos]
        assert str(message["Subject"]) == TITLE[language], (email, message["Subject"])
    with session_scope(live.settings) as s:
        c = s.get(Campaign, cid)
        assert c is not None and c.status == CampaignStatus.DONE
        # The worker waited for the moment chosen (the ledger's times, not the test's clock).
        assert c.started_at is not None and c.not_before is not None
        assert c.started_at >= c.not_before
        counts = campaigns_lib.status_counts(s, cid)
        ids = set(s.scalars(select(Delivery.message_id).where(Delivery.campaign_id == cid)))
        events = list(s.scalars(select(Event).order_by(Event.id)))
    assert counts["sent"] == len(CONTACTS)
    assert ids == set(by_id)

    # --- the audit log ----------------------------------------------------------------------------
    def actors(kind: str) -> list[str]:
        return [e.actor for e in events if e.kind == kind]

    assert actors("release.test_sent") == [f"user:{editor}"]
    assert actors("release.approval_requested") == [f"user:{editor}"]
    assert actors("release.approved") == [f"user:{sender}"]
    assert actors("campaign.handed_off") == [f"user:{sender}"]
    (handed,) = [e for e in events if e.kind == "campaign.handed_off"]
    assert handed.campaign_id == cid and handed.data["at"] != "now"
    assert datetime.fromisoformat(handed.data["at"]).astimezone(UTC) == due
    assert [e.campaign_id for e in events if e.kind == "campaign.send"] == [cid]
    assert [e.campaign_id for e in events if e.kind == "campaign.done"] == [cid]
    kinds = [e.kind for e in events]
    assert kinds.index("release.approved") < kinds.index("campaign.handed_off")
    assert kinds.index("campaign.handed_off") < kinds.index("campaign.send")
