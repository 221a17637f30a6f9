"""CSS inlining with premailer: the only module that imports it.

Called once per language variant, never per recipient. premailer is kept off the network and the
file system (no <link> stylesheets, no @import), and told to keep `!important`, which its default
strips, and without which the @media rules (phone layout, dark mode) lose to the inlined styles.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import premailer

from mailer.errors import ConfigError

_STYLE_RE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)
_LINK_RE = re.compile(r"<link\b[^>]*\brel\s*=\s*[\"']?[^\"'>]*stylesheet", re.IGNORECASE)
_IMPORT_RE = re.compile(r"@import\b", re.IGNORECASE)

OPTIONS = {
    "base_url": None,
    "disable_link_rewrites": True,
    "allow_network": False,
    "allow_loading_external_files": False,
    "strip_important": False,
    "keep_style_tags": False,
    "remove_classes": False,
    "exclude_pseudoclasses": True,
    "disable_validation": True,  # unknown properties (mso-*, -webkit-*) stay as written
    "cssutils_logging_level": logging.CRITICAL,
}


# What a width or height attribute may say (HTML: a number of pixels; a table's width may also
# be a percentage).
_PIXELS = re.compile(r"[0-9]+")
_PERCENT = re.compile(r"[0-9]+%")


class _Premailer(premailer.Premailer):  # type: ignore[misc]
    """premailer, except the width and height attributes it copies from CSS.

    It copies `width: 100%` and `height: auto` into an <img>'s attributes, over the layout's
    pixel width: `height="auto"` is invalid HTML, and Outlook (which sizes images by the
    attribute alone) loses the width. An image's attributes stay as the layout wrote them (its
    CSS sizes it everywhere else); elsewhere only a valid value is copied."""

    def _style_to_basic_html_attributes(
        self, element: Any, style_content: str, force: bool = False
    ) -> None:
        before = {key: element.attrib.get(key) for key in ("width", "height")}
        super()._style_to_basic_html_attributes(element, style_content, force=force)
        for key, old in before.items():
            new = element.attrib.get(key)
            if new == old:
                continue
            valid = _PIXELS.fullmatch(new or "") or (
                key == "width" and element.tag != "img" and _PERCENT.fullmatch(new or "")
            )
            if element.tag != "img" and valid:
                continue
            if old is None:
                del element.attrib[key]
            else:
                element.attrib[key] = old


def check_offline(html: str, where: str) -> None:
    """Refuse a document whose CSS would have to be fetched (a <link> stylesheet or @import)."""
    if _LINK_RE.search(html):
        raise ConfigError(
            f"{where}: links an external stylesheet; put the CSS in a <style> "
            "block (mailer never fetches CSS, and mail clients block it)"
        )
    for match in _STYLE_RE.finditer(html):
        if _IMPORT_RE.search(match.group(1)):
            raise ConfigError(
                f"{where}: a <style> block uses @import; put the CSS itself in "
                "the block (mailer never fetches CSS)"
            )


def inline_css(html: str, *, where: str = "layout") -> str:
    """The document with its <style> rules inlined; @media rules kept with their !important."""
    check_offline(html, where)
    try:
        return str(_Premailer(html, **OPTIONS).transform())
    except Exception as err:  # premailer raises bare lxml/cssutils errors; say where it broke
        raise ConfigError(f"{where}: CSS inlining failed: {type(err).__name__}: {err}") from None
