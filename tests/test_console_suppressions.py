"""The console's suppression pages: the list, search, reason filter and pages; add and lift as
`mailer suppressions add|rm` do them (same rows, same events, plus the user and a note)."""

from __future__ import annotations

import re
from typing import Any

import lxml.html
import pytest
from sqlalchemy import select

from mailer.config import Settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.contacts.segments import count, resolve
from mailer.contacts.suppressions import add_suppression, is_suppressed, suppress
from mailer.store.db import session_scope
from mailer.store.models import (
    Event,
    StaffRole,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from tests.support.cli import Cli
from tests.support.console import XSS, Console, inline_code, unescaped

pytestmark = pytest.mark.db

ADMIN = "admin@staff.example.org"


def _people(settings: Settings) -> None:
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        create_list(s, "news", "News")
        for email in ("kim@example.org", "lee@example.org", "park@example.org"):
            add_contact(s, email, "press")
            add_contact(s, email, "news")


def _state(settings: Settings, email: str) -> dict[str, Any]:
    """What the database says about one address: its suppressions and its subscriptions."""
    with session_scope(settings) as s:
        rows = s.scalars(select(Suppression).where(Suppression.email == email)).all()
        subs = s.scalars(
            select(Subscription)
            .join(Subscription.contact)
            .where(Subscription.contact.has(email=email))
        ).all()
        return {
            "suppressions": [(r.reason.value, r.source) for r in rows],
            "subscriptions": sorted((x.status.value, x.unsubscribed_via or "") for x in subs),
            "suppressed": is_suppressed(s, email),
        }


def _events(settings: Settings, kind: str) -> list[dict[str, Any]]:
    with session_scope(settings) as s:
        return [
            {"actor": e.actor, "contact": e.contact_id is not None, "data": dict(e.data)}
            for e in s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id))
        ]


def _unsafe(page: str) -> list[str]:
    """Markup a payload would have added: elements or handlers (the `onfocus=alert` marker is
    plain text once its quotes are escaped, so the handlers are read from the parsed page)."""
    return [m for m in unescaped(page) if m != "onfocus=alert"] + inline_code(page)


def _text(page: str) -> str:
    return " ".join(lxml.html.fromstring(page).text_content().split())


def _table_emails(page: str) -> list[str]:
    tree = lxml.html.fromstring(page)
    return [td.text_content().strip() for td in tree.xpath("//td[@class='sup-email']")]


# --- add and lift, exactly as the command line ------------------------------------------------


def test_add_does_what_suppressions_add_does_with_the_user_in_the_log(
    console: Console, cli: Cli, settings: Settings
) -> None:
    _people(settings)
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    cli(
        "suppressions",
        "add",
        "kim@example.org",
        "--reason",
        "complaint",
        "--source",
        "console: by phone",
    )
    response = console.post(
        admin,
        "/admin/suppressions",
        {"email": " Lee@Example.org ", "reason": "complaint", "note": "by   phone"},
    )
    assert response.status_code == 303, response.text
    kim, lee = _state(settings, "kim@example.org"), _state(settings, "lee@example.org")
    assert lee == kim
    assert lee["suppressions"] == [("complaint", "console: by phone")]
    assert lee["subscriptions"] == [("unsubscribed", "complaint"), ("unsubscribed", "complaint")]
    assert lee["suppressed"] is True
    by_cli, by_console = _events(settings, "suppress")
    assert by_console["data"] == by_cli["data"] and by_console["contact"] == by_cli["contact"]
    assert (by_cli["actor"], by_console["actor"]) == ("", f"user:{ADMIN}")
    # The notice after the redirect, and the list filtered to the address.
    page = admin.get(response.headers["Location"])
    assert "lee@example.org is suppressed" in _text(page.text)
    assert _table_emails(page.text) == ["lee@example.org"]

    # Again: already suppressed, nothing new in the log (the library's rule).
    again = console.post(
        admin, "/admin/suppressions", {"email": "lee@example.org", "reason": "manual"}
    )
    assert "already suppressed" in _text(admin.get(again.headers["Location"]).text)
    assert len(_events(settings, "suppress")) == 2


def test_a_suppressed_address_is_never_in_an_audience(console: Console, settings: Settings) -> None:
    _people(settings)
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    console.post(admin, "/admin/suppressions", {"email": "park@example.org", "reason": "manual"})
    with session_scope(settings) as s:
        # The check a send makes, and every spelling of the mailbox.
        assert is_suppressed(s, "park@example.org") and is_suppressed(s, "park+x@example.org")
        assert count(s, resolve(s, None, ["press"], [])) == 2
        subs = s.scalars(select(Subscription.status)).all()
        assert subs.count(SubscriptionStatus.UNSUBSCRIBED) == 2


def test_lift_does_what_suppressions_rm_does_with_the_reason_in_the_log(
    console: Console, cli: Cli, settings: Settings
) -> None:
    _people(settings)
    with session_scope(settings) as s:
        for email in ("kim@example.org", "lee@example.org"):
            add_suppression(s, email, "hard-bounce", "bounce 5.1.1")
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    cli("suppressions", "rm", "kim@example.org", "--yes")

    # The confirmation page says what lifting a hard bounce means, and asks for both fields.
    page = admin.get("/admin/suppressions/remove?email=lee@example.org")
    assert page.status_code == 200
    words = _text(page.text)
    assert "Warning: the person may be mailed again" in words
    assert "hard bounce" in words and "bounce 5.1.1" in words
    form = lxml.html.fromstring(page.text).xpath("//form[contains(@class, 'panel')]")[0]
    assert form.xpath(".//input[@name='confirm'][@required]") and form.xpath(
        ".//textarea[@required]"
    )

    unconfirmed = console.post(
        admin, "/admin/suppressions/remove", {"email": "lee@example.org", "note": "fixed"}
    )
    assert unconfirmed.status_code == 422 and "Tick the box" in _text(unconfirmed.text)
    no_reason = console.post(
        admin,
        "/admin/suppressions/remove",
        {"email": "lee@example.org", "confirm": "yes", "note": " "},
    )
    assert no_reason.status_code == 422 and "say why" in _text(no_reason.text)
    assert _state(settings, "lee@example.org")["suppressed"] is True

    done = console.post(
        admin,
        "/admin/suppressions/remove",
        {"email": "lee@example.org", "confirm": "yes", "note": "The reporter's server is fixed."},
    )
    assert done.status_code == 303, done.text
    kim, lee = _state(settings, "kim@example.org"), _state(settings, "lee@example.org")
    assert lee == kim
    assert lee == {
        "suppressions": [],
        # Lifting never re-subscribes: only the person opts in again.
        "subscriptions": [("unsubscribed", "hard-bounce"), ("unsubscribed", "hard-bounce")],
        "suppressed": False,
    }
    by_cli, by_console = _events(settings, "unsuppress")
    assert by_cli["data"] == {"reason": "hard-bounce", "source": "bounce 5.1.1"}
    assert by_console["data"] == {**by_cli["data"], "note": "The reporter's server is fixed."}
    assert by_console["actor"] == f"user:{ADMIN}"
    assert "no longer suppressed" in _text(admin.get(done.headers["Location"]).text)


def test_the_confirmation_lists_every_row_the_lift_removes(
    console: Console, settings: Settings
) -> None:
    # A hard bounce of one spelling, an opt-out of the plain address: two rows of one mailbox.
    # The library lifts both when the bounced spelling is lifted; the page must say so first.
    with session_scope(settings) as s:
        suppress(s, "jo.kim+x@example.org", SuppressionReason.HARD_BOUNCE, "5.1.1")
        suppress(s, "jo.kim@example.org", SuppressionReason.UNSUBSCRIBE_ALL, "link")
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    page = admin.get("/admin/suppressions/remove?email=jo.kim%2Bx@example.org")
    assert sorted(_table_emails(page.text)) == ["jo.kim+x@example.org", "jo.kim@example.org"]
    assert "refused a message for good" in _text(page.text)
    console.post(
        admin,
        "/admin/suppressions/remove",
        {"email": "jo.kim+x@example.org", "confirm": "yes", "note": "asked in person"},
    )
    with session_scope(settings) as s:
        assert s.scalars(select(Suppression)).all() == []


def test_a_manual_suppression_is_confirmed_without_the_warning(
    console: Console, settings: Settings
) -> None:
    with session_scope(settings) as s:
        add_suppression(s, "kim@example.org", "manual", "cli")
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    page = admin.get("/admin/suppressions/remove?email=kim@example.org")
    assert "Warning" not in _text(page.text)
    assert "may be mailed again" in _text(page.text)
    assert admin.get("/admin/suppressions/remove?email=nobody@example.org").status_code == 404
    gone = console.post(
        admin,
        "/admin/suppressions/remove",
        {"email": "nobody@example.org", "confirm": "yes", "note": "x"},
    )
    assert gone.status_code == 303
    assert "is not on the suppression list" in _text(admin.get(gone.headers["Location"]).text)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "named"),
    [
        ({"email": "not an address", "reason": "manual"}, "not an email address: 'not an address'"),
        ({"email": "kim@", "reason": "manual"}, "not an email address: 'kim@'"),
        ({"email": "", "reason": "manual"}, "not an email address: empty"),
        ({"email": "kim@example.org", "reason": "spam"}, "unknown suppression reason 'spam'"),
        (
            {"email": "kim@example.org", "reason": "manual", "note": "x" * 191},
            "note: 191 characters",
        ),
    ],
)
def test_bad_input_is_a_422_naming_the_value(
    console: Console, settings: Settings, form: dict[str, str], named: str
) -> None:
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    response = console.post(admin, "/admin/suppressions", form)
    assert response.status_code == 422
    alert = lxml.html.fromstring(response.text).get_element_by_id("form-error")
    assert named in alert.text_content()
    # The form comes back as typed.
    assert lxml.html.fromstring(response.text).get_element_by_id("add-email").value == form["email"]
    with session_scope(settings) as s:
        assert s.scalars(select(Suppression)).all() == []


def test_a_hostile_address_is_named_escaped(console: Console) -> None:
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    response = console.post(
        admin, "/admin/suppressions", {"email": XSS["script"], "reason": "manual"}
    )
    assert response.status_code == 422
    assert not _unsafe(response.text)
    assert "not an email address" in _text(response.text)


# --- the list ---------------------------------------------------------------------------------


def test_pages_search_and_reason_filter(console: Console, settings: Settings) -> None:
    with session_scope(settings) as s:
        for i in range(130):
            reason = "complaint" if i % 10 == 0 else "unsubscribe-all"
            add_suppression(s, f"reader{i:03}@example.org", reason, "import")
        add_suppression(s, "jo.kim@gmail.com", "manual", "phone")
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)

    seen: list[str] = []
    url: str | None = "/admin/suppressions"
    pages = 0
    while url:
        page = admin.get(url)
        assert page.status_code == 200
        seen += _table_emails(page.text)
        nxt = lxml.html.fromstring(page.text).xpath("//a[@rel='next']")
        url = nxt[0].get("href") if nxt else None
        pages += 1
    assert pages == 3 and len(seen) == 131 and len(set(seen)) == 131

    complaints = admin.get("/admin/suppressions?reason=complaint")
    assert sorted(_table_emails(complaints.text)) == [
        f"reader{i:03}@example.org" for i in range(0, 130, 10)
    ]
    assert "Spam complaint (13)" in _text(complaints.text)
    assert (
        _table_emails(admin.get("/admin/suppressions?q=READER12").text).count(
            "reader120@example.org"
        )
        == 1
    )
    assert len(_table_emails(admin.get("/admin/suppressions?q=reader12").text)) == 10
    # % and _ are letters, not patterns.
    assert _table_emails(admin.get("/admin/suppressions?q=reader1%25").text) == []

    # A whole address: the library's check, even for another spelling of the mailbox.
    covered = admin.get("/admin/suppressions?q=JoKim%2Bnews@googlemail.com")
    words = _text(covered.text)
    assert "jokim+news@googlemail.com is suppressed" in words
    assert "covered by the suppression of jo.kim@gmail.com" in words
    assert _table_emails(covered.text) == ["jo.kim@gmail.com"]
    free = _text(admin.get("/admin/suppressions?q=free@example.org").text)
    assert "free@example.org is not suppressed" in free

    # A cursor that is not one shows the first page; an unknown reason, every reason.
    assert len(_table_emails(admin.get("/admin/suppressions?after=x~1&reason=zzz").text)) == 50


def test_stored_values_are_escaped(console: Console, settings: Settings) -> None:
    with session_scope(settings) as s:
        add_suppression(s, "kim@example.org", "complaint", XSS["script"])
        add_suppression(s, "lee@example.org", "manual", XSS["img"])
        add_suppression(s, "park@example.org", "hard-bounce", XSS["attr"])
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    for path in (
        "/admin/suppressions",
        "/admin/suppressions/remove?email=kim@example.org",
        "/admin/suppressions/remove?email=lee@example.org",
        "/admin/suppressions/remove?email=park@example.org",
        "/admin/suppressions?q=" + "%3Cscript%3E",
    ):
        page = admin.get(path)
        assert page.status_code == 200, path
        assert not _unsafe(page.text), path
    assert XSS["script"] in _text(admin.get("/admin/suppressions").text)


# --- who may --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [StaffRole.VIEWER, StaffRole.EDITOR, StaffRole.SENDER])
def test_only_admins(console: Console, settings: Settings, role: StaffRole) -> None:
    with session_scope(settings) as s:
        add_suppression(s, "kim@example.org", "manual", "cli")
    client = console.signed_in(role)
    assert client.get("/admin/suppressions").status_code == 403
    assert client.get("/admin/suppressions/remove?email=kim@example.org").status_code == 403
    added = console.post(
        client, "/admin/suppressions", {"email": "lee@example.org", "reason": "manual"}
    )
    lifted = console.post(
        client,
        "/admin/suppressions/remove",
        {"email": "kim@example.org", "confirm": "yes", "note": "x"},
    )
    assert (added.status_code, lifted.status_code) == (403, 403)
    with session_scope(settings) as s:
        assert [x.email for x in s.scalars(select(Suppression))] == ["kim@example.org"]
    # The menu does not offer the page either.
    assert "/admin/suppressions" not in client.get("/admin/").text


def test_in_korean(console: Console, settings: Settings) -> None:
    with session_scope(settings) as s:
        add_suppression(s, "kim@example.org", "complaint", "arf")
    admin = console.signed_in(StaffRole.ADMIN, ADMIN)
    console.post(admin, "/admin/account/language", {"language": "ko"})
    page = _text(admin.get("/admin/suppressions").text)
    assert "주소 발송 제외" in page and "Suppress an address" not in page
    confirm = _text(admin.get("/admin/suppressions/remove?email=kim@example.org").text)
    assert re.search(r"[가-힣]", confirm) and "Warning" not in confirm
