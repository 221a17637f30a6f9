"""Engagement after the click: reports, the CSV, `clicked` segments, retention, erasure, the
preference switch and the footer that says a list records who follows which link.

A campaign is built with known clicks (human, machine, opens; a per-person press list and an
aggregate newsletter) and every figure is checked against what was written. Both engines.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import mailbox
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer import clock, tokens
from mailer.config import Settings, load_settings
from mailer.contacts.filters import FilterError, compile_where
from mailer.contacts.lists import create_list
from mailer.engagement import report
from mailer.engagement.retention import PURGE_ROW, purge_when_due
from mailer.engagement.tokens import signer
from mailer.store.db import session_scope
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Click,
    Contact,
    Delivery,
    DeliveryStatus,
    Lock,
    MailingList,
    Release,
    Subscription,
    SubscriptionStatus,
    TrackedLink,
)
from mailer.subscribers.queue import send_due
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.console import Console
from tests.support.sending import populate
from tests.support.web import html_part, text_part

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SENT = NOW - timedelta(days=2)


@dataclass
class World:
    press: int  # campaign to the press list (per person)
    news: int  # campaign to the newsletter (aggregate)
    people: dict[str, int]  # contact ids by short name
    links: dict[str, int]  # tracked_link ids


def _contact(s: Session, key: str, name: str, outlet: str, beat: str, lang: str) -> Contact:
    c = Contact(
        email=f"{key}@example.org",
        email_original=f"{key}@example.org",
        name=name,
        organisation=outlet,
        beat=beat,
        language=lang,
    )
    s.add(c)
    s.flush()
    return c


def _campaign(s: Session, slug: str) -> Campaign:
    release = Release(
        slug=slug,
        title=slug.title(),
        default_language="en",
        content_hash=(slug * 64)[:64],
        variants={"en": {}, "ko": {}},
    )
    s.add(release)
    s.flush()
    campaign = Campaign(release_id=release.id, audience_key=slug, status=CampaignStatus.DONE)
    s.add(campaign)
    s.flush()
    return campaign


def _click(
    s: Session,
    link: TrackedLink,
    contact: int | None,
    at: datetime,
    *,
    machine: str = "",
    kind: str = "click",
) -> None:
    s.add(
        Click(
            link_id=link.id if kind == "click" else None,
            campaign_id=link.campaign_id,
            language=link.language,
            contact_id=contact,
            at=at,
            machine=bool(machine),
            machine_reason=machine,
            kind=kind,
        )
    )


def build(settings: Settings) -> World:
    """A press campaign (per person) and a newsletter campaign (aggregate), with known clicks.

    Press: Kim (ko) clicks link A twice and B once, her first human click at SENT+1h (a
    scanner's click at SENT+5s comes before and must not count); Park's only clicks are a
    scanner's; Lee switched tracking off (so a click of his names nobody); Jane is erased later
    in one test. An open by a person and one by a proxy.
    Newsletter: three human clicks and one machine click, naming nobody."""
    with session_scope(settings) as s:
        press = create_list(s, "press", "Press", press=True)
        news = create_list(s, "news", "News")
        assert press.track_people and not news.track_people
        people = {
            "kim": _contact(s, "kim", "김민수", '=HYPERLINK("x")', "politics", "ko"),
            "park": _contact(s, "park", "Park Seo", "Daily", "economy", "en"),
            "lee": _contact(s, "lee", "David Lee", "Radio One", "", "en"),
            "jane": _contact(s, "jane", "Jane Roe", "Tribune", "courts", "en"),
            "ann": _contact(s, "ann", "Ann Reader", "", "", "en"),
        }
        people["lee"].track_people_off = True
        for key in ("kim", "park", "lee", "jane"):
            s.add(
                Subscription(
                    contact_id=people[key].id,
                    list_id=press.id,
                    status=SubscriptionStatus.SUBSCRIBED,
                    source="test",
                )
            )
        s.add(
            Subscription(
                contact_id=people["ann"].id,
                list_id=news.id,
                status=SubscriptionStatus.SUBSCRIBED,
                source="test",
            )
        )
        c_press, c_news = _campaign(s, "press-day"), _campaign(s, "newsletter")
        for campaign, ml, keys in (
            (c_press, press, ("kim", "park", "lee", "jane")),
            (c_news, news, ("ann",)),
        ):
            for key in keys:
                c = people[key]
                s.add(
                    Delivery(
                        campaign_id=campaign.id,
                        contact_id=c.id,
                        list_id=ml.id,
                        email=c.email,
                        language=c.language or "en",
                        status=DeliveryStatus.SENT,
                        sent_at=SENT,
                        message_id=f"<{campaign.id}.{c.id}@example.org>",
                    )
                )
        links = {
            "a_ko": TrackedLink(
                campaign_id=c_press.id, language="ko", position=0, url="https://a.example/ko"
            ),
            "b_ko": TrackedLink(
                campaign_id=c_press.id, language="ko", position=1, url="https://b.example/ko"
            ),
            "a_en": TrackedLink(
                campaign_id=c_press.id, language="en", position=0, url="https://a.example/en"
            ),
            "n_en": TrackedLink(
                campaign_id=c_news.id, language="en", position=0, url="https://n.example/"
            ),
        }
        s.add_all(links.values())
        s.flush()
        kim, park, jane = people["kim"].id, people["park"].id, people["jane"].id
        _click(s, links["a_ko"], kim, SENT + timedelta(seconds=5), machine="early")
        _click(s, links["a_ko"], kim, SENT + timedelta(hours=1))
        _click(s, links["a_ko"], kim, SENT + timedelta(hours=2))
        _click(s, links["b_ko"], kim, SENT + timedelta(hours=3))
        _click(s, links["a_en"], park, SENT + timedelta(seconds=2), machine="agent")
        _click(s, links["a_en"], None, SENT + timedelta(hours=4))  # Lee: tracking off
        _click(s, links["a_en"], jane, SENT + timedelta(hours=5))
        _click(s, links["a_ko"], kim, SENT + timedelta(minutes=30), kind="open")
        _click(s, links["a_ko"], None, SENT + timedelta(seconds=1), machine="agent", kind="open")
        for n in range(3):
            _click(s, links["n_en"], None, SENT + timedelta(hours=n + 1))
        _click(s, links["n_en"], None, SENT + timedelta(seconds=3), machine="head")
        return World(
            press=c_press.id,
            news=c_news.id,
            people={k: v.id for k, v in people.items()},
            links={k: v.id for k, v in links.items()},
        )


@pytest.fixture
def world(settings: Settings) -> World:
    return build(settings)


# --- the figures -------------------------------------------------------------------------------


def test_report_figures_per_link_language_person(
    settings: Settings, session: Session, world: World
) -> None:
    e = report.engagement(session, world.press)
    by_url = {link["url"]: (link["human"], link["machine"]) for link in e["links"]}
    assert by_url == {
        "https://a.example/ko": (2, 1),
        "https://b.example/ko": (1, 0),
        "https://a.example/en": (2, 1),
    }
    assert e["by_language"] == {"en": {"human": 2, "machine": 1}, "ko": {"human": 3, "machine": 1}}
    assert (e["human_clicks"], e["machine_clicks"]) == (5, 2)
    # Kim and Jane: Park's clicks were a scanner's, Lee's name nobody.
    assert e["per_person"] is True and e["unique_clickers"] == 2
    engaged = [(p["name"], p["outlet"], p["beat"], p["clicks"]) for p in e["engaged"]]
    assert engaged == [
        ("김민수", '=HYPERLINK("x")', "politics", 3),
        ("Jane Roe", "Tribune", "courts", 1),
    ]
    # The first HUMAN click, not the scanner's five seconds after delivery.
    assert e["engaged"][0]["first_click"] == (SENT + timedelta(hours=1)).isoformat()
    assert e["opens"] == {"label": "opens (unreliable: includes machine opens)", "count": 2}


def test_aggregate_campaign_has_counts_only(session: Session, world: World) -> None:
    e = report.engagement(session, world.news)
    assert e["per_person"] is False
    assert e["unique_clickers"] is None and e["engaged"] == []
    assert [(x["url"], x["human"], x["machine"]) for x in e["links"]] == [
        ("https://n.example/", 3, 1)
    ]
    assert e["opens"] is None  # none recorded: no line at all


def test_campaigns_show_has_an_engagement_section(cli: Cli, world: World) -> None:
    out = cli("campaigns", "show", str(world.press)).output
    assert "engagement: 5 human click(s), 2 machine click(s)" in out
    assert "unique human clickers: 2" in out
    assert "[ko] human 3, machine 1" in out
    assert "https://b.example/ko" in out
    assert '김민수 (=HYPERLINK("x"), politics)  3 click(s)' in out
    assert "opens (unreliable: includes machine opens): 2" in out
    news = cli("campaigns", "show", str(world.news)).output
    assert "aggregate lists only" in news and "unique human clickers" not in news
    assert "opens" not in news
    data = cli("campaigns", "show", str(world.news), "--json").output
    assert '"engagement"' in data and '"unique_clickers": null' in data


def test_report_csv_has_guarded_engagement_columns(cli: Cli, world: World, tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    cli("campaigns", "report", str(world.press), "--csv", str(path))
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    by_email = {r["email"]: r for r in rows}
    assert list(rows[0])[-2:] == ["first_click", "clicks"]
    kim = by_email["kim@example.org"]
    assert (kim["first_click"], kim["clicks"]) == ((SENT + timedelta(hours=1)).isoformat(), "3")
    # Every cell through mailer.csvsafe: the outlet cannot run as a formula.
    assert kim["outlet"] == '\'=HYPERLINK("x")'
    # A scanner's clicks only: 0, no first click. Tracking off: nothing can be said (empty).
    assert (
        by_email["park@example.org"]["first_click"],
        by_email["park@example.org"]["clicks"],
    ) == (
        "",
        "0",
    )
    assert (by_email["lee@example.org"]["first_click"], by_email["lee@example.org"]["clicks"]) == (
        "",
        "",
    )
    news = tmp_path / "news.csv"
    cli("campaigns", "report", str(world.news), "--csv", str(news))
    (ann,) = csv.DictReader(io.StringIO(news.read_text(encoding="utf-8-sig")))
    assert (ann["first_click"], ann["clicks"]) == ("", "")  # aggregate: never "did not click"


# --- `clicked CAMPAIGN` ----------------------------------------------------------------------


def _where(session: Session, *expressions: str) -> set[str]:
    cond = compile_where(session, list(expressions), now=NOW)
    return {e.split("@")[0] for e in session.scalars(select(Contact.email).where(cond))}


def test_clicked_segment_both_ways(session: Session, world: World) -> None:
    assert _where(session, f"clicked {world.press}") == {"kim", "jane"}
    assert _where(session, f"clicked = {world.press}") == {"kim", "jane"}
    assert _where(session, f"not clicked {world.press}") == {"park", "lee", "ann"}
    assert _where(session, f"clicked != {world.press}") == {"park", "lee", "ann"}
    # Inside an `or` (a hashed IN rather than EXISTS): the same people.
    assert _where(session, f"clicked {world.press} or beat = economy") == {"kim", "jane", "park"}
    assert _where(session, f"clicked in ({world.press}, {world.news})") == {"kim", "jane"}
    # An aggregate campaign names nobody.
    assert _where(session, f"clicked {world.news}") == set()
    assert _where(session, f"list = press and not clicked {world.press}") == {"park", "lee"}


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("clicked 999", "no campaign 999"),
        ("clicked first", "clicked takes a campaign number"),
        ("clicked ~ 1", "clicked takes a campaign number, not ~"),
        ("clicked", "expected a campaign number (clicked 12)"),
        ("has clicked", "`has` does not apply to clicked"),
    ],
)
def test_clicked_errors_are_clear(session: Session, world: World, typed: str, words: str) -> None:
    with pytest.raises(FilterError) as caught:
        _where(session, typed)
    assert words in str(caught.value)


def test_clicked_through_the_cli(cli: Cli, world: World) -> None:
    out = cli("contacts", "ls", "--where", f"clicked {world.press}", "--json").output
    assert "kim@example.org" in out and "jane@example.org" in out
    assert "park@example.org" not in out


# --- retention and erasure -------------------------------------------------------------------


def _people_in_clicks(settings: Settings) -> dict[int | None, int]:
    with session_scope(settings) as s:
        return dict(
            s.execute(select(Click.contact_id, func.count()).group_by(Click.contact_id)).all()
        )


def test_retention_purge_forgets_people_keeps_counts(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    total = sum(_people_in_clicks(settings).values())
    write_config(tmp_path, {"database_url": settings.database_url, "engagement_retention_days": 1})
    cli = Cli(tmp_path / "mailer.toml")
    with clock.pinned(NOW):
        out = cli("engagement", "purge").output
    # Every per-person row (two days old) is past one day: Kim's 5, Park's 1, Jane's 1.
    assert "7 click(s) older than 1 days no longer name anyone" in out
    assert _people_in_clicks(settings) == {None: total}
    with session_scope(settings) as s:
        assert report.engagement(s, world.press)["human_clicks"] == 5
        assert _where(s, f"clicked {world.press}") == set()


def test_retention_keeps_recent_rows(settings: Settings, cli: Cli, world: World) -> None:
    with clock.pinned(NOW):
        out = cli("engagement", "purge", "--json").output  # the default: 180 days
    assert '"rows": 0' in out
    assert _people_in_clicks(settings)[world.people["kim"]] == 5


def test_the_notice_sender_purges_at_most_hourly(
    settings: Settings, tmp_path: Path, world: World
) -> None:
    write_config(tmp_path, {"database_url": settings.database_url, "engagement_retention_days": 1})
    short = load_settings(tmp_path / "mailer.toml", env={})
    with clock.pinned(NOW):
        send_due(short)  # what `mailer serve` and `mailer worker` run every few seconds
    assert set(_people_in_clicks(settings)) == {None}
    # A new per-person click: not purged again within the hour, purged after it.
    with session_scope(settings) as s:
        link = s.get(TrackedLink, world.links["a_ko"])
        assert link is not None
        _click(s, link, world.people["kim"], NOW - timedelta(days=3))
    with clock.pinned(NOW + timedelta(minutes=30)), session_scope(settings) as s:
        assert purge_when_due(s, short) is None
    with clock.pinned(NOW + timedelta(minutes=61)), session_scope(settings) as s:
        assert purge_when_due(s, short) == 1
        row = s.get(Lock, PURGE_ROW)
        assert row is not None and row.expires_at > NOW + timedelta(minutes=61)


def test_erase_removes_the_persons_engagement(settings: Settings, cli: Cli, world: World) -> None:
    cli("contacts", "erase", "jane@example.org", "--yes")
    people = _people_in_clicks(settings)
    assert world.people["jane"] not in people
    assert people[world.people["kim"]] == 5  # nobody else's
    with session_scope(settings) as s:
        e = report.engagement(s, world.press)
        assert e["human_clicks"] == 5  # still counted, naming nobody
        assert [p["name"] for p in e["engaged"]] == ["김민수"]


# --- the preference switch ------------------------------------------------------------------


def _prefs_path(settings: Settings, contact_id: int) -> str:
    return f"/preferences/{tokens.make_preferences(settings, contact_id)}"


def _csrf(page: str) -> str:
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


@pytest.mark.parametrize(
    ("lang", "words"),
    [("en", "Record which links I follow"), ("ko", "제가 누른 링크를 기록해도 좋습니다")],
)
def test_preference_switch_turns_per_person_tracking_off(
    settings: Settings, world: World, lang: str, words: str
) -> None:
    client = create_app(settings).test_client()
    path = _prefs_path(settings, world.people["kim"])
    page = client.get(f"{path}?lang={lang}").get_data(as_text=True)
    assert words in page and 'name="tracking" value="on" checked' in page
    # Ann is only on the aggregate newsletter: nothing to switch.
    ann = client.get(_prefs_path(settings, world.people["ann"])).get_data(as_text=True)
    assert "Record which links I follow" not in ann
    form = {
        "csrf": _csrf(page),
        "lang": lang,
        "action": "save",
        "list": ["press"],
        "name": "김민수",
        "language": "ko",
        "tracking_shown": "1",
    }
    client.post(path, data=form)  # the box unticked: absent from the form
    with session_scope(settings) as s:
        kim = s.get(Contact, world.people["kim"])
        assert kim is not None and kim.track_people_off
    # Her clicks so far forget her; the counts stay.
    assert world.people["kim"] not in _people_in_clicks(settings)
    page = client.get(path).get_data(as_text=True)
    assert 'name="tracking" value="on">' in page  # shown again, unticked, to switch back on
    client.post(path, data={**form, "csrf": _csrf(page), "tracking": "on"})
    with session_scope(settings) as s:
        kim = s.get(Contact, world.people["kim"])
        assert kim is not None and not kim.track_people_off


def test_a_form_without_the_switch_leaves_it(settings: Settings, world: World) -> None:
    client = create_app(settings).test_client()
    path = _prefs_path(settings, world.people["kim"])
    page = client.get(path).get_data(as_text=True)
    form = {"csrf": _csrf(page), "lang": "en", "action": "save", "list": ["press"], "name": "K"}
    client.post(path, data=form)  # an old page, without tracking_shown
    with session_scope(settings) as s:
        kim = s.get(Contact, world.people["kim"])
        assert kim is not None and not kim.track_people_off
    assert _people_in_clicks(settings)[world.people["kim"]] == 5


# --- the footer ------------------------------------------------------------------------------

NOTE = {
    "en": "This list records which links you follow",
    "ko": "이 수신 목록은 기자분들이 어떤 소식에 관심을",
}


def _outbox(settings: Settings) -> list[EmailMessage]:
    box = mailbox.Maildir(settings.outbox_dir, create=False)
    out = []
    for key in sorted(box.keys()):
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def test_footer_says_so_only_on_track_people_lists(
    settings: Settings, cli: Cli, release: Path
) -> None:
    people = [("kim@example.com", "김민수", "ko"), ("jane@example.net", "Jane", "en")]
    populate(settings, people, slug="press")
    populate(settings, [("ann@example.org", "Ann", "en"), ("lee@example.org", "이", "ko")], "news")
    with session_scope(settings) as s:
        press = s.scalar(select(MailingList).where(MailingList.slug == "press"))
        assert press is not None
        # populate makes plain lists: press follows links and names who followed them. (A
        # list that names people but follows no link records nobody: no note; see below.)
        press.track_clicks = press.track_people = True
        news = s.scalar(select(MailingList).where(MailingList.slug == "news"))
        assert news is not None
        news.track_people = True
    cli("send", str(release), "--list", "press", "--list", "news", "--yes")
    messages = _outbox(settings)
    assert len(messages) == 4
    for msg in messages:
        to = str(msg["To"])
        lang = "ko" if ("kim" in to or "lee" in to) else "en"
        on_press = "kim" in to or "jane" in to
        for part in (text_part(msg), html_part(msg)):
            assert (NOTE[lang] in part) is on_press, (to, lang)
            assert "mailer:tracking" not in part
        if on_press:
            # The way to switch it off is the reader's own preferences page.
            assert "/preferences/" in text_part(msg).split(NOTE[lang])[1].split("\n\n")[0]


# --- the console's report page --------------------------------------------------------------


def test_console_report_has_the_engagement_section(console: Console, world: World) -> None:
    viewer = console.signed_in("viewer")
    page = viewer.get(f"/admin/campaigns/{world.press}/report").text
    assert 'id="engagement-heading"' in page
    assert "https://b.example/ko" in page and "Tribune" in page
    assert "Opens (unreliable: includes machine opens)" in page
    # A viewer may not open a contact's page: names without links.
    assert f"/admin/contacts/{world.people['kim']}" not in page
    editor = console.signed_in("editor", "editor@example.org")
    page = editor.get(f"/admin/campaigns/{world.press}/report").text
    assert f"/admin/contacts/{world.people['kim']}" in page
    news = viewer.get(f"/admin/campaigns/{world.news}/report").text
    assert "no reader is recorded" in news and "Who engaged" not in news


def test_after_the_switch_new_links_name_nobody(
    settings: Settings, cli: Cli, release: Path
) -> None:
    """The switch on the preferences page, then a send: the reader who switched it off gets
    links naming nobody (mailer.engagement.links), the other reporter per-person ones."""
    people = [("kim@example.com", "김민수", "ko"), ("jane@example.net", "Jane", "en")]
    populate(settings, people, slug="press")
    with session_scope(settings) as s:
        press = s.scalar(select(MailingList).where(MailingList.slug == "press"))
        assert press is not None
        press.track_clicks = press.track_people = True
        ids = dict(s.execute(select(Contact.email, Contact.id)).all())
    client = create_app(settings).test_client()
    path = _prefs_path(settings, ids["kim@example.com"])
    page = client.get(path).get_data(as_text=True)
    form = {"csrf": _csrf(page), "lang": "ko", "action": "save", "list": ["press"]}
    client.post(path, data={**form, "name": "김민수", "language": "ko", "tracking_shown": "1"})
    cli("send", str(release), "--list", "press", "--yes")
    seen: dict[str, set[int | None]] = {}
    for msg in _outbox(settings):
        found = re.findall(r"/l/([0-9A-Za-z._-]+)", text_part(msg) + html_part(msg))
        assert found, "the press list tracks clicks: its links go through /l/"
        read = signer(settings).read_link
        seen[str(msg["To"])] = {read(token).contact_id for token in found}
    kim = next(v for k, v in seen.items() if "kim@" in k)
    jane = next(v for k, v in seen.items() if "jane@" in k)
    assert kim == {None}
    assert jane == {ids["jane@example.net"]}
