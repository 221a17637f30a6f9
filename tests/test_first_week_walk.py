"""The first real week (issue 21 review): a press officer at a Korean-American civic group sets
mailer up from the README and docs/ alone, with `mailer init`, a hand-edited mailer.toml, messy
press lists, a bilingual release (NAME.kr.md) and sends to the outbox and to a real SMTP server.
Each test is a place where that walk went wrong; those whose fix lies outside the CLI, the
settings and the import are xfail(strict) with the finding as the reason."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from click.testing import CliRunner, Result

from mailer.cli import main
from mailer.imports.columns import ALIASES, header_key
from tests.support.smtp import SmtpServer
from tests.support.web import text_part

DOCS = Path(__file__).parents[1] / "docs"

ORGANISATION = """
organisation_name = {en = "Korean American Civic Alliance", ko = "한미시민연대"}
from_name = {en = "KACA Press Office", ko = "한미시민연대 공보실"}
from_address = "press@kaca.example.org"
reply_to = "media@kaca.example.org"
postal_address = "123 Main Street, Suite 4, Philadelphia, PA 19107"
base_url = "https://news.kaca.example.org"
about = {en = "KACA is a nonpartisan civic group.", ko = "한미시민연대는 초당파 시민단체입니다."}
"""

RELEASE_EN = """---
title: "KACA hosts town hall on language access at the polls"
date: 2026-12-03
dateline: Philadelphia, PA
summary: Voters and officials meet on Saturday.
lists: [press]
contact:
  name: Jiwon Park
  role: Communications Director
  email: press@kaca.example.org
  phone: "+1 215-555-0142"
---

The Korean American Civic Alliance will host a town hall on Saturday.
"""

RELEASE_KR = """---
title: "한미시민연대, 투표소 언어 지원 타운홀 개최"
summary: 유권자와 공무원이 토요일에 만납니다.
---

박지원 실장은 '언어는 투표의 장벽이 되어서는 안 된다'라는 입장을 밝혔다.
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def ok(*args: str) -> Result:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`mailer init` in a new folder, then the organisation written into mailer.toml by hand."""
    for name in list(os.environ):
        if name.startswith("MAILER_"):
            monkeypatch.delenv(name)
    folder = tmp_path / "press-office"
    folder.mkdir()
    monkeypatch.chdir(folder)
    started = ok("init").output
    # What to do first: the settings whose stand-ins stop every real send.
    assert "Next: fill in organisation_name, postal_address, from_address" in started
    with (folder / "mailer.toml").open("a", encoding="utf-8") as f:
        f.write(ORGANISATION)
    (folder / "releases").mkdir()
    (folder / "releases" / "town-hall.en.md").write_text(RELEASE_EN, encoding="utf-8")
    (folder / "releases" / "town-hall.kr.md").write_text(RELEASE_KR, encoding="utf-8")
    ok("lists", "create", "press", "--name", "Press")
    ok("lists", "edit", "press", "--local-name", "ko=기자단")
    yield folder


def append(folder: Path, text: str) -> int:
    """Append a line to mailer.toml; its line number."""
    path = folder / "mailer.toml"
    before = path.read_text(encoding="utf-8")
    path.write_text(before + text + "\n", encoding="utf-8")
    return before.count("\n") + 1


# Settings: every bad value names the line, and language codes are read as people write them.


@pytest.mark.parametrize(
    "line, shown",
    [
        ('transport = "SMTP"', "transport: expected 'outbox' or 'smtp', got 'SMTP'"),
        ('timezone = "Seoul"', "timezone: expected an IANA time zone"),
        ('envelope_sender = "press at kaca"', "envelope_sender: expected an email address"),
        ("concurrency = 0", "concurrency: expected at least 1"),
    ],
)
def test_a_bad_value_names_its_line(project: Path, line: str, shown: str) -> None:
    number = append(project, line)
    result = run("config", "show")
    assert result.exit_code == 1
    assert shown in result.output and f"(line {number})" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_bad_variable_is_named(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_TIMEZONE", "Seoul")
    result = run("config", "show")
    assert result.exit_code == 1
    assert "environment variable MAILER_TIMEZONE: expected an IANA time zone" in result.output


def test_kr_and_korean_in_the_language_settings_mean_ko(project: Path) -> None:
    append(project, 'languages = ["en", "kr"]')
    append(project, 'default_language = "한국어"')
    shown = json.loads(ok("config", "show", "--json").output)["settings"]
    assert shown["languages"] == ["en", "ko"] and shown["default_language"] == "ko"
    # The Korean variant is in the organisation's languages: no warning that it is not.
    checked = ok("release", "check", "releases/town-hall")
    assert "languages" not in checked.output, checked.output


def test_a_language_setting_that_is_no_language_is_an_error(project: Path) -> None:
    number = append(project, 'default_language = "클링온"')
    result = run("config", "show")
    assert result.exit_code == 1
    assert "default_language: '클링온' is not a language code" in result.output
    assert f"(line {number})" in result.output


@pytest.mark.parametrize(
    "text",
    [
        '[social]\nFacebook = "https://facebook.com/kaca"\ntest_recipient = "me@kaca.example.org"',
        'social = {\n  Facebook = "https://facebook.com/kaca",\n}',
    ],
)
def test_a_social_table_mistake_shows_a_social_example(project: Path, text: str) -> None:
    """The fix offered for `social` was {en = "...", ko = "..."}: social maps labels to URLs."""
    append(project, text)
    result = run("config", "show")
    assert result.exit_code == 1
    assert 'social = {Facebook = "https://...", Instagram = "https://..."}' in result.output
    assert "en = " not in result.output, result.output


def test_a_mailer_toml_saved_with_a_bom_by_a_windows_editor_is_read(project: Path) -> None:
    path = project / "mailer.toml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    shown = json.loads(ok("config", "show", "--json").output)["settings"]
    assert shown["organisation_name"]["ko"] == "한미시민연대"


# `mailer init` typed inside a project must not hide it behind a new, empty one.


def test_init_in_a_subfolder_of_a_project_refuses(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project / "releases")
    result = run("init")
    assert result.exit_code == 1
    assert f"inside the project of {project / 'mailer.toml'}" in result.output
    assert sorted(p.name for p in (project / "releases").iterdir()) == [
        "town-hall.en.md",
        "town-hall.kr.md",
    ]
    assert "press" in ok("lists", "ls").output  # still the project above
    # On purpose, with --config, a nested project can still be made.
    ok("--config", str(project / "releases" / "mailer.toml"), "init")
    assert (project / "releases" / "mailer.toml").exists()


# Import: the messy press list of a Korean-American office, three ways.

ROWS = [
    ["이름", "이메일", "언론사", "언어", "전화", "비고"],
    [
        "김민지",
        "김민지 <minji.kim@seouldaily.example.com>",
        "서울데일리",
        "한국어",
        "+1 215-555-0101",
        "",
    ],
    ["", "", "", "", "", ""],
    [
        "David Lee",
        "david.lee@dvledger.example.net",
        "Delaware Valley Ledger",
        "English",
        "+12155550102",
        "",
    ],
    [
        "",
        '"Park, Junhyuk" <JHPark@Hangang-Times.example.org>',
        "한강타임스",
        "Korean",
        "010-1234-5678",
        "",
    ],
    ["박준혁", "jhpark@hangang-times.example.org", "한강타임스", "국문", "", "dup"],
    ["이서연", "editor@koreanweekly.example.org", "코리안위클리", "KR", "", ""],
    ["최유나", "yuna.choi@kbn-radio", "KBN", "ko", "", "bad address"],
]


def csv_text() -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(ROWS)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["cp949", "utf-8-sig", "xlsx"])
def test_a_messy_press_list_imports_as_the_docs_say(project: Path, kind: str) -> None:
    if kind == "xlsx":
        path = project / "기자명단.xlsx"
        book = openpyxl.Workbook()
        assert book.active is not None
        book.active.title = "사용법"
        book.active.append(["이 파일은 기자 명단입니다. 두번째 시트를 보세요."])
        sheet = book.create_sheet("기자")
        for row in ROWS:
            sheet.append(row)
        book.save(path)
        first = run("contacts", "import", path.name, "--list", "press")
        assert first.exit_code == 1 and "use --sheet 기자" in first.output, first.output
        args = ["--sheet", "기자"]
    else:
        path = project / f"press-{kind}.csv"
        path.write_bytes(csv_text().encode(kind))
        args = []
    result = ok("contacts", "import", path.name, "--list", "press", *args)
    assert "line 8: not an email address: 'yuna.choi@kbn-radio'" in result.output
    assert re.search(r"duplicates in the file\s+1", result.output)
    listed = ok("contacts", "ls", "--list", "press").output
    assert listed.count("press:subscribed") == 4
    park = ok("contacts", "show", "jhpark@hangang-times.example.org").output
    assert "(Park, Junhyuk)" in park and "language:     ko" in park
    # Phone is a press field of its own now, shown in the aligned block.
    assert re.search(r"phone:\s+010-1234-5678", park)
    david = ok("contacts", "show", "david.lee@dvledger.example.net").output
    assert re.search(r"phone:\s+\+12155550102", david)


def test_a_wrong_encoding_names_the_line_and_the_option(project: Path) -> None:
    """It said "not valid utf-8 text (invalid start byte at byte 0)": no line, no way out."""
    path = project / "press.csv"
    path.write_bytes(
        "email,name\r\nlee@example.com,Lee\r\nkim@example.com,김민지\r\n".encode("cp949")
    )
    result = run("contacts", "import", path.name, "--list", "press", "--encoding", "utf-8")
    assert result.exit_code == 1
    assert "press.csv: not valid utf-8 text on line 3" in result.output, result.output
    assert "is --encoding utf-8 right?" in result.output
    ok("contacts", "import", path.name, "--list", "press")  # the guess: CP949
    assert "(김민지)" in ok("contacts", "show", "kim@example.com").output


def test_the_docs_header_table_is_what_the_importer_reads() -> None:
    """docs/contacts-and-import.md listed 매체 as the organisation; it is the kind of medium."""
    text = (DOCS / "contacts-and-import.md").read_text(encoding="utf-8")
    table = text.split("| field | headers recognised |")[1].split("\n\n")[0]
    checked = 0
    for row in table.splitlines()[2:]:
        field, headers = (cell.strip() for cell in row.strip("|").split("|")[:2])
        if field not in ALIASES.values():
            continue  # first_name / last_name, language (with a note)
        for header in headers.split(", "):
            header = header.split(" (")[0]
            assert ALIASES.get(header_key(header)) == field, (header, field)
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("lang", ["ko", "kr", "한국어", "Korean"])
def test_preview_takes_the_language_as_contacts_edit_does(project: Path, lang: str) -> None:
    shown = ok("release", "preview", "releases/town-hall", "--lang", lang, "--text").output
    assert "보도자료" in shown


# Sending: the plan tells the truth, and the docs say when a test send is refused.


def test_a_resumed_campaign_does_not_count_the_lists_of_today(project: Path) -> None:
    ok("contacts", "add", "kim@example.com", "--list", "press", "--lang", "ko")
    ok("send", "releases/town-hall.en.md", "--list", "press", "--yes")
    ok("contacts", "add", "lee@example.com", "--list", "press", "--lang", "ko")
    again = ok("send", "releases/town-hall.en.md", "--list", "press", "--yes").output
    assert "Resuming campaign 1" in again and "recipients: 1  (ko: 1)" in again
    assert "2 ko readers" not in again, again
    assert "contacts added to the lists since are not in it" in again
    # What docs/sending.md says to do for them: a tag, and a new campaign leaves out who has it.
    ok("contacts", "tag", "lee@example.com", "late")
    late = ok("send", "releases/town-hall.en.md", "--list", "press", "--tag", "late", "--yes")
    assert "Planned campaign 2" in late.output and "sent 1" in late.output


def test_a_dry_run_checks_and_shows_at(project: Path) -> None:
    """--at was ignored on a dry run: a mistyped time passed, and the plan did not show it."""
    ok("contacts", "add", "kim@example.com", "--list", "press", "--lang", "ko")
    bad = run("send", "releases/town-hall", "--list", "press", "--at", "내일 9시", "--dry-run")
    assert bad.exit_code == 1
    assert "--at: not a date and time: '내일 9시'" in bad.output, bad.output
    good = ok(
        "send",
        "releases/town-hall",
        "--list",
        "press",
        "--dry-run",
        "--at",
        "2026-12-05 09:00 Asia/Seoul",
    )
    assert "with --at it would be scheduled for 2026-12-05 09:00" in good.output, good.output


def test_an_empty_postal_address_stops_a_test_send_as_the_docs_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("MAILER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    ok("init")
    (tmp_path / "town-hall.en.md").write_text(
        RELEASE_EN.replace("lists: [press]\n", ""), encoding="utf-8"
    )
    result = run("send", "town-hall.en.md", "--test", "me@example.org")
    assert result.exit_code == 1 and "postal_address is empty" in result.output
    install = " ".join((DOCS / "install.md").read_text(encoding="utf-8").split())
    assert "except an empty `postal_address`, which stops every send, test sends too" in install


def test_smtp_send_of_the_kr_release(project: Path) -> None:
    server = SmtpServer().start()
    try:
        append(project, 'transport = "smtp"')
        append(project, f'smtp_url = "smtp://127.0.0.1:{server.port}?tls=none"')
        ok(
            "contacts",
            "add",
            "kim@example.com",
            "--list",
            "press",
            "--lang",
            "한국어",
            "--name",
            "김기자",
        )
        ok("send", "releases/town-hall.kr.md", "--test", "me@kaca.example.org")
        ok("send", "releases/town-hall.kr.md", "--list", "press", "--yes")
        korean = server.sink.to("kim@example.com")
        assert len(korean) == 1
        message = korean[0].message
        assert str(message["Subject"]).startswith("한미시민연대")
        assert message["From"] == "한미시민연대 공보실 <press@kaca.example.org>"
        text = text_part(message)
        assert "‘언어는 투표의 장벽이 되어서는 안 된다’라는" in text
        assert "‘기자단’" in text and "Example" not in text
    finally:
        server.stop()


# Findings first left as xfail (the releases and the demo), fixed there.


def test_a_variant_without_a_media_contact_is_warned_about(project: Path) -> None:
    checked = ok("release", "check", "releases/town-hall")
    assert "town-hall.kr.md: no contact; the ko release shows the one of" in checked.output, (
        checked.output
    )
    # Korean reporters get the English file's contact, phone included.
    shown = ok("release", "preview", "releases/town-hall", "--lang", "ko", "--text").output
    assert "Jiwon Park" in shown and "+1 215-555-0142" in shown, shown


def test_the_readme_tour_test_send_is_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("MAILER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    ok("demo")
    monkeypatch.chdir(tmp_path / "mailer-demo")
    result = ok("send", "releases/election-night.en.md", "--test", "you@example.org")
    assert "warning" not in result.output, result.output
    # The tour's next steps: a new list with an English name and one English reader. Nobody
    # gets the Korean variant, so its missing Korean list name is no warning.
    ok("lists", "create", "members", "--name", "Members")
    ok("contacts", "add", "you@example.org", "--list", "members", "--lang", "en")
    planned = ok("send", "releases/election-night.en.md", "--list", "members", "--dry-run")
    assert "warning" not in planned.output and "1 en readers" in planned.output, planned.output


def test_a_colon_in_an_unquoted_title_says_to_quote_it(project: Path) -> None:
    (project / "releases" / "colon.ko.md").write_text(
        "---\ntitle: 한미시민연대: 타운홀 개최\n---\n본문\n", encoding="utf-8"
    )
    result = run("release", "check", "releases/colon.ko.md")
    assert result.exit_code == 1 and "colon.ko.md:2: title:" in result.output
    assert 'put the title in quotes: title: "한미시민연대: 타운홀 개최"' in result.output, (
        result.output
    )
