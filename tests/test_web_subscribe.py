"""Subscribe form, double opt-in, consent evidence, confirmation email, rate limits."""

from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from mailer import clock
from mailer.contacts.contact import add_contact, unsubscribe
from mailer.contacts.suppressions import suppress
from mailer.store.models import Contact, Event, SubscriptionStatus, Suppression, SuppressionReason
from mailer.store.ratelimit import Limit
from mailer.web import create_app
from tests.support.web import (
    UA,
    Web,
    confirm_url,
    consent_paragraph,
    expired_confirm_token,
    html_part,
    page_text,
    sha256,
    snapshot,
    status_of,
    subscription,
    text_part,
)


def test_form_offers_public_lists_only(web: Web, lists: dict[str, int]) -> None:
    page = page_text(web.client().get("/subscribe"))
    assert 'value="news"' in page and 'value="press"' in page
    assert 'value="board"' not in page and "Board members" not in page
    one = web.client().get("/subscribe/press")
    assert one.status_code == 200
    assert 'value="press"' in page_text(one) and 'value="news"' not in page_text(one)
    assert web.client().get("/subscribe/board").status_code == 404
    assert web.client().get("/subscribe/nope").status_code == 404


def test_subscribe_creates_pending_with_consent_and_sends_email(
    web: Web, lists: dict[str, int]
) -> None:
    client = web.client(REMOTE_ADDR="198.51.100.7")
    page = page_text(client.get("/subscribe?lang=ko"))
    shown = consent_paragraph(page)
    r = web.subscribe(
        client, " Kim.MinJi@Example.ORG ", ["news", "press"], lang="ko", name="김민지"
    )
    assert r.status_code == 200
    assert "메일함을 확인해 주세요" in page_text(r)
    with web.db() as s:
        contact = s.scalar(select(Contact).where(Contact.email == "kim.minji@example.org"))
        assert contact is not None
        assert (contact.name, contact.language) == ("김민지", "ko")
        for slug in ("news", "press"):
            sub = subscription(s, "kim.minji@example.org", slug)
            assert sub is not None
            assert sub.status == SubscriptionStatus.PENDING
            assert sub.source == "web"
            assert sub.consent_at is not None
            assert sub.consent_ip == "198.51.100.7"
            assert sub.consent_user_agent == UA
            assert sub.consent_form == "web:subscribe"
            # The hash is of the statement exactly as the reader saw it on the page.
            assert sub.consent_text_hash == sha256(shown)
            assert sub.confirmed_at is None
        event = s.scalar(select(Event).where(Event.kind == "subscribe.request"))
        assert event is not None and event.data["consent_text"] == shown
    (msg,) = web.outbox()
    assert msg["To"] == "kim.minji@example.org"
    assert msg["From"].addresses[0].addr_spec == web.settings.from_address
    assert msg["From"].addresses[0].display_name == web.settings.from_name
    assert msg["Subject"] == "Hanul Community Center 구독을 확인해 주세요"
    assert msg["Content-Language"] == "ko"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    text, body = text_part(msg), html_part(msg)
    # The name typed into the form is not printed: the email may reach a stranger's inbox.
    assert "김민지" not in text and "김민지" not in body and text.startswith("안녕하세요.")
    assert "Community newsletter" in text and "Press releases" in text
    url = confirm_url(msg)
    assert url.startswith("https://news.hanul.example.org/confirm/")
    assert html.escape(url) in body or url in body
    assert web.settings.postal_address in text


def test_same_answer_for_new_known_and_suppressed(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        add_contact(s, "known@example.org", "news")
        suppress(s, "bounced@example.org", SuppressionReason.HARD_BOUNCE, source="test")
        suppress(s, "angry@example.org", SuppressionReason.COMPLAINT, source="test")
    answers = {}
    for address in (
        "new@example.org",
        "known@example.org",
        "bounced@example.org",
        "angry@example.org",
    ):
        r = web.subscribe(web.client(), address, ["news"])
        assert r.status_code == 200
        answers[address] = page_text(r).replace(address, "ADDRESS")
        assert {k: v for k, v in r.headers.items() if k != "Content-Length"} == {
            k: v
            for k, v in web.subscribe(web.client(), "x" + address, ["news"]).headers.items()
            if k != "Content-Length"
        }
    assert len(set(answers.values())) == 1
    mailed = {m["To"] for m in web.outbox()}
    # The known address gets a confirmation too; suppressed bounces and complaints get nothing.
    assert "new@example.org" in mailed and "known@example.org" in mailed
    assert "bounced@example.org" not in mailed and "angry@example.org" not in mailed
    assert status_of(web, "known@example.org", "news") == SubscriptionStatus.SUBSCRIBED
    with web.db() as s:
        assert s.scalar(select(Contact).where(Contact.email == "bounced@example.org")) is None
        refused = s.scalars(select(Event).where(Event.kind == "subscribe.refused")).all()
        assert sorted(e.data["reason"] for e in refused) == ["complaint", "hard-bounce"]


def test_form_errors_keep_values_and_change_nothing(web: Web, lists: dict[str, int]) -> None:
    before = snapshot(web)
    r = web.subscribe(web.client(), "not an address", ["news"], name="Ana")
    assert r.status_code == 400
    page = page_text(r)
    assert "Please enter a valid email address." in page and 'value="Ana"' in page
    r = web.subscribe(web.client(), "ana@example.org", [], lang="ko")
    assert r.status_code == 400 and "받을 소식을 하나 이상 골라 주세요." in page_text(r)
    r = web.subscribe(web.client(), "ana@example.org", ["board"])  # private list
    assert r.status_code == 400 and "Please choose at least one list." in page_text(r)
    after = snapshot(web)
    assert after["contacts"] == before["contacts"] and after["subscriptions"] == []
    assert web.outbox() == []


def test_honeypot_gets_the_ordinary_answer_and_nothing_happens(
    web: Web, lists: dict[str, int]
) -> None:
    r = web.subscribe(web.client(), "bot@example.org", ["news"], leave_empty="http://spam")
    assert r.status_code == 200 and "Check your inbox" in page_text(r)
    assert snapshot(web)["contacts"] == [] and web.outbox() == []


def test_confirm_get_changes_nothing_post_subscribes_idempotently(
    web: Web, lists: dict[str, int]
) -> None:
    web.subscribe(web.client(), "ana@example.org", ["news"], name="Ana")
    path = web.path(confirm_url(web.outbox()[0]))
    before = snapshot(web)
    for _ in range(2):
        page = web.client().get(path)
        assert page.status_code == 200
        assert web.client().head(path).status_code == 200
    text = page_text(page)
    assert "a*a@example.org" in text and "Community newsletter" in text
    assert "ana@example.org" not in text  # partly masked: forwarded mail shows no full address
    assert f'action="{path}"' in text and 'method="post"' in text
    assert snapshot(web) == before
    r = web.client().post(path)
    assert r.status_code == 200 and "You are subscribed" in page_text(r)
    assert status_of(web, "ana@example.org", "news") == SubscriptionStatus.SUBSCRIBED
    again = web.client().post(path)
    assert again.status_code == 200
    with web.db() as s:
        sub = subscription(s, "ana@example.org", "news")
        assert sub is not None and sub.confirmed_at is not None
        assert sub.consent_form == "web:subscribe"  # the request's evidence is kept
        confirms = s.scalars(select(Event).where(Event.kind == "confirm")).all()
        assert len(confirms) == 1 and confirms[0].data["user_agent"] == UA


def test_form_does_not_rename_an_existing_contact(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        add_contact(s, "lee@example.org", "press", name="Lee Sun", language="en")
    web.subscribe(
        web.client(), "lee@example.org", ["news"], name="Mallory", language="ko", lang="ko"
    )
    with web.db() as s:
        contact = s.scalar(select(Contact).where(Contact.email == "lee@example.org"))
        assert contact is not None and (contact.name, contact.language) == ("Lee Sun", "en")
    # The email still speaks the language chosen by whoever is at the form.
    assert web.outbox()[0]["Content-Language"] == "ko"


def test_opted_out_list_stays_unsubscribed_until_confirmed(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        add_contact(s, "park@example.org", "news")
        unsubscribe(s, "park@example.org", "news", via="web")
    web.subscribe(web.client(), "park@example.org", ["news"])
    assert status_of(web, "park@example.org", "news") == SubscriptionStatus.UNSUBSCRIBED
    web.client().post(web.path(confirm_url(web.outbox()[0])))
    assert status_of(web, "park@example.org", "news") == SubscriptionStatus.SUBSCRIBED
    with web.db() as s:
        sub = subscription(s, "park@example.org", "news")
        assert sub is not None and sub.unsubscribed_at is None


def test_unsubscribed_from_everything_may_opt_in_again(web: Web, lists: dict[str, int]) -> None:
    with web.db() as s:
        add_contact(s, "choi@example.org", "news")
        unsubscribe(s, "choi@example.org", None, via="one-click")
    web.subscribe(web.client(), "choi@example.org", ["press"])
    (msg,) = web.outbox()
    with web.db() as s:  # still suppressed until the person proves the mailbox is theirs
        assert s.scalar(select(Suppression).where(Suppression.email == "choi@example.org"))
    web.client().post(web.path(confirm_url(msg)))
    with web.db() as s:
        assert s.scalar(select(Suppression).where(Suppression.email == "choi@example.org")) is None
        assert s.scalar(select(Event).where(Event.kind == "unsuppress")) is not None
    assert status_of(web, "choi@example.org", "press") == SubscriptionStatus.SUBSCRIBED
    assert status_of(web, "choi@example.org", "news") == SubscriptionStatus.UNSUBSCRIBED


def test_confirm_refuses_a_hard_bounced_address(web: Web, lists: dict[str, int]) -> None:
    web.subscribe(web.client(), "gone@example.org", ["news"])
    path = web.path(confirm_url(web.outbox()[0]))
    with web.db() as s:
        suppress(s, "gone@example.org", SuppressionReason.HARD_BOUNCE, source="test")
    before = snapshot(web)
    r = web.client().post(path)
    assert r.status_code == 200 and "We cannot add this address" in page_text(r)
    assert snapshot(web) == before


def test_expired_link_offers_a_new_email(web: Web, lists: dict[str, int]) -> None:
    web.subscribe(web.client(), "late@example.org", ["news"])
    with web.db() as s:
        contact = s.scalar(select(Contact).where(Contact.email == "late@example.org"))
        assert contact is not None
        contact_id = contact.id
    token = expired_confirm_token(web.settings, contact_id, (lists["news"],))
    before = snapshot(web)
    for method in ("get", "post"):
        r = getattr(web.client(), method)(f"/confirm/{token}")
        assert r.status_code == 410
        assert "This link has expired" in page_text(r)
        assert f'action="/confirm/{token}/resend"' in page_text(r)
    assert snapshot(web) == before
    # Within 24 hours of the first email the address gets no second one...
    r = web.client().post(f"/confirm/{token}/resend")
    assert r.status_code == 200 and len(web.outbox()) == 1
    # ...a day later it does, and the new link confirms.
    with clock.pinned(clock.now() + timedelta(hours=25)):
        r = web.client().post(f"/confirm/{token}/resend")
        web.send_notices()
    assert r.status_code == 200 and "A new link is on its way" in page_text(r)
    assert len(web.outbox()) == 2
    web.client().post(web.path(confirm_url(web.outbox()[1])))
    assert status_of(web, "late@example.org", "news") == SubscriptionStatus.SUBSCRIBED


def test_one_confirmation_email_per_address_per_day(web: Web, lists: dict[str, int]) -> None:
    t0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
    with clock.pinned(t0):
        web.subscribe(web.client(), "daily@example.org", ["news"])
    with clock.pinned(t0 + timedelta(hours=23, minutes=59)):
        r = web.subscribe(web.client(REMOTE_ADDR="192.0.2.9"), "DAILY@example.org", ["press"])
        assert r.status_code == 200  # the same answer, but no second email
    # A second `mailer serve` process on the same database counts the same window.
    other = create_app(web.settings)
    with clock.pinned(t0 + timedelta(hours=23, minutes=59)):
        web.subscribe(Web(other, web.settings).client(), "daily@example.org", ["news"])
    assert len(web.outbox()) == 1
    with clock.pinned(t0 + timedelta(hours=24, seconds=1)):
        web.subscribe(web.client(), "daily@example.org", ["press"])
    assert len(web.outbox()) == 2


def test_address_limit_holds_under_concurrent_requests(web: Web, lists: dict[str, int]) -> None:
    apps = [create_app(web.settings) for _ in range(2)]

    def post(i: int) -> int:
        client = Web(apps[i % 2], web.settings).client(REMOTE_ADDR=f"203.0.113.{i}")
        return web.subscribe(client, "race@example.org", ["news"]).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(post, range(12)))
    assert codes == [200] * 12
    assert len(web.outbox()) == 1


def test_per_ip_limit(web: Web, lists: dict[str, int]) -> None:
    web.app.config["MAILER_IP_LIMIT"] = Limit(3, 3600)
    client = web.client(REMOTE_ADDR="192.0.2.50")
    for i in range(3):
        assert web.subscribe(client, f"p{i}@example.org", ["news"]).status_code == 200
    r = web.subscribe(client, "p3@example.org", ["news"])
    assert r.status_code == 429
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    assert "Too many attempts" in page_text(r)
    assert len(web.outbox()) == 3
    other = web.client(REMOTE_ADDR="192.0.2.51")
    assert web.subscribe(other, "p4@example.org", ["news"]).status_code == 200
    with clock.pinned(clock.now() + timedelta(hours=1, seconds=1)):
        assert web.subscribe(client, "p5@example.org", ["news"]).status_code == 200


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_consent_hash_matches_the_page_in_each_language(
    web: Web, lists: dict[str, int], lang: str
) -> None:
    shown = consent_paragraph(page_text(web.client().get(f"/subscribe?lang={lang}")))
    web.subscribe(web.client(), "hash@example.org", ["news"], lang=lang)
    with web.db() as s:
        sub = subscription(s, "hash@example.org", "news")
        assert sub is not None and sub.consent_text_hash == sha256(shown)


def test_embed_form_may_be_framed_and_its_answer_too(web: Web, lists: dict[str, int]) -> None:
    r = web.client().get("/embed")
    csp = r.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://hanul.example.org" in csp
    assert "X-Frame-Options" not in r.headers
    assert 'name="form" value="embed"' in page_text(r)
    answer = web.subscribe(web.client(), "frame@example.org", ["news"], form="embed")
    assert (
        "frame-ancestors 'self' https://hanul.example.org"
        in answer.headers["Content-Security-Policy"]
    )
    with web.db() as s:
        sub = subscription(s, "frame@example.org", "news")
        assert sub is not None and sub.consent_form == "web:embed"
    plain = web.subscribe(web.client(), "plain@example.org", ["news"])
    assert "frame-ancestors 'none'" in plain.headers["Content-Security-Policy"]


class _FormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: list[tuple[str, str]] = []
        self.text: list[str] = []
        self._in_p = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a["action"]
        if tag == "input" and a.get("type") in ("hidden", "checkbox") and a.get("name"):
            self.fields.append((a["name"], a.get("value", "")))


def test_documented_snippet_posts_to_the_form(web: Web, lists: dict[str, int]) -> None:
    r = web.client().get("/embed/snippet.html?lang=ko")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    snippet = page_text(r)
    parser = _FormFields()
    parser.feed(snippet)
    assert parser.action == "https://news.hanul.example.org/subscribe"
    assert 'name="leave_empty"' in snippet  # the honeypot
    data: dict[str, list[str]] = {}
    for name, value in parser.fields:
        data.setdefault(name, []).append(value)
    data.update(email=["snippet@example.org"], language=["ko"], list=["press"])
    answer = web.client().post(web.path(parser.action), data=data)
    assert answer.status_code == 200
    web.send_notices()
    statement = re.search(r"<p>(위에서 고른.*?)</p>", snippet)
    assert statement
    with web.db() as s:
        sub = subscription(s, "snippet@example.org", "press")
        assert sub is not None and sub.consent_form == "web:snippet"
        assert sub.consent_text_hash == sha256(html.unescape(statement.group(1)))
    assert web.outbox()[0]["Content-Language"] == "ko"


def test_ip_counter_is_atomic_across_processes(web: Web, lists: dict[str, int]) -> None:
    apps = [create_app(web.settings) for _ in range(3)]
    for app in apps:
        app.config["MAILER_IP_LIMIT"] = Limit(5, 3600)

    def post(i: int) -> int:
        client = Web(apps[i % 3], web.settings).client(REMOTE_ADDR="198.51.100.99")
        return web.subscribe(client, f"crowd{i}@example.org", ["news"]).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = list(pool.map(post, range(14)))
    assert sorted(codes) == [200] * 5 + [429] * 9
    assert len(web.outbox()) == 5
