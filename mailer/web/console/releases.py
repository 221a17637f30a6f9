"""Releases in the console: the list (drafts, scheduled and sent), a new draft, the editor
(front matter as a form, each language's Markdown side by side), a live preview, `release
check` findings at their line, press-kit uploads, the versions and their diffs.

Everything is a call to mailer.releases.drafts (saves, versions, diffs, uploads, the check on
the materialised folder, the preview: `mailer release preview`'s layouts). The preview is email
HTML with its own inline styles, which the console's policy (`style-src 'self'`) would block in
an iframe's srcdoc, so each rendered language is kept
briefly in memory under a random key and shown in a sandboxed iframe (no scripts, no same
origin) from an address whose policy allows inline styles and nothing that runs.

Longer than 400 lines: the editor's pages share one form (the fields, the preview, the check
placed at its lines), and the frame's own headers must sit beside the frame they are for.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from flask import Response, abort, g, request, url_for

from mailer import translations
from mailer.errors import InvalidInputError, MailerError, NotFoundError, ReleaseError
from mailer.releases import draft_text, drafts
from mailer.releases.source import release_from_sources
from mailer.store.models import CampaignStatus, ReleaseDraft, ReleaseVersion, StaffRole
from mailer.web.console import bp
from mailer.web.console.base import _, actor, can, current, notice_then
from mailer.web.console.base import render as page
from mailer.web.pages import db, settings

MAX_FIELD = 2_000
MAX_BODY = 400_000
SCHEDULED = (CampaignStatus.SCHEDULED, CampaignStatus.SENDING, CampaignStatus.PAUSED)
SENT = (CampaignStatus.DONE, CampaignStatus.CANCELLED)
FOLDERS = ("", "photos", "documents")
# The rendered previews: a few per person typing, gone after a while (the iframe loads its
# page right after the fragment arrives). In memory: the console runs in one process.
_PREVIEWS: OrderedDict[str, tuple[str, int, dict[str, str]]] = OrderedDict()
_PREVIEWS_MAX = 64
_LOCK = threading.Lock()
FRAME_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data: https:; "
    "font-src 'self' data:; sandbox; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'self'"
)


@dataclass
class Form:
    """The editor's form as typed: shown back as it was when it cannot be saved."""

    based_on: int
    shared: dict[str, str] = field(default_factory=dict)
    fields: dict[str, dict[str, str]] = field(default_factory=dict)  # language -> field -> value
    bodies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, version: ReleaseVersion, default: str) -> Form:
        form = cls(based_on=version.number)
        for lang, text in version.sources.items():
            values = draft_text.form_values(text)
            form.fields[lang] = {k: values[k] for k in draft_text.LANGUAGE_FIELDS}
            form.bodies[lang] = draft_text.body_of(text)
            if lang == default:
                form.shared = {k: values[k] for k in draft_text.SHARED_FIELDS}
        return form

    @classmethod
    def posted(cls, version: ReleaseVersion) -> Form:
        raw = request.form.get("based_on", "")
        form = cls(based_on=int(raw) if raw.isdigit() and len(raw) < 10 else -1)
        form.shared = {k: request.form.get(k, "")[:MAX_FIELD] for k in draft_text.SHARED_FIELDS}
        for lang in version.sources:
            form.fields[lang] = {
                k: request.form.get(f"{lang}-{k}", "")[:MAX_FIELD]
                for k in draft_text.LANGUAGE_FIELDS
            }
            form.bodies[lang] = request.form.get(f"{lang}-body", "")[:MAX_BODY]
        return form

    def sources(self, version: ReleaseVersion, default: str) -> dict[str, str]:
        """Each language's file text rebuilt from the form, other keys kept."""
        out = {}
        for lang, text in version.sources.items():
            values = {**self.fields.get(lang, {}), **(self.shared if lang == default else {})}
            out[lang] = draft_text.rebuild(
                text, values, self.bodies.get(lang, ""), shared=lang == default
            )
        return out


def _draft(draft_id: int) -> tuple[ReleaseDraft, ReleaseVersion, str]:
    try:
        draft = drafts.get_draft(db(), draft_id)
        version = drafts.get_version(db(), draft_id)
    except NotFoundError:
        abort(404)
    default = drafts.default_language(dict(version.sources), version.plain_language, settings())
    return draft, version, default


def _languages(version: ReleaseVersion, default: str) -> list[str]:
    return [default, *sorted(lang for lang in version.sources if lang != default)]


def _placed(findings: list[drafts.Placed], version: ReleaseVersion) -> dict[str, Any]:
    """Findings by language and form field (front matter lines) or body line; the rest apart."""
    out: dict[str, Any] = {"general": [], "by_lang": {}}
    for f in findings:
        if f.language is None or f.language not in version.sources:
            out["general"].append(f)
            continue
        text = version.sources[f.language]
        slot = out["by_lang"].setdefault(f.language, {"fields": {}, "body": [], "other": []})
        key = draft_text.key_at(text, f.line) if f.line else None
        if key in ("title", "dateline", "summary", "contact", "image", *draft_text.SHARED_FIELDS):
            slot["fields"].setdefault(key, []).append(f)
        elif f.line and draft_text.body_line(text, f.line) is not None:
            excerpt = draft_text.line_text(text, f.line)
            slot["body"].append({"finding": f, "line": f.line, "excerpt": excerpt})
        else:
            slot["other"].append(f)
    return out


def _editor(
    draft: ReleaseDraft,
    version: ReleaseVersion,
    default: str,
    form: Form,
    *,
    status: int = 200,
    error: str = "",
    findings: list[drafts.Placed] | None = None,
    preview: dict[str, Any] | None = None,
) -> Response:
    if findings is None:
        try:
            findings = drafts.check(db(), settings(), draft.id)
        except MailerError as err:
            findings = [drafts.Placed("error", str(err))]
    return page(
        "release_edit.html",
        status=status,
        draft=draft,
        version=version,
        default=default,
        languages=_languages(version, default),
        form=form,
        error=error,
        placed=_placed(findings, version),
        errors=sum(1 for f in findings if f.level == "error"),
        warnings=sum(1 for f in findings if f.level == "warning"),
        files=sorted(version.files.items()),
        folders=FOLDERS,
        writable=can(StaffRole.EDITOR),
        preview=preview or _preview_of(draft, version, default, form),
        label=language_label,
        max_upload=settings().media_max_bytes // (1024 * 1024),
        send_url=_send_url(draft.id),
    )


def _send_url(draft_id: int) -> str | None:
    """The draft's test send and plan page (mailer/web/console/sending.py), for editors."""
    if not can(StaffRole.EDITOR):
        return None
    return url_for("console.send_plan", draft_id=draft_id)


# --- the list and a new draft -----------------------------------------------------------------


@bp.get("/releases")
def releases() -> Response:
    rows = drafts.list_drafts(db(), settings())
    scheduled = [(r, c) for r in rows for c in r.campaigns if c.status in SCHEDULED]
    sent = [(r, c) for r in rows for c in r.campaigns if c.status in SENT]
    return page("releases.html", active="releases", rows=rows, scheduled=scheduled, sent=sent)


@bp.get("/releases/new")
def release_new() -> Response:
    return page("release_new.html", active="releases", values={}, error="", **_choices())


def _choices() -> dict[str, Any]:
    s = settings()
    offered = list(dict.fromkeys([s.default_language, *s.languages]))
    return {"offered": offered, "label": language_label}


@bp.post("/releases/new")
def release_create() -> Response:
    slug = request.form.get("slug", "")[:200].strip()
    title = " ".join(request.form.get("title", "")[:MAX_FIELD].split())
    offered = _choices()["offered"]
    chosen = [lang for lang in offered if lang in request.form.getlist("language")]
    values = {"slug": slug, "title": title, "languages": chosen}
    error = ""
    if not title:
        error = _("Give the release a title.")
    elif not chosen:
        error = _("Choose at least one language.")
    if not error:
        sources = {lang: draft_text.skeleton(title, lang) for lang in chosen}
        try:
            draft = drafts.create_draft(db(), settings(), slug, sources, author=actor())
        except (InvalidInputError, ReleaseError) as err:
            error = str(err)
        else:
            return notice_then(
                "console.release_edit",
                _("Draft %(name)s created.", name=draft.slug),
                draft_id=draft.id,
            )
    return page(
        "release_new.html",
        status=422,
        active="releases",
        values=values,
        error=error,
        **_choices(),
    )


# --- the editor --------------------------------------------------------------------------------


@bp.get("/releases/<int:draft_id>")
def release_edit(draft_id: int) -> Response:
    draft, version, default = _draft(draft_id)
    return _editor(draft, version, default, Form.of(version, default))


@bp.post("/releases/<int:draft_id>")
def release_save(draft_id: int) -> Response:
    draft, version, default = _draft(draft_id)
    form = Form.posted(version)
    try:
        saved = drafts.save_version(
            db(),
            settings(),
            draft_id,
            form.sources(version, default),
            based_on=form.based_on,
            author=actor(),
        )
    except drafts.StaleVersionError as err:
        return _editor(draft, version, default, form, status=409, error=str(err))
    except (InvalidInputError, ReleaseError) as err:
        return _editor(draft, version, default, form, status=422, error=str(err))
    if saved.number == form.based_on:
        message = _("Nothing changed since version %(number)s.", number=saved.number)
    else:
        message = _("Saved as version %(number)s.", number=saved.number)
    return notice_then("console.release_edit", message, draft_id=draft_id)


# --- the live preview ---------------------------------------------------------------------------


def _preview_of(
    draft: ReleaseDraft, version: ReleaseVersion, default: str, form: Form
) -> dict[str, Any]:
    """Every language rendered from the form as typed (what `release preview` shows, its CSS
    left in the layout's <style> block: mailer.releases.drafts.preview_html)."""
    width = "phone" if request.values.get("width") == "phone" else "desktop"
    dark = request.values.get("dark") == "1"
    shown: dict[str, Any] = {"width": width, "dark": dark, "frames": [], "error": ""}
    try:
        sources = form.sources(version, default)
        release = release_from_sources(draft.slug, sources, default)
        pages = {
            lang: drafts.preview_html(release, lang, settings())
            for lang in _languages(version, default)
        }
    except MailerError as err:
        shown["error"] = str(err)
        return shown
    key = _keep(pages, draft.id)
    for lang in pages:
        src = url_for(
            "console.release_preview_frame",
            draft_id=draft.id,
            key=key,
            lang=lang,
            dark="1" if dark else "0",
        )
        shown["frames"].append({"lang": lang, "src": src})
    return shown


def _owner() -> str:
    found = current()
    return found.session.id if found is not None else ""


def _keep(pages: dict[str, str], draft_id: int) -> str:
    key = secrets.token_urlsafe(18)
    with _LOCK:
        _PREVIEWS[key] = (_owner(), draft_id, pages)
        while len(_PREVIEWS) > _PREVIEWS_MAX:
            _PREVIEWS.popitem(last=False)
    return key


@bp.post("/releases/<int:draft_id>/preview")
def release_preview(draft_id: int) -> Response:
    draft, version, default = _draft(draft_id)
    form = Form.posted(version)
    shown = _preview_of(draft, version, default, form)
    if request.headers.get("HX-Request") == "true":
        return page("release_preview.html", preview=shown, draft=draft, label=language_label)
    return _editor(draft, version, default, form, preview=shown)


@bp.get("/releases/<int:draft_id>/preview/<key>/<lang>")
def release_preview_frame(draft_id: int, key: str, lang: str) -> Response:
    with _LOCK:
        kept = _PREVIEWS.get(key)
    if kept is None or kept[0] != _owner() or kept[1] != draft_id or lang not in kept[2]:
        abort(404)
    html = kept[2][lang]
    if request.args.get("dark") == "1":
        # The email's own dark rules, applied whatever the reader's setting: what a mail app
        # in dark mode shows. Only the media query is changed; the email is otherwise as sent.
        html = html.replace("@media (prefers-color-scheme: dark)", "@media all")
    g.release_frame = True
    return Response(html, mimetype="text/html")


@bp.after_app_request
def _frame_headers(response: Response) -> Response:
    # Registered before the app's own after_request (create_app), so it runs after it and
    # replaces the console's policy for the preview frame only: inline styles (the email's),
    # no scripts at all (`sandbox`), framed by the console alone.
    if g.get("release_frame"):
        response.headers["Content-Security-Policy"] = FRAME_POLICY
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
    elif (request.endpoint or "").startswith("console.release") and response.mimetype == (
        "text/html"
    ):
        # The editor's pages frame the preview (this origin's frames only, nothing else).
        policy = response.headers.get("Content-Security-Policy", "")
        if policy and "frame-src" not in policy:
            response.headers["Content-Security-Policy"] = policy + "; frame-src 'self'"
    return response


# --- uploads ---------------------------------------------------------------------------------


@bp.post("/releases/<int:draft_id>/files")
def release_upload(draft_id: int) -> Response:
    draft, version, default = _draft(draft_id)
    upload = request.files.get("file")
    folder = request.form.get("folder", "")
    raw = request.form.get("based_on", "")
    based_on = int(raw) if raw.isdigit() and len(raw) < 10 else -1
    try:
        if upload is None or not upload.filename:
            raise InvalidInputError(_("Choose a file to upload."))
        if folder not in FOLDERS:
            raise InvalidInputError(_("Choose one of the folders offered."))
        _saved, rel = drafts.upload(
            db(),
            settings(),
            draft_id,
            upload.filename,
            upload.stream,
            based_on=based_on,
            author=actor(),
            folder=folder,
        )
    except MailerError as err:
        return _editor(
            draft, version, default, Form.of(version, default), status=422, error=str(err)
        )
    return notice_then(
        "console.release_edit",
        _("%(file)s uploaded: link it as %(file)s in the text.", file=rel),
        draft_id=draft_id,
    )


@bp.post("/releases/<int:draft_id>/files/remove")
def release_file_remove(draft_id: int) -> Response:
    draft, version, default = _draft(draft_id)
    rel = request.form.get("file", "")[:400]
    raw = request.form.get("based_on", "")
    try:
        drafts.remove_file(
            db(),
            settings(),
            draft_id,
            rel,
            based_on=int(raw) if raw.isdigit() and len(raw) < 10 else -1,
            author=actor(),
        )
    except MailerError as err:
        return _editor(
            draft, version, default, Form.of(version, default), status=422, error=str(err)
        )
    return notice_then("console.release_edit", _("%(file)s removed.", file=rel), draft_id=draft_id)


# --- versions -----------------------------------------------------------------------------


@bp.get("/releases/<int:draft_id>/versions")
def release_versions(draft_id: int) -> Response:
    draft, _version, _default = _draft(draft_id)
    return page(
        "release_versions.html",
        active="releases",
        draft=draft,
        versions=drafts.versions(db(), draft_id),
    )


def _number(name: str, fallback: int) -> int:
    raw = request.args.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) < 10 else fallback


@bp.get("/releases/<int:draft_id>/diff")
def release_diff(draft_id: int) -> Response:
    draft, version, _default = _draft(draft_id)
    new = _number("to", version.number)
    old = _number("from", max(1, new - 1))
    try:
        parts = drafts.diff(db(), draft_id, old, new)
    except NotFoundError:
        abort(404)
    return page(
        "release_diff.html",
        active="releases",
        draft=draft,
        old=old,
        new=new,
        parts=parts,
        numbers=[v.number for v in drafts.versions(db(), draft_id)],
    )


def language_label(lang: str) -> str:
    """A language as the console names it in any page language: English, 한국어, or its tag."""
    return translations.NAMES.get(lang, lang)
