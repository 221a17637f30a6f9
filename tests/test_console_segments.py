"""The console's segment pages: the saved segments with their counts, the builder's preview
(the same figures as `mailer segments preview`), save, edit and delete, each logged."""

from __future__ import annotations

import json
import re
from typing import Any

import lxml.html
import pytest
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from mailer.config import Settings
from mailer.contacts.contact import add_contact, edit_contact
from mailer.contacts.lists import create_list, remove_list
from mailer.contacts.segments import create_segment
from mailer.contacts.suppressions import suppress
from mailer.store.db import session_scope
from mailer.store.models import Contact, Event, Segment, StaffRole, SuppressionReason
from tests.support.cli import Cli
from tests.support.console import XSS, Console, inline_code, unescaped

pytestmark = pytest.mark.db

EDITOR = "editor@staff.example.org"
PRESS = [  # email, name, language, outlet, beat
    ("kim@example.com", "김민수", "ko", "Korea Daily", "politics"),
    ("park@example.org", "박서연", "ko-KR", "Korea Times", "elections"),
    ("lee@example.com", "이준호", "ko", "Korea Daily", "sports"),
    ("jane@example.net", "Jane O'Neil", "en", "Inquirer", "politics"),
    ("choi@example.net", "최지훈", "ko", "KBS America", "Politics"),
    ("ann@example.net", "Ann Lee", None, "WHYY", "elections"),
    ("bo@example.net", "Bo Kim", "en-US", "NJ.com", "politics"),
]
WHERE = ["beat in (politics, elections)", "not outlet = WHYY or language = ko"]


def _people(settings: Settings) -> None:
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        create_list(s, "news", "News")
        for email, name, language, outlet, beat in PRESS:
            add_contact(s, email, "press", name=name, language=language, organisation=outlet)
            edit_contact(s, email, set_attributes={"beat": beat})
        add_contact(s, "news.only@example.com", "news", language="ko")
        edit_contact(s, "news.only@example.com", set_attributes={"beat": "politics"})
        # Suppressed: counted apart, never in the audience (bo+tag covers bo's mailbox).
        suppress(s, "bo+old@example.net", SuppressionReason.UNSUBSCRIBE_ALL, "link")


def _form(lists: list[str], where: list[str], **extra: str) -> dict[str, Any]:
    return {"list": lists, "where": "\n".join(where), **extra}


def _unsafe(page: str) -> list[str]:
    """Markup a payload would have added: elements or handlers (the `onfocus=alert` marker is
    plain text once its quotes are escaped, so the handlers are read from the parsed page)."""
    return [m for m in unescaped(page) if m != "onfocus=alert"] + inline_code(page)


def _tree(response: TestResponse) -> Any:
    return lxml.html.fromstring(response.text)


def _words(node: Any) -> str:
    return " ".join(node.text_content().split())


def _preview(response: TestResponse) -> dict[str, Any]:
    """The figures of a preview as the page shows them."""
    tree = _tree(response)
    total = re.search(r"would mail: (\d+)", _words(tree))
    held = re.search(r"(\d+) more match but are suppressed", _words(tree))
    languages = {
        row.xpath("td")[0].text_content(): int(row.xpath("td")[1].text_content())
        for row in tree.xpath("//table[@class='seg-langs']/tbody/tr[count(td) = 2]")
    }
    sample = [
        td.text_content() for td in tree.xpath("//table[@class='seg-sample']//tbody/tr/td[1]")
    ]
    return {
        "contacts": int(total.group(1)) if total else None,
        "by_language": languages,
        "suppressed": int(held.group(1)) if held else 0,
        "first": sample,
    }


def _cli_preview(cli: Cli, name: str) -> dict[str, Any]:
    data = json.loads(cli("segments", "preview", name, "--json").output)
    return {
        "contacts": data["contacts"],
        "by_language": data["by_language"],
        "suppressed": data["suppressed"],
        "first": [row["email"] for row in data["first"]],
    }


def _events(settings: Settings, kind: str) -> list[tuple[str, dict[str, Any]]]:
    with session_scope(settings) as s:
        query = select(Event).where(Event.kind == kind).order_by(Event.id)
        return [(e.actor, dict(e.data)) for e in s.scalars(query)]


# --- preview: the CLI's figures ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("lists", "where"),
    [
        (["press"], WHERE),
        (["press", "news"], ["beat = politics"]),
        (["press"], []),
        (["news"], ["language = en"]),
    ],
)
def test_the_preview_counts_what_segments_preview_counts(
    console: Console, cli: Cli, settings: Settings, lists: list[str], where: list[str]
) -> None:
    _people(settings)
    cli(
        "segments",
        "create",
        "probe",
        *[a for slug in lists for a in ("--list", slug)],
        *[a for w in where for a in ("--where", w)],
    )
    expected = _cli_preview(cli, "probe")
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    # htmx's live preview (the fragment), the plain "Preview" button, the saved segment's page.
    live = console.post(
        editor, "/admin/segments/preview", _form(lists, where), headers={"HX-Request": "true"}
    )
    assert live.status_code == 200 and "<html" not in live.text
    plain = console.post(editor, "/admin/segments/preview", _form(lists, where))
    assert plain.status_code == 200 and "<html" in plain.text
    with session_scope(settings) as s:
        seg_id = s.scalar(select(Segment.id).where(Segment.name == "probe"))
    saved = editor.get(f"/admin/segments/{seg_id}")
    for response in (live, plain, saved):
        assert _preview(response) == expected
    # And the list of segments counts as `segments show` does.
    shown = json.loads(cli("segments", "show", "probe", "--json").output)
    row = _tree(editor.get("/admin/segments")).xpath("//tbody/tr[th/a[text()='probe']]")[0]
    assert row.xpath("td[@class='num']")[0].text_content().strip() == str(shown["contacts"])


def test_the_compared_figures_are_not_trivial(console: Console, settings: Settings) -> None:
    # Several languages (ko-KR counted as ko), a suppressed contact held apart, a sample.
    _people(settings)
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    found = _preview(console.post(editor, "/admin/segments/preview", _form(["press"], WHERE)))
    assert found == {
        "contacts": 4,
        "by_language": {"en": 1, "ko": 3},
        "suppressed": 1,
        "first": ["choi@example.net", "jane@example.net", "kim@example.com", "park@example.org"],
    }


# --- save, edit, delete --------------------------------------------------------------------------


def test_save_edit_and_delete_are_logged_with_the_user(
    console: Console, cli: Cli, settings: Settings
) -> None:
    _people(settings)
    cli(
        "segments",
        "create",
        "by-cli",
        "--list",
        "press",
        *[a for w in WHERE for a in ("--where", w)],
    )
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    saved = console.post(
        editor,
        "/admin/segments/new",
        _form(["press"], ["", *WHERE, "  "], name="ko-politics", description="Korean desks "),
    )
    assert saved.status_code == 303, saved.text
    with session_scope(settings) as s:
        seg = s.scalars(select(Segment).where(Segment.name == "ko-politics")).one()
        assert (seg.lists, seg.expressions, seg.description) == (["press"], WHERE, "Korean desks")
        seg_id = seg.id
    assert saved.headers["Location"].endswith(f"/admin/segments/{seg_id}")
    (cli_actor, by_cli), (actor, by_console) = _events(settings, "segment.create")
    assert (cli_actor, actor) == ("cli", f"user:{EDITOR}")
    assert {**by_cli, "segment": "ko-politics"} == by_console
    assert "Segment ko-politics saved." in _words(_tree(editor.get(saved.headers["Location"])))

    # The same name again is refused, naming it.
    again = console.post(editor, "/admin/segments/new", _form(["press"], [], name="ko-politics"))
    assert again.status_code == 422
    assert "A segment named ko-politics already exists." in _words(_tree(again))

    changed = console.post(
        editor,
        f"/admin/segments/{seg_id}",
        _form(["press", "news"], ["language = ko"], name="ko-all", description=""),
    )
    assert changed.status_code == 303, changed.text
    with session_scope(settings) as s:
        updated = s.get(Segment, seg_id)
        assert updated is not None
        assert (updated.name, updated.lists, updated.expressions) == (
            "ko-all",
            ["press", "news"],
            ["language = ko"],
        )
    assert _events(settings, "segment.update") == [
        (
            f"user:{EDITOR}",
            {
                "segment": "ko-all",
                "lists": ["press", "news"],
                "expressions": ["language = ko"],
                "renamed_from": "ko-politics",
            },
        )
    ]
    # The CLI sends to it under its new name.
    assert json.loads(cli("segments", "show", "ko-all", "--json").output)["contacts"] == 5

    confirm = editor.get(f"/admin/segments/{seg_id}/delete")
    assert confirm.status_code == 200 and "Delete the segment ko-all?" in _words(_tree(confirm))
    deleted = console.post(editor, f"/admin/segments/{seg_id}/delete")
    assert deleted.status_code == 303
    with session_scope(settings) as s:
        assert s.get(Segment, seg_id) is None
    assert _events(settings, "segment.remove") == [(f"user:{EDITOR}", {"segment": "ko-all"})]
    assert console.post(editor, f"/admin/segments/{seg_id}/delete").status_code == 404


def test_an_edit_with_errors_changes_nothing(console: Console, settings: Settings) -> None:
    _people(settings)
    with session_scope(settings) as s:
        seg_id = create_segment(s, "keep", ["press"], ["beat = politics"]).id
        create_segment(s, "other", ["news"], [])
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    for form, shown in [
        (
            _form(["press"], ["beat = sports"], name="other"),
            "A segment named other already exists.",
        ),
        (_form(["press"], ["beat = sports"], name="bad name!"), "segment name 'bad name!'"),
        (_form([], ["beat = sports"], name="keep"), "Choose at least one list"),
        (_form(["press"], ["beat =="], name="keep"), "Condition on line 1"),
        (_form(["nope"], [], name="keep"), "no list named 'nope'"),
    ]:
        response = console.post(editor, f"/admin/segments/{seg_id}", form)
        assert response.status_code == 422, form
        assert shown in _words(_tree(response)), (form, _words(_tree(response)))
    with session_scope(settings) as s:
        seg = s.get(Segment, seg_id)
        assert seg is not None and (seg.name, seg.expressions) == ("keep", ["beat = politics"])
    assert _events(settings, "segment.update") == []


# --- errors in the conditions -------------------------------------------------------------------


def test_a_parse_error_shows_the_expression_its_line_and_position(
    console: Console, settings: Settings
) -> None:
    _people(settings)
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    where = ["language = ko", "beat == x", "list = nowhere"]
    for headers, status in (({}, 422), ({"HX-Request": "true"}, 200)):
        response = console.post(
            editor, "/admin/segments/preview", _form(["press"], where), headers=headers
        )
        assert response.status_code == status
        words = _words(_tree(response))
        assert "Condition on line 2, at character 7: expected a value after =, found '='" in words
        caret = _tree(response).xpath("//pre[@class='seg-caret']")[0].text_content()
        assert caret == "beat == x\n      ^"
        assert "would mail:" not in words
    # An unknown list is found when compiling, and still placed on its line.
    response = console.post(editor, "/admin/segments/preview", _form(["press"], ["list = nowhere"]))
    assert "Condition on line 1, at character 6: no list 'nowhere'" in _words(_tree(response))
    saved = console.post(editor, "/admin/segments/new", _form(["press"], where, name="broken"))
    assert saved.status_code == 422
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Segment)) == 0


@pytest.mark.parametrize(
    "expression",
    [
        "name = x; DROP TABLE contact",
        "name = '' OR '1'='1'",
        'email = "a" ) OR (1=1',
        "name = x --",
        "name = x /* */",
        "1=1",
        "beat = politics; DELETE FROM contact",
        "attr.x = 1 UNION SELECT email FROM contact",
        "name = 'unterminated",
        "name = x\x00 or 1",
    ],
)
def test_sql_in_a_condition_is_an_error(
    console: Console, settings: Settings, expression: str
) -> None:
    _people(settings)
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    response = console.post(editor, "/admin/segments/preview", _form(["press"], [expression]))
    assert response.status_code == 422
    assert "Condition on line 1" in _words(_tree(response))
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == len(PRESS) + 1


@pytest.mark.parametrize(
    "expression",
    [
        'name = "x\'; DROP TABLE contact; --"',
        'attr."a\') OR 1=1 --" = y',
        'outlet ~ "%"',
        'name ~ "_"',
        'email = "\' OR 1=1 --"',
    ],
)
def test_sql_in_a_quoted_value_is_only_a_value(
    console: Console, settings: Settings, expression: str
) -> None:
    _people(settings)
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    response = console.post(editor, "/admin/segments/preview", _form(["press"], [expression]))
    assert response.status_code == 200, _words(_tree(response))
    assert _preview(response)["contacts"] == 0
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Contact)) == len(PRESS) + 1


# --- the pages ----------------------------------------------------------------------------------


def test_the_builder_works_with_and_without_javascript(
    console: Console, settings: Settings
) -> None:
    _people(settings)
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    page = editor.get("/admin/segments/new")
    assert page.status_code == 200
    tree = _tree(page)
    live = tree.xpath("//*[@hx-post='/admin/segments/preview']")[0]
    assert live.get("hx-target") == "#seg-preview" and "input" in live.get("hx-trigger")
    # The textarea and the list boxes are inside the element htmx watches.
    assert live.xpath(".//textarea[@name='where']") and live.xpath(".//input[@name='list']")
    plain = tree.xpath("//button[@formaction='/admin/segments/preview']")
    assert plain and tree.xpath("//form[@method='post'][@action='/admin/segments/new']")
    labels = {label.get("for") for label in tree.xpath("//label[@for]")}
    assert {"seg-name", "seg-description", "seg-where"} <= labels


def test_a_segment_whose_list_is_gone_is_listed_not_broken(
    console: Console, settings: Settings
) -> None:
    _people(settings)
    with session_scope(settings) as s:
        seg_id = create_segment(s, "news-ko", ["news"], ["language = ko"]).id
        remove_list(s, "news")
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    listed = editor.get("/admin/segments")
    assert listed.status_code == 200
    assert "Cannot be counted: no list named 'news'" in _words(_tree(listed))
    page = editor.get(f"/admin/segments/{seg_id}")
    assert page.status_code == 200
    assert _tree(page).xpath("//input[@name='list'][@value='news'][@checked]")
    assert "this list no longer exists" in _words(_tree(page))


@pytest.mark.parametrize("role", [StaffRole.VIEWER])
def test_viewers_may_not(console: Console, settings: Settings, role: StaffRole) -> None:
    _people(settings)
    with session_scope(settings) as s:
        seg_id = create_segment(s, "keep", ["press"], []).id
    viewer = console.signed_in(role)
    for path in (
        "/admin/segments",
        "/admin/segments/new",
        f"/admin/segments/{seg_id}",
        f"/admin/segments/{seg_id}/delete",
    ):
        assert viewer.get(path).status_code == 403, path
    for path, form in (
        ("/admin/segments/new", _form(["press"], [], name="nope")),
        ("/admin/segments/preview", _form(["press"], [])),
        (f"/admin/segments/{seg_id}", _form(["news"], [], name="changed")),
        (f"/admin/segments/{seg_id}/delete", {}),
    ):
        assert console.post(viewer, path, form).status_code == 403, path
    with session_scope(settings) as s:
        assert [(x.name, x.lists) for x in s.scalars(select(Segment))] == [("keep", ["press"])]
    assert "/admin/segments" not in viewer.get("/admin/").text


def test_stored_values_are_escaped(console: Console, settings: Settings) -> None:
    with session_scope(settings) as s:
        create_list(s, "xss", XSS["script"])
        for i, payload in enumerate(XSS.values()):
            add_contact(s, f"x{i}@example.org", "xss", name=payload, organisation=payload)
            edit_contact(s, f"x{i}@example.org", set_attributes={"beat": payload})
        seg_id = create_segment(
            s, "xss", ["xss"], [f"name ~ '{XSS['img']}' or has name"], description=XSS["close"]
        ).id
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    pages = [
        editor.get("/admin/segments"),
        editor.get(f"/admin/segments/{seg_id}"),
        editor.get(f"/admin/segments/{seg_id}/delete"),
        console.post(
            editor,
            "/admin/segments/preview",
            _form(["xss"], ["has name", f'name = "{XSS["svg"]}" or has outlet']),
            headers={"HX-Request": "true"},
        ),
        console.post(editor, "/admin/segments/preview", _form(["xss"], [XSS["attr"]])),
    ]
    for response in pages:
        assert response.status_code in (200, 422)
        assert not _unsafe(response.text), response.request.path
    assert XSS["script"] in _words(_tree(pages[1]))  # shown, as text


def test_in_korean(console: Console, settings: Settings) -> None:
    _people(settings)
    editor = console.signed_in(StaffRole.EDITOR, EDITOR)
    console.post(editor, "/admin/account/language", {"language": "ko"})
    words = _words(_tree(console.post(editor, "/admin/segments/preview", _form(["press"], WHERE))))
    assert "지금 발송하면 연락처 4명에게 메일이 갑니다." in words
    assert "Contacts a send would mail" not in words
