"""Render the sample release and screenshot it in headless Chromium, as phones and desktops see it.

    python bench/screenshots.py OUTDIR [--chromium /usr/bin/chromium] [--dark]

Writes OUTDIR/election-night.LANG.html and OUTDIR/election-night.LANG.WIDTHpx.png for en and ko
at 600px and 375px (and .dark.png at 600px with --dark). Needs Debian's chromium and, for Korean,
fonts-noto-cjk.
"""

from __future__ import annotations

import argparse
import html
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from mailer.config import Settings
from mailer.releases.render import preview
from mailer.releases.source import load_release
from mailer.samples import SAMPLE_ORGANISATION, sample_path

WIDTHS = (600, 375)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-extensions",
)
# Headless Chromium lays a page out at least 500px wide until the screenshot itself, so the page
# is measured inside an iframe of exactly the target width (srcdoc keeps it same-origin).
_HARNESS = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="f" style="width:{width}px;height:900px;border:0" srcdoc="{srcdoc}"></iframe>
<script>window.addEventListener('load', function () {{
  var doc = document.getElementById('f').contentDocument;
  doc.fonts.ready.then(function () {{
    document.body.setAttribute('data-height', doc.documentElement.scrollHeight);
  }});
}});</script></body></html>"""


def chromium(binary: str, *args: str, profile: Path) -> str:
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def page_height(binary: str, html_file: Path, width: int, profile: Path, dark: bool) -> int:
    """The document height at exactly `width` pixels, fonts loaded."""
    probe = html_file.with_suffix(f".probe{width}.html")
    srcdoc = html.escape(html_file.read_text(encoding="utf-8"), quote=True)
    probe.write_text(_HARNESS.format(width=width, srcdoc=srcdoc), encoding="utf-8")
    try:
        dom = chromium(
            binary,
            *(["--force-dark-mode"] if dark else []),
            "--dump-dom",
            "--virtual-time-budget=5000",
            "--window-size=800,900",
            probe.as_uri(),
            profile=profile,
        )
    finally:
        probe.unlink()
    match = re.search(r'data-height="(\d+)"', dom)
    if not match:
        raise SystemExit(f"could not measure {html_file} at {width}px")
    return int(match.group(1))


def shoot(binary: str, html_file: Path, png: Path, width: int, dark: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="mailer-chromium-") as tmp:
        profile = Path(tmp)
        height = page_height(binary, html_file, width, profile, dark)
        chromium(
            binary,
            *(["--force-dark-mode"] if dark else []),
            f"--screenshot={png}",
            f"--window-size={width},{height}",
            html_file.as_uri(),
            profile=profile,
        )
    print(f"{png}  {width}x{height}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--dark", action="store_true", help="also a dark-mode shot at 600px")
    args = parser.parse_args(argv)
    if not Path(args.chromium).exists():
        print(
            f"{args.chromium} not found: apt-get install -y chromium fonts-noto-cjk",
            file=sys.stderr,
        )
        return 2
    args.outdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        **SAMPLE_ORGANISATION, base_url="https://news.hanul.example.org", secret_key="screenshots"
    )
    release = load_release(sample_path())
    for lang in release.languages:
        html_file = (args.outdir / f"{release.slug}.{lang}.html").absolute()
        html_file.write_text(preview(release, lang, settings, list_name="Press"), encoding="utf-8")
        for width in WIDTHS:
            shoot(
                args.chromium,
                html_file,
                args.outdir / f"{release.slug}.{lang}.{width}px.png",
                width,
            )
        if args.dark:
            shoot(
                args.chromium,
                html_file,
                args.outdir / f"{release.slug}.{lang}.dark.png",
                600,
                dark=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
