"""The sample release in a real browser (headless Chromium): phone and desktop widths, Korean
fonts, dark mode. Needs Debian's chromium, chromium-driver and fonts-noto-cjk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailer.releases.render import preview
from mailer.releases.source import load_release
from mailer.samples import sample_path
from tests.support.browser import CHROMEDRIVER, CHROMIUM, KOREAN_FONTS, korean_font_installed, show
from tests.support.releases import org_settings

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "needs chromium and chromium-driver (apt-get install chromium "
            "chromium-driver fonts-noto-cjk)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("release-pages")
    settings = org_settings(folder)
    release = load_release(sample_path())
    out = {}
    for lang in release.languages:
        out[lang] = folder / f"sample.{lang}.html"
        out[lang].write_text(preview(release, lang, settings, list_name="Press"), encoding="utf-8")
    return out


def js(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def box(driver: Any, selector: str) -> dict[str, float]:
    return dict(
        js(
            driver,
            f"var r = document.querySelector({selector!r})"
            ".getBoundingClientRect(); return {left: r.left, top: r.top, "
            "width: r.width, right: r.right};",
        )
    )


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_phone_width_reflows_without_sideways_scrolling(
    driver: Any, pages: dict[str, Path], lang: str
) -> None:
    show(driver, pages[lang], 375)
    assert js(driver, "return window.innerWidth") == 375
    assert js(driver, "return document.documentElement.scrollWidth") <= 375
    assert box(driver, ".container")["width"] == 375
    assert box(driver, ".body")["width"] == 375 - 2 * 22  # the phone padding applied
    title_size = js(driver, "return getComputedStyle(document.querySelector('h1.title')).fontSize")
    assert title_size == "25px"
    org, category = box(driver, ".org-name"), box(driver, ".category")
    assert category["top"] > org["top"]  # stacked under the organisation's name
    widest = js(
        driver,
        "return Math.max(...[...document.querySelectorAll('.body *')]"
        ".map(e => e.getBoundingClientRect().right))",
    )
    assert widest <= 375


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_desktop_width_is_a_centred_600px_column(
    driver: Any, pages: dict[str, Path], lang: str
) -> None:
    show(driver, pages[lang], 900)
    container = box(driver, ".container")
    assert container["width"] == 600
    visible = js(driver, "return document.documentElement.clientWidth")  # less a scrollbar
    assert abs(container["left"] - (visible - container["right"])) <= 1
    org, category = box(driver, ".org-name"), box(driver, ".category")
    assert category["left"] > org["left"] and abs(category["top"] - org["top"]) < 20
    assert (
        js(driver, "return getComputedStyle(document.querySelector('h1.title')).fontSize") == "30px"
    )


def platform_fonts(driver: Any, selector: str) -> list[str]:
    """The fonts Chromium actually drew the element's text with."""
    driver.execute_cdp_cmd("DOM.enable", {})
    driver.execute_cdp_cmd("CSS.enable", {})
    root = driver.execute_cdp_cmd("DOM.getDocument", {})["root"]["nodeId"]
    node = driver.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": selector})
    fonts = driver.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
    return [f["familyName"] for f in fonts["fonts"]]


def test_korean_text_is_drawn_with_a_korean_font(driver: Any, pages: dict[str, Path]) -> None:
    # What is under test is the page's font stack, not the machine: with no Korean font at
    # all, Chromium can only fall back, so the test skips and says what to install.
    if not korean_font_installed():
        pytest.skip("needs a Korean font (apt-get install fonts-noto-cjk)")
    show(driver, pages["ko"], 600)
    assert js(driver, "return document.documentElement.lang") == "ko"
    for selector in ("h1.title", ".body p", ".footer p"):
        used = platform_fonts(driver, selector)
        assert any(k in font for font in used for k in KOREAN_FONTS), (
            f"{selector} drawn with {used}: install fonts-noto-cjk"
        )
    stack = js(driver, "return getComputedStyle(document.querySelector('.body p')).fontFamily")
    assert stack.index("Apple SD Gothic Neo") < stack.index("Segoe UI")  # Korean fonts first


def test_dark_mode(driver: Any, pages: dict[str, Path]) -> None:
    card = "return getComputedStyle(document.querySelector('.card')).backgroundColor"
    text = "return getComputedStyle(document.querySelector('.body p')).color"
    show(driver, pages["en"], 600)
    assert js(driver, card) == "rgb(255, 255, 255)"
    assert js(driver, text) == "rgb(29, 39, 51)"
    show(driver, pages["en"], 600, dark=True)
    assert js(driver, card) == "rgb(22, 27, 34)"
    assert js(driver, text) == "rgb(208, 215, 222)"


def test_footer_links_are_visible_and_absolute(driver: Any, pages: dict[str, Path]) -> None:
    show(driver, pages["en"], 375)
    links = js(
        driver,
        "return [...document.querySelectorAll('.footer a')].map(a => "
        "[a.textContent, a.href, a.getBoundingClientRect().height > 0])",
    )
    by_text = {t: (href, visible) for t, href, visible in links}
    assert by_text["Unsubscribe"] == ("https://news.hanul.example.org/u/SAMPLE-TOKEN", True)
    assert by_text["Manage preferences"][1]
    assert all(href.startswith("https://") for href, _ in by_text.values())
    preheader = js(driver, "return document.querySelector('.preheader').offsetHeight")
    assert preheader == 0
