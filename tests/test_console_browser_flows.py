"""The console's people pages used as staff use them, in headless Chromium against `mailer serve`.

Each flow runs in English and in Korean: lists (create with a Korean name, edit), contacts
(search as you type through htmx, open, tag, unsubscribe through the confirmation page), import
(upload a CSV with Korean names, keep the guessed columns, dry run, apply) and the export
download, suppressions (add, lift through the confirmation page) and segments (live preview
count while typing conditions, save). After every step the page is checked at 375 px and
1280 px (axe-core, nothing sticking out sideways, no CSP refusal, a screenshot of each), and the
database is read through the library's models: the test fails if the page says something
happened that did not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import (
    Contact,
    ContactImport,
    ContactTag,
    Event,
    MailingList,
    Segment,
    StaffRole,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from mailer.translations import gettext
from tests.support.cli import Cli
from tests.support.console_browser import (
    Live,
    by,
    check_page,
    click_through,
    h1,
    mark_page,
    same_page,
    sign_in,
    wait_h1,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.db]

PASSWORD = "a quiet morning at the press office"
LANGS = pytest.mark.parametrize("lang", ["en", "ko"])


class Flow:
    """One signed-in admin in one language: the browser, the live console, its database."""

    def __init__(self, live: Live, driver: Any, folder: Path, lang: str, area: str) -> None:
        self.live, self.driver, self.lang = live, driver, lang
        self.folder, self.area, self.step = folder / "screenshots", area, 0
        self.email = f"admin.{lang}@press.example.org"
        self.actor = f"user:{self.email}"
        with session_scope(live.settings) as s:
            user, _token = accounts.add(s, self.email, StaffRole.ADMIN, language=lang)
            accounts.set_password(s, user, PASSWORD)
        sign_in(driver, live, self.email, PASSWORD)

    def t(self, message: str, **values: Any) -> str:
        return gettext(self.lang, message, **values)

    def open(self, path: str) -> None:
        self.driver.get(self.live.url + path)

    def check(self, what: str) -> None:
        """axe, overflow and CSP at both widths, screenshots named by language, area and step."""
        self.step += 1
        check_page(self.driver, self.folder, f"{self.lang}-flow-{self.area}-{self.step}-{what}")

    def notice(self) -> str:
        found = self.driver.execute_script(
            "var n = document.querySelector('.alert-ok[role=status]'); return n ? n.innerText : ''"
        )
        return str(found).strip()

    def read(self, query: Callable[[Session], Any]) -> Any:
        """`query` run in a session of its own: what the database holds now. Rows it returns
        are detached as loaded (the commit at the end would expire them)."""
        with session_scope(self.live.settings) as s:
            found = query(s)
            s.expunge_all()
            return found

    def events(self, kind: str) -> list[Event]:
        found = self.read(
            lambda s: s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)).all()
        )
        return list(found)


def _type(element: Any, text: str) -> None:
    """Type as a person does, one key at a time (htmx's input trigger sees each)."""
    for ch in text:
        element.send_keys(ch)


# --- lists ------------------------------------------------------------------------------------


@LANGS
def test_create_and_edit_a_list(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    f = Flow(console_live, chromium, tmp_path, lang, "lists")
    driver = f.driver
    f.open("/admin/lists")
    wait_h1(driver, f.t("Lists"))
    f.check("empty")

    # A slug the library refuses: the page says why, and nothing is created.
    by(driver, "#slug").send_keys("Seoul Desk!")
    by(driver, "#name").send_keys("Seoul press desk")
    click_through(driver, by(driver, "form[action$='/admin/lists'] button[type=submit]"))
    assert "Seoul Desk!" in by(driver, ".alert-error").text
    f.check("refused")
    assert f.read(lambda s: s.scalar(select(func.count()).select_from(MailingList))) == 0

    slug = f"seoul-{lang}"
    by(driver, "#slug").clear()
    by(driver, "#slug").send_keys(slug)
    by(driver, "#name_ko").send_keys("서울 기자단")
    by(driver, "#description").send_keys("보도자료와 취재 안내")
    click_through(driver, by(driver, "form[action$='/admin/lists'] button[type=submit]"))
    wait_h1(driver, "Seoul press desk")
    assert f.notice() == f.t("List %(slug)s created.", slug=slug)
    f.check("created")
    ml = f.read(lambda s: s.scalars(select(MailingList)).one())
    assert (ml.slug, ml.name, ml.names, ml.public) == (
        slug,
        "Seoul press desk",
        {"ko": "서울 기자단"},
        False,
    )
    assert ml.description == "보도자료와 취재 안내"
    [created] = f.events("list.create")
    assert (created.actor, created.list_id) == (f.actor, ml.id)

    click_through(driver, by(driver, f"a[href$='/admin/lists/{slug}/edit']"))
    wait_h1(driver, f.t("Edit the list %(slug)s", slug=slug))
    f.check("edit")
    by(driver, "#name_ko").clear()
    by(driver, "#name_ko").send_keys("서울 출입기자단")
    by(driver, "#public").click()
    click_through(driver, by(driver, "form.list-form button[type=submit]"))
    wait_h1(driver, "Seoul press desk")
    assert f.notice() == f.t("List %(slug)s saved.", slug=slug)
    f.check("saved")
    ml = f.read(lambda s: s.scalars(select(MailingList)).one())
    assert (ml.names, ml.public) == ({"ko": "서울 출입기자단"}, True)
    [edited] = f.events("list.edit")
    assert edited.actor == f.actor
    assert edited.data["public"] is True and edited.data["names"] == {"ko": "서울 출입기자단"}

    # The lists page shows the new name under the list, in its own language.
    f.open("/admin/lists")
    wait_h1(driver, f.t("Lists"))
    assert by(driver, ".list-sizes .local-name[lang=ko]").text == "서울 출입기자단"


# --- contacts ---------------------------------------------------------------------------------

REPORTERS = [
    ("minjun.kim@hankook.example.kr", "김민준", "한국일보", "ko"),
    ("minseo.kim@seoulnews.example.kr", "김민서", "서울신문", "ko"),
    ("seoyeon.lee@hankook.example.kr", "이서연", "한국일보", "ko"),
    ("dana.park@planet.example.com", "Dana Park", "Daily Planet", "en"),
    ("sam.jones@planet.example.com", "Sam Jones", "Daily Planet", "en"),
]


def _seed_press(f: Flow) -> None:
    with session_scope(f.live.settings) as s:
        create_list(s, "press", "Press releases", names={"ko": "보도자료"})
        create_list(s, "news", "Community newsletter", names={"ko": "소식지"})
        for email, name, outlet, language in REPORTERS:
            add_contact(s, email, "press", name=name, organisation=outlet, language=language)
        add_contact(s, "minjun.kim@hankook.example.kr", "news")


def _result_names(driver: Any) -> list[str]:
    names = driver.execute_script(
        "return Array.from(document.querySelectorAll('#contact-results tbody tr'))"
        ".map(function (r) { return r.cells[1].innerText.trim(); })"
    )
    return sorted(names)


@LANGS
def test_search_tag_and_unsubscribe_a_contact(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    f = Flow(console_live, chromium, tmp_path, lang, "contacts")
    driver = f.driver
    _seed_press(f)
    f.open("/admin/contacts")
    wait_h1(driver, f.t("Contacts"))
    assert len(_result_names(driver)) == len(REPORTERS)
    f.check("all")

    # Search as you type: htmx swaps the results in, the page itself stays (the mark is kept).
    mark_page(driver)
    box = by(driver, "#contact-q")
    _type(box, "김민")
    wait_until(driver, lambda d: _result_names(d) == ["김민서", "김민준"])
    _type(box, "준")
    wait_until(driver, lambda d: _result_names(d) == ["김민준"])
    assert same_page(driver), "the results came with a new page, not through htmx"
    assert "q=" in driver.current_url  # hx-push-url: the address can be shared and reloaded
    f.check("searched")

    link = by(driver, "#contact-results tbody a")
    click_through(driver, link)
    wait_h1(driver, "김민준")
    f.check("contact")
    contact_id = f.read(
        lambda s: s.scalar(select(Contact.id).where(Contact.email == REPORTERS[0][0]))
    )
    assert driver.current_url.endswith(f"/admin/contacts/{contact_id}")

    # Tag it.
    by(driver, "#contact-new-tag").send_keys("국회 출입")
    click_through(driver, by(driver, "form.contact-tag-form button[type=submit]"))
    wait_h1(driver, "김민준")
    assert f.notice() == f.t("Tagged: %(tags)s.", tags="국회 출입")
    assert by(driver, ".contact-tags .contact-tag").text == "국회 출입"
    f.check("tagged")
    tags = f.read(
        lambda s: s.scalars(select(ContactTag.tag).where(ContactTag.contact_id == contact_id)).all()
    )
    assert tags == ["국회 출입"]
    [tagged] = f.events("contact.tag")
    assert (tagged.actor, tagged.contact_id, tagged.data["added"]) == (
        f.actor,
        contact_id,
        ["국회 출입"],
    )

    # Unsubscribe it from one list: a confirmation page first, which changes nothing.
    click_through(driver, by(driver, "a[href*='/unsubscribe?list=press']"))
    wait_h1(
        driver,
        f.t("Unsubscribe %(email)s from %(list)s?", email=REPORTERS[0][0], list="press"),
    )
    f.check("unsubscribe-confirm")

    def status_on(slug: str) -> SubscriptionStatus:
        return f.read(  # type: ignore[no-any-return]
            lambda s: s.scalar(
                select(Subscription.status)
                .join(MailingList)
                .where(Subscription.contact_id == contact_id, MailingList.slug == slug)
            )
        )

    assert status_on("press") == SubscriptionStatus.SUBSCRIBED
    click_through(driver, by(driver, "form[action$='/unsubscribe'] button[type=submit]"))
    wait_h1(driver, "김민준")
    assert f.notice() == f.t("Unsubscribed from %(list)s.", list="press")
    f.check("unsubscribed")
    assert status_on("press") == SubscriptionStatus.UNSUBSCRIBED
    assert status_on("news") == SubscriptionStatus.SUBSCRIBED  # the other list is untouched
    [unsubscribed] = f.events("unsubscribe")
    assert (unsubscribed.actor, unsubscribed.contact_id, unsubscribed.data["via"]) == (
        f.actor,
        contact_id,
        "console",
    )
    # The page no longer offers to unsubscribe from that list; it still does for the other.
    assert not driver.find_elements("css selector", "a[href*='/unsubscribe?list=press']")
    assert driver.find_elements("css selector", "a[href*='/unsubscribe?list=news']")


# --- import and export ------------------------------------------------------------------------

CSV_ROWS = [
    "이메일,이름,언론사",
    "jiwoo.han@hankook.example.kr,한지우,한국일보",
    "haeun.jung@seoulnews.example.kr,정하은,서울신문",
    "not-an-address,최도윤,연합뉴스",
    "Jiwoo.Han@hankook.example.kr,한지우,한국일보",
    "yuna.choi@kbs.example.kr,최유나,KBS",
]


def _column_choices(driver: Any) -> list[str]:
    values = driver.execute_script(
        "return Array.from(document.querySelectorAll('table.import-columns select'))"
        ".map(function (s) { return s.value; })"
    )
    return list(values)


@LANGS
def test_import_a_csv_then_export(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    f = Flow(console_live, chromium, tmp_path, lang, "import")
    driver = f.driver
    with session_scope(f.live.settings) as s:
        create_list(s, "press", "Press releases", names={"ko": "보도자료"})
    sheet = tmp_path / "기자명단.csv"
    sheet.write_text("\n".join(CSV_ROWS) + "\n", encoding="utf-8")

    f.open("/admin/import")
    wait_h1(driver, f.t("Import contacts"))
    f.check("upload")
    by(driver, "#imp-file").send_keys(str(sheet))
    by(driver, "#imp-list option[value=press]").click()
    by(driver, "#imp-consent").send_keys("2026 미디어 키트를 요청한 기자")
    click_through(driver, by(driver, "form[action$='/admin/import'] button[type=submit]"))
    wait_h1(driver, f.t("Check the columns"))
    assert f.notice() == f.t("File uploaded. Check the columns below.")
    # The guess: 이메일 is the address, 이름 the name, 언론사 the outlet. Kept as guessed.
    assert _column_choices(driver) == ["email", "name", "organisation"]
    f.check("columns")

    def contacts() -> int:
        return int(f.read(lambda s: s.scalar(select(func.count()).select_from(Contact))))

    click_through(driver, by(driver, "form[action$='/check'] button[type=submit]"))
    # The dry run runs beside the request; its page follows it and shows the report at the end.
    wait_until(driver, lambda d: d.find_elements("css selector", "#count-rows"), timeout=30)
    wait_h1(driver, f.t("Dry run"))
    counts = {
        key: by(driver, f"#count-{key}").text
        for key in ("rows", "contacts_added", "invalid", "duplicates")
    }
    assert counts == {"rows": "5", "contacts_added": "3", "invalid": "1", "duplicates": "1"}
    assert "not-an-address" in by(driver, "table.import-rejected").text
    assert "한지우" in by(driver, "table.import-examples").text
    f.check("dry-run")
    assert contacts() == 0, "the dry run wrote contacts"

    by(driver, "form[action$='/apply'] input[name=confirm]").click()
    click_through(driver, by(driver, "form[action$='/apply'] button[type=submit]"))
    wait_until(driver, lambda d: h1(d) == f.t("Import done"), timeout=30)
    assert by(driver, "#count-contacts_added").text == "3"
    f.check("done")

    def imported(s: Session) -> list[tuple[str, str, str, str, str | None]]:
        rows = s.execute(
            select(
                Contact.email,
                Contact.name,
                Contact.organisation,
                Subscription.status,
                Subscription.consent_note,
            )
            .join(Subscription)
            .order_by(Contact.email)
        ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    rows = f.read(imported)
    assert [r[:4] for r in rows] == [
        ("haeun.jung@seoulnews.example.kr", "정하은", "서울신문", SubscriptionStatus.SUBSCRIBED),
        ("jiwoo.han@hankook.example.kr", "한지우", "한국일보", SubscriptionStatus.SUBSCRIBED),
        ("yuna.choi@kbs.example.kr", "최유나", "KBS", SubscriptionStatus.SUBSCRIBED),
    ]
    [run] = f.read(
        lambda s: [(i.filename, i.consent_source) for i in s.scalars(select(ContactImport))]
    )
    assert tuple(run) == ("기자명단.csv", "2026 미디어 키트를 요청한 기자")
    [logged] = f.events("contact.import")
    assert logged.actor == f.actor and logged.data["counts"]["contacts_added"] == 3

    # Export: the report links to it; the download is the CLI's export, byte for byte.
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    click_through(driver, by(driver, "a[href*='/admin/export']"))
    wait_h1(driver, f.t("Export contacts"))
    f.check("export")
    by(driver, "#exp-list option[value=press]").click()
    by(driver, "form[action$='/contacts.csv'] button[type=submit]").click()
    wait_until(
        driver,
        lambda d: [p for p in downloads.iterdir() if p.suffix == ".csv"],
        timeout=20,
    )
    [got] = [p for p in downloads.iterdir() if p.suffix == ".csv"]
    expected = tmp_path / "cli-export.csv"
    Cli(f.live.config)("contacts", "export", "--list", "press", "-o", str(expected))
    assert got.read_bytes() == expected.read_bytes()
    assert "한지우" in got.read_text(encoding="utf-8-sig")
    assert [e.actor for e in f.events("contact.export")][:1] == [f.actor]


# --- suppressions -----------------------------------------------------------------------------


@LANGS
def test_suppress_an_address_and_lift_it(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    f = Flow(console_live, chromium, tmp_path, lang, "suppressions")
    driver = f.driver
    address = "desk@yonhap.example.kr"
    f.open("/admin/suppressions")
    wait_h1(driver, f.t("Suppressions"))
    f.check("empty")

    by(driver, "#add-email").send_keys(address)
    by(driver, "#add-note").send_keys("전화로 수신 거부 요청")
    click_through(driver, by(driver, "form[method=post][action$='/admin/suppressions'] button"))
    wait_h1(driver, f.t("Suppressions"))
    assert f.notice() == f.t("%(email)s is suppressed: it will not be mailed again.", email=address)
    assert address in by(driver, "table.sup-table").text
    f.check("added")

    def suppressed() -> list[tuple[str, str, str]]:
        return list(
            f.read(
                lambda s: [
                    (r.email, r.reason.value, r.source) for r in s.scalars(select(Suppression))
                ]
            )
        )

    [(email, reason, source)] = suppressed()
    assert (email, reason) == (address, "manual") and "전화로 수신 거부 요청" in source
    assert [e.actor for e in f.events("suppress")] == [f.actor]

    click_through(driver, by(driver, "table.sup-table a.danger"))
    wait_h1(driver, f.t("Lift the suppression of %(email)s?", email=address))
    f.check("lift-confirm")
    assert suppressed(), "the confirmation page lifted it already"
    by(driver, "#note").send_keys("본인이 다시 구독을 원함")
    by(driver, "form[action$='/suppressions/remove'] input[name=confirm]").click()
    click_through(driver, by(driver, "form[action$='/suppressions/remove'] button.danger"))
    wait_h1(driver, f.t("Suppressions"))
    assert address in f.notice()
    f.check("lifted")
    assert suppressed() == []
    [lifted] = f.events("unsuppress")
    assert lifted.actor == f.actor


# --- segments ---------------------------------------------------------------------------------


def _preview_total(driver: Any) -> str:
    text = driver.execute_script(
        "var p = document.querySelector('#seg-preview .seg-total'); return p ? p.innerText : ''"
    )
    return str(text).strip()


@LANGS
def test_build_a_segment_with_the_live_preview(
    console_live: Live, chromium: Any, tmp_path: Path, lang: str
) -> None:
    f = Flow(console_live, chromium, tmp_path, lang, "segments")
    driver = f.driver
    _seed_press(f)
    with session_scope(f.live.settings) as s:
        for c in s.scalars(select(Contact)):
            c.beat = "politics" if c.email.startswith(("minjun", "dana")) else "culture"

    f.open("/admin/segments/new")
    wait_h1(driver, f.t("New segment"))
    f.check("new")
    mark_page(driver)
    by(driver, "#seg-name").send_keys(f"politics-{lang}")
    by(driver, "input[name=list][value=press]").click()
    where = by(driver, "#seg-where")
    _type(where, "language = ko")
    wait_until(
        driver, lambda d: _preview_total(d) == f.t("Contacts a send would mail: %(count)s", count=3)
    )
    # A condition that does not parse: the preview says where, nothing is saved.
    _type(where, "\nbeat ==")
    wait_until(driver, lambda d: d.find_elements("css selector", "#seg-preview .seg-errors"))
    f.check("error")
    for _ in "==":
        where.send_keys("\b")
    _type(where, "= politics")
    wait_until(
        driver, lambda d: _preview_total(d) == f.t("Contacts a send would mail: %(count)s", count=1)
    )
    assert "minjun.kim@hankook.example.kr" in by(driver, "table.seg-sample").text
    assert same_page(driver), "the preview came with a new page, not through htmx"
    f.check("preview")
    assert f.read(lambda s: s.scalar(select(func.count()).select_from(Segment))) == 0

    click_through(driver, by(driver, "form.seg-builder button.primary"))
    wait_h1(driver, f.t("Segment %(name)s", name=f"politics-{lang}"))
    assert f.notice() == f.t("Segment %(name)s saved.", name=f"politics-{lang}")
    f.check("saved")
    seg = f.read(lambda s: s.scalars(select(Segment)).one())
    assert (seg.name, seg.lists, seg.expressions) == (
        f"politics-{lang}",
        ["press"],
        ["language = ko", "beat = politics"],
    )
    [made] = f.events("segment.create")
    assert made.actor == f.actor
