"""The press kit through `mailer release check` and `mailer send`, on every database engine:
files stored once by content, errors naming the release file, line and reference, the limits,
and what the messages (real outbox maildir) link to: absolute URLs, srcset, the Downloads
section, real attachments with Korean file names."""

from __future__ import annotations

import email
import email.policy
import hashlib
import mailbox
import os
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy import select

from mailer.config import Settings
from mailer.media.access import make_grant
from mailer.media.refs import safe_name
from mailer.store.db import session_scope
from mailer.store.models import MediaFile, Release, ReleaseMedia
from tests.support.cli import Cli
from tests.support.media import (
    files_in,
    hwp,
    line_of,
    media_urls,
    pdf,
    photo,
    word97,
    write_release,
)
from tests.support.newsroom import organisation, outbox, parts, readers

BASE = "https://news.hanul.example.org"
PHOTO_EN = "![Volunteers at the phone bank](photos/phonebank.jpg)"
GUIDE_EN = "[Voter guide (PDF, Korean)](guide-ko.pdf)"


def _setup(settings: Settings, tmp_path: Path, **extra: object) -> tuple[Settings, Cli]:
    settings = organisation(settings, tmp_path, **extra)
    readers(settings, "press", press=True)
    return settings, Cli(tmp_path / "mailer.toml")


def _rows(settings: Settings) -> list[MediaFile]:
    with session_scope(settings) as s:
        rows = list(s.scalars(select(MediaFile).order_by(MediaFile.size.desc())))
        s.expunge_all()
    return rows


def _links(settings: Settings) -> set[tuple[str, str]]:
    with session_scope(settings) as s:
        return {(r.release_slug, r.sha256) for r in s.scalars(select(ReleaseMedia))}


def test_each_file_stored_once(settings: Settings, tmp_path: Path) -> None:
    settings, cli = _setup(settings, tmp_path)
    folder = tmp_path / "releases"
    original = photo(folder / "photos" / "phonebank.jpg", 4000, 3000, gps=True)
    # The same photo under a second name, and named by both languages and twice in English.
    (folder / "photos" / "same-again.jpg").write_bytes(original.read_bytes())
    pdf(folder / "guide-ko.pdf")
    path = write_release(
        folder,
        body={
            "en": f"{PHOTO_EN}\n\n{GUIDE_EN}\n\n![The same volunteers](photos/same-again.jpg)\n\n"
            "[The photo, full size](photos/phonebank.jpg)",
            "ko": "![전화 자원봉사자들](photos/phonebank.jpg)\n\n[투표 안내서](guide-ko.pdf)",
        },
    )
    for _ in range(2):  # checking again stores nothing new
        result = cli("release", "check", str(path))
        assert "error:" not in result.output, result.output
        rows = _rows(settings)
        assert len(rows) == 4, rows  # the photo, its two copies, the guide
    photo_sha = hashlib.sha256(original.read_bytes()).hexdigest()
    by_sha = {row.sha256: row for row in rows}
    assert by_sha[photo_sha].name == "phonebank.jpg"
    assert (by_sha[photo_sha].width, by_sha[photo_sha].height) == (4000, 3000)
    copies = sorted((r for r in rows if r.original_sha256), key=lambda r: r.scale or 0)
    assert [(c.scale, c.width, c.height, c.original_sha256) for c in copies] == [
        (1, 600, 450, photo_sha),
        (2, 1200, 900, photo_sha),
    ]
    assert [c.name for c in copies] == ["phonebank-600w.jpg", "phonebank-1200w.jpg"]
    # On disk: one file per row, named by its SHA-256, readable by the web server (0644).
    stored = files_in(settings.media_dir)
    assert stored == {row.sha256: 0o644 for row in rows}
    for row in rows:
        assert (
            hashlib.sha256((settings.media_dir / row.sha256).read_bytes()).hexdigest() == row.sha256
        )
    # Linked to the release (each file once), by the check and again by the send's plan.
    assert _links(settings) == {("election-night", row.sha256) for row in rows}
    cli("send", str(path), "--list", "press", "--yes")
    assert _links(settings) == {("election-night", row.sha256) for row in rows}
    assert len(_rows(settings)) == 4


def test_errors_name_the_file_line_and_reference(settings: Settings, tmp_path: Path) -> None:
    settings, cli = _setup(settings, tmp_path)
    folder = tmp_path / "releases"
    pdf(tmp_path / "secret.pdf")
    pdf(folder / "guide-ko.pdf")
    (folder / "fake.jpg").parent.mkdir(parents=True, exist_ok=True)
    (folder / "fake.jpg").write_bytes(b"%PDF-1.4\n%%EOF\n")
    (folder / "page.jpg").write_bytes(b"<!DOCTYPE html><html><script>alert(1)</script></html>")
    word97(folder / "old.doc")
    hwp(folder / "안내문.hwp")
    os.symlink(tmp_path / "secret.pdf", folder / "linked.pdf")
    refs = {
        "![The hall](missing.jpg)": "no such file",
        "[Secret](../secret.pdf)": "goes up a folder",
        "[Encoded](%2e%2e/secret.pdf)": "goes up a folder",
        "![Root](/etc/passwd)": "is not an absolute URL",
        "[Encoded root](%2Fetc%2Fpasswd)": "is an absolute path",
        "[Linked](linked.pdf)": "symbolic link to",
        "![Fake](fake.jpg)": "is a PDF file by its content, but its name ends in .jpg",
        "![Page](page.jpg)": "HTML (a web page)",
        "[Old](old.doc)": "Office 97-2003",
        "![Guide](guide-ko.pdf)": "an image must be JPEG, PNG, GIF or WebP",
    }
    path = write_release(
        folder,
        front={"ko": "attach: [nowhere.pdf, 안내문.hwp]"},
        body={"en": "\n\n".join(refs), "ko": "[안내문](안내문.hwp)"},
    )
    result = cli("release", "check", str(path), expect=1)
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    for markdown, says in refs.items():
        ref = re.search(r"\]\((.*)\)", markdown)
        assert ref is not None
        line = line_of(path, markdown)
        wanted = f"{path}:{line}: "
        shown = repr(unquote(ref.group(1)))
        found = [e for e in errors if wanted in e and shown in e and says in e]
        assert len(found) == 1, (markdown, errors)
    korean = path.with_name("election-night.ko.md")
    attach_line = line_of(korean, "attach:")
    assert any(
        f"{korean}:{attach_line}: attachment 'nowhere.pdf': no such file" in e for e in errors
    ), errors
    # The HWP document is fine, linked and attached; nothing outside the folder was stored.
    assert not any("안내문" in e for e in errors), errors
    assert [row.name for row in _rows(settings)] == ["안내문.hwp"]
    # A send refuses the same release before anything is planned.
    sent = cli("send", str(path), "--list", "press", "--yes", expect=1)
    assert "no such file" in sent.output and outbox(settings) == []


def test_limits_and_warnings(settings: Settings, tmp_path: Path) -> None:
    settings, cli = _setup(settings, tmp_path, media_max_bytes=8_000_000, attach_max_bytes=20_000)
    folder = tmp_path / "releases"
    pdf(folder / "big.pdf", size=8_100_000)
    pdf(folder / "guide.pdf", size=30_000)
    # Random pixels do not compress: even its 1200-pixel copy is over 1 MB.
    photo(folder / "noisy.png", 1400, 1400, fmt="PNG", noise=True)
    photo(folder / "quiet.jpg", 800, 600)
    path = write_release(
        folder,
        front={"en": "attach: guide.pdf"},
        body={
            "en": "[Big](big.pdf)\n\n![Noise](noisy.png)\n\n![](quiet.jpg)\n\n[Guide](guide.pdf)"
        },
    )
    result = cli("release", "check", str(path), expect=1)
    out = result.output
    assert f"{path}:{line_of(path, '[Big]')}: link 'big.pdf': is 7.7\u00a0MB" in out
    assert "media_max_bytes" in out
    assert f"{path}: attach: the attachments have 29\u00a0KB together; at most 20\u00a0KB" in out
    assert "attach_max_bytes" in out
    assert f"{path}: attach: 1 file(s), 29\u00a0KB, go with every message" in out
    assert "look like spam" in out
    noisy = f"{path}:{line_of(path, '![Noise]')}: image 'noisy.png': even scaled to email width"
    assert f"warning: {noisy}" in out
    assert (
        f"warning: {path}:{line_of(path, '![](quiet.jpg)')}: image 'quiet.jpg' has no alt text"
        in out
    )
    # Over the limit: not stored. The others are.
    names = sorted(row.name for row in _rows(settings) if row.original_sha256 is None)
    assert names == ["guide.pdf", "noisy.png", "quiet.jpg"]


def _messages(settings: Settings) -> dict[str, EmailMessage]:
    found = {}
    for msg in outbox(settings):
        found[str(msg["To"])] = msg
    return found


def test_messages_link_to_absolute_urls(settings: Settings, tmp_path: Path) -> None:
    settings, cli = _setup(settings, tmp_path)
    folder = tmp_path / "releases"
    photo(folder / "photos" / "phonebank.jpg", 4032, 3024, orientation=6, gps=True)
    photo(folder / "photos" / "small.png", 300, 200, fmt="PNG")
    guide = pdf(folder / "guide-ko.pdf", size=250_000)
    path = write_release(
        folder,
        front={"en": "image: {url: photos/small.png, alt: The center's sign}"},
        body={
            "en": f"{PHOTO_EN}\n\n{GUIDE_EN}",
            "ko": "![전화 자원봉사자들](photos/phonebank.jpg)\n\n"
            "[투표 안내서](guide-ko.pdf#page=2)",
        },
    )
    cli("send", str(path), "--list", "press", "--yes")
    rows = {row.name: row for row in _rows(settings)}
    # Every file URL of a message carries the release's grant (its photos show before the
    # newsroom's page does: mailer.media.access).
    grant = f"?k={make_grant(settings, 'election-night')}"
    url = {name: f"{BASE}/media/{row.sha256}/{name}{grant}" for name, row in rows.items()}
    messages = outbox(settings)
    assert len(messages) == 7
    for msg in messages:
        html, text = parts(msg)
        korean = msg["Content-Language"] == "ko"
        # The photo: its 1x copy (upright: 3024 wide), its 2x copy in srcset, the column width.
        img = re.search(r'<img [^>]*src="' + re.escape(url["phonebank-600w.jpg"]) + '"[^>]*>', html)
        assert img is not None, html
        assert (
            f'srcset="{url["phonebank-600w.jpg"]} 1x, {url["phonebank-1200w.jpg"]} 2x"'
            in img.group(0)
        )
        assert 'width="520"' in img.group(0)
        alt = "전화 자원봉사자들" if korean else "Volunteers at the phone bank"
        assert f'alt="{alt}"' in img.group(0)
        # The guide: the link leads to the stored original (its #fragment kept).
        assert f'href="{url["guide-ko.pdf"]}{"#page=2" if korean else ""}"' in html
        # Downloads, in both parts: name, type, size, link; the original photo too.
        heading = "자료 내려받기" if korean else "Downloads"
        assert heading in html and heading in text
        guide_name = "투표 안내서" if korean else "Voter guide (PDF, Korean)"
        assert re.search(
            rf'<a href="{re.escape(url["guide-ko.pdf"])}"[^>]*>{re.escape(guide_name)}</a>', html
        )
        assert "(guide-ko.pdf, PDF, 244\u00a0KB)" in html
        assert (
            f"- {guide_name}\n  (guide-ko.pdf, PDF, 244\u00a0KB)\n  {url['guide-ko.pdf']}" in text
        )
        assert "3024\u00a0×\u00a04032" in html and url["phonebank.jpg"] in text
        # Every URL of ours is absolute, on base_url, and names a stored file.
        for found in media_urls(html + text, BASE):
            sha, name = found.split("/media/", 1)[1].split("/", 1)
            assert rows[name.split("?")[0]].sha256 == sha and grant in found
        # The header image (English only): a local photo smaller than the column, as its
        # copy without EXIF (no second copy: never upscaled).
        if not korean:
            hero = f'<img src="{url["small-300w.png"]}" alt="The center\'s sign"'
            assert hero in html.replace("&#39;", "'"), html
        assert "small-600w.png" not in html
    # Nothing in a message is under the release folder's path or relative.
    assert not any("photos/phonebank.jpg" in parts(m)[0] for m in messages)
    assert guide.read_bytes() == (settings.media_dir / rows["guide-ko.pdf"].sha256).read_bytes()


def test_changed_photo_is_a_new_version(settings: Settings, tmp_path: Path) -> None:
    settings, cli = _setup(settings, tmp_path)
    folder = tmp_path / "releases"
    photo(folder / "photos" / "phonebank.jpg", 1000, 800)
    path = write_release(folder, body={"en": PHOTO_EN})
    cli("send", str(path), "--list", "press", "--yes")
    # Same Markdown, another photo under the same name: the release changed.
    photo(folder / "photos" / "phonebank.jpg", 1000, 800, seed=7)
    again = cli("send", str(path), "--list", "press", "--yes", expect=1)
    assert "earlier version" in again.output
    cli("send", str(path), "--list", "press", "--yes", "--new-version")
    with session_scope(settings) as s:
        stored = list(s.scalars(select(Release).order_by(Release.id)))
        media = [r.variants["en"]["media"][0]["original"]["sha256"] for r in stored]
    assert len(stored) == 2 and media[0] != media[1]


def test_attachments_encoded_and_parseable(settings: Settings, tmp_path: Path) -> None:
    settings, cli = _setup(settings, tmp_path)
    folder = tmp_path / "releases"
    english = pdf(folder / "guide-en.pdf", size=9_000)
    korean = pdf(folder / "투표 안내서.pdf", size=12_000)
    long_name = "2026년 지방선거 한인 유권자 투표 안내서 (최종본, 인쇄용).pdf"
    longer = pdf(folder / long_name, size=5_000)
    path = write_release(
        folder,
        front={
            "en": "attach: [guide-en.pdf]",
            "ko": f'attach: ["투표 안내서.pdf", "{long_name}"]',
        },
        body={"en": "[The guide](guide-en.pdf)", "ko": "[투표 안내서](<투표 안내서.pdf>)"},
    )
    result = cli("send", str(path), "--list", "press", "--yes")
    assert "error" not in result.output.lower()
    messages = outbox(settings)
    assert len(messages) == 7
    raw_files = sorted(settings.outbox_dir.glob("new/*"))
    for raw_path in raw_files:
        raw = raw_path.read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        assert msg.get_content_type() == "multipart/mixed"
        kinds = [part.get_content_type() for part in msg.iter_parts()]
        assert kinds[0] == "multipart/alternative" and set(kinds[1:]) == {"application/pdf"}
        html, text = parts(msg)
        assert html and text
        attached = {a.get_filename(): a for a in msg.iter_attachments()}
        if msg["Content-Language"] == "ko":
            assert set(attached) == {"투표-안내서.pdf", safe_name(long_name)}
            assert attached["투표-안내서.pdf"].get_content() == korean.read_bytes()
            assert attached[safe_name(long_name)].get_content() == longer.read_bytes()
            # RFC 2231: the UTF-8 name percent-encoded, in pieces when long; lines stay short.
            assert b"filename*=utf-8''%ED%88%AC%ED%91%9C-%EC%95%88%EB%82%B4%EC%84%9C.pdf" in raw
            assert b"filename*0*=utf-8''" in raw and b"filename*1*=" in raw
            # The attached files are in Downloads too, marked as attached.
            assert "- 투표 안내서\n  (투표-안내서.pdf, PDF, 12\u00a0KB; 첨부)" in text
        else:
            assert set(attached) == {"guide-en.pdf"}
            assert attached["guide-en.pdf"].get_content() == english.read_bytes()
            assert attached["guide-en.pdf"].get_content_type() == "application/pdf"
            assert b'filename="guide-en.pdf"' in raw
            assert "; attached)" in html
        # Every line of the attachments' headers stays within 78 characters.
        named = [line for line in raw.split(b"\n") if b"name" in line and not line.startswith(b"<")]
        assert named and all(len(line) <= 78 for line in named), named
    # The maildir holds what the transport sent; nothing else is attached to it.
    assert len(mailbox.Maildir(settings.outbox_dir, create=False)) == 7
