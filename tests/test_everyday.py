"""Everyday management through the CLI: edit, tag, unsubscribe safely, readable tables."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.cli.common import display_width, table
from mailer.config import Settings
from mailer.store.models import Suppression
from tests.support.cli import Cli
from tests.support.config import write_config

ROOT = Path(__file__).parents[1]
SAMPLES = ROOT / "mailer" / "samples"


def suppressed(session: Session) -> int:
    n = session.scalar(select(func.count()).select_from(Suppression)) or 0
    session.rollback()
    return n


# --- tables -------------------------------------------------------------------------------------


def test_display_width_counts_wide_characters_twice() -> None:
    assert display_width("kim") == 3
    assert display_width("김민지") == 6
    assert display_width("中文ｶ") == 5  # full-width Latin/Katakana are 2 unless half-width
    assert display_width("e\u0301") == 1  # a combining accent takes no column


def test_table_aligns_hangul_by_display_width() -> None:
    lines = table(
        ["EMAIL", "NAME", "N"], [["a@x.org", "김민지", 5], ["bb@x.org", "Jo", 12]], right=(2,)
    )
    assert lines == [
        "EMAIL     NAME     N",
        "a@x.org   김민지   5",
        "bb@x.org  Jo      12",
    ]


def column_starts(lines: list[str], header: str) -> set[int]:
    """The display column where the cell under `header` starts, in every line."""
    start = display_width(lines[0][: lines[0].index(header)])
    out = set()
    for line in lines[1:]:
        # Walk characters until the display width reaches the header's column.
        width, i = 0, 0
        while width < start:
            width += display_width(line[i])
            i += 1
        assert line[i - 1] == " " and line[i] != " ", (line, header)
        out.add(width)
    return out


def test_contacts_ls_has_a_header_and_aligns_hangul(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli(
        "contacts",
        "add",
        "minji@example.com",
        "--list",
        "press",
        "--name",
        "김민지",
        "--lang",
        "ko",
        "--org",
        "서울데일리",
    )
    cli(
        "contacts",
        "add",
        "sarah.long.address@example.org",
        "--list",
        "press",
        "--name",
        "Sarah Smith",
        "--lang",
        "en",
        "--org",
        "Valley Herald",
    )
    lines = cli("contacts", "ls").stdout.splitlines()
    assert lines[0].split() == ["EMAIL", "NAME", "LANG", "ORGANISATION", "TAGS", "LISTS"]
    assert len(lines) == 3
    for header in ("NAME", "LANG", "ORGANISATION", "LISTS"):
        assert column_starts(lines, header) == {
            display_width(lines[0][: lines[0].index(header)])
        }, header


def test_lists_ls_is_a_table(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "기자단", "--public")
    cli("lists", "create", "members-and-friends", "--name", "Members")
    lines = cli("lists", "ls").stdout.splitlines()
    header = ["SLUG", "SUBSCRIBED", "PENDING", "UNSUBSCRIBED", "PUBLIC", "PRESS", "ARCHIVE", "NAME"]
    assert lines[0].split() == header
    assert lines[1].split() == ["members-and-friends", "0", "0", "0", "no", "no", "yes", "Members"]
    assert column_starts(lines, "NAME") == {lines[0].index("NAME")}


def test_suppressions_ls_is_a_table(cli: Cli) -> None:
    cli("suppressions", "add", "kim@example.org", "--source", "전화 요청")
    lines = cli("suppressions", "ls").stdout.splitlines()
    assert re.fullmatch(r"EMAIL +REASON +SINCE \(\S+\) +SOURCE", lines[0])
    assert lines[1].split()[:2] == ["kim@example.org", "manual"]


# --- unsubscribe --------------------------------------------------------------------------------


def test_unsubscribe_everywhere_asks_first(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "a@example.org", "--list", "press")
    declined = cli("contacts", "unsubscribe", "a@example.org", input="n\n", expect=1)
    assert "Suppress a@example.org on every list" in declined.output
    assert "Aborted" in declined.output
    assert suppressed(session) == 0
    done = cli("contacts", "unsubscribe", "a@example.org", input="y\n")
    assert "suppressed (never mailed again); unsubscribed from press." in done.output
    assert suppressed(session) == 1


def test_unsubscribe_of_an_unknown_address_says_so(cli: Cli, session: Session) -> None:
    declined = cli("contacts", "unsubscribe", "typo@exmaple.org", input="n\n", expect=1)
    assert "typo@exmaple.org is not a contact." in declined.output
    assert "Suppress typo@exmaple.org anyway" in declined.output
    assert suppressed(session) == 0
    done = cli("contacts", "unsubscribe", "typo@exmaple.org", "--yes")
    assert "is not a contact" in done.output and "suppressed" in done.output
    assert suppressed(session) == 1


def test_unsubscribe_from_one_list_needs_no_confirmation(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "a@example.org", "--list", "press")
    assert (
        "unsubscribed from 'press'"
        in cli("contacts", "unsubscribe", "a@example.org", "--list", "press").output
    )
    assert suppressed(session) == 0


# --- editing ------------------------------------------------------------------------------------


def show(cli: Cli, email: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(cli("contacts", "show", email, "--json").stdout)
    return data


def test_contacts_edit_changes_details_and_attributes(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli(
        "contacts",
        "add",
        "kim@example.com",
        "--list",
        "press",
        "--name",
        "Kim",
        "--org",
        "Old Paper",
    )
    out = cli(
        "contacts",
        "edit",
        "KIM@example.com",
        "--name",
        "김민지",
        "--lang",
        "Korean",
        "--org",
        "서울데일리",
        "--set",
        "beat=politics",
        "--set",
        "desk=night",
    ).output
    # beat is a press field (a column, as --where reads it); desk an attribute.
    assert "changed name, organisation, language, beat, attributes" in out
    data = show(cli, "kim@example.com")
    assert (
        data["name"],
        data["language"],
        data["organisation"],
        data["beat"],
        data["attributes"],
    ) == ("김민지", "ko", "서울데일리", "politics", {"desk": "night"})
    cli("contacts", "edit", "kim@example.com", "--unset", "desk", "--lang", "", "--org", "")
    data = show(cli, "kim@example.com")
    assert (data["language"], data["organisation"], data["beat"], data["attributes"]) == (
        None,
        "",
        "politics",
        {},
    )
    assert (
        "nothing to change" in cli("contacts", "edit", "kim@example.com", "--name", "김민지").output
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["nobody@example.com", "--name", "X"], "no contact with the address 'nobody@example.com'"),
        (["kim@example.com", "--lang", "Klingon!"], "not a language code: 'Klingon!'"),
        (["kim@example.com", "--unset", "desk"], "has no attribute 'desk' (it has none)"),
        (["kim@example.com", "--set", "media_type=zine"], "media type 'zine': use print, tv"),
        (["kim@example.com", "--set", "no-equals"], "--set 'no-equals': expected NAME=VALUE"),
        (["kim@example.com", "--name", "N" * 201], "name: at most 200 characters"),
    ],
)
def test_contacts_edit_mistakes_are_clear_errors(cli: Cli, args: list[str], message: str) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "kim@example.com", "--list", "press", "--name", "Kim")
    result = cli("contacts", "edit", *args, expect=1)
    assert result.output.startswith("Error: ") and message in result.output, result.output
    assert show(cli, "kim@example.com")["name"] == "Kim"


def test_tags_add_tag_untag(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "kim@example.com", "--list", "press", "--tag", "vip", "--tag", "gala")
    assert show(cli, "kim@example.com")["tags"] == ["gala", "vip"]
    assert "tagged 정치부" in cli("contacts", "tag", "kim@example.com", "정치부", "vip").output
    assert show(cli, "kim@example.com")["tags"] == ["gala", "vip", "정치부"]
    assert "already tagged" in cli("contacts", "tag", "kim@example.com", "vip").output
    assert (
        "removed gala, vip"
        in cli("contacts", "untag", "kim@example.com", "vip", "gala", "nope").output
    )
    assert show(cli, "kim@example.com")["tags"] == ["정치부"]
    bad = cli("contacts", "tag", "kim@example.com", "a,b", expect=1)
    assert "tag 'a,b': use 1-100 characters" in bad.output
    assert "had none of those tags" in cli("contacts", "untag", "kim@example.com", "x").output


def test_lists_edit(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("lists", "edit", "press", "--name", "기자단", "--description", "보도자료", "--public")
    data = json.loads(cli("lists", "show", "press", "--json").stdout)
    assert (data["name"], data["description"], data["public"]) == ("기자단", "보도자료", True)
    cli("lists", "edit", "press", "--private")
    assert json.loads(cli("lists", "show", "press", "--json").stdout)["public"] is False
    assert "must not be empty" in cli("lists", "edit", "press", "--name", " ", expect=1).output


# --- times --------------------------------------------------------------------------------------


def test_campaigns_show_times_in_the_configured_zone(
    cli: Cli, settings: Settings, tmp_path: Path
) -> None:
    write_config(tmp_path, {"database_url": settings.database_url, "timezone": "America/New_York"})
    folder = tmp_path / "releases"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "kim@example.com", "--list", "press", "--lang", "ko")
    cli(
        "send",
        str(folder / "election-night.en.md"),
        "--list",
        "press",
        "--yes",
        "--at",
        "2031-01-15 09:00 Asia/Seoul",
    )
    lines = cli("campaigns", "ls").stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATUS", "SENT", "TOTAL"]
    assert "CREATED (America/New_York)" in lines[0]
    assert "SCHEDULED (America/New_York)" in lines[0]
    # 09:00 in Seoul is 19:00 the day before in New York (EST, UTC-5).
    assert "2031-01-14 19:00" in lines[1] and "scheduled" in lines[1]
    shown = cli("campaigns", "show", "1").stdout
    assert "times in America/New_York" in shown
    assert "scheduled for 2031-01-14 19:00 EST" in shown


def test_a_bad_timezone_is_a_clear_error(cli: Cli, settings: Settings, tmp_path: Path) -> None:
    write_config(tmp_path, {"database_url": settings.database_url, "timezone": "Mars/Base"})
    result = cli("campaigns", "ls", expect=1)
    assert "timezone: expected an IANA time zone" in result.output
    assert "'Mars/Base'" in result.output and "mailer.toml" in result.output


def test_gitignore_covers_the_demo_folder() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    found = subprocess.run(
        ["git", "check-ignore", "-q", "mailer-demo/mailer.db"], cwd=ROOT, check=False
    )
    assert found.returncode == 0
