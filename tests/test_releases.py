"""Release files: finding the language siblings, strict front matter, stored sources."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from mailer.errors import ReleaseError
from mailer.releases.source import MediaContact, load_release, release_from_sources
from mailer.samples import sample_path
from tests.support.releases import write_release

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


CONTACT = """
contact:
  name: Minji Seo
  role: Communications Director
  email: press@hanul.example.org
  phone: "+1 215-555-0142"
"""


@pytest.mark.parametrize(
    ("ko_contact", "expected", "inherited"),
    [
        (
            "",
            MediaContact(
                "Minji Seo", "press@hanul.example.org", "+1 215-555-0142", "Communications Director"
            ),
            ("contact",),
        ),
        (
            "contact:\n  name: 서민지\n  role: 홍보 담당",
            MediaContact("서민지", "press@hanul.example.org", "+1 215-555-0142", "홍보 담당"),
            ("contact.email", "contact.phone"),
        ),
        (
            "contact:\n  email: minji@hanul.example.org\n  phone: ''",
            MediaContact("Minji Seo", "minji@hanul.example.org", "", "Communications Director"),
            ("contact.name", "contact.role"),
        ),
    ],
)
def test_a_variant_completes_its_contact_from_the_default_field_by_field(
    tmp_path: Path, ko_contact: str, expected: MediaContact, inherited: tuple[str, ...]
) -> None:
    write_release(tmp_path, "clinic.en.md", EN + CONTACT)
    write_release(tmp_path, "clinic.ko.md", KO + ko_contact)
    release = load_release(tmp_path / "clinic")
    ko = release.variants["ko"]
    assert ko.meta.contact == expected and ko.inherited == inherited
    assert release.variants["en"].inherited == ()
    # A stored campaign re-renders the same contact.
    again = release_from_sources(release.slug, release.sources, release.default_language)
    assert again.variants["ko"].meta.contact == expected


def test_the_contact_is_completed_only_from_the_default_language(tmp_path: Path) -> None:
    write_release(tmp_path, "clinic.en.md", EN)
    write_release(tmp_path, "clinic.ko.md", KO + CONTACT)
    release = load_release(tmp_path / "clinic")
    assert release.variants["en"].meta.contact is None
    assert release.variants["ko"].inherited == ()


def test_a_contact_without_a_name_anywhere_is_an_error(tmp_path: Path) -> None:
    write_release(tmp_path, "clinic.en.md", EN + "contact:\n  email: a@hanul.example.org")
    write_release(tmp_path, "clinic.ko.md", KO + "contact:\n  name: 서민지")
    with pytest.raises(ReleaseError, match=r"clinic\.en\.md:7: contact: name: missing"):
        load_release(tmp_path / "clinic")


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        # A colon in an unquoted value, at the top and nested.
        (
            "title: 한미시민연대: 타운홀 개최",
            "r.md:2: title: a colon followed by a space ends a key in YAML, so a text with one "
            'must be quoted: put the title in quotes: title: "한미시민연대: 타운홀 개최"',
        ),
        (
            "title: T\ncontact:\n  name: Kim\n  role: Director: Comms",
            "r.md:5: role: a colon followed by a space ends a key in YAML, so a text with one "
            'must be quoted: put the role in quotes: role: "Director: Comms"',
        ),
        # Tabs: as indentation, and after the colon.
        (
            "title: T\ncontact:\n\tname: Kim",
            "r.md:4: name: a tab indents this line; YAML indents "
            "with spaces only: replace each tab with two spaces",
        ),
        ("title:\tT", "r.md:2: title: a tab on this line; YAML separates with spaces only"),
        # Quotes: unclosed, closed too early.
        (
            'title: "Town hall\nsummary: S',
            'r.md:2: title: the quote " is not closed on its line; close it: title: "Town hall"',
        ),
        (
            "title: 'It's here'",
            "r.md:2: title: the quote ' inside the title ends it early; put the "
            'title in quotes of the other kind: title: "It\'s here"',
        ),
        (
            'title: "Record" turnout',
            "r.md:2: title: the value starts with a quote, so it ends at "
            'the next "; put the whole title in quotes of the other kind: '
            "title: '\"Record\" turnout'",
        ),
        (
            "title: '@kaca hosts'\nsubtitle: @kaca",
            "r.md:3: subtitle: a value that starts with '@' must be quoted: subtitle: \"@kaca\"",
        ),
        # A list under a key that has a value: an error from YAML, or silently folded into it.
        (
            "title: T\nlists: press\n- members",
            "r.md:4: lists: a list under a key that has a value "
            "on its own line; write the key alone",
        ),
        (
            "title: T\nlists: press\n  - members",
            "r.md:4: lists: a list under a key that has a value on its own line",
        ),
        (
            "title: T\nsummary: Points\n  - one\n  - two",
            "r.md:4: summary: a '- ' line under a summary that has a value on its own line; YAML "
            "folds it into the text",
        ),
        # ' #' cuts an unquoted text short, silently.
        (
            "title: We are #1",
            "r.md:2: title: ' #' starts a comment in YAML, so the title would end "
            "at 'We are'; put the title in quotes: title: \"We are #1\"",
        ),
        # Indentation that does not line up.
        (
            "title: T\ncontact:\n  name: Kim\n   email: a@b.org",
            "r.md:5: email: this line is indented differently from the one above it",
        ),
    ],
)
def test_common_yaml_slips_name_line_key_and_fix(tmp_path: Path, front: str, expected: str) -> None:
    path = write_release(tmp_path, "r.md", front)
    with pytest.raises(ReleaseError) as err:
        load_release(path)
    assert str(err.value).startswith(f"{tmp_path}/{expected}"), str(err.value)


def test_quoted_and_block_texts_are_no_slip(tmp_path: Path) -> None:
    front = (
        'title: "한미시민연대: 타운홀 #1"\nsubtitle: \'Say "yes"\'\nsummary: >-\n'
        "  Points:\n  - one\nlists: [press]  # the default audience\n"
        "dateline: Philadelphia, PA"
    )
    meta = load_release(write_release(tmp_path, "r.md", front)).default.meta
    assert meta.title == "한미시민연대: 타운홀 #1" and meta.subtitle == 'Say "yes"'
    assert meta.summary == "Points: - one" and meta.lists == ("press",)


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
    text = (
        "\ufeff---\r\ntitle: \"한울 '보도자료' — 테스트\"\r\nsummary: 요약 文 😀\r\n---\r\n"
        "본문 **강조**와 [링크](https://hanul.example.org/소식).\r\n"
    )
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


@pytest.mark.parametrize(
    ("front", "expected"),
    [
        (
            "title: T\nsubtile: S",
            r"r\.md:3: unknown front matter key 'subtile' \(did you mean "
            r"'subtitle'\?\); free keys go under 'extra:'",
        ),
        ("title: T\ndate: 2024-13-45", r"r\.md:3: date: expected a date like 2020-11-07"),
        (
            "title: T\nembargo: 2024-03-01 09:00",
            r"r\.md:3: embargo: 2024-03-01 09:00 has no time "
            "zone",
        ),
        ("title: T\nembargo: 2024-03-01 09:00 Mars/Olympus", r"unknown time zone 'Mars/Olympus'"),
        ("subtitle: S", r"r\.md:2: title: missing"),
        ("title: ''", r"r\.md:2: title: must not be empty"),
        ("title: yes", r"r\.md:2: title: expected text, got True \(put quotes around it\)"),
        ("title: T\ntitle: U", r"r\.md:3: title: given twice \(first on line 2\)"),
        ("title: T\ncontact:\n  name: A\n  phon: 1", r"r\.md:3: contact: unknown key 'phon'"),
        ("title: T\ncontact:\n  email: a@b.org", r"contact: name: missing"),
        (
            "title: T\ncontact:\n  name: A\n  email: not-an-address",
            r"contact\.email: not an email address",
        ),
        ("title: T\nlists: [Press Room]", r"lists: not a list name: 'Press Room'"),
        ("title: T\nlanguage: english!", r"language: not a language code"),
        ("title: T\nimage:\n  alt: a", r"image: url: missing"),
        ("title: T\nextra: [1, 2]", r"extra: expected 'key: value' lines"),
        ("- a\n- b", r"r\.md:2: the front matter must be 'key: value' lines"),
        ('title: T\nsubject: "two\\nlines"', r"subject: must be one line"),
    ],
)
def test_front_matter_errors_name_file_line_and_field(
    tmp_path: Path, front: str, expected: str
) -> None:
    path = write_release(tmp_path, "r.md", front)
    with pytest.raises(ReleaseError, match=expected) as err:
        load_release(path)
    assert str(path) in str(err.value)


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write_release(tmp_path, "r.md", "title: T\ndateline: North Wales, PA\nsummary: [oops")
    with pytest.raises(
        ReleaseError,
        match=r"r\.md:4: summary: the \[ that starts the value is "
        r"not closed on its line; close it \(summary: "
        r"\[oops\]\) or, for a text, put it in quotes: "
        r"summary: \"\[oops\"",
    ):
        load_release(path)
    # A slip without a known fix: PyYAML's words, with the file and line.
    path = write_release(tmp_path, "r.md", "title: T\nsummary: [")
    with pytest.raises(
        ReleaseError,
        match=r"r\.md:4: bad YAML in the front matter: expected "
        r"the node content",
    ):
        load_release(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("title: T\n", r"r\.md:1: a release starts with YAML front matter"),
        ("---\ntitle: T\n", r"r\.md:1: the front matter is not closed"),
        ("---\n---\nbody", r"r\.md:2: the front matter is empty"),
    ],
)
def test_front_matter_framing(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "r.md").write_text(text, encoding="utf-8")
    with pytest.raises(ReleaseError, match=expected):
        load_release(tmp_path / "r.md")


def test_not_utf8_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "latin.md").write_bytes("---\ntitle: café\n---\n".encode("latin-1"))
    with pytest.raises(ReleaseError, match=r"latin\.md: not UTF-8 text"):
        load_release(tmp_path / "latin.md")
    with pytest.raises(
        ReleaseError,
        match=r"no release found \(looked for nothing\.md and "
        r"nothing\.LANG\.md",
    ):
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
