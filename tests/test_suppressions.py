"""`mailer suppressions ls | add | rm | import`: the global do-not-mail list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.contacts.suppressions import (
    add_suppression,
    import_suppressions,
    list_suppressions,
    remove_suppression,
    suppress,
)
from mailer.errors import ImportFileError, InvalidInputError, NotFoundError
from mailer.store.models import Event, Suppression, SuppressionReason
from tests.support.cli import Cli
from tests.support.imports import status_on, tables, write_csv


def test_add_ls_rm_through_the_cli(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "Kim@Example.com", "--list", "press")
    out = cli("suppressions", "add", "KIM@example.COM", "--reason", "complaint").output
    assert "kim@example.com: suppressed (complaint)" in out
    assert status_on(session, "kim@example.com", "press") == "unsubscribed"
    session.rollback()
    again = cli("suppressions", "add", "kim@example.com").output
    assert "already suppressed (complaint since" in again
    cli("suppressions", "add", "stranger@example.org")
    rows = json.loads(cli("suppressions", "ls", "--json").output)
    assert sorted(r["email"] for r in rows) == ["kim@example.com", "stranger@example.org"]
    assert {r["email"]: r["reason"] for r in rows} == {
        "kim@example.com": "complaint",
        "stranger@example.org": "manual",
    }
    assert list(rows[0]) == ["email", "reason", "source", "created_at"]
    only = json.loads(cli("suppressions", "ls", "--reason", "complaint", "--json").output)
    assert [r["email"] for r in only] == ["kim@example.com"]
    assert "stranger@example.org" in cli("suppressions", "ls").output
    cli("suppressions", "rm", "kim@example.com", input="n\n", expect=1)
    out = cli("suppressions", "rm", "Kim@example.com", "--yes").output
    assert "no longer suppressed" in out
    # Lifting the suppression does not re-subscribe: only the person can opt in again.
    assert status_on(session, "kim@example.com", "press") == "unsubscribed"
    session.rollback()
    missing = cli("suppressions", "rm", "kim@example.com", "--yes", expect=1)
    assert "kim@example.com is not on the suppression list" in missing.output
    bad = cli("suppressions", "add", "not an address", expect=1)
    assert "not an email address" in bad.output


def test_library_functions(session: Session) -> None:
    sup, new = add_suppression(session, "A@Example.com", "hard-bounce", "test")
    assert (sup.email, new) == ("a@example.com", True)
    with pytest.raises(InvalidInputError, match="unknown suppression reason 'nope'"):
        add_suppression(session, "b@example.com", "nope")
    assert [s.email for s in list_suppressions(session, "hard-bounce")] == ["a@example.com"]
    remove_suppression(session, "a@example.com")
    with pytest.raises(NotFoundError):
        remove_suppression(session, "a@example.com")
    kinds = [e.kind for e in session.scalars(select(Event).order_by(Event.id))]
    assert kinds == ["suppress", "unsuppress"]


def test_import_another_tools_unsubscribes(cli: Cli, session: Session, tmp_path: Path) -> None:
    create_list(session, "press", "Press")
    add_contact(session, "kim@example.com", "press")
    add_contact(session, "lee@example.com", "press")
    suppress(session, "old@example.com", SuppressionReason.MANUAL, "earlier")
    suppress(session, "erased@example.com", SuppressionReason.ERASED, "erase")
    session.commit()
    path = write_csv(
        tmp_path / "mailchimp-unsubscribed.csv",
        [
            ["Email Address", "First Name", "UNSUB_TIME"],
            ["KIM@example.com", "Kim", "2024-01-02"],
            ["old@example.com", "", ""],
            ["erased@example.com", "", ""],
            ["new@example.org", "", ""],
            ["kim@EXAMPLE.com", "", ""],
            ["broken", "", ""],
        ],
        encoding="utf-8-sig",
    )
    before = tables(session)
    dry = json.loads(
        cli(
            "suppressions", "import", str(path), "--dry-run", "--reason", "complaint", "--json"
        ).output
    )
    assert dry["dry_run"] is True
    assert tables(session) == before
    report = json.loads(
        cli("suppressions", "import", str(path), "--reason", "complaint", "--json").output
    )
    assert report["counts"] == dry["counts"]
    assert report["counts"] == {
        "rows": 6,
        "added": 2,
        "already_suppressed": 2,
        "reason_upgraded": 1,
        "subscriptions_ended": 1,
        "invalid": 1,
        "duplicates": 1,
    }
    assert report["errors"][0]["line"] == 7
    reasons = {
        s.email: SuppressionReason(s.reason).value for s in session.scalars(select(Suppression))
    }
    assert reasons == {
        "kim@example.com": "complaint",
        "new@example.org": "complaint",
        "old@example.com": "complaint",
        "erased@example.com": "erased",
    }
    assert status_on(session, "kim@example.com", "press") == "unsubscribed"
    assert status_on(session, "lee@example.com", "press") == "subscribed"
    session.rollback()
    # An import cannot bring them back.
    contacts = write_csv(
        tmp_path / "contacts.csv", [["email"], ["kim@example.com"], ["new@example.org"]]
    )
    result = json.loads(
        cli("contacts", "import", str(contacts), "--list", "press", "--json").stdout
    )
    assert result["counts"]["kept_unsubscribed"] == 2


def test_import_a_bare_list_and_xlsx(cli: Cli, session: Session, tmp_path: Path) -> None:
    bare = tmp_path / "bounces.txt"
    bare.write_text("a@example.com\nb@example.com\n", encoding="utf-8")
    out = cli("suppressions", "import", str(bare), "--reason", "hard-bounce").output
    assert "2 address(es) suppressed (hard-bounce)" in out
    wb = Workbook()
    wb.active.append(["이메일", "사유"])
    wb.active.append(["c@example.com", "수신거부"])
    wb.save(tmp_path / "수신거부.xlsx")
    cli("suppressions", "import", str(tmp_path / "수신거부.xlsx"))
    rows = {
        s.email: (SuppressionReason(s.reason).value, s.source)
        for s in session.scalars(select(Suppression))
    }
    assert rows == {
        "a@example.com": ("hard-bounce", "import bounces.txt"),
        "b@example.com": ("hard-bounce", "import bounces.txt"),
        "c@example.com": ("unsubscribe-all", "import 수신거부.xlsx"),
    }


def test_bad_suppression_files(cli: Cli, session: Session, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Name\nKim\n", encoding="utf-8")
    before = tables(session)
    result = cli("suppressions", "import", str(path), expect=1)
    assert "x.csv:1: no email column" in result.output
    path.write_bytes(b"")
    assert "the file is empty" in cli("suppressions", "import", str(path), expect=1).output
    assert tables(session) == before
    with pytest.raises(ImportFileError):
        import_suppressions(session, path)


def test_every_check_matches_the_mailbox_in_one_query(session: Session) -> None:
    from sqlalchemy import event

    from mailer.contacts.suppressions import get_suppression, is_suppressed

    suppress(session, "kimlee@gmail.com", SuppressionReason.UNSUBSCRIBE_ALL, source="test")
    suppress(session, "kim.lee+x@googlemail.com", SuppressionReason.COMPLAINT, source="test")
    session.flush()
    rows = {s.email: s.mailbox for s in session.scalars(select(Suppression))}
    assert set(rows.values()) == {"kimlee@gmail.com"}
    seen: list[str] = []

    def count(*args: object) -> None:
        seen.append(str(args[2]))

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        sup = get_suppression(session, "K.I.M.L.E.E+news@gmail.com")
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(seen) == 1 and "mailbox" in seen[0]
    # Of two rows for one mailbox, the one the person cannot lift wins.
    assert sup is not None and sup.reason == SuppressionReason.COMPLAINT
    assert is_suppressed(session, "kimlee+whatever@gmail.com")
    assert not is_suppressed(session, "kimlee@example.org")
    # Lifting takes the whole mailbox, or a variant left behind would still match.
    remove_suppression(session, "kimlee@gmail.com")
    assert not is_suppressed(session, "kim.lee@gmail.com")


def test_imported_suppressions_get_their_mailbox(
    cli: Cli, session: Session, tmp_path: Path
) -> None:
    path = tmp_path / "unsubs.csv"
    path.write_text("email\nAnn.Lee+promo@Gmail.com\n", encoding="utf-8")
    cli("suppressions", "import", str(path))
    session.rollback()
    (sup,) = session.scalars(select(Suppression))
    assert sup.mailbox == "annlee@gmail.com"
    from mailer.contacts.suppressions import is_suppressed

    assert is_suppressed(session, "annlee@googlemail.com")
