"""What the public may read: the index (filtered, a page at a time), feed entries, the sitemap.

Every query here is bounded by `state.public_condition(now)`, so nothing that is not public yet
is ever counted, listed or linked; a release page's own check is `state.is_public`. Per-list
indexes and feeds exist only for lists that keep an archive (`archive = true`) and have a public
release: a member-only list never shows, not even its name.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, String, cast, func, select
from sqlalchemy.orm import Session, joinedload

from mailer.newsroom import state
from mailer.releases.source import Release as SourceRelease
from mailer.releases.source import release_from_sources
from mailer.store.models import MailingList, Publication, Release

PER_PAGE = 20
FEED_SIZE = 20
# A list of releases loads each one's title and hash, not its sources (kilobytes of text each):
# the parsed release is kept by content hash (`parsed`), so its sources are read once.
_RELEASE = joinedload(Publication.release).defer(Release.variants)


@dataclass(frozen=True)
class IndexPage:
    """One page of the index: its releases (newest first) and what the filters may offer."""

    entries: list[Publication]
    page: int
    pages: int
    total: int
    years: list[int]
    lists: list[MailingList]


def _in_list(slug: str) -> ColumnElement[bool]:
    # `lists` is a JSON array of slugs; a slug has no quote and its only LIKE wildcard is "_"
    # (contacts/slugs.py), so the quoted slug is found in the JSON text on every engine.
    pattern = '%"' + slug.replace("_", "\\_") + '"%'
    return cast(Publication.lists, String).like(pattern, escape="\\")


def public_years(session: Session, now: datetime) -> list[int]:
    return list(
        session.scalars(
            select(Publication.year)
            .where(state.public_condition(now))
            .distinct()
            .order_by(Publication.year.desc())
        )
    )


def public_lists(session: Session, now: datetime) -> list[MailingList]:
    """Lists that keep an archive and have at least one public release."""
    out = []
    for ml in session.scalars(
        select(MailingList).where(MailingList.archive.is_(True)).order_by(MailingList.slug)
    ):
        found = session.scalar(
            select(Publication.id).where(state.public_condition(now), _in_list(ml.slug)).limit(1)
        )
        if found is not None:
            out.append(ml)
    return out


def public_list(session: Session, slug: str, now: datetime) -> MailingList | None:
    """The list `slug` if it may have an index and feed of its own (else None: a 404)."""
    return next((ml for ml in public_lists(session, now) if ml.slug == slug), None)


def index(
    session: Session,
    now: datetime,
    *,
    year: int | None = None,
    list_slug: str | None = None,
    page: int = 1,
    per_page: int = PER_PAGE,
) -> IndexPage | None:
    """A page of public releases, newest first; None for a page past the last (a 404)."""
    where = [state.public_condition(now)]
    if year is not None:
        where.append(Publication.year == year)
    if list_slug is not None:
        where.append(_in_list(list_slug))
    total = session.scalar(select(func.count()).select_from(Publication).where(*where)) or 0
    pages = max(1, -(-total // per_page))
    if page < 1 or page > pages:
        return None
    entries = list(
        session.scalars(
            select(Publication)
            .options(_RELEASE)
            .where(*where)
            .order_by(state.visible_from_column().desc(), Publication.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    return IndexPage(
        entries, page, pages, total, public_years(session, now), public_lists(session, now)
    )


def feed_entries(
    session: Session, now: datetime, *, list_slug: str | None = None, limit: int = FEED_SIZE
) -> list[Publication]:
    """The newest public releases (of one list), for a feed."""
    page = index(session, now, list_slug=list_slug, per_page=limit)
    return page.entries if page is not None else []


def sitemap_entries(session: Session, now: datetime) -> list[Publication]:
    """Every public release (the sitemap names each of its language versions)."""
    return list(
        session.scalars(
            select(Publication)
            .options(_RELEASE)
            .where(state.public_condition(now))
            .order_by(state.visible_from_column().desc(), Publication.id.desc())
        )
    )


def at_url(session: Session, year: int, month: int, slug: str) -> Publication | None:
    """The publication a page URL names (in any state: the caller decides what it may see)."""
    return session.scalar(
        select(Publication)
        .options(_RELEASE)
        .where(Publication.slug == slug, Publication.year == year, Publication.month == month)
    )


# --- the releases themselves --------------------------------------------------------------------


def languages(release: Release) -> list[str]:
    """A stored release's languages, the default first."""
    return list(parsed(release).languages)


def variant_for(release: Release, wanted: str) -> str:
    """The language version a reader of `wanted` gets (the rule of the emails)."""
    return parsed(release).pick_language(wanted)


class _Parsed:
    """Parsed releases by content hash: a stored release never changes (a new text is a new
    row with a new hash), so each is parsed once per process, whatever database it came from."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.items: OrderedDict[tuple[str, str], SourceRelease] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, release: Release) -> SourceRelease:
        key = (release.slug, release.content_hash)
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
                return found
        parsed = release_from_sources(
            release.slug,
            {lang: v["source"] for lang, v in release.variants.items()},
            release.default_language,
        )
        with self.lock:
            self.items[key] = parsed
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return parsed


_PARSED = _Parsed()


def parsed(release: Release) -> SourceRelease:
    """The stored release as mailer.releases.source reads it (cached by content hash)."""
    return _PARSED.get(release)
