"""Click tracking end to end: the links of a sent email, the /l/ redirect, the batched recorder,
machine clicks, and no click lost when `mailer serve` is killed.

Every test sends the bilingual sample release with `mailer send` to the outbox (real messages,
parsed back), then follows its links through the Flask test client or a real `mailer serve`,
on every database engine. The clock is pinned where a rule depends on time (the recorder takes
"now" from mailer.clock); no test asserts on how long anything took.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from mailer import clock
from mailer.config import Settings
from mailer.engagement import machines
from mailer.engagement.recorder import Recorder, stop_all
from mailer.engagement.tokens import ClickSigner
from mailer.store.db import session_scope
from mailer.store.models import Campaign, Click, Contact, Delivery, TrackedLink
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.newsroom import organisation, outbox, parts, readers, release_folder
from tests.support.smtp import free_port

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15"
EXTRA = (
    "Read [the full statement](https://example.org/statement?id=7&lang=en) or "
    "<https://example.org/photos/2024> (call [us](tel:+12155550100), "
    "[write](mailto:desk@hanul.example.org))."
)
T0 = datetime(2030, 1, 6, 12, 0, 0, tzinfo=UTC)
_HREF = re.compile(r"""<a\b[^>]*?\bhref\s*=\s*"([^"]*)\"""", re.I)
_SRC = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*"([^"]*)\"""", re.I)
_TEXT_URL = re.compile(r"https?://[^\s<>\"'\[\]()]+")


@pytest.fixture(autouse=True)
def _no_recorders() -> Iterator[None]:
    yield
    stop_all()
    clock.set_clock(None)


def setup(
    settings: Settings, tmp_path: Path, cli: Cli, *flags: str, **extra: object
) -> tuple[Settings, list[EmailMessage]]:
    """The sample organisation, a list with these flags and its readers, the release sent."""
    settings = organisation(settings, tmp_path, **extra)
    readers(settings, "press", press="--press" in flags, track_clicks=None)
    if any(f.startswith(("--track", "--no-track")) for f in flags):
        cli("lists", "edit", "press", *[f for f in flags if "track" in f])
    cli("send", str(release_folder(tmp_path, body_extra=EXTRA)), "--list", "press", "--yes")
    return settings, outbox(settings)


def pin(moment: datetime) -> None:
    clock.set_clock(lambda: moment)


def links_of(msg: EmailMessage) -> tuple[list[str], list[str], list[str]]:
    """(hrefs of the HTML part, image sources, URLs written in the text part)."""
    html_part, text_part = parts(msg)
    hrefs = [html.unescape(h) for h in _HREF.findall(html_part)]
    return (
        hrefs,
        _SRC.findall(html_part),
        [u.rstrip(".,;:!?") for u in _TEXT_URL.findall(text_part)],
    )


def path_of(url: str, settings: Settings) -> str:
    assert url.startswith(settings.base_url)
    return url[len(settings.base_url.rstrip("/")) :]


def client(settings: Settings) -> tuple[FlaskClient, Recorder]:
    app = create_app(settings)
    return app.test_client(), app.config["MAILER_TRACK"].recorder


def clicks(settings: Settings) -> list[Click]:
    with session_scope(settings) as s:
        rows = list(s.scalars(select(Click).order_by(Click.id)))
        s.expunge_all()
        return rows


def follow(c: FlaskClient, path: str, *, method: str = "GET", agent: str = BROWSER,
           address: str = "203.0.113.9") -> tuple[int, str | None]:  # fmt: skip
    response = c.open(
        path, method=method, headers={"User-Agent": agent},
        environ_base={"REMOTE_ADDR": address},
    )  # fmt: skip
    return response.status_code, response.headers.get("Location")


# --- the email ------------------------------------------------------------------------------


def test_only_the_unsubscribe_and_preference_links_stay_unwrapped(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--press")
    assert len(sent) == 7
    base = settings.base_url.rstrip("/")
    wrapped: set[str] = set()
    for msg in sent:
        hrefs, images, text_urls = links_of(msg)
        unsubscribe = re.search(r"<(https://[^>]+/u/[^>]+)>", str(msg["List-Unsubscribe"]))
        assert unsubscribe is not None
        for url in [*hrefs, *text_urls]:
            if not url.startswith(("http://", "https://")):
                assert url.startswith(("mailto:", "tel:")), url  # other schemes stay as written
                continue
            if url.startswith(f"{base}/l/"):
                wrapped.add(url)
                continue
            # The only http(s) links not through /l/: this reader's own unsubscribe and
            # preference pages.
            assert url == unsubscribe.group(1) or url.startswith(f"{base}/preferences/"), url
        assert "tel:+12155550100" in hrefs and "mailto:desk@hanul.example.org" in hrefs
        # Images are never wrapped (and opens are off by default: no pixel).
        assert not [src for src in images if "/l/" in src or "/o/" in src]
    # Every wrapped link leads, with a 302, to a URL the release had, and nowhere else.
    c, _ = client(settings)
    with session_scope(settings) as s:
        release_urls = set(s.scalars(select(TrackedLink.url)))
    assert "https://example.org/statement?id=7&lang=en" in release_urls
    assert "https://example.org/photos/2024" in release_urls
    assert "https://www.facebook.com/hanul.example" in release_urls
    destinations = set()
    for url in sorted(wrapped):
        status, location = follow(c, path_of(url, settings))
        assert status == 302 and location in release_urls
        destinations.add(location)
    assert destinations == release_urls


def test_the_redirect_answers_with_no_store_and_no_referrer(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--press")
    hrefs = links_of(sent[0])[0]
    url = next(h for h in hrefs if "/l/" in h)
    c, _ = client(settings)
    response = c.get(path_of(url, settings), headers={"User-Agent": BROWSER})
    assert response.status_code == 302
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    # The destination never comes from the request.
    evil = c.get(
        path_of(url, settings) + "?next=https://evil.example/", headers={"User-Agent": BROWSER}
    )
    assert evil.headers["Location"] == response.headers["Location"]


def test_a_list_that_does_not_track_clicks_keeps_its_links(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli)  # not a press list: off by default
    for msg in sent:
        hrefs, _, text_urls = links_of(msg)
        assert "https://example.org/statement?id=7&lang=en" in hrefs
        assert not [u for u in [*hrefs, *text_urls] if "/l/" in u]
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(TrackedLink)) == 0


# --- tokens ---------------------------------------------------------------------------------


def altered(token: str) -> list[str]:
    """Every way of changing a reader's genuine token that must fail."""
    campaign, link, link_sig, contact, reader_sig = token.split(".")

    def flip(sig: str) -> str:
        return sig[:3] + ("A" if sig[3] != "A" else "B") + sig[4:]

    head = f"{campaign}.{link}.{link_sig}"
    return [
        f"{campaign}.{link}.{flip(link_sig)}.{contact}.{reader_sig}",  # a signature
        f"{head}.{contact}.{flip(reader_sig)}",
        f"{head}.{int(contact) + 1}.{reader_sig}",  # another reader
        f"{head}.0.{reader_sig}",  # nobody instead
        head,  # the reader part cut off
        f"{campaign}.{int(link) + 1}.{link_sig}.{contact}.{reader_sig}",  # another link
        f"{int(campaign) + 1}.{link}.{link_sig}.{contact}.{reader_sig}",  # another campaign
        f"0{token}",  # a leading zero: the same number, other text
        f"{campaign}.0{link}.{link_sig}.{contact}.{reader_sig}",
        f"{head}.0{contact}.{reader_sig}",
        f"{token}=",  # padding
        f"{token}x",
        token[:-1],
        f"{token}.",
        f"{head}.{contact}.{reader_sig.swapcase()}",
        f"{token}%0A",
        f"+{token}",
        f"{token}.{contact}.{reader_sig}",
        "",
    ]


def test_forged_and_altered_tokens_are_404_and_record_nothing(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--press")
    url = next(h for h in links_of(sent[0])[0] if "/l/" in h)
    token = url.rsplit("/", 1)[1]
    assert token.split(".")[3] != "0"  # a press list: the token names the reader
    c, recorder = client(settings)
    for bad in altered(token):
        for method in ("GET", "HEAD"):
            status, location = follow(c, f"/l/{bad}", method=method)
            assert status == 404 and location is None, bad
    # Forged with another key.
    campaign, link, _, contact, _ = token.split(".")
    with session_scope(settings) as s:
        row = s.get(TrackedLink, int(link))
        assert row is not None
        language = row.language
    forged = ClickSigner("another-key").link_token(int(campaign), int(link), language, int(contact))
    assert follow(c, f"/l/{forged}")[0] == 404
    recorder.flush()
    assert clicks(settings) == []
    assert not recorder.queue
    assert follow(c, f"/l/{token}")[0] == 302  # the genuine one still works
    recorder.flush()
    assert len(clicks(settings)) == 1


def test_a_token_for_a_link_not_in_the_release_is_404(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, _ = setup(settings, tmp_path, cli, "--press")
    cli("send", str(release_folder(tmp_path, slug="second")), "--list", "press", "--yes")
    signer = ClickSigner(settings.secret_key)
    with session_scope(settings) as s:
        first, second = sorted(s.scalars(select(Campaign.id)))
        other = s.scalars(select(TrackedLink).where(TrackedLink.campaign_id == second)).first()
        mine = s.scalars(select(TrackedLink).where(TrackedLink.campaign_id == first)).first()
        contact_id = s.scalar(select(Delivery.contact_id).where(Delivery.language == "en"))
        assert other is not None and mine is not None and contact_id is not None
        s.expunge_all()
    c, recorder = client(settings)
    # Signed with our key for campaign 1, naming a link of campaign 2's release.
    for who in (None, contact_id):
        cross = signer.link_token(first, other.id, other.language, who)
        assert follow(c, f"/l/{cross}")[0] == 404
        # Signed, naming a link that does not exist at all.
        assert follow(c, f"/l/{signer.link_token(first, 999999, 'en', who)}")[0] == 404
    # The reader part signed for the other language of the release.
    wrong_language = "ko" if mine.language == "en" else "en"
    wrong = signer.link_token(first, mine.id, wrong_language, contact_id)
    assert follow(c, f"/l/{wrong}")[0] == 404
    recorder.flush()
    assert clicks(settings) == []
    good = signer.link_token(first, mine.id, mine.language, contact_id)
    assert follow(c, f"/l/{good}") == (302, mine.url)


# --- who is recorded ------------------------------------------------------------------------


def test_a_per_person_token_on_an_aggregate_list_records_no_person(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--track-clicks", "--no-track-people")
    # The emails themselves name nobody.
    for msg in sent:
        for url in links_of(msg)[0]:
            if "/l/" in url:
                assert len(url.rsplit("/", 1)[1].split(".")) == 3, url  # no reader part
    signer = ClickSigner(settings.secret_key)
    with session_scope(settings) as s:
        link = s.scalars(select(TrackedLink)).first()
        assert link is not None
        contact_id = s.scalar(select(Delivery.contact_id).where(Delivery.language == link.language))
        assert contact_id is not None
        s.expunge_all()
    token = signer.link_token(link.campaign_id, link.id, link.language, contact_id)
    c, recorder = client(settings)
    clock.set_clock(lambda: T0 + timedelta(days=1))
    assert follow(c, f"/l/{token}")[0] == 302
    recorder.flush()
    [click] = clicks(settings)
    assert click.contact_id is None and click.link_id == link.id and not click.machine


def test_press_clicks_name_the_reader_unless_they_switched_it_off(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--press")
    jane = next(m for m in sent if "jane.editor" in str(m["To"]))
    zed = next(m for m in sent if "zed.quill" in str(m["To"]))
    c, recorder = client(settings)
    clock.set_clock(lambda: T0 + timedelta(days=1))
    assert follow(c, path_of(next(u for u in links_of(jane)[0] if "/l/" in u), settings))[0] == 302
    recorder.flush()
    with session_scope(settings) as s:
        jane_id = s.scalar(select(Contact.id).where(Contact.email == "jane.editor@example.net"))
        s.execute(
            update(Contact)
            .where(Contact.email == "zed.quill@example.org")
            .values(track_people_off=True)
        )
    # Switched off after the email left: the token in it names Zed, the record does not.
    clock.set_clock(lambda: T0 + timedelta(days=1, minutes=5))
    assert follow(c, path_of(next(u for u in links_of(zed)[0] if "/l/" in u), settings))[0] == 302
    recorder.flush()
    first, second = clicks(settings)
    assert first.contact_id == jane_id and second.contact_id is None
    # The next release: Zed's links name nobody, Jane's still name her.
    clock.set_clock(None)
    before = len(outbox(settings))
    cli("send", str(release_folder(tmp_path, slug="second")), "--list", "press", "--yes")
    later = outbox(settings)[before:]
    assert len(later) == len(sent)
    for msg in later:
        readers_named = {u.rsplit("/", 1)[1].split(".")[3] for u in links_of(msg)[0] if "/l/" in u}
        if "zed.quill" in str(msg["To"]):
            assert readers_named == {"0"}
        elif "jane.editor" in str(msg["To"]):
            assert readers_named == {str(jane_id)}


# --- machines -------------------------------------------------------------------------------


def test_head_scanners_sweeps_and_early_clicks_are_machines(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--press")
    msgs = {m["To"].addresses[0].addr_spec: m for m in sent}

    def urls(address: str) -> list[str]:
        return [
            path_of(u, settings) for u in dict.fromkeys(links_of(msgs[address])[0]) if "/l/" in u
        ]

    with session_scope(settings) as s:
        sent_at = {d.email: d.sent_at for d in s.scalars(select(Delivery))}
    c, recorder = client(settings)
    # A recorded gateway sequence for one reader: on delivery, every link, 0.2 s apart, from
    # an ordinary address and browser agent: caught by the time since delivery.
    kim = "kim.reporter@example.com"
    start = sent_at[kim]
    assert start is not None
    for n, path in enumerate(urls(kim)):
        pin(start + timedelta(seconds=1 + 0.2 * n))
        assert follow(c, path, address="198.51.100.7")[0] == 302
    # The same from a Microsoft (Safe Links) address, a day later: caught by its network.
    choi = urls("choi@example.net")
    clock.set_clock(lambda: start + timedelta(days=1))
    follow(c, choi[0], address="40.107.22.5")
    recorder.flush()
    first = clicks(settings)
    assert [k.machine_reason for k in first] == [machines.EARLY] * len(urls(kim)) + [
        machines.NETWORK
    ]
    assert all(k.machine for k in first)
    # A link checker's HEAD, a previewer's agent, hours later.
    jane = urls("jane.editor@example.net")
    later = T0 + timedelta(days=1)
    clock.set_clock(lambda: later)
    follow(c, jane[0], method="HEAD")
    follow(c, jane[0], agent="Mozilla/5.0 (compatible; Barracuda Sentinel link checker)")
    follow(c, jane[0], agent="python-requests/2.31")
    follow(c, jane[0], agent="")
    # A sweep long after delivery from an ordinary browser and address: 3 links in 2 s.
    park = urls("park@example.org")
    for n, path in enumerate(park[:3]):
        pin(later + timedelta(minutes=10, seconds=0.6 * n))
        follow(c, path)
    # A person: one link, then another a minute later, then the first again.
    lee = urls("lee@example.com")
    for n, path in enumerate([lee[0], lee[1], lee[0]]):
        pin(later + timedelta(minutes=30 + n))
        follow(c, path)
    recorder.flush()
    rows = clicks(settings)[len(first) :]
    got = [(r.machine, r.machine_reason) for r in rows]
    assert got == [
        (True, machines.HEAD),
        (True, machines.AGENT),
        (True, machines.AGENT),
        (True, machines.AGENT),
        (True, machines.SWEEP),
        (True, machines.SWEEP),
        (True, machines.SWEEP),
        (False, ""),
        (False, ""),
        (False, ""),
    ]


def test_the_sweep_rule_on_recorded_sequences() -> None:
    def seen(key: str, *pairs: tuple[float, int], links: int = 6) -> list[machines.Seen]:
        return [machines.Seen(key, link, at, links) for at, link in pairs]

    # A gateway following every link of one message within a second.
    gateway = seen("p:1:7", (0.0, 1), (0.3, 2), (0.35, 3), (0.9, 4))
    assert machines.sweeps(gateway) == {0, 1, 2, 3}
    # A message with two links, both fetched at once.
    assert machines.sweeps(seen("p:1:8", (0.0, 1), (0.1, 2), links=2)) == {0, 1}
    # A person: two links seconds apart, the same link twice quickly.
    person = seen("p:1:9", (0.0, 1), (1.0, 1), (30.0, 2), (31.5, 3))
    assert machines.sweeps(person) == set()
    # Different readers clicking the same moment are not one sweep.
    crowd = [*seen("p:1:1", (0.0, 1)), *seen("p:1:2", (0.1, 2)), *seen("p:1:3", (0.2, 3))]
    assert machines.sweeps(crowd) == set()
    assert machines.request_reason("HEAD", BROWSER, "198.51.100.1") == machines.HEAD
    assert (
        machines.request_reason("GET", "Mozilla/5.0 GoogleImageProxy", "1.2.3.4") == machines.AGENT
    )
    assert machines.request_reason("GET", BROWSER, "::ffff:40.107.1.1") == machines.NETWORK
    assert machines.request_reason("GET", BROWSER, "198.51.100.1") == ""
    assert machines.is_early(T0 + timedelta(seconds=10), T0, 10)
    assert not machines.is_early(T0 + timedelta(seconds=11), T0, 10)
    assert not machines.is_early(T0, T0, 0)


def test_opens_are_recorded_only_when_turned_on(
    settings: Settings, tmp_path: Path, cli: Cli
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--press", track_opens=True)
    c, recorder = client(settings)
    clock.set_clock(lambda: T0 + timedelta(days=1))
    for msg in sent:
        [pixel] = [s for s in links_of(msg)[1] if "/o/" in s]
        response = c.get(path_of(pixel, settings), headers={"User-Agent": BROWSER})
        assert response.status_code == 200 and response.mimetype == "image/gif"
        assert response.headers["Cache-Control"] == "no-store"
    token = pixel.rsplit("/", 1)[1]
    assert (
        c.get(f"/o/{token[:-1]}A" if token[-1] != "A" else f"/o/{token[:-1]}B").status_code == 404
    )
    recorder.flush()
    opens = clicks(settings)
    assert len(opens) == len(sent) and {o.kind for o in opens} == {"open"}
    assert all(o.link_id is None and o.contact_id is not None for o in opens)


# --- no click lost --------------------------------------------------------------------------


class Server:
    """A real `mailer serve` on the test's mailer.toml."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailer", "--config", str(tmp_path / "mailer.toml"), "serve",
             "--port", str(self.port), "--threads", "4", "--no-worker", "--no-notices"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    return
            except OSError:
                assert self.proc.poll() is None, self.proc.stderr and self.proc.stderr.read()
                time.sleep(0.1)
        pytest.fail("mailer serve did not answer /healthz")

    def click(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path, headers={"User-Agent": BROWSER})
        status = conn.getresponse().status
        conn.close()
        return status

    def end(self, sig: int) -> None:
        self.proc.send_signal(sig)
        try:
            self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def count_clicks(settings: Settings) -> int:
    with session_scope(settings) as s:
        return int(s.scalar(select(func.count()).select_from(Click)) or 0)


@pytest.mark.parametrize("ending", ["SIGKILL", "SIGTERM"])
def test_no_click_is_lost_across_a_restart(
    settings: Settings, tmp_path: Path, cli: Cli, ending: str
) -> None:
    settings, sent = setup(settings, tmp_path, cli, "--press")
    paths = [path_of(u, settings) for m in sent for u in links_of(m)[0] if "/l/" in u]
    server = Server(tmp_path)
    try:
        answered = sum(server.click(p) == 302 for p in paths * 3)
    finally:
        server.end(getattr(signal, ending))
    assert answered == len(paths) * 3
    if ending == "SIGKILL":
        # Killed with clicks still queued (they wait 2 s for the sweep rule): only the
        # journal has them. The next start replays it before its first request.
        assert list((tmp_path / "engagement").glob("journal-*.log"))
        server = Server(tmp_path)
        server.end(signal.SIGTERM)
    assert count_clicks(settings) == answered
    assert not list((tmp_path / "engagement").glob("journal-*.log"))
