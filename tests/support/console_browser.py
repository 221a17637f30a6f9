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


def speak(driver: Any, lang: str) -> None:
    """Make the browser ask for pages in `lang` (Accept-Language), as a Korean staff member's
    browser does: signed-out pages (sign-in, invitation) follow it."""
    agent = driver.execute_script("return navigator.userAgent")
    driver.execute_cdp_cmd(
        "Emulation.setUserAgentOverride", {"userAgent": agent, "acceptLanguage": lang}
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


# Elements that reach past the right edge of the window, except inside a box that scrolls or
# clips them (a .table-wrap scrolls sideways on purpose). An absolutely positioned element (the
# visually hidden text of a label) is clipped only by its containing block's chain, which is
# what offsetParent follows.
_OVERFLOW_JS = """
var width = document.documentElement.clientWidth, found = [];
function contained(el) {
  for (var p = el; p && p !== document.body;) {
    var pos = getComputedStyle(p).position;
    p = pos === 'absolute' || pos === 'fixed' ? p.offsetParent : p.parentElement;
    if (p && p !== document.body && getComputedStyle(p).overflowX !== 'visible') return true;
  }
  return false;
}
function name(el) {
  var cls = typeof el.className === 'string' ? el.className.trim().replace(/ +/g, '.') : '';
  return el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (cls ? '.' + cls : '');
}
document.querySelectorAll('body *').forEach(function (el) {
  var r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.right <= width + 1 || contained(el)) return;
  found.push(name(el) + ' ends at ' + Math.round(r.right) + 'px');
});
// Text that does not wrap spills out of a box that fits (a long address in a heading).
var walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
var range = document.createRange();
while (walk.nextNode()) {
  var text = walk.currentNode, el = text.parentElement;
  if (!text.textContent.trim() || getComputedStyle(el).overflowX !== 'visible') continue;
  if (contained(el)) continue;
  range.selectNodeContents(text);
  var r = range.getBoundingClientRect();
  if (r.right > width + 1)
    found.push(name(el) + ' text "' + text.textContent.trim().slice(0, 40) + '" ends at ' +
      Math.round(r.right) + 'px');
}
if (document.documentElement.scrollWidth > width + 1)
  found.push('the page scrolls sideways: ' + document.documentElement.scrollWidth + 'px');
return found.slice(0, 8);
"""


def overflowing(driver: Any) -> list[str]:
    """What sticks out past the window's right edge (the page must not scroll sideways)."""
    found: list[str] = driver.execute_script(_OVERFLOW_JS)
    return found


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


def page_faults(driver: Any, folder: Path, name: str) -> list[str]:
    """The page shown, at phone and desktop width: axe's serious and critical violations, what
    sticks out sideways and blocked scripts or styles; a screenshot of each width."""
    faults = []
    for label, width in WIDTHS.items():
        set_width(driver, width)
        found = axe_violations(driver)
        if found:
            faults.append(f"{name} at {width}px: {describe(found)}")
        wide = overflowing(driver)
        if wide:
            faults.append(f"{name} at {width}px sticks out: {wide}")
        shoot(driver, folder, f"{name}-{label}")
    blocked = csp_errors(driver)
    if blocked:
        faults.append(f"{name}: {blocked}")
    return faults


def by(driver: Any, css: str) -> Any:
    """The one element that `css` finds (NoSuchElementException when none)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def h1(driver: Any) -> str:
    # One script call: an element found and then read could belong to a page already gone.
    text = driver.execute_script(
        "var h = document.querySelector('h1'); return h ? h.innerText : ''"
    )
    return str(text).strip()


def wait_until(driver: Any, condition: Any, timeout: float = 15) -> Any:
    """Poll `condition(driver)` until it is true; errors of a page being replaced are retried."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(condition)


def wait_h1(driver: Any, wanted: str) -> None:
    wait_until(driver, lambda d: h1(d) == wanted)


def mark_page(driver: Any) -> None:
    """Put a mark on the page shown: a new page (a navigation) has none, an htmx swap keeps it."""
    driver.execute_script("window.__consoleTestMark = true")


def same_page(driver: Any) -> bool:
    return bool(driver.execute_script("return window.__consoleTestMark === true"))


def click_through(driver: Any, element: Any) -> None:
    """Click a link or a submit button and wait until the next page has loaded."""
    mark_page(driver)
    element.click()
    wait_until(
        driver,
        lambda d: d.execute_script(
            "return window.__consoleTestMark !== true && document.readyState === 'complete'"
        ),
    )


def sign_in(driver: Any, live: Live, email: str, password: str) -> None:
    """Sign in through the console's form (an account without two-factor sign-in)."""
    driver.get(f"{live.url}/admin/login")
    by(driver, "#email").send_keys(email)
    by(driver, "#password").send_keys(password)
    click_through(driver, by(driver, "button[type=submit]"))
    wait_until(driver, lambda d: "/admin/login" not in d.current_url)


def check_page(driver: Any, folder: Path, name: str) -> None:
    """Fail on any fault `page_faults` finds (axe, sideways overflow, CSP) at either width."""
    faults = page_faults(driver, folder, name)
    assert not faults, "\n".join(faults)
