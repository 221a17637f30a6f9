"""The newsroom's pages, feeds, sitemap and state, on every database engine.

Releases are put straight into the tables here (tests/support/newsroom.py: bulk_publications),
so paging and filters have enough of them; tests/test_newsroom_send.py covers what real sends
make of the newsroom.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings, load_settings
from mailer.contacts.lists import create_list
from mailer.errors import ConfigError
from mailer.newsroom import state
from mailer.store.db import session_scope
from mailer.store.models import Publication, Release
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.newsroom import (
    EMBARGO,
    SECOND,
    bulk_publications,
    head_links,
    hrefs,
    organisation,
    outbox,
    parts,
    release_folder,
)

SENT = datetime(2030, 1, 1, 3, 0, tzinfo=UTC)
IMAGE = (
    "image:\n  url: https://hanul.example.org/photos/phonebank.jpg\n"
    "  alt: Volunteers at the phone bank"
)


def newsroom(
    settings: Settings, tmp_path: Path, n: int, **kw: object
) -> tuple[Settings, list[tuple[int, int, str]]]:
    settings = organisation(settings, tmp_path)
    with session_scope(settings) as s:
        create_list(s, "press", "Press", names={"ko": "언론"})
        create_list(s, "members", "Members", archive=False)
    made = bulk_publications(settings, n, sent_at=SENT, **kw)  # type: ignore[arg-type]
    clock.set_clock(lambda: SENT + timedelta(hours=1))
    return settings, made


def entry_slugs(page: str) -> list[str]:
    return re.findall(r'<h2[^>]*><a href="/news/\d{4}/\d{2}/(news-\d{4})/', page)


def test_index_pages_filters_and_languages(settings: Settings, tmp_path: Path) -> None:
    settings, _ = newsroom(settings, tmp_path, 25, start_day=date(2024, 12, 20))
    c = create_app(settings).test_client()
    first = c.get("/news/en/")
    page = first.get_data(as_text=True)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "public, max-age=60"
    # Newest first: the last one sent leads; twenty a page.
    assert entry_slugs(page) == [f"news-{i:04d}" for i in range(24, 4, -1)]
    assert 'href="/news/en/?page=2" rel="next"' in page and "Page 1 of 2" in page
    second = c.get("/news/en/?page=2").get_data(as_text=True)
    assert entry_slugs(second) == [f"news-{i:04d}" for i in range(4, -1, -1)]
    assert 'href="/news/en/" rel="prev"' in second
    for bad in ("page=3", "page=0", "page=abc", "year=20x4", "list=members", "list=nope"):
        assert c.get(f"/news/en/?{bad}").status_code == 404, bad
    assert c.get("/news/fr/").status_code == 404  # not a language the organisation writes
    # Year: the dates of the releases (12 in December 2024, 13 in January 2025).
    assert len(entry_slugs(c.get("/news/en/?year=2024").get_data(as_text=True))) == 12
    assert '<option value="2025">' in page and '<option value="2024">' in page
    assert "No releases to show." in c.get("/news/en/?year=2023").get_data(as_text=True)
    # List: only lists that keep an archive are offered, in the page's language.
    assert '<option value="press">Press</option>' in page and "members" not in page
    assert '<option value="press">언론</option>' in c.get("/news/ko/").get_data(as_text=True)
    by_list = c.get("/news/en/?list=press&year=2025").get_data(as_text=True)
    assert len(entry_slugs(by_list)) == 13 and "/news/en/lists/press/feed.atom" in by_list
    # The Korean index links each release's Korean version, with its Korean title.
    ko = c.get("/news/ko/").get_data(as_text=True)
    assert "/news/2025/01/news-0024/ko" in ko and "24번 보도자료" in ko
    assert c.get("/news/").headers["Location"].endswith("/news/en/")


def test_release_page_links_languages_and_cards(settings: Settings, tmp_path: Path) -> None:
    settings, made = newsroom(settings, tmp_path, 1, front=IMAGE)
    year, month, slug = made[0]
    c = create_app(settings).test_client()
    base = settings.base_url
    for lang, other in (("en", "ko"), ("ko", "en")):
        page = c.get(f"/news/{year}/{month:02d}/{slug}/{lang}").get_data(as_text=True)
        alternates = {
            link["hreflang"]: link["href"]
            for link in head_links(page)
            if link.get("rel") == "alternate" and "hreflang" in link
        }
        assert alternates == {
            "en": f"{base}/news/{year}/{month:02d}/{slug}/en",
            "ko": f"{base}/news/{year}/{month:02d}/{slug}/ko",
            "x-default": f"{base}/news/{year}/{month:02d}/{slug}/en",
        }
        for url in alternates.values():
            assert c.get(url.removeprefix(base)).status_code == 200
        assert f'<link rel="canonical" href="{alternates[lang]}">' in page
        # Visible links to the other version, named in its language.
        assert (
            f'href="/news/{year}/{month:02d}/{slug}/{other}" lang="{other}" hreflang="{other}"'
            in page
        )
        assert f'<html lang="{lang}">' in page
        # Open Graph and Twitter cards with the release's image.
        assert (
            '<meta property="og:image" content="https://hanul.example.org/photos/phonebank.jpg">'
            in page
        )
        assert '<meta property="og:image:alt" content="Volunteers at the phone bank">' in page
        assert '<meta name="twitter:card" content="summary_large_image">' in page
        assert f'<meta property="og:url" content="{alternates[lang]}">' in page
        locale = {"en": "en_US", "ko": "ko_KR"}
        assert f'<meta property="og:locale" content="{locale[lang]}">' in page
        assert f'<meta property="og:locale:alternate" content="{locale[other]}">' in page
        assert (
            '<meta property="article:published_time" content="2030-01-01T02:59:00+00:00">' in page
        )
    en = c.get(f"/news/{year}/{month:02d}/{slug}/en").get_data(as_text=True)
    # The email's layout values: dateline, contact block, About text, the end mark.
    assert '<strong class="dateline">North Wales, PA</strong>' in en
    assert "Minji Seo" in en and 'href="tel:+12155550142"' in en
    assert "About Hanul Community Center" in en and "Founded in 1998" in en
    assert '<p class="end-mark">###</p>' in en
    # Markdown's table alignment is a class (the CSP forbids inline styles).
    assert 'class="align-right"' in en and "style=" not in en
    # Nothing personal: the email's footer is not on the page.
    for gone in ("Unsubscribe", "__MAILER", "You are receiving this", "/u/", "/preferences/"):
        assert gone not in en
    assert c.get(f"/news/{year}/{month:02d}/{slug}/fr").status_code == 404
    assert c.get(f"/news/{year}/{month + 1:02d}/{slug}/en").status_code == 404
    assert c.get(f"/news/{year}/{month}/{slug}/en").status_code == 404  # one URL: /01/, not /1/
    assert c.get(f"/news/{year}/{month:02d}/no-such/en").status_code == 404


def test_headers_weight_and_no_script(settings: Settings, tmp_path: Path) -> None:
    settings, made = newsroom(settings, tmp_path, 1, front=IMAGE)
    year, month, slug = made[0]
    c = create_app(settings).test_client()
    response = c.get(f"/news/{year}/{month:02d}/{slug}/ko")
    page = response.get_data(as_text=True)
    css_url = re.search(r'<link rel="stylesheet" href="([^"]+)">', page)
    assert css_url is not None and "?v=" in css_url.group(1)
    css = c.get(css_url.group(1))
    assert css.mimetype == "text/css" and css.headers["Cache-Control"] == "public, max-age=86400"
    assert len(response.data) + len(css.data) < 100_000
    assert "<script" not in page and "style=" not in page
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert "script-src" not in policy and "img-src 'self' data: https:" in policy
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    missing = c.get("/news/2031/01/nothing/en")
    assert missing.status_code == 404 and missing.headers["Cache-Control"] == "no-store"
    # The 404 is the subscriber pages' own.
    assert "Page not found" in missing.get_data(as_text=True)
    for path in ("/news/en/feed.atom", "/news/sitemap.xml"):
        assert c.get(path).headers["Cache-Control"] == "public, max-age=60"


def test_feeds_are_valid_atom_with_full_content(settings: Settings, tmp_path: Path) -> None:
    settings, made = newsroom(settings, tmp_path, 3)
    with session_scope(settings) as s:
        # The oldest went to another list that keeps an archive too.
        create_list(s, "news", "Community news", names={"ko": "소식"})
        pub = s.scalars(select(Publication).where(Publication.slug == "news-0000")).one()
        pub.lists = ["news"]
    c = create_app(settings).test_client()
    for lang, needle in (
        ("en", "Release 2: record turnout"),
        ("ko", "2번 보도자료: 역대 최고 투표율"),
    ):
        feed = feedparser.parse(c.get(f"/news/{lang}/feed.atom").data)
        assert not feed.bozo, feed.get("bozo_exception")
        assert feed.version == "atom10"
        assert feed.feed.language == lang
        assert feed.feed.title == (
            "Hanul Community Center: releases"
            if lang == "en"
            else "Hanul Community Center 보도자료"
        )
        assert feed.entries[0].title == needle
        assert [e.id for e in feed.entries] == [
            f"{settings.base_url}/news/{y}/{m:02d}/{s_}/{lang}" for y, m, s_ in reversed(made)
        ]
        entry = feed.entries[0]
        assert entry.link == entry.id
        assert entry.content[0].type == "text/html"
        assert entry.published == "2030-01-01T02:59:00+00:00"
        body = entry.content[0].value
        assert ("North Wales, PA" if lang == "en" else "노스웨일스") in body
        assert "<table>" in body
        assert ("Founded in 1998" if lang == "en" else "1998년에 설립된") in body
    press = feedparser.parse(c.get("/news/en/lists/press/feed.atom").data)
    news = feedparser.parse(c.get("/news/ko/lists/news/feed.atom").data)
    assert not press.bozo and not news.bozo
    assert [e.title for e in press.entries] == [
        "Release 2: record turnout",
        "Release 1: record turnout",
    ]
    assert [e.title for e in news.entries] == ["0번 보도자료: 역대 최고 투표율"]
    assert news.feed.title == "Hanul Community Center: 소식"
    assert c.get("/news/en/lists/members/feed.atom").status_code == 404


def test_sitemap_lists_every_language_version(settings: Settings, tmp_path: Path) -> None:
    settings, made = newsroom(settings, tmp_path, 3)
    with session_scope(settings) as s:
        hidden = s.scalars(select(Publication).where(Publication.slug == "news-0001")).one()
        hidden.embargo = SENT + timedelta(days=2)
    c = create_app(settings).test_client()
    root = ET.fromstring(c.get("/news/sitemap.xml").data)
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9", "x": "http://www.w3.org/1999/xhtml"}
    locs = [u.findtext("s:loc", namespaces=ns) for u in root.findall("s:url", ns)]
    base = settings.base_url
    assert locs[:2] == [f"{base}/news/en/", f"{base}/news/ko/"]
    expected = [
        f"{base}/news/{y}/{m:02d}/{slug}/{lang}"
        for y, m, slug in reversed(made)
        if slug != "news-0001"
        for lang in ("en", "ko")
    ]
    assert locs[2:] == expected
    first = root.findall("s:url", ns)[2]
    assert [a.get("hreflang") for a in first.findall("x:link", ns)] == ["en", "ko"]


def test_the_rule_in_python_and_in_sql_agree(settings: Settings, session: Session) -> None:
    """is_public and public_condition, for every state, one second either side of each edge."""
    settings_ = settings
    release = Release(slug="r", title="R", default_language="en", content_hash="0" * 64)
    session.add(release)
    session.flush()
    t = EMBARGO
    cases = [
        (None, None, True, None),  # never sent
        (None, t, True, None),  # sent, no embargo
        (t, t - timedelta(days=1), True, None),  # sent early, embargo later
        (t - timedelta(days=1), t, True, None),  # embargo passed before the send
        (t, t - timedelta(days=1), False, None),  # kept off
        (None, t, True, t + timedelta(hours=1)),  # withdrawn
    ]
    for i, (embargo, sent, publish, withdrawn) in enumerate(cases):
        session.add(
            Publication(
                slug=f"p{i}",
                release_id=release.id,
                year=2030,
                month=3,
                embargo=embargo,
                first_sent_at=sent,
                publish=publish,
                lists=[],
                corrections=[],
                withdrawn_at=withdrawn,
                withdrawn_note="",
            )
        )
    session.flush()
    pubs = list(session.scalars(select(Publication).order_by(Publication.id)))
    checked = 0
    for now in (t - timedelta(days=1) - SECOND, t - SECOND, t, t + SECOND, t + timedelta(days=2)):
        in_sql = set(session.scalars(select(Publication.slug).where(state.public_condition(now))))
        in_python = {p.slug for p in pubs if state.is_public(p, now)}
        assert in_sql == in_python, now
        checked += len(in_python)
    assert checked >= 6
    assert settings_.newsroom


def test_settings_turn_it_off_or_move_it(settings: Settings, tmp_path: Path) -> None:
    settings, made = newsroom(settings, tmp_path, 1)
    year, month, slug = made[0]
    off = organisation(settings, tmp_path, newsroom=False)
    c = create_app(off).test_client()
    assert c.get("/news/en/").status_code == 404
    assert c.get(f"/news/{year}/{month:02d}/{slug}/en").status_code == 404
    moved = organisation(settings, tmp_path, newsroom_path="/press-room")
    c = create_app(moved).test_client()
    page = c.get(f"/press-room/{year}/{month:02d}/{slug}/en").get_data(as_text=True)
    assert f'href="{moved.base_url}/press-room/{year}/{month:02d}/{slug}/ko"' in page
    assert all(not h.startswith("/news") for h in hrefs(page))
    assert c.get("/news/en/").status_code == 404
    for bad in ("/admin", "news", "/", "/News", "/news/../x"):
        write_config(tmp_path, {"database_url": settings.database_url, "newsroom_path": bad})
        with pytest.raises(ConfigError, match="newsroom_path: expected a path"):
            load_settings(tmp_path / "mailer.toml", env={})


def test_news_ls_and_show(settings: Settings, tmp_path: Path) -> None:
    settings, made = newsroom(settings, tmp_path, 2)
    cli = Cli(tmp_path / "mailer.toml")
    out = cli("news", "ls").output
    assert out.splitlines()[0].split() == [
        "RELEASE",
        "STATUS",
        "PUBLIC",
        "FROM",
        "(Asia/Seoul)",
        "LANGUAGES",
        "LISTS",
    ]
    assert "news-0001  public" in out and "2030-01-01 11:59" in out
    rows = json.loads(cli("news", "ls", "--json").output)
    assert [r["release"] for r in rows] == ["news-0001", "news-0000"]
    shown = json.loads(cli("news", "show", "news-0000", "--json").output)
    year, month, slug = made[0]
    assert shown["urls"] == {
        lang: f"{settings.base_url}/news/{year}/{month:02d}/{slug}/{lang}" for lang in ("en", "ko")
    }
    assert shown["status"] == "public" and shown["lists"] == ["press"]
    text = cli("news", "show", "news-0000").output
    assert "public from: 2030-01-01 11:58 KST" in text


def test_release_check_knows_publish(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
    cli = Cli(tmp_path / "mailer.toml")
    path = release_folder(tmp_path, front="publish: false")
    assert cli("release", "check", str(path)).exit_code == 0
    bad = release_folder(tmp_path, "bad", front='publish: "no"')
    out = cli("release", "check", str(bad), expect=None).output
    assert f"{bad}:2: publish: expected true or false, got 'no'" in out


def test_url_month_without_a_date_is_the_first_send_in_the_organisations_zone(
    settings: Settings, tmp_path: Path
) -> None:
    settings = organisation(settings, tmp_path)
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        from mailer.contacts.contact import add_contact

        add_contact(s, "desk@example.com", "press", name="Desk", language="en")
    path = release_folder(tmp_path, "undated")
    for f in path.parent.glob("undated.*.md"):
        f.write_text(re.sub(r"^date: .*\n", "", f.read_text(encoding="utf-8"), flags=re.M), "utf-8")
    # 20:00 UTC on January 31 is already February 1 in Seoul.
    clock.set_clock(lambda: datetime(2030, 1, 31, 20, 0, tzinfo=UTC))
    Cli(tmp_path / "mailer.toml")("send", str(path), "--list", "press", "--yes")
    c = create_app(settings).test_client()
    assert c.get("/news/2030/02/undated/en").status_code == 200
    page = c.get("/news/en/").get_data(as_text=True)
    assert '<time datetime="2030-02-01">February 1, 2030</time>' in page


def test_previews_and_test_sends_carry_no_view_link(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
    path = release_folder(tmp_path)
    cli = Cli(tmp_path / "mailer.toml")
    for extra in ((), ("--text",), ("--lang", "ko")):
        page = cli("release", "preview", str(path), *extra).output
        assert "Record turnout" in page or "역대 최고" in page
        assert "View this release" not in page and "view-in-browser" not in page
    cli("send", str(path), "--test", "me@example.org")
    for msg in outbox(settings):
        html, text = parts(msg)
        assert "view-in-browser" not in html + text and "/news/" not in html + text
