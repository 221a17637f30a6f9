"""The console's list pages: counts by status, create and edit through the form (the same
checks and errors as `mailer lists create / edit`), the event log, roles, hostile names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract
from flask.testing import FlaskClient
from jinja2.ext import babel_extract
from markupsafe import escape
from sqlalchemy import select
from werkzeug.test import TestResponse

from mailer import translations
from mailer.config import Settings
from mailer.contacts.contact import add_contact, unsubscribe
from mailer.contacts.lists import create_list, edit_list, get_list, summarise
from mailer.errors import InvalidInputError
from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import Contact, Event, MailingList, Subscription
from tests.support.console import Console, csrf_of

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = '<script>alert("list")</script>'
HOSTILE_KO = "<img src=x onerror=alert(1)>보도"


def post(client: FlaskClient, path: str, data: dict[str, str]) -> TestResponse:
    """POST a console form with the session's CSRF value (read from the page every user sees)."""
    csrf = csrf_of(client.get("/admin/lists").text)
    return client.post(path, data={**data, "csrf": csrf})


def seed(settings: Settings) -> None:
    """press: 3 subscribed, 1 unsubscribed, 2 pending; empty: nothing."""
    with session_scope(settings) as s:
        create_list(s, "press", "Press", names={"ko": "기자단"})
        create_list(s, "empty", "Empty")
        for n in range(4):
            add_contact(s, f"reporter{n}@example.org", "press")
        unsubscribe(s, "reporter3@example.org", "press")
        ml = get_list(s, "press")
        for n in range(2):
            person = Contact(email=f"new{n}@example.org", email_original=f"new{n}@example.org")
            s.add(person)
            s.flush()
            s.add(Subscription(contact_id=person.id, list_id=ml.id, status="pending"))


def cell(page: str, ident: str) -> str:
    found = re.search(rf'id="{ident}">([^<]*)<', page)
    assert found, f"no #{ident} on the page"
    return found.group(1)


@pytest.mark.db
def test_lists_and_one_list_show_counts_by_status(console: Console) -> None:
    seed(console.settings)
    client = console.signed_in("viewer")
    page = client.get("/admin/lists")
    assert page.status_code == 200
    rows = re.findall(
        r'<a href="/admin/lists/([a-z]+)">[^<]*</a>.*?'
        r'<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>',
        page.text,
        re.S,
    )
    assert rows == [("empty", "0", "0", "0"), ("press", "3", "2", "1")]
    assert "기자단" in page.text
    # A viewer sees the lists but no form to make one, and no edit links.
    assert 'action="/admin/lists"' not in page.text
    assert "/admin/lists/press/edit" not in page.text

    one = client.get("/admin/lists/press").text
    with session_scope(console.settings) as s:
        counts = summarise(s, get_list(s, "press")).counts
    assert counts == {"pending": 2, "subscribed": 3, "unsubscribed": 1}
    for status, n in counts.items():
        assert cell(one, f"count-{status}") == str(n)
    assert cell(one, "count-total") == "6"
    assert client.get("/admin/lists/no-such-list").status_code == 404


@pytest.mark.db
def test_create_through_the_form(console: Console) -> None:
    admin = console.signed_in("admin")
    page = admin.get("/admin/lists")
    assert 'action="/admin/lists"' in page.text and 'name="name_ko"' in page.text
    response = post(
        admin,
        "/admin/lists",
        {
            "slug": "seoul-press",
            "name": "Seoul press",
            "name_ko": "서울 기자단",
            "description": "Releases for Seoul reporters",
            "public": "1",
            "from_address": "Press@Hanul.example.org",
            "archive": "1",  # ticked on the form as it comes
        },
    )
    assert response.status_code == 303
    assert response.location.endswith("/admin/lists/seoul-press")
    shown = admin.get("/admin/lists/seoul-press").text
    assert "List seoul-press created." in shown and "서울 기자단" in shown
    with session_scope(console.settings) as s:
        ml = get_list(s, "seoul-press")
        assert (ml.name, ml.names, ml.description, ml.public, ml.from_address) == (
            "Seoul press",
            {"ko": "서울 기자단"},
            "Releases for Seoul reporters",
            True,
            "Press@Hanul.example.org",
        )
        [event] = s.scalars(select(Event).where(Event.kind == "list.create")).all()
        assert (event.actor, event.list_id, event.data) == (
            "user:admin@staff.example.org",
            ml.id,
            {"slug": "seoul-press"},
        )


def library_error(settings: Settings, slug: str, name: str, **kw: object) -> str:
    """What `mailer lists create` says for these values (in a session rolled back)."""
    with session_scope(settings) as s:
        try:
            create_list(s, slug, name, **kw)  # type: ignore[arg-type]
        except InvalidInputError as err:
            s.rollback()
            return str(err)
    raise AssertionError("the library accepted it")


@pytest.mark.db
@pytest.mark.parametrize(
    ("form", "library"),
    [
        ({"slug": "Bad Slug", "name": "x"}, ("Bad Slug", "x", {})),
        ({"slug": "press", "name": "Again"}, ("press", "Again", {})),
        ({"slug": "ok", "name": "Line\r\nBcc: x"}, ("ok", "Line\r\nBcc: x", {})),
        ({"slug": "ok", "name": "   "}, ("ok", "   ", {})),
        (
            {"slug": "ok", "name": "Ok", "name_ko": "a" * 201},
            ("ok", "Ok", {"names": {"ko": "a" * 201}}),
        ),
        (
            {"slug": "ok", "name": "Ok", "from_address": "not an address"},
            ("ok", "Ok", {"from_address": "not an address"}),
        ),
    ],
)
def test_create_refused_with_the_library_s_error(
    console: Console, form: dict[str, str], library: tuple[str, str, dict[str, object]]
) -> None:
    with session_scope(console.settings) as s:
        create_list(s, "press", "Press")
    expected = library_error(console.settings, library[0], library[1], **library[2])
    admin = console.signed_in("admin")
    before = console.event_count()
    response = post(admin, "/admin/lists", form)
    assert response.status_code == 422
    assert str(escape(expected)) in response.text
    assert 'role="alert"' in response.text
    # What was typed is kept in the form.
    assert f'value="{escape(form["slug"])}"' in response.text
    with session_scope(console.settings) as s:
        assert s.scalars(select(MailingList.slug)).all() == ["press"]
    assert console.event_count() == before


@pytest.mark.db
def test_edit_through_the_form(console: Console) -> None:
    with session_scope(console.settings) as s:
        create_list(s, "press", "Press", "Old", names={"ko": "기자단"})
    admin = console.signed_in("admin")
    form = admin.get("/admin/lists/press/edit").text
    assert 'value="기자단"' in form and ">Old</textarea>" in form
    response = post(
        admin,
        "/admin/lists/press/edit",
        {
            "name": "Press corps",
            "name_ko": "",
            "description": "Old",
            "public": "1",
            "from_address": "desk@hanul.example.org",
            "archive": "1",  # as the form shows it: unchanged
        },
    )
    assert response.status_code == 303 and response.location.endswith("/admin/lists/press")
    with session_scope(console.settings) as s:
        ml = get_list(s, "press")
        assert (ml.name, ml.names, ml.description, ml.public, ml.from_address) == (
            "Press corps",
            {},
            "Old",
            True,
            "desk@hanul.example.org",
        )
        [event] = s.scalars(select(Event).where(Event.kind == "list.edit")).all()
        # Only what changed is logged, with who changed it.
        assert event.actor == "user:admin@staff.example.org"
        assert event.data == {
            "slug": "press",
            "name": "Press corps",
            "names": {},
            "public": True,
            "from_address": "desk@hanul.example.org",
        }

    # The same form sent again changes nothing and logs nothing.
    again = post(
        admin,
        "/admin/lists/press/edit",
        {
            "name": "Press corps",
            "name_ko": "",
            "description": "Old",
            "public": "1",
            "from_address": "desk@hanul.example.org",
            "archive": "1",
        },
    )
    assert again.status_code == 303
    assert "Nothing was changed." in admin.get(again.location).text
    assert len(console.events("list.edit")) == 1


@pytest.mark.db
def test_a_refused_edit_changes_nothing(console: Console) -> None:
    """A valid new name with an invalid Korean name: the library stops half-way, and the
    savepoint takes the half that was done back (the request's commit must not keep it)."""
    with session_scope(console.settings) as s:
        create_list(s, "press", "Press", names={"ko": "기자단"})
    with session_scope(console.settings) as s:
        try:
            edit_list(s, "press", name="New", names={"ko": "x\u2028y"})
        except InvalidInputError as err:
            expected = str(err)
        s.rollback()
    admin = console.signed_in("admin")
    response = post(
        admin,
        "/admin/lists/press/edit",
        {"name": "New", "name_ko": "x\u2028y", "description": "", "from_address": ""},
    )
    assert response.status_code == 422
    assert str(escape(expected)) in response.text
    assert 'value="New"' in response.text  # what was typed, not what is stored
    with session_scope(console.settings) as s:
        ml = get_list(s, "press")
        assert (ml.name, ml.names) == ("Press", {"ko": "기자단"})
    assert console.events("list.edit") == []


@pytest.mark.db
@pytest.mark.parametrize("role", ["viewer", "editor", "sender"])
def test_below_admin_cannot_create_or_edit(console: Console, role: str) -> None:
    with session_scope(console.settings) as s:
        create_list(s, "press", "Press")
    client = console.signed_in(role)
    assert client.get("/admin/lists").status_code == 200
    assert client.get("/admin/lists/press").status_code == 200
    assert client.get("/admin/lists/press/edit").status_code == 403
    made = post(client, "/admin/lists", {"slug": "mine", "name": "Mine"})
    edited = post(client, "/admin/lists/press/edit", {"name": "Taken", "public": "1"})
    assert (made.status_code, edited.status_code) == (403, 403)
    with session_scope(console.settings) as s:
        assert [(m.slug, m.name, m.public) for m in s.scalars(select(MailingList))] == [
            ("press", "Press", False)
        ]
    assert len(console.events("list.create")) == 1  # the seed's
    assert console.events("list.edit") == []


@pytest.mark.db
def test_hostile_list_names_are_shown_as_text(console: Console) -> None:
    with session_scope(console.settings) as s:
        create_list(
            s, "press", HOSTILE, HOSTILE, names={"ko": HOSTILE_KO}, from_address="a@example.org"
        )
        add_contact(s, "reporter@example.org", "press")
    admin = console.signed_in("admin")
    for path in ("/admin/lists", "/admin/lists/press", "/admin/lists/press/edit", "/admin/"):
        page = admin.get(path).text
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert str(escape(HOSTILE)) in page, path


@pytest.mark.db
def test_korean_pages(console: Console) -> None:
    seed(console.settings)
    console.add_user("kim@staff.example.org", "admin")
    with session_scope(console.settings) as s:
        accounts.set_language(s, accounts.get(s, "kim@staff.example.org"), "ko")
    client = console.signed_in("admin", "kim@staff.example.org")
    index = client.get("/admin/lists").text
    assert "새 목록" in index and "확인 대기" in index
    refused = post(client, "/admin/lists", {"slug": "Bad", "name": "x"})
    assert refused.status_code == 422 and "목록을 만들지 못했습니다" in refused.text


FILES = [
    "templates/console/lists.html",
    "templates/console/list_show.html",
    "templates/console/list_edit.html",
    "templates/console/lists_form.html",
    "mailer/web/console/lists.py",
]


def marked(path: Path) -> list[str]:
    method = babel_extract if path.suffix == ".html" else "python"
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2)}
    with path.open("rb") as fh:
        found = extract(method, fh, keywords=keywords)  # type: ignore[arg-type]
        return [m if isinstance(m, str) else m[0] for _, m, _, _ in found]


def test_every_word_of_the_list_pages_is_in_korean() -> None:
    catalog = translations.catalog("ko")
    messages = {m for f in FILES for m in marked(ROOT / f)}
    assert len(messages) > 30
    missing = sorted(m for m in messages if not _translated(catalog.get(m)))
    assert not missing, missing


def _translated(message: object) -> bool:
    return bool(getattr(message, "string", ""))


def test_press_newsroom_and_tracking_flags_through_the_form(console: Console) -> None:
    """A press list made in the console follows links per reader, as the CLI's does; the edit
    form changes each flag, and unticking "record who" keeps the count without names."""
    admin = console.signed_in("admin")
    response = post(
        admin, "/admin/lists", {"slug": "desk", "name": "Desk", "press": "1", "archive": "1"}
    )
    assert response.status_code == 303
    with session_scope(console.settings) as s:
        ml = get_list(s, "desk")
        assert (ml.press, ml.archive, ml.track_clicks, ml.track_people) == (True, True, True, True)
    shown = admin.get("/admin/lists/desk").text
    assert "Followed, per reader" in shown
    form = admin.get("/admin/lists/desk/edit").text
    assert 'name="track_people" type="checkbox" value="1" checked' in form
    response = post(
        admin,
        "/admin/lists/desk/edit",
        {"name": "Desk", "press": "1", "track_clicks": "1"},  # archive and track_people off
    )
    assert response.status_code == 303
    with session_scope(console.settings) as s:
        ml = get_list(s, "desk")
        assert (ml.press, ml.archive, ml.track_clicks, ml.track_people) == (
            True,
            False,
            True,
            False,
        )
    assert "Counted, without names" in admin.get("/admin/lists/desk").text
    console.add_user("kim@staff.example.org", "admin")
    with session_scope(console.settings) as s:
        accounts.set_language(s, accounts.get(s, "kim@staff.example.org"), "ko")
    ko = console.signed_in("admin", "kim@staff.example.org").get("/admin/lists/desk").text
    assert "이름 없이 집계" in ko
