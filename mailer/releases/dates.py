"""Dates and times as a reader of each language writes them, the zone always named."""

from __future__ import annotations

from datetime import date, datetime

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def format_date(value: date, language: str) -> str:
    """'November 7, 2020' / '2020년 11월 7일' / ISO for other languages."""
    lang = language.split("-")[0]
    if lang == "ko":
        return f"{value.year}년 {value.month}월 {value.day}일"
    if lang == "en":
        return f"{_MONTHS[value.month - 1]} {value.day}, {value.year}"
    return value.isoformat()


def zone_label(value: datetime) -> str:
    """The zone's abbreviation (KST, EST, UTC); 'UTC+04' where the zone has none of its own.

    tzdata writes a bare offset ('+04', '-03') for zones without an abbreviation, which a
    reader would not take for a zone."""
    name = value.tzname() or ""
    if name and name[0] in "+-":
        return f"UTC{name}"
    return name


def format_when(value: datetime, language: str) -> str:
    """A date and time in its own zone: 'November 7, 2020, 9:00 AM EST' / '... 오전 9:00 (EST)'."""
    day = format_date(value.date(), language)
    hour = value.hour % 12 or 12
    zone = zone_label(value)
    if language.split("-")[0] == "ko":
        half = "오전" if value.hour < 12 else "오후"
        return f"{day} {half} {hour}:{value.minute:02d} ({zone})"
    if language.split("-")[0] == "en":
        half = "AM" if value.hour < 12 else "PM"
        return f"{day}, {hour}:{value.minute:02d} {half} {zone}".rstrip()
    return value.isoformat()
