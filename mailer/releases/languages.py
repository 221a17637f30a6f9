"""The one rule for languages: how a tag is written, and which variant a reader gets.

Everything that asks "which language does this reader get" asks `choose`: the release check
(its warnings), the planner (its SQL is generated from `choose`, see
mailer.delivery.planning.language_case) and so the send, which builds each message in the
language the planner wrote into the ledger. Two copies of the rule once disagreed (`fil` read as
Finnish in SQL, as Filipino in Python); there is now no second copy.
"""

from __future__ import annotations

from collections.abc import Collection

# Codes people write for a language that are not its tag: a country code ("kr" is how Korean
# staff often write Korean; the importer reads it that way too), a three-letter ISO 639-2 code
# where a two-letter one exists, or a tag that IANA has since replaced.
ALIASES = {
    "kr": "ko",
    "kor": "ko",
    "jp": "ja",
    "jpn": "ja",
    "cn": "zh",
    "zho": "zh",
    "chi": "zh",
    "eng": "en",
    "iw": "he",
    "in": "id",
    "ji": "yi",
    "jw": "jv",
}


# Languages written as names, the way a spreadsheet's language column often holds them: in
# English, in Korean (the staff's language) and in the language itself, for the languages a
# Korean-American community centre meets. Keys are case-folded; `from_name` reads them.
_NAMES = {
    "en": "english 영어 영문 영문판",
    "ko": "korean 한국어 한국말 한글 한국 국문 국문판 조선어",
    "ja": "japanese 일본어 일어 일문 日本語 にほんご",
    "zh": "chinese mandarin 중국어 중문 中文 汉语 漢語 普通话 國語",
    "zh-hans": "simplified-chinese 简体中文 간체",
    "zh-hant": "traditional-chinese 繁體中文 번체",
    "es": "spanish 스페인어 español espanol castellano",
    "fr": "french 프랑스어 불어 français francais",
    "de": "german 독일어 독어 deutsch",
    "vi": "vietnamese 베트남어 tiếng-việt tieng-viet",
    "tl": "tagalog 타갈로그어",
    "fil": "filipino 필리핀어",
    "ru": "russian 러시아어 русский",
    "pt": "portuguese 포르투갈어 português portugues",
    "it": "italian 이탈리아어 italiano",
    "th": "thai 태국어 ไทย",
    "id": "indonesian 인도네시아어 bahasa-indonesia",
    "hi": "hindi 힌디어 हिन्दी",
    "ar": "arabic 아랍어 العربية",
    "mn": "mongolian 몽골어 монгол",
    "km": "khmer cambodian 크메르어 캄보디아어",
    "ne": "nepali 네팔어",
    "bn": "bengali bangla 벵골어",
    "ur": "urdu 우르두어",
    "fa": "persian farsi 페르시아어",
    "he": "hebrew 히브리어",
}
NAMES = {name: tag for tag, words in _NAMES.items() for name in words.split()}


def from_name(value: str | None) -> str | None:
    """The tag of a language written as a name or an alias code, else None.

    'Korean', '한국어', 'KR' -> 'ko'; '일본어', '日本語' -> 'ja'; 'Simplified Chinese' ->
    'zh-hans'. A real tag ('ko', 'pt-BR') is not a name: None, and the caller keeps it.
    """
    key = " ".join((value or "").split()).casefold()
    if not key:
        return None
    return NAMES.get(key.replace(" ", "-")) or ALIASES.get(key)


def normalise(tag: str | None) -> str:
    """A tag written one way: lower case, hyphens, known aliases replaced ('' when empty).

    'KO' -> 'ko', 'ko_KR' -> 'ko-kr', 'kr' -> 'ko', 'zh-Hant-TW' -> 'zh-hant-tw'. Tags compare
    case-insensitively (BCP 47), and release files are named in lower case (NAME.pt-br.md).
    """
    parts = [p for p in (tag or "").strip().replace("_", "-").lower().split("-") if p]
    if not parts:
        return ""
    parts[0] = ALIASES.get(parts[0], parts[0])
    return "-".join(parts)


def primary(tag: str | None) -> str:
    """The language subtag: 'pt-br' -> 'pt', 'fil' -> 'fil' (not 'fi': that is Finnish)."""
    return normalise(tag).split("-")[0]


def choose(reader: str | None, variants: Collection[str], default: str) -> str:
    """The variant a reader of `reader` gets from `variants`, else `default`.

    1. the reader's tag, then the tag with subtags dropped from the end ('zh-hant-tw', then
       'zh-hant', then 'zh': RFC 4647 lookup), so the exact variant wins and the primary
       language comes last;
    2. a variant of the same primary language ('pt' or 'pt-pt' readers get 'pt-br' when that is
       the only Portuguese), the first in alphabetical order: closer than the default language;
    3. the release's default. A reader without a language gets the default too.
    """
    tag = normalise(reader)
    if not tag:
        return default
    available = {normalise(v): v for v in variants}
    parts = tag.split("-")
    while parts:
        if "-".join(parts) in available:
            return available["-".join(parts)]
        parts.pop()
        # 'x' and other one-letter subtags introduce extensions: never end a tag with one.
        while parts and len(parts[-1]) == 1:
            parts.pop()
    language = tag.split("-")[0]
    for candidate in sorted(available):
        if candidate.split("-")[0] == language:
            return available[candidate]
    return default
