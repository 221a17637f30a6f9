"""Two-factor sign-in: TOTP codes (RFC 6238, 30 s steps, 6 digits) and one-time recovery codes.

A code is accepted for the current step and one step either side (clock drift), and only for
a step later than the last one accepted: a code read over a shoulder or replayed from a log is
refused. Recovery codes are 10 random groups shown once; only their SHA-256 is kept, and each
works once.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
from xml.etree import ElementTree

import pyotp
import qrcode
import qrcode.image.svg

from mailer import clock
from mailer.store.models import StaffUser

ElementTree.register_namespace("", "http://www.w3.org/2000/svg")

ISSUER = "mailer"
RECOVERY_COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper without doubt


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(user: StaffUser, secret: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no imaging library, no script, no data: URL needed)."""
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, border=2)
    out = io.BytesIO()
    image.save(out)
    root = ElementTree.fromstring(out.getvalue())
    root.set("role", "img")
    root.set("aria-label", "QR code")
    return ElementTree.tostring(root, encoding="unicode")


def _normalise(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace() and ch != "-").lower()


def check_code(user: StaffUser, code: str, *, secret: str | None = None) -> bool:
    """True when `code` is a fresh TOTP code for the user's secret (records the step used)."""
    key = secret or user.totp_secret
    code = _normalise(code)
    if not key or len(code) != 6 or not code.isdigit():
        return False
    totp = pyotp.TOTP(key)
    now = clock.now()
    step = int(now.timestamp()) // totp.interval
    for candidate in (step - 1, step, step + 1):
        if candidate <= (user.totp_last_step or 0):
            continue
        expected = totp.generate_otp(candidate)
        if hmac.compare_digest(expected, code):
            user.totp_last_step = candidate
            return True
    return False


def new_recovery_codes() -> tuple[list[str], list[str]]:
    """(codes to show once, digests to keep)."""
    codes = [
        "-".join("".join(secrets.choice(_ALPHABET) for _ in range(5)) for _ in range(2))
        for _ in range(RECOVERY_COUNT)
    ]
    return codes, [_digest(c) for c in codes]


def _digest(code: str) -> str:
    return hashlib.sha256(_normalise(code).encode()).hexdigest()


def use_recovery_code(user: StaffUser, code: str) -> bool:
    """True when `code` is one of the user's unused recovery codes; it is then used up."""
    if not code or len(code) > 40:
        return False
    wanted = _digest(code)
    kept = list(user.recovery_codes or [])
    for i, digest in enumerate(kept):
        if hmac.compare_digest(digest, wanted):
            del kept[i]
            user.recovery_codes = kept
            return True
    return False
