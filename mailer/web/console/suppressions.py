"""The suppression list for admins: search, filter by reason, add, and lift with a reason.

Adding and lifting are the library calls `mailer suppressions add|rm` make
(mailer.contacts.suppression_list wraps them to keep the staff member's note); lifting always
goes through a confirmation page that works without JavaScript, and says plainly when the
suppression came from the person or their mail server (a complaint, a hard bounce).
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, request, url_for

from mailer.contacts import suppression_list
from mailer.contacts.addresses import normalise
from mailer.contacts.suppressions import get_suppression, is_suppressed, mailbox_suppressions
from mailer.errors import InvalidInputError, NotFoundError
from mailer.store.models import SuppressionReason
from mailer.web.console import bp
from mailer.web.console.base import _, actor, notice_then, render
from mailer.web.pages import db

REASONS = list(SuppressionReason)
# Suppressions the person or their mail server asked for: lifting one may mail someone who
# complained, or an address that does not exist (both count against the sender's reputation).
SERIOUS = (SuppressionReason.COMPLAINT, SuppressionReason.HARD_BOUNCE)


def _reason_arg(value: str) -> SuppressionReason | None:
    try:
        return SuppressionReason(value)
    except ValueError:
        return None


def _address_status(query: str) -> dict[str, Any] | None:
    """For a search that is a whole address: is it suppressed, and by which row (the library's
    own check, the one a send makes)."""
    if "@" not in query:
        return None
    try:
        key = normalise(query).key
    except InvalidInputError:
        return None
    return {
        "key": key,
        "suppressed": is_suppressed(db(), key),
        "by": get_suppression(db(), key),
    }


def _list_page(
    *, status: int = 200, error: str = "", form: dict[str, str] | None = None
) -> Response:
    query = request.args.get("q", "")[:320].strip()
    reason = _reason_arg(request.args.get("reason", ""))
    after = suppression_list.Cursor.decode(request.args.get("after", "")[:60])
    found = suppression_list.page(db(), query=query, reason=reason, after=after)
    next_url = None
    if found.next is not None:
        next_url = url_for(
            "console.suppressions",
            q=query or None,
            reason=reason.value if reason else None,
            after=found.next.encode(),
        )
    return render(
        "suppressions.html",
        status=status,
        rows=found.rows,
        next_url=next_url,
        query=query,
        reason=reason.value if reason else "",
        reasons=REASONS,
        counts=suppression_list.counts_by_reason(db()),
        address=_address_status(query),
        error=error,
        form=form or {"email": "", "reason": SuppressionReason.MANUAL.value, "note": ""},
        serious=SERIOUS,
    )


@bp.get("/suppressions")
def suppressions() -> Response:
    return _list_page()


@bp.post("/suppressions")
def suppressions_add() -> Response:
    form = {
        "email": request.form.get("email", "")[:320],
        "reason": request.form.get("reason", "manual")[:40],
        "note": request.form.get("note", "")[:2000],
    }
    try:
        sup, new = suppression_list.add(
            db(), form["email"], form["reason"], form["note"], actor=actor()
        )
    except InvalidInputError as err:
        return _list_page(status=422, error=str(err), form=form)
    if new:
        message = _("%(email)s is suppressed: it will not be mailed again.", email=sup.email)
    else:
        message = _(
            "%(email)s was already suppressed (%(reason)s since %(date)s).",
            email=sup.email,
            reason=SuppressionReason(sup.reason).value,
            date=sup.created_at.strftime("%Y-%m-%d"),
        )
    return notice_then("console.suppressions", message, q=sup.email)


def _confirm_page(email: str, *, status: int = 200, error: str = "", note: str = "") -> Response:
    try:
        key = normalise(email).key
    except InvalidInputError:
        abort(404)
    covering = get_suppression(db(), key)
    if covering is None:
        abort(404)
    rows = mailbox_suppressions(db(), key)
    return render(
        "suppression_remove.html",
        status=status,
        email=key,
        covering=covering,
        rows=rows,
        serious=[r for r in rows if r.reason in SERIOUS],
        erased=any(r.reason == SuppressionReason.ERASED for r in rows),
        error=error,
        note=note,
    )


@bp.get("/suppressions/remove")
def suppression_remove_confirm() -> Response:
    return _confirm_page(request.args.get("email", "")[:320])


@bp.post("/suppressions/remove")
def suppression_remove() -> Response:
    email = request.form.get("email", "")[:320]
    note = request.form.get("note", "")[:2000]
    if request.form.get("confirm") != "yes":
        return _confirm_page(
            email,
            status=422,
            error=_("Tick the box to confirm that this address may be mailed again."),
            note=note,
        )
    try:
        sup = suppression_list.lift(db(), email, note, actor=actor())
    except NotFoundError:
        return notice_then(
            "console.suppressions", _("%(email)s is not on the suppression list.", email=email)
        )
    except InvalidInputError as err:
        return _confirm_page(email, status=422, error=str(err), note=note)
    return notice_then(
        "console.suppressions",
        _(
            "%(email)s is no longer suppressed. It can be subscribed again; "
            "its old subscriptions stay unsubscribed.",
            email=sup.email,
        ),
    )
