"""The one language rule: how tags are written, which variant a reader gets, and that the check,
the planner's SQL (on both engines) and the send all give the same answer."""

from __future__ import annotations

import itertools
import mailbox
import subprocess
import sys
from collections import Counter
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.config import Settings
from mailer.contacts.contact import add_contact, find_contact
from mailer.contacts.lists import create_list
from mailer.delivery.send import check_for_lists, send_release
from mailer.releases.checks import check_release
from mailer.releases.languages import choose, normalise, primary
from mailer.releases.source import load_release
from mailer.store.db import session_scope
from mailer.store.models import Delivery
from tests.support.releases import offline_cli, org_settings, write_release

VARIANTS = ("en", "fi", "ko", "pt-br", "zh-hant")

# The stored language of a reader -> the variant of VARIANTS (default en) they get.
EXPECTED = {
    "KO": "ko",
    "ko-KR": "ko",
    "kr": "ko",  # how Korean staff often write Korean (a country code)
    "fil": "en",  # Filipino, not Finnish: the old SQL read its first two letters, "fi"
    "FI": "fi",
    "fi-FI": "fi",
    "pt-BR": "pt-br",
    "PT_br": "pt-br",
    "pt": "pt-br",  # the only Portuguese there is
    "pt-PT": "pt-br",
    "zh-Hant-TW": "zh-hant",
    "zh-TW": "zh-hant",
    "fr": "en",
    "en-GB": "en",
    "": "en",
}


@pytest.mark.parametrize(
    ("tag", "written"),
    [
        ("KO", "ko"),
        (" ko_KR ", "ko-kr"),
        ("kr", "ko"),
        ("kr-KR", "ko-kr"),
        ("fil", "fil"),
        ("pt-BR", "pt-br"),
        ("zh-Hant-TW", "zh-hant-tw"),
        ("iw", "he"),
        ("eng", "en"),
        ("", ""),
        (None, ""),
        ("ko--", "ko"),
    ],
)
def test_normalise(tag: str | None, written: str) -> None:
    assert normalise(tag) == written


def test_primary_is_the_whole_first_subtag() -> None:
    assert primary("fil") == "fil" and primary("pt-BR") == "pt" and primary("KR") == "ko"


@pytest.mark.parametrize(("reader", "variant"), sorted(EXPECTED.items()))
def test_choose(reader: str, variant: str) -> None:
    assert choose(reader, VARIANTS, "en") == variant


def test_choose_prefers_the_exact_tag_then_drops_subtags_from_the_end() -> None:
    variants = ["en", "zh", "zh-hant", "zh-hant-tw", "pt", "pt-br"]
    assert choose("zh-Hant-TW", variants, "en") == "zh-hant-tw"
    assert choose("zh-Hant-HK", variants, "en") == "zh-hant"
    assert choose("zh-Hans", variants, "en") == "zh"
    assert choose("pt-BR", variants, "en") == "pt-br"
    assert choose("pt-AO", variants, "en") == "pt"
    # A one-letter subtag starts an extension: "en-x" is never tried as a tag.
    assert choose("fr-x-private", ["en", "fr"], "en") == "fr"
    assert choose(None, variants, "pt") == "pt"


def test_choose_properties() -> None:
    """Over every combination of some tags and spellings: the answer is one of the variants,
    does not depend on case or underscores, and a variant's own readers get it."""
    languages = ["ko", "KO", "kr", "fil", "fi", "pt", "zh", "en", "fr", "tl", "x", ""]
    rest = ["", "-KR", "_br", "-Hant", "-Hant-TW", "-PT", "-x-private", "-419"]
    variant_sets = [VARIANTS, ("ko",), ("en", "pt-br"), ("fil", "fi"), ("zh-hans", "zh-hant")]
    for variants in variant_sets:
        for first, second in itertools.product(languages, rest):
            tag = first + second
            got = choose(tag, variants, variants[0])
            assert got in variants, (tag, variants)
            assert choose(tag.upper().replace("-", "_"), variants, variants[0]) == got
            assert choose(normalise(tag), variants, variants[0]) == got
        for variant in variants:
            assert choose(variant.upper(), variants, variants[0]) == variant


def test_release_files_and_front_matter_use_the_rule(tmp_path: Path) -> None:
    write_release(tmp_path, "r.en.md", "title: R")
    write_release(tmp_path, "r.KR.md", "title: 보도자료")
    write_release(tmp_path, "r.pt-BR.md", "title: R\nlanguage: pt_BR")
    release = load_release(tmp_path / "r.en.md")
    assert release.languages == ("en", "ko", "pt-br")
    for reader in ("KO", "ko-KR", "kr", "fil", "pt-BR", "zh-Hant-TW"):
        assert release.pick_language(reader) == choose(reader, release.variants, "en")


def test_preview_reads_the_language_option_by_the_rule(tmp_path: Path) -> None:
    cli = offline_cli(tmp_path)
    write_release(tmp_path, "r.en.md", "title: English title\ndate: 2024-03-01")
    write_release(tmp_path, "r.ko.md", "title: 한국어 제목", "본문.\n")
    out = cli("release", "preview", str(tmp_path / "r.en.md"), "--lang", "KR", "--text").output
    assert "한국어 제목" in out and "English title" not in out


def test_check_warns_filipino_readers_not_finnish(tmp_path: Path) -> None:
    write_release(tmp_path, "r.en.md", "title: R\ndate: 2024-03-01\nsummary: S")
    write_release(tmp_path, "r.fi.md", "title: R\nsummary: S")
    release = load_release(tmp_path / "r.en.md")
    findings = check_release(
        release,
        org_settings(tmp_path, languages=["en", "fi"]),
        audience_languages={"fil": 2, "FI": 3, "pt-BR": 1},
    )
    warnings = [f.message for f in findings if f.level == "warning"]
    assert (
        "2 subscriber(s) read 'fil' but the release has no fil variant (r.fil.md); they "
        "would get the en one" in warnings
    )
    assert (
        "1 subscriber(s) read 'pt-br' but the release has no pt-br variant (r.pt-br.md); "
        "they would get the en one" in warnings
    )
    assert not [w for w in warnings if "read 'fi'" in w]


def test_checking_a_release_loads_no_database_code() -> None:
    code = (
        "import sys, mailer.releases.checks, mailer.releases.render; "
        "print(sorted(m for m in sys.modules if m.startswith(('sqlalchemy', 'mailer.store'))))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[1],
    )
    assert run.stdout.strip() == "[]"


def _release(folder: Path) -> Path:
    folder.mkdir()
    for lang in VARIANTS:
        write_release(
            folder,
            f"langs.{lang}.md",
            f"title: Subject {lang}\ndate: 2024-03-01\nsummary: S\nlists: [press]",
            f"Body in {lang}.\n",
        )
    return folder / "langs.en.md"


@pytest.mark.db
def test_check_plan_and_send_agree(settings: Settings, tmp_path: Path) -> None:
    """Each reader's language, as `release check` reports it, as the planner's SQL writes it
    into the ledger (on this engine), as a dry run builds it and as the message goes out."""
    path = _release(tmp_path / "releases")
    emails = {raw: f"reader{i}@example.org" for i, raw in enumerate(EXPECTED)}
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        for raw, email in emails.items():
            add_contact(s, email, "press", language="en" if raw else None)
        s.flush()
        for raw, email in emails.items():
            contact = find_contact(s, email)
            assert contact is not None
            # Stored as written (an old import, the web form): the rule must cope with it.
            contact.language = raw or None

    release = load_release(path)
    checked = check_for_lists(settings, release)
    assert checked.audience is not None
    for raw in EXPECTED:
        assert (normalise(raw) or "en") in checked.audience
    warned = {
        f.message.split("'")[1]: f.message.rsplit(" ", 2)[1]
        for f in checked.findings
        if "subscriber(s) read" in f.message
    }
    assert warned == {"fil": "en", "fr": "en"}
    for reader, variant in warned.items():
        assert EXPECTED[reader] == variant

    dry = send_release(settings, path, confirm=lambda plan: False, dry_run=True)
    assert dry.built is not None
    assert dry.built.by_language == dict(Counter(EXPECTED.values()))

    outcome = send_release(settings, path, confirm=lambda plan: True)
    assert outcome.status == "sent" and outcome.result is not None and outcome.result.complete
    with session_scope(settings) as s:
        ledger = {d.email: d.language for d in s.scalars(select(Delivery))}
    assert ledger == {emails[raw]: variant for raw, variant in EXPECTED.items()}

    box = mailbox.Maildir(settings.outbox_dir, create=False)
    sent = {
        m["Delivered-To"]: (m["Content-Language"], str(make_header(decode_header(m["Subject"]))))
        for m in box
    }
    assert sent == {
        emails[raw]: (variant, f"Subject {variant}") for raw, variant in EXPECTED.items()
    }
