"""Guards during a send (delivery/guards.py, issue 16): a mail provider refusing the sender has
its recipients deferred with backoff, never failed one by one nor suppressed; a campaign whose
complaints cross the line pauses itself, through bounce processing and through the sender's own
check, and a resume clears the reason. Real SMTP server, real databases, both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from mailer import clock
from mailer.bounces.policy import process_message
from mailer.config import Settings
from mailer.delivery import guards
from mailer.delivery.guards import Providers, backoff, complaint_verdict, refusal
from mailer.store.db import session_scope
from mailer.store.models import (
    Bounce,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Event,
    ProviderHold,
    Suppression,
)
from tests.support.cli import Cli
from tests.support.sending import bulk_audience, populate, use_smtp
from tests.support.smtp import SmtpServer

CORPUS = Path(__file__).parent / "bounce_corpus"
UNAUTHENTICATED = (
    "data:550 5.7.26 This mail is unauthenticated, which poses a security risk to the sender "
    "and Gmail users, and has been blocked."
)
THROTTLED = "421 4.7.0 Try again later, closing connection."

# --- the decisions, without a database ---------------------------------------------------------


@pytest.mark.parametrize(
    "code, text, kind",
    [
        (550, "5.7.26 This mail is unauthenticated", "authentication"),
        (
            550,
            "5.7.515 Access denied, sending domain does not meet the required level",
            "authentication",
        ),
        (554, "5.7.1 Service unavailable; client host blocked using a blocklist", "blocked"),
        (550, "5.7.1 Message rejected as spam", "blocked"),
        (550, "5.7.1 Rejected by policy", "blocked"),
        (550, "Mailbox unavailable: your IP is blocked as spam", "blocked"),
        (421, "4.7.28 Our system has detected an unusual rate of unsolicited mail", "rate-limited"),
        (421, "4.7.0 Try again later, closing connection.", "throttled"),
        (450, "4.7.0 Try again later", "throttled"),
        (421, "Too many messages, try again later", "throttled"),
        # One recipient's problem, not a refusal of the sender:
        (550, "5.1.1 User unknown", None),
        (552, "5.2.2 Mailbox full", None),
        (554, "5.6.0 Message content rejected", None),
        (550, "5.7.1 Recipient address rejected: Access denied", None),
        (451, "4.7.1 Greylisted, try again later", None),
        (450, "4.7.1 Greylisted for 5 minutes, try again later", None),
        (421, "4.3.2 Shutting down", None),
        (450, "4.2.1 Mailbox busy, try again later", None),
        (250, "2.0.0 OK", None),
    ],
)
def test_which_replies_are_a_provider_refusing_the_sender(
    code: int, text: str, kind: str | None
) -> None:
    found = refusal(code, text)
    assert (found.kind if found else None) == kind


def test_backoff_doubles_and_is_capped() -> None:
    waits = [backoff(level, 900, 6 * 3600) for level in range(1, 8)]
    assert [int(w.total_seconds() // 60) for w in waits] == [15, 30, 60, 120, 240, 360, 360]
    assert backoff(0, 900, 3600) == timedelta(minutes=15)


def test_complaint_verdict_needs_the_line_exceeded_after_enough_deliveries() -> None:
    assert complaint_verdict(1000, 3, 0, 0.003, 1000) is None  # 0.3%: at the line, not over
    reason = complaint_verdict(1000, 4, 0, 0.003, 1000)
    assert reason is not None and "4 spam complaint(s)" in reason and "0.40%" in reason
    assert complaint_verdict(999, 10, 0, 0.003, 1000) is None  # too few delivered yet
    assert complaint_verdict(1000, 4, 4, 0.003, 1000) is None  # acknowledged by a resume
    assert complaint_verdict(1000, 8, 4, 0.003, 1000) is not None  # new ones over the line
    assert complaint_verdict(1000, 50, 0, 0.0, 1000) is None  # turned off


def test_providers_group_by_mx_and_look_each_domain_up_once() -> None:
    asked: list[str] = []
    mx = {"gmail.com": "gmail-smtp-in.l.google.com", "googlemail.com": "gmail-smtp-in.l.google.com"}

    def lookup(domain: str) -> str | None:
        asked.append(domain)
        return mx.get(domain)

    providers = Providers(lookup)
    a = providers.of("kim@gmail.com")
    b = providers.of("lee@GoogleMail.com")
    c = providers.of("park@news.example.kr")
    providers.of("choi@gmail.com")
    assert a.key == b.key == "mx:gmail-smtp-in.l.google.com"
    assert a.label == "gmail.com (MX gmail-smtp-in.l.google.com)"
    assert c.key == "domain:news.example.kr" and c.label == "news.example.kr"
    assert providers.domains(a.key) == ["gmail.com", "googlemail.com"]
    assert asked == ["gmail.com", "googlemail.com", "news.example.kr"]
    # Grouping by MX turned off: by domain, no lookup at all.
    assert Providers(None).of("kim@gmail.com").key == "domain:gmail.com"


# --- provider refusals during a send -------------------------------------------------------------

GMAIL = [f"g{i}@gmail.example" for i in range(1, 7)]
OTHERS = [f"o{i}@other.example" for i in range(1, 4)]
# In id order (the order one connection sends them): the provider's streak runs across others.
ORDER = [GMAIL[0], OTHERS[0], GMAIL[1], GMAIL[2], GMAIL[3], OTHERS[1], GMAIL[4], GMAIL[5]]
ORDER.append(OTHERS[2])


def guarded(settings: Settings, tmp_path: Path, smtp: SmtpServer, **extra: object) -> Settings:
    # One connection, so "in a row" is the ledger's id order; no DNS in tests.
    return use_smtp(
        settings,
        tmp_path,
        smtp,
        concurrency=1,
        batch_size=50,
        provider_group_by_mx=False,
        **extra,
    )


def rows(settings: Settings) -> dict[str, Delivery]:
    with session_scope(settings) as s:
        return {d.email: d for d in s.scalars(select(Delivery))}


def the_holds(settings: Settings) -> list[ProviderHold]:
    with session_scope(settings) as s:
        found = list(s.scalars(select(ProviderHold)))
        s.expunge_all()
        return found


@pytest.mark.parametrize(
    "reply, summary",
    [(UNAUTHENTICATED, "5.7.26 unauthenticated"), (THROTTLED, "421 4.7.0 try again later")],
)
def test_a_provider_refusing_the_sender_defers_its_recipients_with_backoff(
    settings: Settings,
    tmp_path: Path,
    smtp: SmtpServer,
    release: Path,
    cli: Cli,
    reply: str,
    summary: str,
) -> None:
    settings = guarded(settings, tmp_path, smtp)
    populate(settings, [(e, "", "en") for e in ORDER])
    for address in GMAIL:
        smtp.sink.plan(address, reply)
    start = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    clock.set_clock(lambda: start)
    cli("send", str(release), "--list", "press", "--yes")

    ledger = rows(settings)
    [hold] = the_holds(settings)
    assert (hold.provider, hold.summary, hold.level) == ("domain:gmail.example", summary, 1)
    assert hold.held_until == start + timedelta(minutes=15)
    # Three refusals in a row, then the rest of the provider's recipients were never tried.
    assert [smtp.sink.attempts[a] for a in GMAIL] == [1, 1, 1, 0, 0, 0]
    for address in GMAIL:
        row = ledger[address]
        assert row.status == DeliveryStatus.DEFERRED, (address, row.smtp_reply)
        assert row.next_attempt_at == hold.held_until
        assert row.claimed_by is None and row.sent_at is None
    assert ledger[GMAIL[0]].smtp_code == int(reply.removeprefix("data:")[:3])
    assert "gmail.example refused the sender" in (ledger[GMAIL[4]].smtp_reply or "")
    assert ledger[GMAIL[4]].attempts == 0  # never tried: no attempt counted
    # Other providers are delivered; nobody is suppressed for the provider's refusal.
    assert {ledger[a].status for a in OTHERS} == {DeliveryStatus.SENT}
    assert sorted(a for r in smtp.sink.received for a in r.rcpt_tos) == sorted(OTHERS)
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0
        assert s.scalars(select(Campaign)).one().status == CampaignStatus.SENDING
        [event] = s.scalars(select(Event).where(Event.kind == "campaign.provider_hold"))
        assert (event.data["provider"], event.data["level"]) == ("gmail.example", 1)
    shown = cli("campaigns", "show", "1").output
    assert f"gmail.example: {summary}, 6 deferred until 2026-12-02 10:15" in shown
    assert shown.index("gmail.example:") < shown.index("status:")  # at the top

    # Before the hold ends nothing is tried; after it, a second refusal streak doubles the wait.
    clock.set_clock(lambda: start + timedelta(minutes=10))
    cli("campaigns", "resume", "1")
    assert sum(smtp.sink.attempts[a] for a in GMAIL) == 3
    later = start + timedelta(minutes=20)
    clock.set_clock(lambda: later)
    smtp.sink.script.clear()
    for address in GMAIL:
        smtp.sink.plan(address, reply)
    cli("campaigns", "resume", "1")
    [hold] = the_holds(settings)
    assert hold.level == 2 and hold.held_until == later + timedelta(minutes=30)
    assert sum(smtp.sink.attempts[a] for a in GMAIL) == 6
    assert {r.status for a, r in rows(settings).items() if a in GMAIL} == {DeliveryStatus.DEFERRED}

    # The provider takes our mail again: everyone gets it once and the hold is lifted.
    smtp.sink.script.clear()
    clock.set_clock(lambda: later + timedelta(hours=1))
    out = cli("campaigns", "resume", "1").output
    assert "done" in out
    assert the_holds(settings) == []
    got = sorted(a for r in smtp.sink.received for a in r.rcpt_tos)
    assert got == sorted(GMAIL + OTHERS)
    assert {r.status for r in rows(settings).values()} == {DeliveryStatus.SENT}


def test_refusals_below_the_streak_are_recorded_as_the_server_said(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = guarded(settings, tmp_path, smtp)
    populate(settings, [(e, "", "en") for e in ORDER])
    smtp.sink.plan(GMAIL[0], UNAUTHENTICATED)
    smtp.sink.plan(GMAIL[1], UNAUTHENTICATED)
    # "Mailbox unavailable" reads as an unknown address to old servers' rules, but this is the
    # provider blocking us: the recipient is not suppressed.
    smtp.sink.plan(GMAIL[3], "550 Mailbox unavailable: your IP is blocked as spam")
    cli("send", str(release), "--list", "press", "--yes")
    ledger = rows(settings)
    assert [ledger[a].status.value for a in GMAIL] == [
        "failed",
        "failed",
        "sent",  # ends the streak: no hold
        "failed",
        "sent",
        "sent",
    ]
    assert the_holds(settings) == []
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Suppression)) == 0


# --- complaints ----------------------------------------------------------------------------------

AUDIENCE = 1010
DELIVERED = 1000


def half_sent(settings: Settings) -> int:
    """A sending campaign to AUDIENCE readers whose first DELIVERED rows were sent."""
    from mailer.delivery.planning import plan_campaign, store_release

    bulk_audience(settings, AUDIENCE)
    with session_scope(settings) as s:
        release = store_release(s, "r", "R", "en", {"en": "---\ntitle: R\n---\nBody"}, {}, "h")
        campaign = plan_campaign(s, settings, release, ["press"]).campaign
        campaign.status = CampaignStatus.SENDING
        campaign.started_at = clock.now()
        cid = campaign.id
    with session_scope(settings) as s:
        first = list(s.scalars(select(Delivery.id).order_by(Delivery.id).limit(DELIVERED)))
        s.execute(
            update(Delivery)
            .where(Delivery.id.in_(first))
            .values(status=DeliveryStatus.SENT, attempts=1, sent_at=clock.now(), smtp_code=250)
        )
    return cid


def arf_about(settings: Settings, n: int) -> bytes:
    """The corpus's AOL abuse report, rewritten to be about reader n's message."""
    with session_scope(settings) as s:
        email, mid = s.execute(
            select(Delivery.email, Delivery.message_id).where(
                Delivery.email == f"r{n:05d}@example.org"
            )
        ).one()
    raw = (CORPUS / "09-arf-aol-abuse.eml").read_bytes()
    local, _, domain = email.partition("@")
    for old, new in (
        (b"lim.taeyang@aol.example", email),
        (b"lim.taeyang=aol.example", f"{local}={domain}"),
        (b"<c1.r9.a1b2c3d4e5@hanul.example.org>", mid),
        (b"<fbl.20250304162033.71234@aol.example>", f"<fbl.{n}@aol.example>"),
    ):
        assert old in raw
        raw = raw.replace(old, new.encode())
    return raw


def campaign_row(settings: Settings, cid: int) -> Campaign:
    with session_scope(settings) as s:
        c = s.get_one(Campaign, cid)
        s.expunge(c)
        return c


def test_complaints_over_the_line_pause_the_campaign_through_bounce_processing(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    cid = half_sent(settings)
    for n in range(3):  # 3 of 1,000: at the 0.3% line, not over it
        with session_scope(settings) as s:
            [item] = process_message(s, settings, f"k{n}", arf_about(settings, n))
            assert (item.outcome, item.campaign_id) == ("complaint", cid)
    assert campaign_row(settings, cid).status == CampaignStatus.SENDING
    with session_scope(settings) as s:
        process_message(s, settings, "k3", arf_about(settings, 3))
    c = campaign_row(settings, cid)
    assert c.status == CampaignStatus.PAUSED
    assert c.pause_reason is not None and "4 spam complaint(s)" in c.pause_reason
    assert "1,000 delivered" in c.pause_reason and "0.40%" in c.pause_reason
    with session_scope(settings) as s:
        [event] = s.scalars(select(Event).where(Event.kind == "campaign.guard_pause"))
        assert (event.campaign_id, event.actor, event.data["complaints"]) == (cid, "bounces", 4)
    assert "PAUSED ITSELF: 4 spam complaint(s)" in cli("campaigns", "show", str(cid)).output
    assert f"Campaign {cid} paused itself: 4 spam" in cli("campaigns", "ls").output
    # The worker leaves it alone; a resume clears the reason and sends the rest.
    out = cli("campaigns", "resume", str(cid)).output
    assert "done" in out
    c = campaign_row(settings, cid)
    assert (c.status, c.pause_reason, c.complaints_acknowledged) == (CampaignStatus.DONE, None, 4)
    assert len(smtp.sink.received) == AUDIENCE - DELIVERED
    assert "PAUSED ITSELF" not in cli("campaigns", "show", str(cid)).output
    with session_scope(settings) as s:
        resumed = s.scalars(select(Event).where(Event.kind == "campaign.resume")).one()
        assert "4 spam complaint(s)" in resumed.data["cleared"]


def test_the_sender_pauses_a_campaign_whose_complaints_are_over_the_line(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, cli: Cli
) -> None:
    settings = use_smtp(settings, tmp_path, smtp)
    cid = half_sent(settings)
    # Complaints recorded while no bounce processing looked at the rate (e.g. applied from
    # review, or by an earlier version): the sender's own check sees them.
    with session_scope(settings) as s:
        for d in s.scalars(select(Delivery).order_by(Delivery.id).limit(5)):
            s.add(
                Bounce(
                    source_message_id=f"<c{d.id}@isp.example>",
                    email=d.email,
                    kind="complaint",
                    delivery_id=d.id,
                    campaign_id=cid,
                )
            )
    cli("campaigns", "resume", str(cid))
    assert smtp.sink.received == []
    c = campaign_row(settings, cid)
    assert c.status == CampaignStatus.PAUSED
    assert c.pause_reason is not None and "5 spam complaint(s)" in c.pause_reason
    with session_scope(settings) as s:
        [event] = s.scalars(select(Event).where(Event.kind == "campaign.guard_pause"))
        assert event.actor != "bounces" and event.data["delivered"] == DELIVERED
        assert s.scalar(select(func.count()).where(Delivery.status == DeliveryStatus.PENDING)) == (
            AUDIENCE - DELIVERED
        )
    # `mailer worker` does not resume a paused campaign; the operator does.
    out = cli("campaigns", "resume", str(cid)).output
    assert "done" in out
    c = campaign_row(settings, cid)
    assert (c.status, c.pause_reason, c.complaints_acknowledged) == (CampaignStatus.DONE, None, 5)
    assert len(smtp.sink.received) == AUDIENCE - DELIVERED


def test_the_guard_pauses_only_a_sending_campaign(settings: Settings) -> None:
    cid = half_sent(settings)
    with session_scope(settings) as s:
        for d in s.scalars(select(Delivery).order_by(Delivery.id).limit(5)):
            s.add(
                Bounce(
                    source_message_id=f"<x{d.id}@isp.example>",
                    email=d.email,
                    kind="complaint",
                    delivery_id=d.id,
                    campaign_id=cid,
                )
            )
        s.get_one(Campaign, cid).status = CampaignStatus.DONE
    with session_scope(settings) as s:
        assert guards.check_complaints(s, settings, cid, "test") is None
    with session_scope(settings) as s:
        s.get_one(Campaign, cid).status = CampaignStatus.SENDING
    with session_scope(settings) as s:
        assert guards.check_complaints(s, settings, cid, "test") is not None
        assert guards.check_complaints(s, settings, cid, "test") is None  # already paused
