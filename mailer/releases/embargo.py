"""The embargo as readers see it: the time in the organisation's zone, the subject prefix and the
banner of a release sent before its embargo, in each reader's language.

One wording for every road a release takes before the lift (the real send to press lists, the
test send), so a reporter's copy and the staff's test copy say the same thing. No database and
no rendering here: the layouts get the banner from releases/render.py, the subject prefix is put
on by the delivery compilers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from mailer.config import Settings
from mailer.releases.dates import format_when

# The Korean words follow the layout's own release line (releases/render.py LABELS["embargo"]),
# so the banner and the line under it read as one voice.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "banner": "EMBARGOED UNTIL {when}",
        "subject": "[EMBARGOED UNTIL {when}] ",
        "note": (
            "Sent to the press ahead of the embargo: not for publication or broadcast "
            "before {when}."
        ),
    },
    "ko": {
        "banner": "엠바고: {when} 이후 보도",
        "subject": "[엠바고: {when} 이후 보도] ",
        "note": "보도 전 미리 드리는 자료입니다. {when} 이전에는 보도를 삼가 주십시오.",
    },
}


@dataclass(frozen=True)
class Banner:
    """What the layouts show at the top of a message sent before the embargo."""

    title: str
    note: str

    def as_context(self) -> dict[str, str]:
        return {"title": self.title, "note": self.note}


def organisation_zone(settings: Settings) -> tzinfo:
    """The `timezone` setting (validated when the settings were loaded), else UTC."""
    name = settings.timezone
    return ZoneInfo(name) if name else UTC


def zone_option(settings: Settings) -> str:
    """The zone as `--at` takes it: the `timezone` setting's name, else UTC."""
    return settings.timezone or "UTC"


def _words(language: str) -> dict[str, str]:
    # Languages without a translation get the English words and the English way of writing
    # the time (whose zone is always named; the ISO form's offset is not a zone to a reader).
    return WORDS.get(language.split("-")[0], WORDS["en"])


def _speaks(language: str) -> str:
    return language if language.split("-")[0] in WORDS else "en"


def when_text(embargo: datetime, settings: Settings, language: str = "en") -> str:
    """The embargo in the organisation's zone, written for a reader of `language`, zone named."""
    return format_when(embargo.astimezone(organisation_zone(settings)), _speaks(language))


def when_option(embargo: datetime, settings: Settings) -> str:
    """The embargo as a value for `--at` ('2026-11-03 21:00 Asia/Seoul'), to schedule the lift."""
    local = embargo.astimezone(organisation_zone(settings))
    shown = "%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M"
    return f"{local.strftime(shown)} {zone_option(settings)}"


def is_ahead(embargo: datetime | None, now: datetime) -> bool:
    """Is `now` before the embargo? (A message made after the lift is not embargoed.)"""
    return embargo is not None and now < embargo


def subject_prefix(embargo: datetime, settings: Settings, language: str) -> str:
    """'[EMBARGOED UNTIL November 3, 2026, 9:00 PM KST] ' in the reader's language."""
    return _words(language)["subject"].format(when=when_text(embargo, settings, language))


def banner(embargo: datetime, settings: Settings, language: str) -> Banner:
    """The banner at the top of the message, in the reader's language."""
    when = when_text(embargo, settings, language)
    words = _words(language)
    return Banner(words["banner"].format(when=when), words["note"].format(when=when))


def stored_embargo(front_matter: dict[str, Any] | None) -> datetime | None:
    """The embargo of a stored release (its front matter keeps it as ISO 8601 text)."""
    value = (front_matter or {}).get("embargo")
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    return datetime.fromisoformat(str(value))
