"""`mailer contacts export`: Excel-friendly CSV that the importer reads back as is."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session

from mailer.contacts.contact import add_contact, contact_as_dict, iter_contacts, unsubscribe
from mailer.contacts.lists import create_list
from mailer.contacts.suppressions import suppress
from mailer.csvsafe import neutralise, restore
from mailer.imports.export import attribute_header, export_contacts
from mailer.store.models import Contact, ContactTag, SuppressionReason
from tests.support.cli import Cli
from tests.support.imports import contact, write_csv

TRICKY = [
    ["email", "name", "outlet", "language", "tags", "phone", "note", "이름", "=cmd"],
    [
        "-dash@example.com",
        '=HYPERLINK("http://evil.example","x")',
        "+Plus Daily",
        "ko",
        "vip, press",
        "+82 10 1234 5678",
        "@mention",
        "김민지",
        "a",
    ],
    ["kim@example.com", "'=already quoted", "\tTabbed", "en", "", "-5", "line1\nline2", "", "b"],
    ["plain@example.org", "Plain Person", "Daily", "", "", "", "'just an apostrophe", "", ""],
]


def parse(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), data[:10]
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def snapshot(session: Session) -> list[dict[str, Any]]:
    """Every contact as data, minus what an import cannot carry (times, list names)."""
    out = []
    for c, _ in iter_contacts(session):
        d = contact_as_dict(session, c)
        for key in ("created_at", "updated_at", "subscriptions"):
            d.pop(key)
        out.append(d)
    session.rollback()
    return out


def test_round_trip_keeps_every_value(cli: Cli, session: Session, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "source.csv", TRICKY)
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "import", str(source), "--list", "press")
    first = snapshot(session)
    assert contact(session, "-dash@example.com").name.startswith("=HYPERLINK")
    session.rollback()
    exported = tmp_path / "export.csv"
    result = cli("contacts", "export", "--list", "press", "-o", str(exported))
    assert "3 contact(s) exported" in result.output
    rows = parse(exported.read_bytes())
    assert rows[0] == [
        "email",
        "name",
        "organisation",
        "language",
        "tags",
        "phone",
        "note",
        "attribute:이름",
        "'=cmd",
        "mailer:subscriptions",
        "mailer:suppressed",
    ]
    # Into an empty database: everything comes back exactly.
    cli("lists", "rm", "press", "--yes")
    for model in (ContactTag, Contact):
        session.execute(delete(model))
    session.commit()
    cli("lists", "create", "press", "--name", "Press")
    report = json.loads(
        cli("contacts", "import", str(exported), "--list", "press", "--json").stdout
    )
    assert report["counts"]["contacts_added"] == 3 and report["counts"]["invalid"] == 0
    assert report["ignored_columns"] == ["mailer:subscriptions", "mailer:suppressed"]
    assert snapshot(session) == first
    again = tmp_path / "again.csv"
    cli("contacts", "export", "--list", "press", "-o", str(again))
    assert again.read_bytes() == exported.read_bytes()


def test_formula_cells_are_neutralised(cli: Cli, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "source.csv", TRICKY)
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "import", str(source), "--list", "press")
    rows = parse(cli("contacts", "export").stdout_bytes)
    header, body = rows[0], rows[1:]
    for row in [header, *body]:
        for cell in row:
            # Only plain numbers and phone numbers may start with + or - (mailer.csvsafe).
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or re.fullmatch(
                r"[0-9 ()+\-.]+", cell
            ), (row, cell)
    by_email = {r[0]: dict(zip(header, r, strict=True)) for r in body}
    dash = by_email["'-dash@example.com"]
    assert dash["name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert (dash["organisation"], dash["phone"], dash["note"]) == (
        "'+Plus Daily",
        "+82 10 1234 5678",
        "'@mention",
    )
    assert header[8] == "'=cmd"
    kim = by_email["kim@example.com"]
    # (the importer strips the surrounding whitespace of "\tTabbed")
    assert (kim["name"], kim["organisation"], kim["phone"]) == ("''=already quoted", "Tabbed", "-5")
    plain = by_email["plain@example.org"]
    assert plain["note"] == "'just an apostrophe"  # not a formula: left alone


def test_tab_and_carriage_return_cells_round_trip(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    create_list(session, "press", "Press")
    kim, _ = add_contact(session, "kim@example.com", "press")
    kim.attributes = {"tab": "\tx", "cr": "\ry", "both": "'\tz"}
    session.commit()
    exported = tmp_path / "out.csv"
    cli("contacts", "export", "-o", str(exported))
    rows = parse(exported.read_bytes())
    assert dict(zip(rows[0], rows[1], strict=True))["tab"] == "'\tx"
    assert dict(zip(rows[0], rows[1], strict=True))["cr"] == "'\ry"
    assert dict(zip(rows[0], rows[1], strict=True))["both"] == "''\tz"
    session.execute(delete(Contact))
    session.commit()
    cli("contacts", "import", str(exported), "--list", "press")
    assert contact(session, "kim@example.com").attributes == {
        "tab": "\tx",
        "cr": "\ry",
        "both": "'\tz",
    }


def test_a_users_own_quote_prefix_is_kept(cli: Cli, session: Session, tmp_path: Path) -> None:
    """Outside a mailer export, '=x is what the user typed: the importer keeps it."""
    path = write_csv(tmp_path / "mine.csv", [["email", "name"], ["a@example.com", "'=x"]])
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "import", str(path), "--list", "press")
    assert contact(session, "a@example.com").name == "'=x"


def test_filters_columns_and_status(cli: Cli, session: Session, tmp_path: Path) -> None:
    create_list(session, "press", "Press")
    create_list(session, "news", "News")
    add_contact(session, "a@example.com", "press", name="A")
    add_contact(session, "a@example.com", "news")
    add_contact(session, "b@example.com", "press", name="B")
    unsubscribe(session, "b@example.com", "press")
    add_contact(session, "c@example.com", "news", name="C")
    suppress(session, "c@example.com", SuppressionReason.COMPLAINT, "fbl")
    session.commit()
    everyone = parse(cli("contacts", "export").stdout_bytes)
    assert [r[0] for r in everyone[1:]] == ["a@example.com", "b@example.com", "c@example.com"]
    assert everyone[1][-2:] == ["news:subscribed; press:subscribed", ""]
    assert everyone[3][-2:] == ["news:unsubscribed", "complaint"]
    press = parse(cli("contacts", "export", "--list", "press").stdout_bytes)
    assert [r[0] for r in press[1:]] == ["a@example.com", "b@example.com"]
    gone = parse(
        cli("contacts", "export", "--list", "press", "--status", "unsubscribed").stdout_bytes
    )
    assert [r[0] for r in gone[1:]] == ["b@example.com"]
    any_unsub = parse(cli("contacts", "export", "--status", "unsubscribed").stdout_bytes)
    assert [r[0] for r in any_unsub[1:]] == ["b@example.com", "c@example.com"]
    assert cli("contacts", "export", "--list", "nope", expect=1).output.startswith("Error: ")


def test_export_of_nothing_is_a_header(cli: Cli) -> None:
    rows = parse(cli("contacts", "export").stdout_bytes)
    assert rows == [
        [
            "email",
            "name",
            "organisation",
            "language",
            "tags",
            "mailer:subscriptions",
            "mailer:suppressed",
        ]
    ]


def test_failed_export_leaves_no_half_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "missing-folder" / "out.csv"
    result = cli("contacts", "export", "-o", str(target), expect=1)
    assert "out.csv: cannot write the export" in result.output
    assert not target.parent.exists()
    target = tmp_path / "out.csv"
    assert (
        "no list named 'nope'"
        in cli("contacts", "export", "--list", "nope", "-o", str(target), expect=1).output
    )
    assert list(tmp_path.iterdir()) == [tmp_path / "mailer.toml"] or not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_library_export_to_a_stream(session: Session) -> None:
    create_list(session, "press", "Press")
    add_contact(session, "a@example.com", "press", name="김민지")
    out = io.BytesIO()
    assert export_contacts(session, out, "press") == 1
    assert parse(out.getvalue())[1][:2] == ["a@example.com", "김민지"]


def test_attribute_headers_the_importer_would_misread_are_prefixed() -> None:
    assert attribute_header("Beat") == "Beat"
    assert attribute_header("E-mail") == "attribute:E-mail"
    assert attribute_header("이름") == "attribute:이름"
    assert attribute_header("mailer:x") == "attribute:mailer:x"
    assert attribute_header("attribute:y") == "attribute:attribute:y"


@pytest.mark.parametrize(
    "value, written",
    [
        ("+1 215-555-0101", "+1 215-555-0101"),  # a phone number: not a formula, left alone
        ("(02) 123-4567", "(02) 123-4567"),
        ("-12.50", "-12.50"),  # a negative amount
        ("+82 10 1234 5678", "+82 10 1234 5678"),
        ("=1+2", "'=1+2"),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-", "'-"),  # no digit: not a number
        ("'+1 215-555-0101", "''+1 215-555-0101"),  # already quoted by the user: kept reversible
    ],
)
def test_the_formula_guard_leaves_numbers_alone(value: str, written: str) -> None:
    assert neutralise(value) == written
    assert restore(neutralise(value)) == value
