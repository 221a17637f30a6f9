"""The event log for admins: newest first, filtered by kind, by who acted and by contact,
paged by id (keyset: the next page starts below the last id shown, however long the log)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, request
from sqlalchemy import select

from mailer.store.models import Contact, Event
from mailer.web.console import bp
from mailer.web.console.base import render
from mailer.web.pages import db

PAGE = 50


def _int(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


@bp.get("/audit")
def audit() -> Response:
    kind = request.args.get("kind", "")[:40]
    who = request.args.get("actor", "")[:200]
    contact = request.args.get("contact", "")[:320].strip().lower()
    since = request.args.get("since", "")[:10]
    before = _int("before")
    query = select(Event).order_by(Event.id.desc()).limit(PAGE + 1)
    if kind:
        query = query.where(Event.kind == kind)
    if who:
        query = query.where(Event.actor == who)
    if contact:
        query = query.join(Contact, Contact.id == Event.contact_id).where(Contact.email == contact)
    if since:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            start = None
        if start is not None:
            query = query.where(Event.at >= (start if start.tzinfo else start.replace(tzinfo=UTC)))
    if before is not None:
        query = query.where(Event.id < before)
    rows = list(db().scalars(query))
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    kinds = sorted(db().scalars(select(Event.kind).distinct()))
    return render(
        "audit.html",
        events=rows,
        kinds=kinds,
        kind=kind,
        actor=who,
        contact=contact,
        since=since,
        next_before=rows[-1].id if more and rows else None,
    )
