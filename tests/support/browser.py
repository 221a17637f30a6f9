"""Headless Chromium: where it is, whether a Korean font is installed, showing a page."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


KOREAN_FONTS = ("Noto Sans CJK KR", "Noto Sans KR", "Apple SD Gothic Neo", "Malgun Gothic")


FONT_FOLDERS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local" / "share" / "fonts",
    Path.home() / ".fonts",
)


def korean_font_installed() -> bool:
    """Whether fontconfig (what Chromium on Linux draws with) knows a font for Korean."""
    fc_list = shutil.which("fc-list")
    if fc_list is not None:
        try:
            found = subprocess.run(
                [fc_list, ":lang=ko", "family"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            found = ""
        return bool(found.strip())
    # Without fc-list, look for the files the usual Korean fonts ship as.
    patterns = ("*CJK*", "*KR*", "*Nanum*", "*Gothic*")
    return any(
        next(folder.rglob(p), None) is not None
        for folder in FONT_FOLDERS
        if folder.is_dir()
        for p in patterns
    )


def show(driver: Any, page: Path, width: int, dark: bool = False) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": width < 500},
    )
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark" if dark else "light"}]},
    )
    driver.get(page.as_uri())
