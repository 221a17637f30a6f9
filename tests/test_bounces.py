"""Bounce policy on a real database: suppression, the soft score and its reset, unsubscribes,
matching, idempotence, dry runs, and the `bounces process` command on mbox and maildir."""

from __future__ import annotations

import json
import mailbox
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer import clock, tokens
from mailer.bounces.policy import Item, bounce_counts, process_message, soft_score
from mailer.config import Settings, load_settings
from mailer.contacts.addresses import verp_encode
from mailer.contacts.contact import add_contact, erase
from mailer.contacts.suppressions import get_suppression
from mailer.store.models import (
    Bounce,
    Campaign,
    Contact,
    Delivery,
    DeliveryStatus,
    Event,
    MailingList,
    Subscription,
    SuppressionReason,
)
from tests.bounce_corpus import world
from tests.support.bounces import arf, dsn, mail
from tests.support.cli import Cli
from tests.support.config import write_config

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def people(session: Session) -> world.World:
    from mailer.contacts.lists import create_list

    create_list(session, "press-en", "Press (English)")
    create_list(session, "press-ko", "보도자료")
    campaign = world.make_campaign(session)
    contacts, deliveries = {}, {}
    for n, email in enumerate(
        ["kim@news.example.kr", "lee@daily.example.com", "park@weekly.example.com"], 1
    ):
        contact, _ = add_contact(session, email, "press-en")
        add_contact(session, email, "press-ko")
        contacts[email] = contact
        deliveries[email] = world.add_delivery(session, campaign, contact, world.message_id(n))
    session.flush()
    return world.World(campaign, contacts, deliveries)


def run(session: Session, settings: Settings, raw: bytes, key: str = "1") -> list[Item]:
    with clock.pinned(NOW):
        return process_message(session, settings, key, raw)


def score(session: Session, settings: Settings, email: str) -> tuple[int, int]:
    with clock.pinned(NOW):
        return soft_score(session, settings, email)


def reason(session: Session, email: str) -> SuppressionReason | None:
    sup = get_suppression(session, email)
    return sup.reason if sup else None


def statuses(session: Session, email: str) -> dict[str, str]:
    rows = session.execute(
        select(MailingList.slug, Subscription.status)
        .join(Subscription.mailing_list)
        .join(Contact, Contact.id == Subscription.contact_id)
        .where(Contact.email == email)
    )
    return {slug: status.value for slug, status in rows}


# -- hard bounces and complaints -------------------------------------------------------------


def test_hard_bounce_suppresses_and_is_recorded_once(
    session: Session, settings: Settings, people: world.World
) -> None:
    raw = dsn("kim@news.example.kr", about=world.message_id(1))
    [item] = run(session, settings, raw)
    assert (item.outcome, item.action, item.matched_by) == ("hard", "suppressed", "message-id")
    assert reason(session, "kim@news.example.kr") == SuppressionReason.HARD_BOUNCE
    assert statuses(session, "kim@news.example.kr") == {
        "press-en": "unsubscribed",
        "press-ko": "unsubscribed",
    }
    bounce = session.scalars(select(Bounce)).one()
    assert bounce.delivery_id == people.deliveries["kim@news.example.kr"].id
    assert bounce.campaign_id == people.campaign.id and bounce.status_code == "5.1.1"
    assert (
        session.scalar(select(func.count()).select_from(Event).where(Event.kind == "bounce")) == 1
    )
    [again] = run(session, settings, raw)
    assert again.outcome == "duplicate" and again.processed
    assert session.scalar(select(func.count()).select_from(Bounce)) == 1
    assert bounce_counts(session, people.campaign.id)["hard"] == 1


def test_block_alone_never_suppresses_even_with_threshold_one(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    write_config(tmp_path, {"database_url": settings.database_url, "soft_bounce_threshold": 1})
    strict = load_settings(tmp_path / "mailer.toml", env={})
    for _ in range(3):
        [item] = run(
            session,
            strict,
            dsn(
                "kim@news.example.kr",
                "5.7.1",
                diagnostic="smtp; 550 5.7.1 spam blocked",
                about=world.message_id(1),
            ),
        )
        assert item.outcome == "block"
    assert reason(session, "kim@news.example.kr") is None
    assert item.action == "score 3/1 (blocks only: not suppressed)"
    # One soft bounce next to the blocks makes the evidence enough.
    [item] = run(
        session,
        strict,
        dsn(
            "kim@news.example.kr",
            "5.2.2",
            diagnostic="smtp; 552 5.2.2 Mailbox full",
            about=world.message_id(1),
        ),
    )
    assert item.action.startswith("suppressed")
    assert reason(session, "kim@news.example.kr") == SuppressionReason.HARD_BOUNCE


def test_complaint_suppresses_at_once_not_spam_does_not(
    session: Session, settings: Settings, people: world.World
) -> None:
    [item] = run(session, settings, arf("lee@daily.example.com", "not-spam"))
    assert item.outcome == "ignored" and reason(session, "lee@daily.example.com") is None
    [item] = run(session, settings, arf("redacted@isp.example", about=world.message_id(2)))
    assert (item.outcome, item.email, item.matched_by) == (
        "complaint",
        "lee@daily.example.com",
        "message-id",
    )
    assert reason(session, "lee@daily.example.com") == SuppressionReason.COMPLAINT


def test_delayed_is_recorded_but_never_counts(
    session: Session, settings: Settings, people: world.World
) -> None:
    for _ in range(8):
        [item] = run(session, settings, dsn("kim@news.example.kr", "4.4.1", action="delayed"))
        assert item.outcome == "delayed" and item.action == "none"
    assert score(session, settings, "kim@news.example.kr") == (0, 0)
    assert reason(session, "kim@news.example.kr") is None


# -- the soft score ---------------------------------------------------------------------------


def soft(
    session: Session, settings: Settings, w: world.World, email: str, n: int, sent_at: datetime
) -> tuple[Delivery, Item]:
    """Campaign n sent to `email` at sent_at, and a mailbox-full bounce for it."""
    campaign = world.make_campaign(session, f"c{n}")
    delivery = world.add_delivery(
        session, campaign, w.contacts[email], world.message_id(1, n + 100), sent_at=sent_at
    )
    [item] = run(
        session,
        settings,
        dsn(email, "4.2.2", diagnostic="smtp; 452 4.2.2 full", about=delivery.message_id),
    )
    return delivery, item


def test_soft_bounces_suppress_at_the_threshold(
    session: Session, settings: Settings, people: world.World
) -> None:
    assert settings.soft_bounce_threshold == 5
    email = "kim@news.example.kr"
    for n in range(1, 5):
        _, item = soft(session, settings, people, email, n, NOW - timedelta(days=10 - n))
        assert item.action == f"score {n}/5"
    assert reason(session, email) is None
    _, item = soft(session, settings, people, email, 5, NOW - timedelta(days=4))
    assert item.action == "suppressed (score 5/5)"
    assert reason(session, email) == SuppressionReason.HARD_BOUNCE
    sup = get_suppression(session, email)
    assert sup is not None and sup.source == "5 soft bounces in 30 days"


def test_soft_bounces_outside_the_window_do_not_count(
    session: Session, settings: Settings, people: world.World
) -> None:
    email = "kim@news.example.kr"
    for n in range(1, 5):
        soft(session, settings, people, email, n, NOW - timedelta(days=40 + n))
    _, item = soft(session, settings, people, email, 5, NOW - timedelta(days=1))
    assert item.action == "score 1/5"


def test_a_later_successful_delivery_resets_the_score(
    session: Session, settings: Settings, people: world.World
) -> None:
    email = "kim@news.example.kr"
    for n in range(1, 5):
        soft(session, settings, people, email, n, NOW - timedelta(days=15 - n))
    assert score(session, settings, email) == (4, 4)
    # Campaign 9 reached the address after those four: no report names it.
    ok = world.make_campaign(session, "c9")
    world.add_delivery(
        session,
        ok,
        people.contacts[email],
        "<c9.r1.x@hanul.example.org>",
        sent_at=NOW - timedelta(days=10),
    )
    assert score(session, settings, email) == (0, 0)
    _, item = soft(session, settings, people, email, 10, NOW - timedelta(days=5))
    assert item.action == "score 1/5"
    # A delivery that was only delayed, or that failed, proves nothing: no reset.
    pending = world.make_campaign(session, "c11")
    late = world.add_delivery(
        session,
        pending,
        people.contacts[email],
        "<c11.r1.x@hanul.example.org>",
        sent_at=NOW - timedelta(days=2),
    )
    run(session, settings, dsn(email, "4.4.1", action="delayed", about=late.message_id))
    failed = world.make_campaign(session, "c12")
    world.add_delivery(
        session,
        failed,
        people.contacts[email],
        "<c12.r1.x@hanul.example.org>",
        status=DeliveryStatus.FAILED,
    )
    assert score(session, settings, email) == (1, 1)


# -- matching -------------------------------------------------------------------------------


def test_signed_verp_wins_over_final_recipient_and_is_ignored_when_off(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "verp": True,
            "envelope_sender": "bounces@hanul.example.org",
            "secret_key": settings.secret_key,
        },
    )
    verp = load_settings(tmp_path / "mailer.toml", env={})
    signed = verp_encode(
        "bounces@hanul.example.org",
        "kim@news.example.kr",
        secret_key=verp.secret_key,
        campaign_id=people.campaign.id,
    )
    [item] = run(session, settings, dsn("lee@daily.example.com", to=signed))  # verp is off
    assert (item.email, item.matched_by) == ("lee@daily.example.com", "final-recipient")
    assert item.action.startswith("held for review")
    [item] = run(session, verp, dsn("lee@daily.example.com", to=signed))
    assert (item.email, item.matched_by, item.action) == (
        "kim@news.example.kr",
        "verp",
        "suppressed",
    )
    assert item.campaign_id == people.campaign.id
    assert reason(session, "lee@daily.example.com") is None


def test_message_id_matches_when_the_recipient_is_unknown(
    session: Session, settings: Settings, people: world.World
) -> None:
    [item] = run(session, settings, dsn("forwarded@elsewhere.example", about=world.message_id(3)))
    assert (item.email, item.matched_by) == ("park@weekly.example.com", "message-id")
    assert reason(session, "park@weekly.example.com") == SuppressionReason.HARD_BOUNCE


def test_unknown_address_is_left_alone(
    session: Session, settings: Settings, people: world.World
) -> None:
    [item] = run(
        session, settings, dsn("stranger@nowhere.example", about="<not-ours@spoofed.example>")
    )
    assert item.outcome == "unknown-address" and not item.processed
    assert "stranger@nowhere.example" in item.detail
    assert session.scalar(select(func.count()).select_from(Bounce)) == 0
    assert reason(session, "stranger@nowhere.example") is None


def test_report_without_message_id_is_still_counted_once(
    session: Session, settings: Settings, people: world.World
) -> None:
    raw = b"\n".join(
        line
        for line in dsn("kim@news.example.kr").split(b"\n")
        if not line.startswith(b"Message-Id:")
    )
    [first] = run(session, settings, raw)
    [second] = run(session, settings, raw)
    assert (first.source_message_id or "").startswith("sha256:") and first.outcome == "hard"
    assert second.outcome == "duplicate"


# -- mailed unsubscribes -----------------------------------------------------------------------


def token_for(
    session: Session, settings: Settings, email: str, slug: str | None, campaign: Campaign
) -> str:
    contact = session.scalar(select(Contact).where(Contact.email == email))
    assert contact is not None
    list_id = (
        session.scalar(select(MailingList.id).where(MailingList.slug == slug)) if slug else None
    )
    return tokens.make_unsubscribe(settings, contact.id, list_id, campaign.id)


def test_token_unsubscribes_from_its_list_only(
    session: Session, settings: Settings, people: world.World
) -> None:
    token = token_for(session, settings, "kim@news.example.kr", "press-ko", people.campaign)
    # Sent from another address (a forward): the signed token is what counts.
    [item] = run(session, settings, mail(f"Re: unsubscribe {token}", sender="boss@news.kr"))
    assert (item.outcome, item.matched_by, item.action) == (
        "unsubscribe",
        "token",
        "unsubscribed from press-ko",
    )
    assert statuses(session, "kim@news.example.kr") == {
        "press-en": "subscribed",
        "press-ko": "unsubscribed",
    }
    sub = session.scalars(select(Subscription).where(Subscription.unsubscribed_via.is_not(None)))
    assert [s.unsubscribed_via for s in sub] == ["mailto"]
    assert reason(session, "kim@news.example.kr") is None
    assert bounce_counts(session, people.campaign.id)["unsubscribe"] == 1


def test_from_only_request_is_held_and_needs_a_contact(
    session: Session, settings: Settings, people: world.World
) -> None:
    [item] = run(session, settings, mail("unsubscribe", sender="Lee <LEE@daily.example.com>"))
    assert (item.outcome, item.email, item.processed) == (
        "unsubscribe",
        "lee@daily.example.com",
        True,
    )
    assert (
        item.action.startswith("held for review") and "From address proves nothing" in item.detail
    )
    assert reason(session, "lee@daily.example.com") is None
    assert statuses(session, "lee@daily.example.com")["press-en"] == "subscribed"
    [item] = run(session, settings, mail("Unsubscribe", sender="nobody@else.example"))
    assert item.outcome == "unrecognised" and not item.processed
    assert reason(session, "nobody@else.example") is None


def test_a_reply_that_quotes_the_link_does_not_unsubscribe(
    session: Session, settings: Settings, people: world.World
) -> None:
    token = token_for(session, settings, "kim@news.example.kr", "press-en", people.campaign)
    body = f"Thanks, great story!\n\n> Unsubscribe: https://x/u/{token}\n> unsubscribe {token}\n"
    [item] = run(session, settings, mail("Re: festival", body, sender="kim@news.example.kr"))
    assert item.outcome == "unrecognised"
    assert statuses(session, "kim@news.example.kr")["press-en"] == "subscribed"


def test_token_of_an_erased_contact_changes_nothing(
    session: Session, settings: Settings, people: world.World
) -> None:
    token = token_for(session, settings, "park@weekly.example.com", "press-en", people.campaign)
    erase(session, "park@weekly.example.com")
    [item] = run(session, settings, mail(f"unsubscribe {token}"))
    assert item.outcome == "ignored" and item.processed
    assert "no longer exists" in item.detail


# -- the command ---------------------------------------------------------------------------------


def test_cli_mbox_json_and_dry_run(
    cli: Cli, session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    campaign_id = people.campaign.id
    session.commit()
    mbox = world.write_mbox(
        tmp_path / "in.mbox",
        [
            dsn("kim@news.example.kr", about=world.message_id(1)),
            dsn("lee@daily.example.com", "4.4.1", action="delayed"),
            b"not a message",
            dsn("nobody@unknown.example"),
        ],
    )
    dry = json.loads(cli("bounces", "process", str(mbox), "--dry-run", "--json").output)
    assert dry["dry_run"] is True and dry["suppressed"] == ["kim@news.example.kr"]
    assert reason(session, "kim@news.example.kr") is None
    assert session.scalar(select(func.count()).select_from(Bounce)) == 0
    session.rollback()  # SQLite: release the lock before the command writes
    data = json.loads(cli("bounces", "process", str(mbox), "--json").output)
    assert set(data) == {
        "source",
        "dry_run",
        "messages",
        "counts",
        "suppressed",
        "unsubscribed",
        "held",
        "left_in_place",
        "acknowledged",
        "acknowledge_error",
        "items",
    }
    assert data["messages"] == 4 and data["left_in_place"] == 2
    assert {k: v for k, v in data["counts"].items() if v} == {
        "hard": 1,
        "delayed": 1,
        "unparseable": 1,
        "unknown-address": 1,
    }
    assert set(data["items"][0]) == {
        "message",
        "outcome",
        "source_message_id",
        "subject",
        "email",
        "matched_by",
        "campaign_id",
        "status",
        "diagnostic",
        "action",
        "detail",
        "processed",
    }
    assert data["items"][0]["campaign_id"] == campaign_id
    assert reason(session, "kim@news.example.kr") == SuppressionReason.HARD_BOUNCE
    session.rollback()
    text = cli("bounces", "process", str(mbox)).output
    assert "duplicate" in text and "left in place" in text and "Traceback" not in text


def test_cli_maildir_and_bad_sources(
    cli: Cli, session: Session, people: world.World, tmp_path: Path
) -> None:
    session.commit()
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(dsn("kim@news.example.kr", about=world.message_id(1)))
    box.add(mail("Automatic reply: festival", "I am away.", sender="lee@daily.example.com"))
    session.rollback()
    out = cli("bounces", "process", str(tmp_path / "Maildir")).output
    assert "hard" in out and "autoreply" in out and "1 suppressed" in out
    assert len(box) == 2  # local sources are never changed
    result = cli("bounces", "process", str(tmp_path / "missing.mbox"), expect=1)
    assert "missing.mbox: no such file or folder" in result.output
    (tmp_path / "plain").mkdir()
    result = cli("bounces", "process", str(tmp_path / "plain"), expect=1)
    assert "not a maildir" in result.output


def test_truncated_mbox_and_stray_lines_are_reported(
    cli: Cli, session: Session, people: world.World, tmp_path: Path
) -> None:
    session.commit()
    good = dsn("kim@news.example.kr")
    cut = dsn("lee@daily.example.com")[:200]
    path = tmp_path / "cut.mbox"
    path.write_bytes(
        b"stray line\n\n"
        + world.write_mbox(tmp_path / "x", [good]).read_bytes()
        + b"From MAILER-DAEMON Mon Mar  3 09:10:00 2025\n"
        + cut.rstrip(b"\n")
    )
    session.rollback()
    data = json.loads(cli("bounces", "process", str(path), "--json").output)
    outcomes = [(i["message"], i["outcome"], i["detail"]) for i in data["items"]]
    assert outcomes[0] == (
        "0 (line 1)",
        "unparseable",
        "lines 1-2 come before the first 'From ' line: skipped",
    )
    assert outcomes[1][:2] == ("1 (line 3)", "hard")
    # No Message-ID, no VERP: recorded and held, not applied.
    assert data["held"] == ["kim@news.example.kr"]
    assert data["suppressed"] == []
    assert outcomes[2][1:] == (
        "unparseable",
        "truncated: the file ends in the middle of this message",
    )
    assert reason(session, "lee@daily.example.com") is None


def test_two_runs_at_once_count_a_report_once(
    session: Session, settings: Settings, people: world.World, engine_name: str
) -> None:
    """PostgreSQL: a second process inserting the same report waits, then sees a duplicate."""
    if engine_name != "postgresql":
        pytest.skip("SQLite allows one writer: the second run waits before it reads anything")
    import threading

    from mailer.store.db import session_factory

    session.commit()
    raw = dsn("kim@news.example.kr")
    first = run(session, settings, raw)  # flushed, not committed: holds the unique key
    results: list[Item] = []
    other = session_factory(settings)()
    thread = threading.Thread(target=lambda: results.extend(run(other, settings, raw)))
    thread.start()
    thread.join(timeout=2)
    assert thread.is_alive(), "the second insert should wait for the first transaction"
    session.commit()
    thread.join(timeout=30)
    other.commit()
    other.close()
    assert first[0].outcome == "hard"
    assert [(i.outcome, i.processed, i.detail) for i in results] == [
        ("duplicate", True, "recorded by another run at the same time")
    ]
    assert session.scalar(select(func.count()).select_from(Bounce)) == 1


# -- batches: a few queries per batch, whatever its size --------------------------------------


def _campaign_reports(session: Session, n: int, tag: str) -> list[bytes]:
    """`n` contacts sent one message each, and a report about each of every kind in turn:
    proven hard, soft, block and complaint, an auto-reply, and a forged hard bounce (held)."""
    from mailer.contacts.lists import create_list

    create_list(session, f"list-{tag}", "List")
    campaign = world.make_campaign(session, f"camp-{tag}")
    out = []
    for i in range(n):
        email = f"reader{i}.{tag}@news.example.com"
        contact, _ = add_contact(session, email, f"list-{tag}")
        mid = world.message_id(f"{tag}{i}", campaign.id)
        world.add_delivery(session, campaign, contact, mid)
        out.append(
            [
                dsn(email, about=mid),
                dsn(email, "4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full", about=mid),
                dsn(
                    email, "5.7.1", diagnostic="smtp; 550 5.7.1 Message rejected as spam", about=mid
                ),
                arf(email, about=mid),
                f"From: {email}\nTo: press@hanul.example.org\nSubject: Out of office\n"
                f"Auto-Submitted: auto-replied\nIn-Reply-To: {mid}\nMessage-ID: <ooo.{tag}{i}@x>\n"
                "\nI am away.\n".encode(),
                dsn(email),
            ][i % 6]
        )
    session.flush()
    return out


def test_process_issues_a_bounded_number_of_queries_per_batch(
    session: Session, settings: Settings, tmp_path: Path
) -> None:
    """Classify a batch, load what it names with a few IN (...) queries, write it in bulk: the
    count of statements is the same for 12 messages as for 60 (one batch each)."""
    from sqlalchemy import event

    from mailer.bounces.policy import BATCH_SIZE, process_mailbox
    from mailer.bounces.sources import open_source

    assert BATCH_SIZE >= 60
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    bind = session.get_bind()
    counts, outcomes = [], []
    for n, tag in ((12, "a"), (60, "b")):
        mbox = world.write_mbox(tmp_path / f"{tag}.mbox", _campaign_reports(session, n, tag))
        statements.clear()
        event.listen(bind, "before_cursor_execute", count)
        try:
            with clock.pinned(NOW), open_source(str(mbox)) as box:
                report = process_mailbox(session, settings, box)
        finally:
            event.remove(bind, "before_cursor_execute", count)
        counts.append(len(statements))
        outcomes.append(report.counts())
    for got, n in zip(outcomes, (12, 60), strict=True):
        assert got["hard"] == 2 * n // 6 and got["complaint"] == n // 6
        assert got["autoreply"] == n // 6 and got["soft"] == got["block"] == n // 6
    assert counts[0] == counts[1], sorted(Counter(s[:70] for s in statements).items())
    assert counts[0] <= 30, counts
    # The forged ones were held (with the id of their review), the proven ones applied.
    assert session.scalar(select(func.count()).select_from(Bounce)) == 72
    held = [i for i in report.items if i.action.startswith("held for review ")]
    assert len(held) == 10 and all(i.action.split()[-1].isdigit() for i in held)


def test_a_failed_batch_is_redone_one_message_at_a_time(
    session: Session, settings: Settings, people: world.World, engine_name: str, tmp_path: Path
) -> None:
    """PostgreSQL: another run records one report of the batch meanwhile; the batch's bulk
    insert fails, is rolled back and redone message by message: only that one is a duplicate."""
    if engine_name != "postgresql":
        pytest.skip("SQLite allows one writer: the second run waits before it reads anything")
    import threading

    from mailer.bounces.policy import RunReport, process_mailbox
    from mailer.bounces.sources import open_source
    from mailer.store.db import session_factory

    session.commit()
    shared = dsn("kim@news.example.kr", about=world.message_id(1))
    first = run(session, settings, shared)  # flushed, not committed: holds the unique key
    mbox = world.write_mbox(
        tmp_path / "in.mbox", [dsn("lee@daily.example.com", about=world.message_id(2)), shared]
    )
    reports: list[RunReport] = []
    other = session_factory(settings)()

    def second() -> None:
        with clock.pinned(NOW), open_source(str(mbox)) as box:
            reports.append(process_mailbox(other, settings, box))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=2)
    assert thread.is_alive(), "the second run's insert should wait for the first transaction"
    session.commit()
    thread.join(timeout=30)
    other.commit()
    other.close()
    assert first[0].outcome == "hard"
    assert [(i.email, i.outcome, i.action) for i in reports[0].items] == [
        ("lee@daily.example.com", "hard", "suppressed"),
        ("kim@news.example.kr", "duplicate", "none"),
    ]  # redone: it is committed now
    session.expire_all()
    assert reason(session, "lee@daily.example.com") == SuppressionReason.HARD_BOUNCE
    assert session.scalar(select(func.count()).select_from(Bounce)) == 2


def test_a_nul_byte_in_a_report_is_stored_on_every_engine(
    session: Session, settings: Settings, people: world.World, tmp_path: Path
) -> None:
    """A NUL byte in a diagnostic (which PostgreSQL refuses in text) is stored as U+FFFD: the
    report is processed like any other on both engines, and its batch stays one batch."""
    from mailer.bounces.policy import process_mailbox
    from mailer.bounces.sources import open_source
    from mailer.store.models import Bounce

    bad = dsn(
        "kim@news.example.kr",
        about=world.message_id(1),
        diagnostic="smtp; 550 5.1.1 User\x00 unknown",
    )
    good = dsn("lee@daily.example.com", about=world.message_id(2))
    mbox = world.write_mbox(tmp_path / "in.mbox", [bad, good])
    with clock.pinned(NOW), open_source(str(mbox)) as box:
        report = process_mailbox(session, settings, box)
    first, second = report.items
    assert (second.email, second.outcome, second.action) == (
        "lee@daily.example.com",
        "hard",
        "suppressed",
    )
    assert (first.email, first.outcome, first.action) == (
        "kim@news.example.kr",
        "hard",
        "suppressed",
    )
    stored = session.scalars(select(Bounce.diagnostic)).all()
    assert any("User\ufffd unknown" in (d or "") for d in stored), stored
    assert not any("\x00" in (d or "") for d in stored)
