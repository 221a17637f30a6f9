"""An outsider's and a low-role staff user's attacks on the console's releases, sending and
approval pages and on the /l/ and /o/ tracking routes: each test is one attack that must fail.

Roles, uploads with hostile names and disguised content, the preview frame's sandbox and who
may read a preview key, a send racing an edit saved after approval, and tokens altered or
forged for the redirect."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from sqlalchemy import select

from mailer.config import Settings
from mailer.delivery import handoff
from mailer.engagement.tokens import ClickSigner
from mailer.errors import InvalidInputError
from mailer.releases import drafts
from mailer.store.db import session_scope
from mailer.store.models import Campaign, Click, ReleaseDraft, StaffRole
from mailer.web import create_app
from tests.support.console import Console, csrf_of
from tests.support.console_desk import EDITOR, SENDER, SENDER2, make_desk, sample_sources
from tests.support.media import image_bytes
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.db

HOSTILE_BODY = (
    "---\ntitle: Budget day\ndate: 2026-12-01\nsubject: 'Budget'\n---\n\n"
    "<script>parent.document.title='owned'</script>\n\n"
    '<iframe src="/admin/users"></iframe>\n\n'
    '<div style="background:url(https://attacker.example/x.png)">css</div>\n\n'
    "[click](javascript:alert(1)) and [data](data:text/html,<script>alert(1)</script>)\n"
)


def _draft(console: Console, text: str = HOSTILE_BODY) -> int:
    with session_scope(console.settings) as s:
        return drafts.create_draft(
            s, console.settings, "budget", {"en": text}, author="user:someone@x"
        ).id


# --- the preview frame ---------------------------------------------------------------------


def _frame_src(page: str) -> str:
    tree = lxml.html.fromstring(page)
    [src] = [f.get("src") for f in tree.xpath("//iframe") if "/preview/" in (f.get("src") or "")]
    return str(src)


def test_preview_frame_runs_nothing_and_is_the_viewers_own(console: Console) -> None:
    draft_id = _draft(console)
    editor = console.signed_in(StaffRole.EDITOR)
    src = _frame_src(editor.get(f"/admin/releases/{draft_id}").text)
    frame = editor.get(src)
    assert frame.status_code == 200
    policy = frame.headers["Content-Security-Policy"]
    directives = {d.split()[0]: d for d in (p.strip() for p in policy.split(";")) if d}
    # Sandboxed without allow-scripts or allow-same-origin; no script source at all.
    assert directives["sandbox"] == "sandbox"
    assert directives["default-src"] == "default-src 'none'"
    assert "script-src" not in directives
    assert "frame-src" not in directives and "child-src" not in directives
    assert frame.headers.get("X-Content-Type-Options") == "nosniff"
    # Another staff user (even an admin) cannot read this preview with its key.
    admin = console.signed_in(StaffRole.ADMIN)
    assert admin.get(src).status_code == 404
    # Nor through another draft's address.
    other = src.replace(f"/releases/{draft_id}/", f"/releases/{draft_id + 1}/")
    assert editor.get(other).status_code == 404
    # A signed-out browser is sent to sign in, not given the page.
    assert console.client().get(src).status_code in (302, 303)


# --- uploads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../../../../evil.png",
        "/etc/evil.png",
        "..\\..\\evil.png",
        "evil\x00.png",
        "\u2025/evil.png",
        "\uff0e\uff0e/\uff0e\uff0e/evil.png",
        ".hidden.png",
        "..",
    ],
)
def test_upload_names_never_leave_the_release_folder(
    console: Console, tmp_path: Path, name: str
) -> None:
    draft_id = _draft(console, "---\ntitle: T\n---\n\nBody.\n")
    client = console.signed_in(StaffRole.EDITOR)
    csrf = csrf_of(client.get(f"/admin/releases/{draft_id}").text)
    response = client.post(
        f"/admin/releases/{draft_id}/files",
        data={
            "csrf": csrf,
            "based_on": "1",
            "folder": "photos",
            "file": (io.BytesIO(image_bytes(20, 20, "PNG")), name),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code in (303, 422), response.status_code
    with session_scope(console.settings) as s:
        files = dict(drafts.get_version(s, draft_id).files)
    for rel in files:
        assert drafts.check_relative(rel) == rel and rel.startswith("photos/"), rel
    # The folder field is not a way out either.
    bad = client.post(
        f"/admin/releases/{draft_id}/files",
        data={
            "csrf": csrf,
            "based_on": str(2 if files else 1),
            "folder": "../..",
            "file": (io.BytesIO(image_bytes(20, 20, "PNG")), "x.png"),
        },
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422
    # Materialised, every file sits inside the draft's own folder.
    with session_scope(console.settings) as s:
        path = drafts.materialise(s, console.settings, draft_id)
    root = path.parent.resolve()
    for found in Path(console.settings.base_dir).rglob("*evil*"):
        assert found.resolve().is_relative_to(root), found
    assert not (tmp_path.parent / "evil.png").exists()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("photo.png", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
        ("photo.svg", b'<?xml version="1.0"?><svg onload="alert(1)"/>'),
        ("brief.pdf", b"<!doctype html><script>alert(1)</script>"),
        ("photo.png", b"\xef\xbb\xbf <html><body onload=alert(1)>"),
        ("photo.gif", b"GIF89a<script>alert(1)</script>"),
    ],
)
def test_active_content_disguised_as_a_press_file_is_refused(
    console: Console, name: str, data: bytes
) -> None:
    draft_id = _draft(console, "---\ntitle: T\n---\n\nBody.\n")
    client = console.signed_in(StaffRole.EDITOR)
    csrf = csrf_of(client.get(f"/admin/releases/{draft_id}").text)
    response = client.post(
        f"/admin/releases/{draft_id}/files",
        data={"csrf": csrf, "based_on": "1", "folder": "", "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    with session_scope(console.settings) as s:
        assert dict(drafts.get_version(s, draft_id).files) == {}


# --- roles -------------------------------------------------------------------------------------


def test_viewer_changes_nothing_in_releases(console: Console) -> None:
    draft_id = _draft(console, "---\ntitle: T\n---\n\nBody.\n")
    viewer = console.signed_in(StaffRole.VIEWER)
    csrf = console.csrf(viewer)
    base = f"/admin/releases/{draft_id}"
    for path, data in (
        (base, {"based_on": "1", "en-body": "owned"}),
        (base + "/files/remove", {"based_on": "1", "file": "x.png"}),
        ("/admin/releases/new", {"slug": "mine", "title": "Mine", "language": "en"}),
        (base + "/approval/request", {}),
        (base + "/send", {"mode": "now"}),
    ):
        assert viewer.post(path, data={**data, "csrf": csrf}).status_code == 403, path
    upload = viewer.post(
        base + "/files",
        data={"csrf": csrf, "based_on": "1", "file": (io.BytesIO(image_bytes()), "x.png")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 403
    with session_scope(console.settings) as s:
        assert drafts.get_draft(s, draft_id).current_version == 1


def test_a_send_racing_an_edit_sends_only_the_approved_version(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Approved version 1 is sent; between the approval check and the plan, an editor saves
    version 2 and opens the editor (which writes version 2 into the draft's folder). The
    campaign must hold version 1's text, never the unapproved one."""
    desk = make_desk(settings, tmp_path, smtp, author=EDITOR, require_approval=True)
    path = f"/admin/releases/{desk.draft_id}"
    editor = desk.client(EDITOR)
    assert desk.post(editor, path + "/approval/request", {}).status_code == 303
    approver = desk.client(SENDER2)
    desk.post(approver, path + "/approval/decide", {"decision": "approve"})
    assert desk.events("release.approved")
    real = handoff.hand_off
    unapproved = "UNAPPROVED TEXT FROM THE EDITOR"

    def editor_meanwhile(*args: Any, **kw: Any) -> Any:
        with session_scope(desk.settings) as s:
            sources = sample_sources()
            sources["en"] = sources["en"].rstrip("\n") + f"\n\n{unapproved}\n"
            drafts.save_version(
                s, desk.settings, desk.draft_id, sources, based_on=1, author=f"user:{EDITOR}"
            )
        # The editor's page checks the new version, writing it into the draft's folder.
        with session_scope(desk.settings) as s:
            drafts.check(s, desk.settings, desk.draft_id)
        return real(*args, **kw)

    monkeypatch.setattr(handoff, "hand_off", editor_meanwhile)
    sender = desk.client(SENDER)
    response = desk.post(sender, path + "/send", {"mode": "now"})
    with session_scope(desk.settings) as s:
        sent = [
            source["source"]
            for c in s.scalars(select(Campaign))
            for source in c.release.variants.values()
        ]
    assert response.status_code == 303 and sent, response.status_code
    assert not any(unapproved in text for text in sent)
    # The send's own copy of the version is gone once the campaign is planned.
    assert not list(drafts.drafts_folder(desk.settings).glob(".send-*"))


# --- tracking ----------------------------------------------------------------------------------


def test_forged_tokens_are_404_and_cost_no_memory(settings: Settings) -> None:
    app = create_app(settings)
    client = app.test_client()
    state = app.config["MAILER_TRACK"]
    signer = ClickSigner(settings.secret_key)
    other = ClickSigner("another installation's key")
    good = signer.link_token(1, 1, "en", None)
    tokens = [
        "",
        "1",
        "1.1",
        good[:-1],
        good + "A",
        good.replace("1.1.", "01.1.", 1),
        good + ".5." + "A" * 12,  # a reader part stuck on an aggregate token
        signer.link_token(1, 1, "en", 5).rsplit(".", 2)[0],  # a reader part cut off
        other.link_token(1, 1, "en", 5),
        "9" * 5000,
        "1.1." + "A" * 12 + "%00",
        "javascript:alert(1)",
        "..%2F..%2Fadmin",
    ]
    for token in tokens:
        for method in ("GET", "HEAD"):
            response = client.open(f"/l/{token}", method=method)
            assert response.status_code == 404, (token, method)
            assert "Location" not in response.headers
    # A flood of made-up tokens queues nothing and keeps nothing.
    for i in range(3000):
        client.get(f"/l/{i + 1}.{i + 2}.{'B' * 12}")
        client.get(f"/o/{i + 1}.en.{i}.{'C' * 12}")
    assert state.recorder.queue == [] and state.links.rows == {} and not state.links.missing
    with session_scope(settings) as s:
        assert list(s.scalars(select(Click))) == []


def test_an_open_token_is_no_link_token(settings: Settings) -> None:
    """A genuine open token (signed for campaign.language.contact) read as /l/: the parts
    line up as CAMPAIGN.LINK.SIG only if the signatures were interchangeable."""
    app = create_app(settings)
    client = app.test_client()
    signer = ClickSigner(settings.secret_key)
    reader = signer.reader_part(3, "en", 7)  # ".7.SIG"
    # A reader part's signature reused as a link signature for link 7 of campaign 3.
    forged = f"3.7{reader[len('.7') :]}"
    assert re.fullmatch(r"3\.7\.[A-Za-z0-9_-]{12}", forged)
    assert client.get(f"/l/{forged}").status_code == 404
    assert client.get(f"/o/{signer.open_token(3, 'en', 7)[:-1]}A").status_code == 404


# --- import ----------------------------------------------------------------------------------


def test_import_reads_no_file_outside_the_folder_through_a_link(
    settings: Settings, tmp_path: Path
) -> None:
    """A release folder from elsewhere (a PR agency's zip) whose language file is a symbolic
    link to a file of the server (mailer.toml with its secret_key): that text must not become
    a draft every viewer reads."""
    secret = tmp_path / "outside" / "secret.md"
    secret.parent.mkdir()
    secret.write_text("---\ntitle: S\n---\n\nsecret_key = 'TOP-SECRET'\n", encoding="utf-8")
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "budget.md").write_text("---\ntitle: Budget\n---\n\nBody.\n", encoding="utf-8")
    (folder / "budget.ko.md").symlink_to(secret)
    with session_scope(settings) as s, pytest.raises(InvalidInputError, match="symbolic link"):
        drafts.import_release(s, settings, folder, author="cli")
    with session_scope(settings) as s:
        assert s.scalar(select(ReleaseDraft)) is None
