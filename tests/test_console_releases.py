"""The console's release pages: the list, a new draft, the editor (a save is a version; a stale
one is refused), the live preview (what `release preview` renders, per language, in a
sandboxed frame), `release check` findings at their line, uploads, versions and diffs, roles."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from werkzeug.test import TestResponse

from mailer.releases import drafts, render
from mailer.releases.source import release_from_sources
from mailer.staff.roles import allows
from mailer.store.db import session_scope
from mailer.store.models import ReleaseDraft, StaffRole, StaffUser
from mailer.web.console import access
from tests.support.console import (
    XSS,
    Console,
    csrf_of,
    hostile_world,
    inline_code,
    methods,
    need,
    routes,
    unescaped,
)
from tests.support.media import image_bytes

pytestmark = pytest.mark.db

EN = (
    "---\ntitle: Budget day\ndate: 2026-12-01\nsubject: 'Budget: what changes'\n---\n\n"
    "The council passed the budget.\n\nSee [the figures](http://example.org/figures).\n"
)
KO = "---\ntitle: 예산의 날\n---\n\n의회가 예산을 통과시켰습니다.\n"


def _draft(console: Console) -> int:
    with session_scope(console.settings) as s:
        draft = drafts.create_draft(
            s, console.settings, "budget", {"en": EN, "ko": KO}, author="user:editor@x"
        )
        return draft.id


def _words(html: str) -> str:
    return " ".join(lxml.html.document_fromstring(html).body.text_content().split())


def _tree(response: TestResponse) -> Any:
    return lxml.html.fromstring(response.text)


def _form(page: str) -> dict[str, Any]:
    """The editor's fields as the page holds them (what a browser would post)."""
    tree = lxml.html.fromstring(page)
    form = tree.get_element_by_id("rel-form")
    data: dict[str, Any] = {}
    for el in form.xpath(".//input|.//textarea"):
        name, kind = el.get("name"), el.get("type")
        if not name or (kind == "radio" and el.get("checked") is None):
            continue
        if kind == "checkbox" and el.get("checked") is None:
            continue
        data[name] = el.text or "" if el.tag == "textarea" else el.get("value", "")
    return data


def _use_korean(console: Console, email: str) -> None:
    with session_scope(console.settings) as s:
        user = s.query(StaffUser).filter_by(email=email).one()
        user.language = "ko"


@pytest.mark.parametrize("language", ["en", "ko"])
def test_pages_in_both_languages(console: Console, language: str) -> None:
    draft_id = _draft(console)
    client = console.signed_in(StaffRole.EDITOR)
    if language == "ko":
        _use_korean(console, "editor@staff.example.org")
    for path in (
        "/admin/releases",
        "/admin/releases/new",
        f"/admin/releases/{draft_id}",
        f"/admin/releases/{draft_id}/versions",
        f"/admin/releases/{draft_id}/diff",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert _tree(response).get("lang") == language
        assert inline_code(response.text) == []
        words = response.text
        if language == "ko":
            assert "Releases" not in _tree(response).xpath("string(//h1)"), path
            assert re.search("[가-힣]", words)
    listing = client.get("/admin/releases").text
    assert "Budget day" in listing and "budget" in listing


def test_new_draft_then_save_makes_a_version(console: Console) -> None:
    client = console.signed_in(StaffRole.EDITOR)
    response = console.post(
        client, "/admin/releases/new", {"slug": "a b", "title": "X", "language": ["en"]}
    )
    assert response.status_code == 422 and "release name" in response.text
    response = console.post(
        client,
        "/admin/releases/new",
        {"slug": "town-hall", "title": "Town hall", "language": ["en", "ko"]},
    )
    assert response.status_code == 303
    path = response.location
    page = client.get(path).text
    data = _form(page)
    assert data["en-title"] == "Town hall" and data["ko-title"] == "Town hall"
    data.update(
        {
            "ko-title": "타운홀 미팅",
            "en-body": "Join us on Friday.\r\n",
            "ko-body": "금요일에 오세요.\r\n",
            "en-summary": "A meeting.",
            "lists": "press",
            "en-contact_name": "Minji Seo",
        }
    )
    saved = client.post(path, data=data)
    assert saved.status_code == 303, saved.text[:2000]
    with session_scope(console.settings) as s:
        draft = s.query(ReleaseDraft).filter_by(slug="town-hall").one()
        version = drafts.get_version(s, draft.id)
        assert version.number == 2 and version.author == "user:editor@staff.example.org"
        assert "title: 타운홀 미팅" in version.sources["ko"]
        assert version.sources["en"].endswith("---\nJoin us on Friday.\n")
        assert "lists: [press]" in version.sources["en"]
        assert "lists" not in version.sources["ko"]
    kinds = [e.kind for e in console.events() if e.kind.startswith("release.")]
    assert kinds == ["release.draft_created", "release.draft_saved"]
    # The same form once more, based on version 1: someone else's save came first.
    data["ko-body"] = "다른 본문"
    stale = client.post(path, data=data)
    assert stale.status_code == 409
    assert "based on version 1" in stale.text
    # What was typed is still on the page, not lost.
    assert _form(stale.text)["ko-body"].strip() == "다른 본문"
    # A date the release cannot use: refused, naming the file and line.
    data.update(based_on="2", date="2026-13-45")
    bad = client.post(path, data=data)
    assert bad.status_code == 422 and "town-hall.en.md:" in bad.text and "date" in bad.text


def test_preview_renders_each_language_in_a_sandboxed_frame(console: Console) -> None:
    draft_id = _draft(console)
    client = console.signed_in(StaffRole.VIEWER)
    page = client.get(f"/admin/releases/{draft_id}").text
    data = _form(page)
    data["ko-body"] = "새로 쓴 본문입니다."
    response = client.post(
        f"/admin/releases/{draft_id}/preview", data=data, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    frames = _tree(response).xpath("//iframe")
    assert [f.get("data-lang") for f in frames] == ["en", "ko"]
    assert all(f.get("sandbox") == "" for f in frames)
    sources = {"en": EN, "ko": KO.replace("의회가 예산을 통과시켰습니다.", "새로 쓴 본문입니다.")}
    release = release_from_sources("budget", sources, "en")
    for frame in frames:
        shown = client.get(frame.get("src"))
        assert shown.status_code == 200
        lang = frame.get("data-lang")
        assert shown.text == drafts.preview_html(release, lang, console.settings)
        # What `release preview` shows, word for word (it also inlines the CSS).
        full = render.preview(release, lang, console.settings)
        assert _words(shown.text) == _words(full)
        policy = shown.headers["Content-Security-Policy"]
        assert "sandbox" in policy and "script-src" not in policy
        assert (
            "frame-ancestors 'self'" in policy and shown.headers["X-Frame-Options"] == "SAMEORIGIN"
        )
    assert "새로 쓴 본문입니다." in client.get(frames[1].get("src")).text
    # Dark mode: the email's dark rules apply whatever the browser's setting.
    dark = client.get(frames[0].get("src").replace("dark=0", "dark=1")).text
    assert "@media all" in dark and "prefers-color-scheme: dark" not in dark
    # Phone width.
    data["width"] = "phone"
    phone = client.post(
        f"/admin/releases/{draft_id}/preview", data=data, headers={"HX-Request": "true"}
    )
    assert {f.get("width") for f in _tree(phone).xpath("//iframe")} == {"375"}
    # Another signed-in person cannot open this person's preview.
    other = console.signed_in(StaffRole.ADMIN)
    assert other.get(frames[0].get("src")).status_code == 404
    # A broken front matter: the error in place of the preview, nothing raised.
    data["en-title"] = ""
    broken = client.post(
        f"/admin/releases/{draft_id}/preview", data=data, headers={"HX-Request": "true"}
    )
    assert broken.status_code == 200 and "title: missing" in broken.text
    # The console page itself keeps its strict policy.
    editor = client.get(f"/admin/releases/{draft_id}")
    assert "script-src 'self'" in editor.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in editor.headers["Content-Security-Policy"]


def test_check_findings_are_shown_at_their_line(console: Console) -> None:
    draft_id = _draft(console)
    client = console.signed_in(StaffRole.EDITOR)
    tree = _tree(client.get(f"/admin/releases/{draft_id}"))
    findings = tree.get_element_by_id("en-body-findings")
    text = " ".join(findings.text_content().split())
    # The plain-http link is on line 9 of budget.en.md: said under the English body, with it.
    assert "Line 9" in text and "not https" in text and "[the figures]" in text
    # A setting's finding is no line of any file: shown in the check's summary.
    summary = " ".join(tree.xpath("string(//section[contains(@class, 'rel-check')])").split())
    assert "about has no 'ko' text" in summary


def test_uploads(console: Console) -> None:
    draft_id = _draft(console)
    client = console.signed_in(StaffRole.EDITOR)
    csrf = csrf_of(client.get(f"/admin/releases/{draft_id}").text)

    def send(name: str, data: bytes, based_on: int) -> TestResponse:
        return client.post(
            f"/admin/releases/{draft_id}/files",
            data={
                "csrf": csrf,
                "based_on": str(based_on),
                "folder": "photos",
                "file": (io.BytesIO(data), name),
            },
            content_type="multipart/form-data",
        )

    ok = send("../../crowd.png", image_bytes(40, 30, "PNG"), 1)
    assert ok.status_code == 303
    page = client.get(f"/admin/releases/{draft_id}").text
    assert "photos/crowd.png" in page
    bad = send("x.png", b"<html><script>alert(1)</script></html>", 2)
    assert bad.status_code == 422 and "HTML" in bad.text
    big = send("big.pdf", b"%PDF-" + b"0" * (console.settings.media_max_bytes + 10), 2)
    assert big.status_code in (413, 422)
    with session_scope(console.settings) as s:
        assert dict(drafts.get_version(s, draft_id).files).keys() == {"photos/crowd.png"}


def test_versions_and_diff(console: Console) -> None:
    draft_id = _draft(console)
    with session_scope(console.settings) as s:
        drafts.save_version(
            s,
            console.settings,
            draft_id,
            {"en": EN.replace("Budget day", "Budget night"), "ko": KO},
            based_on=1,
            author="user:b@x",
        )
    client = console.signed_in(StaffRole.VIEWER)
    versions = client.get(f"/admin/releases/{draft_id}/versions").text
    assert "b@x" in versions and "Changes from version 1" in versions
    diff = _tree(client.get(f"/admin/releases/{draft_id}/diff?from=1&to=2"))
    assert [" ".join(x.text_content().split()) for x in diff.xpath("//del")] == [
        "-title: Budget day"
    ]
    assert [x.text_content() for x in diff.xpath("//ins")] == ["+title: Budget night"]
    assert client.get(f"/admin/releases/{draft_id}/diff?from=1&to=9").status_code == 404


def test_roles(console: Console) -> None:
    draft_id = _draft(console)
    viewer = console.signed_in(StaffRole.VIEWER)
    page = viewer.get(f"/admin/releases/{draft_id}")
    assert page.status_code == 200
    tree = _tree(page)
    assert tree.get_element_by_id("en-body").get("readonly") is not None
    assert not tree.xpath("//form[contains(@action, '/files')]")
    data = _form(page.text)
    for path in (
        f"/admin/releases/{draft_id}",
        f"/admin/releases/{draft_id}/files",
        f"/admin/releases/{draft_id}/files/remove",
        "/admin/releases/new",
    ):
        assert viewer.post(path, data=data).status_code == 403, path
    assert viewer.get("/admin/releases/new").status_code == 403
    signed_out = console.client()
    assert signed_out.get(f"/admin/releases/{draft_id}").status_code == 303
    with session_scope(console.settings) as s:
        assert drafts.get_draft(s, draft_id).current_version == 1
    assert console.client().get("/admin/releases/999").status_code == 303
    editor = console.signed_in(StaffRole.EDITOR)
    assert editor.get("/admin/releases/999").status_code == 404


def test_hostile_text_stays_text(console: Console) -> None:
    draft_id = _draft(console)
    client = console.signed_in(StaffRole.EDITOR)
    path = f"/admin/releases/{draft_id}"
    data = _form(client.get(path).text)
    payload = " ".join(XSS.values())
    data.update(
        {
            "en-title": XSS["close"],
            "en-dateline": XSS["attr"],
            "ko-summary": payload,
            "en-body": payload + "\n\n<script>alert(1)</script>\n",
            "ko-contact_name": XSS["img"],
        }
    )
    assert client.post(path, data=data).status_code == 303
    for page in (
        client.get(path).text,
        client.get(f"{path}/diff?from=1&to=2").text,
        client.get("/admin/releases").text,
    ):
        assert unescaped(page) == [] and inline_code(page) == []
    frames = _tree(
        client.post(
            f"{path}/preview", data=_form(client.get(path).text), headers={"HX-Request": "true"}
        )
    ).xpath("//iframe")
    for frame in frames:
        shown = client.get(frame.get("src")).text
        # The release's own words are data: raw HTML in the Markdown is shown as text.
        assert "<script>alert(" not in shown and "<svg onload" not in shown


def test_every_release_route_follows_the_access_table(console: Console, tmp_path: Path) -> None:
    """Each release route, each method, as each role, on the hostile world: what access.TABLE
    allows is served (no refusal, no server error), the rest is refused with 403."""
    world = hostile_world(console, tmp_path)
    mine = [r for r in routes(console.app) if r.endpoint.startswith("console.release")]
    assert {r.endpoint for r in mine} == {
        e for e in access.TABLE if e.startswith("console.release")
    }
    problems = []
    for rule in mine:
        required = need(rule)
        assert isinstance(required, StaffRole)
        for method in methods(rule):
            for role in (StaffRole.VIEWER, StaffRole.EDITOR, StaffRole.SENDER, StaffRole.ADMIN):
                client = console.session_client(world.actors[role])
                data = {} if method == "GET" else {"csrf": console.csrf(client)}
                response = client.open(world.path(rule), method=method, data=data)
                code = response.status_code
                if code >= 500 or (allows(role, required) == (code in (401, 403))):
                    problems.append(f"{method} {rule.rule} as {role.value}: {code}")
                page = response.get_data(as_text=True)
                if unescaped(page) or (response.mimetype == "text/html" and inline_code(page)):
                    problems.append(f"{method} {rule.rule} as {role.value}: unescaped markup")
    assert not problems, "\n".join(problems)
