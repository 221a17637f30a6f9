"""Saved segments, --where on send / contacts ls / export, press columns, mailbox suppressions."""

from __future__ import annotations

import csv
import io
import json
import mailbox
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.contacts.addresses import mailbox_key
from mailer.contacts.contact import add_contact, edit_contact
from mailer.contacts.lists import create_list
from mailer.contacts.press import PRESS_FIELDS
from mailer.contacts.segments import mailbox_sql
from mailer.contacts.suppressions import suppress
from mailer.store.db import session_scope
from mailer.store.models import (
    Campaign,
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from tests.support.cli import Cli
from tests.support.web import Web

SAMPLES = Path(__file__).parents[1] / "mailer" / "samples"

PRESS = [  # email, name, language, outlet, beat, region
    ("kim@example.com", "김민수", "ko", "Korea Daily", "politics", "Philadelphia, PA"),
    ("park@example.org", "박서연", "ko-KR", "Korea Times", "elections", "Bergen, NJ"),
    ("lee@example.com", "이준호", "ko", "Korea Daily", "sports", "Montgomery, PA"),
    ("jane@example.net", "Jane O'Neil", "en", "Inquirer", "politics", "Philadelphia, PA"),
    ("choi@example.net", "최지훈", "ko", "KBS America", "Politics", "Queens, NY"),
]


@pytest.fixture
def release(tmp_path: Path) -> Path:
    folder = tmp_path / "releases"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    return folder / "election-night.en.md"


def populate(settings: Settings) -> None:
    with session_scope(settings) as s:
        create_list(s, "press", "Press 기자단")
        create_list(s, "news", "Newsletter")
        for email, name, lang, outlet, beat, region in PRESS:
            add_contact(s, email, "press", name=name, language=lang, organisation=outlet)
            edit_contact(s, email, set_attributes={"beat": beat, "region": region})
        add_contact(s, "kim@example.com", "news")
        add_contact(s, "news.only@example.com", "news", language="ko")
        edit_contact(s, "news.only@example.com", set_attributes={"beat": "politics"})


def outbox(settings: Settings) -> list[mailbox.MaildirMessage]:
    if not settings.outbox_dir.exists():
        return []
    return list(mailbox.Maildir(settings.outbox_dir, create=False))


KO_POLITICS = ["language = ko", "beat in (politics, elections)", "region ~ pa or region ~ nj"]


# --- a segment send, end to end --------------------------------------------------------------


def test_segment_send_then_readers_unsubscribe_through_the_link(
    settings: Settings, cli: Cli, release: Path, web: Web
) -> None:
    populate(settings)
    created = cli(
        "segments",
        "create",
        "ko-politics",
        "--list",
        "press",
        *[a for w in KO_POLITICS for a in ("--where", w)],
        "--description",
        "Korean-language political reporters",
    ).output
    assert "2 contact(s)" in created
    preview = json.loads(cli("segments", "preview", "ko-politics", "--json").output)
    assert preview["contacts"] == 2 and preview["by_language"] == {"ko": 2}
    assert {r["email"] for r in preview["first"]} == {"kim@example.com", "park@example.org"}

    out = cli("send", str(release), "--segment", "ko-politics", "--yes").output
    assert "segment:    ko-politics: language = ko and beat in (politics, elections)" in out
    messages = outbox(settings)
    assert sorted(m["Delivered-To"] for m in messages) == ["kim@example.com", "park@example.org"]
    with session_scope(settings) as s:
        campaign = s.scalars(select(Campaign)).one()
        assert campaign.audience["segment"] == "ko-politics"
        assert campaign.audience["where"] == KO_POLITICS
        press_id = campaign.audience["list_ids"][0]
        # The list's List-Id and unsubscribe link, never a temporary list's.
        assert {d.list_id for d in s.scalars(select(Delivery))} == {press_id}
    assert all("press" in m["List-Id"] for m in messages)

    for m in messages:
        link = re.search(r"<https?://[^>]*(/u/[^>]+)>", m["List-Unsubscribe"])
        assert link is not None
        r = web.client().post(link.group(1), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
    with session_scope(settings) as s:
        statuses = dict(
            s.execute(
                select(Subscription.contact_id, Subscription.status).where(
                    Subscription.list_id == press_id
                )
            ).all()
        )
        assert sorted(statuses.values()).count(SubscriptionStatus.UNSUBSCRIBED) == 2
        # kim stays on the newsletter: the link left the list the segment was part of.
        assert (
            s.scalar(
                select(Subscription.status).where(
                    Subscription.mailing_list.has(slug="news"),
                    Subscription.contact.has(email="kim@example.com"),
                )
            )
            == SubscriptionStatus.SUBSCRIBED
        )
    after = json.loads(cli("segments", "preview", "ko-politics", "--json").output)
    assert after["contacts"] == 0

    # Editing the segment later changes no campaign: the ledger keeps what was planned.
    cli("segments", "rm", "ko-politics")
    shown = cli("campaigns", "show", str(campaign.id)).output
    assert "segment: ko-politics: language = ko and beat in (politics, elections)" in shown
    report = Path(settings.base_dir) / "report.csv"
    cli("campaigns", "report", str(campaign.id), "--csv", str(report))
    rows = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8-sig"))))
    assert {(r["email"], r["name"], r["outlet"], r["beat"]) for r in rows} == {
        ("kim@example.com", "김민수", "Korea Daily", "politics"),
        ("park@example.org", "박서연", "Korea Times", "elections"),
    }


def test_send_with_list_and_where_plans_only_the_matching(
    settings: Settings, cli: Cli, release: Path
) -> None:
    populate(settings)
    out = cli(
        "send",
        str(release),
        "--list",
        "press",
        "--where",
        "beat = politics",
        "--where",
        "not outlet = Inquirer",
        "--yes",
    ).output
    assert "outside the segment: 3" in out
    assert sorted(m["Delivered-To"] for m in outbox(settings)) == [
        "choi@example.net",
        "kim@example.com",
    ]
    # The same command again resumes that campaign; another --where is another audience.
    again = cli(
        "send",
        str(release),
        "--list",
        "press",
        "--where",
        "beat = politics",
        "--where",
        "not outlet = Inquirer",
        "--yes",
    ).output
    assert "Nothing left to send" in again
    cli("send", str(release), "--list", "press", "--where", "beat = sports", "--yes")
    assert len(outbox(settings)) == 3


def test_bad_expressions_and_names_are_clear_errors(
    settings: Settings, cli: Cli, release: Path
) -> None:
    populate(settings)
    out = cli(
        "send", str(release), "--list", "press", "--where", "beat == x", "--yes", expect=1
    ).output
    assert "--where 'beat == x': expected a value after =, found '=' (at character 7)" in out
    assert "  beat == x\n        ^" in out
    out = cli("segments", "create", "x", "--list", "press", "--where", "bet = x", expect=1).output
    assert "unknown field 'bet'" in out
    assert (
        "no list named 'nope'" in cli("segments", "create", "x", "--list", "nope", expect=1).output
    )
    assert "segment name" in cli("segments", "create", "a b", "--list", "press", expect=1).output
    cli("segments", "create", "pol", "--list", "press", "--where", "beat = politics")
    assert "already exists" in cli("segments", "create", "pol", "--list", "press", expect=1).output
    assert (
        "drop --list"
        in cli(
            "send", str(release), "--segment", "pol", "--list", "press", "--yes", expect=1
        ).output
    )
    assert (
        "no segment 'nope'"
        in cli("send", str(release), "--segment", "nope", "--yes", expect=1).output
    )
    assert outbox(settings) == []
    listed = json.loads(cli("segments", "ls", "--json").output)
    assert [(s["name"], s["lists"], s["where"]) for s in listed] == [
        ("pol", ["press"], ["beat = politics"])
    ]
    assert "contacts now: 3" in cli("segments", "show", "pol").output


# --- contacts ls / export ----------------------------------------------------------------------


def test_contacts_ls_and_export_take_where_and_segment(
    settings: Settings, cli: Cli, tmp_path: Path
) -> None:
    populate(settings)
    listed = json.loads(cli("contacts", "ls", "--where", "beat ~ POLI", "--json").output)
    assert sorted(c["email"] for c in listed) == [
        "choi@example.net",
        "jane@example.net",
        "kim@example.com",
        "news.only@example.com",
    ]
    cli(
        "segments",
        "create",
        "ko-pol",
        "--list",
        "press",
        "--where",
        "language = ko",
        "--where",
        "beat = politics",
    )
    table = cli("contacts", "ls", "--segment", "ko-pol").output
    assert "kim@example.com" in table and "choi@example.net" in table
    assert "news.only" not in table and "jane@" not in table
    out = tmp_path / "seg.csv"
    cli("contacts", "export", "--segment", "ko-pol", "-o", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert sorted(r["email"] for r in rows) == ["choi@example.net", "kim@example.com"]
    assert {r["beat"] for r in rows} == {"politics", "Politics"}
    bad = cli("contacts", "export", "--where", "has", expect=1).output
    assert "expected a field name" in bad


# --- suppressions match on the mailbox ---------------------------------------------------------


def test_a_suppressed_mailbox_excludes_its_other_spellings(
    settings: Settings, cli: Cli, release: Path, tmp_path: Path
) -> None:
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        for email in (
            "johndoe+press@gmail.com",
            "j.o.h.n.d.o.e@googlemail.com",
            "ann+x@example.org",
            "johndoe@example.org",
            "kim@example.com",
        ):
            add_contact(s, email, "press", language="en")
        suppress(s, "john.doe@gmail.com", SuppressionReason.UNSUBSCRIBE_ALL, "test")
        suppress(s, "ann@example.org", SuppressionReason.COMPLAINT, "test")
    out = cli("send", str(release), "--list", "press", "--yes").output
    assert "suppressed: 3" in out
    # johndoe@example.org is another mailbox: Gmail's dot rule is Gmail's only.
    assert sorted(m["Delivered-To"] for m in outbox(settings)) == [
        "johndoe@example.org",
        "kim@example.com",
    ]
    exported = tmp_path / "all.csv"
    cli("contacts", "export", "-o", str(exported))
    rows = {
        r["email"]: r["mailer:suppressed"]
        for r in csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig")))
    }
    assert rows == {
        "johndoe+press@gmail.com": "unsubscribe-all",
        "j.o.h.n.d.o.e@googlemail.com": "unsubscribe-all",
        "ann+x@example.org": "complaint",
        "johndoe@example.org": "",
        "kim@example.com": "",
    }


@hsettings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.tuples(
        st.text("ab.+-", max_size=6),
        st.sampled_from(["gmail.com", "googlemail.com", "example.org", "gmail.co"]),
    )
)
def test_the_databases_mailbox_key_is_pythons(session: Session, parts: tuple[str, str]) -> None:
    email = f"{parts[0]}@{parts[1]}"
    got = session.scalar(select(mailbox_sql(session, literal(email))))
    assert got == mailbox_key(email)


# --- press columns ----------------------------------------------------------------------------


def test_import_reads_korean_and_english_press_columns(
    settings: Settings, cli: Cli, tmp_path: Path
) -> None:
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
    korean = tmp_path / "기자.csv"
    korean.write_text(
        "이메일,이름,언론사,직함,분야,매체,지역,전화,트위터\n"
        "kim@example.com,김민수,코리아데일리,기자,정치,신문,필라델피아,"
        "215-555-0101,@kimreports\n",
        encoding="utf-8",
    )
    english = tmp_path / "press.csv"
    english.write_text(
        "Email,Name,Outlet,Title,Beat,Media Type,Region,Phone\n"
        "jane@example.net,Jane,Inquirer,Editor,Politics,Print,"
        "Philadelphia,+1 215-555-0102\n",
        encoding="utf-8",
    )
    for path in (korean, english):
        cli("contacts", "import", str(path), "--list", "press", "--consent-source", "test")
    kim = json.loads(cli("contacts", "show", "kim@example.com", "--json").output)
    assert [kim[f] for f in ("organisation", *PRESS_FIELDS)] == [
        "코리아데일리",
        "기자",
        "정치",
        "print",  # 신문, as mailer writes a media type
        "필라델피아",
        "215-555-0101",
    ]
    assert kim["attributes"] == {"트위터": "@kimreports"}
    jane = json.loads(cli("contacts", "show", "jane@example.net", "--json").output)
    assert [jane[f] for f in ("organisation", *PRESS_FIELDS)] == [
        "Inquirer",
        "Editor",
        "Politics",
        "print",
        "Philadelphia",
        "+1 215-555-0102",
    ]
    assert jane["attributes"] == {}
    shown = cli("contacts", "show", "kim@example.com").output
    assert "  beat:         정치\n" in shown and "  media type:   print\n" in shown
    found = json.loads(
        cli(
            "contacts",
            "ls",
            "--json",
            "--where",
            "beat in (정치, politics)",
            "--where",
            "media_type in (신문, print)",
            "--where",
            "attr.트위터 ~ kim or outlet = inquirer",
        ).output
    )
    assert sorted(c["email"] for c in found) == ["jane@example.net", "kim@example.com"]


def test_campaigns_show_names_who_was_not_reached(
    settings: Settings, cli: Cli, release: Path
) -> None:
    populate(settings)
    cli("send", str(release), "--list", "press", "--where", "outlet = 'korea daily'", "--yes")
    with session_scope(settings) as s:
        row = s.scalars(select(Delivery).where(Delivery.email == "kim@example.com")).one()
        row.status = DeliveryStatus.FAILED
        row.smtp_reply = "550 no such user"
        campaign_id = row.campaign_id
    shown = cli("campaigns", "show", str(campaign_id)).output
    assert "failed    kim@example.com (김민수, Korea Daily, politics)" in shown
    assert "lee@example.com" not in shown.split("not reached")[1]
    data = json.loads(cli("campaigns", "show", str(campaign_id), "--json").output)
    assert data["where"] == ["outlet = 'korea daily'"] and data["segment"] is None
