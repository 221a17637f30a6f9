"""The console's contacts: search as you type, filters, keyset pages, the contact page, and its
actions, each compared with what the `mailer contacts` command does to a twin contact.

Real parts throughout: the Flask test client signed in as a real staff account, the database
(SQLite, and PostgreSQL when MAILER_TEST_DATABASE_URL is set) with the search line's triggers
written by the schema, and the command line run in-process on the same database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import lxml.html
import pytest
from flask.testing import FlaskClient
from sqlalchemy import Text, cast, func, insert, select, text

from mailer.contacts.contact import add_contact, edit_contact, tag_contact
from mailer.contacts.lists import create_list
from mailer.contacts.segments import create_segment
from mailer.contacts.suppressions import get_suppression
from mailer.imports.importer import import_contacts
from mailer.store.db import session_scope
from mailer.store.models import (
    Bounce,
    Campaign,
    CampaignStatus,
    Contact,
    ContactSearch,
    ContactTag,
    Delivery,
    DeliveryStatus,
    Event,
    Release,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)
from tests.support.cli import Cli
from tests.support.console import XSS, Console, inline_code, unescaped
from tests.support.imports import write_csv

pytestmark = pytest.mark.db

EDITOR = "editor@staff.example.org"
ADMIN = "admin@staff.example.org"
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: turns the text after it around


# --- helpers ------------------------------------------------------------------------------------


def seed(console: Console) -> dict[str, int]:
    """Two lists and a handful of press contacts, by the library; their ids by address."""
    people = [
        # (email, name, outlet, press fields, attributes, lists, tags)
        (
            "jane.doe@herald.example.com",
            "Jane Doe",
            "Korea Herald",
            {"beat": "politics", "role": "reporter"},
            {"desk": "국제부", "twitter": "@janedoe"},
            ["press"],
            ["vip"],
        ),
        (
            "minseo@hani.example.kr",
            "김민서",
            "한겨레",
            {"role": "기자", "beat": "경제"},
            {},
            ["press", "ko"],
            ["정치부"],
        ),
        (
            "park.sy@ktimes.example.com",
            "Seoyeon Park",
            "Korea Times",
            {"region": "Bergen, NJ"},
            {"notes": "prefers phone"},
            ["ko"],
            [],
        ),
        (
            "editor@inquirer.example.com",
            "Robert Smith",
            "Philadelphia Inquirer",
            {"media_type": "print"},
            {},
            ["press"],
            ["vip"],
        ),
    ]
    ids: dict[str, int] = {}
    with session_scope(console.settings) as s:
        create_list(s, "press", "Press")
        create_list(s, "ko", "Korean press")
        for email, name, outlet, press, attributes, lists, tags in people:
            for slug in lists:
                contact, _sub = add_contact(
                    s, email, slug, name=name, organisation=outlet, tags=tags
                )
            edit_contact(s, email, set_attributes={**press, **attributes})
            ids[email] = contact.id
    return ids


def found(page: str) -> list[str]:
    """The addresses in a results table, in order."""
    tree = lxml.html.fromstring(page)
    return [e.text_content().strip() for e in tree.xpath('//th[contains(@class, "contact-email")]')]


def search(client: FlaskClient, htmx: bool = True, **params: Any) -> Any:
    headers = {"HX-Request": "true"} if htmx else {}
    return client.get("/admin/contacts?" + urlencode(params), headers=headers)


# --- search -----------------------------------------------------------------------------------


def test_search_finds_by_every_field_and_korean_text(console: Console) -> None:
    seed(console)
    client = console.signed_in("editor", EDITOR)
    cases = {
        "herald": ["jane.doe@herald.example.com"],  # the address and the outlet
        "doe": ["jane.doe@herald.example.com"],  # the name
        "JANE": ["jane.doe@herald.example.com"],  # A-Z case is ignored
        "korea herald": ["jane.doe@herald.example.com"],  # every word, any order of fields
        "herald jane": ["jane.doe@herald.example.com"],
        "politics": ["jane.doe@herald.example.com"],  # a press field (beat)
        "bergen": ["park.sy@ktimes.example.com"],  # region
        "국제부": ["jane.doe@herald.example.com"],  # an attribute's value, in Korean
        "@janedoe": ["jane.doe@herald.example.com"],  # another attribute
        "prefers": ["park.sy@ktimes.example.com"],
        "김민서": ["minseo@hani.example.kr"],  # a Korean name
        "김": ["minseo@hani.example.kr"],  # one character: a word's start
        "한겨레": ["minseo@hani.example.kr"],  # a Korean outlet
        "기자": ["minseo@hani.example.kr"],  # a Korean role, two characters: a word's start
        "korea": ["park.sy@ktimes.example.com", "jane.doe@herald.example.com"],  # newest first
        "inquirer.example": ["editor@inquirer.example.com"],
        "print": ["editor@inquirer.example.com"],  # media type
    }
    for typed, expected in cases.items():
        response = search(client, q=typed)
        assert response.status_code == 200, typed
        assert found(response.text) == expected, typed
    # Short words match the start of a word only; longer ones anywhere.
    assert found(search(client, q="민서").text) == []
    assert found(search(client, q="oe").text) == []
    assert found(search(client, q="doe").text) == ["jane.doe@herald.example.com"]
    assert found(search(client, q="s").text) == [
        "editor@inquirer.example.com",  # Smith
        "park.sy@ktimes.example.com",  # Seoyeon
    ]
    # LIKE's wildcards are plain characters.
    assert found(search(client, q="%").text) == []
    assert found(search(client, q="j_ne").text) == []
    assert found(search(client, q="nothing-like-this").text) == []


def test_the_page_works_without_javascript_and_htmx_gets_only_the_table(console: Console) -> None:
    seed(console)
    client = console.signed_in("editor", EDITOR)
    page = search(client, htmx=False, q="herald")
    assert page.status_code == 200
    assert '<form method="get" action="/admin/contacts"' in page.text
    assert 'name="q" type="search" value="herald"' in page.text
    assert found(page.text) == ["jane.doe@herald.example.com"]
    assert "hx-get=" in page.text and 'hx-target="#contact-results"' in page.text
    # The tag filter suggests the tags in use, A-Z, each once.
    suggested = lxml.html.fromstring(page.text).xpath(
        '//datalist[@id="contact-tags"]/option/@value'
    )
    assert suggested == ["vip", "정치부"]
    fragment = search(client, q="herald")
    assert "<html" not in fragment.text and "<form" not in fragment.text
    assert found(fragment.text) == ["jane.doe@herald.example.com"]
    assert "HX-Request" in fragment.headers["Vary"]
    # htmx restoring history without a cached copy needs the whole page.
    restore = client.get(
        "/admin/contacts?q=herald",
        headers={"HX-Request": "true", "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restore.text


def test_the_search_line_follows_edits_imports_raw_sql_and_erasure(
    console: Console, tmp_path: Path, cli: Cli
) -> None:
    ids = seed(console)
    client = console.signed_in("editor", EDITOR)
    with session_scope(console.settings) as s:
        edit_contact(
            s, "jane.doe@herald.example.com", name="Janet Roe", set_attributes={"desk": "sports"}
        )
    assert found(search(client, q="janet").text) == ["jane.doe@herald.example.com"]
    assert found(search(client, q="국제부").text) == []
    assert found(search(client, q="doe jane").text) == ["jane.doe@herald.example.com"]  # address
    # An import writes contacts with bulk INSERT ... SELECT and UPDATE: the triggers see both.
    csv_path = write_csv(
        tmp_path / "more.csv",
        [
            ["email", "name", "outlet", "beat", "notes"],
            ["lee.jh@joongang.example.kr", "이준호", "중앙일보", "culture", "embargo 해제 후"],
            ["park.sy@ktimes.example.com", "Seoyeon Park", "Korea Daily", "", ""],
        ],
    )
    with session_scope(console.settings) as s:
        import_contacts(s, csv_path, "press", actor="cli", update_attributes=True)
    assert found(search(client, q="이준호").text) == ["lee.jh@joongang.example.kr"]
    assert found(search(client, q="해제").text) == ["lee.jh@joongang.example.kr"]
    assert found(search(client, q="korea daily").text) == ["park.sy@ktimes.example.com"]
    # SQL of one's own (a script, a migration) too.
    with session_scope(console.settings) as s:
        s.execute(
            text("UPDATE contact SET organisation = 'Newsday' WHERE email = :e"),
            {"e": "editor@inquirer.example.com"},
        )
    assert found(search(client, q="newsday").text) == ["editor@inquirer.example.com"]
    assert found(search(client, q="inquirer philadelphia").text) == []
    # Erased by the command line: gone from the search and from the line's table.
    cli("contacts", "erase", "minseo@hani.example.kr", "--yes")
    assert found(search(client, q="김민서").text) == []
    with session_scope(console.settings) as s:
        lines = dict(s.execute(select(ContactSearch.contact_id, ContactSearch.body)).all())
        contacts = dict(s.execute(select(Contact.id, Contact.email)).all())
    assert set(lines) == set(contacts)
    assert ids["minseo@hani.example.kr"] not in lines
    for contact_id, email in contacts.items():
        assert lines[contact_id].startswith(" " + email + " ")


def test_filters_by_list_status_tag_segment_and_expression(console: Console) -> None:
    ids = seed(console)
    client = console.signed_in("editor", EDITOR)
    with session_scope(console.settings) as s:
        sub = s.scalar(
            select(Subscription).where(
                Subscription.contact_id == ids["editor@inquirer.example.com"]
            )
        )
        assert sub is not None
        sub.status = SubscriptionStatus.PENDING
        create_segment(s, "ko-economy", ["ko"], ["beat = 경제"])
    assert found(search(client, list="ko").text) == [
        "park.sy@ktimes.example.com",
        "minseo@hani.example.kr",
    ]
    assert found(search(client, status="pending").text) == ["editor@inquirer.example.com"]
    assert found(search(client, list="press", status="subscribed").text) == [
        "minseo@hani.example.kr",
        "jane.doe@herald.example.com",
    ]
    assert found(search(client, list="ko", status="pending").text) == []
    assert found(search(client, tag="VIP").text) == [
        "editor@inquirer.example.com",
        "jane.doe@herald.example.com",
    ]
    assert found(search(client, tag="정치부").text) == ["minseo@hani.example.kr"]
    assert found(search(client, segment="ko-economy").text) == ["minseo@hani.example.kr"]
    assert found(search(client, where="region ~ NJ or media_type = print").text) == [
        "editor@inquirer.example.com",
        "park.sy@ktimes.example.com",
    ]
    assert found(search(client, q="korea", tag="vip").text) == ["jane.doe@herald.example.com"]
    assert found(search(client, q="k", where="attr.desk = 국제부").text) == [
        "jane.doe@herald.example.com"
    ]


def test_bad_filters_are_explained_not_raised(console: Console) -> None:
    seed(console)
    client = console.signed_in("editor", EDITOR)
    page = search(client, htmx=False, where="beat = politics and (region ~ NJ")
    assert page.status_code == 422
    tree = lxml.html.fromstring(page.text)
    error = tree.xpath('//pre[@class="contact-error-text"]')[0].text_content()
    assert "expected ')' to close the '('" in error
    assert "beat = politics and (region ~ NJ" in error and "^" in error
    assert tree.xpath('//input[@id="contact-where"]/@aria-invalid') == ["true"]
    # htmx swaps only 2xx answers: the same message comes back as 200, in the table's place.
    fragment = search(client, where="colour = red")
    assert fragment.status_code == 200
    assert "unknown field &#39;colour&#39;" in fragment.text
    for params, message in (
        ({"segment": "no-such"}, "no segment &#39;no-such&#39;"),
        ({"list": "nope"}, "nope"),
        ({"status": "gone"}, "unknown status &#39;gone&#39;"),
        ({"where": "list = nope"}, "no list &#39;nope&#39;"),
    ):
        answer = search(client, htmx=False, **params)
        assert answer.status_code == 422, params
        assert message in answer.text, params


def test_keyset_pages_never_repeat_or_miss_a_contact(console: Console) -> None:
    with session_scope(console.settings) as s:
        create_list(s, "press", "Press")
        for i in range(130):
            add_contact(s, f"reporter{i:03d}@paper.example.com", "press", name=f"Reporter {i}")
    client = console.signed_in("editor", EDITOR)
    for params in ({}, {"q": "reporter"}, {"q": "r", "list": "press"}):
        seen: list[str] = []
        url = "/admin/contacts?" + urlencode(params)
        pages = 0
        while url:
            page = client.get(url)
            assert page.status_code == 200
            rows = found(page.text)
            assert len(rows) <= 50
            seen += rows
            pages += 1
            if pages == 1:
                # A contact added while someone pages: the pages already counted do not shift.
                with session_scope(console.settings) as s:
                    add_contact(
                        s, f"late{len(seen)}@paper.example.com", "press", name="Reporter late"
                    )
            nav = lxml.html.fromstring(page.text).xpath('//a[@rel="next"]/@href')
            url = nav[0] if nav else ""
            assert "offset" not in url.lower()
        originals = [e for e in seen if e.startswith("reporter")]
        assert sorted(originals) == [f"reporter{i:03d}@paper.example.com" for i in range(130)]
        assert len(set(seen)) == len(seen), "a contact was shown twice"
        assert originals == sorted(originals, reverse=True), "not newest first"
        assert pages == 3


# --- the contact page -------------------------------------------------------------------------


def test_the_contact_page_shows_consent_deliveries_and_bounces(console: Console) -> None:
    ids = seed(console)
    cid = ids["jane.doe@herald.example.com"]
    now = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    with session_scope(console.settings) as s:
        sub = s.scalar(select(Subscription).where(Subscription.contact_id == cid))
        assert sub is not None
        sub.source = "web"
        sub.consent_ip = "203.0.113.7"
        sub.consent_form = "press-signup"
        sub.consent_text_hash = "ab" * 32
        sub.confirmed_at = now
        release_id = s.execute(
            insert(Release).returning(Release.id),
            {
                "slug": "election-night",
                "title": "Election night 선거의 밤",
                "default_language": "en",
                "front_matter": {},
                "variants": {},
                "content_hash": "c" * 64,
            },
        ).scalar_one()
        campaign_id = s.execute(
            insert(Campaign).returning(Campaign.id),
            {
                "release_id": release_id,
                "audience_key": "press",
                "audience": {},
                "status": CampaignStatus.DONE,
                "plan": {},
            },
        ).scalar_one()
        delivery_id = s.execute(
            insert(Delivery).returning(Delivery.id),
            {
                "campaign_id": campaign_id,
                "contact_id": cid,
                "email": "jane.doe@herald.example.com",
                "language": "en",
                "status": DeliveryStatus.SENT,
                "smtp_code": 250,
                "smtp_reply": "2.0.0 Ok: queued as 9XYZ",
                "message_id": "<m1@example.org>",
                "sent_at": now,
            },
        ).scalar_one()
        s.execute(
            insert(Bounce),
            {
                "source_message_id": "<report-1@mx.example.com>",
                "email": "jane.doe@herald.example.com",
                "kind": "soft",
                "status_code": "4.2.2",
                "diagnostic": "452 4.2.2 mailbox full",
                "delivery_id": delivery_id,
                "campaign_id": campaign_id,
            },
        )
    client = console.signed_in("editor", EDITOR)
    page = client.get(f"/admin/contacts/{cid}")
    assert page.status_code == 200
    tree = lxml.html.fromstring(page.text)
    consent = tree.xpath('//table[contains(@class, "contact-subs")]')[0].text_content()
    for shown in ("203.0.113.7", "press-signup", "ab" * 32, "2026-03-01 09:30", "web"):
        assert shown in consent, shown
    body = tree.text_content()
    for shown in (
        "국제부",
        "@janedoe",
        "politics",
        "vip",
        "Election night 선거의 밤",
        f"#{campaign_id}",
        "2.0.0 Ok: queued as 9XYZ",
        "452 4.2.2 mailbox full",
        "soft bounce",
    ):
        assert shown in body, shown
    assert client.get("/admin/contacts/999999").status_code == 404


# --- actions, each against the command line ---------------------------------------------------


def twins(console: Console) -> dict[str, int]:
    """Two contacts alike in everything but the address: one for the console, one for the CLI."""
    ids = {}
    with session_scope(console.settings) as s:
        create_list(s, "press", "Press")
        create_list(s, "ko", "Korean press")
        for email in ("web@twin.example.org", "cli@twin.example.org"):
            for slug in ("press", "ko"):
                contact, _sub = add_contact(
                    s, email, slug, name="Twin 쌍둥이", organisation="Herald", tags=["vip", "old"]
                )
            edit_contact(
                s, email, set_attributes={"desk": "night", "shift": "late", "beat": "sports"}
            )
            ids[email] = contact.id
    return ids


def state(console: Console, email: str) -> dict[str, Any]:
    """What an action may change, without what names the twin (address, ids, times)."""
    with session_scope(console.settings) as s:
        c = s.scalar(select(Contact).where(Contact.email == email))
        sup = get_suppression(s, email)
        if c is None:
            return {"contact": None, "suppression": sup.reason.value if sup else None}
        subs = {
            sub.mailing_list.slug: (sub.status.value, sub.unsubscribed_via)
            for sub in c.subscriptions
        }
        return {
            "name": c.name,
            "language": c.language,
            "organisation": c.organisation,
            "beat": c.beat,
            "role": c.role,
            "attributes": dict(c.attributes),
            "tags": sorted(t.tag for t in c.tags),
            "subscriptions": subs,
            "suppression": sup.reason.value if sup else None,
        }


def same_but_channel(web: dict[str, Any], cli: dict[str, Any]) -> None:
    """The two states are the same, reading `console` and `cli` (the channel) as one."""
    flat = repr(web).replace("'console'", "'CHANNEL'")
    assert flat == repr(cli).replace("'cli'", "'CHANNEL'")


def logged(console: Console, kind: str, actor: str) -> Event:
    found_events = [e for e in console.events(kind) if e.actor == actor]
    assert found_events, (
        f"no {kind} event by {actor}: {[(e.kind, e.actor) for e in console.events()]}"
    )
    return found_events[-1]


def test_edit_changes_what_contacts_edit_changes_and_is_logged(console: Console, cli: Cli) -> None:
    ids = twins(console)
    client = console.signed_in("editor", EDITOR)
    cid = ids["web@twin.example.org"]
    form = lxml.html.fromstring(client.get(f"/admin/contacts/{cid}/edit").text)
    keys = form.xpath('//table//th[@scope="row"]/label')
    assert [k.text_content() for k in keys] == ["desk", "shift"]
    answer = console.post(
        client,
        f"/admin/contacts/{cid}/edit",
        {
            "name": "Kim Twin",
            "language": "ko",
            "organisation": "Korea Herald",
            "role": "editor",
            "beat": "politics",
            "media_type": "",
            "region": "",
            "phone": "",
            "attr_value_0": "day",  # desk
            "attr_value_1": "late",
            "attr_remove_1": "yes",  # shift
            "new_key_0": "twitter",
            "new_value_0": "@kimtwin",
        },
    )
    assert answer.status_code == 303, answer.text
    cli(
        "contacts", "edit", "cli@twin.example.org", "--name", "Kim Twin", "--lang", "ko",
        "--org", "Korea Herald", "--set", "role=editor", "--set", "beat=politics",
        "--set", "desk=day", "--unset", "shift", "--set", "twitter=@kimtwin",
    )  # fmt: skip
    web, by_cli = state(console, "web@twin.example.org"), state(console, "cli@twin.example.org")
    assert web["attributes"] == {"desk": "day", "twitter": "@kimtwin"}
    assert web["beat"] == "politics" and web["language"] == "ko"
    same_but_channel(web, by_cli)
    event = logged(console, "contact.edit", f"user:{EDITOR}")
    assert event.contact_id == cid
    assert sorted(event.data["fields"]) == sorted(
        ["name", "language", "organisation", "role", "beat", "attributes"]
    )
    # A bad value: the form again, with the library's message, and nothing saved.
    bad = console.post(
        client, f"/admin/contacts/{cid}/edit", {"name": "Other", "language": "not a language"}
    )
    assert bad.status_code == 422
    assert "not a language code" in bad.text
    assert state(console, "web@twin.example.org")["name"] == "Kim Twin"


def test_tag_and_untag_as_the_command_line_with_a_confirmation(console: Console, cli: Cli) -> None:
    ids = twins(console)
    client = console.signed_in("editor", EDITOR)
    cid = ids["web@twin.example.org"]
    assert (
        console.post(
            client, f"/admin/contacts/{cid}/tags", {"tag": "expo-2024, 정치부"}
        ).status_code
        == 303
    )
    cli("contacts", "tag", "cli@twin.example.org", "expo-2024", "정치부")
    same_but_channel(state(console, "web@twin.example.org"), state(console, "cli@twin.example.org"))
    assert logged(console, "contact.tag", f"user:{EDITOR}").data["added"] == ["expo-2024", "정치부"]
    bad = console.post(client, f"/admin/contacts/{cid}/tags", {"tag": " "})
    assert bad.status_code == 422
    # Untag: the link opens a confirmation page; a POST without the confirmation changes nothing.
    confirm = client.get(f"/admin/contacts/{cid}/untag?tag=old")
    assert confirm.status_code == 200
    form = lxml.html.fromstring(confirm.text).xpath("//main//form")[0]
    assert form.get("method") == "post"
    assert {i.get("name"): i.get("value") for i in form.xpath(".//input")}["confirm"] == "yes"
    unconfirmed = console.post(client, f"/admin/contacts/{cid}/untag", {"tag": "old"})
    assert unconfirmed.status_code == 200 and 'name="confirm" value="yes"' in unconfirmed.text
    assert "old" in state(console, "web@twin.example.org")["tags"]
    done = console.post(client, f"/admin/contacts/{cid}/untag", {"tag": "old", "confirm": "yes"})
    assert done.status_code == 303
    cli("contacts", "untag", "cli@twin.example.org", "old")
    same_but_channel(state(console, "web@twin.example.org"), state(console, "cli@twin.example.org"))
    assert logged(console, "contact.untag", f"user:{EDITOR}").data["removed"] == ["old"]
    assert client.get(f"/admin/contacts/{cid}/untag?tag=never-had").status_code == 404


def test_unsubscribe_from_a_list_as_the_command_line(console: Console, cli: Cli) -> None:
    ids = twins(console)
    client = console.signed_in("editor", EDITOR)
    cid = ids["web@twin.example.org"]
    assert client.get(f"/admin/contacts/{cid}/unsubscribe?list=ko").status_code == 200
    assert (
        console.post(client, f"/admin/contacts/{cid}/unsubscribe", {"list": "ko"}).status_code
        == 200
    )
    assert state(console, "web@twin.example.org")["subscriptions"]["ko"][0] == "subscribed"
    done = console.post(
        client, f"/admin/contacts/{cid}/unsubscribe", {"list": "ko", "confirm": "yes"}
    )
    assert done.status_code == 303
    cli("contacts", "unsubscribe", "cli@twin.example.org", "--list", "ko")
    web = state(console, "web@twin.example.org")
    assert web["subscriptions"] == {
        "ko": ("unsubscribed", "console"),
        "press": ("subscribed", None),
    }
    same_but_channel(web, state(console, "cli@twin.example.org"))
    event = logged(console, "unsubscribe", f"user:{EDITOR}")
    assert event.contact_id == cid and event.data["via"] == "console"
    # Already unsubscribed: nothing to confirm.
    assert client.get(f"/admin/contacts/{cid}/unsubscribe?list=ko").status_code == 404


def test_suppress_as_the_command_line(console: Console, cli: Cli) -> None:
    ids = twins(console)
    client = console.signed_in("editor", EDITOR)
    cid = ids["web@twin.example.org"]
    page = client.get(f"/admin/contacts/{cid}/suppress")
    assert page.status_code == 200 and 'value="unsubscribe-all" checked' in page.text
    assert (
        console.post(
            client, f"/admin/contacts/{cid}/suppress", {"reason": "unsubscribe-all"}
        ).status_code
        == 200
    )
    assert state(console, "web@twin.example.org")["suppression"] is None
    done = console.post(
        client, f"/admin/contacts/{cid}/suppress", {"reason": "unsubscribe-all", "confirm": "yes"}
    )
    assert done.status_code == 303
    cli("contacts", "unsubscribe", "cli@twin.example.org", "--yes")
    web = state(console, "web@twin.example.org")
    assert web["suppression"] == SuppressionReason.UNSUBSCRIBE_ALL.value
    assert {status for status, _via in web["subscriptions"].values()} == {"unsubscribed"}
    same_but_channel(web, state(console, "cli@twin.example.org"))
    assert logged(console, "suppress", f"user:{EDITOR}").contact_id == cid
    assert logged(console, "unsubscribe", f"user:{EDITOR}").data["all_lists"] is True
    # Suppressed already: the page says so and offers nothing to post.
    again = client.get(f"/admin/contacts/{cid}/suppress")
    assert "It is already suppressed" in again.text and 'name="confirm"' not in again.text


def test_suppress_by_decision_is_a_manual_suppression(console: Console, cli: Cli) -> None:
    ids = twins(console)
    client = console.signed_in("editor", EDITOR)
    cid = ids["web@twin.example.org"]
    done = console.post(
        client, f"/admin/contacts/{cid}/suppress", {"reason": "manual", "confirm": "yes"}
    )
    assert done.status_code == 303
    cli("suppressions", "add", "cli@twin.example.org")
    web = state(console, "web@twin.example.org")
    assert web["suppression"] == SuppressionReason.MANUAL.value
    same_but_channel(
        {**web, "subscriptions": {k: v[0] for k, v in web["subscriptions"].items()}},
        {
            **(by_cli := state(console, "cli@twin.example.org")),
            "subscriptions": {k: v[0] for k, v in by_cli["subscriptions"].items()},
        },
    )
    event = logged(console, "suppress", f"user:{EDITOR}")
    assert event.data == {"reason": "manual", "source": "console"}


def test_erase_as_the_command_line_keeps_the_address_suppressed(console: Console, cli: Cli) -> None:
    ids = twins(console)
    cid = ids["web@twin.example.org"]
    editor = console.signed_in("editor", EDITOR)
    # Erasing is for admins: an editor is refused (and sees no button).
    assert editor.get(f"/admin/contacts/{cid}/erase").status_code == 403
    assert (
        console.post(editor, f"/admin/contacts/{cid}/erase", {"confirm": "yes"}).status_code == 403
    )
    assert "Erase" not in editor.get(f"/admin/contacts/{cid}").text
    admin = console.signed_in("admin", ADMIN)
    assert "/erase" in admin.get(f"/admin/contacts/{cid}").text
    assert console.post(admin, f"/admin/contacts/{cid}/erase").status_code == 200  # asks first
    assert "name" in state(console, "web@twin.example.org")  # still there
    done = console.post(admin, f"/admin/contacts/{cid}/erase", {"confirm": "yes"})
    assert done.status_code == 303 and done.headers["Location"].endswith("/admin/contacts")
    cli("contacts", "erase", "cli@twin.example.org", "--yes")
    web = state(console, "web@twin.example.org")
    assert web == {"contact": None, "suppression": SuppressionReason.ERASED.value}
    assert web == state(console, "cli@twin.example.org")
    erased = logged(console, "contact.erase", f"user:{ADMIN}")
    assert erased.contact_id is None
    with session_scope(console.settings) as s:
        leftovers = s.scalar(
            select(func.count())
            .select_from(Event)
            .where(func.lower(cast(Event.data, Text)).contains("web@twin"))
        )
        tags = s.scalar(
            select(func.count()).select_from(ContactTag).where(ContactTag.contact_id == cid)
        )
    assert leftovers == 0 and tags == 0
    assert admin.get(f"/admin/contacts/{cid}").status_code == 404


# --- who may, and what cannot get through ------------------------------------------------------


def test_a_viewer_is_refused_every_contacts_page(console: Console) -> None:
    ids = seed(console)
    cid = ids["jane.doe@herald.example.com"]
    viewer = console.signed_in("viewer")
    for path in (
        "/admin/contacts",
        "/admin/contacts?q=jane",
        f"/admin/contacts/{cid}",
        f"/admin/contacts/{cid}/edit",
        f"/admin/contacts/{cid}/untag?tag=vip",
        f"/admin/contacts/{cid}/unsubscribe?list=press",
        f"/admin/contacts/{cid}/suppress",
        f"/admin/contacts/{cid}/erase",
    ):
        assert viewer.get(path).status_code == 403, path
    before = state(console, "jane.doe@herald.example.com")
    for action, data in (
        ("edit", {"name": "Mallory"}),
        ("tags", {"tag": "x"}),
        ("untag", {"tag": "vip", "confirm": "yes"}),
        ("unsubscribe", {"list": "press", "confirm": "yes"}),
        ("suppress", {"reason": "manual", "confirm": "yes"}),
        ("erase", {"confirm": "yes"}),
    ):
        assert console.post(viewer, f"/admin/contacts/{cid}/{action}", data).status_code == 403
    assert state(console, "jane.doe@herald.example.com") == before
    assert 'href="/admin/contacts"' not in viewer.get("/admin/").text  # not in the menu


def shown_unescaped(page: str) -> list[str]:
    """The payloads' markers found unescaped. The attribute payload's "onfocus=alert" is shown
    as text wherever the value is (its quotes escaped): what must not appear is its quote."""
    markers = [m for m in unescaped(page) if m != "onfocus=alert"]
    return markers + (['onfocus=alert("'] if 'onfocus=alert("' in page else [])


def hostile(console: Console) -> int:
    with session_scope(console.settings) as s:
        create_list(s, "press", XSS["img"])
        contact, _sub = add_contact(
            s,
            "evil@example.org",
            "press",
            name=XSS["script"] + " Ali" + RLO + "fdp.exe",
            organisation=XSS["img"],
            tags=[XSS["svg"]],
        )
        edit_contact(
            s,
            contact.email,
            set_attributes={XSS["script"]: XSS["attr"], "site": XSS["js"], "beat": XSS["close"]},
        )
        tag_contact(s, contact.email, [XSS["close"][:90]])
        sub = s.scalar(select(Subscription).where(Subscription.contact_id == contact.id))
        assert sub is not None
        sub.consent_form = XSS["svg"]
        sub.consent_note = XSS["script"]
        return contact.id


def test_hostile_names_outlets_and_attributes_are_escaped_everywhere(console: Console) -> None:
    cid = hostile(console)
    client = console.signed_in("editor", EDITOR)
    pages = {
        "list": client.get("/admin/contacts"),
        "search": client.get("/admin/contacts?q=ali"),
        "fragment": search(client, q="ali"),
        "contact": client.get(f"/admin/contacts/{cid}"),
        "edit": client.get(f"/admin/contacts/{cid}/edit"),
        "untag": client.get(f"/admin/contacts/{cid}/untag?" + urlencode({"tag": XSS["svg"]})),
        "unsubscribe": client.get(f"/admin/contacts/{cid}/unsubscribe?list=press"),
        "suppress": client.get(f"/admin/contacts/{cid}/suppress"),
        "where error": client.get("/admin/contacts?" + urlencode({"where": XSS["script"]})),
        "bad edit": console.post(
            client, f"/admin/contacts/{cid}/edit", {"name": XSS["script"], "language": XSS["img"]}
        ),
    }
    for label, page in pages.items():
        assert page.status_code in (200, 422), label
        assert shown_unescaped(page.text) == [], label
        assert inline_code(page.text) == [], label
        # Each page did show a payload (escaped), or the test proves nothing about it.
        assert "&lt;" in page.text or label in ("unsubscribe", "suppress"), label
    assert "evil@example.org" in found(pages["search"].text)
    # The right-to-left override stays inside its own <bdi>: it cannot turn the page around.
    for label in ("list", "search", "contact"):
        tree = lxml.html.fromstring(pages[label].text)
        holders = [e for e in tree.iter() if isinstance(e.tag, str) and RLO in (e.text or "")]
        assert holders, label
        assert all(e.tag == "bdi" for e in holders), (label, [e.tag for e in holders])
