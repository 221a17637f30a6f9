"""Korean readers get Korean: text settings and list names per language, language file names,
the plan's per-language lines and warnings, paired quotes, Korean words kept whole."""

from __future__ import annotations

import json
import mailbox
import re
import shutil
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from mailer import translations
from mailer.cli import main
from mailer.config import Settings, load_settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list, get_list
from mailer.delivery import notices
from mailer.errors import ConfigError, ReleaseError
from mailer.localtext import LocalText
from mailer.releases.checks import check_release, reader_variants
from mailer.releases.markdown import body_html, body_text
from mailer.releases.render import preview
from mailer.releases.source import load_release
from mailer.samples import sample_path
from mailer.store.db import session_scope
from mailer.subscribers.optin import confirmation, consent_text
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.releases import org_settings, write_release
from tests.support.web import html_part

ORG = {"en": "Korean American Civic Council", "ko": "한인시민협의회"}
SAMPLES = sample_path().parent


def bilingual_config(folder: Path, **values: Any) -> Settings:
    write_config(
        folder,
        {
            "organisation_name": ORG,
            "from_name": {"en": "KACC Press", "ko": "한인시민협의회 보도"},
            "about": "We serve the community since 1975.",
            **values,
        },
    )
    return load_settings(folder / "mailer.toml", env={})


# --- text settings per language ---------------------------------------------------------------


def test_organisation_name_and_about_per_language_in_the_email(tmp_path: Path) -> None:
    settings = bilingual_config(tmp_path, about=ORG)  # about given per language too
    # As a plain string the setting is the default language's text (From, List-Id, logs).
    assert settings.organisation_name == "Korean American Civic Council"
    release = load_release(sample_path())
    ko = preview(release, "ko", settings, list_name="Press")
    assert "한인시민협의회 소개" in ko and "Korean American Civic Council" not in ko
    en = preview(release, "en", settings, list_name="Press")
    assert "About Korean American Civic Council" in en and "한인시민협의회" not in en
    text = preview(release, "ko", settings, text=True)
    assert text.startswith("한인시민협의회 | 보도자료")


def test_a_plain_string_is_for_every_language(tmp_path: Path) -> None:
    settings = bilingual_config(tmp_path)
    assert settings.about == {"en": "We serve the community since 1975."}
    release = load_release(sample_path())
    assert "We serve the community since 1975." in preview(release, "ko", settings)
    findings = [f.message for f in check_release(release, settings)]
    assert any(
        "about has no 'ko' text; the ko release shows the About text of another language" in m
        for m in findings
    )


def test_a_language_without_its_text_falls_back_to_the_default_and_is_warned(
    tmp_path: Path,
) -> None:
    settings = org_settings(
        tmp_path, organisation_name=LocalText(ORG, "en"), languages=["en", "ko", "ja"]
    )
    write_release(tmp_path, "r.en.md", "title: R\ndate: 2024-03-01\nsummary: S")
    write_release(tmp_path, "r.ja.md", "title: 発表\nsummary: S")
    release = load_release(tmp_path / "r.en.md")
    assert "Korean American Civic Council" in preview(release, "ja", settings)
    warnings = [f.message for f in check_release(release, settings) if f.level == "warning"]
    assert any(
        "organisation_name has no 'ja' text; the ja release shows the en one" in w for w in warnings
    )
    assert not any("organisation_name has no 'en'" in w for w in warnings)


def test_text_settings_from_the_environment_and_bad_language_keys(tmp_path: Path) -> None:
    write_config(tmp_path, {})
    env = {"MAILER_ORGANISATION_NAME": '{"en": "KACC", "kr": "협의회"}'}
    settings = load_settings(tmp_path / "mailer.toml", env=env)
    org: Any = settings.organisation_name
    assert org == "KACC" and org.get("ko") == "협의회" and org.get("ko-KR") == "협의회"
    write_config(tmp_path, {"organisation_name": {"englsh": "KACC"}})
    with pytest.raises(ConfigError, match=r"organisation_name.*'englsh' is not a language"):
        load_settings(tmp_path / "mailer.toml", env={})
    write_config(tmp_path, {"from_name": {"en": "A\\nBcc: x@example.org"}})
    with pytest.raises(ConfigError, match=r"from_name\.en: must be one line"):
        load_settings(tmp_path / "mailer.toml", env={})


# --- release file names ---------------------------------------------------------------------


def test_release_files_named_with_common_aliases(tmp_path: Path) -> None:
    write_release(tmp_path, "a.en.md", "title: A")
    write_release(tmp_path, "a.kr.md", "title: 가")
    assert load_release(tmp_path / "a.en.md").languages == ("en", "ko")
    write_release(tmp_path, "b.eng.md", "title: B")
    write_release(tmp_path, "b.ko_KR.md", "title: 나")
    release = load_release(tmp_path / "b.ko_KR.md")
    assert release.languages == ("en", "ko-kr") and release.pick_language("ko") == "ko-kr"


def test_release_files_named_by_language_name_or_twice_are_refused(tmp_path: Path) -> None:
    write_release(tmp_path, "c.en.md", "title: C")
    write_release(tmp_path, "c.korean.md", "title: 다")
    with pytest.raises(
        ReleaseError,
        match=r"c.korean.md: 'korean' is a language name, not a "
        r"code: name the file c.ko.md",
    ):
        load_release(tmp_path / "c.en.md")
    with pytest.raises(ReleaseError, match=r"name the file c\.ko\.md"):
        load_release(tmp_path / "c.korean.md")
    write_release(tmp_path, "d.ko.md", "title: 라")
    write_release(tmp_path, "d.kor.md", "title: 라")
    with pytest.raises(
        ReleaseError,
        match=r"d.ko.md: a second 'ko' file \(the first is "
        r"d.kor.md\)|d.kor.md: a second 'ko' file",
    ):
        load_release(tmp_path / "d.ko.md")


# --- typography ----------------------------------------------------------------------------

QUOTES = {"“": "”", "‘": "’"}


def unpaired(text: str) -> list[str]:
    """Problems with the quotes of `text`: a straight quote, or an opening quote without its
    closing one (a ’ between two letters is an apostrophe)."""
    problems = [
        f"straight {q!r} in {text[max(0, i - 20) : i + 20]!r}"
        for i, q in enumerate(text)
        if q in "\"'"
    ]
    stack: list[tuple[str, int]] = []
    for i, ch in enumerate(text):
        if ch in QUOTES:
            stack.append((ch, i))
        elif ch in QUOTES.values():
            apostrophe = (
                ch == "’"
                and 0 < i < len(text) - 1
                and text[i - 1].isalnum()
                and text[i + 1].isascii()
                and text[i + 1].isalpha()
            )
            if stack and QUOTES[stack[-1][0]] == ch:
                stack.pop()
            elif not apostrophe:
                problems.append(f"closing {ch!r} without opening at {text[max(0, i - 20) : i]!r}")
    problems += [f"{q!r} never closed at {text[i : i + 20]!r}" for q, i in stack]
    return problems


SAMPLE_KO = """그는 '...아니다'라는 말을 "했다"고 밝혔다. 김 회장은 "'한인'이라는 말이 자랑스럽다"며
**"함께"**라고 말했다. ("투표하세요")
"""
SAMPLE_EN = """She said "it's 'fine'" and left. The council's chair called it "a 'good' day"
(and "historic"). *"Vote,"* they said: "don't wait".
"""


@pytest.mark.parametrize("body", [SAMPLE_KO, SAMPLE_EN], ids=["ko", "en"])
def test_quotes_are_paired_in_html_and_text(tmp_path: Path, body: str) -> None:
    write_release(tmp_path, "q.md", "title: Q", body)
    variant = load_release(tmp_path / "q.md").default
    html = re.sub(r"<[^>]+>", "", body_html(variant))
    for rendered in (html, body_text(variant)):
        assert unpaired(rendered) == []
    assert "‘…아니다’라는" in html or "it’s ‘fine’" in html


def test_the_sample_release_quotes_are_paired() -> None:
    release = load_release(sample_path())
    for variant in release.variants.values():
        assert unpaired(re.sub(r"<[^>]+>", "", body_html(variant))) == []


def test_email_css_keeps_korean_words_whole(tmp_path: Path) -> None:
    html = preview(load_release(sample_path()), "ko", org_settings(tmp_path))
    category = re.search(r'<td class="category[^>]*style=(["\'])(.*?)\1', html)
    assert (
        category is not None and "keep-all" in category.group(2) and "nowrap" in category.group(2)
    )
    footer = re.search(r'<p style=(["\'])([^>]*)\1>[^<]*발송되었습니다', html)
    assert footer is not None and "keep-all" in footer.group(2)


def test_pages_choose_their_language_by_the_one_rule() -> None:
    assert translations.pick(["en", "ko"], contact="kr") == "ko"
    assert translations.pick(["en", "ko"], accept=["ko-KR", "en"]) == "ko"
    assert translations.pick(["en", "ko"], explicit="KOR") == "ko"
    assert translations.pick(["en", "ko"], contact="fr", default="ko") == "ko"
    assert translations.primary("ko_KR") == "ko"


# --- list names per language, the plan, the send ---------------------------------------------


def output(result: Result) -> str:
    return result.output


@pytest.mark.db
def test_list_names_per_language_on_the_cli_and_in_the_confirmation(
    settings: Settings, tmp_path: Path
) -> None:
    settings = bilingual_config(tmp_path, database_url=settings.database_url)
    cli = Cli(tmp_path / "mailer.toml")
    cli("lists", "create", "press", "--name", "Press", "--name-ko", "보도자료", "--public")
    cli("lists", "edit", "press", "--local-name", "ja=プレス")
    shown_settings = json.loads(cli("config", "show", "--json").output)["settings"]
    assert shown_settings["organisation_name"] == ORG
    shown = cli("lists", "show", "press").output
    assert "name [ko]: 보도자료" in shown and "name [ja]: プレス" in shown
    cli("lists", "edit", "press", "--name-ko", "")  # removes it
    assert "name [ko]" not in cli("lists", "show", "press").output
    cli("lists", "edit", "press", "--name-ko", "보도자료")
    bad = cli("lists", "edit", "press", "--local-name", "nope", expect=2)
    assert "expected LANG=NAME" in bad.output
    with session_scope(settings) as s:
        contact, _ = add_contact(s, "kim@example.org", "press", language="ko")
        ml = get_list(s, "press")
        ko = confirmation(settings, contact, [ml], language="ko")
        en = confirmation(settings, contact, [ml], language="en")
    assert "보도자료" in ko.html and "보도자료" in ko.text and "Press" not in ko.text
    assert "한인시민협의회" in ko.subject and "한인시민협의회" in ko.text
    assert "Press" in en.text and "Korean American Civic Council" in en.subject
    # Sent from the name in the reader's language too.
    from_ko = message_from_bytes(notices.build(settings, ko), policy=policy.default)["From"]
    from_en = message_from_bytes(notices.build(settings, en), policy=policy.default)["From"]
    assert str(from_ko) == "한인시민협의회 보도 <press@hanul.example.org>"
    assert str(from_en) == "KACC Press <press@hanul.example.org>"


@pytest.mark.db
def test_subscribe_page_names_lists_in_the_page_language(
    settings: Settings, tmp_path: Path
) -> None:
    settings = bilingual_config(tmp_path, database_url=settings.database_url)
    with session_scope(settings) as s:
        create_list(s, "press", "Press", public=True, names={"kr": "보도자료"})
    from mailer.web import create_app

    client = create_app(settings).test_client()
    ko = client.get("/subscribe?lang=ko").get_data(as_text=True)
    assert "보도자료" in ko and "한인시민협의회" in ko
    en = client.get("/subscribe?lang=en").get_data(as_text=True)
    assert "<strong>Press</strong>" in en and "Korean American Civic Council" in en
    # The snippet for the organisation's own site states the consent as the form does.
    snippet = client.get("/embed/snippet.html?lang=ko").get_data(as_text=True)
    assert "보도자료" in snippet and consent_text("ko", settings.organisation_name) in snippet
    assert "한인시민협의회" in consent_text("ko", settings.organisation_name)


def korean_less_release(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    return write_release(
        folder, "r.en.md", "title: R\ndate: 2024-03-01\nsummary: S\nlists: [press]"
    )


@pytest.mark.db
def test_send_shows_who_gets_which_variant_and_every_warning(
    settings: Settings, tmp_path: Path
) -> None:
    settings = bilingual_config(tmp_path, database_url=settings.database_url)
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        add_contact(s, "a@example.org", "press", language="en")
        add_contact(s, "b@example.org", "press", language="kr")
        add_contact(s, "c@example.org", "press", language="Korean")
        add_contact(s, "d@example.org", "press")
    path = korean_less_release(tmp_path / "rel")
    cli = Cli(tmp_path / "mailer.toml")
    out = cli("send", str(path), "--dry-run").output
    assert "2 ko readers get the en variant (there is no ko variant)" in out
    assert "2 en readers get the en variant" in out  # one without a language: the default
    assert "warning: 2 subscriber(s) read 'ko' but the release has no ko variant" in out
    colour = cli.runner.invoke(
        main, ["--config", str(cli.config), "send", str(path), "--dry-run"], color=True
    )
    assert "\x1b[31m2 ko readers get the en variant" in colour.output
    assert "\x1b[31mwarning: 2 subscriber(s) read 'ko'" in colour.output
    # With the Korean file there, the plan says so and the warning is gone.
    write_release(path.parent, "r.ko.md", "title: 알림\nsummary: 요약")
    out = cli("send", str(path), "--dry-run").output
    assert "2 ko readers get the ko variant" in out and "read 'ko'" not in out
    assert "the list Press has no 'ko' name" in out  # now the Korean footer names it in English


def header(message: EmailMessage, name: str) -> str:
    return str(message[name])


@pytest.mark.db
def test_korean_readers_get_korean_from_org_and_list_name(
    settings: Settings, tmp_path: Path
) -> None:
    settings = bilingual_config(tmp_path, database_url=settings.database_url)
    with session_scope(settings) as s:
        create_list(s, "press", "Press", names={"ko": "보도자료"})
        add_contact(s, "en@example.org", "press", language="en")
        add_contact(s, "ko@example.org", "press", language="kor")
    folder = tmp_path / "rel"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    reader_langs = {"en": 1, "ko": 1}
    release = load_release(folder / "election-night.en.md")
    assert [
        (r.language, r.variant, r.fallback) for r in reader_variants(release, reader_langs)
    ] == [("en", "en", False), ("ko", "ko", False)]
    result = Cli(tmp_path / "mailer.toml")(
        "send", str(folder / "election-night.en.md"), "--list", "press", "--yes"
    )
    assert "From [ko]:" in result.output and "한인시민협의회 보도" in result.output
    box = mailbox.Maildir(settings.outbox_dir, create=False)
    messages = {}
    for key in box.iterkeys():
        parsed = message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        messages[header(parsed, "To")] = parsed
    ko, en = messages["ko@example.org"], messages["en@example.org"]
    assert header(ko, "From") == "한인시민협의회 보도 <press@hanul.example.org>"
    assert header(en, "From") == "KACC Press <press@hanul.example.org>"
    ko_html, en_html = html_part(ko), html_part(en)
    assert "‘보도자료’" in ko_html and "한인시민협의회" in ko_html
    assert "Korean American Civic Council" not in ko_html
    assert "“Press”" in en_html and "보도자료" not in en_html
    # The List-Id header keeps the default name (it identifies the list, not a reader's view).
    assert header(ko, "List-Id").startswith("Press <press.")


@pytest.mark.db
def test_a_test_send_shows_each_language_as_its_readers_get_it(
    settings: Settings, tmp_path: Path
) -> None:
    settings = bilingual_config(tmp_path, database_url=settings.database_url)
    folder = tmp_path / "rel"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    Cli(tmp_path / "mailer.toml")(
        "send", str(folder / "election-night.en.md"), "--test", "me@example.org"
    )
    box = mailbox.Maildir(settings.outbox_dir, create=False)
    froms = {}
    for key in box.iterkeys():
        parsed = message_from_bytes(box.get_bytes(key), policy=policy.default)
        froms[str(parsed["Content-Language"])] = str(parsed["From"])
    assert froms == {
        "en": "KACC Press <press@hanul.example.org>",
        "ko": "한인시민협의회 보도 <press@hanul.example.org>",
    }


# --- in a browser: Korean words are not broken ---------------------------------------------

HANGUL_WORDS = """
(() => {
  const broken = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const el = node.parentElement;
    if (!el || el.closest('.preheader') || !el.getClientRects().length) continue;
    const re = /[\\u3131-\\u318e\\uac00-\\ud7a3]+/g;
    let m;
    while ((m = re.exec(node.data))) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set([...range.getClientRects()].filter(r => r.width > 0)
                           .map(r => Math.round(r.top)));
      if (tops.size > 1) broken.push(m[0]);
    }
  }
  return broken;
})()
"""


@pytest.mark.browser
@pytest.mark.parametrize("width", [375, 600])
def test_korean_words_do_not_break_at_phone_and_desktop_widths(tmp_path: Path, width: int) -> None:
    from tests.support.browser import CHROMEDRIVER, CHROMIUM, korean_font_installed, show

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs chromium and chromium-driver")
    if not korean_font_installed():
        pytest.skip("needs a Korean font (apt-get install fonts-noto-cjk)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # A long organisation name fills the masthead: before keep-all, "보도자료" beside it broke in
    # two at 600px (and "메일을" in the About text).
    settings = bilingual_config(
        tmp_path, organisation_name="Korean American Civic Council of Greater Philadelphia"
    )
    page = tmp_path / "ko.html"
    page.write_text(
        preview(load_release(sample_path()), "ko", settings, list_name="보도자료"), encoding="utf-8"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        show(driver, page, width)
        broken = driver.execute_script("return " + HANGUL_WORDS.strip())
        assert broken == []
        category = driver.execute_script(
            "return document.querySelector('.category').getClientRects().length"
        )
        assert category == 1
    finally:
        driver.quit()
