"""What the public may read: the index (filtered, a page at a time), feed entries, the sitemap.

Every query here is bounded by `state.public_condition(now)`, so nothing that is not public yet
is ever counted, listed or linked; a release page's own check is `state.is_public`. Per-list
indexes and feeds exist only for lists that keep an archive (`archive = true`) and have a public
release: a member-only list never shows, not even its name.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, SQLColumnExpression, String, cast, func, literal, select
from sqlalchemy.orm import Session, selectinload

from mailer.media.store import stored_release
from mailer.newsroom import state
from mailer.releases.languages import choose
from mailer.releases.source import Release as SourceRelease
from mailer.store.models import MailingList, Publication, Release

PER_PAGE = 20
FEED_SIZE = 20
# A list of releases loads each one's title and hash, not its sources (kilobytes of text each):
# the parsed release is kept by content hash (`parsed`), so its sources are read once.
_RELEASE = selectinload(Publication.release).defer(Release.variants)


@dataclass(frozen=True)
class IndexPage:
    """One page of the index: its releases (newest first) and what the filters may offer."""

    entries: list[Publication]
    page: int
    pages: int
    total: int
    years: list[int]
    lists: list[MailingList]


def _in_list(slug: str | SQLColumnExpression[str]) -> ColumnElement[bool]:
    # `lists` is a JSON array of slugs; a slug has no quote and its only LIKE wildcard is "_"
    # (contacts/slugs.py), so the quoted slug is found in the JSON text on every engine.
    escaped = slug.replace("_", "\\_") if isinstance(slug, str) else func.replace(slug, "_", "\\_")
    pattern = literal('%"') + escaped + literal('"%')
    return cast(Publication.lists, String).like(pattern, escape="\\")


def public_lists(session: Session, now: datetime) -> list[MailingList]:
    """Lists that keep an archive and have at least one public release (one query)."""
    public_release = (
        select(Publication.id).where(state.public_condition(now), _in_list(MailingList.slug))
    ).exists()
    return list(
        session.scalars(
            select(MailingList)
            .where(MailingList.archive.is_(True), public_release)
            .order_by(MailingList.slug)
        )
    )


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
    if list_slug is not None:
        where.append(_in_list(list_slug))
    # One grouped count gives the years to offer and the number of pages.
    by_year: dict[int, int] = {
        y: n
        for y, n in session.execute(
            select(Publication.year, func.count()).where(*where).group_by(Publication.year)
        )
    }
    total = by_year.get(year, 0) if year is not None else sum(by_year.values())
    pages = max(1, -(-total // per_page))
    if page < 1 or page > pages:
        return None
    if year is not None:
        where.append(Publication.year == year)
    entries = _newest(session, where, (page - 1) * per_page, per_page)
    years = sorted(by_year, reverse=True)
    return IndexPage(entries, page, pages, total, years, public_lists(session, now))


def _newest(
    session: Session, where: list[ColumnElement[bool]], offset: int, limit: int
) -> list[Publication]:
    return list(
        session.scalars(
            select(Publication)
            .options(_RELEASE)
            .where(*where)
            .order_by(state.visible_from_column().desc(), Publication.id.desc())
            .offset(offset)
            .limit(limit)
        )
    )


def feed_entries(
    session: Session, now: datetime, *, list_slug: str | None = None, limit: int = FEED_SIZE
) -> list[Publication]:
    """The newest public releases (of one list), for a feed."""
    where = [state.public_condition(now)]
    if list_slug is not None:
        where.append(_in_list(list_slug))
    return _newest(session, where, 0, limit)


def sitemap_entries(session: Session, now: datetime) -> list[Publication]:
    """Every public release (the sitemap names each of its language versions)."""
    entries = list(
        session.scalars(
            select(Publication)
            .options(_RELEASE)
            .where(state.public_condition(now))
            .order_by(state.visible_from_column().desc(), Publication.id.desc())
        )
    )
    know_languages(session, [pub.release for pub in entries])
    return entries


def at_url(session: Session, year: int, month: int, slug: str) -> Publication | None:
    """The publication a page URL names (in any state: the caller decides what it may see)."""
    return session.scalar(
        select(Publication)
        .options(_RELEASE)
        .where(Publication.slug == slug, Publication.year == year, Publication.month == month)
    )


# --- the releases themselves --------------------------------------------------------------------


# Each release version's languages, by (slug, content hash): a few bytes each, so many are kept.
_LANGUAGES: dict[tuple[str, str], tuple[str, ...]] = {}
_LANGUAGES_KEPT = 100_000


def _ordered(default: str, variants: Iterable[str]) -> tuple[str, ...]:
    return (default, *sorted(lang for lang in variants if lang != default))


def languages(release: Release) -> list[str]:
    """A stored release's languages, the default first (its sources are read the first time)."""
    key = (release.slug, release.content_hash)
    found = _LANGUAGES.get(key)
    if found is None:
        found = _ordered(release.default_language, release.variants)
        _remember(key, found)
    return list(found)


def _remember(key: tuple[str, str], value: tuple[str, ...]) -> None:
    if len(_LANGUAGES) >= _LANGUAGES_KEPT:
        _LANGUAGES.clear()  # a process that saw this many versions starts afresh
    _LANGUAGES[key] = value


def know_languages(session: Session, releases: Iterable[Release]) -> None:
    """Learn the languages of every release not known yet in one query (the sitemap's
    thousand releases, not a thousand queries)."""
    missing = {r.id: r for r in releases if (r.slug, r.content_hash) not in _LANGUAGES}
    if not missing:
        return
    for release_id, variants in session.execute(
        select(Release.id, Release.variants).where(Release.id.in_(list(missing)))
    ):
        release = missing[release_id]
        _remember(
            (release.slug, release.content_hash), _ordered(release.default_language, variants)
        )


def variant_for(release: Release, wanted: str) -> str:
    """The language version a reader of `wanted` gets (the rule of the emails)."""
    return choose(wanted, languages(release), release.default_language)


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
        # With the press-kit files planned with it (mailer.media: photos, Downloads).
        parsed = stored_release(release)
        with self.lock:
            self.items[key] = parsed
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return parsed


_PARSED = _Parsed()


def parsed(release: Release) -> SourceRelease:
    """The stored release as mailer.releases.source reads it (cached by content hash)."""
    return _PARSED.get(release)
