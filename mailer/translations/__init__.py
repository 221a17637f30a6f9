"""gettext catalogs for the console's words (and the subscriber pages'): English source text,
Korean translations in `ko/*.po`.

A language's catalog is every `.po` file in its folder merged, so each console area keeps its
words in a file of its own (`ko/console.po`, `ko/contacts.po`, ...). The `.po` files are read
with Babel and compiled in memory on first use: no compiled `.mo` files to keep in step with
the sources. `tests/test_translations.py` extracts every marked string from the templates and
the code and fails on one without a Korean translation.
"""

from __future__ import annotations

import gettext as _gettext
import io
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from markupsafe import Markup, escape

SOURCE = "en"
LANGUAGES = ("en", "ko")


def catalog(language: str) -> Catalog:
    """Every `.po` file of `language` merged into one Babel catalog (empty for the source)."""
    merged = Catalog(locale=language if language != SOURCE else None)
    folder = resources.files(__name__).joinpath(language)
    if language == SOURCE or not folder.is_dir():
        return merged
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".po"):
            continue
        with entry.open("rb") as fh:
            part = read_po(fh, locale=language)
        for message in part:
            if message.id and not message.fuzzy:
                merged.add(message.id, message.string)
    return merged


@cache
def translations(language: str) -> _gettext.NullTranslations:
    """Compiled translations for `language` (the source language and unknown ones: identity)."""
    if language not in LANGUAGES or language == SOURCE:
        return _gettext.NullTranslations()
    buffer = io.BytesIO()
    write_mo(buffer, catalog(language))
    buffer.seek(0)
    return _gettext.GNUTranslations(buffer)


def gettext(language: str, message: str, **values: Any) -> str:
    """`message` in `language`, with `%(name)s` values filled in (plain text)."""
    text = translations(language).gettext(message)
    return text % values if values else text


def ngettext(language: str, singular: str, plural: str, n: int, **values: Any) -> str:
    text = translations(language).ngettext(singular, plural, n)
    values.setdefault("num", n)
    return text % values


def markup(language: str, message: str, **values: Any) -> Markup:
    """`message` as trusted markup with every value escaped (for messages that carry tags)."""
    text = translations(language).gettext(message)
    return Markup(text) % {k: escape(v) for k, v in values.items()} if values else Markup(text)


def jinja_callables(language: Callable[[], str]) -> tuple[Callable[..., str], Callable[..., str]]:
    """gettext and ngettext for `Environment.install_gettext_callables(..., newstyle=True)`.

    They only translate: with newstyle, Jinja fills in `%(name)s` itself and escapes the
    values when autoescaping. The language is read per call (one shared environment serves
    every request, each in its user's language)."""

    def _gettext_(message: str) -> str:
        return translations(language()).gettext(message)

    def _ngettext_(singular: str, plural: str, n: int) -> str:
        return translations(language()).ngettext(singular, plural, n)

    return _gettext_, _ngettext_
