"""Per-recipient values put into an already rendered and inlined message.

A rendered variant carries placeholders such as __MAILER_UNSUBSCRIBE_URL__ (plain ASCII word
characters, so neither premailer, lxml's URL escaping in href, nor Markdown alters them). The text
is split once at compile time; filling it for a recipient is a join, nothing more.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

PLACEHOLDERS = ("name", "email", "unsubscribe_url", "preferences_url")
_TOKEN_RE = re.compile(r"__MAILER_([A-Z_]+?)__")


def placeholder(name: str) -> str:
    """The marker a layout writes where the personal value `name` goes."""
    if name not in PLACEHOLDERS:
        raise ValueError(f"unknown placeholder {name!r}")
    return f"__MAILER_{name.upper()}__"


def neutralise(text: str) -> str:
    """Break any placeholder spelled out in user content, so only layouts can place them."""
    return _TOKEN_RE.sub(lambda m: "__MAILER\u200b_" + m.group(1) + "__", text)


@dataclass(frozen=True)
class PersonalTemplate:
    """Text split at its placeholders; `fill` joins it with one recipient's values."""

    parts: tuple[str, ...]  # literal, name, literal, name, ..., literal
    escape_html: bool

    @classmethod
    def compile(cls, text: str, *, escape_html: bool) -> PersonalTemplate:
        pieces = _TOKEN_RE.split(text)
        for i in range(1, len(pieces), 2):
            name = pieces[i].lower()
            if name not in PLACEHOLDERS:
                raise ValueError(f"unknown placeholder __MAILER_{pieces[i]}__")
            pieces[i] = name
        return cls(tuple(pieces), escape_html)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.parts[1::2])

    @property
    def source(self) -> str:
        """The text with its placeholders (for previews and tests)."""
        out = list(self.parts)
        for i in range(1, len(out), 2):
            out[i] = placeholder(out[i])
        return "".join(out)

    def fill(self, values: Mapping[str, str]) -> str:
        """The text with every placeholder replaced (HTML-escaped when this is HTML)."""
        out = list(self.parts)
        esc = self.escape_html
        for i in range(1, len(out), 2):
            value = values[out[i]]
            out[i] = html.escape(value, quote=True) if esc else value
        return "".join(out)
