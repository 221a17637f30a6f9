"""The console's campaign pages: live progress (events and polling), pause, resume, cancel, the
in-doubt rows resolved, the report (timeline, outcomes per language, bounces, outlets and beats,
replies), the CSV, and bounces and complaints across campaigns with the lift of a suppression.

A campaign with a known mix of statuses, languages, outlets, beats and bounces is written into
the ledger, and every figure the pages show is checked against what that mix must give."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pytest
from sqlalchemy import select

from mailer.bounces.policy import process_message
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.delivery import campaigns as campaigns_lib
from mailer.delivery import report_bounces, reports
from mailer.store.db import session_scope
from mailer.store.models import (
    Bounce,
    Campaign,
    CampaignFigures,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    Event,
    Release,
    StaffUser,
    Suppression,
)
from mailer.web.console import campaigns as campaign_views
from tests.support.bounces import dsn
from tests.support.cli import Cli
from tests.support.console import XSS, Clock, Console, hostile_world, inline_code, unescaped

pytestmark = pytest.mark.db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# (email, language, outlet, beat, status, minutes before NOW it was sent, code, reply)
LEDGER = [
    ("a@daily.example", "en", "Daily News", "politics", "sent", 9, 250, "250 ok"),
    ("b@daily.example", "en", "Daily News", "economy", "sent", 2, 250, "250 ok"),
    ("c@daily.example", "en", "Daily News", "politics", "sent", 1, 250, "250 ok"),
    ("d@wire.example", "en", "Wire", "politics", "failed", None, 550, "550 5.1.1 user unknown"),
    ("e@wire.example", "en", "Wire", "", "deferred", None, 451, "451 4.7.1 try later"),
    ("f@free.example", "en", "", "", "pending", None, None, None),
    ("g@free.example", "en", "", "economy", "pending", None, None, None),
    ("h@hani.example", "ko", "한겨레", "politics", "sent", 3, 250, "250 ok"),
    ("i@hani.example", "ko", "한겨레", "economy", "sent", 0.5, 250, "250 ok"),
    ("j@hani.example", "ko", "한겨레", "politics", "in_doubt", 0.2, None, None),
    ("k@hani.example", "ko", "", "politics", "pending", None, None, None),
    ("l@wire.example", "ko", "Wire", "economy", "failed", None, 550, "550 5.1.1 user unknown"),
]


def seed(console: Console, status: CampaignStatus = CampaignStatus.SENDING) -> int:
    """The campaign of LEDGER (started ten minutes before NOW) and three bounce reports."""
    with session_scope(console.settings) as s:
        ml = create_list(s, "press", "Press")
        release = Release(
            slug="budget",
            title="Budget day",
            default_language="en",
            content_hash="0" * 64,
            variants={"en": {}, "ko": {}},
        )
        s.add(release)
        s.flush()
        c = Campaign(
            release_id=release.id,
            audience_key="press",
            audience={"lists": ["press"]},
            status=status,
            started_at=NOW - timedelta(minutes=10),
        )
        s.add(c)
        s.flush()
        ids = {}
        for n, (email, lang, outlet, beat, st, ago, code, reply) in enumerate(LEDGER):
            contact, _sub = add_contact(s, email, "press", language=lang, organisation=outlet)
            contact.beat = beat
            d = Delivery(
                campaign_id=c.id,
                contact_id=contact.id,
                list_id=ml.id,
                email=email,
                language=lang,
                status=DeliveryStatus(st),
                message_id=f"<m{n}@hanul.example.org>",
                smtp_code=code,
                smtp_reply=reply,
                sent_at=NOW - timedelta(minutes=ago) if ago is not None else None,
            )
            s.add(d)
            s.flush()
            ids[email] = d.id
        for n, (email, kind, status_code) in enumerate(
            [
                ("a@daily.example", "hard", "5.1.1"),
                ("h@hani.example", "complaint", None),
                ("b@daily.example", "soft", "4.2.2"),
            ]
        ):
            s.add(
                Bounce(
                    source_message_id=f"<report{n}@mx.example>",
                    email=email,
                    kind=kind,
                    status_code=status_code,
                    diagnostic="said so",
                    delivery_id=ids[email],
                    campaign_id=c.id,
                    created_at=NOW - timedelta(minutes=1),
                )
            )
        return c.id


@pytest.fixture
def clock_now() -> Clock:
    return Clock(NOW)


def cells(page: str, table_class: str) -> list[list[str]]:
    """The rows of the first table with this class, each as its cells' text."""
    tree = lxml.html.fromstring(page)
    table = tree.find_class(table_class)[0]
    return [
        [c.text_content().strip() for c in tr.iter("th", "td")]
        for tr in table.iter("tr")
        if tr.getparent() is not None and tr.getparent().tag in ("tbody", "tfoot")
    ]


# --- figures ----------------------------------------------------------------------------------


def test_progress_figures(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    with session_scope(console.settings) as s:
        p = reports.progress(s, cid)
        assert p.counts == campaigns_lib.status_counts(s, cid)  # the library's own counts
    assert (p.counts["sent"], p.counts["failed"], p.counts["deferred"]) == (5, 2, 1)
    assert (p.counts["in_doubt"], p.counts["pending"], p.total, p.waiting) == (1, 3, 12, 4)
    en, ko = p.languages  # the larger first
    assert en.language == "en" and en.counts["sent"] == 3 and en.waiting == 3 and en.total == 7
    assert ko.counts["sent"] == 2 and ko.counts["in_doubt"] == 1 and ko.total == 5
    # Sent in the last five minutes: b, c (en), h, i (ko): 4 in 300 s; 4 waiting: 300 s left.
    assert p.rate_per_second == pytest.approx(4 / 300)
    assert p.seconds_left == pytest.approx(300)

    viewer = console.signed_in("viewer")
    page = viewer.get(f"/admin/campaigns/{cid}").text
    tree = lxml.html.fromstring(page)
    figure = {e.get("data-figure"): e.text_content() for e in tree.xpath("//*[@data-figure]")}
    assert figure == {
        "sent": "5",
        "deferred": "1",
        "failed": "2",
        "in_doubt": "1",
        "waiting": "4",
        "rate": "1 a minute",  # 4 in 5 minutes, rounded
    }
    assert "about 5 minutes" in page
    assert cells(page, "per-language") == [
        ["en", "7", "3", "1", "1", "0", "3"],
        ["ko", "5", "2", "0", "1", "1", "1"],
    ]
    assert not inline_code(page)


def test_no_rate_when_not_sending(console: Console, clock_now: Clock) -> None:
    cid = seed(console, CampaignStatus.PAUSED)
    with session_scope(console.settings) as s:
        p = reports.progress(s, cid)
    assert p.rate_per_second is None and p.seconds_left is None


def test_report_figures(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    with session_scope(console.settings) as s:
        r = reports.report(s, cid)
        # Sent at 08:51, 08:57, 08:58 and twice in 08:59: one-minute bars, empty ones included.
        assert r.timeline.minutes == 1
        assert [(f"{b.start:%H:%M}", b.sent) for b in r.timeline.buckets] == [
            ("08:51", 1),
            ("08:52", 0),
            ("08:53", 0),
            ("08:54", 0),
            ("08:55", 0),
            ("08:56", 0),
            ("08:57", 1),
            ("08:58", 1),
            ("08:59", 2),
        ]
        assert r.bounce_kinds["hard"] == 1 and r.bounce_kinds["complaint"] == 1
        assert [(b.kind, b.status, b.count) for b in r.bounce_reasons] == [
            ("complaint", "", 1),
            ("hard", "5.1.1", 1),
            ("soft", "4.2.2", 1),
        ]
        outlets = {g.name: g for g in r.outlets}
        assert outlets["Daily News"].total == 3 and outlets["Daily News"].counts["sent"] == 3
        assert outlets["Daily News"].bounced == 2  # a hard and a soft report
        assert outlets["한겨레"].complaints == 1 and outlets["한겨레"].counts["in_doubt"] == 1
        assert outlets["Wire"].counts["failed"] == 2 and outlets[""].total == 3
        beats = {g.name: (g.total, g.counts["sent"]) for g in r.beats}
        assert beats == {"politics": (6, 3), "economy": (4, 2), "": (2, 0)}
        assert [(g.code, g.reply, g.count) for g in r.replies] == [
            (550, "550 5.1.1 user unknown", 2),
            (451, "451 4.7.1 try later", 1),
        ]

    page = console.signed_in("viewer").get(f"/admin/campaigns/{cid}/report").text
    svg = page.split("<svg", 1)[1].split("</svg>", 1)[0]
    assert svg.count('<rect class="bar"') == 9 and "<title>08:59: 2</title>" in svg
    heights = [float(h) for h in re.findall(r'<rect class="bar"[^>]* height="([\d.]+)"', svg)]
    assert heights[8] == max(heights) and heights[1] == 0 and heights[0] == heights[6] > 0
    assert cells(page, "timeline-table")[-1] == ["2026-03-02 08:59", "2"]
    assert cells(page, "outcomes")[-1] == ["All", "12", "3", "0", "5", "1", "2", "1", "0", "0"]
    assert ["Daily News", "3", "3", "0", "0", "2", "0"] in cells(page, "audience")
    assert ["550", "550 5.1.1 user unknown", "2"] in cells(page, "replies")
    assert ["Hard bounce", "5.1.1", "address", "1"] in cells(page, "reasons")
    # The viewer sees no CSV link (it names every recipient); an editor does.
    assert "report.csv" not in page
    assert "report.csv" in console.signed_in("editor").get(f"/admin/campaigns/{cid}/report").text


def test_timeline_buckets_widen_for_a_long_send(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    with session_scope(console.settings) as s:
        d = s.scalars(select(Delivery).where(Delivery.email == "a@daily.example")).one()
        d.sent_at = NOW - timedelta(hours=5)  # 5 hours of sending: 10-minute bars at most 60
    with session_scope(console.settings) as s:
        t = reports.timeline(s, cid)
    assert t.minutes == 5 and len(t.buckets) <= reports.MAX_BUCKETS and t.total == 5
    assert all(b.start.minute % 5 == 0 for b in t.buckets)


def test_campaign_list(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    page = console.signed_in("viewer").get("/admin/campaigns").text
    assert cells(page, "campaign-list") == [
        [
            f"#{cid} Budget day press",
            "Sending",
            "2026-03-02 08:50",
            "12",
            "5",
            "2",
            "1",
            f"Report of #{cid}",
        ]
    ]


# --- live progress ----------------------------------------------------------------------------


def test_polling_fragment(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    viewer = console.signed_in("viewer")
    fragment = viewer.get(f"/admin/campaigns/{cid}/progress", headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'id="progress"' in fragment.text
    assert 'hx-trigger="every 3s"' in fragment.text  # sending: it keeps polling
    with session_scope(console.settings) as s:
        campaigns_lib.cancel(s, cid)
    done = viewer.get(f"/admin/campaigns/{cid}/progress").text
    assert "hx-trigger" not in done and 'data-final="yes"' in done  # finished: polling stops
    assert viewer.get("/admin/campaigns/999/progress").status_code == 404


def events_of(body: str) -> list[tuple[str, str]]:
    out = []
    for block in body.split("\n\n"):
        lines = block.splitlines()
        name = next((ln[7:] for ln in lines if ln.startswith("event: ")), "")
        data = "\n".join(ln[6:] for ln in lines if ln.startswith("data: "))
        if name:
            out.append((name, data))
    return out


def test_event_stream_yields_events_then_ends(
    console: Console, clock_now: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = seed(console)
    # A short stream and no wait between events: the test reads it to its end.
    monkeypatch.setattr(campaign_views, "STREAM_SECONDS", 0.5)
    monkeypatch.setattr(campaign_views, "STREAM_EVERY", 0.1)
    viewer = console.signed_in("viewer")
    response = viewer.get(f"/admin/campaigns/{cid}/stream")
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    assert body.startswith("retry: ")
    found = events_of(body)
    assert len(found) >= 2 and {name for name, _ in found} == {"progress"}
    assert 'data-figure="sent">5<' in found[0][1]
    # A finished campaign: one `end` event, and the stream is over at once.
    with session_scope(console.settings) as s:
        campaigns_lib.cancel(s, cid)
    monkeypatch.setattr(campaign_views, "STREAM_SECONDS", 60.0)
    ended = events_of(viewer.get(f"/admin/campaigns/{cid}/stream").get_data(as_text=True))
    assert [name for name, _ in ended] == ["end"] and 'data-final="yes"' in ended[0][1]
    # Signed out: no stream.
    assert console.client().get(f"/admin/campaigns/{cid}/stream").status_code in (302, 303)


def test_progress_script_is_served() -> None:
    script = (Path(campaign_views.__file__).parents[1] / "static" / "progress.js").read_text()
    assert "EventSource" in script and "replaceWith" in script


# --- controls ---------------------------------------------------------------------------------


def campaign_status(console: Console, cid: int) -> CampaignStatus:
    with session_scope(console.settings) as s:
        c = s.get(Campaign, cid)
        assert c is not None
        return c.status


def test_pause_resume_cancel(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    editor = console.signed_in("editor")
    assert console.post(editor, f"/admin/campaigns/{cid}/pause").status_code == 403
    assert campaign_status(console, cid) == CampaignStatus.SENDING
    sender = console.signed_in("sender")
    page = sender.get(f"/admin/campaigns/{cid}").text
    assert f'action="/admin/campaigns/{cid}/pause"' in page
    r = console.post(sender, f"/admin/campaigns/{cid}/pause")
    assert r.status_code == 303 and campaign_status(console, cid) == CampaignStatus.PAUSED
    assert "Paused" in sender.get(r.location).text
    assert f'action="/admin/campaigns/{cid}/resume"' in sender.get(f"/admin/campaigns/{cid}").text
    assert console.post(sender, f"/admin/campaigns/{cid}/resume").status_code == 303
    assert campaign_status(console, cid) == CampaignStatus.SENDING
    # Cancel asks first: without the box ticked nothing happens.
    assert "I understand" in sender.get(f"/admin/campaigns/{cid}/cancel").text
    r = console.post(sender, f"/admin/campaigns/{cid}/cancel")
    assert r.status_code == 422 and campaign_status(console, cid) == CampaignStatus.SENDING
    r = console.post(sender, f"/admin/campaigns/{cid}/cancel", {"confirm": "yes"})
    assert r.status_code == 303 and campaign_status(console, cid) == CampaignStatus.CANCELLED
    with session_scope(console.settings) as s:
        counts = campaigns_lib.status_counts(s, cid)
    assert counts["pending"] == 0 and counts["deferred"] == 0 and counts["cancelled"] == 4
    # A cancelled campaign cannot be paused: said plainly, nothing changes.
    r = console.post(sender, f"/admin/campaigns/{cid}/pause")
    assert "could not be done" in sender.get(r.location).text
    actors = [
        (e.kind, e.actor)
        for e in console.events()
        if e.kind.startswith("campaign.") and e.campaign_id == cid
    ]
    who = "user:sender@staff.example.org"
    assert actors == [
        ("campaign.pause", who),
        ("campaign.resume", who),
        ("campaign.cancel", who),
    ]


@pytest.mark.parametrize("how", ["mark-sent", "resend"])
def test_in_doubt_resolutions(console: Console, clock_now: Clock, how: str) -> None:
    cid = seed(console)
    viewer = console.signed_in("viewer")
    page = viewer.get(f"/admin/campaigns/{cid}").text
    assert "1 messages in doubt" in page and "Mark them as sent" in page
    assert "resolve?action" not in page  # explained to a viewer, decided by a sender
    sender = console.signed_in("sender")
    page = sender.get(f"/admin/campaigns/{cid}").text
    assert f"/admin/campaigns/{cid}/resolve?action=mark-sent" in page
    assert f"/admin/campaigns/{cid}/resolve?action=resend" in page
    assert sender.get(f"/admin/campaigns/{cid}/resolve?action=nonsense").status_code == 404
    assert console.post(viewer, f"/admin/campaigns/{cid}/resolve", {"action": how}).status_code
    r = console.post(sender, f"/admin/campaigns/{cid}/resolve", {"action": how})
    assert r.status_code == 422  # not confirmed
    r = console.post(sender, f"/admin/campaigns/{cid}/resolve", {"action": how, "confirm": "yes"})
    assert r.status_code == 303
    with session_scope(console.settings) as s:
        d = s.scalars(select(Delivery).where(Delivery.email == "j@hani.example")).one()
        assert d.status == (DeliveryStatus.SENT if how == "mark-sent" else DeliveryStatus.PENDING)
        assert d.message_id == "<m9@hanul.example.org>"  # a resend keeps its Message-ID
    [ev] = console.events("campaign.resolve")
    assert ev.actor == "user:sender@staff.example.org" and ev.data["action"] == how
    assert ev.data["rows"] == 1


def test_controls_need_the_sender_role(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    for role in ("viewer", "editor"):
        client = console.signed_in(role)
        assert "Controls" not in client.get(f"/admin/campaigns/{cid}").text
        for path in ("pause", "resume", "cancel", "resolve"):
            data = {"confirm": "yes", "action": "resend"}
            assert console.post(client, f"/admin/campaigns/{cid}/{path}", data).status_code == 403
    assert campaign_status(console, cid) == CampaignStatus.SENDING


# --- the CSV ----------------------------------------------------------------------------------


def test_csv_is_the_clis(console: Console, clock_now: Clock, cli: Cli, tmp_path: Path) -> None:
    cid = seed(console)
    with session_scope(console.settings) as s:
        c = s.scalars(select(Contact).where(Contact.email == "f@free.example")).one()
        c.name = '=HYPERLINK("http://evil.example")'
    assert console.signed_in("viewer").get(f"/admin/campaigns/{cid}/report.csv").status_code == 403
    response = console.signed_in("editor").get(f"/admin/campaigns/{cid}/report.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    out = tmp_path / "report.csv"
    cli("campaigns", "report", str(cid), "--csv", str(out))
    assert response.data == out.read_bytes()
    assert response.data.startswith("\ufeff".encode())
    assert "'=HYPERLINK" in response.data.decode("utf-8-sig")


# --- bounces across campaigns -----------------------------------------------------------------


def hostile_bounce(console: Console, cid: int) -> int:
    """A real report, read by the bounce processor, about a message of the campaign: it
    proves itself (the Message-ID), suppresses the address, and says something hostile."""
    with session_scope(console.settings) as s:
        process_message(
            s,
            console.settings,
            "hostile-1",
            dsn(
                "c@daily.example",
                diagnostic="smtp; 550 5.1.1 " + XSS["script"] + XSS["img"],
                about="<m2@hanul.example.org>",
            ),
        )
    with session_scope(console.settings) as s:
        return s.scalars(select(Bounce.id).where(Bounce.email == "c@daily.example")).one()


def test_bounces_page_and_the_raw_report(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    bid = hostile_bounce(console, cid)
    editor = console.signed_in("editor")
    assert console.signed_in("viewer").get("/admin/bounces").status_code == 403
    page = editor.get("/admin/bounces").text
    rows = cells(page, "bounce-list")
    assert len(rows) == 4 and rows[0][1:] == [
        "Hard bounce",
        "c@daily.example",
        "5.1.1",
        f"#{cid} Budget day",
        "Yes, by this report",
    ]
    assert [
        r[1] for r in cells(editor.get("/admin/bounces?kind=complaint").text, "bounce-list")
    ] == ["Complaint"]
    detail = editor.get(f"/admin/bounces/{bid}").text
    assert not unescaped(detail) and not inline_code(detail)
    raw = lxml.html.fromstring(detail).find_class("raw-report")[0].text_content()
    assert XSS["script"] in raw and XSS["img"] in raw  # shown, as text
    assert "This report suppressed the address" in detail
    assert "/admin/suppressions/remove" not in detail  # an editor cannot lift it
    admin = console.signed_in("admin")
    detail = admin.get(f"/admin/bounces/{bid}").text
    lift = lxml.html.fromstring(detail).xpath("//a[contains(@href, 'suppressions/remove')]/@href")
    assert [urlsplit(h).query for h in lift] == ["email=c@daily.example"]
    assert editor.get("/admin/bounces/99999").status_code == 404


def test_bounce_pages_keyset(console: Console, clock_now: Clock) -> None:
    cid = seed(console)
    with session_scope(console.settings) as s:
        for n in range(report_bounces.PAGE + 3):
            s.add(
                Bounce(
                    source_message_id=f"<many{n}@mx.example>",
                    email=f"x{n}@example.org",
                    kind="soft",
                    campaign_id=cid,
                    created_at=NOW - timedelta(seconds=n),
                )
            )
    editor = console.signed_in("editor")
    first = editor.get("/admin/bounces?kind=soft").text
    seen = [r[2] for r in cells(first, "bounce-list")]
    link = lxml.html.fromstring(first).xpath("//a[@rel='next']/@href")[0]
    rest = [r[2] for r in cells(editor.get(link).text, "bounce-list")]
    assert len(seen) == report_bounces.PAGE and seen[0] == "x0@example.org"
    assert len(set(seen + rest)) == report_bounces.PAGE + 4  # every soft report once, none twice
    assert "?kind=soft" in link or "kind=soft" in link


def test_lift_a_suppression_caused_by_a_bounce(console: Console, clock_now: Clock) -> None:
    """The bounce page links to the suppressions page's lift: admins only, a reason required
    and kept in the event log."""
    cid = seed(console)
    bid = hostile_bounce(console, cid)
    admin = console.signed_in("admin")
    link = lxml.html.fromstring(admin.get(f"/admin/bounces/{bid}").text).xpath(
        "//a[contains(@href, '/admin/suppressions/remove')]/@href"
    )[0]
    confirm = admin.get(link)
    assert confirm.status_code == 200 and "c@daily.example" in confirm.text
    sender = console.signed_in("sender")
    data = {"email": "c@daily.example", "note": "the reporter's new mailbox", "confirm": "yes"}
    assert console.post(sender, "/admin/suppressions/remove", data).status_code == 403
    no_reason = console.post(admin, "/admin/suppressions/remove", {**data, "note": " "})
    assert no_reason.status_code == 422
    with session_scope(console.settings) as s:
        assert s.scalars(select(Suppression).where(Suppression.email == "c@daily.example")).all()
    assert console.post(admin, "/admin/suppressions/remove", data).status_code == 303
    with session_scope(console.settings) as s:
        assert not s.scalars(
            select(Suppression).where(Suppression.email == "c@daily.example")
        ).all()
        [ev] = s.scalars(select(Event).where(Event.kind == "unsuppress")).all()
        assert ev.actor == "user:admin@staff.example.org"
        assert ev.data["note"] == "the reporter's new mailbox"
    page = admin.get(f"/admin/bounces/{bid}").text
    assert "The address is not suppressed." in page


# --- every page ---------------------------------------------------------------------------------


def test_pages_in_korean_and_hostile_titles(
    console: Console, clock_now: Clock, tmp_path: Path
) -> None:
    world = hostile_world(console, tmp_path)
    cid = seed(console)
    with session_scope(console.settings) as s:
        release = s.get(Campaign, cid)
        assert release is not None
        release.release.title = XSS["script"]
    # The routes of this area can be walked with the hostile world's values.
    for rule in console.app.url_map.iter_rules():
        if rule.endpoint.startswith(("console.campaign", "console.bounce")):
            world.path(rule)
    admin = console.signed_in("admin")
    with session_scope(console.settings) as s:
        user = s.get(StaffUser, console.users["admin@staff.example.org"])
        assert user is not None
        user.language = "ko"
    bid = hostile_bounce(console, cid)
    for path in (
        "/admin/campaigns",
        f"/admin/campaigns/{cid}",
        f"/admin/campaigns/{cid}/report",
        f"/admin/campaigns/{cid}/cancel",
        f"/admin/campaigns/{cid}/resolve?action=resend",
        "/admin/bounces",
        f"/admin/bounces/{bid}",
    ):
        page = admin.get(path)
        assert page.status_code == 200, path
        assert '<html lang="ko">' in page.text, path
        assert not unescaped(page.text) and not inline_code(page.text), path
    assert "캠페인" in admin.get("/admin/campaigns").text


def test_languages_outside_the_release_still_add_up(console: Console, clock_now: Clock) -> None:
    """Rows in a language the release has no variant for: the exact grouping is used."""
    cid = seed(console)
    with session_scope(console.settings) as s:
        c = s.get(Campaign, cid)
        assert c is not None
        c.release.variants = {"en": {}}
    with session_scope(console.settings) as s:
        p = reports.progress(s, cid)
    assert {lc.language: lc.total for lc in p.languages} == {"en": 7, "ko": 5}
    assert sum(lc.total for lc in p.languages) == p.total == 12


def test_figures_of_a_finished_campaign_are_kept_until_its_rows_change(
    console: Console, clock_now: Clock
) -> None:
    """A finished campaign's ledger figures are read once and kept (campaign_figures); a
    report then reads them, not the ledger, until a row moves (here an in-doubt row marked
    sent): then they are read afresh. A campaign still sending keeps nothing."""
    sending = seed(console)
    with session_scope(console.settings) as s:
        reports.report(s, sending)
        assert s.get(CampaignFigures, sending) is None
        campaign = s.get(Campaign, sending)
        assert campaign is not None
        campaign.status, campaign.finished_at = CampaignStatus.DONE, NOW
    with session_scope(console.settings) as s:
        first = reports.report(s, sending)
        kept = s.get(CampaignFigures, sending)
        assert kept is not None and kept.figures["progress"]["counts"]["in_doubt"] == 1
    # What is kept is what the report shows: change the kept copy, and the page shows it.
    with session_scope(console.settings) as s:
        kept = s.get(CampaignFigures, sending)
        assert kept is not None
        figures = json.loads(json.dumps(kept.figures))
        figures["replies"] = [[550, "550 kept, not scanned", 7]]
        kept.figures = figures
    page = console.signed_in("viewer").get(f"/admin/campaigns/{sending}/report").text
    assert ["550", "550 kept, not scanned", "7"] in cells(page, "replies")
    with session_scope(console.settings) as s:
        again = reports.report(s, sending)
        assert again.timeline == first.timeline and again.progress.counts == first.progress.counts
        assert [g.name for g in again.outlets] == [g.name for g in first.outlets]
        assert again.bounce_kinds == first.bounce_kinds  # bounces: always read
    sender = console.signed_in("sender")
    r = console.post(
        sender, f"/admin/campaigns/{sending}/resolve", {"action": "mark-sent", "confirm": "yes"}
    )
    assert r.status_code == 303
    page = console.signed_in("viewer").get(f"/admin/campaigns/{sending}/report").text
    assert ["550", "550 kept, not scanned", "7"] not in cells(page, "replies")
    with session_scope(console.settings) as s:
        after = reports.report(s, sending)
        assert after.progress.counts["in_doubt"] == 0
        assert after.progress.counts["sent"] == first.progress.counts["sent"] + 1
