"""Publication state: which release the newsroom shows, which version of it, and from when.

One `publication` row per release slug. Planning a campaign creates or updates it (`on_plan`),
the start of a campaign's first send sets `first_sent_at` (`on_start`). The one rule: a
publication is public from max(embargo, first_sent_at) when `publish` and not withdrawn;
`is_public` says it in Python, `public_condition` in SQL (tests/test_newsroom_state.py proves
they agree at the boundary). Withdrawing and correcting are staff actions, in the event log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, or_, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.errors import InvalidInputError, NotFoundError
from mailer.releases.embargo import organisation_zone, stored_embargo
from mailer.store import audit
from mailer.store.models import Campaign, MailingList, Publication, Release

# A correction note is a sentence or two shown on the page, not a second release.
MAX_NOTE = 2000


# --- the rule -----------------------------------------------------------------------------------


def visible_from(pub: Publication) -> datetime | None:
    """When the public may see it: max(embargo, first_sent_at); None until it was first sent."""
    if pub.first_sent_at is None:
        return None
    if pub.embargo is not None and pub.embargo > pub.first_sent_at:
        return pub.embargo
    return pub.first_sent_at


def _reached(pub: Publication, now: datetime) -> bool:
    since = visible_from(pub)
    return pub.publish and since is not None and now >= since


def is_public(pub: Publication, now: datetime) -> bool:
    """Is its page, index entry, feed entry and sitemap entry shown to anyone at `now`?"""
    return _reached(pub, now) and pub.withdrawn_at is None


def shows_withdrawn(pub: Publication, now: datetime) -> bool:
    """Does its URL show the "withdrawn" page? Only for a release that was public before it was
    withdrawn: one withdrawn before its embargo lifted was never public and stays a 404."""
    since = visible_from(pub)
    return (
        _reached(pub, now)
        and pub.withdrawn_at is not None
        and since is not None
        and pub.withdrawn_at >= since
    )


def public_condition(now: datetime) -> ColumnElement[bool]:
    """`is_public` as a SQL condition on Publication (the same rule, for lists of releases)."""
    return and_(
        Publication.publish.is_(True),
        Publication.withdrawn_at.is_(None),
        Publication.first_sent_at.is_not(None),
        Publication.first_sent_at <= now,
        or_(Publication.embargo.is_(None), Publication.embargo <= now),
    )


def visible_from_column() -> ColumnElement[datetime]:
    """`visible_from` as a SQL expression (the newest-first order of the index and the feeds)."""
    return case(
        (Publication.embargo > Publication.first_sent_at, Publication.embargo),
        else_=Publication.first_sent_at,
    )


def status(pub: Publication, now: datetime) -> str:
    """One word for staff: public, embargoed, unsent, off (publish false), withdrawn."""
    if pub.withdrawn_at is not None:
        return "withdrawn"
    if not pub.publish:
        return "off"
    if pub.first_sent_at is None:
        return "unsent"
    return "public" if is_public(pub, now) else "embargoed"


# --- hooks of the delivery stages ---------------------------------------------------------------


def on_plan(session: Session, settings: Settings, campaign: Campaign) -> Publication:
    """Create or update the release's publication when one of its campaigns is planned: the
    lists it goes to, whether it may be published; before its first send also the version,
    the embargo and the year and month of its URL."""
    release = campaign.release
    pub = find(session, release.slug)
    if pub is None:
        pub = Publication(
            slug=release.slug,
            lists=[],
            corrections=[],
            withdrawn_note="",
            publish=True,
            created_at=clock.now(),
        )
        _take_version(pub, release)
        _date_url(pub, release, settings, clock.now())
        session.add(pub)
    elif pub.first_sent_at is None and release.id > pub.release_id:
        _take_version(pub, release)
        _date_url(pub, release, settings, clock.now())
    wanted = [str(slug) for slug in campaign.audience.get("lists", [])]
    pub.lists = list(dict.fromkeys([*(pub.lists or []), *wanted]))
    pub.publish = _may_publish(session, pub)
    session.flush()
    return pub


def on_start(session: Session, settings: Settings, campaign: Campaign) -> Publication:
    """A campaign starts sending: the first send starts the clock (`first_sent_at`), and a newer
    version of the release than the one shown replaces it (noted on a page already public)."""
    now = clock.now()
    pub = find(session, campaign.release.slug)
    if pub is None:  # planned before the newsroom existed, or its row was lost
        pub = on_plan(session, settings, campaign)
    release = campaign.release
    if release.id > pub.release_id:
        was_public = is_public(pub, now)
        _take_version(pub, release, keep_embargo=was_public)
        if pub.first_sent_at is None:
            _date_url(pub, release, settings, now)
        if was_public:
            pub.corrections = [
                *(pub.corrections or []),
                {"at": now.isoformat(), "note": "", "kind": "update", "release_id": release.id},
            ]
        pub.publish = _may_publish(session, pub)
    if pub.first_sent_at is None:
        pub.first_sent_at = now
        # Without a `date:` the URL's month is the month it first went out, not when planned.
        _date_url(pub, release, settings, now)
    session.flush()
    return pub


def _take_version(pub: Publication, release: Release, *, keep_embargo: bool = False) -> None:
    pub.release_id = release.id
    pub.release = release
    if not keep_embargo:
        # A page already public stays public when a corrected version goes out.
        pub.embargo = stored_embargo(release.front_matter)


def _date_url(pub: Publication, release: Release, settings: Settings, now: datetime) -> None:
    """Year and month of the URL: the release's `date`, else today in the organisation's zone."""
    raw = (release.front_matter or {}).get("date")
    day = date.fromisoformat(str(raw)) if raw else now.astimezone(organisation_zone(settings))
    pub.year, pub.month = day.year, day.month


def _may_publish(session: Session, pub: Publication) -> bool:
    """False for `publish: false`, or when every list it went to is a member-only one."""
    if (pub.release.front_matter or {}).get("publish") is False:
        return False
    archived = session.scalar(
        select(MailingList.id)
        .where(MailingList.slug.in_(pub.lists or []), MailingList.archive.is_(True))
        .limit(1)
    )
    return archived is not None


# --- lookups and staff actions ------------------------------------------------------------------


def find(session: Session, slug: str) -> Publication | None:
    return session.scalar(select(Publication).where(Publication.slug == slug))


def get(session: Session, slug: str) -> Publication:
    """The publication of this release, or NotFoundError."""
    pub = find(session, slug)
    if pub is None:
        raise NotFoundError(
            f"no release named {slug!r} in the newsroom (see `mailer news ls`; a release "
            "enters it when a campaign of it is planned)"
        )
    return pub


def all_publications(session: Session) -> list[Publication]:
    """Every publication, newest first (staff see them all, whatever their state)."""
    return list(
        session.scalars(
            select(Publication).order_by(
                Publication.year.desc(), Publication.month.desc(), Publication.id.desc()
            )
        )
    )


def _note(note: str, what: str) -> str:
    text = " ".join(note.split())
    if not text:
        raise InvalidInputError(f"{what}: give a note that says why (it is shown on the page)")
    if len(text) > MAX_NOTE:
        raise InvalidInputError(f"{what}: the note has {len(text)} characters; at most {MAX_NOTE}")
    return text


def withdraw(session: Session, slug: str, note: str, *, actor: str = "") -> Publication:
    """Take a release off the newsroom: its URL says it was withdrawn, with `note`."""
    pub = get(session, slug)
    text = _note(note, "withdraw")
    if pub.withdrawn_at is not None:
        raise InvalidInputError(
            f"{slug}: already withdrawn on {pub.withdrawn_at.isoformat()} ({pub.withdrawn_note})"
        )
    pub.withdrawn_at = clock.now()
    pub.withdrawn_note = text
    audit.record(session, "newsroom.withdraw", actor=actor, release=slug, note=text)
    session.flush()
    return pub


def correct(session: Session, slug: str, note: str, *, actor: str = "") -> Publication:
    """Add a visible correction note to a release's page (its text stays; a corrected version
    sent later replaces the text and keeps the notes)."""
    pub = get(session, slug)
    text = _note(note, "correct")
    if pub.withdrawn_at is not None:
        raise InvalidInputError(f"{slug}: withdrawn; a withdrawn release shows no corrections")
    now = clock.now()
    pub.corrections = [*(pub.corrections or []), {"at": now.isoformat(), "note": text}]
    audit.record(session, "newsroom.correct", actor=actor, release=slug, note=text)
    session.flush()
    return pub


@dataclass(frozen=True)
class Correction:
    """A note on the page: a correction by staff, or an update (a newer version was sent)."""

    at: datetime
    note: str
    update: bool


def corrections(pub: Publication) -> list[Correction]:
    """The page's notes, oldest first."""
    out: list[Correction] = []
    for item in pub.corrections or []:
        entry: dict[str, Any] = dict(item)
        out.append(
            Correction(
                datetime.fromisoformat(str(entry["at"])),
                str(entry.get("note", "")),
                entry.get("kind") == "update",
            )
        )
    return out


def last_change(pub: Publication) -> datetime | None:
    """When its page last changed for readers (a feed's `updated`): when it became visible, or
    its newest note if later; None while it was never sent."""
    since = visible_from(pub)
    notes = [note.at for note in corrections(pub)]
    return max([*notes, since]) if since is not None else None
