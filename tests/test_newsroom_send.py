"""The newsroom after real sends: the embargo boundary everywhere, releases kept off, preview
links, withdrawals and corrections, the view-in-browser link, and no reader's name, address or
token on any public page.

Each test sends the sample release with `mailer send` (outbox maildir or a real SMTP server on
loopback) on every database engine, then reads the newsroom through the Flask test client
under a pinned clock. The organisation's zone is Asia/Seoul: the embargo 12:00 UTC reads as
9:00 PM KST.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from flask.testing import FlaskClient

from mailer import clock
from mailer.config import Settings
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.newsroom import (
    EMBARGO,
    EN_TITLE,
    KO_TITLE,
    READERS,
    SECOND,
    clear_outbox,
    crawl,
    newsroom_starts,
    organisation,
    outbox,
    parts,
    readers,
    release_folder,
)
from tests.support.sending import use_smtp
from tests.support.smtp import SmtpServer

PAGE_EN = "/news/2024/11/election-night/en"
PAGE_KO = "/news/2024/11/election-night/ko"
SLUG = "election-night"


def pin(moment: datetime) -> None:
    clock.set_clock(lambda: moment)


def client(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


def body(c: FlaskClient, path: str) -> str:
    response = c.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return response.get_data(as_text=True)


def assert_nowhere(c: FlaskClient, settings: Settings) -> None:
    """Not a page, an index entry, a feed entry or a sitemap entry, in either language."""
    for path in (PAGE_EN, PAGE_KO):
        assert c.get(path).status_code == 404, path
    assert c.get("/news/en/?list=press").status_code == 404
    assert c.get("/news/en/lists/press/feed.atom").status_code == 404
    for visit in crawl(c, settings, newsroom_starts(settings)):
        assert SLUG not in visit.body, visit.path
        assert EN_TITLE not in visit.body and KO_TITLE not in visit.body, visit.path
    for lang in ("en", "ko"):
        feed = feedparser.parse(body(c, f"/news/{lang}/feed.atom"))
        assert not feed.bozo and feed.entries == []


def assert_everywhere(c: FlaskClient, settings: Settings) -> None:
    assert EN_TITLE in body(c, PAGE_EN)
    assert KO_TITLE in body(c, PAGE_KO)
    assert PAGE_EN in body(c, "/news/en/") and EN_TITLE in body(c, "/news/en/")
    assert PAGE_KO in body(c, "/news/ko/") and KO_TITLE in body(c, "/news/ko/")
    assert PAGE_EN in body(c, "/news/en/?list=press")
    for lang, title in (("en", EN_TITLE), ("ko", KO_TITLE)):
        for path in (f"/news/{lang}/feed.atom", f"/news/{lang}/lists/press/feed.atom"):
            feed = feedparser.parse(body(c, path))
            assert not feed.bozo, feed.bozo_exception
            assert [e.title for e in feed.entries] == [title]
    sitemap = body(c, "/news/sitemap.xml")
    assert f"{settings.base_url}{PAGE_EN}" in sitemap and f"{settings.base_url}{PAGE_KO}" in sitemap


@pytest.mark.parametrize("road", ["embargo", "first-send"])
def test_the_boundary_to_the_second(settings: Settings, tmp_path: Path, road: str) -> None:
    """One second before max(embargo, first send): 404 everywhere; one second after: there."""
    settings = organisation(settings, tmp_path)
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    if road == "embargo":
        path = release_folder(tmp_path, front=f"embargo: {EMBARGO.isoformat()}")
        pin(EMBARGO - timedelta(hours=6))
        cli("send", str(path), "--list", "press", "--yes", "--early")
        lift = EMBARGO
    else:
        path = release_folder(tmp_path)
        lift = EMBARGO + timedelta(days=3)
        pin(lift)
        cli("send", str(path), "--list", "press", "--yes")
    c = client(settings)
    pin(lift - SECOND)
    assert_nowhere(c, settings)
    pin(lift)
    assert EN_TITLE in body(c, PAGE_EN)
    pin(lift + SECOND)
    assert_everywhere(c, settings)
    # The page says when it went public, in the organisation's zone, zone named.
    when = "March 1, 2030, 9:00 PM KST" if road == "embargo" else "March 4, 2030, 9:00 PM KST"
    assert f"Published {when}" in body(c, PAGE_EN)


@pytest.mark.parametrize("kept_off", ["publish-false", "member-list"])
def test_releases_kept_off_the_newsroom(settings: Settings, tmp_path: Path, kept_off: str) -> None:
    settings = organisation(settings, tmp_path)
    cli = Cli(tmp_path / "mailer.toml")
    if kept_off == "publish-false":
        readers(settings, "press", press=True)
        path = release_folder(tmp_path, front="publish: false")
        target = "press"
    else:
        readers(settings, "members", archive=False)
        path = release_folder(tmp_path)
        target = "members"
    pin(EMBARGO)
    cli("send", str(path), "--list", target, "--yes")
    c = client(settings)
    pin(EMBARGO + timedelta(days=400))
    assert_nowhere(c, settings)
    assert c.get(f"/news/en/?list={target}").status_code == 404
    assert c.get(f"/news/ko/lists/{target}/feed.atom").status_code == 404
    # The view-in-browser link is the campaign's signed link, and it shows the release.
    messages = outbox(settings)
    assert messages
    for msg in messages:
        page_html, text = parts(msg)
        lang = msg["Content-Language"]
        link = re.search(
            r"https://news\.hanul\.example\.org(/news/view/[A-Za-z0-9._-]+/(en|ko))", text
        )
        assert link is not None, text[:400]
        assert link.group(2) == lang
        assert html.escape(settings.base_url + link.group(1)) in page_html
        page = c.get(link.group(1))
        assert page.status_code == 200
        assert page.headers["Cache-Control"] == "no-store"
        assert (KO_TITLE if lang == "ko" else EN_TITLE) in page.get_data(as_text=True)
    if kept_off == "member-list":
        # Sent to a list that keeps an archive as well: now it is on the newsroom.
        readers(settings, "press", press=True, people=[("desk@example.com", "Desk", "en")])
        cli("send", str(path), "--list", "press", "--yes")
        assert_everywhere(c, settings)
        assert c.get("/news/en/?list=members").status_code == 404


def test_preview_links(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    first = release_folder(tmp_path, front=f"embargo: {EMBARGO.isoformat()}")
    other = release_folder(tmp_path, "town-hall", front=f"embargo: {EMBARGO.isoformat()}")
    made = EMBARGO - timedelta(days=1)
    pin(made)
    cli("send", str(first), "--list", "press", "--yes", "--early")
    cli("send", str(other), "--list", "press", "--yes", "--early")
    data = json.loads(cli("news", "preview-link", SLUG, "--hours", "2", "--json").output)
    assert data["expires"] == (made + timedelta(hours=2)).isoformat()
    urls = {lang: url.removeprefix(settings.base_url) for lang, url in data["urls"].items()}
    assert set(urls) == {"en", "ko"}
    c = client(settings)
    for lang, mark, title in (
        ("en", "EMBARGOED UNTIL March 1, 2030, 9:00 PM KST", EN_TITLE),
        ("ko", "엠바고: 2030년 3월 1일 오후 9:00 (KST) 이후 보도", KO_TITLE),
    ):
        response = c.get(urls[lang])
        page = response.get_data(as_text=True)
        assert response.status_code == 200
        assert mark in page and title in page
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Robots-Tag"] == "noindex"
        assert '<meta name="robots" content="noindex, nofollow">' in page
        assert '<link rel="canonical"' not in page
    assert c.get(PAGE_EN).status_code == 404  # the public page still holds the embargo
    path, _, key = urls["en"].partition("?key=")
    forged = [
        key[:-1] + ("A" if key[-1] != "A" else "B"),  # signature altered
        key[:3] + ("x" if key[3] != "x" else "y") + key[4:],  # payload altered
        key + "=",  # not the text we wrote
        "",
    ]
    for bad in forged:
        assert c.get(f"{path}?key={bad}").status_code == 404, bad
    # A genuine key opens only its own release.
    assert c.get(f"/news/preview/town-hall/en?key={key}").status_code == 404
    # A view-in-browser token is not a preview key (a salt of its own).
    view = re.search(r"/news/view/([A-Za-z0-9._-]+)/", parts(outbox(settings)[0])[1])
    assert view is not None
    assert c.get(f"{path}?key={view.group(1)}").status_code == 404
    # Expired: one second past its two hours.
    pin(made + timedelta(hours=2) - SECOND)
    assert c.get(urls["en"]).status_code == 200
    pin(made + timedelta(hours=2))
    assert c.get(urls["en"]).status_code == 404
    # Past the lift a fresh preview link leads to the public page.
    pin(EMBARGO + SECOND)
    again = json.loads(cli("news", "preview-link", SLUG, "--json").output)
    response = c.get(again["urls"]["ko"].removeprefix(settings.base_url))
    assert response.status_code == 302 and response.headers["Location"].endswith(PAGE_KO)
    out = cli("news", "preview-link", SLUG, "--hours", "0", expect=1).output
    assert "--hours: expected more than 0" in out


def test_withdraw_and_correct(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    path = release_folder(tmp_path)
    pin(EMBARGO)
    cli("send", str(path), "--list", "press", "--yes")
    c = client(settings)
    pin(EMBARGO + timedelta(hours=1))
    cli("news", "correct", SLUG, "--note", "Turnout rose by 19%, not 18%.")
    en, ko = body(c, PAGE_EN), body(c, PAGE_KO)
    assert "Correction (March 1, 2030, 10:00 PM KST):</strong> Turnout rose by 19%, not 18%." in en
    assert "정정 (2030년 3월 1일 오후 10:00 (KST)):</strong> Turnout rose by 19%, not 18%." in ko
    assert EN_TITLE in en  # a correction keeps the page
    feed = feedparser.parse(body(c, "/news/en/feed.atom"))
    assert "Turnout rose by 19%" in feed.entries[0].content[0].value
    assert feed.entries[0].updated == "2030-03-01T13:00:00+00:00"
    shown = json.loads(cli("news", "show", SLUG, "--json").output)
    assert shown["status"] == "public"
    assert shown["corrections"] == [
        {
            "at": "2030-03-01T13:00:00+00:00",
            "note": "Turnout rose by 19%, not 18%.",
            "update": False,
        }
    ]
    assert "--note" in cli("news", "withdraw", SLUG, "--yes", expect=2).output
    pin(EMBARGO + timedelta(hours=2))
    out = cli("news", "withdraw", SLUG, "--note", "Sent in error.", "--yes").output
    assert "withdrawn" in out
    for path_, note in (
        (PAGE_EN, "Withdrawn on March 1, 2030, 11:00 PM KST."),
        (PAGE_KO, "2030년 3월 1일 오후 11:00 (KST)에 철회되었습니다."),
    ):
        response = c.get(path_)
        page = response.get_data(as_text=True)
        assert response.status_code == 410
        assert note in page and "Sent in error." in page
        assert EN_TITLE not in page and KO_TITLE not in page and "Hanul volunteers" not in page
    for visit in crawl(c, settings, newsroom_starts(settings)):
        assert EN_TITLE not in visit.body and KO_TITLE not in visit.body, visit.path
    # The message's view link leads to the same withdrawn page.
    msg = outbox(settings)[0]
    link = re.search(r"https://news\.hanul\.example\.org(/news/\S+)", parts(msg)[1])
    assert link is not None and c.get(link.group(1)).status_code == 410
    assert (
        "already withdrawn"
        in cli("news", "withdraw", SLUG, "--note", "x", "--yes", expect=1).output
    )
    assert "withdrawn" in cli("news", "correct", SLUG, "--note", "x", expect=1).output
    assert "no release named 'nope'" in cli("news", "show", "nope", expect=1).output


def test_withdrawn_before_the_lift_never_shows(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    path = release_folder(tmp_path, front=f"embargo: {EMBARGO.isoformat()}")
    pin(EMBARGO - timedelta(hours=3))
    cli("send", str(path), "--list", "press", "--yes", "--early")
    cli("news", "withdraw", SLUG, "--note", "Cancelled event.", "--yes")
    pin(EMBARGO + timedelta(days=1))
    c = client(settings)
    assert_nowhere(c, settings)
    rows = json.loads(cli("news", "ls", "--json").output)
    assert [(r["release"], r["status"]) for r in rows] == [(SLUG, "withdrawn")]


def test_a_new_version_replaces_the_text(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    path = release_folder(tmp_path)
    pin(EMBARGO)
    cli("send", str(path), "--list", "press", "--yes")
    c = client(settings)
    assert "Figures updated on Thursday." not in body(c, PAGE_EN)
    release_folder(tmp_path, body_extra="Figures updated on Thursday.")
    pin(EMBARGO + timedelta(days=1))
    cli("send", str(path), "--list", "press", "--yes", "--new-version")
    page = body(c, PAGE_EN)
    assert "Figures updated on Thursday." in page
    assert "Updated (March 2, 2030, 9:00 PM KST): a corrected version" in page
    assert "수정 (2030년 3월 2일 오후 9:00 (KST))" in body(c, PAGE_KO)
    # Still one entry, at the same URL.
    feed = feedparser.parse(body(c, "/news/en/feed.atom"))
    assert [e.link for e in feed.entries] == [settings.base_url + PAGE_EN]


def test_no_reader_data_on_any_public_response(
    settings: Settings, tmp_path: Path, smtp: SmtpServer
) -> None:
    """A real release to real readers over SMTP; then every newsroom response a visitor can
    reach (indexes, pages, feeds, sitemap, preview and view pages) is searched for each
    reader's name, address and every token their messages carried."""
    settings = use_smtp(settings, tmp_path, smtp, timezone="Asia/Seoul")
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    embargoed = release_folder(tmp_path, "town-hall", front=f"embargo: {EMBARGO.isoformat()}")
    path = release_folder(tmp_path)
    pin(EMBARGO - timedelta(days=1))
    cli("send", str(embargoed), "--list", "press", "--yes", "--early")
    pin(EMBARGO - timedelta(hours=1))
    cli("send", str(path), "--list", "press", "--yes")
    assert len(smtp.sink.received) == 2 * len(READERS)
    secrets: set[str] = set()
    starts = newsroom_starts(settings)
    for received in smtp.sink.received:
        msg = received.message
        page_html, text = parts(msg)
        # The stand-in address the row is inlined with never reaches a reader.
        assert "view-in-browser.invalid" not in page_html + text
        for pattern in (r"/u/([A-Za-z0-9._-]+)", r"/preferences/([A-Za-z0-9._-]+)"):
            secrets.update(re.findall(pattern, page_html + text))
        secrets.add(str(msg["Message-ID"]).strip("<>"))
        for url in re.findall(r"https://news\.hanul\.example\.org(/news/\S+)", text):
            starts.append(url)
    data = json.loads(cli("news", "preview-link", "town-hall", "--json").output)
    starts += [url.removeprefix(settings.base_url) for url in data["urls"].values()]
    for address, name, _lang in READERS:
        secrets.update({address, address.split("@")[0], name, html.escape(name), address.upper()})
    assert len(secrets) > 4 * len(READERS)
    c = client(settings)
    seen = 0
    for moment in (EMBARGO - SECOND, EMBARGO + SECOND):
        pin(moment)
        for visit in crawl(c, settings, starts):
            seen += visit.status == 200
            for secret in secrets:
                assert secret not in visit.body, (visit.path, secret)
                assert all(secret not in value for value in visit.headers.values())
    assert seen > 20


def test_view_in_browser_opens_the_readers_page(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    path = release_folder(tmp_path, front=f"embargo: {EMBARGO.isoformat()}")
    pin(EMBARGO - timedelta(hours=2))
    cli("send", str(path), "--list", "press", "--yes", "--early")
    early = outbox(settings)
    clear_outbox(settings)
    readers(settings, "news", people=[("late@example.org", "Late Reader", "ko")])
    pin(EMBARGO + timedelta(minutes=5))
    cli("send", str(path), "--list", "news", "--yes")
    late = outbox(settings)
    c = client(settings)
    # After the lift: the public page in the reader's language, the same for every reader.
    assert len(late) == 1
    page_html, text = parts(late[0])
    assert (
        f"{settings.base_url}{PAGE_KO}" in text
        and f'href="{settings.base_url}{PAGE_KO}"' in page_html
    )
    assert "웹 브라우저에서 보기" in page_html
    assert KO_TITLE in body(c, PAGE_KO)
    # Before the lift (the press copies): the campaign's signed link, one per language, which
    # shows the release marked EMBARGOED until the lift and the public page after it.
    by_language: dict[str, set[str]] = {}
    for msg in early:
        found = re.findall(r"https://news\.hanul\.example\.org(/news/view/\S+)", parts(msg)[1])
        assert len(found) == 1
        by_language.setdefault(msg["Content-Language"], set()).update(found)
    assert {k: len(v) for k, v in by_language.items()} == {"en": 1, "ko": 1}
    view_ko = next(iter(by_language["ko"]))
    assert view_ko.endswith("/ko")
    pin(EMBARGO - SECOND)
    page = c.get(view_ko)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "엠바고: 2030년 3월 1일 오후 9:00 (KST) 이후 보도" in page.get_data(as_text=True)
    assert c.get(view_ko.replace("/view/", "/view/x")).status_code == 404
    pin(EMBARGO + SECOND)
    moved = c.get(view_ko)
    assert moved.status_code == 302 and moved.headers["Location"].endswith(PAGE_KO)
