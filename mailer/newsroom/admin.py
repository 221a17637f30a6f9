"""What staff see of the newsroom (`mailer news ls|show`) and the preview links they share.

Staff see every publication whatever its state (embargoed, kept off, withdrawn): this is never
served to the public.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.newsroom import catalog, links, state
from mailer.store.models import Publication


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def describe(settings: Settings, pub: Publication, now: datetime) -> dict[str, Any]:
    """One publication as `news show --json` prints it (the documented shape)."""
    release = pub.release
    languages = catalog.languages(release)
    return {
        "release": pub.slug,
        "title": release.title,
        "status": state.status(pub, now),
        "version": release.id,
        "content_hash": release.content_hash,
        "publish": pub.publish,
        "lists": list(pub.lists or []),
        "embargo": _iso(pub.embargo),
        "first_sent_at": _iso(pub.first_sent_at),
        "public_from": _iso(state.visible_from(pub)),
        "languages": languages,
        "urls": {code: links.page_url(settings, pub, code) for code in languages},
        "withdrawn_at": _iso(pub.withdrawn_at),
        "withdrawn_note": pub.withdrawn_note or None,
        "corrections": [
            {"at": note.at.isoformat(), "note": note.note, "update": note.update}
            for note in state.corrections(pub)
        ],
    }


def listing(session: Session, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Every publication, newest first, as `news ls --json` prints them."""
    return [describe(settings, pub, now) for pub in state.all_publications(session)]


def preview_links(
    session: Session, settings: Settings, slug: str, hours: float, now: datetime
) -> tuple[datetime, dict[str, str]]:
    """A signed preview link for each language of `slug`, valid `hours` from `now`."""
    pub = state.get(session, slug)
    token = links.make_preview(settings, pub, hours, now)
    grant = links.read_preview(settings, token, now)
    urls = {
        code: links.preview_url(settings, pub, code, token)
        for code in catalog.languages(pub.release)
    }
    return grant.expires, urls
