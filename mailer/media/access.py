"""Who may fetch a stored file at /media/SHA256/NAME: the embargo holds for photos too.

A file is served when the name is the one it was stored under and at least one release using it
(release_media) is public in the newsroom (mailer.newsroom.state: published, not withdrawn, its
embargo lifted and first sent). Before that, and for a release kept off the newsroom, two signed
keys open the files of one release:

- `?preview=KEY`: the newsroom's preview link (`mailer news preview-link`), which expires; its
  page carries the key on every file URL (`grant_page`).
- `?k=GRANT`: a grant for one release, on every file URL of every message (campaigns and test
  sends) and of the view-in-browser page, so a message's photos show whatever the newsroom
  shows: a press copy sent before the embargo, a release kept off the newsroom. A grant never
  expires (an email is kept for years) but stops with the release's withdrawal. The
  newsroom's public pages link the plain URLs.

Anything else is a 404, the same as for a file that does not exist.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import datetime

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.errors import ConfigError, TokenError
from mailer.media.refs import MEDIA_PATH, with_query
from mailer.newsroom import links, state
from mailer.releases.source import Release
from mailer.store.models import MediaFile, Publication, ReleaseMedia

GRANT = "mailer.media.grant.v1"
_SHA = re.compile(r"[0-9a-f]{64}")


def _serializer(settings: Settings) -> URLSafeSerializer:
    if not settings.secret_key:
        raise ConfigError("secret_key is empty: set it in mailer.toml (mailer init makes one)")
    return URLSafeSerializer(settings.secret_key, salt=GRANT)


def make_grant(settings: Settings, slug: str) -> str:
    """The key that opens the files of release `slug` before it is public."""
    return str(_serializer(settings).dumps([slug]))


def read_grant(settings: Settings, token: str) -> str:
    """The release slug a grant names; TokenError when forged or altered."""
    serializer = _serializer(settings)
    try:
        payload = serializer.loads(token)
    except (BadSignature, ValueError, TypeError, UnicodeError):
        raise TokenError("invalid token") from None
    # Only the exact text we wrote (base64 forgives padding and unused bits).
    if not hmac.compare_digest(str(serializer.dumps(payload)).encode(), token.encode()):
        raise TokenError("invalid token")
    if not isinstance(payload, list) or len(payload) != 1 or not isinstance(payload[0], str):
        raise TokenError("invalid token")
    return payload[0]


def granted(settings: Settings, release: Release) -> Release:
    """`release` as messages link its files: its grant on every file URL."""
    if not settings.secret_key or not any(v.media for v in release.variants.values()):
        return release
    return with_query(release, f"k={make_grant(settings, release.slug)}")


def grant_page(page: str, settings: Settings, query: str) -> str:
    """A page's links to our files with `?query` added (a preview or view-in-browser page,
    rendered once with the public URLs)."""
    base = re.escape(settings.base_url.rstrip("/") + MEDIA_PATH)
    pattern = re.compile(rf"({base}/[0-9a-f]{{64}}/[^\s\"'<>?#]+)(?:\?k=[A-Za-z0-9._-]+)?")
    return pattern.sub(lambda m: f"{m.group(1)}?{query}", page)


@dataclass(frozen=True)
class Servable:
    """A file /media/ may send, and whether to anyone (public) or only to a key's holder."""

    file: MediaFile
    public: bool


def servable(
    session: Session,
    settings: Settings,
    sha256: str,
    name: str,
    now: datetime,
    *,
    grant: str = "",
    preview: str = "",
) -> Servable | None:
    """The file at /media/`sha256`/`name` if it may be sent now, else None (a 404)."""
    if not _SHA.fullmatch(sha256):
        return None
    row = session.get(MediaFile, sha256)
    if row is None or row.name != name:
        return None  # the name is part of the address: another file's name is no way in
    slugs = set(
        session.scalars(select(ReleaseMedia.release_slug).where(ReleaseMedia.sha256 == sha256))
    )
    if not slugs:
        return None
    public = session.scalar(
        select(Publication.id)
        .where(Publication.slug.in_(slugs), state.public_condition(now))
        .limit(1)
    )
    if public is not None:
        return Servable(row, True)
    if grant and _grant_opens(session, settings, grant, slugs):
        return Servable(row, False)
    if preview and _preview_opens(session, settings, preview, slugs, now):
        return Servable(row, False)
    return None


def _grant_opens(session: Session, settings: Settings, grant: str, slugs: set[str]) -> bool:
    try:
        slug = read_grant(settings, grant)
    except TokenError:
        return False
    if slug not in slugs:
        return False
    pub = state.find(session, slug)
    return pub is None or pub.withdrawn_at is None


def _preview_opens(
    session: Session, settings: Settings, key: str, slugs: set[str], now: datetime
) -> bool:
    try:
        grant = links.read_preview(settings, key, now)
    except TokenError:
        return False
    pub = session.get(Publication, grant.publication_id)
    return (
        pub is not None
        and pub.slug == grant.slug
        and pub.slug in slugs
        and pub.withdrawn_at is None
    )
