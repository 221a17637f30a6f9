"""The console in headless Chromium: a live `mailer serve`, a browser, axe-core, screenshots.

Fixtures (registered in tests/conftest.py): `chromium` (a Selenium driver), `console_live`
(`mailer serve` in a subprocess with the console on a free port: its settings and address).
`axe_violations` injects axe-core (npm, pinned in .ci/package.json and installed there by
.ci/run) and returns the serious and critical violations on the page shown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mailer.config import Settings, load_settings
from tests.support.config import write_config

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
AXE_JS = Path(__file__).parents[2] / ".ci" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = {"phone": 375, "desktop": 1280}
SHOTS = Path("/tmp/console-screenshots")


def _need(what: str, present: bool) -> None:
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} must be installed in CI (.ci/run)")
    pytest.skip(f"needs {what}")


@pytest.fixture
def chromium() -> Iterator[Any]:
    _need(
        "Debian's chromium and chromium-driver",
        Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(),
    )
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Live:
    settings: Settings
    url: str  # http://127.0.0.1:PORT, where /admin/ is
    config: Path


@pytest.fixture
def console_live(settings: Settings, tmp_path: Path) -> Iterator[Live]:
    """`mailer serve` with the console, on a free port; links in emails point at it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    write_config(tmp_path, {"database_url": settings.database_url, "base_url": url})
    config = tmp_path / "mailer.toml"
    live = load_settings(config, env={})
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
        yield Live(live, url, config)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def set_width(driver: Any, width: int) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500},
    )


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the current page (WCAG 2.1 A and AA rules)."""
    _need("axe-core (npm ci --prefix .ci)", AXE_JS.exists())
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        # Injected through DevTools, which the page's CSP (script-src 'self') does not govern.
        driver.execute_script(AXE_JS.read_text(encoding="utf-8"))
    result = driver.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "var tags = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'];"
        "axe.run(document, {runOnly: {type: 'tag', values: tags}}).then("
        " function (r) { done(JSON.stringify(r.violations)); },"
        " function (e) { done(JSON.stringify([{id: 'axe-error', impact: 'critical',"
        " help: String(e), nodes: []}])); });"
    )
    violations: list[dict[str, Any]] = json.loads(result)
    return [v for v in violations if v.get("impact") in ("serious", "critical")]


def describe(violations: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(n.get("target")) for n in v.get("nodes", [])[:3])
        for v in violations
    )


def csp_errors(driver: Any) -> list[str]:
    """Browser console lines about a blocked script, style or connection."""
    return [
        e["message"]
        for e in driver.get_log("browser")
        if "Content Security Policy" in e["message"] or "Refused" in e["message"]
    ]


def shoot(driver: Any, folder: Path, name: str) -> Path:
    """A full-page PNG into `folder` and a copy under /tmp/console-screenshots to look at."""
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return window.innerWidth")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": min(int(height), 4000),
            "deviceScaleFactor": 1,
            "mobile": width < 500,
        },
    )
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)
    set_width(driver, width)
    return path
