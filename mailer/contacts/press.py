"""The press fields of a contact: their names, their limits, and the media types.

A press list's usual columns are fields of their own on Contact (outlet is the `organisation`
column); this module is the one place that says which they are, how long they may be and how
a media type is written, for the importer, `contacts edit`, the export and `--where`.
"""

from __future__ import annotations

import re

from mailer.errors import InvalidInputError

# Contact columns, in the order exports and listings show them (after the outlet).
PRESS_FIELDS = ("role", "beat", "media_type", "region", "phone")
LIMITS = {"role": 200, "beat": 200, "media_type": 100, "region": 200, "phone": 100}
LABELS = {
    "role": "role",
    "beat": "beat",
    "media_type": "media type",
    "region": "region",
    "phone": "phone",
}

MEDIA_TYPES = ("print", "tv", "radio", "online", "ethnic")
# How sheets write each media type, compared after media_key(): English and Korean words.
_MEDIA_WORDS = {
    "print": "print printed printmedia newspaper newspapers paper daily weekly monthly magazine "
    "신문 신문사 일간지 주간지 월간지 잡지 인쇄 인쇄매체 지면 종이신문",
    "tv": "tv television broadcast broadcasting cable tvstation "
    "방송 방송사 텔레비전 티비 tv방송 지상파 케이블",
    "radio": "radio am fm radiostation 라디오 라디오방송",
    "online": "online web internet digital website blog onlinemedia digitalmedia webmedia "
    "온라인 인터넷 인터넷신문 인터넷언론 웹 디지털 온라인매체",
    "ethnic": "ethnic ethnicmedia ethnicpress community communitymedia communitypress "
    "에스닉 한인언론 한인매체 동포언론 교포언론 소수민족언론",
}
MEDIA_WORDS: dict[str, str] = {
    word: kind for kind, words in _MEDIA_WORDS.items() for word in words.split()
}


def media_key(value: str) -> str:
    """A media type as compared: case, spaces and - _ . / ignored ("Ethnic media", "T.V.")."""
    return re.sub(r"[\s\-_./]", "", value.casefold())


def media_type(value: str) -> str | None:
    """The canonical media type a cell means (print, tv, radio, online, ethnic), else None."""
    return MEDIA_WORDS.get(media_key(value))


def known_media_types() -> str:
    return "print, tv, radio, online or ethnic (신문, 방송, 라디오, 온라인, 한인언론 ...)"


def check_press_field(field: str, value: str) -> str:
    """A press field's value as `contacts edit` stores it; InvalidInputError says what is wrong.

    A media type must be one mailer knows (an import keeps an unknown one as written, with a
    warning: a reporter is never dropped for a label, but one typed by hand can be fixed now)."""
    value = value.strip()
    if len(value) > LIMITS[field]:
        raise InvalidInputError(
            f"{LABELS[field]}: at most {LIMITS[field]} characters, got {len(value)}"
        )
    if field == "media_type" and value:
        kind = media_type(value)
        if kind is None:
            raise InvalidInputError(f"media type {value!r}: use {known_media_types()}")
        return kind
    return value
