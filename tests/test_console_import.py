"""The console's import and export (/admin/import, /admin/export) on every database engine.

Each import here is compared with `mailer contacts import` of the same file: the console must
write exactly what the command line writes, and report the same counts.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from openpyxl import Workbook
from sqlalchemy import delete, select
from werkzeug.test import TestResponse

from mailer import clock
from mailer.config import Settings
from mailer.contacts.contact import add_contact, unsubscribe
from mailer.contacts.lists import create_list
from mailer.contacts.suppressions import suppress
from mailer.imports import columns, staged
from mailer.store.db import session_scope
from mailer.store.models import (
    Contact,
    ContactImport,
    ContactTag,
    Event,
    MailingList,
    StaffRole,
    StaffUser,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.console import Console, csrf_of
from tests.support.imports import tables, write_csv

pytestmark = pytest.mark.db

ADMIN = "admin@staff.example.org"
KOREAN_ROWS = [
    ["이메일", "이름", "언론사", "언어", "분야"],
    ["minji.kim@seouldaily.example.com", "김민지", "서울데일리", "한국어", "사회"],
    ["Known@Example.org", "박서연", "한강타임스", "ko", "정치"],
    ["left@example.org", "이은지", "코리안위클리", "ko", ""],
    ["not-an-address", "정하늘", "", "", ""],
    ["blocked@example.org", "강도윤", "", "en", ""],
    ["minji.kim@seouldaily.example.com", "", "", "", "문화"],
    ["sarah@valleyherald.example.org", "Sarah Smith", "Valley Herald", "English", "local"],
]


# --- helpers ----------------------------------------------------------------------------------


def seed(settings: Settings) -> None:
    """The same starting point for the console's import and the CLI's: a list, a subscribed
    contact, one who unsubscribed from the list and one on the suppression list."""
    with session_scope(settings) as s:
        if s.scalar(select(MailingList).where(MailingList.slug == "press")) is None:
            create_list(s, "press", "Press 기자단")
        add_contact(s, "known@example.org", "press", name="Known")
        add_contact(s, "left@example.org", "press", name="Left")
        unsubscribe(s, "left@example.org", "press")
        suppress(s, "blocked@example.org", SuppressionReason.MANUAL, "test")


def wipe(settings: Settings) -> None:
    """Every contact, subscription, suppression, import and event gone (accounts and lists kept)."""
    with session_scope(settings) as s:
        for model in (Event, ContactTag, Subscription, Contact, Suppression, ContactImport):
            s.execute(delete(model))


def snapshot(settings: Settings, slug: str = "press") -> dict[str, Any]:
    """What an import leaves, by address: contact fields, tags and the list's subscription."""
    out: dict[str, Any] = {}
    with session_scope(settings) as s:
        for c in s.scalars(select(Contact).order_by(Contact.email)):
            subs = {
                sub.mailing_list.slug: (
                    SubscriptionStatus(sub.status).value,
                    sub.source,
                    sub.consent_note,
                    re.sub(r"\d+", "N", sub.consent_form or ""),
                )
                for sub in c.subscriptions
            }
            out[c.email] = {
                "original": c.email_original,
                "name": c.name,
                "organisation": c.organisation,
                "language": c.language,
                "attributes": c.attributes,
                "tags": sorted(t.tag for t in c.tags),
                "subscription": subs.get(slug),
            }
        out["suppressed"] = sorted(s.scalars(select(Suppression.email)))
    return out


def admin(console: Console, email: str = ADMIN) -> FlaskClient:
    return console.signed_in(StaffRole.ADMIN, email)


def upload(
    console: Console,
    client: FlaskClient,
    path: Path,
    *,
    consent: str = "Reporters who asked for our releases",
    **fields: str,
) -> TestResponse:
    page = client.get("/admin/import")
    data: dict[str, Any] = {
        "csrf": csrf_of(page.text),
        "list": "press",
        "consent_source": consent,
        **fields,
        "file": (io.BytesIO(path.read_bytes()), path.name),
    }
    return client.post("/admin/import", data=data, content_type="multipart/form-data")


def upload_id(response: TestResponse) -> str:
    assert response.status_code == 303, response.text
    found = re.search(r"/admin/import/([A-Za-z0-9_-]{24})$", response.location)
    assert found, response.location
    return found.group(1)


def choices_on(page: str) -> dict[str, str]:
    """The mapping form's selected value of every column select."""
    out: dict[str, str] = {}
    for name, body in re.findall(
        r'<select id="(col-\d+)" name="col-\d+">(.*?)</select>', page, re.S
    ):
        chosen = re.search(r'<option value="([^"]+)" selected>', body)
        assert chosen, name
        out[name] = chosen.group(1)
    return out


def check(
    console: Console, client: FlaskClient, uid: str, changes: dict[str, str] | None = None
) -> TestResponse:
    """Post the mapping form as shown (with `changes`), wait for the dry run, return its page."""
    page = client.get(f"/admin/import/{uid}")
    assert page.status_code == 200, page.text
    data = {
        "csrf": csrf_of(page.text),
        "list": "press",
        "consent_source": "Reporters who asked for our releases",
        **choices_on(page.text),
        **(changes or {}),
    }
    started = client.post(f"/admin/import/{uid}/check", data=data)
    assert started.status_code == 303, started.text
    staged.wait(uid)
    return client.get(f"/admin/import/{uid}")


def apply(console: Console, client: FlaskClient, uid: str) -> TestResponse:
    page = client.get(f"/admin/import/{uid}")
    started = client.post(
        f"/admin/import/{uid}/apply", data={"csrf": csrf_of(page.text), "confirm": "1"}
    )
    assert started.status_code == 303, started.text
    staged.wait(uid)
    return client.get(f"/admin/import/{uid}")


def counts_on(page: str) -> dict[str, int]:
    """The report's counts as the page shows them (pending_confirmed only when not 0, as the
    CLI prints them)."""
    found = {
        key: int(value.replace(",", ""))
        for key, value in re.findall(r'<td class="num" id="count-(\w+)">([\d,]+)</td>', page)
    }
    found.setdefault("pending_confirmed", 0)
    return found


def cli_report(cli: Cli, path: Path, *args: str) -> dict[str, Any]:
    result = cli(
        "contacts",
        "import",
        str(path),
        "--list",
        "press",
        "--consent-source",
        "Reporters who asked for our releases",
        "--json",
        *args,
    )
    report: dict[str, Any] = json.loads(result.stdout)
    return report


# --- the import -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp949", "utf-16", "utf-16-le"])
def test_korean_file_imports_as_the_cli_does(
    console: Console, cli: Cli, settings: Settings, tmp_path: Path, encoding: str
) -> None:
    path = write_csv(tmp_path / "기자명단.csv", KOREAN_ROWS, encoding)
    seed(settings)
    expected_report = cli_report(cli, path)
    expected = snapshot(settings)
    wipe(settings)
    seed(settings)

    client = admin(console)
    uid = upload_id(upload(console, client, path))
    mapping = client.get(f"/admin/import/{uid}")
    assert choices_on(mapping.text) == {
        "col-0": "email",
        "col-1": "name",
        "col-2": "organisation",
        "col-3": "language",
        # 분야 is a beat: a field of its own where the importer has one, else an attribute.
        "col-4": "beat" if "beat" in columns.FIELDS else "attribute",
    }
    assert "김민지" in mapping.text  # the first values, decoded

    before = tables_now(settings)
    dry = check(console, client, uid)
    assert tables_now(settings) == before, "the dry run wrote something"
    counts = counts_on(dry.text)
    assert counts == expected_report["counts"]
    assert f"(CSV, {expected_report['encoding']})" in dry.text
    assert counts["kept_unsubscribed"] == 2 and counts["invalid"] == 1
    assert counts["duplicates"] == 1
    # Examples of each outcome, with lines: the duplicate names the row it was merged into.
    assert "sarah@valleyherald.example.org" in dry.text  # added
    assert re.search(r"<td class=\"num\">7</td><td>minji.kim@seouldaily.example.com</td>", dry.text)
    assert "line 2" in dry.text
    assert "left@example.org" in dry.text and "blocked@example.org" in dry.text  # kept
    assert "Nothing has been changed yet" in dry.text

    done = apply(console, client, uid)
    assert done.status_code == 200 and "Import done" in done.text
    assert counts_on(done.text) == expected_report["counts"]
    assert snapshot(settings) == expected
    with session_scope(settings) as s:
        event = s.scalars(select(Event).where(Event.kind == "contact.import")).one()
        assert event.actor == f"user:{ADMIN}"
        imp = s.scalars(select(ContactImport)).one()
        assert imp.filename == "기자명단.csv"
        assert imp.consent_source == "Reporters who asked for our releases"
        assert imp.report["counts"] == expected_report["counts"]
    assert snapshot(settings)["left@example.org"]["subscription"][0] == "unsubscribed"
    assert "blocked@example.org" not in snapshot(settings)
    # Imported: the upload itself is gone at once; a second import of it is refused.
    folder = staged.root(settings) / uid
    assert not any(p.name.startswith("upload") for p in folder.iterdir())
    page = client.get(f"/admin/import/{uid}")
    again = client.post(
        f"/admin/import/{uid}/apply", data={"csrf": csrf_of(page.text), "confirm": "1"}
    )
    assert again.status_code == 422 and "imported already" in again.text
    assert counts_on(client.get(f"/admin/import/{uid}").text) == expected_report["counts"]


def tables_now(settings: Settings) -> dict[str, int]:
    with session_scope(settings) as s:
        return tables(s)


def test_mapping_change_is_honoured(
    console: Console, cli: Cli, settings: Settings, tmp_path: Path
) -> None:
    rows = [
        ["Contact", "Work mail", "Outlet name", "Desk", "Notes"],
        ["Kim Minji", "minji@example.com", "Seoul Daily", "politics", "met at the forum"],
        ["Sarah Smith", "sarah@example.org", "Valley Herald", "local", ""],
    ]
    path = write_csv(tmp_path / "odd-headers.csv", rows)
    seed(settings)
    cli_report(
        cli,
        path,
        "--map",
        "email=Work mail",
        "--map",
        "organisation=Outlet name",
        "--map",
        "name=Contact",
    )
    expected = snapshot(settings)
    # Leaving a column out has no --map: the CLI keeps "Notes"; the console was told not to.
    for entry in expected.values():
        if isinstance(entry, dict):
            entry["attributes"] = {k: v for k, v in entry["attributes"].items() if k != "Notes"}
    wipe(settings)
    seed(settings)

    client = admin(console)
    uid = upload_id(upload(console, client, path))
    page = client.get(f"/admin/import/{uid}").text
    assert "no email column" in page and "odd-headers.csv" in page
    assert str(staged.root(settings)) not in page  # the file is named as its user knows it
    assert choices_on(page) == {f"col-{i}": "attribute" for i in range(5)}
    dry = check(
        console,
        client,
        uid,
        {"col-0": "name", "col-1": "email", "col-2": "organisation", "col-4": "skip"},
    )
    assert counts_on(dry.text)["contacts_added"] == 2
    apply(console, client, uid)
    assert snapshot(settings) == expected
    assert snapshot(settings)["minji@example.com"]["attributes"] == {"Desk": "politics"}


def test_a_bad_mapping_is_refused_with_the_column_named(
    console: Console, settings: Settings, tmp_path: Path
) -> None:
    seed(settings)
    path = write_csv(
        tmp_path / "list.csv", [["Email", "Name", "Other"], ["a@example.org", "A", "x"]]
    )
    client = admin(console)
    uid = upload_id(upload(console, client, path))
    page = client.get(f"/admin/import/{uid}")
    data = {
        "csrf": csrf_of(page.text),
        "list": "press",
        "consent_source": "met them",
        "col-0": "email",
        "col-1": "name",
        "col-2": "name",
    }
    refused = client.post(f"/admin/import/{uid}/check", data=data)
    assert refused.status_code == 422
    assert "&#39;Name&#39; and &#39;Other&#39; are both chosen for name" in refused.text
    no_email = client.post(
        f"/admin/import/{uid}/check", data={**data, "col-0": "skip", "col-2": "attribute"}
    )
    assert no_email.status_code == 422 and "no column is chosen for email" in no_email.text
    forged = client.post(f"/admin/import/{uid}/check", data={**data, "col-2": "password_hash"})
    assert forged.status_code == 422 and "unknown choice" in forged.text
    assert staged.load(settings, uid, console.users[ADMIN]).state().status == staged.UPLOADED
    assert tables_now(settings)["contact"] == 2


def test_rejected_rows_download_through_csvsafe(
    console: Console, settings: Settings, tmp_path: Path
) -> None:
    seed(settings)
    rows = [
        ["Email", "Name"],
        ["ok@example.org", "OK"],
        ['=HYPERLINK("http://evil.example")', "Formula"],
        ["also not an address", "<script>alert(1)</script>"],
    ]
    path = write_csv(tmp_path / "with errors.csv", rows)
    client = admin(console)
    uid = upload_id(upload(console, client, path))
    dry = check(console, client, uid)
    assert counts_on(dry.text)["invalid"] == 2
    assert "<script>alert(1)" not in dry.text
    assert re.search(
        r'<td class="num">4</td><td>[^<]*not[^<]*</td><td>also not an address</td>', dry.text
    )
    download = client.get(f"/admin/import/{uid}/rejected.csv")
    assert download.status_code == 200
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert "with errors-rejected.csv" in download.headers["Content-Disposition"]
    assert download.headers["Cache-Control"] == "no-store"
    got = list(csv.reader(io.StringIO(download.data.decode("utf-8-sig"))))
    assert got[0] == ["line", "reason", "Email", "Name"]
    assert [r[0] for r in got[1:]] == ["3", "4"]
    assert got[1][2] == '\'=HYPERLINK("http://evil.example")'  # neutralised: cannot run
    assert got[2][3] == "<script>alert(1)</script>"
    assert stat.S_IMODE(os.stat(staged.root(settings) / uid / "rejected.csv").st_mode) == 0o600


def test_script_in_a_header_or_cell_is_escaped(
    console: Console, settings: Settings, tmp_path: Path
) -> None:
    seed(settings)
    rows = [
        ["Email", "<script>alert('h')</script>"],
        ["x@example.org", "<img src=x onerror=alert(1)>"],
    ]
    client = admin(console)
    uid = upload_id(upload(console, client, write_csv(tmp_path / "x.csv", rows)))
    page = client.get(f"/admin/import/{uid}").text
    assert "<script>alert('h')" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    dry = check(console, client, uid)
    assert "<script>alert('h')" not in dry.text


def test_xlsx_sheet_choice(console: Console, settings: Settings, tmp_path: Path) -> None:
    seed(settings)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "안내"
    ws.append(["이 파일은 기자 명단입니다"])
    sheet = wb.create_sheet("기자")
    sheet.append(["이메일", "성", "이름", "소속"])
    sheet.append(["minji@example.com", "김", "민지", "서울데일리"])
    path = tmp_path / "press.xlsx"
    wb.save(path)
    client = admin(console)
    uid = upload_id(upload(console, client, path))
    page = client.get(f"/admin/import/{uid}")
    assert "no email column" in page.text and '<option value="기자">' in page.text
    switched = client.post(
        f"/admin/import/{uid}/check",
        data={
            "csrf": csrf_of(page.text),
            "list": "press",
            "consent_source": "media kit",
            "sheet": "기자",
            "col-0": "attribute",
        },
    )
    assert switched.status_code == 303
    page = client.get(f"/admin/import/{uid}")
    assert choices_on(page.text) == {
        "col-0": "email",
        "col-1": "last_name",
        "col-2": "first_name",
        "col-3": "organisation",
    }
    check(console, client, uid)
    apply(console, client, uid)
    assert snapshot(settings)["minji@example.com"]["name"] == "김민지"


def test_unreadable_upload_is_refused_with_the_reason(
    console: Console, settings: Settings, tmp_path: Path
) -> None:
    seed(settings)
    client = admin(console)
    old_excel = tmp_path / "old.xls"
    old_excel.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600)
    refused = upload(console, client, old_excel)
    assert refused.status_code == 422
    assert "old.xls: an old Excel .xls workbook" in refused.text
    assert list(staged.root(settings).iterdir()) == []  # nothing kept
    missing = upload(
        console, client, write_csv(tmp_path / "a.csv", [["Email"], ["a@b.org"]]), consent=""
    )
    assert missing.status_code == 422 and "consent source" in missing.text
    unknown = upload(console, client, tmp_path / "a.csv", list="nope")
    assert unknown.status_code == 422 and "There is no list &#39;nope&#39;" in unknown.text


def test_file_over_the_limit_gets_413_page(settings: Settings, tmp_path: Path) -> None:
    small = dataclasses.replace(settings, console_max_upload_bytes=4000)
    console = Console(create_app(small), small)
    seed(settings)
    client = admin(console)
    rows = [["Email"]] + [[f"reader{i}@example.org"] for i in range(400)]
    response = upload(console, client, write_csv(tmp_path / "big.csv", rows))
    assert response.status_code == 413
    assert "That file is too large" in response.text
    assert "Choose a smaller file" in response.text
    assert not staged.root(small).exists() or list(staged.root(small).iterdir()) == []
    fine = upload(console, client, write_csv(tmp_path / "small.csv", rows[:10]))
    assert fine.status_code == 303


def test_uploads_are_private_and_bound_to_their_user(
    console: Console, settings: Settings, tmp_path: Path
) -> None:
    seed(settings)
    owner = admin(console)
    path = write_csv(tmp_path / "list.csv", [["Email"], ["a@example.org"]])
    uid = upload_id(upload(console, owner, path))
    folder = staged.root(settings) / uid
    assert stat.S_IMODE(os.stat(staged.root(settings)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    for entry in folder.iterdir():
        assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600, entry

    other = admin(console, "other-admin@staff.example.org")
    csrf = csrf_of(other.get("/admin/import").text)
    for forged in (uid, "A" * 24, uid[:-1] + ("B" if uid[-1] != "B" else "C"), "..%2F..%2Fetc"):
        assert other.get(f"/admin/import/{forged}").status_code == 404, forged
        assert other.get(f"/admin/import/{forged}/progress").status_code == 404
        assert other.get(f"/admin/import/{forged}/rejected.csv").status_code == 404
        for step in ("check", "apply", "discard"):
            posted = other.post(
                f"/admin/import/{forged}/{step}", data={"csrf": csrf, "confirm": "1"}
            )
            assert posted.status_code == 404, (forged, step)
    assert folder.is_dir()
    assert owner.get(f"/admin/import/{uid}").status_code == 200


def test_old_uploads_are_swept(console: Console, settings: Settings, tmp_path: Path) -> None:
    seed(settings)
    client = admin(console)
    uid = upload_id(
        upload(console, client, write_csv(tmp_path / "l.csv", [["Email"], ["a@b.org"]]))
    )
    assert staged.sweep(settings) == 0
    later = clock.now() + timedelta(hours=staged.KEEP_HOURS, minutes=1)
    with clock.pinned(later):
        assert staged.sweep(settings) == 1
    assert not (staged.root(settings) / uid).exists()
    assert client.get(f"/admin/import/{uid}").status_code == 404


def test_progress_fragment_polls_then_asks_for_the_page(
    console: Console, settings: Settings, tmp_path: Path
) -> None:
    seed(settings)
    client = admin(console)
    uid = upload_id(
        upload(console, client, write_csv(tmp_path / "l.csv", [["Email"], ["a@b.org"]]))
    )
    item = staged.load(settings, uid, console.users[ADMIN])
    # A step as it looks while it runs (state written by the thread): the fragment polls.
    item.save_state(
        staged.State(status=staged.CHECKING, phase=staged.READING, done=3, total=4, pid=-1)
    )
    assert item.state().status == staged.INTERRUPTED  # no thread runs it
    page = client.get(f"/admin/import/{uid}")
    assert "The server stopped during this step" in page.text
    check(console, client, uid)
    over = client.get(f"/admin/import/{uid}/progress", headers={"HX-Request": "true"})
    assert over.headers.get("HX-Refresh") == "true"
    plain = client.get(f"/admin/import/{uid}/progress")
    assert plain.status_code == 303 and plain.location.endswith(f"/admin/import/{uid}")


def test_progress_page_while_running(console: Console, settings: Settings, tmp_path: Path) -> None:
    """The page of a running step: a progress bar, polling with htmx, and a plain link."""
    seed(settings)
    client = admin(console)
    uid = upload_id(
        upload(console, client, write_csv(tmp_path / "l.csv", [["Email"], ["a@b.org"]]))
    )
    item = staged.load(settings, uid, console.users[ADMIN])
    running = staged.State(
        status=staged.APPLYING, phase=staged.READING, done=1, total=4, pid=os.getppid()
    )
    item.save_state(running)  # as if another server process ran it
    page = client.get(f"/admin/import/{uid}")
    assert 'hx-trigger="every 1s"' in page.text and 'value="25"' in page.text
    assert f'href="/admin/import/{uid}"' in page.text
    assert 'http-equiv="refresh"' not in page.text
    part = client.get(f"/admin/import/{uid}/progress", headers={"HX-Request": "true"})
    assert part.status_code == 200 and part.text.lstrip().startswith('<div id="import-progress"')


def test_non_admin_is_refused(console: Console, settings: Settings, tmp_path: Path) -> None:
    seed(settings)
    owner = admin(console)
    uid = upload_id(upload(console, owner, write_csv(tmp_path / "l.csv", [["Email"], ["a@b.org"]])))
    editor = console.signed_in(StaffRole.EDITOR)
    csrf = csrf_of(editor.get("/admin/account").text)
    for path in (
        "/admin/import",
        f"/admin/import/{uid}",
        f"/admin/import/{uid}/progress",
        f"/admin/import/{uid}/rejected.csv",
        "/admin/export",
        "/admin/export/contacts.csv",
    ):
        assert editor.get(path).status_code == 403, path
    posted = editor.post(
        "/admin/import",
        data={
            "csrf": csrf,
            "list": "press",
            "consent_source": "x",
            "file": (io.BytesIO(b"Email\na@b.org\n"), "l.csv"),
        },
        content_type="multipart/form-data",
    )
    assert posted.status_code == 403
    for step in ("check", "apply", "discard"):
        assert editor.post(f"/admin/import/{uid}/{step}", data={"csrf": csrf}).status_code == 403
    assert console.client().get("/admin/import").status_code == 303  # signed out: to sign-in


def test_discard_removes_the_upload(console: Console, settings: Settings, tmp_path: Path) -> None:
    seed(settings)
    client = admin(console)
    uid = upload_id(
        upload(console, client, write_csv(tmp_path / "l.csv", [["Email"], ["a@b.org"]]))
    )
    page = client.get(f"/admin/import/{uid}")
    gone = client.post(f"/admin/import/{uid}/discard", data={"csrf": csrf_of(page.text)})
    assert gone.status_code == 303
    assert not (staged.root(settings) / uid).exists()


# --- export -----------------------------------------------------------------------------------


def test_export_is_the_cli_export(
    console: Console, cli: Cli, settings: Settings, tmp_path: Path
) -> None:
    seed(settings)
    path = write_csv(tmp_path / "k.csv", KOREAN_ROWS)
    cli_report(cli, path)
    with session_scope(settings) as s:
        create_list(s, "other", "Other")
        add_contact(s, "elsewhere@example.org", "other", name="=1+2")
    client = admin(console)
    for query, args in (
        ("", []),
        ("?list=press", ["--list", "press"]),
        (
            "?list=press&status=subscribed&where=language+%3D+ko",
            ["--list", "press", "--status", "subscribed", "--where", "language = ko"],
        ),
    ):
        got = client.get(f"/admin/export/contacts.csv{query}")
        assert got.status_code == 200, got.text
        assert got.headers["Content-Disposition"].startswith("attachment")
        assert got.headers["Cache-Control"] == "no-store"
        out = tmp_path / "cli-export.csv"
        cli("contacts", "export", "-o", str(out), *args)
        assert got.data == out.read_bytes(), query
    assert "'=1+2" in client.get("/admin/export/contacts.csv").data.decode("utf-8-sig")
    bad = client.get("/admin/export/contacts.csv?where=language+%3D%3D%3D")
    assert bad.status_code == 422 and "alert-error" in bad.text
    unknown = client.get("/admin/export/contacts.csv?list=nope")
    assert unknown.status_code == 422
    with session_scope(settings) as s:
        events = s.scalars(select(Event).where(Event.kind == "contact.export")).all()
        assert len(events) == 4 and all(e.actor == f"user:{ADMIN}" for e in events)
    form = client.get("/admin/export")
    assert form.status_code == 200 and 'action="/admin/export/contacts.csv"' in form.text


def test_a_large_file_uploads_and_options_are_the_cli_options(
    console: Console, cli: Cli, settings: Settings, tmp_path: Path
) -> None:
    """A file far over the body limit of other requests (werkzeug reads 64 KiB at a time),
    with tags and --update-attributes, against the CLI with the same options."""
    rows = [["Email", "Name", "Outlet"], ["known@example.org", "Known Again", "Seoul Daily"]]
    rows += [[f"reader{i}@outlet{i % 40}.example.org", f"독자 {i}", "한강"] for i in range(4000)]
    path = write_csv(tmp_path / "big.csv", rows)
    assert path.stat().st_size > 3 * settings.web_max_body_bytes
    seed(settings)
    expected_report = cli_report(
        cli, path, "--tag", "press", "--tag", "2024 expo", "--update-attributes"
    )
    expected = snapshot(settings)
    wipe(settings)
    seed(settings)
    client = admin(console)
    uid = upload_id(upload(console, client, path, tags="press, 2024 expo", update_attributes="1"))
    dry = check(console, client, uid, {"tags": "press, 2024 expo", "update_attributes": "1"})
    assert counts_on(dry.text) == expected_report["counts"]
    done = apply(console, client, uid)
    assert counts_on(done.text) == expected_report["counts"]
    assert snapshot(settings) == expected
    assert expected["known@example.org"]["name"] == "Known Again"
    assert expected["known@example.org"]["tags"] == ["2024 expo", "press"]


def test_pages_in_korean(console: Console, settings: Settings, tmp_path: Path) -> None:
    seed(settings)
    client = admin(console)
    with session_scope(settings) as s:
        s.get(StaffUser, console.users[ADMIN]).language = "ko"  # type: ignore[union-attr]
    assert "연락처 가져오기" in client.get("/admin/import").text
    uid = upload_id(upload(console, client, write_csv(tmp_path / "l.csv", KOREAN_ROWS)))
    assert "열 확인" in client.get(f"/admin/import/{uid}").text
    dry = check(console, client, uid)
    assert "시험 실행" in dry.text and "수신 거부 유지" in dry.text
    assert "연락처 내보내기" in client.get("/admin/export").text


def test_an_import_interrupted_after_its_commit_shows_as_done(
    console: Console, settings: Settings, tmp_path: Path
) -> None:
    """The server stopped between the import's commit and its state's write: the import row in
    the database settles it (and one stopped before its commit is not taken for done)."""
    seed(settings)
    client = admin(console)
    uid = upload_id(upload(console, client, write_csv(tmp_path / "l.csv", KOREAN_ROWS)))
    check(console, client, uid)
    item = staged.load(settings, uid, console.users[ADMIN])
    checked = item.state()
    started = clock.now().isoformat()
    stopped = staged.State(status=staged.APPLYING, started=started, pid=-1, report=checked.report)
    item.save_state(stopped)
    page = client.get(f"/admin/import/{uid}")
    assert "The server stopped during this step" in page.text  # nothing in the database
    item.save_state(checked)
    apply(console, client, uid)
    item.save_state(stopped)
    done = client.get(f"/admin/import/{uid}")
    assert "Import done" in done.text
    assert item.state().status == staged.APPLIED
