"""The release editor in headless Chromium against `mailer serve`, in English and in Korean:
typing into a language's text makes its preview frame follow (htmx posts the form, the frame
shows what `release preview` renders), the phone width and dark mode switch the frames, a save
makes a version. Each state is checked at 375 px and 1280 px (axe-core, nothing sticking out
sideways, no CSP refusal) and screenshotted to /tmp/console-screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailer.releases import drafts
from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import StaffRole
from mailer.translations import gettext
from tests.support.console_browser import (
    Live,
    by,
    check_page,
    click_through,
    sign_in,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.db]

PASSWORD = "a quiet morning at the press office"
EN = (
    "---\ntitle: Budget day\ndate: 2026-12-01\nsummary: The council passed the budget.\n---\n\n"
    "The council passed the budget on Tuesday.\n"
)
KO = (
    "---\ntitle: 예산의 날\nsummary: 의회가 예산을 통과시켰습니다.\n---\n\n"
    "의회가 화요일에 예산을 통과시켰습니다.\n"
)


def _frame_text(driver: Any, lang: str) -> str:
    """The text of the preview frame of `lang` (WebDriver may enter a sandboxed frame)."""
    from selenium.webdriver.common.by import By

    frame = driver.find_element(By.CSS_SELECTOR, f"#rel-preview iframe[data-lang='{lang}']")
    driver.switch_to.frame(frame)
    try:
        return str(driver.execute_script("return document.body ? document.body.innerText : ''"))
    except Exception:  # the sandbox may refuse scripts: read the source instead
        return str(driver.page_source)
    finally:
        driver.switch_to.default_content()


def _frame_source(driver: Any, lang: str) -> str:
    from selenium.webdriver.common.by import By

    frame = driver.find_element(By.CSS_SELECTOR, f"#rel-preview iframe[data-lang='{lang}']")
    driver.switch_to.frame(frame)
    try:
        return str(driver.page_source)
    finally:
        driver.switch_to.default_content()


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_typing_moves_the_preview(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    live, driver = console_live, chromium
    email = f"editor.{lang}@press.example.org"
    with session_scope(live.settings) as s:
        user, _token = accounts.add(s, email, StaffRole.EDITOR, language=lang)
        accounts.set_password(s, user, PASSWORD)
        draft_id = drafts.create_draft(
            s, live.settings, "budget", {"en": EN, "ko": KO}, author="user:someone@x"
        ).id
    sign_in(driver, live, email, PASSWORD)
    shots = tmp_path / "screenshots"
    driver.get(f"{live.url}/admin/releases")
    check_page(driver, shots, f"{lang}-releases-list")
    driver.get(f"{live.url}/admin/releases/{draft_id}")
    wait_until(driver, lambda d: "예산의 날" in _frame_source(d, "ko"))
    check_page(driver, shots, f"{lang}-releases-editor")

    # Typing into the Korean text: the Korean frame follows, the English one stays as it was.
    before = by(driver, "#rel-preview iframe[data-lang='ko']").get_attribute("src")
    body = by(driver, "#ko-body")
    body.click()
    for ch in "\n\n새 문단: 주민 설명회":
        body.send_keys(ch)
    wait_until(driver, lambda d: "새 문단: 주민 설명회" in _frame_text(d, "ko"))
    after = by(driver, "#rel-preview iframe[data-lang='ko']").get_attribute("src")
    assert after != before
    assert "새 문단" not in _frame_text(driver, "en")
    assert "The council passed the budget on Tuesday." in _frame_text(driver, "en")

    # The title in the English form: the frame's heading follows.
    title = by(driver, "#en-title")
    title.clear()
    title.send_keys("Budget night")
    wait_until(driver, lambda d: "Budget night" in _frame_text(d, "en"))

    # Phone width and dark mode: the frames are 375 px wide and the email's dark rules apply.
    by(driver, "input[name=width][value=phone]").click()
    by(driver, "input[name=dark]").click()
    wait_until(
        driver,
        lambda d: d.execute_script(
            "var f = document.querySelectorAll('#rel-preview iframe');"
            "return f.length === 2 && Array.from(f).every("
            "function (x) { return x.width === '375' && x.src.indexOf('dark=1') > 0; });"
        ),
    )
    wait_until(driver, lambda d: "@media all" in _frame_source(d, "ko"))
    check_page(driver, shots, f"{lang}-releases-phone-dark")

    # Saving keeps what was typed as version 2.
    click_through(driver, by(driver, "#rel-form button.primary"))
    notice = by(driver, ".alert-ok").text
    assert notice == gettext(lang, "Saved as version %(number)s.", number=2)
    with session_scope(live.settings) as s:
        version = drafts.get_version(s, draft_id)
        assert version.number == 2 and version.author == f"user:{email}"
        assert "새 문단: 주민 설명회" in version.sources["ko"]
        assert "title: Budget night" in version.sources["en"]
    check_page(driver, shots, f"{lang}-releases-saved")
    driver.get(f"{live.url}/admin/releases/{draft_id}/diff?from=1&to=2")
    check_page(driver, shots, f"{lang}-releases-diff")
