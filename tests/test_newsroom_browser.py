"""The newsroom in headless Chromium against a real `mailer serve`: the index, a release page in
both languages and an embargoed release's preview page, at phone (375 px) and desktop (1280 px)
width. axe-core finds no serious or critical violation, nothing is blocked by the CSP, nothing
is wider than the screen, and a screenshot of each is kept to look at (tmp_path/screenshots,
copied to /tmp/console-screenshots).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailer.config import Settings
from tests.support.cli import Cli
from tests.support.console_browser import (
    WIDTHS,
    axe_violations,
    csp_errors,
    describe,
    set_width,
    shoot,
)
from tests.support.newsroom import organisation, readers, release_folder, serving
from tests.support.smtp import free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_newsroom_pages_in_a_browser(chromium: Any, settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    settings = organisation(settings, tmp_path, base_url=f"http://127.0.0.1:{port}")
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    cli("send", str(release_folder(tmp_path)), "--list", "press", "--yes")
    embargoed = release_folder(tmp_path, "town-hall", front="embargo: 2099-03-01T12:00:00Z")
    cli("send", str(embargoed), "--list", "press", "--yes", "--early")
    preview = json.loads(cli("news", "preview-link", "town-hall", "--json").output)
    with serving(tmp_path / "mailer.toml", port) as base:
        pages = {
            "index-en": f"{base}/news/en/",
            "release-en": f"{base}/news/2024/11/election-night/en",
            "release-ko": f"{base}/news/2024/11/election-night/ko",
            "preview-en": preview["urls"]["en"],
            "preview-ko": preview["urls"]["ko"],
        }
        shots = tmp_path / "screenshots"
        driver = chromium
        for width_name, width in WIDTHS.items():
            set_width(driver, width)
            for name, url in pages.items():
                driver.get(url)
                title = driver.execute_script("return document.title")
                assert "Page not found" not in title, (name, title)
                found = axe_violations(driver)
                assert not found, f"{name} at {width}px: {describe(found)}"
                assert not csp_errors(driver), (name, csp_errors(driver))
                wide = driver.execute_script(
                    "return document.documentElement.scrollWidth - window.innerWidth"
                )
                assert wide <= 0, f"{name} is {wide}px wider than the {width}px screen"
                if name.startswith("preview"):
                    banner = driver.execute_script(
                        "return document.querySelector('.embargo-banner').innerText"
                    )
                    assert "EMBARGOED UNTIL" in banner or "엠바고" in banner
                shoot(driver, shots, f"newsroom-{name}-{width_name}")
        assert len(list(shots.glob("newsroom-*.png"))) == 2 * len(pages)
