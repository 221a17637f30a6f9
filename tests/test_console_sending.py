"""Sending a release from the console: test send to a real SMTP server in every language, the
plan (audience per language, who is left out and why), typing the list's name for a large
send, approval (who may ask, who may decide, an edit voids it, the senders are emailed), the
editor and viewer refused, and a schedule stored as the right moment in UTC, carried out by a
worker and never inside the request."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from mailer.config import Settings
from mailer.contacts.contact import unsubscribe
from mailer.contacts.suppressions import add_suppression
from mailer.delivery.send import checked_transport
from mailer.delivery.worker import Worker
from mailer.releases import drafts
from mailer.releases.dates import format_when
from mailer.store.db import session_scope
from mailer.store.models import (
    CampaignStatus,
    Delivery,
    MailingList,
)
from tests.support.console import inline_code, links_leaving
from tests.support.console_desk import (
    ADMIN,
    EDITOR,
    SENDER,
    SENDER2,
    VIEWER,
    Desk,
    make_desk,
    sample_sources,
)
from tests.support.sending import PEOPLE
from tests.support.smtp import SmtpServer


@pytest.fixture
def desk(settings: Settings, tmp_path: Path, smtp: SmtpServer) -> Desk:
    return make_desk(settings, tmp_path, smtp)


# --- test send ------------------------------------------------------------------------------


def test_test_send_reaches_the_smtp_server_in_every_language(engine_name: str, desk: Desk) -> None:
    editor = desk.client(EDITOR)
    page = editor.get(f"/admin/releases/{desk.draft_id}/test")
    assert page.status_code == 200
    assert SENDER in page.text and ADMIN in page.text
    ids = {email: desk.console.users[email] for email in (EDITOR, SENDER2)}
    response = desk.post(
        editor,
        f"/admin/releases/{desk.draft_id}/test",
        {"to": [str(ids[EDITOR]), str(ids[SENDER2])]},
    )
    assert response.status_code == 200, response.text
    received = desk.smtp.sink.received
    got = Counter((r.rcpt_tos[0], r.message["Content-Language"] or "") for r in received)
    # Two people, two languages: four messages, each marked as a test.
    assert len(received) == 4
    assert {r.rcpt_tos[0] for r in received} == {EDITOR, SENDER2}
    subjects = Counter(str(r.message["Subject"]) for r in received)
    # Each marked as a test copy (the wording is testsend's), each language to each person.
    assert all(subject.startswith("[") for subject in subjects), subjects
    assert sum(n for subject, n in subjects.items() if "Record turnout" in subject) == 2
    assert sum(n for subject, n in subjects.items() if "투표율" in subject) == 2
    assert sum(got.values()) == 4
    assert response.text.count("accepted") >= 4
    assert len(desk.events("release.test_sent")) == 1
    assert desk.campaigns() == []  # a test makes no campaign


def test_test_send_goes_only_to_staff(desk: Desk) -> None:
    editor = desk.client(EDITOR)
    response = desk.post(
        editor,
        f"/admin/releases/{desk.draft_id}/test",
        {"to": ["outsider@example.org", "999999", "../../x"]},
    )
    assert response.status_code == 422
    assert desk.smtp.sink.received == []


# --- the plan -------------------------------------------------------------------------------


def test_plan_shows_audience_per_language_and_who_is_left_out(engine_name: str, desk: Desk) -> None:
    with session_scope(desk.settings) as s:
        add_suppression(s, "park@example.org", "manual", source="test")
        unsubscribe(s, "lee@example.com", "press")
    sender = desk.client(SENDER)
    page = sender.get(f"/admin/releases/{desk.draft_id}/send")
    assert page.status_code == 200, page.text
    text = page.text
    # Six on the list: one suppressed, one unsubscribed; four planned.
    assert "Recipients: 4" in text
    assert "suppressed: 1" in text and "unsubscribed: 1" in text
    # Per language: Korean readers (ko and ko-KR), English readers, and French readers who get
    # the default (English) text.
    assert "<td>ko</td>" in text and "<td>en</td>" in text
    assert "From" in text and "press@hanul.example.org" in text
    assert "Subject [en]" in text and "Subject [ko]" in text
    assert "Record turnout" in text
    assert "smtp://" in text  # the transport
    # A plan stores nothing.
    assert desk.campaigns() == []
    with session_scope(desk.settings) as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0


def test_plan_in_korean(desk: Desk) -> None:
    page = desk.client(SENDER2).get(f"/admin/releases/{desk.draft_id}/send")
    assert page.status_code == 200
    assert 'lang="ko"' in page.text
    assert "수신자" in page.text


def test_plan_names_what_stops_the_release(desk: Desk) -> None:
    sender = desk.client(SENDER)
    page = sender.get(f"/admin/releases/{desk.draft_id}/send?list=no-such-list")
    assert page.status_code == 200
    assert "no-such-list" in page.text and 'id="plan-problem"' in page.text
    assert "Send or schedule" not in page.text


# --- sending --------------------------------------------------------------------------------


def test_send_now_is_left_to_a_worker(engine_name: str, desk: Desk) -> None:
    sender = desk.client(SENDER)
    response = desk.post(sender, f"/admin/releases/{desk.draft_id}/send", {"mode": "now"})
    assert response.status_code == 303, response.text
    [campaign] = desk.campaigns()
    assert campaign.status == CampaignStatus.SCHEDULED and campaign.not_before is None
    assert desk.smtp.sink.received == []  # nothing is sent inside the request
    Worker(desk.settings, checked_transport(desk.settings), poll_seconds=0).run(once=True)
    assert sorted(a for r in desk.smtp.sink.received for a in r.rcpt_tos) == sorted(
        e for e, _n, _l in _people()
    )
    assert len(desk.events("campaign.handed_off")) == 1
    # That worker recorded its heartbeat: the page says when a separate worker was last seen.
    assert "one was last seen" in sender.get(f"/admin/releases/{desk.draft_id}/send").text
    assert desk.events("campaign.handed_off")[0].actor == f"user:{SENDER}"


def _people() -> list[tuple[str, str, str | None]]:
    return list(PEOPLE)


def test_a_large_audience_is_confirmed_by_typing_the_list_name(
    settings: Settings, tmp_path: Path, smtp: SmtpServer
) -> None:
    desk = make_desk(settings, tmp_path, smtp, confirm_typing_over=5)
    sender = desk.client(SENDER)
    page = sender.get(f"/admin/releases/{desk.draft_id}/send")
    assert 'name="confirm_name"' in page.text
    path = f"/admin/releases/{desk.draft_id}/send"
    for typed in ("", "Press", "pres"):
        response = desk.post(sender, path, {"mode": "now", "confirm_name": typed})
        if typed == "Press":
            break  # case does not matter
        assert response.status_code == 422, typed
        assert "type the list" in response.text
        assert desk.campaigns() == []  # a refused send forgets the campaign it planned
    assert response.status_code == 303
    assert [c.status for c in desk.campaigns()] == [CampaignStatus.SCHEDULED]


def test_small_audience_needs_no_typing(desk: Desk) -> None:
    page = desk.client(SENDER).get(f"/admin/releases/{desk.draft_id}/send")
    assert 'name="confirm_name"' not in page.text


@pytest.mark.parametrize(
    "day, at, zone, utc",
    [
        ("2030-07-01", "09:00", "Asia/Seoul", datetime(2030, 7, 1, 0, 0, tzinfo=UTC)),
        ("2030-01-15", "09:30", "America/New_York", datetime(2030, 1, 15, 14, 30, tzinfo=UTC)),
        ("2030-07-15", "09:30", "America/New_York", datetime(2030, 7, 15, 13, 30, tzinfo=UTC)),
    ],
)
def test_schedule_stores_the_moment_in_utc(
    engine_name: str, desk: Desk, day: str, at: str, zone: str, utc: datetime
) -> None:
    sender = desk.client(SENDER)
    path = f"/admin/releases/{desk.draft_id}/send"
    shown = sender.post(
        path + "/when",
        data={"date": day, "time": at, "zone": zone, "csrf": desk.console.csrf(sender)},
        headers={"HX-Request": "true"},
    )
    assert shown.status_code == 200
    # In UTC, and in the organisation's zone (Asia/Seoul), whatever zone was picked.
    assert format_when(utc, "en") in shown.text
    assert format_when(utc.astimezone(ZoneInfo("Asia/Seoul")), "en") in shown.text
    response = desk.post(sender, path, {"mode": "schedule", "date": day, "time": at, "zone": zone})
    assert response.status_code == 303, response.text
    [campaign] = desk.campaigns()
    assert campaign.status == CampaignStatus.SCHEDULED
    assert campaign.not_before == utc
    Worker(desk.settings, checked_transport(desk.settings), poll_seconds=0).run(once=True)
    assert desk.smtp.sink.received == []  # not due yet


@pytest.mark.parametrize(
    "fields, named",
    [
        ({"date": "2030-03-10", "time": "02:30", "zone": "America/New_York"}, "does not exist"),
        ({"date": "2030-02-30", "time": "09:00", "zone": "Asia/Seoul"}, "date: not a date"),
        ({"date": "2030-02-03", "time": "25:00", "zone": "Asia/Seoul"}, "time: not a time"),
        ({"date": "2030-02-03", "time": "09:00", "zone": "../../etc/passwd"}, "not a time zone"),
        ({"date": "2020-02-03", "time": "09:00", "zone": "Asia/Seoul"}, "in the past"),
    ],
)
def test_a_bad_moment_is_named_and_nothing_planned(
    desk: Desk, fields: dict[str, str], named: str
) -> None:
    sender = desk.client(SENDER)
    response = desk.post(
        sender, f"/admin/releases/{desk.draft_id}/send", {"mode": "schedule", **fields}
    )
    assert response.status_code == 422
    assert named in response.text
    assert desk.campaigns() == []


# --- who may do what ------------------------------------------------------------------------


def test_editor_cannot_send_and_viewer_changes_nothing(desk: Desk) -> None:
    path = f"/admin/releases/{desk.draft_id}"
    editor = desk.client(EDITOR)
    assert editor.get(path + "/send").status_code == 200
    token = desk.console.csrf(editor)
    assert editor.post(path + "/send", data={"mode": "now", "csrf": token}).status_code == 403
    assert (
        editor.post(path + "/approval/decide", data={"decision": "approve", "csrf": token})
    ).status_code == 403
    viewer = desk.client(VIEWER)
    before = desk.console.event_count()
    token = desk.console.csrf(viewer)
    assert viewer.get(path + "/send").status_code == 403
    assert viewer.get(path + "/test").status_code == 403
    for action in ("/send", "/test", "/approval/request", "/approval/decide", "/send/when"):
        response = viewer.post(
            path + action, data={"mode": "now", "decision": "approve", "csrf": token}
        )
        assert response.status_code == 403, action
    assert desk.console.event_count() == before
    assert desk.campaigns() == [] and desk.smtp.sink.received == []


def _state(desk: Desk, client: FlaskClient) -> str:
    page = client.get(f"/admin/releases/{desk.draft_id}/send")
    start = page.text.index('id="approval-state"')
    return page.text[start : page.text.index("</p>", start)]


def test_approval_rules(
    engine_name: str, settings: Settings, tmp_path: Path, smtp: SmtpServer
) -> None:
    # The release's author is a sender: a sender, but not of their own release.
    desk = make_desk(settings, tmp_path, smtp, author=SENDER, require_approval=True)
    path = f"/admin/releases/{desk.draft_id}"
    author = desk.client(SENDER)
    # Not sendable before approval.
    response = desk.post(author, path + "/send", {"mode": "now"})
    assert response.status_code == 422 and "needs approval" in response.text
    assert desk.campaigns() == []
    # The author asks; every other sender and the admin are emailed, in their language.
    response = desk.post(author, path + "/approval/request", {})
    assert response.status_code == 303
    mailed = {r.rcpt_tos[0]: r.message for r in desk.smtp.sink.received}
    assert set(mailed) == {SENDER2, ADMIN}
    body = mailed[ADMIN].get_body(("plain",))
    assert body is not None
    assert f"/admin/releases/{desk.draft_id}/send" in body.get_content()
    assert "승인" in str(mailed[SENDER2]["Subject"])  # SENDER2 reads Korean
    assert "waits for a sender" in _state(desk, author)
    # A second request for the same version is refused.
    desk.post(author, path + "/approval/request", {})
    assert len(desk.events("release.approval_requested")) == 1
    # The author cannot approve their own release.
    response = desk.post(author, path + "/approval/decide", {"decision": "approve"})
    assert response.status_code == 303
    assert "waits for a sender" in _state(desk, author)
    assert desk.events("release.approved") == []
    # An editor cannot decide at all.
    editor = desk.client(EDITOR)
    token = desk.console.csrf(editor)
    assert (
        editor.post(path + "/approval/decide", data={"decision": "approve", "csrf": token})
    ).status_code == 403
    # A rejection needs a reason; then another sender rejects, and it must be asked again.
    other = desk.client(SENDER2)
    desk.post(other, path + "/approval/decide", {"decision": "reject", "comment": "  "})
    assert desk.events("release.rejected") == []
    desk.post(other, path + "/approval/decide", {"decision": "reject", "comment": "Typo <b>x</b>"})
    [rejected] = desk.events("release.rejected")
    assert rejected.actor == f"user:{SENDER2}" and rejected.data["comment"] == "Typo <b>x</b>"
    page = author.get(path + "/send").text
    assert "Typo &lt;b&gt;x&lt;/b&gt;" in page and "Typo <b>" not in page
    assert desk.post(author, path + "/send", {"mode": "now"}).status_code == 422
    # Asked again, approved by the admin: now it may be sent.
    desk.post(author, path + "/approval/request", {})
    admin = desk.client(ADMIN)
    desk.post(admin, path + "/approval/decide", {"decision": "approve", "comment": "Good"})
    [approved] = desk.events("release.approved")
    assert approved.actor == f"user:{ADMIN}" and approved.data["version"] == 1
    assert "approved by" in _state(desk, author)
    # An edit after approval voids it.
    with session_scope(desk.settings) as s:
        sources = sample_sources()
        sources["en"] = sources["en"].replace("Record turnout", "Record turnout, again")
        drafts.save_version(s, desk.settings, desk.draft_id, sources, based_on=1, author="cli")
    assert "must be approved again" in _state(desk, author)
    response = desk.post(author, path + "/send", {"mode": "now"})
    assert response.status_code == 422 and "changed after it was approved" in response.text
    assert desk.campaigns() == []
    # Approved again (version 2): sent.
    desk.post(author, path + "/approval/request", {})
    desk.post(other, path + "/approval/decide", {"decision": "approve"})
    response = desk.post(author, path + "/send", {"mode": "now"})
    assert response.status_code == 303, response.text
    assert [c.status for c in desk.campaigns()] == [CampaignStatus.SCHEDULED]
    # The history lists every request and decision.
    page = author.get(path + "/send").text
    history = page[page.index("approval-history") :]
    assert history.count("<tr>") == 1 + 3  # the header and three requests


def test_approval_is_optional_by_default(desk: Desk) -> None:
    sender = desk.client(SENDER)
    response = desk.post(sender, f"/admin/releases/{desk.draft_id}/send", {"mode": "now"})
    assert response.status_code == 303


def test_unknown_draft_is_404(desk: Desk) -> None:
    sender = desk.client(SENDER)
    assert sender.get("/admin/releases/999/send").status_code == 404
    assert sender.get("/admin/releases/999/test").status_code == 404
    token = desk.console.csrf(sender)
    assert sender.post("/admin/releases/999/send", data={"csrf": token}).status_code == 404


def test_before_the_embargo_the_press_gets_it_only_when_the_sender_says_so(
    engine_name: str, settings: Settings, tmp_path: Path, smtp: SmtpServer
) -> None:
    desk = make_desk(settings, tmp_path, smtp)
    with session_scope(desk.settings) as s:
        s.execute(update(MailingList).values(press=True))
        sources = {
            lang: text.replace("---\n", "---\nembargo: 2031-03-01T12:00:00Z\n", 1)
            for lang, text in sample_sources().items()
        }
        drafts.save_version(s, desk.settings, desk.draft_id, sources, based_on=1, author="cli")
    sender = desk.client(SENDER)
    path = f"/admin/releases/{desk.draft_id}/send"
    page = sender.get(path).text
    assert 'id="plan-early"' in page and 'name="before_embargo"' in page
    response = desk.post(sender, path, {"mode": "now"})
    assert response.status_code == 422 and "embargoed until" in response.text
    assert desk.campaigns() == []
    response = desk.post(sender, path, {"mode": "now", "before_embargo": "yes"})
    assert response.status_code == 303, response.text
    [campaign] = desk.campaigns()
    assert campaign.status == CampaignStatus.SCHEDULED and campaign.not_before is None
    [early] = desk.events("campaign.before_embargo")
    assert early.actor == f"user:{SENDER}" and early.data["lists"] == ["press"]


def test_waiting_approvals_are_listed_for_editors_and_up(desk: Desk) -> None:
    editor = desk.client(EDITOR)
    assert "No release is waiting" in editor.get("/admin/approvals").text
    desk.post(editor, f"/admin/releases/{desk.draft_id}/approval/request", {})
    for email in (EDITOR, SENDER2, ADMIN):
        page = desk.client(email).get("/admin/approvals")
        assert page.status_code == 200
        assert f"/admin/releases/{desk.draft_id}/send" in page.text
        assert 'href="/admin/approvals"' in page.text  # the menu's link
    viewer = desk.client(VIEWER)
    assert viewer.get("/admin/approvals").status_code == 403
    assert 'href="/admin/approvals"' not in viewer.get("/admin/").text


def test_pages_run_no_inline_code_and_link_nowhere_else(desk: Desk) -> None:
    sender = desk.client(SENDER)
    for path in ("/send", "/test"):
        page = sender.get(f"/admin/releases/{desk.draft_id}{path}")
        assert page.status_code == 200
        assert inline_code(page.text) == [], path
        assert links_leaving(page.text) == [], path


def test_a_sender_who_wrote_any_version_cannot_approve_a_later_one(
    engine_name: str, settings: Settings, tmp_path: Path, smtp: SmtpServer
) -> None:
    """Version 1 is the author's; a second sender writes version 2 and an editor version 3 on
    top. The second sender's words are in it: they may not be its second pair of eyes."""
    desk = make_desk(settings, tmp_path, smtp, author=SENDER, require_approval=True)
    path = f"/admin/releases/{desk.draft_id}"
    with session_scope(desk.settings) as s:
        sources = sample_sources()
        sources["en"] = sources["en"].replace("Record turnout", "Record turnout, said Kim")
        drafts.save_version(s, desk.settings, desk.draft_id, sources, based_on=1, author=SENDER2)
        sources["en"] = sources["en"].replace("said Kim", "Kim said")
        drafts.save_version(s, desk.settings, desk.draft_id, sources, based_on=2, author=EDITOR)
    desk.post(desk.client(EDITOR), path + "/approval/request", {})
    other = desk.client(SENDER2)
    response = desk.post(other, path + "/approval/decide", {"decision": "approve"})
    assert response.status_code == 303
    assert desk.events("release.approved") == []
    assert "another sender must decide" in other.get(path + "/send").text or (
        "waits for a sender" in _state(desk, other)
    )
    desk.post(desk.client(ADMIN), path + "/approval/decide", {"decision": "approve"})
    [approved] = desk.events("release.approved")
    assert approved.actor == f"user:{ADMIN}" and approved.data["version"] == 3
