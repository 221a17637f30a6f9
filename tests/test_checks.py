"""`release check`: each finding, the audience's languages, and the command's exit status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.contacts.suppressions import suppress
from mailer.delivery.planning import audience_languages
from mailer.localtext import LocalText
from mailer.releases.checks import Finding, check_release, has_errors
from mailer.releases.source import load_release
from mailer.samples import sample_path
from mailer.store.models import Subscription, SubscriptionStatus, SuppressionReason
from tests.support.cli import Cli
from tests.support.releases import offline_cli, org_settings, write_release

GOOD_FRONT = "title: Good release\ndate: 2024-03-01\nsummary: A summary."


def findings_for(
    tmp_path: Path,
    front: str = GOOD_FRONT,
    body: str = "Body.\n",
    audience: dict[str, int] | None = None,
    **settings: object,
) -> list[Finding]:
    release = load_release(write_release(tmp_path, "r.en.md", front, body))
    return check_release(release, org_settings(tmp_path, **settings), audience_languages=audience)


def messages(findings: list[Finding], level: str) -> str:
    return "\n".join(f.message for f in findings if f.level == level)


def test_clean_release_has_no_findings(tmp_path: Path) -> None:
    assert findings_for(tmp_path) == []


def test_the_sample_release_is_clean() -> None:
    release = load_release(sample_path())
    findings = check_release(
        release, org_settings(Path("/nonexistent")), audience_languages={"en": 3, "ko": 2}
    )
    assert findings == []


def test_no_postal_address_is_an_error(tmp_path: Path) -> None:
    findings = findings_for(tmp_path, postal_address="  ")
    assert has_errors(findings)
    assert "settings: postal_address is empty" in messages(findings, "error")


def test_html_over_gmail_clip_limit_is_an_error(tmp_path: Path) -> None:
    body = "\n\n".join(f"Paragraph {i}: " + "words and more words " * 20 for i in range(300))
    findings = findings_for(tmp_path, body=body)
    assert "KB; Gmail clips messages over 102 KB" in messages(findings, "error")
    assert not has_errors(findings_for(tmp_path, body=body[:40_000]))


def test_images_without_alt_text(tmp_path: Path) -> None:
    front = GOOD_FRONT + "\nimage: https://hanul.example.org/head.jpg"
    body = "Intro.\n\n![](https://hanul.example.org/a.png)\n\n![A chart](https://x.org/b.png)\n"
    findings = findings_for(tmp_path, front=front, body=body)
    warnings = messages(findings, "warning")
    assert "r.en.md: image has no alt text (image.alt)" in warnings
    assert "r.en.md:9: image 'https://hanul.example.org/a.png' has no alt text" in warnings
    assert "b.png" not in warnings
    assert not has_errors(findings)


def test_links_must_be_absolute_https(tmp_path: Path) -> None:
    body = (
        "See [the site](http://hanul.example.org/old).\n\n"
        "A [relative](/news/1) link, an [anchor](#top), [mail](mailto:a@b.org), "
        "[call](tel:+12155550142) and [ftp](ftp://x.org/f).\n\n"
        "![pic](images/p.png)\n"
    )
    findings = findings_for(
        tmp_path,
        body=body,
        website="http://hanul.example.org",
        social={"Facebook": "https://www.facebook.com/x"},
    )
    errors, warnings = messages(findings, "error"), messages(findings, "warning")
    assert "r.en.md:6: link 'http://hanul.example.org/old' is not https" in warnings
    assert "r.en.md:8: link '/news/1' is not an absolute URL" in errors
    assert "r.en.md:8: link '#top' is not an absolute URL" in errors
    assert "r.en.md:10: image 'images/p.png' is not an absolute URL" in errors
    assert "r.en.md:8: link 'ftp://x.org/f' is not an https link" in warnings
    assert "settings: website 'http://hanul.example.org' is not https" in warnings
    assert "mailto" not in errors + warnings and "tel:" not in errors + warnings
    assert "facebook" not in errors + warnings


def test_plain_http_base_url_is_a_warning(tmp_path: Path) -> None:
    findings = findings_for(tmp_path, base_url="http://127.0.0.1:8000")
    assert "base_url 'http://127.0.0.1:8000' is not https" in messages(findings, "warning")


def test_embargo_past_and_expiry(tmp_path: Path) -> None:
    front = GOOD_FRONT + "\nembargo: 2024-03-01T09:00:00-05:00\nexpires: 2024-03-10T00:00:00Z"
    with clock.pinned(datetime(2024, 2, 1, tzinfo=UTC)):
        assert findings_for(tmp_path, front=front) == []
    with clock.pinned(datetime(2024, 3, 2, tzinfo=UTC)):
        findings = findings_for(tmp_path, front=front)
    assert messages(findings, "warning").startswith(
        f"{tmp_path / 'r.en.md'}: embargo 2024-03-01T09:00:00-05:00 is already past"
    )
    assert not has_errors(findings)
    with clock.pinned(datetime(2024, 3, 11, tzinfo=UTC)):
        findings = findings_for(tmp_path, front=front)
    assert "expires 2024-03-10T00:00:00+00:00 is already past" in messages(findings, "error")
    backwards = GOOD_FRONT + "\nembargo: 2024-03-10T00:00:00Z\nexpires: 2024-03-01T00:00:00Z"
    with clock.pinned(datetime(2024, 2, 1, tzinfo=UTC)):
        findings = findings_for(tmp_path, front=backwards)
    assert "is not after the embargo" in messages(findings, "error")


def test_very_long_subject(tmp_path: Path) -> None:
    long_title = "A very long headline that goes on " * 3
    findings = findings_for(tmp_path, front=f"title: {long_title}\ndate: 2024-03-01\nsummary: s")
    assert "the subject is 101 columns long" in messages(findings, "warning")
    # A short `subject` fixes it, whatever the title's length.
    findings = findings_for(
        tmp_path, front=f"title: {long_title}\nsubject: Short\ndate: 2024-03-01\nsummary: s"
    )
    assert findings == []
    # Hangul takes two columns: 40 syllables is as long as 80 Latin letters.
    findings = findings_for(tmp_path, front=f"title: {'가' * 40}\ndate: 2024-03-01\nsummary: s")
    assert "the subject is 80 columns long" in messages(findings, "warning")


def test_language_missing_for_its_readers(tmp_path: Path) -> None:
    findings = findings_for(tmp_path, audience={"en": 10, "ko": 4, "ko-kr": 1, "fr": 0})
    warnings = messages(findings, "warning")
    assert (
        "4 subscriber(s) read 'ko' but the release has no ko variant (r.ko.md); they "
        "would get the en one" in warnings
    )
    assert "1 subscriber(s) read 'ko-kr'" in warnings
    assert "'fr'" not in warnings and "'en'" not in warnings
    write_release(tmp_path, "r.ko.md", "title: 좋은 보도자료\nsummary: 요약")
    release = load_release(tmp_path / "r")
    findings = check_release(
        release, org_settings(tmp_path), audience_languages={"en": 10, "ko": 4, "ko-kr": 1}
    )
    assert findings == []


def test_other_warnings(tmp_path: Path) -> None:
    findings = findings_for(
        tmp_path, front="title: T", body="\n", about={"ko": "소개"}, languages=["ko"]
    )
    assert "r.en.md: the body is empty" in messages(findings, "error")
    warnings = messages(findings, "warning")
    assert "no summary" in warnings and "no date" in warnings
    assert "about has no 'en' text" in warnings
    assert "'en' is not in the settings' languages ['ko']" in warnings


CONTACT = (
    "\ncontact:\n  name: Minji Seo\n  email: press@hanul.example.org\n  phone: '+1 215-555-0142'"
)


@pytest.mark.parametrize(
    ("en", "ko", "expected"),
    [
        (
            CONTACT,
            "",
            "{ko}: no contact; the ko release shows the one of {en} (Minji Seo); give "
            "a contact: here to name another",
        ),
        (
            CONTACT,
            "contact:\n  name: 서민지",
            "{ko}: contact has no email, phone; the ko release "
            "shows those of {en} (email 'press@hanul.example.org', phone '+1 215-555-0142'); "
            "give them "
            'here ("" for none) if they differ',
        ),
        (
            "",
            "contact:\n  name: 서민지",
            "{en}: no contact, but {ko} has one; the en readers get no "
            "media contact (a contact is completed only from the en "
            "file)",
        ),
    ],
    ids=["no-ko-contact", "ko-name-only", "no-en-contact"],
)
def test_a_contact_completed_or_missing_in_a_variant_is_warned_about(
    tmp_path: Path, en: str, ko: str, expected: str
) -> None:
    en_path = write_release(tmp_path, "r.en.md", GOOD_FRONT + en)
    ko_path = write_release(tmp_path, "r.ko.md", "title: 좋은 보도자료\nsummary: 요약\n" + ko)
    findings = check_release(load_release(en_path), org_settings(tmp_path))
    assert messages(findings, "warning") == expected.format(en=en_path, ko=ko_path)
    # Given in full in both files: nothing to say.
    write_release(tmp_path, "r.en.md", GOOD_FRONT + CONTACT)
    write_release(tmp_path, "r.ko.md", "title: 좋은 보도자료\nsummary: 요약" + CONTACT)
    assert check_release(load_release(en_path), org_settings(tmp_path)) == []


def test_a_missing_list_name_is_told_only_for_the_languages_sent(tmp_path: Path) -> None:
    write_release(tmp_path, "r.ko.md", "title: 좋은 보도자료\nsummary: 요약")
    release = load_release(write_release(tmp_path, "r.en.md", GOOD_FRONT))
    name = LocalText({"en": "Members"}, "en")
    told = "the list Members has no 'ko' name"
    assert told in messages(
        check_release(release, org_settings(tmp_path), list_name=name), "warning"
    )
    only_en = check_release(
        release, org_settings(tmp_path), list_name=name, render_languages={"en"}
    )
    assert only_en == []


def test_a_broken_layout_is_an_error_finding(tmp_path: Path) -> None:
    (tmp_path / "templates" / "email").mkdir(parents=True)
    (tmp_path / "templates" / "email" / "footer.html").write_text(
        "<p>{{ org.name }}</p>", encoding="utf-8"
    )
    findings = findings_for(tmp_path)
    assert "the HTML layout has no unsubscribe link" in messages(findings, "error")
    (tmp_path / "templates" / "email" / "footer.html").write_text("{{ nope }}", encoding="utf-8")
    findings = findings_for(tmp_path)
    assert "cannot be rendered" in messages(findings, "error")
    assert "'nope' is undefined" in messages(findings, "error")


# --- the audience, from the database ---------------------------------------------------------


def populate(session: Session) -> None:
    create_list(session, "press", "Press")
    create_list(session, "members", "Members")
    add_contact(session, "en1@example.org", "press", language="en")
    add_contact(session, "ko1@example.org", "press", language="ko")
    add_contact(session, "ko1@example.org", "members")  # on both lists: counted once
    add_contact(session, "ko2@example.org", "members", language="ko")
    add_contact(session, "none@example.org", "press")  # no language: the default
    add_contact(session, "gone@example.org", "press", language="ko")
    suppress(session, "gone@example.org", SuppressionReason.MANUAL)
    _, sub = add_contact(session, "left@example.org", "press", language="ko")
    sub.status = SubscriptionStatus.UNSUBSCRIBED
    _, pending = add_contact(session, "pending@example.org", "press", language="ko")
    pending.status = SubscriptionStatus.PENDING
    add_contact(session, "other@example.org", "members", language="ja")
    session.flush()


@pytest.mark.db
def test_audience_languages(session: Session) -> None:
    populate(session)
    assert audience_languages(session, ["press"], "en") == {"en": 2, "ko": 1}
    assert audience_languages(session, ["press", "members"], "en") == {"en": 2, "ja": 1, "ko": 2}
    assert audience_languages(session, ["press"], "ko") == {"en": 1, "ko": 2}
    assert audience_languages(session, [], "en") == {}
    assert session.query(Subscription).count() == 9


@pytest.mark.db
def test_check_cli_reads_the_audience(
    session: Session, cli: Cli, settings: Settings, tmp_path: Path
) -> None:
    populate(session)
    session.commit()
    release = tmp_path / "r.en.md"
    write_release(tmp_path, "r.en.md", GOOD_FRONT + "\nlists: [press, members]")
    result = cli("release", "check", str(release))  # exit 0: warnings only
    assert "warning: 2 subscriber(s) read 'ko'" in result.output
    assert "warning: 1 subscriber(s) read 'ja'" in result.output
    result = cli("release", "check", str(release), "--list", "press", "--json")
    data = json.loads(result.stdout)
    assert data["lists"] == ["press"] and data["audience"] == {"en": 2, "ko": 1}
    assert {
        "level": "warning",
        "message": "1 subscriber(s) read 'ko' but the release has no "
        "ko variant (r.ko.md); they would get the en one",
    } in data["findings"]
    result = cli("release", "check", str(release), "--list", "nosuch", expect=1)
    assert "error: " in result.output and "no list named 'nosuch'" in result.output


def test_check_cli_exit_status(tmp_path: Path) -> None:
    cli = offline_cli(tmp_path, about={"en": "About us."})
    good = write_release(tmp_path, "good.md", GOOD_FRONT)
    result = cli("release", "check", str(good))
    assert result.stdout == ""
    assert "0 error(s), 0 warning(s) in good (en, dated March 1, 2024)" in result.stderr
    assert "the readers' languages were not checked" in result.stderr
    bad = write_release(tmp_path, "bad.md", GOOD_FRONT, "[x](/relative)\n")
    result = cli("release", "check", str(bad), expect=1)
    assert "error: " in result.stdout and "'/relative' is not an absolute URL" in result.stdout
    broken = write_release(tmp_path, "broken.md", "title: [")
    result = cli("release", "check", str(broken), expect=1)
    assert f"Error: {broken}:3: bad YAML" in result.output
