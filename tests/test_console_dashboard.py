"""The console's dashboard: list sizes and growth (the chart and its table), scheduled and
recent campaigns, and bounce and complaint rates against the 0.3% line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.messages.extract import extract
from jinja2.ext import babel_extract
from markupsafe import escape
from sqlalchemy import event, insert, select
from sqlalchemy.orm import Session

from mailer import clock, translations
from mailer.bounces import review
from mailer.bounces.policy import process_message
from mailer.config import Settings
from mailer.contacts import stats
from mailer.contacts.contact import add_contact, unsubscribe
from mailer.contacts.lists import create_list, get_list
from mailer.delivery import rates
from mailer.staff import accounts
from mailer.store.db import get_engine, session_scope
from mailer.store.models import (
    Bounce,
    BounceReview,
    Campaign,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    Release,
    Subscription,
)
from tests.support.bounces import arf
from tests.support.console import Console
from tests.support.forgery import VICTIM, Sent

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def at_now() -> Iterator[None]:
    """The clock pinned, so the chart's weeks fall on known days (the settings fixture unpins)."""
    clock.set_clock(lambda: NOW)
    yield


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def subscribe_at(s: Session, email: str, slug: str, when: datetime) -> None:
    with clock.pinned(when):
        add_contact(s, email, slug)


def seed_growth(settings: Settings) -> None:
    """press: a (100 days), b (20 days), c (60 days, left 10 days ago), d pending; people: e (5)."""
    with session_scope(settings) as s:
        with clock.pinned(days_ago(200)):
            create_list(s, "press", "Press", names={"ko": "기자단"})
            create_list(s, "people", "People")
        subscribe_at(s, "a@example.org", "press", days_ago(100))
        subscribe_at(s, "b@example.org", "press", days_ago(20))
        subscribe_at(s, "c@example.org", "press", days_ago(60))
        with clock.pinned(days_ago(10)):
            unsubscribe(s, "c@example.org", "press")
        subscribe_at(s, "e@example.org", "people", days_ago(5))
        person = Contact(email="d@example.org", email_original="d@example.org")
        s.add(person)
        s.flush()
        s.add(Subscription(contact_id=person.id, list_id=get_list(s, "press").id, status="pending"))


# Sizes at the 13 weekly points, oldest first (see seed_growth): a from the start; c from 60
# days back (points 4..) until 10 days back (before point 11); b from 20 days back (points 10..).
PRESS = [1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 2, 2]
PEOPLE = [0] * 12 + [1]


@pytest.mark.db
def test_growth_from_the_library(console: Console, at_now: None) -> None:
    seed_growth(console.settings)
    with session_scope(console.settings) as s:
        growth = stats.list_growth(s)
    assert growth.points[0] == NOW - timedelta(weeks=12) and growth.points[-1] == NOW
    press, people = growth.one("press"), growth.one("people")
    assert press is not None and people is not None
    assert [g.slug for g in growth.lists] == ["people", "press"]
    assert press.counts == {"pending": 1, "subscribed": 2, "unsubscribed": 1}
    assert (press.joined, press.left) == (1, 1)  # b joined, c left, in the last 30 days
    assert (people.joined, people.left) == (1, 0)
    assert press.sizes == PRESS and people.sizes == PEOPLE
    assert growth.total_sizes == [a + b for a, b in zip(PRESS, PEOPLE, strict=True)]


def figures(page: str) -> list[tuple[str, int]]:
    """The chart's table: (day, subscribed) rows."""
    table = page.split('class="chart-data"', 1)[1].split("</details>", 1)[0]
    rows = re.findall(r'<th scope="row">([\d-]+)</th><td class="num">([\d,]+)</td>', table)
    return [(day, int(n.replace(",", ""))) for day, n in rows]


@pytest.mark.db
def test_the_chart_and_its_table(console: Console, at_now: None) -> None:
    seed_growth(console.settings)
    viewer = console.signed_in("viewer")
    page = viewer.get("/admin/").text
    days = [f"{NOW - timedelta(weeks=12 - k):%Y-%m-%d}" for k in range(13)]
    totals = [a + b for a, b in zip(PRESS, PEOPLE, strict=True)]
    assert figures(page) == list(zip(days, totals, strict=True))
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert 'role="img"' in svg and 'aria-labelledby="chart-title chart-desc"' in svg
    assert svg.count('<rect class="bar"') == 13
    assert f"<title>{days[10]}: 3</title>" in svg
    assert f"1 on {days[0]}, 3 on {days[-1]}." in svg  # the description says what it shows
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', svg)]
    assert heights.index(max(heights)) == 10 and heights[0] < heights[4] < heights[10]

    # One list's chart, chosen with a plain GET form.
    press = viewer.get("/admin/?list=press").text
    assert figures(press) == list(zip(days, PRESS, strict=True))
    assert '<option value="press" selected>' in press
    assert figures(viewer.get("/admin/?list=nothing-like-it").text) == figures(page)

    # The lists table: subscribed, pending, joined and left in 30 days, net change.
    row = page.split('href="/admin/lists/press"', 1)[1].split("</tr>", 1)[0]
    assert re.findall(r'<td class="num">([^<]*)</td>', row) == ["2", "1", "1", "1", "0"]


def add_campaign(
    s: Session,
    title: str,
    status: CampaignStatus,
    *,
    sent: int = 0,
    failed: int = 0,
    pending: int = 0,
    when: datetime = NOW,
    started: datetime | None = None,
    not_before: datetime | None = None,
) -> tuple[Campaign, list[int]]:
    """A campaign with its ledger rows, sent `when` (the ids of its sent rows are returned).
    Done and cancelled campaigns finish `when`, as the sender and `campaigns cancel` do."""
    release = Release(
        slug=title.lower()[:20],
        title=title,
        default_language="en",
        content_hash=f"{abs(hash(title)):064d}"[:64],
    )
    s.add(release)
    s.flush()
    campaign = Campaign(
        release_id=release.id,
        audience_key="press",
        audience={"lists": ["press"]},
        status=status,
        not_before=not_before,
        created_at=started or when,
        started_at=None if status == CampaignStatus.SCHEDULED else started or when,
        finished_at=when if status in (CampaignStatus.DONE, CampaignStatus.CANCELLED) else None,
    )
    s.add(campaign)
    s.flush()
    add_rows(s, campaign, DeliveryStatus.FAILED, failed, when)
    add_rows(s, campaign, DeliveryStatus.PENDING, pending, when)
    return campaign, add_rows(s, campaign, DeliveryStatus.SENT, sent, when)


def add_rows(
    s: Session, campaign: Campaign, status: DeliveryStatus, n: int, when: datetime
) -> list[int]:
    """`n` ledger rows of `campaign` in `status`, sent (or last touched) `when`; their ids."""
    if not n:
        return []
    first = s.query(Delivery).filter(Delivery.campaign_id == campaign.id).count()
    rows = [
        {
            "campaign_id": campaign.id,
            "email": f"r{i}@example.org",
            "language": "en",
            "status": status,
            "message_id": f"<c{campaign.id}.{i}@example.org>",
            "sent_at": when if status != DeliveryStatus.PENDING else None,
            "updated_at": when,
        }
        for i in range(first, first + n)
    ]
    s.execute(insert(Delivery), rows)
    query = select(Delivery.id).where(
        Delivery.campaign_id == campaign.id,
        Delivery.status == status,
        Delivery.email.in_([r["email"] for r in rows]),
    )
    return sorted(s.scalars(query))


_reports = iter(range(10**6))


def report(s: Session, campaign: Campaign, delivery_id: int, kind: str, *, held: str = "") -> None:
    """A bounce report about one delivery; `held`: the state of its review (none: proven)."""
    bounce = Bounce(
        source_message_id=f"<report{next(_reports)}@isp.example>",
        email="someone@example.org",
        kind=kind,
        delivery_id=delivery_id,
        campaign_id=campaign.id,
        created_at=NOW,
    )
    s.add(bounce)
    s.flush()
    if held:
        s.add(
            BounceReview(
                bounce_id=bounce.id,
                email="someone@example.org",
                action=kind,
                why="forged?",
                state=held,
            )
        )


def stat(page: str, ident: str) -> str:
    block = page.split(f'id="{ident}">', 1)[1].split("</div>", 1)[0]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", block)).strip()


@pytest.mark.db
def test_rates_against_the_complaint_line(console: Console, at_now: None) -> None:
    with session_scope(console.settings) as s:
        old, old_ids = add_campaign(s, "Old news", CampaignStatus.DONE, sent=500, when=days_ago(40))
        for delivery_id in old_ids[:50]:
            report(s, old, delivery_id, "complaint")  # 10%, but not in the last 30 days
        budget, ids = add_campaign(
            s, "Budget", CampaignStatus.DONE, sent=990, failed=10, when=days_ago(3)
        )
        for delivery_id in ids[:5]:
            report(s, budget, delivery_id, "hard")
        report(s, budget, ids[0], "soft")  # a second report about a bounced message
        report(s, budget, ids[5], "delayed")  # not a bounce
        report(s, budget, ids[10], "complaint")
        report(s, budget, ids[11], "complaint")
        report(s, budget, ids[12], "complaint", held="pending")  # unproven: not counted
        report(s, budget, ids[13], "complaint", held="dismissed")
        report(s, budget, ids[14], "hard", held="applied")  # a person applied it: counted
        add_campaign(
            s,
            "Election night",
            CampaignStatus.SCHEDULED,
            pending=200,
            not_before=NOW + timedelta(days=2),
        )

    with session_scope(console.settings) as s:
        recent = rates.recent_rates(s)
        per = rates.campaign_rates(s, [old.id, budget.id])
    assert (recent.messages, recent.bounced, recent.complained) == (1000, 16, 2)
    assert recent.complaint_rate == pytest.approx(0.002) and not recent.over_line
    assert per[old.id].over_line and per[old.id].complained == 50
    assert (per[budget.id].messages, per[budget.id].bounced) == (1000, 16)

    viewer = console.signed_in("viewer")
    page = viewer.get("/admin/").text
    assert stat(page, "complaint-rate").startswith("Complaint rate 0.20% 2 of 1,000 messages")
    assert "Below 0.3%" in stat(page, "complaint-rate")
    assert "Over the 0.3% line" not in stat(page, "complaint-rate")
    assert 'role="alert"' not in page
    assert "1.60%" in page  # the 30-day bounce rate

    # Per campaign: the old one is over the line (10%), flagged in words, not colour alone.
    recent_table = page.split('id="recent-heading"', 1)[1]
    old_row = recent_table.split("Old news", 1)[1].split("</tr>", 1)[0]
    assert "10.00%" in old_row and "Over the 0.3% line" in old_row
    budget_row = recent_table.split("Budget", 1)[1].split("</tr>", 1)[0]
    cells = re.findall(r'<td class="num">([^<]*)</td>', budget_row)
    assert cells == ["1,000", "990", "10", "0", "1.60%"]  # recipients, sent, failed, waiting
    assert "Over the" not in budget_row

    scheduled = page.split('id="scheduled-heading"', 1)[1].split("</section>", 1)[0]
    assert "Election night" in scheduled and "Scheduled" in scheduled
    assert f"{NOW + timedelta(days=2):%Y-%m-%d %H:%M}" in scheduled
    assert re.findall(r'<td class="num">([^<]*)</td>', scheduled) == ["200", "0", "0", "200"]
    assert "Election night" not in recent_table

    # One more complaint: 3 in 1,000 is 0.3%, on the line, which is over it.
    with session_scope(console.settings) as s:
        report(s, budget, ids[20], "complaint")
    page = viewer.get("/admin/").text
    assert "0.30%" in stat(page, "complaint-rate")
    assert "Over the 0.3% line" in stat(page, "complaint-rate")
    assert 'role="alert"' in page and "Gmail and Yahoo may send your mail to spam" in page


@pytest.mark.db
def test_the_window_counts_messages_by_when_each_was_sent(console: Console, at_now: None) -> None:
    with session_scope(console.settings) as s:
        # Started before the window, finished inside it: its messages of 20 days ago count.
        add_campaign(
            s, "Spring", CampaignStatus.DONE, sent=7, started=days_ago(60), when=days_ago(20)
        )
        # Finished before the window: nothing counts.
        add_campaign(s, "Winter", CampaignStatus.DONE, sent=50, when=days_ago(35))
        add_campaign(s, "Dropped", CampaignStatus.CANCELLED, failed=5, when=days_ago(31))
        # Still sending after three months: only what it sent in the window counts.
        slow, _ = add_campaign(
            s,
            "Slow",
            CampaignStatus.SENDING,
            sent=11,
            failed=1,
            when=days_ago(50),
            started=days_ago(90),
        )
        add_rows(s, slow, DeliveryStatus.SENT, 4, days_ago(1))
        add_rows(s, slow, DeliveryStatus.FAILED, 2, days_ago(2))
        add_rows(s, slow, DeliveryStatus.PENDING, 9, days_ago(2))  # not sent: not a message
    with session_scope(console.settings) as s:
        recent = rates.recent_rates(s)
        per = rates.campaign_rates(s, [slow.id])
    assert (recent.messages, recent.bounced) == (7 + 4 + 2, 2)
    assert (per[slow.id].messages, per[slow.id].bounced) == (11 + 1 + 4 + 2, 3)
    page = console.signed_in("viewer").get("/admin/").text
    assert "2 of 13 messages bounced" in page


@pytest.mark.db
@pytest.mark.slow
def test_a_real_complaint_read_from_the_bounce_mailbox(console: Console, sent: Sent) -> None:
    """A campaign really sent to three people; a genuine complaint about one message counts, a
    forged one (held for review) does not."""
    with session_scope(sent.settings) as s:
        kim = sent.received["kim@news.example.kr"]
        [genuine] = process_message(
            s, sent.settings, "1", arf("x@isp.example", about=kim.message_id)
        )
        [forged] = process_message(s, sent.settings, "2", arf(VICTIM))
    assert genuine.action == "suppressed" and "held" in forged.action
    page = console.signed_in("viewer").get("/admin/").text
    block = stat(page, "complaint-rate")
    assert "33.33%" in block and "1 of 3 messages" in block and "Over the 0.3% line" in block


@contextmanager
def queries(settings: Settings) -> Iterator[list[str]]:
    """The SQL statements run on the test's database inside the block."""
    seen: list[str] = []
    engine = get_engine(settings)

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", note)


@pytest.mark.db
def test_the_number_of_queries_does_not_grow_with_lists_or_campaigns(
    console: Console, at_now: None
) -> None:
    """Aggregated SQL: more lists, campaigns and contacts add no query."""
    seed_growth(console.settings)
    with session_scope(console.settings) as s:
        add_campaign(s, "One", CampaignStatus.DONE, sent=3)
        add_campaign(s, "Soon", CampaignStatus.SCHEDULED, pending=3)
    viewer = console.signed_in("viewer")
    with queries(console.settings) as small:
        assert viewer.get("/admin/").status_code == 200
    with session_scope(console.settings) as s:
        for n in range(5):
            create_list(s, f"more{n}", f"More {n}")
            add_campaign(s, f"Two {n}", CampaignStatus.DONE, sent=20, failed=2)
            add_campaign(s, f"Later {n}", CampaignStatus.SCHEDULED, pending=5)
        s.execute(
            insert(Contact),
            [
                {"email": f"p{i}@example.org", "email_original": f"p{i}@example.org"}
                for i in range(1000)
            ],
        )
    with queries(console.settings) as large:
        assert viewer.get("/admin/").status_code == 200
    assert len(large) == len(small), large


@pytest.mark.db
def test_hostile_titles_and_names_are_shown_as_text(console: Console, at_now: None) -> None:
    hostile = '<script>alert("x")</script>'
    with session_scope(console.settings) as s:
        create_list(s, "press", hostile)
        add_contact(s, "a@example.org", "press")
        add_campaign(s, hostile + " release", CampaignStatus.DONE, sent=1)
        add_campaign(s, hostile + " later", CampaignStatus.SCHEDULED, pending=1)
    page = console.signed_in("viewer").get("/admin/?list=press").text
    assert "<script>alert" not in page
    assert page.count(str(escape(hostile))) >= 4  # list table, chooser, heading, two campaigns


@pytest.mark.db
def test_an_empty_database(console: Console) -> None:
    page = console.signed_in("viewer").get("/admin/")
    assert page.status_code == 200
    assert "No lists yet." in page.text and "No campaign is scheduled." in page.text
    assert figures(page.text)[-1][1] == 0 and "Complaint rate –" in stat(
        page.text, "complaint-rate"
    )


@pytest.mark.db
def test_korean_dashboard(console: Console, at_now: None) -> None:
    seed_growth(console.settings)
    console.add_user("kim@staff.example.org", "viewer")
    with session_scope(console.settings) as s:
        accounts.set_language(s, accounts.get(s, "kim@staff.example.org"), "ko")
    page = console.signed_in("viewer", "kim@staff.example.org").get("/admin/").text
    assert "스팸 신고율" in page and "주별 구독자 수" in page and "순증감" in page


def test_the_library_agrees_with_the_bounce_review() -> None:
    """rates.py spells the review's "applied" state out (to skip loading the parsers)."""
    assert rates._APPLIED == review.APPLIED
    assert set(rates.BOUNCE_KINDS) <= set(review.NOT_DELIVERED)


FILES = ["templates/console/dashboard.html", "mailer/web/console/dashboard.py"]


def marked(path: Path) -> list[str]:
    method = babel_extract if path.suffix == ".html" else "python"
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2)}
    with path.open("rb") as fh:
        found = extract(method, fh, keywords=keywords)  # type: ignore[arg-type]
        return [m if isinstance(m, str) else m[0] for _, m, _, _ in found]


def test_every_word_of_the_dashboard_is_in_korean() -> None:
    catalog = translations.catalog("ko")
    messages = {m for f in FILES for m in marked(ROOT / f)}
    assert len(messages) > 40
    missing = sorted(m for m in messages if not getattr(catalog.get(m), "string", ""))
    assert not missing, missing
