"""Press fields through `contacts import` and `contacts export`: media types, limits, round trip."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.contacts.press import PRESS_FIELDS
from mailer.store.models import Contact
from tests.support.cli import Cli
from tests.support.imports import contact, write_csv


def run_import(cli: Cli, *args: str) -> dict[str, Any]:
    return dict(json.loads(cli("contacts", "import", *args, "--json").stdout))


def test_media_types_are_read_in_english_and_korean_and_unknown_ones_kept(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "기자.csv",
        [
            ["이메일", "이름", "매체"],
            ["a@example.com", "A", "신문"],
            ["b@example.com", "B", "T.V."],
            ["c@example.com", "C", "Ethnic media"],
            ["d@example.com", "D", "팟캐스트"],
            ["e@example.com", "E", "라디오"],
            ["f@example.com", "F", ""],
        ],
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press")
    assert report["columns"]["media_type"] == "매체"
    assert report["counts"]["contacts_added"] == 6 and report["counts"]["invalid"] == 0
    kinds = {e: contact(session, f"{e}@example.com").media_type for e in "abcdef"}
    assert kinds == {"a": "print", "b": "tv", "c": "ethnic", "d": "팟캐스트", "e": "radio", "f": ""}
    # An unknown media type keeps the reporter and the text, and the report says where.
    [warning] = report["warnings"]
    assert warning["line"] == 5 and warning["email"] == "d@example.com"
    assert "column '매체': media type '팟캐스트' not recognised" in warning["message"]
    assert "imported as written" in warning["message"]
    session.rollback()
    shown = cli("contacts", "import", str(path), "--list", "press").output
    assert "WARNING line 5: column '매체': media type '팟캐스트' not recognised" in shown


def test_a_press_field_too_long_rejects_the_row_naming_the_column(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "press.csv",
        [
            ["email", "Beat", "Phone"],
            ["a@example.com", "x" * 201, ""],
            ["b@example.com", "politics", "1" * 101],
            ["c@example.com", "x" * 200, "1" * 100],
        ],
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press")
    assert report["counts"]["invalid"] == 2
    assert [(e["line"], e["reason"]) for e in report["errors"]] == [
        (2, "beat (column 'Beat') longer than 200 characters"),
        (3, "phone (column 'Phone') longer than 100 characters"),
    ]
    kept = contact(session, "c@example.com")
    assert (len(kept.beat), len(kept.phone)) == (200, 100)


def test_map_reads_a_press_field_from_any_column(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "list.csv",
        [["email", "Desk", "Covers"], ["a@example.com", "night", "Bucks County"]],
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(
        cli, str(path), "--list", "press", "--map", "beat=Desk", "--map", "region=Covers"
    )
    assert report["columns"] == {"beat": "Desk", "region": "Covers", "email": "email"}
    a = contact(session, "a@example.com")
    assert (a.beat, a.region, a.attributes) == ("night", "Bucks County", {})


def parse(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_export_writes_the_press_fields_and_reads_them_back(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    create_list(session, "press", "Press")
    kim, _ = add_contact(session, "kim@example.com", "press", organisation="Korea Daily")
    kim.beat, kim.media_type, kim.phone = "정치", "print", "+1 215-555-0101"
    # A sheet's second Beat column, and a value 0007 left in attributes (not a string).
    kim.attributes = {"Beat": "night desk", "beat": 7, "트위터": "@kim"}
    lee, _ = add_contact(session, "lee@example.com", "press")
    lee.region = "PA"
    session.commit()
    exported = tmp_path / "press.csv"
    cli("contacts", "export", "-o", str(exported))
    rows = parse(exported.read_bytes())
    header = list(rows[0])
    # Press fields some contact has, in their order, before the attributes; none left empty.
    assert header[:9] == [
        "email",
        "name",
        "organisation",
        "language",
        "tags",
        "beat",
        "media_type",
        "region",
        "phone",
    ]
    assert header[9:] == [
        "Beat",
        "attribute:beat",
        "트위터",
        "mailer:subscriptions",
        "mailer:suppressed",
    ]
    assert rows[0]["beat"] == "정치" and rows[0]["phone"] == "+1 215-555-0101"
    assert rows[1]["region"] == "PA" and rows[1]["beat"] == ""

    before = {c: _details(session, c) for c in ("kim@example.com", "lee@example.com")}
    session.rollback()
    # Into an empty database: everything comes back.
    cli("lists", "rm", "press", "--yes")
    session.execute(delete(Contact))
    session.commit()
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(exported), "--list", "press")
    assert report["counts"]["contacts_added"] == 2 and not report["warnings"]
    # Back exactly, but for the number: a CSV cell is text.
    before["kim@example.com"]["attributes"]["beat"] = "7"
    assert {c: _details(session, c) for c in before} == before


def _details(session: Session, email: str) -> dict[str, Any]:
    c = contact(session, email)
    return {
        "organisation": c.organisation,
        **{f: getattr(c, f) for f in PRESS_FIELDS},
        "attributes": dict(c.attributes),
    }


def test_update_attributes_sets_press_fields_and_empty_cells_erase_nothing(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    create_list(session, "press", "Press")
    kim, _ = add_contact(session, "kim@example.com", "press")
    kim.beat, kim.role, kim.media_type = "sports", "Reporter", "tv"
    session.commit()
    path = write_csv(
        tmp_path / "list.csv",
        [["email", "분야", "직함", "매체"], ["kim@example.com", "정치", "", "신문"]],
    )
    plain = run_import(cli, str(path), "--list", "press")
    assert plain["counts"]["contacts_updated"] == 0
    assert contact(session, "kim@example.com").beat == "sports"
    session.rollback()
    updated = run_import(cli, str(path), "--list", "press", "--update-attributes")
    assert updated["counts"]["contacts_updated"] == 1
    kim = contact(session, "kim@example.com")
    assert (kim.beat, kim.role, kim.media_type) == ("정치", "Reporter", "print")
