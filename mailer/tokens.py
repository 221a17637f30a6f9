"""Signed tokens for the links in every message: unsubscribe, confirm, preferences.

HMAC-signed with itsdangerous, one salt per purpose so a token for one page never opens another.
Unsubscribe and preferences tokens never expire (a years-old message must still unsubscribe);
confirmation tokens expire after `confirm_max_age`. Any forged, altered or expired token raises
TokenError, and the web app answers every such case with the same 404. "Altered" includes any
text but the one we wrote: base64 decoders forgive padding, stray characters and unused bits, so
a token is first checked to be exactly the canonical encoding of what it decodes to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from itsdangerous import (
    BadData,
    BadSignature,
    SignatureExpired,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_decode, base64_encode

from mailer.config import Settings
from mailer.errors import ConfigError, TokenError

UNSUBSCRIBE = "mailer.unsubscribe.v1"
PREFERENCES = "mailer.preferences.v1"
CONFIRM = "mailer.confirm.v1"


@dataclass(frozen=True)
class UnsubscribeToken:
    contact_id: int
    list_id: int | None  # None: the message was not sent for one list (e.g. a confirmation)
    campaign_id: int | None


@dataclass(frozen=True)
class ConfirmToken:
    contact_id: int
    list_ids: tuple[int, ...]


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _check_canonical(token: str) -> None:
    """TokenError unless `token` is exactly as itsdangerous writes it (no '=', no other bytes)."""
    # A leading "." marks a compressed payload; then payload[.timestamp].signature.
    parts = (token[1:] if token.startswith(".") else token).split(".")
    if len(parts) < 2:
        raise TokenError("invalid token")
    for part in parts:
        if not _SEGMENT.fullmatch(part):
            raise TokenError("invalid token")
        try:
            same = base64_encode(base64_decode(part)) == part.encode("ascii")
        except BadData:
            same = False
        if not same:
            raise TokenError("invalid token")


def _key(settings: Settings) -> str:
    if not settings.secret_key:
        raise ConfigError("secret_key is empty: set it in mailer.toml (mailer init makes one)")
    return settings.secret_key


def make_unsubscribe(
    settings: Settings, contact_id: int, list_id: int | None, campaign_id: int | None = None
) -> str:
    data = [contact_id, list_id, campaign_id]
    return URLSafeSerializer(_key(settings), salt=UNSUBSCRIBE).dumps(data)


def read_unsubscribe(settings: Settings, token: str) -> UnsubscribeToken:
    _check_canonical(token)
    try:
        data = URLSafeSerializer(_key(settings), salt=UNSUBSCRIBE).loads(token)
        contact_id, list_id, campaign_id = data
        return UnsubscribeToken(int(contact_id), _opt_int(list_id), _opt_int(campaign_id))
    except (BadSignature, ValueError, TypeError):
        raise TokenError("invalid token") from None


def make_preferences(settings: Settings, contact_id: int) -> str:
    return URLSafeSerializer(_key(settings), salt=PREFERENCES).dumps([contact_id])


def read_preferences(settings: Settings, token: str) -> int:
    _check_canonical(token)
    try:
        (contact_id,) = URLSafeSerializer(_key(settings), salt=PREFERENCES).loads(token)
        return int(contact_id)
    except (BadSignature, ValueError, TypeError):
        raise TokenError("invalid token") from None


def make_confirm(settings: Settings, contact_id: int, list_ids: tuple[int, ...]) -> str:
    return URLSafeTimedSerializer(_key(settings), salt=CONFIRM).dumps([contact_id, list(list_ids)])


def read_confirm(settings: Settings, token: str, *, max_age: int | None = None) -> ConfirmToken:
    """Raises TokenExpiredError (a TokenError) for an old but genuine token."""
    _check_canonical(token)
    serializer = URLSafeTimedSerializer(_key(settings), salt=CONFIRM)
    try:
        contact_id, list_ids = serializer.loads(
            token, max_age=settings.confirm_max_age if max_age is None else max_age
        )
        return ConfirmToken(int(contact_id), tuple(int(x) for x in list_ids))
    except SignatureExpired as err:
        try:
            contact_id, list_ids = serializer.loads_unsafe(token)[1]
            expired = ConfirmToken(int(contact_id), tuple(int(x) for x in list_ids))
        except (ValueError, TypeError):
            raise TokenError("invalid token") from None
        raise TokenExpiredError(expired) from err
    except (BadSignature, ValueError, TypeError):
        raise TokenError("invalid token") from None


class TokenExpiredError(TokenError):
    """A genuine confirmation token past its age; carries what it said, to offer a new email."""

    def __init__(self, token: ConfirmToken) -> None:
        super().__init__("this link has expired")
        self.token = token


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/u/{token}"


def preferences_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/preferences/{token}"


def confirm_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url.rstrip('/')}/confirm/{token}"


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an int")
    return value
