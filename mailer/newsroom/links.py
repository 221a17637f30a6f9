"""The newsroom's URLs, and its two signed links.

- A preview link (`mailer news preview-link`) names one publication and an expiry; staff share
  it before the embargo lifts. Its page is marked EMBARGOED and never cached.
- A view link names one campaign (never a recipient, so a forwarded message leaks nothing of its
  reader): every message's "view in browser" link where the public page cannot serve, because
  the release is kept off the newsroom or the message goes out before its embargo.

Both are HMAC-signed with the secret key, each with a salt of its own, so neither opens the
other nor any subscriber page. A token must be exactly what we wrote (signing is
deterministic, so it is signed again and compared); anything else is a TokenError, which every
page answers with the same 404.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import object_session

from mailer.config import Settings
from mailer.errors import ConfigError, InvalidInputError, TokenError
from mailer.newsroom import state
from mailer.store.models import Campaign, Publication

PREVIEW = "mailer.newsroom.preview.v1"
VIEW = "mailer.newsroom.view.v1"
# A preview link is for the days before an embargo, not a second, private newsroom.
MAX_PREVIEW_HOURS = 24 * 30


def _serializer(settings: Settings, salt: str) -> URLSafeSerializer:
    if not settings.secret_key:
        raise ConfigError("secret_key is empty: set it in mailer.toml (mailer init makes one)")
    return URLSafeSerializer(settings.secret_key, salt=salt)


def _load(settings: Settings, salt: str, token: str) -> object:
    serializer = _serializer(settings, salt)
    try:
        payload = serializer.loads(token)
    except (BadSignature, ValueError, TypeError, UnicodeError):
        raise TokenError("invalid token") from None
    # Base64 forgives padding and unused bits: only the text we wrote opens a page.
    if not hmac.compare_digest(str(serializer.dumps(payload)).encode(), token.encode()):
        raise TokenError("invalid token")
    return payload


# --- paths and URLs -----------------------------------------------------------------------------


def root(settings: Settings) -> str:
    """The newsroom's path (the `newsroom_path` setting, no final /)."""
    return settings.newsroom_path.rstrip("/")


def absolute(settings: Settings, path: str) -> str:
    """A path of ours as the public URL (base_url in front)."""
    return settings.base_url.rstrip("/") + path


def page_path(settings: Settings, pub: Publication, language: str) -> str:
    """/news/2026/11/election-night/ko: stable, readable, one per release and language."""
    return f"{root(settings)}/{pub.year:04d}/{pub.month:02d}/{quote(pub.slug)}/{language}"


def page_url(settings: Settings, pub: Publication, language: str) -> str:
    return absolute(settings, page_path(settings, pub, language))


def index_path(settings: Settings, language: str) -> str:
    return f"{root(settings)}/{language}/"


def feed_path(settings: Settings, language: str, list_slug: str | None = None) -> str:
    if list_slug is None:
        return f"{root(settings)}/{language}/feed.atom"
    return f"{root(settings)}/{language}/lists/{quote(list_slug)}/feed.atom"


def sitemap_path(settings: Settings) -> str:
    return f"{root(settings)}/sitemap.xml"


def stylesheet_path(settings: Settings) -> str:
    return f"{root(settings)}/newsroom.css"


# --- preview links ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewGrant:
    """What a genuine, unexpired preview token allows: one publication's pages."""

    publication_id: int
    slug: str
    expires: datetime


def make_preview(settings: Settings, pub: Publication, hours: float, now: datetime) -> str:
    """A token that shows `pub` (whatever its state) until `hours` from `now`."""
    if not 0 < hours <= MAX_PREVIEW_HOURS:
        raise InvalidInputError(
            f"--hours: expected more than 0 and at most {MAX_PREVIEW_HOURS}, got {hours:g}"
        )
    expires = int((now + timedelta(hours=hours)).timestamp())
    return str(_serializer(settings, PREVIEW).dumps([pub.id, pub.slug, expires]))


def read_preview(settings: Settings, token: str, now: datetime) -> PreviewGrant:
    """The grant of a preview token; TokenError when forged, altered or expired."""
    payload = _load(settings, PREVIEW, token)
    if not isinstance(payload, list) or len(payload) != 3:
        raise TokenError("invalid token")
    pub_id, slug, expires = payload
    if not isinstance(pub_id, int) or not isinstance(slug, str) or not isinstance(expires, int):
        raise TokenError("invalid token")
    until = datetime.fromtimestamp(expires, UTC)
    if now >= until:
        raise TokenError("this preview link has expired")
    return PreviewGrant(pub_id, slug, until)


def preview_grants(settings: Settings, token: str, pub: Publication, now: datetime) -> bool:
    """Does `token` open this publication's preview now? (False for any other release.)"""
    try:
        grant = read_preview(settings, token, now)
    except TokenError:
        return False
    return grant.publication_id == pub.id and grant.slug == pub.slug


def preview_path(settings: Settings, pub: Publication, language: str, token: str) -> str:
    return f"{root(settings)}/preview/{quote(pub.slug)}/{language}?key={token}"


def preview_url(settings: Settings, pub: Publication, language: str, token: str) -> str:
    return absolute(settings, preview_path(settings, pub, language, token))


# --- view-in-browser links ----------------------------------------------------------------------


def make_view(settings: Settings, campaign_id: int) -> str:
    """The view token of a campaign: the same for every one of its messages."""
    return str(_serializer(settings, VIEW).dumps([campaign_id]))


def read_view(settings: Settings, token: str) -> int:
    """The campaign a view token names; TokenError when forged or altered."""
    payload = _load(settings, VIEW, token)
    if not isinstance(payload, list) or len(payload) != 1 or not isinstance(payload[0], int):
        raise TokenError("invalid token")
    return payload[0]


def view_path(settings: Settings, token: str, language: str) -> str:
    return f"{root(settings)}/view/{token}/{language}"


def email_view_urls(
    settings: Settings, campaign: Campaign, languages: Iterable[str], *, early: bool
) -> dict[str, str]:
    """The "view in browser" URL of each language of a campaign's messages.

    The public page when the release is on the newsroom and the message goes out after its
    embargo; else the campaign's view link (a release kept off the newsroom, or a press copy
    sent before the lift, whose public page is still a 404)."""
    if not settings.newsroom:
        return {}  # no newsroom served: nothing to view
    session = object_session(campaign)
    pub = state.find(session, campaign.release.slug) if session is not None else None
    public = pub is not None and pub.publish and not early and pub.release_id == campaign.release_id
    if not public and not settings.secret_key:
        return {}  # nothing to sign with (a dry run without a key): no link
    token = "" if public else make_view(settings, campaign.id)
    out: dict[str, str] = {}
    for language in languages:
        if public:
            assert pub is not None
            out[language] = page_url(settings, pub, language)
        else:
            out[language] = absolute(settings, view_path(settings, token, language))
    return out
