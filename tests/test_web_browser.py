"""A real browser (Debian's headless chromium + chromium-driver) against a real `mailer serve`.

Subscribes through the form, follows the confirmation link from the outbox, confirms, receives a
release sent with `mailer send`, unsubscribes through its footer link and saves preferences.
Every page is photographed at phone (375 px) and desktop (1280 px) width, in English and Korean,
into tmp_path/screenshots and a copy in /tmp/web-screenshots for people to look at.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailer import translations
from mailer.config import Settings, load_settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.store.db import session_scope
from mailer.store.models import Contact, Suppression
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.web import Web, confirm_url, expired_confirm_token, html_part, status_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SAMPLES = Path(__file__).parents[1] / "mailer" / "samples"
PUBLIC_COPY = Path("/tmp/web-screenshots")
SIZES = {"phone": (375, 812, 2, True), "desktop": (1280, 900, 1, False)}
ACCENT = "rgb(31, 78, 140)"  # the button colour of style.css: proof the stylesheet loaded


def _have_browser() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


@pytest.fixture
def driver() -> Iterator[Any]:
    if not _have_browser():
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver must be installed in CI (.ci/run)")
        pytest.skip("needs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=375,812",
        "--lang=en-US",
        "--hide-scrollbars",
        "--font-render-hinting=none",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """`mailer serve` on a free port, with base_url pointing at it (links in mail work)."""
    port = _free_port()
    write_config(
        tmp_path, {"database_url": settings.database_url, "base_url": f"http://127.0.0.1:{port}"}
    )
    live = load_settings(tmp_path / "mailer.toml", env={})
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
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr and proc.stderr.read().decode()
                time.sleep(0.1)
        yield live
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Camera:
    """Full-page screenshots at each width; checks that nothing overflows a phone screen."""

    def __init__(self, driver: Any, folder: Path, prefix: str) -> None:
        self.driver = driver
        self.folder = folder
        self.prefix = prefix
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)
        PUBLIC_COPY.mkdir(parents=True, exist_ok=True)
        self.phone()

    def _metrics(self, width: int, height: int, scale: int, mobile: bool) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile},
        )

    def phone(self) -> None:
        self._metrics(*SIZES["phone"])

    def shoot(self, name: str) -> list[Path]:
        self.count += 1
        paths = []
        for size, (width, height, scale, mobile) in SIZES.items():
            self._metrics(width, height, scale, mobile)
            overflow = self.driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{name} is wider than a {width}px {size} screen"
            full = self.driver.execute_script(
                "return Math.ceil(document.documentElement.scrollHeight)"
            )
            self._metrics(width, max(height, int(full)), scale, mobile)
            png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            path = self.folder / f"{self.prefix}-{self.count:02d}-{name}-{size}.png"
            path.write_bytes(base64.b64decode(png["data"]))
            shutil.copy(path, PUBLIC_COPY / path.name)
            paths.append(path)
        self.phone()
        return paths


def _to(msg: Any) -> str:
    return str(msg["To"].addresses[0].addr_spec)


def _h1(driver: Any) -> str | None:
    # One script call reads the heading of whichever document is current: finding the element
    # and then asking for its text are two calls, and a navigation between them leaves a node id
    # from the old document ("Node with given id does not belong to the document").
    text = driver.execute_script(
        "var h = document.querySelector('h1'); return h ? h.innerText : null"
    )
    return None if text is None else str(text).strip()


def _wait_for(driver: Any, condition: Any) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # Mid-navigation, the browser can answer any call with an error about the page it is
    # leaving; the condition is asked again until the new page settles or 15 s pass.
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(condition)


def _wait_for_h1(driver: Any, text: str) -> None:
    _wait_for(driver, lambda d: _h1(d) == text)


def _check_page(driver: Any, lang: str) -> None:
    """Right language, our stylesheet applied, no CSP violation in the console."""
    assert driver.execute_script("return document.documentElement.lang") == lang
    colour = driver.execute_script(
        "var b = document.querySelector('.button.primary');"
        "return b ? getComputedStyle(b).backgroundColor : null"
    )
    assert colour in (ACCENT, None)
    logs = [e["message"] for e in driver.get_log("browser")]
    assert not [m for m in logs if "Content Security Policy" in m or "Refused" in m], logs


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_subscribe_confirm_receive_unsubscribe(
    served: Settings, driver: Any, tmp_path: Path, lang: str, engine_name: str
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    settings = served
    base = settings.base_url
    web = Web(create_app(settings), settings)  # for its outbox and database helpers

    def status(who: str, slug: str) -> str | None:
        value = status_of(web, who, slug)
        return value.value if value else None

    def t(message: str, **kw: Any) -> str:
        return translations.gettext(lang, message, **kw)

    with session_scope(settings) as s:
        create_list(
            s,
            "press",
            "Press releases · 보도자료",
            "Announcements for journalists · 기자 여러분께 드리는 소식",
            public=True,
        )
        create_list(
            s,
            "news",
            "Community newsletter · 소식지",
            "Monthly news and events · 매달 소식과 행사 안내",
            public=True,
        )
        add_contact(s, "colleague@example.org", "press", name="Colleague", language="en")
    camera = Camera(driver, tmp_path / "screenshots", f"{engine_name}-{lang}")
    address = f"browser.{lang}@example.org"
    name = "김하늘" if lang == "ko" else "Sky Kim"

    # 1. The form, in the person's language.
    driver.get(f"{base}/subscribe?lang={lang}")
    assert _h1(driver) == t("Get our news by email")
    _check_page(driver, lang)
    camera.shoot("subscribe")
    driver.find_element(By.ID, "email").send_keys(address)
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.CSS_SELECTOR, 'input[name="list"][value="press"]').click()
    Select(driver.find_element(By.ID, "language")).select_by_value(lang)
    camera.shoot("subscribe-filled")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait_for_h1(driver, t("Check your inbox"))
    _check_page(driver, lang)
    camera.shoot("check-inbox")
    web.send_notices()  # what the server's sender thread does within seconds
    assert status(address, "press") == "pending"

    # 2. The confirmation email, from the outbox: its link opens a page that changes nothing.
    (confirmation,) = [m for m in web.outbox() if _to(m) == address]
    assert confirmation["Content-Language"] == lang
    letter = tmp_path / f"confirmation-{lang}.html"
    letter.write_text(html_part(confirmation), encoding="utf-8")
    driver.get(letter.as_uri())
    camera.shoot("confirmation-email")
    driver.get(confirm_url(confirmation))
    assert _h1(driver) == t("Confirm your subscription")
    assert status(address, "press") == "pending"
    camera.shoot("confirm")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait_for_h1(driver, t("You are subscribed"))
    _check_page(driver, lang)
    camera.shoot("confirmed")
    assert status(address, "press") == "subscribed"

    # 3. A real release to the list, sent by `mailer send` into the outbox.
    folder = tmp_path / "releases"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    Cli(tmp_path / "mailer.toml")(
        "send", str(folder / "election-night.en.md"), "--list", "press", "--yes"
    )
    (release,) = [m for m in web.outbox() if _to(m) == address and m["List-Unsubscribe"]]
    assert release["Content-Language"] == lang
    footer_links = re.findall(r'href="(' + re.escape(base) + r'/u/[^"]+)"', html_part(release))
    assert footer_links, "the release has no visible unsubscribe link"

    # 4. The footer link: a page with a button, then the answer.
    driver.get(footer_links[-1].replace("&amp;", "&"))
    assert _h1(driver) == t("Unsubscribe")
    page = driver.page_source
    assert "Press releases" in page and address not in page  # the address is partly masked
    camera.shoot("unsubscribe")
    assert status(address, "press") == "subscribed"
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait_for_h1(driver, t("You are unsubscribed"))
    _check_page(driver, lang)
    camera.shoot("unsubscribed")
    assert status(address, "press") == "unsubscribed"
    assert status("colleague@example.org", "press") == "subscribed"

    # 5. Preferences, from the link on that page: choose the newsletter instead.
    driver.find_element(By.PARTIAL_LINK_TEXT, t("Manage your subscriptions")).click()
    _wait_for_h1(driver, t("Your email preferences"))
    camera.shoot("preferences")
    driver.find_element(By.CSS_SELECTOR, 'input[name="list"][value="news"]').click()
    driver.find_element(By.CSS_SELECTOR, "button.primary").click()
    _wait_for(driver, lambda d: t("Your preferences have been saved.") in d.page_source)
    assert _h1(driver) == t("Your email preferences")
    _check_page(driver, lang)
    camera.shoot("preferences-saved")
    assert status(address, "news") == "subscribed"
    with session_scope(settings) as s:
        contact = s.scalar(select(Contact).where(Contact.email == address))
        assert contact is not None and contact.name == name
        assert s.scalar(select(Suppression).where(Suppression.email == address)) is None

    # 6. What a mistyped link and an old confirmation link look like.
    driver.get(f"{base}/u/not-a-real-token?lang={lang}")
    assert _h1(driver) == t("Page not found")
    camera.shoot("not-found")
    assert contact is not None
    driver.get(f"{base}/confirm/{expired_confirm_token(settings, contact.id, (1,))}")
    assert _h1(driver) == t("This link has expired")
    camera.shoot("confirm-expired")

    # 7. The compact form that the organisation's website can frame.
    driver.get(f"{base}/embed?lang={lang}")
    _check_page(driver, lang)
    camera.shoot("embed")
    assert camera.count == 13
