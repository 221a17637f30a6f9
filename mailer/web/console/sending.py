"""Sending a release from the console: test send, the plan, approval, send now or schedule.

Thin over the library, as `mailer send` is: the draft is written out as a release folder
(mailer.releases.drafts.materialise, in `_release`), and then the test send is
`send_release(tests=...)` (`send --test`), the plan is mailer.delivery.handoff.preview
(`send --dry-run`'s load_for_sending, build_dry_run and headline), and a send is
handoff.hand_off: planned as `send --at` plans it and carried out by a worker, never inside the
request. Approval is mailer.releases.approval. Editors test and ask for approval; senders
approve (never their own release) and send.

On SQLite every transaction takes the write lock (BEGIN IMMEDIATE), and the library's steps
open sessions of their own: the request's session is committed (`_release_lock`) before each of
them, or the two would wait on each other.

A little over 400 lines: the four steps of one page (test, plan, approval, send) share the
draft loading, the lock handling and the plan page they all come back to.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from flask import Response, abort, current_app, request

from mailer.config import Settings
from mailer.contacts.lists import all_lists
from mailer.delivery import handoff
from mailer.delivery.notices import OutgoingNotice
from mailer.delivery.planning import Plan
from mailer.delivery.send import send_release
from mailer.delivery.worker_thread import last_seen
from mailer.errors import MailerError, NotFoundError
from mailer.releases import approval, drafts
from mailer.releases.dates import format_when
from mailer.releases.embargo import organisation_zone
from mailer.staff import accounts
from mailer.staff import mail as staff_mail
from mailer.store import audit
from mailer.store.models import ReleaseDraft, StaffUser
from mailer.web.console import bp
from mailer.web.console.base import _, actor, lang, notice_then, render, user
from mailer.web.pages import db, settings

log = logging.getLogger(__name__)

MAX_LISTS = 50
MAX_FIELD = 200


# --- the draft, as the library reads releases -------------------------------------------------


def _release(draft_id: int) -> tuple[ReleaseDraft, int, Path]:
    """The draft, its current version and that version written out as a release folder."""
    try:
        draft = drafts.get_draft(db(), draft_id)
    except NotFoundError:
        abort(404)
    version = draft.current_version
    path = drafts.materialise(db(), settings(), draft_id, version=version)
    return draft, version, path


def _release_lock() -> None:
    """Commit the request's work so far: the library's steps open sessions of their own."""
    db().commit()


def _chosen_lists(values: list[str]) -> list[str]:
    """The lists ticked (at most MAX_LISTS, each as long as a slug may be); unknown ones are
    left to the plan, which names them."""
    return list(dict.fromkeys(v.strip()[:64] for v in values if v.strip()))[:MAX_LISTS]


def _local(message: str, path: Path) -> str:
    """A library message without the server's folders (the one the draft was written to, the
    one mailer.toml is in): staff know the release by its file names (NAME.LANG.md) and the
    settings by mailer.toml, and the server's paths are none of the page's."""
    for folder in (str(path.parent), str(settings().base_dir)):
        message = message.replace(folder + os.sep, "").replace(folder, "")
    return message


def _lines(message: str, path: Path) -> list[str]:
    """A multi-line library message (`release check` errors, one per line) as list items."""
    return [
        line.strip().removeprefix("- ")
        for line in _local(message, path).splitlines()
        if line.strip()
    ]


def _zone_name(s: Settings) -> str:
    return s.timezone or "UTC"


def _when(value: datetime | None) -> dict[str, str] | None:
    """A moment in the organisation's zone and in UTC, as the page writes them."""
    if value is None:
        return None
    s = settings()
    return {
        "local": format_when(value.astimezone(organisation_zone(s)), lang()),
        "utc": format_when(value.astimezone(UTC), lang()),
        "iso": value.astimezone(UTC).isoformat(),
    }


def _worker() -> dict[str, Any]:
    """Who carries out the sends started here: this server's worker or separate processes."""
    embedded = bool(current_app.config.get("MAILER_EMBEDDED_WORKER"))
    seen = None if embedded else last_seen(db())
    return {"embedded": embedded, "seen": _when(seen)}


def _active_users() -> list[StaffUser]:
    """Staff a test may go to: accounts in use (invitation accepted, not disabled)."""
    return [u for u in accounts.all_users(db()) if not u.disabled and u.password_hash]


def _excluded(plan: Plan) -> list[tuple[str, int]]:
    words = {
        "already received this release": _("already received this release"),
        "suppressed": _("suppressed"),
        "unsubscribed": _("unsubscribed"),
        "unconfirmed": _("not confirmed yet"),
        "without the tag": _("without the tag"),
        "outside the segment": _("outside the segment"),
        "needs SMTPUTF8": _("the address needs SMTPUTF8, which the server does not offer"),
    }
    return [(words.get(k, k), n) for k, n in plan.excluded.items() if n]


def _headline(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The CLI's labels (From, Reply-To, Subject [ko]) in the page's language."""
    out = []
    for label, value in rows:
        head, _sep, rest = label.partition(" ")
        word = {"From": _("From"), "Reply-To": _("Reply-To"), "Subject": _("Subject")}.get(
            head, head
        )
        if label.startswith("Reply-To") and value.startswith("(none"):
            value = _("(none: replies go to From)")
        out.append((f"{word} {rest}".strip(), value))
    return out


def _confirm_name(plan_lists: list[str]) -> str:
    """What a sender types to confirm a large send: the list's name (its slug), or the slugs
    of every list, comma-separated."""
    return ", ".join(plan_lists)


# --- the plan page ----------------------------------------------------------------------------


def _plan_page(draft_id: int, *, error: str = "", status: int = 200, **extra: Any) -> Response:
    draft, version, path = _release(draft_id)
    s = settings()
    source = request.form if request.method == "POST" else request.args
    wanted = _chosen_lists(source.getlist("list"))
    _release_lock()
    view = None
    problem = ""
    try:
        view = handoff.preview(s, path, wanted)
    except MailerError as err:
        problem = str(err)
    now = approval.state(db(), s, draft_id)
    known = all_lists(db())
    lists = view.lists if view is not None else wanted
    context: dict[str, Any] = {
        "draft": draft,
        "version": version,
        "view": view,
        "problem": problem,
        "problem_lines": _lines(problem, path),
        "warnings": [_local(w, path) for w in view.warnings] if view else [],
        "error": error,
        "lists": known,
        "chosen": lists,
        "excluded": _excluded(view.plan) if view else [],
        "headline": _headline(view.headline) if view else [],
        "embargo": _when(view.release.embargo) if view else None,
        "expires": _when(view.release.expires) if view else None,
        "early_until": _when(view.plan.early.until) if view and view.plan.early else None,
        "approval": now,
        "history": approval.history(db(), draft_id),
        "worker": _worker(),
        "threshold": s.confirm_typing_over,
        "must_type": view is not None and view.recipients > s.confirm_typing_over,
        "confirm_name": _confirm_name(lists),
        "zones": handoff.zones(),
        "zone": _zone_name(s),
        "org_zone": _zone_name(s),
        "me_id": user().id,
        "is_author": _is_author(draft, version),
        "form": {"mode": "now", "date": "", "time": "", "zone": _zone_name(s)},
        "when": None,
        "when_error": "",
    }
    context.update(extra)
    return render("send_plan.html", status=status, **context)


def _is_author(draft: ReleaseDraft, version: int) -> bool:
    me = user()
    names = {approval.actor_of(me).lower(), me.email.lower()}
    try:
        author = drafts.get_version(db(), draft.id, version).author
    except NotFoundError:
        author = ""
    return draft.created_by.lower() in names or author.lower() in names


@bp.get("/releases/<int:draft_id>/send")
def send_plan(draft_id: int) -> Response:
    return _plan_page(draft_id)


@bp.get("/approvals")
def approvals() -> Response:
    """Releases waiting for a sender's decision (where the senders' emails lead, too)."""
    return render("send_approvals.html", waiting=approval.waiting(db()))


# --- the test send ----------------------------------------------------------------------------


@bp.get("/releases/<int:draft_id>/test")
def send_test_page(draft_id: int) -> Response:
    try:
        draft = drafts.get_draft(db(), draft_id)
    except NotFoundError:
        abort(404)
    return render(
        "send_test.html",
        draft=draft,
        colleagues=_active_users(),
        chosen=[user().id],
        results=[],
        error="",
    )


@bp.post("/releases/<int:draft_id>/test")
def send_test(draft_id: int) -> Response:
    me = user()
    colleagues = _active_users()
    by_id = {str(u.id): u for u in colleagues}
    ticked = [by_id[v] for v in request.form.getlist("to")[:100] if v in by_id]
    draft, version, path = _release(draft_id)
    if not ticked:
        return render(
            "send_test.html",
            status=422,
            draft=draft,
            colleagues=colleagues,
            chosen=[],
            results=[],
            error=_("Choose at least one person to send the test to."),
        )
    addresses = [u.email for u in ticked]
    who = actor()
    _release_lock()
    error = ""
    results: list[Any] = []
    try:
        outcome = send_release(settings(), path, tests=addresses, confirm=lambda _p: False)
        results = outcome.tests
    except MailerError as err:
        error = _("The test was not sent: %(error)s", error=str(err))
    if results:
        audit.record(
            db(),
            "release.test_sent",
            actor=who,
            draft=draft_id,
            slug=draft.slug,
            version=version,
            to=addresses,
        )
    return render(
        "send_test.html",
        status=422 if error else 200,
        draft=draft,
        colleagues=colleagues,
        chosen=[u.id for u in ticked] or [me.id],
        results=results,
        error=error,
    )


# --- approval ---------------------------------------------------------------------------------


def _deliver_quietly(s: Settings, notices: list[OutgoingNotice]) -> None:
    for notice in notices:
        try:
            staff_mail.deliver(s, notice)
        except MailerError as err:
            log.error("approval email to a sender could not be sent: %s", err)


@bp.post("/releases/<int:draft_id>/approval/request")
def approval_request(draft_id: int) -> Response:
    try:
        drafts.get_draft(db(), draft_id)
    except NotFoundError:
        abort(404)
    try:
        _row, notices = approval.request(db(), settings(), draft_id, user())
    except approval.ApprovalError as err:
        return notice_then(
            "console.send_plan", _("Not asked: %(error)s", error=str(err)), draft_id=draft_id
        )
    response = notice_then(
        "console.send_plan",
        _("Approval asked for; %(count)s senders were emailed.", count=len(notices)),
        draft_id=draft_id,
    )
    # After the response (and the request's commit): the mail server's pace is not the page's.
    response.call_on_close(partial(_deliver_quietly, settings(), notices))
    return response


@bp.post("/releases/<int:draft_id>/approval/decide")
def approval_decide(draft_id: int) -> Response:
    try:
        drafts.get_draft(db(), draft_id)
    except NotFoundError:
        abort(404)
    decision = request.form.get("decision", "")
    if decision not in ("approve", "reject"):
        # Not 400: that is the answer to a failed CSRF check, and this is a form to fill in.
        return notice_then(
            "console.send_plan", _("Choose to approve or to reject."), draft_id=draft_id
        )
    try:
        approval.decide(
            db(),
            settings(),
            draft_id,
            user(),
            approve=decision == "approve",
            comment=request.form.get("comment", "")[: approval.MAX_COMMENT + 1],
        )
    except approval.ApprovalError as err:
        return notice_then(
            "console.send_plan", _("Not decided: %(error)s", error=str(err)), draft_id=draft_id
        )
    done = _("Approved.") if decision == "approve" else _("Rejected.")
    return notice_then("console.send_plan", done, draft_id=draft_id)


# --- send now or schedule ---------------------------------------------------------------------


def _send_form() -> dict[str, str]:
    form = request.form
    return {
        "mode": "schedule" if form.get("mode") == "schedule" else "now",
        "date": form.get("date", "")[:MAX_FIELD],
        "time": form.get("time", "")[:MAX_FIELD],
        "zone": form.get("zone", "")[:MAX_FIELD],
    }


@bp.post("/releases/<int:draft_id>/send/when")
def send_when(draft_id: int) -> Response:
    """The moment the picker means, in the organisation's zone and in UTC (htmx fragment)."""
    try:
        drafts.get_draft(db(), draft_id)
    except NotFoundError:
        abort(404)
    form = _send_form()
    error = ""
    when = None
    if form["date"] or form["time"]:
        try:
            when = _when(handoff.moment(form["date"], form["time"], form["zone"]))
        except MailerError as err:
            error = str(err)
    if request.headers.get("HX-Request") != "true":
        # Without JavaScript the button posts the whole form: the page comes back with it.
        return _plan_page(draft_id, form=form, when=when, when_error=error)
    return render("send_when.html", when=when, when_error=error, org_zone=_zone_name(settings()))


@bp.post("/releases/<int:draft_id>/send")
def send_start(draft_id: int) -> Response:
    s = settings()
    form = _send_form()
    lists = _chosen_lists(request.form.getlist("list"))
    typed = request.form.get("confirm_name", "")[:MAX_FIELD]
    early = request.form.get("before_embargo") == "yes"
    _draft, version, path = _release(draft_id)
    who = actor()

    def again(message: str) -> Response:
        return _plan_page(draft_id, error=message, status=422, form=form, when=None)

    try:
        approval.require_approved(db(), s, draft_id, version)
        at = (
            handoff.moment(form["date"], form["time"], form["zone"])
            if form["mode"] == "schedule"
            else None
        )
    except MailerError as err:
        return again(_("Not sent: %(error)s", error=str(err)))

    def confirm(p: Plan) -> str:
        if p.due > s.confirm_typing_over:
            expected = _confirm_name(list(p.campaign.audience.get("lists", [])))
            if typed.strip().lower() != expected.lower():
                return (
                    f"{p.due} recipients: type the list's name ({expected}) to confirm "
                    f"a send to more than {s.confirm_typing_over}"
                )
        return ""

    # The send reads its own copy of the version whose approval was checked: the draft's shared
    # folder (`path`) is rewritten by any editor's page that checks a newer version meanwhile.
    with tempfile.TemporaryDirectory(prefix=".send-", dir=path.parent.parent) as own:
        path = drafts.export(db(), s, draft_id, Path(own), version=version)
        _release_lock()
        try:
            p = handoff.hand_off(
                s, path, lists, at=at, before_embargo=early, actor=who, confirm=confirm
            )
        except MailerError as err:
            return again(_("Not sent: %(error)s", error=str(err).replace(own + os.sep, "")))
    c = p.campaign
    when = _when(c.not_before)
    if when is None:
        message = _(
            "Campaign %(id)s to %(count)s recipients is handed to the worker: sending starts "
            "within seconds.",
            id=c.id,
            count=p.due,
        )
    else:
        message = _(
            "Campaign %(id)s to %(count)s recipients is scheduled for %(local)s (%(utc)s).",
            id=c.id,
            count=p.due,
            local=when["local"],
            utc=when["utc"],
        )
    if "console.campaign" in current_app.view_functions:
        return notice_then("console.campaign", message, campaign_id=c.id)
    return notice_then("console.send_plan", message, draft_id=draft_id)
