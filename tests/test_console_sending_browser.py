"""Sending from the console in headless Chromium against `mailer serve`, in English and Korean:
the test send page, the plan page (its time-zone picker answered by the server through htmx as
the fields change), send now, and the worker inside the server carrying the campaign out. Each
page is checked at 375 px and 1280 px (axe-core, nothing sticking out sideways, no CSP refusal,
a screenshot of each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer.releases import drafts
from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, StaffRole
from mailer.translations import gettext
from tests.support.console_browser import Live, by, check_page, click_through, sign_in, wait_until
from tests.support.sending import SAMPLES, populate

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.db]

PASSWORD = "a quiet morning at the press office"


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_plan_pick_a_moment_and_send_now(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    live, driver = console_live, chromium
    folder = tmp_path / "screenshots"
    email = f"sender.{lang}@press.example.org"
    with session_scope(live.settings) as s:
        user, _token = accounts.add(s, email, StaffRole.SENDER, language=lang)
        accounts.set_password(s, user, PASSWORD)
    populate(live.settings)
    sources = {
        code: (SAMPLES / f"election-night.{code}.md").read_text(encoding="utf-8")
        for code in ("en", "ko")
    }
    with session_scope(live.settings) as s:
        draft_id = drafts.create_draft(
            s, live.settings, "election-night", sources, author="user:someone@else.example.org"
        ).id
    sign_in(driver, live, email, PASSWORD)

    driver.get(f"{live.url}/admin/releases/{draft_id}/test")
    check_page(driver, folder, f"{lang}-test")
    driver.get(f"{live.url}/admin/releases/{draft_id}/send")
    check_page(driver, folder, f"{lang}-plan")
    assert gettext(lang, "Sends are carried out by the worker inside this server.") in (
        by(driver, "#worker-note").text
    )
    # The picker: the server says the moment in the organisation's zone (UTC here) and in UTC.
    by(driver, "input[name=mode][value=schedule]").click()
    driver.execute_script(
        "document.getElementById('send-date').value = '2030-07-01';"
        "document.getElementById('send-time').value = '09:00';"
    )
    zone = by(driver, "#send-zone")
    from selenium.webdriver.support.ui import Select

    Select(zone).select_by_value("Asia/Seoul")
    wait_until(driver, lambda d: d.find_elements("css selector", "#when-utc"))
    assert "2030" in by(driver, "#when-utc").text
    check_page(driver, folder, f"{lang}-plan-picked")
    # Send now: the campaign goes to the worker inside the server, which sends it.
    by(driver, "input[name=mode][value=now]").click()
    click_through(driver, by(driver, "#send button.primary"))
    with session_scope(live.settings) as s:
        campaign = s.scalars(select(Campaign)).one()
        campaign_id = campaign.id

    def sent(_driver: Any) -> bool:
        with session_scope(live.settings) as s:
            rows = list(
                s.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign_id))
            )
            status = s.get(Campaign, campaign_id)
            return (
                bool(rows)
                and all(r == DeliveryStatus.SENT for r in rows)
                and (status is not None and status.status == CampaignStatus.DONE)
            )

    wait_until(driver, sent, timeout=60)
