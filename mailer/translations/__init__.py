"""gettext catalogs for the words of the console and the subscriber pages: English source text,
Korean translations in `ko/*.po`; and which language a subscriber's page is shown in.

A language's catalog is every `.po` file in its folder merged, so each console area keeps its
words in a file of its own (`ko/console.po`, `ko/contacts.po`, ...). The `.po` files are read
with Babel and compiled in memory on first use: no compiled `.mo` files to keep in step with
the sources. `tests/test_translations.py` extracts every marked string from the templates and
the code and fails on one without a Korean translation.
"""

from __future__ import annotations

import gettext as _gettext
import io
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape

from mailer.releases import languages as _languages

SOURCE = "en"
LANGUAGES = ("en", "ko")
# Each language's name in itself, for language switches and pickers (never translated).
NAMES = {"en": "English", "ko": "한국어"}


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
                merged.add(message.id, message.string, context=message.context)
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


def N_(message: str) -> str:
    """Mark `message` for extraction where it is translated later (gettext_noop)."""
    return message


def gettext(language: str, message: str, **values: Any) -> str:
    """`message` in `language`, with `%(name)s` values filled in (plain text)."""
    text = translations(language).gettext(message)
    return text % values if values else text


def pgettext(language: str, context: str, message: str, **values: Any) -> str:
    """`message` as meant in `context` (one English word, two Korean ones), values filled in."""
    text = translations(language).pgettext(context, message)
    return text % values if values else text


def ngettext(language: str, singular: str, plural: str, n: int, **values: Any) -> str:
    """The singular or plural form for `n` in `language`; `%(num)s` is `n`."""
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


def context_callables() -> dict[str, Callable[..., str]]:
    """gettext, ngettext, pgettext and npgettext for `install_gettext_callables(newstyle=True)`
    that read the language from the template's own `lang` value.

    For an environment shared by renders that are not all inside a request (the subscriber
    pages and the confirmation email the notice sender builds): each render passes `lang`."""

    def _lang(context: Context) -> str:
        value = context.get("lang")
        return value if isinstance(value, str) else SOURCE

    @pass_context
    def _gettext_(context: Context, message: str) -> str:
        return translations(_lang(context)).gettext(message)

    @pass_context
    def _ngettext_(context: Context, singular: str, plural: str, n: int) -> str:
        return translations(_lang(context)).ngettext(singular, plural, n)

    @pass_context
    def _pgettext_(context: Context, message_context: str, message: str) -> str:
        return translations(_lang(context)).pgettext(message_context, message)

    @pass_context
    def _npgettext_(
        context: Context, message_context: str, singular: str, plural: str, n: int
    ) -> str:
        return translations(_lang(context)).npgettext(message_context, singular, plural, n)

    return {
        "gettext": _gettext_,
        "ngettext": _ngettext_,
        "pgettext": _pgettext_,
        "npgettext": _npgettext_,
    }


# --- which language a subscriber reads --------------------------------------------------------


def supported(configured: Iterable[str]) -> list[str]:
    """The configured languages that have words, in the configured order (English if none)."""
    out = [lang for lang in configured if lang in LANGUAGES]
    return out or [SOURCE]


def primary(tag: str | None) -> str | None:
    """The primary subtag of a language tag: ko-KR -> ko, kr -> ko (the one language rule:
    mailer.releases.languages)."""
    return _languages.primary(tag) or None


def pick(
    available: list[str],
    *,
    explicit: str | None = None,
    contact: str | None = None,
    accept: Iterable[str] = (),
    default: str = SOURCE,
) -> str:
    """Choose a subscriber page's language: ?lang= first, then the contact's, then
    Accept-Language; each by the rule that chooses a release's variant (languages.choose), so
    a contact written 'kr' or 'ko-KR' reads the Korean pages as they read the Korean release."""
    for candidate in (explicit, contact, *accept):
        chosen = _languages.choose(candidate, available, "") if candidate else ""
        if chosen:
            return chosen
    return _languages.choose(default, available, "") or available[0]
