"""Embargoes as the press uses them: press lists get an embargoed release early, plainly marked.

A real SMTP server on loopback or the outbox maildir, every database engine, and a pinned clock
for the two sides of the lift. The embargo is written in UTC and the organisation's zone is
Asia/Seoul, so every marking shown here was converted to the organisation's zone and names it.
"""

from __future__ import annotations

import csv
import email
import email.policy
import json
import mailbox
import re
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from mailer import clock
from mailer.config import Settings, load_settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.releases import embargo as embargo_words
from mailer.releases.dates import zone_label
from mailer.store.db import session_scope
from mailer.store.models import Campaign, Delivery, Event
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.sending import populate, use_smtp
from tests.support.smtp import SmtpServer
from tests.support.terminal import answer_in_terminal
from tests.support.web import html_part, text_part

EMBARGO = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)  # 21:00 in Seoul
BEFORE = EMBARGO - timedelta(hours=3)
AFTER = EMBARGO + timedelta(minutes=1)
EN_TITLE = "Record turnout: Korean American voters helped decide this election"
KO_TITLE = "역대 최고 투표율: 한인 유권자들이 이번 선거의 향방을 바꿨다"
EN_MARK = "EMBARGOED UNTIL March 1, 2030, 9:00 PM KST"
KO_MARK = "엠바고: 2030년 3월 1일 오후 9:00 (KST) 이후 보도"
MEMBERS = [("member.one@example.org", "Member One", "en"), ("member.two@example.org", "회원", "ko")]


def embargoed(release: Path) -> Path:
    for f in release.parent.glob("*.md"):
        text = f.read_text(encoding="utf-8")
        f.write_text(text.replace("---\n", "---\nembargo: 2030-03-01T12:00:00Z\n", 1), "utf-8")
    return release


def setup(settings: Settings, tmp_path: Path, smtp: SmtpServer | None = None) -> Settings:
    """The organisation in Asia/Seoul; `press` (six reporters) and `members`, neither flagged."""
    if smtp is not None:
        settings = use_smtp(settings, tmp_path, smtp, timezone="Asia/Seoul")
    else:
        write_config(tmp_path, {"database_url": settings.database_url, "timezone": "Asia/Seoul"})
        settings = load_settings(tmp_path / "mailer.toml", env={})
    populate(settings)
    with session_scope(settings) as s:
        create_list(s, "members", "Members")
        for address, name, lang in MEMBERS:
            add_contact(s, address, "members", name=name, language=lang)
    return settings


def outbox(settings: Settings) -> list[EmailMessage]:
    if not settings.outbox_dir.exists():
        return []
    found = []
    box = mailbox.Maildir(settings.outbox_dir, create=False)
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def raw_subject(raw: bytes) -> str:
    """The Subject header as sent (folded lines joined), checked to be valid RFC 2047."""
    head = raw.split(b"\n\n", 1)[0].replace(b"\r\n", b"\n")
    m = re.search(rb"^Subject:(.*(?:\n[ \t].*)*)", head, re.MULTILINE)
    assert m is not None, head
    value = m.group(1)
    value.decode("ascii")  # a header of encoded words, never raw UTF-8
    for line in value.split(b"\n"):
        assert len(line) <= 78
    for word in re.findall(rb"=\?[^?]+\?[bBqQ]\?[^?]*\?=", value):
        assert len(word) <= 75
    # The strict decoder (the modern parser keeps the whitespace between encoded words).
    return str(make_header(decode_header(value.decode("ascii").replace("\n", "")))).strip()


def assert_marked(msg: EmailMessage, raw: bytes | None = None) -> None:
    """Subject prefix and banner (HTML and text) in the reader's language, the zone named."""
    lang = msg["Content-Language"]
    mark, title = (KO_MARK, KO_TITLE) if lang == "ko" else (EN_MARK, EN_TITLE)
    expected = f"[{mark}] {title}"
    assert str(msg["Subject"]) == expected
    if raw is not None:
        assert raw_subject(raw) == expected
    html, text = html_part(msg), text_part(msg).replace("\r\n", "\n")
    # At the top: before the organisation's name in both parts.
    assert text.startswith(f"*** {mark} ***\n"), text[:300]
    assert 'class="embargo-banner"' in html and mark in html
    assert html.index(mark) < html.index("Hanul Community Center")


def assert_unmarked(msg: EmailMessage) -> None:
    lang = msg["Content-Language"]
    assert str(msg["Subject"]) == (KO_TITLE if lang == "ko" else EN_TITLE)
    assert 'class="embargo-banner"' not in html_part(msg)
    # The release's own line ("Embargoed until ...") stays: the banner is what goes.
    assert "*** " not in text_part(msg)


def campaigns(settings: Settings) -> list[Campaign]:
    with session_scope(settings) as s:
        return list(s.scalars(select(Campaign)))


# --- lists --------------------------------------------------------------------------------------


def test_press_and_archive_flags(settings: Settings, cli: Cli) -> None:
    out = cli("lists", "create", "wire", "--name", "Wire", "--press").output
    assert "a press list" in out
    cli("lists", "create", "club", "--name", "Club", "--no-archive")
    cli("lists", "create", "plain", "--name", "Plain")
    shown = {x["slug"]: x for x in json.loads(cli("lists", "ls", "--json").output)}
    assert {k: (v["press"], v["archive"]) for k, v in shown.items()} == {
        "wire": (True, True),
        "club": (False, False),
        "plain": (False, True),
    }
    table = cli("lists", "ls").output.splitlines()
    assert table[0].split()[4:7] == ["PUBLIC", "PRESS", "ARCHIVE"]
    assert next(x for x in table if x.startswith("wire")).split()[4:7] == ["no", "yes", "yes"]
    assert next(x for x in table if x.startswith("club")).split()[4:7] == ["no", "no", "no"]
    cli("lists", "edit", "wire", "--no-press", "--no-archive")
    cli("lists", "edit", "plain", "--press")
    data = json.loads(cli("lists", "show", "wire", "--json").output)
    assert (data["press"], data["archive"]) == (False, False)
    text = cli("lists", "show", "plain").output
    assert "press: yes" in text and "archive: yes" in text
    # Only what was given changes; each change is in the event log.
    cli("lists", "edit", "plain", "--name", "Plain 2")
    assert json.loads(cli("lists", "show", "plain", "--json").output)["press"] is True
    with session_scope(settings) as s:
        edits = [e.data for e in s.scalars(select(Event).where(Event.kind == "list.edit"))]
    assert {"slug": "wire", "press": False, "archive": False}.items() <= edits[0].items()


# --- before the lift: press lists, marked ---------------------------------------------------


def test_press_list_gets_it_early_marked_over_smtp(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path, smtp)
    embargoed(release)
    cli("lists", "edit", "press", "--press")
    clock.set_clock(lambda: BEFORE)
    out = cli("send", str(release), "--list", "press", "--yes", "--early").output
    assert "BEFORE THE EMBARGO: embargoed until March 1, 2030, 9:00 PM KST" in out
    assert "the press lists press get it now" in out
    assert len(smtp.sink.received) == 6
    for r in smtp.sink.received:
        assert_marked(r.message, r.data)
    languages = sorted(r.message["Content-Language"] for r in smtp.sink.received)
    assert languages == ["en", "en", "en", "ko", "ko", "ko"]  # fr, none -> en; ko-KR -> ko
    # The campaign says so, and so does its report, per recipient.
    shown = cli("campaigns", "show", "1").output
    assert "sent before embargo (until 2030-03-01 21:00 KST): 6 message(s)" in shown
    data = json.loads(cli("campaigns", "show", "1", "--json").output)
    assert data["embargo"] == "2030-03-01T12:00:00+00:00"
    assert data["before_embargo"] == {"lists": ["press"], "sent": 6}
    report = cli("campaigns", "report", "1", "--csv", str(tmp_path / "r.csv")).output
    assert "sent before embargo" in report
    with open(tmp_path / "r.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["before_embargo"] for r in rows] == ["yes"] * 6
    with session_scope(settings) as s:
        event = s.scalars(select(Event).where(Event.kind == "campaign.before_embargo")).one()
    assert event.data["lists"] == ["press"] and event.actor == "cli"


def test_press_list_early_to_the_outbox_with_json(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path)
    embargoed(release)
    cli("lists", "edit", "press", "--press")
    clock.set_clock(lambda: BEFORE)
    dry = json.loads(cli("send", str(release), "--list", "press", "--dry-run", "--json").stdout)
    assert dry["status"] == "dry-run" and dry["built"]["messages"] == 6
    early = dry["plan"]["before_embargo"]
    assert early == {
        "until": "2030-03-01T12:00:00+00:00",
        "until_text": "March 1, 2030, 9:00 PM KST",
        "lists": ["press"],
    }
    assert outbox(settings) == [] and campaigns(settings) == []
    sent = cli("send", str(release), "--list", "press", "--yes", "--early", "--json").stdout
    data = json.loads(sent)
    assert data["status"] == "sent" and data["result"]["counts"]["sent"] == 6
    assert data["plan"]["before_embargo"]["lists"] == ["press"]
    got = outbox(settings)
    assert len(got) == 6
    for msg in got:
        assert_marked(msg)


def test_not_before_the_embargo_to_other_lists(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path, smtp)
    embargoed(release)
    clock.set_clock(lambda: BEFORE)
    # Not a press list: refused, even with --early, and the dry run says so too.
    for extra in ((), ("--early",), ("--dry-run",)):
        out = cli("send", str(release), "--list", "members", "--yes", *extra, expect=1).output
        assert "under embargo until March 1, 2030, 9:00 PM KST" in out
        assert "cannot go to members before then" in out
        assert "--at '2030-03-01 21:00 Asia/Seoul'" in out
    # A press list and another: refused, with the two sends that would do it.
    cli("lists", "edit", "press", "--press")
    out = cli(
        "send", str(release), "--list", "press", "--list", "members", "--yes", "--early", expect=1
    ).output
    assert "members is not a press list" in " ".join(out.split())
    assert "send in two steps" in out and "--list members --at '2030-03-01 21:00 Asia/Seoul'" in out
    assert smtp.sink.received == [] and campaigns(settings) == []
    # The suggested schedule works: at the lift, a worker sends it, unmarked.
    out = cli(
        "send", str(release), "--list", "members", "--yes", "--at", "2030-03-01 21:00 Asia/Seoul"
    ).output
    assert "Scheduled campaign 1" in out
    clock.set_clock(lambda: AFTER)
    cli("worker", "--once", "--poll", "0")
    assert len(smtp.sink.received) == 2
    for r in smtp.sink.received:
        assert_unmarked(r.message)
    assert json.loads(cli("campaigns", "show", "1", "--json").output)["before_embargo"] is None


def test_yes_needs_early_and_the_question_says_it(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path, smtp)
    embargoed(release)
    cli("lists", "edit", "press", "--press")
    clock.set_clock(lambda: BEFORE)
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    # The plan was shown, then the refusal: what would happen and the flag that allows it.
    assert "BEFORE THE EMBARGO" in out
    assert "Error: embargoed until March 1, 2030, 9:00 PM KST" in out
    assert "confirm that with --early" in out
    assert "pass --yes --early" in cli("send", str(release), "--list", "press", expect=1).output
    assert smtp.sink.received == [] and campaigns(settings) == []
    # On a terminal the question names the lists and the embargo (real clock: 2030 is ahead).
    clock.set_clock(None)
    asked = answer_in_terminal(
        ["--config", str(tmp_path / "mailer.toml"), "send", str(release), "--list", "press"], "n"
    )
    question = " ".join(asked.split())
    assert (
        "Send to 6 recipient(s) on press now, BEFORE THE EMBARGO (embargoed until March 1, "
        "2030, 9:00 PM KST), each marked EMBARGOED" in question
    ), asked
    assert "Not sent; nothing stored." in asked
    assert smtp.sink.received == [] and campaigns(settings) == []


def test_test_send_has_the_same_marking(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path, smtp)
    embargoed(release)
    clock.set_clock(lambda: BEFORE)
    cli("send", str(release), "--test", "me@hanul.example.org")
    assert len(smtp.sink.received) == 2
    for r in smtp.sink.received:
        msg = r.message
        mark, title = (
            (KO_MARK, KO_TITLE) if msg["Content-Language"] == "ko" else (EN_MARK, EN_TITLE)
        )
        test_mark = "[테스트]" if msg["Content-Language"] == "ko" else "[Test]"
        assert raw_subject(r.data) == f"{test_mark} [{mark}] {title}"
        assert text_part(msg).replace("\r\n", "\n").startswith(f"*** {mark} ***\n")
        assert mark in html_part(msg)
    # After the lift a test copy is not embargoed either.
    clock.set_clock(lambda: AFTER)
    cli("send", str(release), "--test", "me@hanul.example.org")
    for r in smtp.sink.received[2:]:
        subject = str(r.message["Subject"])
        assert subject.startswith(("[Test] ", "[테스트] ")) and "[EMBARGOED" not in subject
        assert 'class="embargo-banner"' not in html_part(r.message)


# --- after the lift --------------------------------------------------------------------------


def test_after_the_lift_nothing_is_marked(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path)
    embargoed(release)
    clock.set_clock(lambda: AFTER)
    # Any list, no --early: the embargo is over.
    out = cli("send", str(release), "--list", "press", "--list", "members", "--yes").output
    assert "BEFORE THE EMBARGO" not in out
    got = outbox(settings)
    assert len(got) == 8
    for msg in got:
        assert_unmarked(msg)
    data = json.loads(cli("campaigns", "show", "1", "--json").output)
    assert data["before_embargo"] is None and data["embargo"] == "2030-03-01T12:00:00+00:00"
    assert "embargo until 2030-03-01" in cli("campaigns", "show", "1").output


def test_a_campaign_resumed_after_the_lift_sends_the_rest_unmarked(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path, smtp)
    embargoed(release)
    cli("lists", "edit", "press", "--press")
    clock.set_clock(lambda: BEFORE)
    cli("send", str(release), "--list", "press", "--yes", "--early", "--limit", "2")
    assert len(smtp.sink.received) == 2
    for r in smtp.sink.received:
        assert_marked(r.message, r.data)
    clock.set_clock(lambda: AFTER)
    cli("campaigns", "resume", "1")
    assert len(smtp.sink.received) == 6
    for r in smtp.sink.received[2:]:
        assert_unmarked(r.message)
    data = json.loads(cli("campaigns", "show", "1", "--json").output)
    assert data["before_embargo"] == {"lists": ["press"], "sent": 2}


def test_scheduled_before_the_lift_needs_early(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path, smtp)
    embargoed(release)
    cli("lists", "edit", "press", "--press")
    clock.set_clock(lambda: BEFORE)
    at = "2030-03-01 20:00 Asia/Seoul"  # an hour before the lift
    out = cli("send", str(release), "--list", "press", "--yes", "--at", at, expect=1).output
    assert "is before the embargo (March 1, 2030, 9:00 PM KST)" in out and "--early" in out
    assert campaigns(settings) == []
    out = cli("send", str(release), "--list", "press", "--yes", "--at", at, "--early").output
    assert "Scheduled campaign 1" in out and "each message marked EMBARGOED" in out
    clock.set_clock(lambda: EMBARGO - timedelta(minutes=59))
    cli("worker", "--once", "--poll", "0")
    assert len(smtp.sink.received) == 6
    for r in smtp.sink.received:
        assert_marked(r.message, r.data)
    with session_scope(settings) as s:
        assert [d.sent_at is not None for d in s.scalars(select(Delivery))] == [True] * 6


# --- the wording -----------------------------------------------------------------------------


def test_a_layout_without_the_banner_is_refused(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    settings = setup(settings, tmp_path)
    embargoed(release)
    cli("lists", "edit", "press", "--press")
    shipped = Path(__file__).parents[1] / "templates" / "email" / "release.html"
    own = tmp_path / "templates" / "email" / "release.html"
    own.parent.mkdir(parents=True)
    html = shipped.read_text(encoding="utf-8")
    own.write_text(re.sub(r"\{% if embargo_banner %\}.*?\{% endif %\}\n", "", html, flags=re.S))
    clock.set_clock(lambda: BEFORE)
    out = cli("send", str(release), "--list", "press", "--yes", "--early", expect=1).output
    assert "email/release.html: the layout does not show the embargo banner" in out
    assert [(m["Subject"], m["To"]) for m in outbox(settings)] == [], out
    # After the lift that layout is fine.
    clock.set_clock(lambda: AFTER)
    cli("send", str(release), "--list", "press", "--yes")
    assert len(outbox(settings)) == 6


def test_the_zone_is_the_organisations_else_utc() -> None:
    seoul = Settings(timezone="Asia/Seoul")
    assert embargo_words.subject_prefix(EMBARGO, seoul, "ko-KR") == f"[{KO_MARK}] "
    assert embargo_words.subject_prefix(EMBARGO, seoul, "fr") == f"[{EN_MARK}] "
    utc = Settings()
    assert embargo_words.when_text(EMBARGO, utc, "en") == "March 1, 2030, 12:00 PM UTC"
    assert embargo_words.when_text(EMBARGO, utc, "ko") == "2030년 3월 1일 오후 12:00 (UTC)"
    assert embargo_words.when_option(EMBARGO, utc) == "2030-03-01 12:00 UTC"
    summer = Settings(timezone="America/New_York")
    july = datetime(2030, 7, 1, 13, 0, tzinfo=UTC)
    assert embargo_words.when_text(july, summer, "en") == "July 1, 2030, 9:00 AM EDT"
    # A zone tzdata knows by its offset only is still named as a zone.
    assert zone_label(EMBARGO.astimezone(ZoneInfo("Asia/Dubai"))) == "UTC+04"
    banner = embargo_words.banner(EMBARGO, seoul, "ko")
    assert banner.title == KO_MARK and "보도를 삼가" in banner.note
