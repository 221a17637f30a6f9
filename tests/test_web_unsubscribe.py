"""Unsubscribe pages, RFC 8058 one-click, preferences with CSRF, and a mail scanner's visit."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer import tokens
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import remove_list
from mailer.contacts.suppressions import suppress
from mailer.store.models import (
    Campaign,
    Contact,
    Event,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from mailer.web import security
from tests.support.cli import Cli
from tests.support.web import (
    Web,
    html_part,
    page_text,
    snapshot,
    status_of,
    subscription,
    text_part,
)

SAMPLES = Path(__file__).parents[1] / "mailer" / "samples"


def _subscribed(web: Web, address: str, *slugs: str, language: str | None = "en") -> int:
    with web.db() as s:
        contact = None
        for slug in slugs:
            contact, _ = add_contact(s, address, slug, name="Jane Doe", language=language)
        assert contact is not None
        return contact.id


def _u(web: Web, contact_id: int, list_id: int | None, campaign_id: int | None = None) -> str:
    return f"/u/{tokens.make_unsubscribe(web.settings, contact_id, list_id, campaign_id)}"


def _events(web: Web, kind: str) -> list[Event]:
    with web.db() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def test_unsubscribe_page_names_list_and_masked_address(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane.doe@example.org", "news", "press")
    path = _u(web, cid, lists["news"])
    before = snapshot(web)
    r = web.client().get(path)
    assert web.client().head(path).status_code == 200
    assert snapshot(web) == before
    page = page_text(r)
    assert r.status_code == 200
    assert "Community newsletter" in page and "j******e@example.org" in page
    assert "jane.doe@example.org" not in page
    assert 'name="scope" value="all"' in page  # the "from all lists" choice
    assert f'action="{path}"' in page and 'method="post"' in page
    prefs = re.search(r'href="(/preferences/[^"]+)"', page)
    assert prefs and web.client().get(prefs.group(1)).status_code == 200


def test_button_unsubscribes_from_one_list_idempotently(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "news", "press")
    path = _u(web, cid, lists["news"])
    for _ in range(2):
        r = web.client().post(path)
        assert r.status_code == 200 and "You are unsubscribed" in page_text(r)
        assert "“Community newsletter”" in page_text(r)
    assert status_of(web, "jane@example.org", "news") == SubscriptionStatus.UNSUBSCRIBED
    assert status_of(web, "jane@example.org", "press") == SubscriptionStatus.SUBSCRIBED
    with web.db() as s:
        sub = subscription(s, "jane@example.org", "news")
        assert sub is not None and sub.unsubscribed_via == "web"
    assert len(_events(web, "unsubscribe")) == 1


def test_from_all_lists_suppresses(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "news", "press")
    r = web.client().post(_u(web, cid, lists["news"]), data={"scope": "all"})
    assert r.status_code == 200 and "any email from Hanul Community Center" in page_text(r)
    for slug in ("news", "press"):
        assert status_of(web, "jane@example.org", slug) == SubscriptionStatus.UNSUBSCRIBED
    with web.db() as s:
        sup = s.scalar(select(Suppression).where(Suppression.email == "jane@example.org"))
        assert sup is not None and sup.reason == SuppressionReason.UNSUBSCRIBE_ALL


def test_token_without_a_list_unsubscribes_from_everything(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "news", "press")
    path = _u(web, cid, None)
    assert "Stop all emails from Hanul Community Center" in page_text(web.client().get(path))
    web.client().post(path)
    with web.db() as s:
        assert s.scalar(select(Suppression).where(Suppression.email == "jane@example.org"))


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_one_click(web: Web, lists: dict[str, int], encoding: str) -> None:
    cid = _subscribed(web, "jane@example.org", "news", "press")
    path = _u(web, cid, lists["news"], campaign_id=424242)  # a campaign that is not there
    client = web.app.test_client(use_cookies=False)
    body = {"List-Unsubscribe": "One-Click"}
    if encoding == "multipart":
        r = client.post(path, data=body, content_type="multipart/form-data")
        assert r.request.content_type.startswith("multipart/form-data")
    else:
        r = client.post(path, data=body)
        assert r.request.content_type == "application/x-www-form-urlencoded"
    assert r.status_code == 200  # never a redirect
    assert "Location" not in r.headers and "Set-Cookie" not in r.headers
    assert status_of(web, "jane@example.org", "news") == SubscriptionStatus.UNSUBSCRIBED
    assert status_of(web, "jane@example.org", "press") == SubscriptionStatus.SUBSCRIBED
    with web.db() as s:
        sub = subscription(s, "jane@example.org", "news")
        assert sub is not None and sub.unsubscribed_via == "one-click"
    (event,) = _events(web, "unsubscribe")
    assert event.data["via"] == "one-click" and event.campaign_id is None
    # Providers may post again: still 200, nothing recorded twice.
    assert client.post(path, data=body).status_code == 200
    assert len(_events(web, "unsubscribe")) == 1


def test_one_click_ignores_the_all_lists_field(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "news", "press")
    web.client().post(
        _u(web, cid, lists["news"]), data={"List-Unsubscribe": "One-Click", "scope": "all"}
    )
    assert status_of(web, "jane@example.org", "press") == SubscriptionStatus.SUBSCRIBED


def test_deleted_list_offers_everything(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "news", "press")
    path = _u(web, cid, lists["news"])
    with web.db() as s:
        remove_list(s, "news")
    assert "Stop all emails" in page_text(web.client().get(path))
    assert web.client().post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert status_of(web, "jane@example.org", "press") == SubscriptionStatus.UNSUBSCRIBED


# --- preferences ----------------------------------------------------------------------------


def _prefs(web: Web, contact_id: int) -> str:
    return f"/preferences/{tokens.make_preferences(web.settings, contact_id)}"


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, page
    return m.group(1)


def test_preferences_page(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "board", language="ko")
    before = snapshot(web)
    r = web.client().get(_prefs(web, cid))
    assert snapshot(web) == before
    page = page_text(r)
    assert '<html lang="ko">' in page and "j**e@example.org" in page
    # Public lists, and the private list the contact is on; nothing else.
    for slug in ("news", "press", "board"):
        assert f'value="{slug}"' in page
    assert re.search(r'value="board" checked', page) and not re.search(
        r'value="news" checked', page
    )
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert "Path=/preferences/" in cookie


def test_preferences_save(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "news", "board")
    client = web.client(REMOTE_ADDR="192.0.2.33")
    path = _prefs(web, cid)
    token = _csrf(page_text(client.get(path)))
    r = client.post(
        path,
        data={
            "csrf": token,
            "action": "save",
            "name": "제인 도",
            "language": "ko",
            "list": ["press", "board"],
        },
    )
    assert r.status_code == 200
    assert "설정이 저장되었습니다." in page_text(r)  # the page now speaks the chosen language
    assert status_of(web, "jane@example.org", "news") == SubscriptionStatus.UNSUBSCRIBED
    assert status_of(web, "jane@example.org", "press") == SubscriptionStatus.SUBSCRIBED
    assert status_of(web, "jane@example.org", "board") == SubscriptionStatus.SUBSCRIBED
    with web.db() as s:
        contact = s.get(Contact, cid)
        assert contact is not None and (contact.name, contact.language) == ("제인 도", "ko")
        press = subscription(s, "jane@example.org", "press")
        assert press is not None and press.consent_form == "web:preferences"
        assert press.consent_ip == "192.0.2.33" and press.confirmed_at is not None
        news = subscription(s, "jane@example.org", "news")
        assert news is not None and news.unsubscribed_via == "preferences"


def test_preferences_csrf(web: Web, lists: dict[str, int]) -> None:
    cid = _subscribed(web, "jane@example.org", "news")
    other = _subscribed(web, "other@example.org", "news")
    path = _prefs(web, cid)
    client = web.client()
    good = _csrf(page_text(client.get(path)))
    foreign = _csrf(page_text(web.client().get(_prefs(web, other))))
    before = snapshot(web)
    attempts = [
        (client, {}),  # no value
        (client, {"csrf": good[:-2] + "xx"}),  # altered
        (client, {"csrf": foreign}),  # made for another person's page
        (web.client(), {"csrf": good}),  # right value, no cookie (another browser)
    ]
    for who, extra in attempts:
        r = who.post(path, data={"action": "unsubscribe_all", **extra})
        assert r.status_code == 400 and "This form has expired" in page_text(r)
    assert snapshot(web) == before
    r = client.post(path, data={"action": "unsubscribe_all", "csrf": good})
    assert r.status_code == 200
    with web.db() as s:
        assert s.scalar(select(Suppression).where(Suppression.email == "jane@example.org"))


def test_csrf_value_is_bound_to_token_and_nonce(web: Web) -> None:
    key = web.settings.secret_key
    value = security.make_csrf(key, "token-a", "n" * 24)
    assert security.check_csrf(key, "token-a", value, "n" * 24)
    assert not security.check_csrf(key, "token-b", value, "n" * 24)
    assert not security.check_csrf(key, "token-a", value, "m" * 24)
    assert not security.check_csrf("other-key", "token-a", value, "n" * 24)


def test_preferences_lift_own_opt_out_but_not_a_bounce(web: Web, lists: dict[str, int]) -> None:
    me = _subscribed(web, "me@example.org", "news")
    bounced = _subscribed(web, "bounced@example.org", "news")
    with web.db() as s:
        suppress(s, "me@example.org", SuppressionReason.UNSUBSCRIBE_ALL, source="web")
        suppress(s, "bounced@example.org", SuppressionReason.HARD_BOUNCE, source="dsn")
    for cid, _address in ((me, "me@example.org"), (bounced, "bounced@example.org")):
        client = web.client()
        page = page_text(client.get(_prefs(web, cid)))
        client.post(
            _prefs(web, cid),
            data={"csrf": _csrf(page), "action": "save", "list": ["news"], "language": "en"},
        )
    assert status_of(web, "me@example.org", "news") == SubscriptionStatus.SUBSCRIBED
    assert status_of(web, "bounced@example.org", "news") == SubscriptionStatus.UNSUBSCRIBED
    with web.db() as s:
        assert s.scalar(select(Suppression).where(Suppression.email == "me@example.org")) is None
        assert s.scalar(select(Suppression).where(Suppression.email == "bounced@example.org"))
    page = page_text(web.client().get(_prefs(web, bounced)))
    assert "This address cannot receive our emails" in page and "disabled" in page


# --- a mail scanner's visit to a real sent message -------------------------------------------


def _links(web: Web, text: str) -> set[str]:
    base = re.escape(web.settings.base_url.rstrip("/"))
    return {m.group(0).rstrip(".,)") for m in re.finditer(base + r"/[^\s\"'<>]*", text)}


def test_scanner_visiting_every_link_changes_nothing(
    web: Web, lists: dict[str, int], tmp_path: Path, cli: Cli
) -> None:
    people = [("kim.reporter@example.com", "김민수", "ko"), ("jane@example.net", "Jane", "en")]
    with web.db() as s:
        for address, name, lang in people:
            add_contact(s, address, "press", name=name, language=lang)
    folder = tmp_path / "releases"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    cli("send", str(folder / "election-night.en.md"), "--list", "press", "--yes")
    messages = web.outbox()
    assert {m["To"].addresses[0].addr_spec for m in messages} == {p[0] for p in people}
    before = snapshot(web)
    for msg in messages:
        header = str(msg["List-Unsubscribe"])
        links = _links(web, text_part(msg)) | _links(web, html_part(msg)) | _links(web, header)
        assert any("/u/" in link for link in links)
        assert any("/preferences/" in link for link in links)
        for link in sorted(links):
            path = web.path(link)
            for method in ("get", "head"):
                r = getattr(web.client(), method)(path)
                assert r.status_code in (200, 302), (method, link, r.status_code)
    assert snapshot(web) == before
    # The mail client's one-click button: the header's https URL, as RFC 8058 says.
    msg = next(m for m in messages if "kim.reporter" in str(m["To"]))
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = re.search(r"<(https://[^>]+)>", str(msg["List-Unsubscribe"]))
    assert one_click
    r = web.app.test_client(use_cookies=False).post(
        web.path(one_click.group(1)), data={"List-Unsubscribe": "One-Click"}
    )
    assert r.status_code == 200
    assert status_of(web, "kim.reporter@example.com", "press") == SubscriptionStatus.UNSUBSCRIBED
    assert status_of(web, "jane@example.net", "press") == SubscriptionStatus.SUBSCRIBED
    (event,) = _events(web, "unsubscribe")
    with web.db() as s:
        campaign = s.scalars(select(Campaign)).one()
    assert event.campaign_id == campaign.id and event.data["via"] == "one-click"
