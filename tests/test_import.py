"""`mailer contacts import`, through the CLI and the library, on every database engine."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mailer.contacts.contact import add_contact, unsubscribe
from mailer.contacts.lists import create_list
from mailer.contacts.suppressions import suppress
from mailer.errors import ImportFileError, MailerError
from mailer.imports.importer import import_contacts
from mailer.store.models import (
    Contact,
    ContactImport,
    Event,
    MailingList,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from tests.support.cli import Cli
from tests.support.imports import contact, status_on, tables, write_csv

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "lists" / "sample-press.csv"
REPORT_KEYS = [
    "import_id",
    "dry_run",
    "file",
    "sha256",
    "format",
    "encoding",
    "delimiter",
    "sheet",
    "list",
    "tags",
    "consent_source",
    "columns",
    "attribute_columns",
    "ignored_columns",
    "counts",
    "errors",
    "errors_file",
    "warnings",
    "warnings_total",
]
COUNT_KEYS = [
    "rows",
    "contacts_added",
    "contacts_updated",
    "subscribed",
    "pending_confirmed",
    "already_subscribed",
    "kept_unsubscribed",
    "invalid",
    "duplicates",
]


def run_import(cli: Cli, *args: str, expect: int = 0) -> dict[str, Any]:
    result = cli("contacts", "import", *args, "--json", expect=expect)
    return json.loads(result.stdout) if expect == 0 else {"output": result.output}


def check_invariant(counts: dict[str, int]) -> None:
    """Every row read ends in exactly one bucket."""
    assert (
        counts["rows"]
        == counts["invalid"]
        + counts["duplicates"]
        + counts["subscribed"]
        + counts["already_subscribed"]
        + counts["kept_unsubscribed"]
    ), counts


def test_acceptance_sample_press_list(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(
        cli,
        str(SAMPLE),
        "--list",
        "press",
        "--consent-source",
        "2024 media kit, reporters asked for releases",
    )
    assert list(report) == REPORT_KEYS
    assert list(report["counts"]) == COUNT_KEYS
    assert report["counts"]["rows"] == report["counts"]["contacts_added"] == 12
    assert report["counts"]["subscribed"] == 12 and report["counts"]["invalid"] == 0
    assert report["columns"] == {
        "email": "email",
        "name": "name",
        "organisation": "outlet",
        "language": "language",
        "beat": "beat",
    }
    assert report["attribute_columns"] == []
    assert (report["format"], report["encoding"], report["delimiter"]) == ("csv", "utf-8", ",")
    check_invariant(report["counts"])
    shown = json.loads(cli("contacts", "show", "minji.kim@seouldaily.example.com", "--json").output)
    assert (shown["name"], shown["organisation"], shown["language"]) == (
        "김민지",
        "서울데일리",
        "ko",
    )
    assert (shown["beat"], shown["attributes"]) == ("사회", {})
    assert shown["subscriptions"][0]["source"] == "import"
    assert shown["subscriptions"][0]["consent_form"] == f"import:{report['import_id']}"
    yuna = contact(session, "yuna.choi@kbn-radio.example.com")
    assert yuna.email_original == "Yuna.Choi@kbn-radio.example.com"
    sub = yuna.subscriptions[0]
    assert sub.consent_note == "2024 media kit, reporters asked for releases"
    assert sub.consent_at is not None
    imp = session.get(ContactImport, report["import_id"])
    assert imp is not None and imp.filename == str(SAMPLE)
    assert imp.sha256 == report["sha256"] and len(imp.sha256) == 64
    assert imp.report["counts"] == report["counts"]
    events = session.scalars(select(Event).where(Event.kind == "contact.import")).all()
    assert [e.data["import_id"] for e in events] == [report["import_id"]]
    session.rollback()
    # Importing the same file again changes nothing and says so.
    again = run_import(cli, str(SAMPLE), "--list", "press")
    assert again["counts"]["already_subscribed"] == 12
    assert again["counts"]["contacts_added"] == again["counts"]["contacts_updated"] == 0


def test_korean_members_file_in_cp949(cli: Cli, session: Session) -> None:
    cli("lists", "create", "members", "--name", "Members")
    report = run_import(cli, str(REPO / "lists" / "sample-members-cp949.csv"), "--list", "members")
    assert report["encoding"] == "cp949"
    assert report["columns"] == {
        "email": "이메일",
        "name": "이름",
        "organisation": "언론사",
        "language": "언어",
    }
    assert report["counts"]["contacts_added"] == 6
    assert contact(session, "sunhee.yoon@example.org").name == "윤선희"
    assert contact(session, "sunhee.yoon@example.org").attributes == {"비고": "2023 총회 참석"}


@pytest.mark.parametrize(
    "encoding, delimiter",
    [
        ("utf-8", ","),
        ("utf-8-sig", ";"),
        ("utf-16", "\t"),
        ("cp949", ","),
        ("cp1252", ";"),
    ],
)
def test_every_encoding_excel_writes(
    cli: Cli, session: Session, tmp_path: Path, encoding: str, delimiter: str
) -> None:
    name = "José Müller" if encoding == "cp1252" else "김민지"
    org = "Diário, Süd" if encoding == "cp1252" else "서울데일리, 사회부"
    path = write_csv(
        tmp_path / "list.csv",
        [
            ["E-mail Address", "Full Name", "Outlet"],
            ["Kim@Example.COM", name, org],
            ["lee@example.org", "Lee", ""],
        ],
        encoding,
        delimiter,
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press")
    assert report["delimiter"] == delimiter
    assert report["counts"]["contacts_added"] == 2
    kim = contact(session, "kim@example.com")
    assert (kim.name, kim.organisation, kim.email_original) == (name, org, "Kim@Example.COM")


def test_xlsx_with_korean_headers_and_sheet_choice(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    wb = Workbook()
    ws = wb.active
    ws.title = "안내"
    ws.append(["이 파일은 기자 명단입니다"])
    sheet = wb.create_sheet("기자")
    sheet.append(["이메일", "성", "이름", "소속", "언어", "전화"])
    sheet.append(["minji@example.com", "김", "민지", "서울데일리", "한국어", "+82 10 1234 5678"])
    sheet.append(["sarah@example.org", "Smith", "Sarah", "Valley Herald", "English", None])
    path = tmp_path / "press.xlsx"
    wb.save(path)
    cli("lists", "create", "press", "--name", "Press")
    before = tables(session)
    failed = run_import(cli, str(path), "--list", "press", expect=1)
    assert "no email column" in failed["output"] and "press.xlsx" in failed["output"]
    # The first sheet holds instructions: the message names the sheets and the one to pick.
    assert "of the sheet '안내'" in failed["output"]
    assert (
        "The workbook's sheets are '안내', '기자'; '기자' has one ('이메일'): use --sheet 기자"
        in " ".join(failed["output"].split())
    )
    missing = run_import(cli, str(path), "--list", "press", "--sheet", "Press", expect=1)
    assert "no sheet named 'Press' (the sheets are '안내', '기자')" in missing["output"]
    assert tables(session) == before
    report = run_import(cli, str(path), "--list", "press", "--sheet", "기자")
    assert (report["format"], report["sheet"], report["encoding"]) == ("xlsx", "기자", None)
    assert report["counts"]["contacts_added"] == 2
    minji = contact(session, "minji@example.com")
    assert (minji.name, minji.language, minji.phone, minji.attributes) == (
        "김민지",
        "ko",
        "+82 10 1234 5678",
        {},
    )
    assert contact(session, "sarah@example.org").name == "Sarah Smith"
    assert contact(session, "sarah@example.org").language == "en"


def test_embedded_newlines_and_tags(cli: Cli, session: Session, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "list.csv",
        [
            ["email", "name", "notes", "tags"],
            ["a@example.com", "A", "Met at the gala.\nPrefers phone calls.", "vip; gala"],
            ["b@example.com", "B", "", ""],
        ],
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press", "--tag", "2024-gala", "--tag", "vip")
    assert report["tags"] == ["2024-gala", "vip"]
    a = contact(session, "a@example.com")
    assert a.attributes == {"notes": "Met at the gala.\nPrefers phone calls."}
    assert sorted(t.tag for t in a.tags) == ["2024-gala", "gala", "vip"]
    assert sorted(t.tag for t in contact(session, "b@example.com").tags) == ["2024-gala", "vip"]
    session.rollback()
    bad = run_import(cli, str(path), "--list", "press", "--tag", "a,b", expect=1)
    assert "tag 'a,b'" in bad["output"]


def test_invalid_rows_are_reported_with_line_and_reason(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "list.csv",
        [
            ["Email", "Name", "Language", "Beat"],
            ["good@example.com", "Good", "en", "x"],
            ["not-an-address", "Bad One", "en", '=HYPERLINK("x")'],
            ["", "No Address", "", ""],
            ["lang@example.com", "Bad Lang", "Klingon!", ""],
            ["also.good@example.org", "Also\nGood", "ko", ""],
            ["x@exa mple.com", "Space", "", ""],
            ["long@example.com", "N" * 201, "", ""],
        ],
    )
    errors = tmp_path / "rejected.csv"
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press", "--errors", str(errors))
    c = report["counts"]
    assert (c["rows"], c["invalid"], c["contacts_added"]) == (7, 4, 3)
    check_invariant(c)
    assert [(e["line"], e["email"]) for e in report["errors"]] == [
        (3, "not-an-address"),
        (4, ""),
        (8, "x@exa mple.com"),
        (9, "long@example.com"),
    ]
    assert "not an email address: 'not-an-address'" in report["errors"][0]["reason"]
    assert report["errors"][1]["reason"] == "no email address"
    assert "name longer than 200 characters" in report["errors"][3]["reason"]
    # An unreadable language keeps the reporter, without a language, with a warning.
    assert [(w["line"], w["email"]) for w in report["warnings"]] == [(5, "lang@example.com")]
    assert "language 'Klingon!' not recognised" in report["warnings"][0]["message"]
    assert "imported with en" in report["warnings"][0]["message"]
    assert contact(session, "lang@example.com").language is None
    session.rollback()
    assert report["errors_file"] == str(errors)
    raw = errors.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel opens it as UTF-8
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0] == ["line", "reason", "Email", "Name", "Language", "Beat"]
    assert rows[1][0] == "3" and rows[1][2:] == [
        "not-an-address",
        "Bad One",
        "en",
        '\'=HYPERLINK("x")',
    ]
    assert len(rows) == 5
    assert contact(session, "also.good@example.org").name == "Also\nGood"


def test_text_report_and_no_progress_bar_off_a_terminal(cli: Cli, tmp_path: Path) -> None:
    cli("lists", "create", "press", "--name", "Press")
    result = cli("contacts", "import", str(SAMPLE), "--list", "press")
    assert "into 'press' as import 1" in result.output
    assert "contacts added                12" in result.output
    assert "Reading" not in result.output  # CliRunner's stderr is not a terminal


def test_progress_bar_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    """A real pseudo-terminal on stderr: the bar shows there, stdout stays clean JSON."""
    import os
    import pty
    import subprocess
    import sys

    cli("lists", "create", "press", "--name", "Press")
    path = write_csv(
        tmp_path / "list.csv", [["email"]] + [[f"p{i}@example.com"] for i in range(3000)]
    )
    master, slave = pty.openpty()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailer",
            "--config",
            str(cli.config),
            "contacts",
            "import",
            str(path),
            "--list",
            "press",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
        timeout=120,
        check=True,
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert b"Reading" in shown and b"100%" in shown
    assert json.loads(proc.stdout)["counts"]["contacts_added"] == 3000


def test_progress_callback_reaches_the_end(session: Session, tmp_path: Path) -> None:
    rows = [["email"]] + [[f"p{i}@example.com"] for i in range(2500)]
    path = write_csv(tmp_path / "list.csv", rows)
    create_list(session, "press", "Press")
    seen: list[tuple[int, int]] = []
    import_contacts(session, path, "press", progress=lambda d, t: seen.append((d, t)))
    assert len(seen) >= 3
    assert seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_duplicates_merge_into_the_first_row(cli: Cli, session: Session, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "list.csv",
        [
            ["email", "name", "outlet", "language", "beat", "desk", "tags"],
            ["Kim@Example.com", "Kim Minji", "", "ko", "politics", "", "a"],
            ["kim@example.com", "Someone Else", "Seoul Daily", "en", "culture", "night", "b"],
            ["KIM@EXAMPLE.COM", "", "", "", "", "", "a"],
            ["lee@example.com", "Lee", "", "", "", "", ""],
        ],
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press")
    c = report["counts"]
    assert (c["rows"], c["duplicates"], c["contacts_added"]) == (4, 2, 2)
    check_invariant(c)
    kim = contact(session, "kim@example.com")
    assert kim.email_original == "Kim@Example.com"  # the first spelling
    assert (kim.name, kim.organisation, kim.language) == ("Kim Minji", "Seoul Daily", "ko")
    assert (kim.beat, kim.attributes) == ("politics", {"desk": "night"})
    assert sorted(t.tag for t in kim.tags) == ["a", "b"]


def test_consent_is_never_overridden(cli: Cli, session: Session, tmp_path: Path) -> None:
    """Suppressed and unsubscribed addresses stay so, with or without --update-attributes."""
    create_list(session, "press", "Press")
    create_list(session, "other", "Other")
    add_contact(session, "gone@example.com", "press", name="Old Name")
    unsubscribe(session, "gone@example.com", "press")
    add_contact(session, "bounced@example.com", "other", name="Bounced")
    suppress(session, "bounced@example.com", SuppressionReason.HARD_BOUNCE, "test")
    suppress(session, "erased@example.com", SuppressionReason.ERASED, "erase")
    add_contact(session, "here@example.com", "press", name="Here")
    add_contact(session, "elsewhere@example.com", "other", name="Elsewhere")
    session.commit()
    path = write_csv(
        tmp_path / "list.csv",
        [
            ["email", "name", "beat"],
            ["Gone@example.com", "New Name", "x"],
            ["bounced@example.com", "Bounced Again", ""],
            ["erased@example.com", "Erased Person", "secret"],
            ["here@example.com", "", ""],
            ["elsewhere@example.com", "", ""],
            ["new@example.com", "New", ""],
        ],
    )
    for flags in ([], ["--update-attributes"]):
        report = run_import(cli, str(path), "--list", "press", *flags)
        c = report["counts"]
        assert c["kept_unsubscribed"] == 3, flags
        check_invariant(c)
        assert status_on(session, "gone@example.com", "press") == "unsubscribed"
        assert status_on(session, "bounced@example.com", "press") is None
        assert status_on(session, "bounced@example.com", "other") == "unsubscribed"
        # An erased person's details are not brought back by an import.
        assert session.scalar(select(Contact).where(Contact.email == "erased@example.com")) is None
        assert status_on(session, "elsewhere@example.com", "press") == "subscribed"
        session.rollback()
    # Only --update-attributes touched the details, and never the status.
    gone = contact(session, "gone@example.com")
    assert (gone.name, gone.beat, gone.attributes) == ("New Name", "x", {})
    assert status_on(session, "gone@example.com", "press") == "unsubscribed"


def test_update_attributes_rules(cli: Cli, session: Session, tmp_path: Path) -> None:
    create_list(session, "press", "Press")
    add_contact(
        session, "kim@example.com", "press", name="Kim", organisation="Old Paper", language="en"
    )
    kim = contact(session, "kim@example.com")
    kim.attributes = {"beat": "politics", "desk": "day"}
    kim.region, kim.role = "PA", "Reporter"
    session.commit()
    path = write_csv(
        tmp_path / "list.csv",
        [
            ["email", "name", "outlet", "language", "desk", "region", "title"],
            ["kim@example.com", "김민지", "", "ko", "night", "NJ", ""],
        ],
    )
    plain = run_import(cli, str(path), "--list", "press")
    assert plain["counts"]["contacts_updated"] == 0
    assert contact(session, "kim@example.com").name == "Kim"
    session.rollback()
    updated = run_import(cli, str(path), "--list", "press", "--update-attributes")
    assert updated["counts"]["contacts_updated"] == 1
    assert updated["counts"]["already_subscribed"] == 1
    kim = contact(session, "kim@example.com")
    # Non-empty cells replace, empty cells never erase, attributes merge.
    assert (kim.name, kim.organisation, kim.language) == ("김민지", "Old Paper", "ko")
    assert kim.attributes == {"beat": "politics", "desk": "night"}
    # Press fields alike: the region replaced, the empty title cell erased nothing.
    assert (kim.region, kim.role) == ("NJ", "Reporter")
    session.rollback()
    same = run_import(cli, str(path), "--list", "press", "--update-attributes")
    assert same["counts"]["contacts_updated"] == 0


def test_pending_subscription_becomes_subscribed_with_import_evidence(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    create_list(session, "press", "Press")
    _, sub = add_contact(session, "kim@example.com", "press")
    sub.status = SubscriptionStatus.PENDING
    sub.source, sub.consent_form, sub.consent_ip = "web", "subscribe-form", "192.0.2.7"
    session.commit()
    path = write_csv(tmp_path / "list.csv", [["email"], ["kim@example.com"]])
    report = run_import(cli, str(path), "--list", "press", "--consent-source", "signed up")
    assert report["counts"]["pending_confirmed"] == report["counts"]["subscribed"] == 1
    session.expire_all()
    now = session.get(Subscription, sub.id)
    assert now is not None
    assert SubscriptionStatus(now.status) == SubscriptionStatus.SUBSCRIBED
    assert (now.source, now.consent_form, now.consent_note) == (
        "import",
        f"import:{report['import_id']}",
        "signed up",
    )
    assert now.consent_ip == "192.0.2.7"  # the form's own evidence is kept


def test_dry_run_reports_the_same_and_changes_nothing(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    create_list(session, "press", "Press")
    add_contact(session, "minji.kim@seouldaily.example.com", "press")
    suppress(session, "david.lee@dvledger.example.net", SuppressionReason.MANUAL, "test")
    session.commit()
    before = tables(session)
    errors = tmp_path / "errors.csv"
    dry = run_import(
        cli, str(SAMPLE), "--list", "press", "--dry-run", "--tag", "x", "--errors", str(errors)
    )
    assert dry["dry_run"] is True and dry["import_id"] is None
    assert tables(session) == before
    assert errors.exists()
    real = run_import(cli, str(SAMPLE), "--list", "press", "--tag", "x")
    assert real["counts"] == dry["counts"]
    assert real["counts"]["already_subscribed"] == real["counts"]["kept_unsubscribed"] == 1
    assert real["counts"]["contacts_updated"] == 1  # the tag on the known contact
    text_out = cli("contacts", "import", str(SAMPLE), "--list", "press", "--dry-run").output
    assert "nothing was changed" in text_out


@pytest.mark.parametrize(
    "content, args, message",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", [], "binary data"),
        (b"", [], "the file is empty"),
        (b"Name,Outlet\nKim,Daily\n", [], "no email column in the header row"),
        (b"email,name\na@example.com,A\n", ["--map", "fax=name"], "unknown --map field 'fax'"),
        (b"email,name\na@example.com,A\n", ["--map", "name=Nobody"], "no column 'Nobody'"),
        (b"email,name\na@example.com,A\n", ["--map", "name"], "expected FIELD=COLUMN"),
        (b"email,name\n", [], "no data rows below the header (line 1)"),
        (b"email,name\na@example.com,A\n", ["--sheet", "x"], "--sheet applies to XLSX"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    cli: Cli, session: Session, tmp_path: Path, content: bytes, args: list[str], message: str
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(content)
    cli("lists", "create", "press", "--name", "Press")
    before = tables(session)
    errors = tmp_path / "errors.csv"
    result = cli(
        "contacts", "import", str(path), "--list", "press", "--errors", str(errors), *args, expect=1
    )
    assert result.output.startswith("Error: "), result.output
    assert message in result.output
    assert "Traceback" not in result.output
    if "FIELD=COLUMN" not in message:
        assert "contacts.csv" in result.output
    assert tables(session) == before
    assert not errors.exists()


def test_unknown_list_and_missing_file(cli: Cli, tmp_path: Path) -> None:
    result = cli("contacts", "import", str(SAMPLE), "--list", "nope", expect=1)
    assert "no list named 'nope'" in result.output
    result = cli("contacts", "import", str(tmp_path / "gone.csv"), "--list", "nope", expect=1)
    assert "gone.csv: cannot read" in result.output


def test_map_and_first_last_names(cli: Cli, session: Session, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "outlook.csv",
        [
            ["First Name", "Last Name", "E-mail Address", "Company", "Contact"],
            ["Sarah", "O'Connor", "sarah@example.com", "Valley Herald", "backup@example.com"],
            ["민지", "김", "minji@example.com", "서울데일리", ""],
        ],
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press")
    assert report["columns"] == {
        "first_name": "First Name",
        "last_name": "Last Name",
        "email": "E-mail Address",
        "organisation": "Company",
    }
    assert contact(session, "sarah@example.com").name == "Sarah O'Connor"
    assert contact(session, "minji@example.com").name == "김민지"
    assert contact(session, "sarah@example.com").attributes == {"Contact": "backup@example.com"}
    session.rollback()
    cli("lists", "create", "backup", "--name", "Backup")
    mapped = run_import(
        cli,
        str(path),
        "--list",
        "backup",
        "--map",
        "email=Contact",
        "--map",
        "organisation=Last Name",
    )
    c = mapped["counts"]
    assert (c["rows"], c["invalid"], c["contacts_added"]) == (2, 1, 1)  # Lee's Contact is empty
    assert mapped["errors"][0]["line"] == 3
    assert contact(session, "backup@example.com").organisation == "O'Connor"


Refuse = Callable[[str, str, str], None]


@pytest.fixture
def refusing_trigger(session: Session, engine_name: str) -> Iterator[Refuse]:
    """A trigger that makes the database refuse one row, as a real failure mid-import."""
    created: list[str] = []

    def install(table: str, column: str, value: str) -> None:
        name = f"refuse_{table}"
        if engine_name == "sqlite":
            session.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN NEW.{column} = '{value}' "
                    f"BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
                )
            )
        else:
            session.execute(
                text(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.{column} = '{value}' THEN "
                    f"RAISE EXCEPTION 'refused by the test trigger'; END IF; RETURN NEW; END $$"
                )
            )
            session.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION {name}()"
                )
            )
        session.commit()
        created.append(name)

    yield install
    session.rollback()
    for name in created:
        if engine_name == "sqlite":
            session.execute(text(f"DROP TRIGGER IF EXISTS {name}"))
        else:
            table = name.removeprefix("refuse_")
            session.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
            session.execute(text(f"DROP FUNCTION IF EXISTS {name}()"))
    session.commit()


@pytest.mark.parametrize(
    "table, column, value",
    [
        ("contact", "email", "p1500@example.com"),  # the second chunk of new contacts
        ("contact_tag", "tag", "late"),  # the very last statement of the import
    ],
)
def test_failure_in_the_middle_leaves_the_database_unchanged(
    cli: Cli,
    session: Session,
    tmp_path: Path,
    refusing_trigger: Refuse,
    table: str,
    column: str,
    value: str,
) -> None:
    create_list(session, "press", "Press")
    add_contact(session, "known@example.com", "press", name="Known")
    _, pending = add_contact(session, "pending@example.com", "press")
    pending.status = SubscriptionStatus.PENDING
    session.commit()
    refusing_trigger(table, column, value)
    rows = [
        ["email", "name", "tags"],
        ["known@example.com", "Renamed", "early"],
        ["pending@example.com", "", ""],
    ]
    rows += [[f"p{i}@example.com", f"Person {i}", ""] for i in range(2500)]
    rows += [["last@example.com", "Last", "late"]]
    path = write_csv(tmp_path / "big.csv", rows)
    before = tables(session)
    result = cli(
        "contacts", "import", str(path), "--list", "press", "--update-attributes", expect=1
    )
    assert "the database refused the import, nothing was imported" in result.output
    assert "refused by the test trigger" in result.output
    assert tables(session) == before
    assert contact(session, "known@example.com").name == "Known"
    assert status_on(session, "pending@example.com", "press") == "pending"
    session.rollback()


def test_library_failure_keeps_the_callers_earlier_work(
    session: Session, tmp_path: Path, refusing_trigger: Refuse
) -> None:
    refusing_trigger("contact", "email", "b@example.com")
    create_list(session, "press", "Press")
    path = write_csv(tmp_path / "list.csv", [["email"], ["a@example.com"], ["b@example.com"]])
    with pytest.raises(MailerError, match="nothing was imported"):
        import_contacts(session, path, "press")
    session.commit()  # the import's SAVEPOINT is gone; the list created before it remains
    assert tables(session)["contact"] == 0
    assert session.scalar(select(MailingList.slug)) == "press"


def test_library_errors_are_mailer_errors(session: Session, tmp_path: Path) -> None:
    create_list(session, "press", "Press")
    path = tmp_path / "x.csv"
    path.write_text("Name\nKim\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=r"x\.csv:1: no email column"):
        import_contacts(session, path, "press")


def test_large_import_counts(session: Session, tmp_path: Path) -> None:
    rows = [["email", "name"]] + [[f"user{i}@example{i % 7}.com", f"User {i}"] for i in range(3000)]
    rows += [["USER5@EXAMPLE5.COM", "dup"], ["bad", "x"]]
    path = write_csv(tmp_path / "list.csv", rows)
    create_list(session, "press", "Press")
    add_contact(session, "user7@example0.com", "press")
    session.commit()
    report = import_contacts(session, path, "press", tags=["bulk"])
    session.commit()
    c = report.counts
    assert (
        c["rows"],
        c["contacts_added"],
        c["already_subscribed"],
        c["duplicates"],
        c["invalid"],
        c["contacts_updated"],
    ) == (3002, 2999, 1, 1, 1, 1)
    check_invariant(c)
    assert tables(session)["contact_tag"] == 3000
    assert tables(session)["subscription"] == 3000


def test_outlook_addresses_keep_the_reporter_and_the_name(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "outlook.csv",
        [
            ["email", "name", "language"],
            ["박민수 <MSPark@radiokorea.com>", "", "한국어"],
            ['"Park, Minsu" <minsu.park@example.com>', "", "KR"],
            ["lee@example.org (이지은)", "", "일본어"],
            ["Named In Cell <named@example.org>", "Cell Name", "English"],
            ["bare@example.org", "", "中文"],
            ["Broken <not an address>", "", ""],
        ],
    )
    cli("lists", "create", "press", "--name", "Press")
    report = run_import(cli, str(path), "--list", "press")
    assert (report["counts"]["contacts_added"], report["counts"]["invalid"]) == (5, 1)
    assert report["warnings"] == [] and report["errors"][0]["line"] == 7
    got = {
        e: (
            contact(session, e).name,
            contact(session, e).language,
            contact(session, e).email_original,
        )
        for e in (
            "mspark@radiokorea.com",
            "minsu.park@example.com",
            "lee@example.org",
            "named@example.org",
            "bare@example.org",
        )
    }
    assert got == {
        "mspark@radiokorea.com": ("박민수", "ko", "MSPark@radiokorea.com"),
        "minsu.park@example.com": ("Park, Minsu", "ko", "minsu.park@example.com"),
        "lee@example.org": ("이지은", "ja", "lee@example.org"),
        "named@example.org": ("Cell Name", "en", "named@example.org"),  # the column wins
        "bare@example.org": ("", "zh", "bare@example.org"),
    }


@pytest.mark.parametrize(
    "cell, language",
    [
        ("일본어", "ja"),
        ("Korean", "ko"),
        ("한국어", "ko"),
        ("KR", "ko"),
        ("English", "en"),
        ("영어", "en"),
        ("中文", "zh"),
        ("Spanish", "es"),
        ("스페인어", "es"),
        ("ko", "ko"),
        ("pt-BR", "pt-BR"),
        ("Vietnamese", "vi"),
        ("타갈로그어", "tl"),
    ],
)
def test_language_names_are_read(
    session: Session, tmp_path: Path, cell: str, language: str
) -> None:
    create_list(session, "press", "Press")
    path = write_csv(tmp_path / "l.csv", [["email", "언어"], ["a@example.com", cell]])
    report = import_contacts(session, path, "press", default_language="en")
    assert report.warnings == [] and report.counts["invalid"] == 0
    assert contact(session, "a@example.com").language == language


def test_unknown_language_is_a_warning_in_the_text_report(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "l.csv", [["email", "language"], ["a@example.com", "Klingon"]])
    cli("lists", "create", "press", "--name", "Press")
    result = cli("contacts", "import", str(path), "--list", "press")
    assert "WARNING line 2: language 'Klingon' not recognised" in result.output
    assert "contacts added                 1" in result.output


def test_contacts_add_reads_a_language_name(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "a@example.com", "--list", "press", "--lang", "한국어")
    assert contact(session, "a@example.com").language == "ko"
