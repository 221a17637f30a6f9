"""The newsroom pages' own words, per language (the release's words are the email layout's:
mailer.releases.render.LABELS). A language without a translation gets the English words, as
the email layout does; its release text stays in its own language."""

from __future__ import annotations

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "newsroom": "Newsroom",
        "newsroom_of": "{org} newsroom",
        "skip": "Skip to the release",
        "languages": "Languages",
        "other_languages": "This release in other languages",
        "in_language": "In {language}",
        "published": "Published {when}",
        "correction": "Correction ({when}):",
        "update": "Updated ({when}): a corrected version of this release replaced the text.",
        "corrections": "Corrections",
        "downloads": "Downloads",
        "withdrawn_title": "This release has been withdrawn",
        "withdrawn_on": "Withdrawn on {when}.",
        "preview_title": "Preview: not published yet",
        "preview_note": "Only people with this link can see this page. Do not share it.",
        "embargoed": "EMBARGOED",
        "filter": "Filter releases",
        "year": "Year",
        "all_years": "All years",
        "list": "Topic",
        "all_lists": "All topics",
        "show": "Show",
        "none": "No releases to show.",
        "pages": "Pages",
        "page_of": "Page {page} of {pages}",
        "newer": "Newer releases",
        "older": "Older releases",
        "feed": "Atom feed",
        "feed_of_list": "Atom feed: {list}",
        "feed_title": "{org}: releases",
        "feed_title_list": "{org}: {list}",
        "back": "All releases",
        "follow": "Follow",
    },
    "ko": {
        "newsroom": "뉴스룸",
        "newsroom_of": "{org} 뉴스룸",
        "skip": "보도자료 본문으로 건너뛰기",
        "languages": "언어",
        "other_languages": "다른 언어로 읽기",
        "in_language": "{language}",
        "published": "{when} 게시",
        "correction": "정정 ({when}):",
        "update": "수정 ({when}): 이 보도자료는 수정된 판으로 바뀌었습니다.",
        "corrections": "정정 및 수정",
        "downloads": "자료 내려받기",
        "withdrawn_title": "철회된 보도자료입니다",
        "withdrawn_on": "{when}에 철회되었습니다.",
        "preview_title": "미리 보기: 아직 게시되지 않았습니다",
        "preview_note": "이 링크를 가진 사람만 볼 수 있는 페이지입니다. 공유하지 마십시오.",
        "embargoed": "엠바고",
        "filter": "보도자료 찾기",
        "year": "연도",
        "all_years": "전체 연도",
        "list": "분류",
        "all_lists": "전체 분류",
        "show": "보기",
        "none": "게시된 보도자료가 없습니다.",
        "pages": "페이지",
        "page_of": "{pages}쪽 중 {page}쪽",
        "newer": "최근 보도자료",
        "older": "이전 보도자료",
        "feed": "Atom 피드",
        "feed_of_list": "Atom 피드: {list}",
        "feed_title": "{org} 보도자료",
        "feed_title_list": "{org}: {list}",
        "back": "전체 보도자료",
        "follow": "구독",
    },
}

# Each language's name in itself, for the links between a release's language versions.
LANGUAGE_NAMES = {
    "en": "English",
    "ko": "한국어",
    "ja": "日本語",
    "zh": "中文",
    "es": "Español",
    "fr": "Français",
    "de": "Deutsch",
    "vi": "Tiếng Việt",
    "tl": "Tagalog",
}

# Open Graph wants a locale, not a language tag.
OG_LOCALES = {"en": "en_US", "ko": "ko_KR", "ja": "ja_JP", "zh": "zh_CN", "es": "es_ES"}


def words_for(language: str) -> dict[str, str]:
    """The page's words in `language` (English for languages without a translation)."""
    return WORDS.get(language.split("-")[0], WORDS["en"])


def language_name(language: str) -> str:
    return LANGUAGE_NAMES.get(language.split("-")[0], language)


def og_locale(language: str) -> str:
    base, _, region = language.partition("-")
    if region:
        return f"{base}_{region.upper()}"
    return OG_LOCALES.get(base, base)
