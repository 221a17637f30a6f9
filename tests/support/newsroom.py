"""The newsroom tests' parts: the organisation, release folders, lists of readers, every newsroom
response a visitor can reach, and many publications at once (for paging and the benchmark)."""

from __future__ import annotations

import email
import email.policy
import mailbox
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import insert, select
from werkzeug.test import TestResponse

from mailer.config import Settings, load_settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.releases.source import content_hash
from mailer.samples import SAMPLE_ORGANISATION
from mailer.store.db import session_scope
from mailer.store.models import Publication, Release
from tests.support.config import write_config

SAMPLES = Path(__file__).parents[2] / "mailer" / "samples"
EMBARGO = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)  # 21:00 in Seoul
SECOND = timedelta(seconds=1)
EN_TITLE = "Record turnout: Korean American voters helped decide this election"
KO_TITLE = "역대 최고 투표율: 한인 유권자들이 이번 선거의 향방을 바꿨다"
# Seven readers with names and addresses that must never reach a public page.
READERS = [
    ("kim.reporter@example.com", "김민수", "ko"),
    ("jane.editor@example.net", "Jane O'Neil", "en"),
    ("park@example.org", "박서연", "ko"),
    ("lee@example.com", "David Lee", None),
    ("choi@example.net", "최지훈", "ko-KR"),
    ("smith@example.org", "Ann Smith", "fr"),
    ("zed.quill@example.org", "Zed Quillfeather", "en"),
]


def organisation(settings: Settings, tmp_path: Path, **extra: Any) -> Settings:
    """The test's settings with the sample organisation (its About text, social links) in
    Asia/Seoul, where times are shown."""
    values = {
        **SAMPLE_ORGANISATION,
        "database_url": settings.database_url,
        "timezone": "Asia/Seoul",
        **extra,
    }
    write_config(tmp_path, values)
    return load_settings(tmp_path / "mailer.toml", env={})


def release_folder(
    tmp_path: Path, slug: str = "election-night", front: str = "", body_extra: str = ""
) -> Path:
    """The bilingual sample release as SLUG.en.md + SLUG.ko.md; `front`: lines added to each
    file's front matter (`embargo: ...`, `publish: false`, `date: ...`). Returns the .en.md."""
    folder = tmp_path / "releases"
    folder.mkdir(exist_ok=True)
    for source in sorted(SAMPLES.glob("election-night.*.md")):
        text = source.read_text(encoding="utf-8")
        if front:
            text = text.replace("---\n", f"---\n{front.strip()}\n", 1)
        if body_extra:
            text = text.rstrip("\n") + f"\n\n{body_extra}\n"
        target = folder / source.name.replace("election-night", slug)
        target.write_text(text, encoding="utf-8")
    return folder / f"{slug}.en.md"


def readers(
    settings: Settings,
    slug: str,
    people: Sequence[tuple[str, str, str | None]] = READERS,
    *,
    press: bool = False,
    archive: bool = True,
    track_clicks: bool | None = False,
) -> None:
    """A list and its subscribed readers. Its links are not followed unless asked (None: the
    library's rule, press lists follow them): the newsroom's and media's tests read the links
    as the email writes them (following them through /l/ is tests/test_engagement_track.py's)."""
    with session_scope(settings) as s:
        create_list(
            s,
            slug,
            slug.title(),
            press=press,
            archive=archive,
            names={"ko": "보도"},
            track_clicks=track_clicks,
        )
        for address, name, lang in people:
            add_contact(s, address, slug, name=name, language=lang)


def outbox(settings: Settings) -> list[EmailMessage]:
    if not settings.outbox_dir.exists():
        return []
    box = mailbox.Maildir(settings.outbox_dir, create=False)
    found = []
    for key in sorted(box.keys()):
        msg = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def clear_outbox(settings: Settings) -> None:
    shutil.rmtree(settings.outbox_dir, ignore_errors=True)


def parts(msg: EmailMessage) -> tuple[str, str]:
    """The HTML and text parts of a message."""
    html = msg.get_body(("html",))
    text = msg.get_body(("plain",))
    assert html is not None and text is not None
    return str(html.get_content()), str(text.get_content())


# --- reading pages ------------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str]] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "link":
            self.links.append(values)
        if "href" in values:
            self.hrefs.append(values["href"])
        if tag == "form" and "action" in values:
            self.hrefs.append(values["action"])


def head_links(page: str) -> list[dict[str, str]]:
    """Every <link> of a page, as attribute dicts."""
    parser = _Links()
    parser.feed(page)
    return parser.links


def hrefs(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.hrefs


def local(settings: Settings, url: str) -> str | None:
    """The path of one of our URLs (absolute or not), None for another site's."""
    base = settings.base_url.rstrip("/")
    if url.startswith(base + "/"):
        return url[len(base) :]
    if url.startswith("/") and not url.startswith("//"):
        return url
    return None


@dataclass
class Visit:
    path: str
    status: int
    body: str
    headers: dict[str, str]


def crawl(client: FlaskClient, settings: Settings, start: Iterable[str]) -> list[Visit]:
    """Every newsroom URL reachable from `start` (links, forms, feeds, sitemap), each fetched
    once; redirects are followed."""
    root = settings.newsroom_path
    seen: set[str] = set()
    queue = list(start)
    visits: list[Visit] = []
    while queue:
        path = queue.pop(0)
        if path in seen or not path.startswith(root):
            continue
        seen.add(path)
        response: TestResponse = client.get(path)
        body = response.get_data(as_text=True)
        visits.append(Visit(path, response.status_code, body, dict(response.headers)))
        found: list[str] = []
        if response.status_code in (301, 302):
            found.append(response.headers["Location"])
        if response.mimetype == "text/html":
            found += hrefs(body)
        elif response.mimetype in ("application/atom+xml", "application/xml"):
            found += re.findall(r'(?:href="|<loc>)([^"<]+)', body)
        for url in found:
            target = local(settings, url.replace("&amp;", "&"))
            if target is not None and target not in seen:
                queue.append(target)
    return visits


def newsroom_starts(settings: Settings) -> list[str]:
    root = settings.newsroom_path
    return [
        f"{root}/",
        f"{root}/en/",
        f"{root}/ko/",
        f"{root}/en/feed.atom",
        f"{root}/ko/feed.atom",
        f"{root}/sitemap.xml",
    ]


# --- many publications at once ------------------------------------------------------------------


def bulk_publications(
    settings: Settings,
    n: int,
    *,
    sent_at: datetime,
    lists: Sequence[str] = ("press",),
    start_day: date = date(2024, 1, 1),
    front: str = "",
) -> list[tuple[int, int, str]]:
    """`n` public bilingual releases straight into the tables (no send): the sample release
    under slugs news-0000, news-0001, ...; one a day from `start_day`. Returns (year, month,
    slug) of each. `front`: lines added to each file's front matter."""
    en = (SAMPLES / "election-night.en.md").read_text(encoding="utf-8")
    ko = (SAMPLES / "election-night.ko.md").read_text(encoding="utf-8")
    rows = []
    for i in range(n):
        day = start_day + timedelta(days=i)
        sources = {
            "en": re.sub(
                r"^date: .*$",
                f"date: {day.isoformat()}",
                re.sub(
                    r"^title: .*$", f'title: "Release {i}: record turnout"', en, count=1, flags=re.M
                ),
                count=1,
                flags=re.M,
            ),
            "ko": re.sub(
                r"^title: .*$",
                f'title: "{i}번 보도자료: 역대 최고 투표율"',
                ko,
                count=1,
                flags=re.M,
            ),
        }
        if front:
            sources = {
                k: v.replace("---\n", f"---\n{front.strip()}\n", 1) for k, v in sources.items()
            }
        rows.append((day, f"news-{i:04d}", sources))
    out: list[tuple[int, int, str]] = []
    with session_scope(settings) as s:
        now = sent_at
        release_rows = [
            {
                "slug": slug,
                "title": f"Release {i}: record turnout",
                "default_language": "en",
                "front_matter": {"date": day.isoformat()},
                "variants": {lang: {"source": text} for lang, text in sources.items()},
                "content_hash": content_hash(sources, "en"),
                "created_at": now,
            }
            for i, (day, slug, sources) in enumerate(rows)
        ]
        s.execute(insert(Release), release_rows)
        ids = {slug: id_ for slug, id_ in s.execute(select(Release.slug, Release.id))}
        s.execute(
            insert(Publication),
            [
                {
                    "slug": slug,
                    "release_id": ids[slug],
                    "year": day.year,
                    "month": day.month,
                    "embargo": None,
                    "first_sent_at": sent_at - timedelta(minutes=len(rows) - i),
                    "publish": True,
                    "lists": list(lists),
                    "withdrawn_note": "",
                    "corrections": [],
                    "created_at": now,
                }
                for i, (day, slug, _sources) in enumerate(rows)
            ],
        )
        out = [(day.year, day.month, slug) for day, slug, _ in rows]
    return out


@contextmanager
def serving(config: Path, port: int) -> Iterator[str]:
    """A real `mailer serve` of `config` on `port` (whose base_url should be the address
    yielded, so the pages' absolute links lead back to it)."""
    address = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    command = [
        sys.executable,
        "-m",
        "mailer",
        "--config",
        str(config),
        "serve",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{address}/healthz", timeout=2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr and proc.stderr.read().decode()
                time.sleep(0.1)
        else:
            raise AssertionError("mailer serve did not answer /healthz")
        yield address
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
