"""Release files: finding the language siblings, strict front matter, stored sources."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mailer.errors import ReleaseError
from mailer.releases.source import load_release, release_from_sources
from mailer.samples import sample_path
from tests.release_support import write_release

EN = """
title: Hanul opens a new citizenship clinic
date: 2024-03-01
dateline: North Wales, PA
lists: [press, members]
embargo: 2024-03-01T09:00:00-05:00
"""
KO = """
title: 한울, 새 시민권 상담소 개설
dateline: 펜실베이니아주 노스웨일스
"""


def bilingual(tmp_path: Path) -> Path:
    write_release(tmp_path, "clinic.en.md", EN, "English body.\n")
    return write_release(tmp_path, "clinic.ko.md", KO, "한국어 본문입니다.\n")


@pytest.mark.parametrize("given", ["clinic", "clinic.en.md", "clinic.ko.md"])
def test_any_path_finds_every_language(tmp_path: Path, given: str) -> None:
    bilingual(tmp_path)
    release = load_release(tmp_path / given)
    assert release.slug == "clinic"
    assert release.languages == ("en", "ko")
    assert release.default_language == "en"
    assert release.title == "Hanul opens a new citizenship clinic"
    assert release.variants["ko"].meta.title == "한울, 새 시민권 상담소 개설"
    assert release.variants["ko"].path == tmp_path / "clinic.ko.md"
    assert release.variants["ko"].body == "한국어 본문입니다.\n"
    assert release.lists == ("press", "members")
    assert release.embargo == datetime(2024, 3, 1, 14, 0, tzinfo=UTC)
    assert set(release.sources) == {"en", "ko"}
    assert release.sources["ko"] == (tmp_path / "clinic.ko.md").read_text(encoding="utf-8")


def test_default_language_from_settings_else_first(tmp_path: Path) -> None:
    bilingual(tmp_path)
    assert load_release(tmp_path / "clinic", default_language="ko").default_language == "ko"
    assert load_release(tmp_path / "clinic", default_language="fr").default_language == "en"


def test_plain_file_takes_its_language_from_front_matter(tmp_path: Path) -> None:
    write_release(tmp_path, "notice.md", "title: 공지\nlanguage: ko")
    write_release(tmp_path, "notice.en.md", "title: Notice")
    release = load_release(tmp_path / "notice.md", default_language="en")
    assert release.default_language == "ko"
    assert release.languages == ("ko", "en")
    single = write_release(tmp_path, "single.md", "title: Just English")
    assert load_release(single).languages == ("en",)


def test_shared_keys_are_inherited_by_other_languages(tmp_path: Path) -> None:
    release = load_release(bilingual(tmp_path))
    ko = release.variants["ko"].meta
    assert ko.lists == ("press", "members")
    assert ko.date == date(2024, 3, 1)
    assert ko.embargo == release.embargo


def test_shared_keys_may_not_contradict(tmp_path: Path) -> None:
    write_release(tmp_path, "clinic.en.md", EN)
    write_release(tmp_path, "clinic.ko.md", KO + "lists: [press]\n")
    with pytest.raises(ReleaseError) as err:
        load_release(tmp_path / "clinic")
    message = str(err.value)
    assert "clinic.ko.md:4: lists: ['press'] differs from ['press', 'members']" in message


def test_language_key_must_match_file_name(tmp_path: Path) -> None:
    write_release(tmp_path, "x.ko.md", "title: T\nlanguage: en")
    with pytest.raises(ReleaseError, match=r"x\.ko\.md:3: language: 'en' contradicts"):
        load_release(tmp_path / "x.ko.md")


def test_stored_sources_rebuild_the_same_release(tmp_path: Path) -> None:
    release = load_release(bilingual(tmp_path))
    again = release_from_sources(release.slug, release.sources, release.default_language)
    assert again.content_hash == release.content_hash
    assert again.variants["ko"].meta == release.variants["ko"].meta
    assert again.variants["en"].body == release.variants["en"].body
    assert again.variants["en"].path is None


def test_content_hash_follows_the_text(tmp_path: Path) -> None:
    first = load_release(bilingual(tmp_path)).content_hash
    assert load_release(tmp_path / "clinic").content_hash == first
    write_release(tmp_path, "clinic.ko.md", KO, "한국어 본문입니다!\n")
    assert load_release(tmp_path / "clinic").content_hash != first


def test_korean_round_trip(tmp_path: Path) -> None:
    """Korean survives a file (with a BOM and CRLF, as Windows editors write), storage, reload."""
    text = "\ufeff---\r\ntitle: \"한울 '보도자료' — 테스트\"\r\nsummary: 요약 文 😀\r\n---\r\n" \
           "본문 **강조**와 [링크](https://hanul.example.org/소식).\r\n"
    (tmp_path / "k.ko.md").write_bytes(text.encode("utf-8"))
    release = load_release(tmp_path / "k.ko.md")
    assert release.default_language == "ko"
    meta = release.variants["ko"].meta
    assert meta.title == "한울 '보도자료' — 테스트"
    assert meta.summary == "요약 文 😀"
    stored = release_from_sources("k", release.sources, "ko")
    assert stored.variants["ko"].meta.title == meta.title
    assert "본문 **강조**" in stored.variants["ko"].body
    assert stored.content_hash == release.content_hash


def test_sample_release_loads() -> None:
    release = load_release(sample_path())
    assert release.languages == ("en", "ko")
    assert release.variants["ko"].meta.date == release.variants["en"].meta.date


# --- front matter validation -----------------------------------------------------------------


@pytest.mark.parametrize(("front", "expected"), [
    ("title: T\nsubtile: S", r"r\.md:3: unknown front matter key 'subtile' \(did you mean "
                             r"'subtitle'\?\); free keys go under 'extra:'"),
    ("title: T\ndate: 2024-13-45", r"r\.md:3: date: expected a date like 2020-11-07"),
    ("title: T\nembargo: 2024-03-01 09:00", r"r\.md:3: embargo: 2024-03-01 09:00 has no time "
                                             "zone"),
    ("title: T\nembargo: 2024-03-01 09:00 Mars/Olympus", r"unknown time zone 'Mars/Olympus'"),
    ("subtitle: S", r"r\.md:2: title: missing"),
    ("title: ''", r"r\.md:2: title: must not be empty"),
    ("title: yes", r"r\.md:2: title: expected text, got True \(put quotes around it\)"),
    ("title: T\ntitle: U", r"r\.md:3: title: given twice \(first on line 2\)"),
    ("title: T\ncontact:\n  name: A\n  phon: 1", r"r\.md:3: contact: unknown key 'phon'"),
    ("title: T\ncontact:\n  email: a@b.org", r"contact: name: missing"),
    ("title: T\ncontact:\n  name: A\n  email: not-an-address",
     r"contact\.email: not an email address"),
    ("title: T\nlists: [Press Room]", r"lists: not a list name: 'Press Room'"),
    ("title: T\nlanguage: english!", r"language: not a language code"),
    ("title: T\nimage:\n  alt: a", r"image: url: missing"),
    ("title: T\nextra: [1, 2]", r"extra: expected 'key: value' lines"),
    ("- a\n- b", r"r\.md:2: the front matter must be 'key: value' lines"),
    ("title: T\nsubject: \"two\\nlines\"", r"subject: must be one line"),
])
def test_front_matter_errors_name_file_line_and_field(tmp_path: Path, front: str,
                                                      expected: str) -> None:
    path = write_release(tmp_path, "r.md", front)
    with pytest.raises(ReleaseError, match=expected) as err:
        load_release(path)
    assert str(path) in str(err.value)


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write_release(tmp_path, "r.md", "title: T\ndateline: North Wales, PA\nsummary: [oops")
    with pytest.raises(ReleaseError, match=r"r\.md:5: bad YAML in the front matter: expected "
                                           r"',' or '\]'.*flow sequence that starts on line 4"):
        load_release(path)


@pytest.mark.parametrize(("text", "expected"), [
    ("title: T\n", r"r\.md:1: a release starts with YAML front matter"),
    ("---\ntitle: T\n", r"r\.md:1: the front matter is not closed"),
    ("---\n---\nbody", r"r\.md:2: the front matter is empty"),
])
def test_front_matter_framing(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "r.md").write_text(text, encoding="utf-8")
    with pytest.raises(ReleaseError, match=expected):
        load_release(tmp_path / "r.md")


def test_not_utf8_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "latin.md").write_bytes("---\ntitle: café\n---\n".encode("latin-1"))
    with pytest.raises(ReleaseError, match=r"latin\.md: not UTF-8 text"):
        load_release(tmp_path / "latin.md")
    with pytest.raises(ReleaseError, match=r"no release found \(looked for nothing\.md and "
                                           r"nothing\.LANG\.md"):
        load_release(tmp_path / "nothing")
    write_release(tmp_path, "only.en.md", "title: T")
    with pytest.raises(ReleaseError, match=r"only\.md: no such file"):
        load_release(tmp_path / "only.md")


def test_every_field_parses(tmp_path: Path) -> None:
    front = """
title: Title
subject: Subject line
subtitle: Sub
date: 2024-03-01
dateline: North Wales, PA
category: Media Advisory
summary: The summary.
contact: {name: Minji Seo, role: Director, email: press@hanul.example.org, phone: 2155550142}
lists: press
embargo: 2024-03-01 09:00 America/New_York
expires: 2024-04-01T00:00:00Z
language: en
image: {url: "https://hanul.example.org/a.jpg", alt: Volunteers at the clinic}
extra: {campaign_code: X1, when: 2024-01-01}
"""
    meta = load_release(write_release(tmp_path, "all.md", front)).default.meta
    assert meta.subject == "Subject line"
    assert meta.category == "Media Advisory"
    assert meta.contact is not None and meta.contact.phone == "2155550142"
    assert meta.lists == ("press",)
    assert meta.embargo is not None and meta.embargo.utcoffset() == timedelta(hours=-5)
    assert meta.expires == datetime(2024, 4, 1, tzinfo=UTC)
    assert meta.image is not None and meta.image.alt == "Volunteers at the clinic"
    assert meta.extra == {"campaign_code": "X1", "when": "2024-01-01"}
    assert meta.body_line == 17  # 14 keys on lines 2-15, the closing --- on 16
    assert meta.as_dict()["embargo"] == "2024-03-01T09:00:00-05:00"


def test_pick_language(tmp_path: Path) -> None:
    release = load_release(bilingual(tmp_path))
    assert release.pick_language("ko") == "ko"
    assert release.pick_language("ko-KR") == "ko"
    assert release.pick_language("fr") == "en"
    assert release.pick_language(None) == "en"
