"""Mailing lists: create, look up, count, remove."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer.contacts.addresses import normalise as normalise_address
from mailer.contacts.slugs import SLUG_RE as SLUG_RE
from mailer.errors import InvalidInputError, NotFoundError
from mailer.releases.languages import from_name, normalise
from mailer.store import audit
from mailer.store.models import MailingList, Subscription, SubscriptionStatus

# A list name is written into every message's List-Id header: no line break or other control
# character (a CR LF there would start a header of the admin's choosing).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_NAME = 200


def check_list_name(name: str) -> str:
    """The name stripped, or InvalidInputError saying what is wrong with it."""
    name = name.strip()
    if not name:
        raise InvalidInputError("list name: must not be empty")
    found = _CONTROL.search(name)
    if found is not None:
        raise InvalidInputError(
            f"list name {name!r}: must be one line without control characters (found "
            f"{found.group()!r})"
        )
    if len(name) > MAX_NAME:
        raise InvalidInputError(f"list name: at most {MAX_NAME} characters, got {len(name)}")
    return name


def check_list_names(names: Mapping[str, str]) -> dict[str, str]:
    """{language: name} with each language written one way (kr, ko-KR -> ko) and each name
    checked like the default one; an empty name removes that language's."""
    out: dict[str, str] = {}
    for raw, name in names.items():
        language = normalise(from_name(raw) or raw)
        if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", language):
            raise InvalidInputError(
                f"list name language {raw!r}: not a language code (e.g. ko, en)"
            )
        out[language] = check_list_name(name) if name.strip() else ""
    return out


@dataclass(frozen=True)
class ListSummary:
    mailing_list: MailingList
    counts: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        ml = self.mailing_list
        return {
            "slug": ml.slug,
            "name": ml.name,
            "names": dict(ml.names or {}),
            "description": ml.description,
            "public": ml.public,
            "press": ml.press,
            "archive": ml.archive,
            "track_clicks": ml.track_clicks,
            "track_people": ml.track_people,
            "from_address": ml.from_address,
            "list_id": ml.list_id,
            "created_at": ml.created_at.isoformat(),
            "subscribers": dict(self.counts),
        }


def create_list(
    session: Session,
    slug: str,
    name: str,
    description: str = "",
    *,
    public: bool = False,
    from_address: str | None = None,
    names: Mapping[str, str] | None = None,
    actor: str = "",
    press: bool = False,
    archive: bool = True,
    track_clicks: bool | None = None,
    track_people: bool | None = None,
) -> MailingList:
    """Create a list; the slug is short, lower-case and unique. `names`: the name in other
    languages ({"ko": "보도자료"}); `name` is the default language's. `actor`: who, for the
    event log (the console's "user:EMAIL"). `press`: reporters, who get an embargoed release
    before its embargo; `archive`: releases sent to it may appear in the newsroom.
    `track_clicks` (links through /l/) and `track_people` (clicks name the reader): None takes
    `press` (docs/engagement.md)."""
    if not SLUG_RE.match(slug):
        raise InvalidInputError(
            f"list slug {slug!r}: use lower-case letters, digits, '-' or '_' (at most 64)"
        )
    name = check_list_name(name)
    local = {k: v for k, v in check_list_names(names or {}).items() if v}
    if session.scalar(select(MailingList.id).where(MailingList.slug == slug)) is not None:
        raise InvalidInputError(f"a list named {slug!r} already exists")
    if from_address is not None:
        from_address = normalise_address(from_address).original
    ml = MailingList(
        slug=slug,
        name=name,
        names=local,
        description=description,
        public=public,
        from_address=from_address,
        press=press,
        archive=archive,
        track_clicks=press if track_clicks is None else track_clicks,
        track_people=press if track_people is None else track_people,
    )
    session.add(ml)
    try:
        session.flush()
    except IntegrityError:
        raise InvalidInputError(f"a list named {slug!r} already exists") from None
    audit.record(
        session,
        "list.create",
        list_id=ml.id,
        actor=actor,
        slug=slug,
        **({"press": True} if press else {}),
        **({} if archive else {"archive": False}),
        **({"track_clicks": ml.track_clicks} if ml.track_clicks != press else {}),
        **({"track_people": ml.track_people} if ml.track_people != press else {}),
    )
    return ml


def edit_list(
    session: Session,
    slug: str,
    *,
    name: str | None = None,
    description: str | None = None,
    public: bool | None = None,
    names: Mapping[str, str] | None = None,
    from_address: str | None = None,
    actor: str = "",
    press: bool | None = None,
    archive: bool | None = None,
    track_clicks: bool | None = None,
    track_people: bool | None = None,
) -> MailingList:
    """Change a list's name (`names`: per language, "" removes one), description, visibility
    on the subscribe form or From address ("" goes back to the `from_address` setting), whether
    it is a press list (`press`) and whether its releases may appear in the newsroom
    (`archive`), whether its links are tracked (`track_clicks`) and clicks name the reader
    (`track_people`). Making a list a press list leaves its tracking as it was."""
    ml = get_list(session, slug)
    changes: dict[str, Any] = {}
    if name is not None:
        ml.name = changes["name"] = check_list_name(name)
    if names:
        merged = {**(ml.names or {}), **check_list_names(names)}
        # A new dict, so the JSON column is seen as changed.
        ml.names = changes["names"] = {k: v for k, v in merged.items() if v}
    if description is not None:
        ml.description = changes["description"] = description
    if public is not None:
        ml.public = changes["public"] = public
    if from_address is not None:
        address = normalise_address(from_address).original if from_address.strip() else None
        ml.from_address = changes["from_address"] = address
    if press is not None:
        ml.press = changes["press"] = press
    if archive is not None:
        ml.archive = changes["archive"] = archive
    if track_clicks is not None:
        ml.track_clicks = changes["track_clicks"] = track_clicks
    if track_people is not None:
        ml.track_people = changes["track_people"] = track_people
    session.flush()
    audit.record(session, "list.edit", list_id=ml.id, actor=actor, slug=slug, **changes)
    return ml


def get_list(session: Session, slug: str) -> MailingList:
    """The list with this slug, or NotFoundError."""
    ml = session.scalar(select(MailingList).where(MailingList.slug == slug))
    if ml is None:
        raise NotFoundError(f"no list named {slug!r} (see `mailer lists ls`)")
    return ml


def subscriber_counts(session: Session, list_id: int) -> dict[str, int]:
    counts = {s.value: 0 for s in SubscriptionStatus}
    rows = session.execute(
        select(Subscription.status, func.count())
        .where(Subscription.list_id == list_id)
        .group_by(Subscription.status)
    )
    for status, n in rows:
        counts[SubscriptionStatus(status).value] = n
    return counts


def summarise(session: Session, ml: MailingList) -> ListSummary:
    return ListSummary(ml, subscriber_counts(session, ml.id))


def all_lists(session: Session) -> list[ListSummary]:
    """Every list with its subscriber counts, by slug."""
    lists = session.scalars(select(MailingList).order_by(MailingList.slug)).all()
    return [summarise(session, ml) for ml in lists]


def remove_list(session: Session, slug: str) -> dict[str, int]:
    """Delete a list and its subscriptions (contacts and suppressions stay)."""
    ml = get_list(session, slug)
    counts = subscriber_counts(session, ml.id)
    audit.record(session, "list.remove", slug=slug, subscriptions=sum(counts.values()))
    session.delete(ml)
    session.flush()
    return counts
