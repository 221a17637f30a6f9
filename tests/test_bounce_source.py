"""The report message behind each bounce (bounce_source): kept as read from the mailbox by
`bounces process`, cut at `bounce_raw_max_bytes`, nothing on a dry run, deleted by `contacts
erase`, shown as escaped text on the console's bounce page; migration 0015 up and down."""

from __future__ import annotations

import dataclasses
import mailbox
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import lxml.html
import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, delete, func, inspect, select, text, update
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces.policy import RunReport, process_mailbox
from mailer.bounces.sources import open_source
from mailer.config import Settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.store.db import session_scope
from mailer.store.models import Bounce, BounceReview, BounceSource, StaffUser
from mailer.store.schema import alembic_config, current_revision, upgrade
from tests.bounce_corpus import world
from tests.support.bounces import arf, dsn, mail
from tests.support.cli import Cli
from tests.support.console import XSS, Console, inline_code, unescaped
from tests.support.database import PG_URL

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
KIM, LEE, PARK = "kim@news.example.kr", "lee@daily.example.com", "park@weekly.example.com"


@pytest.fixture
def people(session: Session) -> world.World:
    create_list(session, "press-en", "Press (English)")
    campaign = world.make_campaign(session)
    contacts, deliveries = {}, {}
    for n, email in enumerate([KIM, LEE, PARK], 1):
        contact, _ = add_contact(session, email, "press-en")
        contacts[email] = contact
        deliveries[email] = world.add_delivery(session, campaign, contact, world.message_id(n))
    session.commit()
    return world.World(campaign, contacts, deliveries)


def two_recipients(first: str, second: str, about: str) -> bytes:
    """One RFC 3464 report about two recipients of one message (a row each)."""
    return f"""From: MAILER-DAEMON@mx.example.net
To: bounces@hanul.example.org
Subject: Undelivered Mail Returned to Sender
Message-Id: <two.{uuid.uuid4().hex[:8]}@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Neither {first} nor {second} exists.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {first}
Action: failed
Status: 5.1.1

Final-Recipient: rfc822; {second}
Action: failed
Status: 5.1.1

--B
Content-Type: text/rfc822-headers

From: press@hanul.example.org
Message-ID: {about}

--B--
""".encode()


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    """An mboxrd file: each message (ending in a newline) after its From line, ">From " quoted,
    then the blank line that ends it."""
    out = b"".join(
        b"From MAILER-DAEMON Mon Mar  3 09:10:00 2025\n"
        + re.sub(rb"(?m)^(>*From )", rb">\1", raw)
        + b"\n"
        for raw in messages
    )
    path.write_bytes(out)
    return path


def process(
    session: Session, settings: Settings, path: Path, *, dry_run: bool = False
) -> RunReport:
    with clock.pinned(NOW), open_source(str(path)) as box:
        report = process_mailbox(session, settings, box, dry_run=dry_run, workers=1)
    session.commit()
    return report


def sources(session: Session) -> dict[str, BounceSource]:
    """Each kept report by its bounce row's report id."""
    return {
        sid: src
        for sid, src in session.execute(
            select(Bounce.source_message_id, BounceSource).join(
                BounceSource, BounceSource.bounce_id == Bounce.id
            )
        )
    }


def report_id(raw: bytes) -> str:
    for line in raw.decode().splitlines():
        if line.lower().startswith("message-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Message-ID")


# -- what is kept ------------------------------------------------------------------------------


def test_each_report_of_an_mbox_is_kept_as_received(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    proven = dsn(KIM, about=world.message_id(1)).replace(
        b"The mail system\n", b"The mail system\nFrom here on: mboxrd quotes this line.\n"
    )
    held = dsn(LEE)  # nothing proves it: recorded and held for review
    complaint = arf(PARK, about=world.message_id(3))
    away = mail("Automatic reply: out of office", "I am away.", sender=LEE)
    inputs = [proven, held, complaint, away]
    mbox = write_mbox(tmp_path / "in.mbox", inputs)
    assert b"\n>From here on" in mbox.read_bytes()  # the file holds it quoted
    report = process(session, settings, mbox)
    assert [i.outcome for i in report.items] == ["hard", "hard", "complaint", "autoreply"]
    assert report.items[1].action.startswith("held for review ")
    kept = sources(session)
    # Kept: what suppressed, was held or complained. The auto-reply changed nothing: its row
    # says all there is, and its message is not kept.
    acted = [proven, held, complaint]
    assert set(kept) == {report_id(raw) for raw in acted}
    for raw in acted:
        src = kept[report_id(raw)]
        # The message as written, unquoted; an mbox also ends each message with one blank line.
        assert src.raw == raw + b"\n" and src.truncated is False
    review = session.scalars(select(BounceReview)).one()
    assert kept[report_id(held)].bounce_id == review.bounce_id


def test_a_maildir_report_is_kept_byte_for_byte(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    raw = dsn(KIM, about=world.message_id(1)).replace(b"\n", b"\r\n") + b"\xff\xfe not UTF-8\r\n"
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(raw)
    process(session, settings, tmp_path / "Maildir")
    assert [s.raw for s in sources(session).values()] == [raw]


def test_a_report_about_two_recipients_is_kept_for_each_row(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    raw = two_recipients(KIM, LEE, world.message_id(1))
    process(session, settings, write_mbox(tmp_path / "in.mbox", [raw]))
    kept = sources(session)
    assert sorted(kept) == sorted(f"{report_id(raw)} {e}" for e in (KIM, LEE))
    assert {s.raw for s in kept.values()} == {raw + b"\n"}


def test_reports_are_cut_at_the_setting_with_the_flag(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    short = dsn(KIM, about=world.message_id(1))
    long = dsn(LEE, about=world.message_id(2), diagnostic="smtp; 550 5.1.1 " + "x" * 3000)
    limit = len(short) + 1  # the short one with its mbox blank line fits exactly
    cut = dataclasses.replace(settings, bounce_raw_max_bytes=limit)
    process(session, cut, write_mbox(tmp_path / "in.mbox", [short, long]))
    kept = sources(session)
    assert (kept[report_id(short)].raw, kept[report_id(short)].truncated) == (short + b"\n", False)
    assert kept[report_id(long)].raw == long[:limit] and kept[report_id(long)].truncated is True


def test_a_dry_run_keeps_nothing(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    mbox = write_mbox(tmp_path / "in.mbox", [dsn(KIM, about=world.message_id(1)), dsn(LEE)])
    report = process(session, settings, mbox, dry_run=True)
    assert [i.outcome for i in report.items] == ["hard", "hard"]
    assert session.scalar(select(func.count()).select_from(BounceSource)) == 0
    assert session.scalar(select(func.count()).select_from(Bounce)) == 0
    process(session, settings, mbox)  # the same mailbox for real: both kept
    assert session.scalar(select(func.count()).select_from(BounceSource)) == 2


def test_erase_deletes_the_reports_about_the_address(
    cli: Cli, session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    alone = dsn(KIM, about=world.message_id(1))
    shared = two_recipients(KIM, PARK, world.message_id(3))
    other = dsn(LEE, about=world.message_id(2))
    process(session, settings, write_mbox(tmp_path / "in.mbox", [alone, shared, other]))
    assert len(sources(session)) == 4
    session.rollback()  # SQLite: release the lock before the command writes
    cli("contacts", "erase", KIM, "--yes")
    kept = sources(session)
    # Kim's report, and the one about Kim and Park (it names Kim too, on Park's row as well).
    assert list(kept) == [report_id(other)]
    assert KIM.encode() not in b"".join(s.raw for s in kept.values())
    assert session.scalar(select(func.count()).select_from(Bounce)) == 4  # rows stay, scrubbed


def test_a_deleted_bounce_takes_its_report_with_it(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    process(session, settings, write_mbox(tmp_path / "in.mbox", [dsn(LEE)]))
    assert session.scalar(select(func.count()).select_from(BounceSource)) == 1
    session.execute(delete(Bounce))
    session.commit()
    assert session.scalar(select(func.count()).select_from(BounceSource)) == 0


# -- the console -------------------------------------------------------------------------------


def test_the_bounce_page_shows_a_hostile_report_as_text(console: Console, tmp_path: Path) -> None:
    hostile = dsn(KIM, diagnostic="smtp; 550 5.1.1 " + XSS["img"]).replace(
        b"The mail system\n",
        b"The mail system\n<html><body><h1>Hi</h1>"
        + XSS["script"].encode()
        + b"</body>\n"
        + b"A long line "
        + b"y" * 2000
        + b"\nnot UTF-8: \xff\xfe\x00 end\n",
    )
    settings = dataclasses.replace(console.settings, bounce_raw_max_bytes=len(hostile) - 20)
    with session_scope(console.settings) as s:
        add_contact(s, KIM, create_list(s, "press", "Press").slug)
    with session_scope(console.settings) as s:
        process(s, settings, write_mbox(tmp_path / "in.mbox", [hostile]))
    with session_scope(console.settings) as s:
        bid = s.scalars(select(Bounce.id)).one()
    assert console.signed_in("viewer").get(f"/admin/bounces/{bid}").status_code == 403
    page = console.signed_in("editor").get(f"/admin/bounces/{bid}").text
    assert not unescaped(page) and not inline_code(page)
    assert "&lt;script&gt;alert(&#39;xss-script&#39;)&lt;/script&gt;" in page
    pre = lxml.html.fromstring(page).get_element_by_id("raw-report")
    assert pre.tag == "pre" and "raw-report" in pre.classes  # wraps long lines (campaigns.css)
    assert len(pre) == 0  # no element inside: the report's HTML stayed text
    expected = hostile[: len(hostile) - 20].decode("utf-8", "replace").replace("\x00", "\ufffd")
    assert pre.text_content() == expected
    assert "not UTF-8: \ufffd\ufffd\ufffd end" in expected
    assert f"Cut at {len(hostile) - 20:,} bytes." in page
    # A bounce kept before this change (or erased) says that nothing is kept.
    with session_scope(console.settings) as s:
        s.execute(delete(BounceSource))
    page = console.signed_in("editor").get(f"/admin/bounces/{bid}").text
    assert "Not kept" in page and 'id="raw-report"' not in page


def test_the_report_heading_is_in_korean(console: Console, tmp_path: Path) -> None:
    with session_scope(console.settings) as s:
        add_contact(s, KIM, create_list(s, "press", "Press").slug)
    with session_scope(console.settings) as s:
        process(s, console.settings, write_mbox(tmp_path / "in.mbox", [dsn(KIM)]))
    with session_scope(console.settings) as s:
        bid = s.scalars(select(Bounce.id)).one()
    console.add_user("ko.editor@staff.example.org", "editor")
    with session_scope(console.settings) as s:
        s.execute(
            update(StaffUser)
            .where(StaffUser.email == "ko.editor@staff.example.org")
            .values(language="ko")
        )
    page = (
        console.signed_in("editor", "ko.editor@staff.example.org").get(f"/admin/bounces/{bid}").text
    )
    assert "받은 그대로의 보고 메일" in page and "The report message as received" not in page


# -- the migration -----------------------------------------------------------------------------


@pytest.fixture
def empty_engine(engine_name: str, tmp_path: Path) -> Iterator[Engine]:
    if engine_name == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'migrate.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        pytest.skip("MAILER_TEST_DATABASE_URL is not set")
    name = f"mailer_rawb_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(PG_URL.rsplit("/", 1)[0] + "/" + name)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}"'))
        admin.dispose()


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migration_0015_up_on_an_existing_database_and_down(empty_engine: Engine) -> None:
    upgrade(empty_engine, "0014")
    with empty_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO bounce (id, source_message_id, email, kind, created_at) "
                "VALUES (7, '<old@mx.example.net>', 'kim@news.example.kr', 'hard', "
                "CURRENT_TIMESTAMP)"
            )
        )
    assert "bounce_source" not in inspect(empty_engine).get_table_names()
    upgrade(empty_engine, "0015")
    assert current_revision(empty_engine) == "0015"
    with empty_engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM bounce_source")).scalar() == 0
        conn.execute(
            text("INSERT INTO bounce_source (bounce_id, raw, truncated) VALUES (7, :raw, :t)"),
            {"raw": b"\x00\xffraw", "t": True},
        )
        assert conn.execute(text("SELECT raw FROM bounce_source")).scalar() == b"\x00\xffraw"
    command.downgrade(alembic_config(empty_engine), "0014")
    assert current_revision(empty_engine) == "0014"
    assert "bounce_source" not in inspect(empty_engine).get_table_names()
    with empty_engine.connect() as conn:
        assert conn.execute(text("SELECT source_message_id FROM bounce")).scalar() == (
            "<old@mx.example.net>"
        )
    upgrade(empty_engine)  # and up again
    assert "bounce_source" in inspect(empty_engine).get_table_names()
