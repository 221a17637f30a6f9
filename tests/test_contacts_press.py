"""The press fields in `contacts show`, `contacts ls` and `contacts edit`."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from tests.support.cli import Cli
from tests.support.imports import contact


def show(cli: Cli, email: str) -> dict[str, Any]:
    return dict(json.loads(cli("contacts", "show", email, "--json").output))


def test_edit_sets_press_fields_by_the_names_where_uses(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "kim@example.com", "--list", "press", "--name", "Kim")
    out = cli(
        "contacts",
        "edit",
        "kim@example.com",
        "--set",
        "beat=politics",
        "--set",
        "media_type=신문",
        "--set",
        "Region=Philadelphia, PA",
        "--set",
        "outlet=Korea Daily",
        "--set",
        "desk=night",
    ).output
    assert "changed organisation, beat, media_type, region, attributes" in out
    data = show(cli, "kim@example.com")
    assert (data["organisation"], data["beat"], data["media_type"], data["region"]) == (
        "Korea Daily",
        "politics",
        "print",
        "Philadelphia, PA",
    )
    assert data["attributes"] == {"desk": "night"}
    text = cli("contacts", "show", "kim@example.com").output
    assert "  beat:         politics\n" in text and "  region:       Philadelphia, PA\n" in text
    assert "role:" not in text  # an empty field is not shown
    found = json.loads(cli("contacts", "ls", "--where", "media_type = print", "--json").output)
    assert [c["email"] for c in found] == ["kim@example.com"]

    cli("contacts", "edit", "kim@example.com", "--unset", "beat", "--unset", "desk")
    data = show(cli, "kim@example.com")
    assert (data["beat"], data["attributes"]) == ("", {})
    bad = cli("contacts", "edit", "kim@example.com", "--set", "media_type=zine", expect=1).output
    assert bad.startswith("Error: media type 'zine': use print, tv, radio, online or ethnic")
    long = cli("contacts", "edit", "kim@example.com", "--set", "phone=" + "1" * 101, expect=1)
    assert "phone: at most 100 characters, got 101" in long.output


def test_an_attribute_named_like_a_field_stays_reachable(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "kim@example.com", "--list", "press")
    # A sheet's second "Beat" column is kept as the attribute "Beat" (mailer.imports.columns).
    contact(session, "kim@example.com").attributes = {"Beat": "night desk"}
    session.commit()
    cli("contacts", "edit", "kim@example.com", "--set", "Beat=day desk", "--set", "beat=sports")
    data = show(cli, "kim@example.com")
    assert (data["beat"], data["attributes"]) == ("sports", {"Beat": "day desk"})
    cli("contacts", "edit", "kim@example.com", "--unset", "Beat")
    assert show(cli, "kim@example.com")["attributes"] == {}


def test_ls_shows_a_press_column_only_when_someone_has_it(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "kim@example.com", "--list", "press", "--name", "김민수")
    cli("contacts", "add", "lee@example.com", "--list", "press", "--name", "Lee")
    plain = cli("contacts", "ls").output.splitlines()
    assert plain[0].split() == ["EMAIL", "NAME", "LANG", "ORGANISATION", "TAGS", "LISTS"]
    cli("contacts", "edit", "kim@example.com", "--set", "beat=정치", "--set", "phone=215-555-0101")
    lines = cli("contacts", "ls").output.splitlines()
    assert lines[0].split() == [
        "EMAIL",
        "NAME",
        "LANG",
        "ORGANISATION",
        "BEAT",
        "PHONE",
        "TAGS",
        "LISTS",
    ]
    kim = next(line for line in lines if line.startswith("kim@"))
    assert "정치" in kim and "215-555-0101" in kim
