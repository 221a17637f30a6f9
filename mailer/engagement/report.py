"""A campaign's engagement figures for `campaigns show`, the CSV report and the console.

Every figure is a grouped query: clicks per link and per language, humans and machines apart
(mailer.engagement.machines decides which is which when a click is recorded); unique human
clickers, only where per-person rows exist (lists with `track_people`: an aggregate list stores
no person, so there is nothing to count but clicks); for press lists, who engaged (name, outlet,
beat, first human click); and opens, only if any were recorded, under a label that says what
they are worth: opens are fired by mail scanners and image proxies as much as by people, so
they are shown, never used for a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session

from mailer.store.models import Click, Contact, Delivery, MailingList, TrackedLink

OPENS_LABEL = "opens (unreliable: includes machine opens)"
CLICK, OPEN = "click", "open"
# The engaged press list shown by `campaigns show` and the console (the CSV has everyone).
ENGAGED_LIMIT = 500


def _human() -> Any:
    return func.sum(case((Click.machine.is_(False), 1), else_=0))


def _machine() -> Any:
    return func.sum(case((Click.machine.is_(True), 1), else_=0))


def per_person(session: Session, campaign_id: int) -> bool:
    """Whether this campaign can have per-person engagement: it went to a list with
    `track_people` on, or a click with a person was recorded for it."""
    to_people = exists().where(
        Delivery.campaign_id == campaign_id,
        MailingList.id == Delivery.list_id,
        MailingList.track_people.is_(True),
    )
    with_person = exists().where(Click.campaign_id == campaign_id, Click.contact_id.is_not(None))
    return bool(session.scalar(select(to_people | with_person)))


def engagement(
    session: Session, campaign_id: int, *, engaged_limit: int = ENGAGED_LIMIT
) -> dict[str, Any]:
    """The documented `engagement` part of `campaigns show --json` (docs/campaigns.md)."""
    links = [
        {
            "link_id": link_id,
            "language": language,
            "position": position,
            "url": url,
            "human": int(human or 0),
            "machine": int(machine or 0),
        }
        for link_id, language, position, url, human, machine in session.execute(
            select(
                TrackedLink.id,
                TrackedLink.language,
                TrackedLink.position,
                TrackedLink.url,
                _human(),
                _machine(),
            )
            .outerjoin(Click, and_(Click.link_id == TrackedLink.id, Click.kind == CLICK))
            .where(TrackedLink.campaign_id == campaign_id)
            .group_by(TrackedLink.id, TrackedLink.language, TrackedLink.position, TrackedLink.url)
            .order_by(TrackedLink.language, TrackedLink.position)
        )
    ]
    languages: dict[str, dict[str, int]] = {}
    opens = {"human": 0, "machine": 0}
    for kind, language, human, machine in session.execute(
        select(Click.kind, Click.language, _human(), _machine())
        .where(Click.campaign_id == campaign_id)
        .group_by(Click.kind, Click.language)
    ):
        if kind == OPEN:
            opens["human"] += int(human or 0)
            opens["machine"] += int(machine or 0)
        elif kind == CLICK:
            languages[language] = {"human": int(human or 0), "machine": int(machine or 0)}
    people = per_person(session, campaign_id)
    data: dict[str, Any] = {
        "tracked": bool(links),
        "per_person": people,
        "human_clicks": sum(v["human"] for v in languages.values()),
        "machine_clicks": sum(v["machine"] for v in languages.values()),
        "links": links,
        "by_language": dict(sorted(languages.items())),
        "unique_clickers": unique_clickers(session, campaign_id) if people else None,
        "engaged": engaged(session, campaign_id, limit=engaged_limit) if people else [],
        "opens": None,
    }
    if opens["human"] or opens["machine"]:
        data["opens"] = {"label": OPENS_LABEL, "count": opens["human"] + opens["machine"]}
    return data


def _human_clicks(campaign_id: int) -> list[Any]:
    return [
        Click.campaign_id == campaign_id,
        Click.kind == CLICK,
        Click.machine.is_(False),
        Click.contact_id.is_not(None),
    ]


def unique_clickers(session: Session, campaign_id: int) -> int:
    """People who followed at least one link themselves (machines and aggregate rows aside)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(Click.contact_id))).where(*_human_clicks(campaign_id))
        )
        or 0
    )


def engaged(
    session: Session, campaign_id: int, *, limit: int = ENGAGED_LIMIT
) -> list[dict[str, Any]]:
    """Who engaged, first click first: name, address, outlet, beat, first human click, clicks
    (the press office follows these up; only per-person rows name anyone)."""
    first = func.min(Click.at)
    rows = session.execute(
        select(
            Contact.id,
            Contact.name,
            Contact.email,
            Contact.organisation,
            Contact.beat,
            first,
            func.count(),
        )
        .join(Contact, Contact.id == Click.contact_id)
        .where(*_human_clicks(campaign_id))
        .group_by(Contact.id, Contact.name, Contact.email, Contact.organisation, Contact.beat)
        .order_by(first, Contact.id)
        .limit(limit)
    )
    return [
        {
            "contact_id": cid,
            "name": name,
            "email": email,
            "outlet": outlet,
            "beat": beat,
            "first_click": at.isoformat(),
            "clicks": int(n),
        }
        for cid, name, email, outlet, beat, at, n in rows
    ]


@dataclass(frozen=True)
class RecipientEngagement:
    """One recipient's human clicks on this campaign, for the CSV report."""

    first_click: datetime
    clicks: int


def per_recipient(session: Session, campaign_id: int) -> Mapping[int, RecipientEngagement]:
    """Human clicks per contact (only those who clicked: the CSV shows 0 for the rest of a
    per-person list). Small: one row per clicker, never one per recipient."""
    return {
        cid: RecipientEngagement(at, int(n))
        for cid, at, n in session.execute(
            select(Click.contact_id, func.min(Click.at), func.count())
            .where(*_human_clicks(campaign_id))
            .group_by(Click.contact_id)
        )
        if cid is not None  # never: _human_clicks asks for a person; for the type checker
    }


def people_lists(session: Session) -> set[int]:
    """Lists whose recipients have per-person engagement (`track_people` on)."""
    return set(session.scalars(select(MailingList.id).where(MailingList.track_people.is_(True))))


def csv_cells(
    clicks: Mapping[int, RecipientEngagement],
    lists: set[int],
    *,
    contact_id: int | None,
    list_id: int | None,
    opted_out: bool | None,
) -> list[str | int]:
    """The CSV's `first_click` and `clicks` cells of one recipient: empty where no per-person
    data can exist (an aggregate list, a reader who switched it off, an erased contact), so an
    empty cell never reads as "did not click"."""
    if contact_id is None or list_id not in lists or opted_out:
        return ["", ""]
    got = clicks.get(contact_id)
    if got is None:
        return ["", 0]
    return [got.first_click.isoformat(), got.clicks]
