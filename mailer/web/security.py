"""Response headers and the CSRF check of the preferences form.

CSRF: a double-submit value bound to the page's token. The form carries a signed, timed value
holding a random nonce and a digest of the preferences token; the same nonce is in an HttpOnly,
SameSite=Strict cookie. A POST is accepted only when the signature is good, the value is recent,
it was made for this very token and its nonce equals the cookie's (compared in constant time).
No server-side state and no dependency beyond itsdangerous.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

CSRF_SALT = "mailer.csrf.v1"
CSRF_COOKIE = "mailer_csrf"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 12 * 3600

_BASE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'"
)


def frame_ancestors(website: str) -> str:
    """Who may frame the embeddable form: the organisation's website, or anyone if unset."""
    parts = urlsplit(website) if website else None
    if parts and parts.scheme in ("http", "https") and parts.netloc:
        return f"'self' {parts.scheme}://{parts.netloc}"
    return "*"


def apply_headers(
    response: Response, *, embeddable: bool, website: str, https: bool, scripts: bool = False
) -> None:
    """Content-Security-Policy, framing, referrer and sniffing rules on every response.

    `scripts`: the console's pages, which load htmx and console.js from this origin (and
    nothing inline: no 'unsafe-inline', no 'unsafe-eval') and make htmx requests to it."""
    ancestors = frame_ancestors(website) if embeddable else "'none'"
    policy = _BASE_CSP + ("; script-src 'self'; connect-src 'self'" if scripts else "")
    response.headers["Content-Security-Policy"] = f"{policy}; frame-ancestors {ancestors}"
    if not embeddable:
        response.headers["X-Frame-Options"] = "DENY"
    # Token URLs must never leak to another site through Referer.
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if https:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    if response.mimetype == "text/html":
        # Pages carry personal tokens and addresses: never kept by shared caches.
        response.headers["Cache-Control"] = "no-store"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def make_csrf(secret_key: str, token: str, nonce: str) -> str:
    """The form value for `token`, bound to the cookie's `nonce`."""
    return URLSafeTimedSerializer(secret_key, salt=CSRF_SALT).dumps([nonce, _digest(token)])


def check_csrf(secret_key: str, token: str, value: str | None, cookie: str | None) -> bool:
    """True when `value` is a recent CSRF value made for `token` and for this cookie."""
    if not value or not cookie:
        return False
    try:
        nonce, digest = URLSafeTimedSerializer(secret_key, salt=CSRF_SALT).loads(
            value, max_age=CSRF_MAX_AGE
        )
    except (BadSignature, ValueError, TypeError):
        return False
    if not isinstance(nonce, str) or not isinstance(digest, str):
        return False
    same_token = hmac.compare_digest(digest.encode(), _digest(token).encode())
    same_nonce = hmac.compare_digest(nonce.encode(), cookie.encode())
    return same_token and same_nonce
