"""Email addresses: validation and normalisation with email-validator, in one place."""

from __future__ import annotations

from dataclasses import dataclass

import idna
from email_validator import EmailNotValidError, validate_email

from mailer.errors import InvalidInputError


@dataclass(frozen=True)
class Address:
    """A validated address: `key` is the unique, lower-cased normal form; `original` as typed."""

    key: str
    original: str
    ascii: str | None  # the ASCII form (IDNA domain) when the local part is ASCII; else None

    @property
    def needs_smtputf8(self) -> bool:
        return self.ascii is None


def normalise(value: str, *, check_dns: bool = False) -> Address:
    """Validate `value` and return its normal form, or raise InvalidInputError saying why."""
    original = value.strip()
    if not original:
        raise InvalidInputError("not an email address: empty")
    try:
        info = validate_email(original, check_deliverability=check_dns)
    except EmailNotValidError as err:
        raise InvalidInputError(f"not an email address: {original!r} ({err})") from None
    key = info.normalized.lower()
    ascii_form = info.ascii_email.lower() if info.ascii_email else None
    return Address(key=key, original=original, ascii=ascii_form)


def smtp_form(key: str) -> tuple[str, bool]:
    """The address to give the SMTP server and whether it needs SMTPUTF8."""
    local, _, domain = key.rpartition("@")
    try:
        local.encode("ascii")
    except UnicodeEncodeError:
        return key, True
    try:
        domain.encode("ascii")
        return key, False
    except UnicodeEncodeError:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}", False


def mask(key: str) -> str:
    """A partly hidden address for pages a stranger might see: r******@example.org."""
    local, _, domain = key.rpartition("@")
    if len(local) <= 2:
        shown = local[:1] + "*" * max(1, len(local) - 1)
    else:
        shown = local[0] + "*" * (len(local) - 2) + local[-1]
    return f"{shown}@{domain}"


def verp_encode(bounce_address: str, recipient: str) -> str:
    """bounces@example.org + kim@news.kr -> bounces+kim=news.kr@example.org (VERP)."""
    local, _, domain = bounce_address.rpartition("@")
    r_local, _, r_domain = recipient.rpartition("@")
    return f"{local}+{r_local}={r_domain}@{domain}"


def verp_decode(bounce_address: str, envelope_to: str) -> str | None:
    """The recipient encoded in a VERP address for `bounce_address`, or None."""
    local, _, domain = bounce_address.rpartition("@")
    e_local, _, e_domain = envelope_to.rpartition("@")
    if e_domain.lower() != domain.lower() or not e_local.lower().startswith(local.lower() + "+"):
        return None
    encoded = e_local[len(local) + 1:]
    r_local, sep, r_domain = encoded.rpartition("=")
    if not sep or not r_local or not r_domain:
        return None
    return f"{r_local}@{r_domain}".lower()
