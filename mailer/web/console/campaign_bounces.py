"""Bounces and complaints across campaigns, newest first, a page at a time, filtered by kind;
each report with what the database keeps of it (shown as text, never as HTML: a remote server
wrote it) and the suppression it caused, with a link to lift that suppression on the
suppressions page (admins, a reason required, logged: mailer/web/console/suppressions.py).
"""

from __future__ import annotations

from flask import Response, abort, request, url_for

from mailer.contacts.suppression_list import Cursor
from mailer.delivery import report_bounces as reports
from mailer.web.console import bp
from mailer.web.console.base import render
from mailer.web.pages import db


@bp.get("/bounces")
def bounces() -> Response:
    kind = request.args.get("kind", "")[:20]
    if kind not in reports.BOUNCE_KINDS:
        kind = ""
    after = Cursor.decode(request.args.get("after", "")[:60])
    found = reports.bounce_page(db(), kind=kind or None, after=after)
    next_url = None
    if found.next is not None:
        next_url = url_for("console.bounces", kind=kind or None, after=found.next.encode())
    return render(
        "campaign_bounces.html",
        active="bounces",
        rows=found.rows,
        next_url=next_url,
        kind=kind,
        kinds=reports.BOUNCE_KINDS,
        counts=reports.bounce_kind_counts(db()),
    )


@bp.get("/bounces/<int:bounce_id>")
def bounce_show(bounce_id: int) -> Response:
    found = reports.bounce_detail(db(), bounce_id)
    if found is None:
        abort(404)
    return render("campaign_bounce.html", active="bounces", d=found)
