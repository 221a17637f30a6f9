"""/media/ under `mailer serve` (Flask test client, pinned clock, every database engine): the
embargo holds for a release's files, one second either side; a release kept off the newsroom
keeps them private; preview keys and grants open one release's files only; cache headers;
and every way of asking for another file than the one stored under that address is a 404."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from mailer import clock
from mailer.config import Settings
from mailer.media.access import make_grant
from mailer.store.db import session_scope
from mailer.store.models import MediaFile
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.media import local_path, media_urls, pdf, photo, write_release
from tests.support.newsroom import EMBARGO, SECOND, organisation, outbox, parts, readers

BASE = "https://news.hanul.example.org"
PAGE_EN = "/news/2024/11/election-night/en"
BODY = {
    "en": "![Volunteers at the phone bank](photos/phonebank.jpg)\n\n"
    "[Voter guide (PDF, Korean)](guide-ko.pdf)",
    "ko": "![전화 자원봉사자들](photos/phonebank.jpg)\n\n[투표 안내서](guide-ko.pdf)",
}


def pin(moment: datetime) -> None:
    clock.set_clock(lambda: moment)


def _kit(
    settings: Settings, tmp_path: Path, *, front: str = "", slug: str = "election-night"
) -> Path:
    folder = tmp_path / "releases"
    photo(folder / "photos" / "phonebank.jpg", 2400, 1600, gps=True)
    pdf(folder / "guide-ko.pdf", size=20_000)
    return write_release(folder, slug=slug, front={"en": front} if front else None, body=BODY)


def _early(settings: Settings, tmp_path: Path) -> tuple[Settings, Cli, FlaskClient]:
    """The kit sent to the press six hours before its embargo (each copy marked)."""
    settings = organisation(settings, tmp_path)
    readers(settings, "press", press=True)
    cli = Cli(tmp_path / "mailer.toml")
    path = _kit(settings, tmp_path, front=f"embargo: {EMBARGO.isoformat()}")
    pin(EMBARGO - timedelta(hours=6))
    cli("send", str(path), "--list", "press", "--yes", "--early")
    return settings, cli, create_app(settings).test_client()


def _message_urls(settings: Settings) -> list[str]:
    found: list[str] = []
    for msg in outbox(settings):
        html, text = parts(msg)
        found += media_urls(html + "\n" + text, BASE)
    return sorted(set(found))


def _public(url: str) -> str:
    return local_path(url, BASE).split("?", 1)[0].split("#", 1)[0]


def _stored(settings: Settings) -> dict[str, MediaFile]:
    with session_scope(settings) as s:
        rows = {row.name: row for row in s.scalars(select(MediaFile))}
        s.expunge_all()
    return rows


def test_embargo_holds_for_files(settings: Settings, tmp_path: Path) -> None:
    settings, _cli, c = _early(settings, tmp_path)
    urls = _message_urls(settings)
    rows = _stored(settings)
    # The early copies carry the release's grant on each file: their photos show at once.
    assert urls and all("?k=" in url for url in urls)
    assert {_public(u).rsplit("/", 1)[1] for u in urls} == set(rows)
    pin(EMBARGO - SECOND)
    for url in urls:
        assert c.get(_public(url)).status_code == 404, url
        granted = c.get(local_path(url, BASE))
        assert granted.status_code == 200, url
        assert "private" in granted.headers["Cache-Control"]
        assert "immutable" not in granted.headers["Cache-Control"]
    # A grant altered by one character, or made for another release, opens nothing.
    some = local_path(urls[0], BASE)
    forged = some[:-1] + ("A" if some[-1] != "A" else "B")
    assert c.get(forged).status_code == 404
    other = f"{_public(urls[0])}?k={make_grant(settings, 'another-release')}"
    assert c.get(other).status_code == 404
    pin(EMBARGO)
    for name, row in rows.items():
        response = c.get(f"/media/{row.sha256}/{name}")
        assert response.status_code == 200, name
        body = response.get_data()
        assert hashlib.sha256(body).hexdigest() == row.sha256
        assert response.headers["Content-Type"].startswith(row.content_type)
        cache = response.headers["Cache-Control"]
        assert "public" in cache and "max-age=31536000" in cache and "immutable" in cache
        assert response.headers["ETag"] == f'"{row.sha256}"'
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        disposition = response.headers.get("Content-Disposition", "")
        if row.content_type.startswith("image/"):
            assert not disposition.startswith("attachment")
        else:
            assert disposition.startswith("attachment") and "guide-ko.pdf" in disposition
        again = c.get(f"/media/{row.sha256}/{name}", headers={"If-None-Match": f'"{row.sha256}"'})
        assert again.status_code == 304 and again.get_data() == b""
        head = c.head(f"/media/{row.sha256}/{name}")
        assert head.status_code == 200 and head.get_data() == b""
    # The copies in the messages are the ones without EXIF.
    copy = rows["phonebank-600w.jpg"]
    assert b"Exif" not in c.get(f"/media/{copy.sha256}/phonebank-600w.jpg").get_data()


def test_page_links_and_downloads(settings: Settings, tmp_path: Path) -> None:
    settings, _cli, c = _early(settings, tmp_path)
    rows = _stored(settings)
    pin(EMBARGO - SECOND)
    assert c.get(PAGE_EN).status_code == 404
    pin(EMBARGO + SECOND)
    page = c.get(PAGE_EN).get_data(as_text=True)
    found = media_urls(page, BASE)
    photo_copy = f"{BASE}/media/{rows['phonebank-600w.jpg'].sha256}/phonebank-600w.jpg"
    guide = f"{BASE}/media/{rows['guide-ko.pdf'].sha256}/guide-ko.pdf"
    original = f"{BASE}/media/{rows['phonebank.jpg'].sha256}/phonebank.jpg"
    assert photo_copy in found and guide in found and original in found
    # The Downloads section: each file with its type and size.
    assert "Downloads" in page
    assert "Voter guide (PDF, Korean)</a>" in page and "guide-ko.pdf, PDF, 20\u00a0KB" in page
    assert "phonebank.jpg, JPEG, 2400\u00a0×\u00a01600" in page
    for url in found:
        assert c.get(local_path(url, BASE)).status_code == 200, url
    ko = c.get("/news/2024/11/election-night/ko").get_data(as_text=True)
    assert "자료 내려받기" in ko and "투표 안내서</a>" in ko


def test_preview_key_opens_its_release_files_only(settings: Settings, tmp_path: Path) -> None:
    settings, cli, c = _early(settings, tmp_path)
    rows = _stored(settings)
    result = cli("news", "preview-link", "election-night", "--hours", "2", "--json")
    preview = json.loads(result.output)["urls"]["en"]
    page = c.get(local_path(preview, BASE))
    assert page.status_code == 200
    urls = media_urls(page.get_data(as_text=True), BASE)
    key = preview.split("key=", 1)[1]
    assert urls and all(url.endswith(f"?preview={key}") for url in urls)
    for url in urls:
        assert c.get(local_path(url, BASE)).status_code == 200, url
        assert c.get(_public(url)).status_code == 404, url
    guide = rows["guide-ko.pdf"]
    assert c.get(f"/media/{guide.sha256}/guide-ko.pdf?preview={key[:-2]}xx").status_code == 404
    # A second release, with a file of its own, and its own preview key.
    folder = tmp_path / "other"
    pdf(folder / "other.pdf", size=7_000)
    other = write_release(
        folder,
        slug="town-hall",
        front={"en": f"embargo: {EMBARGO.isoformat()}"},
        body={"en": "[Agenda](other.pdf)"},
    )
    cli("send", str(other), "--list", "press", "--yes", "--early")
    other_key = json.loads(cli("news", "preview-link", "town-hall", "--json").output)["urls"]["en"]
    other_key = other_key.split("key=", 1)[1]
    agenda = _stored(settings)["other.pdf"]
    assert c.get(f"/media/{agenda.sha256}/other.pdf?preview={other_key}").status_code == 200
    # One release's key opens none of the other's files.
    assert c.get(f"/media/{guide.sha256}/guide-ko.pdf?preview={other_key}").status_code == 404
    assert c.get(f"/media/{agenda.sha256}/other.pdf?preview={key}").status_code == 404
    # Expired (two hours on, still before the embargo): nothing.
    pin(EMBARGO - timedelta(hours=6) + timedelta(hours=2, seconds=1))
    assert c.get(f"/media/{guide.sha256}/guide-ko.pdf?preview={key}").status_code == 404


def test_release_kept_off_the_newsroom(settings: Settings, tmp_path: Path) -> None:
    settings = organisation(settings, tmp_path)
    readers(settings, "members")
    cli = Cli(tmp_path / "mailer.toml")
    path = _kit(settings, tmp_path, front="publish: false")
    pin(EMBARGO)
    cli("send", str(path), "--list", "members", "--yes")
    c = create_app(settings).test_client()
    urls = _message_urls(settings)
    assert urls and all("?k=" in url for url in urls)
    pin(EMBARGO + timedelta(days=400))
    for url in urls:
        assert c.get(_public(url)).status_code == 404, url
        assert c.get(local_path(url, BASE)).status_code == 200, url
    # The view-in-browser page of such a message shows its photos the same way.
    html, _text = parts(outbox(settings)[0])
    view = next(h for h in html.split('"') if "/news/view/" in h)
    page = c.get(local_path(view, BASE))
    assert page.status_code == 200
    shown = media_urls(page.get_data(as_text=True), BASE)
    assert shown and all("?k=" in url for url in shown)
    assert all(c.get(local_path(url, BASE)).status_code == 200 for url in shown)
    # Withdrawn: not even a grant opens its files any more.
    cli("news", "withdraw", "election-night", "--note", "Sent in error.", "--yes")
    for url in urls:
        assert c.get(local_path(url, BASE)).status_code == 404, url


def test_test_send_shows_its_photos(settings: Settings, tmp_path: Path) -> None:
    """A test send before anything is planned: its copy's photos show, the public URLs do not."""
    settings = organisation(settings, tmp_path)
    cli = Cli(tmp_path / "mailer.toml")
    path = _kit(settings, tmp_path, front=f"embargo: {EMBARGO.isoformat()}")
    pin(EMBARGO - timedelta(days=2))
    cli("send", str(path), "--test", "staff@hanul.example.org")
    c = create_app(settings).test_client()
    urls = _message_urls(settings)
    assert len(outbox(settings)) == 2 and urls and all("?k=" in url for url in urls)
    for url in urls:
        assert c.get(local_path(url, BASE)).status_code == 200, url
        assert c.get(_public(url)).status_code == 404, url


@pytest.mark.parametrize(
    "attempt",
    [
        "/media/{sha}/../../mailer.toml",
        "/media/../mailer.toml",
        "/media/%2e%2e/%2e%2e/mailer.toml",
        "/media/{sha}/%2e%2e%2f%2e%2e%2fmailer.toml",
        "/media/{sha}/..%2F..%2Fmailer.toml",
        "/media/{sha}%2F..%2F..%2Fmailer.toml/x",
        "/media/{sha}/{name}%00.html",
        "/media/{sha}/{name}/extra",
        "/media/{sha}",
        "/media/{SHA}/{name}",
        "/media/{sha}/{other_name}",
        "/media/{other_sha}/{name}",
        "/media/{sha}/PHONEBANK.JPG",
        "/media/mailer.db/x",
        "/media/{sha}/..",
        "/media/{unsent_sha}/unsent.pdf",
    ],
)
def test_no_other_file_by_any_address(settings: Settings, tmp_path: Path, attempt: str) -> None:
    settings, cli, c = _early(settings, tmp_path)
    rows = _stored(settings)
    # A file stored by `release check` of a release never sent: stored, never public.
    folder = tmp_path / "drafts"
    pdf(folder / "unsent.pdf", size=3_000)
    cli(
        "release",
        "check",
        str(write_release(folder, slug="draft", body={"en": "[Plan](unsent.pdf)"})),
    )
    unsent = _stored(settings)["unsent.pdf"]
    pin(EMBARGO + SECOND)
    photo_row, guide_row = rows["phonebank.jpg"], rows["guide-ko.pdf"]
    assert c.get(f"/media/{photo_row.sha256}/phonebank.jpg").status_code == 200
    path = attempt.format(
        sha=photo_row.sha256,
        SHA=photo_row.sha256.upper(),
        name="phonebank.jpg",
        other_name="guide-ko.pdf",
        other_sha=guide_row.sha256,
        unsent_sha=unsent.sha256,
    )
    response = c.get(path)
    assert response.status_code == 404, (path, response.status_code)
    body = response.get_data()
    assert b"secret_key" not in body and b"%PDF" not in body and b"\xff\xd8\xff" not in body
