"""Text in several languages that still reads as one string: settings and list names.

`organisation_name = {en = "Korean American Civic Council", ko = "한인시민협의회"}` becomes a
LocalText: a `str` holding the default language's text (so a From header, a List-Id or a log
line written before languages mattered keep working unchanged), whose `get(language)` gives the
text for a reader of `language` by the one language rule (mailer.releases.languages.choose),
falling back to the default language's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailer.releases.languages import choose, normalise


class LocalText(str):
    """A string with per-language values; as a `str` it is the default language's text."""

    values: dict[str, str]
    default_language: str

    def __new__(cls, values: Mapping[str, str], default_language: str) -> LocalText:
        cleaned = {normalise(k): v for k, v in values.items() if v is not None}
        default = normalise(default_language)
        if cleaned and default not in cleaned:
            # No text in the default language: the first one written stands in for it.
            default = next(iter(cleaned))
        obj = super().__new__(cls, cleaned.get(default, ""))
        obj.values = cleaned
        obj.default_language = default
        return obj

    def get(self, language: str | None) -> str:
        """The text for readers of `language`: theirs, else the default language's."""
        if not self.values:
            return str(self)
        return self.values[choose(language, self.values, self.default_language)]

    def has(self, language: str | None) -> bool:
        """Whether `language` readers get their own text (not the default's fallback)."""
        if not self.values:
            return False
        chosen = choose(language, self.values, self.default_language)
        return (
            chosen != self.default_language
            or normalise(language).split("-")[0] == self.default_language.split("-")[0]
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (LocalText, (self.values, self.default_language))


def in_language(
    value: str | Mapping[str, str] | None, language: str | None, default_language: str = "en"
) -> str:
    """`value` for readers of `language`: a LocalText's or mapping's text, or a plain string."""
    if value is None:
        return ""
    if isinstance(value, LocalText):
        return value.get(language)
    if isinstance(value, Mapping):
        return LocalText(value, default_language).get(language) if value else ""
    return value


def has_language(
    value: str | Mapping[str, str] | None, language: str, default_language: str = "en"
) -> bool:
    """Whether `value` has text of its own for `language` (a plain string counts for all)."""
    if value is None:
        return False
    if isinstance(value, LocalText):
        return value.has(language) if value.values else bool(str(value))
    if isinstance(value, Mapping):
        return bool(value) and LocalText(value, default_language).has(language)
    return bool(value)
