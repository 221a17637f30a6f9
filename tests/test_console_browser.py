"""The staff console in a real browser (headless Chromium) against a real `mailer serve`.

One flow from the invitation to two-factor sign-in and inviting a colleague, in English and in
Korean; then every page the console has, opened as an admin at phone (375 px) and desktop
(1280 px) width in both languages: axe-core finds no serious or critical violation, nothing
sticks out past the window's edge, the page blocks no script or style of its own (CSP), and a
screenshot is kept for people to look at (tmp_path/screenshots, copied to
/tmp/console-screenshots). The flows of the people pages are in test_console_browser_flows.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pyotp
import pytest

from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.contacts.suppressions import suppress
from mailer.store.db import session_scope
from mailer.store.models import Contact, MailingList, StaffUser, SuppressionReason
from mailer.translations import gettext
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.console_browser import Live, by, check_page, h1, page_faults, speak, wait_h1

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a long walk by the river"


def _invite_link(output: str) -> str:
    found = re.search(r"http://\S+/admin/invite/\S+", output)
    assert found, output
    return found.group(0)


@pytest.mark.db
@pytest.mark.parametrize("lang", ["en", "ko"])
def test_invitation_to_two_factor_sign_in(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    driver = chromium
    shots = tmp_path / "screenshots"

    def t(message: str, **values: Any) -> str:
        return gettext(lang, message, **values)

    cli = Cli(console_live.config)
    email = f"chief.{lang}@press.example.org"
    out = cli("users", "add", email, "--role", "admin", "--language", lang).output
    link = _invite_link(out)

    # 1. The invitation: choose a password, land on the dashboard.
    speak(driver, lang)
    driver.get(link)
    assert h1(driver) == t("Welcome to the press console")
    check_page(driver, shots, f"{lang}-invitation")
    by(driver, "#name").send_keys("김하늘" if lang == "ko" else "Sky Kim")
    by(driver, "#password").send_keys(PASSWORD)
    by(driver, "#password2").send_keys(PASSWORD)
    by(driver, "button[type=submit]").click()
    wait_h1(driver, t("Dashboard"))
    check_page(driver, shots, f"{lang}-dashboard")

    # 2. Two-factor sign-in: scan (read the key), type a code, keep the recovery codes.
    driver.get(f"{console_live.url}/admin/account/2fa")
    wait_h1(driver, t("Set up two-factor sign-in"))
    check_page(driver, shots, f"{lang}-2fa-setup")
    secret = by(driver, "code.secret").text.strip()
    totp = pyotp.TOTP(secret)
    by(driver, "#code").send_keys(totp.now())
    by(driver, "form[action$='/admin/account/2fa'] button[type=submit]").click()
    wait_h1(driver, t("Set up two-factor sign-in"))
    codes = [el.text for el in driver.find_elements("css selector", "ul.codes code")]
    assert len(codes) == 10
    check_page(driver, shots, f"{lang}-recovery-codes")

    # 3. Sign out, sign in again: password, then a code of the next time step (the one used to
    # set up is spent), then a recovery code on a third sign-in.
    for second in ("totp", "recovery"):
        driver.get(f"{console_live.url}/admin/account")
        by(driver, "form[action$='/admin/logout'] button").click()
        wait_h1(driver, t("Sign in"))
        if second == "totp":
            check_page(driver, shots, f"{lang}-sign-in")
        by(driver, "#email").send_keys(email)
        by(driver, "#password").send_keys(PASSWORD)
        by(driver, "button[type=submit]").click()
        wait_h1(driver, t("Two-factor sign-in"))
        if second == "totp":
            check_page(driver, shots, f"{lang}-second-factor")
            code = totp.at(time.time() + 30)
        else:
            code = codes[0]
        by(driver, "#code").send_keys(code)
        by(driver, "button[type=submit]").click()
        wait_h1(driver, t("Dashboard"))

    # 4. Invite a colleague: the link is shown (and emailed to the outbox).
    driver.get(f"{console_live.url}/admin/users")
    wait_h1(driver, t("Users"))
    by(driver, "#invite-email").send_keys("editor@press.example.org")
    by(driver, "#invite-name").send_keys("Editor")
    by(driver, "form[action$='/admin/users'] button[type=submit]").click()
    wait_h1(driver, t("Users"))
    assert "/admin/invite/" in by(driver, "code.link-box").text
    check_page(driver, shots, f"{lang}-users")

    # 5. The audit log names who did what.
    driver.get(f"{console_live.url}/admin/audit")
    wait_h1(driver, t("Audit log"))
    page = driver.page_source
    assert "staff_invited" in page and f"user:{email}" in page
    check_page(driver, shots, f"{lang}-audit")


def _seed(live: Live) -> dict[str, Any]:
    """Something on every page: lists, contacts in both languages, a suppression."""
    with session_scope(live.settings) as s:
        create_list(s, "press", "Press releases", names={"ko": "보도자료"}, public=True)
        create_list(s, "news", "Community newsletter", names={"ko": "소식지"})
        for i in range(12):
            add_contact(
                s,
                f"reporter{i}@news{i % 3}.example.com",
                "press",
                name=f"김기자{i}" if i % 2 else f"Reporter {i}",
                language="ko" if i % 2 else "en",
                organisation="코리아데일리" if i % 2 else "Daily Planet",
            )
        suppress(s, "gone@example.com", SuppressionReason.MANUAL, source="test")
        contact_id = s.query(Contact.id).first()
        list_row = s.query(MailingList).filter_by(slug="press").one()
        staff = s.query(StaffUser.id).first()
        return {
            "contact_id": contact_id[0] if contact_id else 1,
            "list_id": list_row.id,
            "slug": "press",
            "user_id": staff[0] if staff else 1,
        }


def _pages(live: Live, values: dict[str, Any]) -> list[str]:
    """Every GET page of the console's URL map, with ids of real rows for its arguments."""
    app = create_app(live.settings)
    paths = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith("/admin") or "GET" not in (rule.methods or ()):
                continue
            if rule.endpoint in ("console.static", "console.logout"):
                continue
            if any(arg not in values for arg in rule.arguments):
                continue  # a token page (invitation, reset): the flow test opens those
            built = rule.build(values, append_unknown=False)
            assert built is not None, rule.rule
            paths.append(built[1])
    return sorted(set(paths))


@pytest.mark.db
def test_every_console_page_is_accessible(
    console_live: Live, chromium: Any, tmp_path: Path
) -> None:
    driver = chromium
    cli = Cli(console_live.config)
    email = "admin@press.example.org"
    link = _invite_link(cli("users", "add", email, "--role", "admin").output)
    driver.get(link)
    by(driver, "#password").send_keys(PASSWORD)
    by(driver, "#password2").send_keys(PASSWORD)
    by(driver, "button[type=submit]").click()
    wait_h1(driver, gettext("en", "Dashboard"))
    values = _seed(console_live)
    pages = _pages(console_live, values)
    assert "/admin/" in pages and "/admin/users" in pages
    faults: list[str] = []
    for lang in ("en", "ko"):
        driver.get(f"{console_live.url}/admin/account")
        from selenium.webdriver.support.ui import Select

        Select(by(driver, "#language")).select_by_value(lang)
        by(driver, "form[action$='/admin/account/language'] button").click()
        for path in pages:
            driver.get(console_live.url + path)
            assert driver.execute_script("return document.documentElement.lang") == lang, path
            assert h1(driver), f"{path} has no h1"
            name = f"{lang}-" + (path.strip("/").replace("/", "-") or "admin")
            # Every page looked at before failing: one run lists every fault.
            faults += page_faults(driver, tmp_path / "screenshots", name)
    assert not faults, "\n".join(faults)
