"""Email addresses: validation and normalisation with email-validator, in one place."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass

import idna

from mailer.errors import ConfigError, InvalidInputError


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
    # Imported here: email_validator compiles its grammar on import (~50 ms), and the models import
    # this module (mailbox_key) in every command, most of which validate no address.
    from email_validator import EmailNotValidError, validate_email  # noqa: PLC0415

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


# VERP: the recipient and the campaign are written into the envelope sender, with an HMAC of
# both, so a bounce sent to that address proves it is about a message mailer sent to that
# recipient. Anyone can mail `press+victim=example.com@...`; nobody without the secret key can
# write the tag. 16 base32 characters are 80 bits: far beyond guessing by mail.
_VERP_TAG = re.compile(r"^(\d{1,12})\.([a-z2-7]{16})$")


@dataclass(frozen=True)
class Verp:
    """What a VERP address says: the recipient, and the campaign when its tag is genuine."""

    email: str
    campaign_id: int | None
    signed: bool  # True only when the HMAC tag verified against the secret key


def verp_tag(secret_key: str, recipient: str, campaign_id: int) -> str:
    """`12.mfrggzdfmztwq2lk`: the campaign and an HMAC of (campaign, recipient)."""
    if not secret_key:
        raise ConfigError("verp needs a secret_key: set secret_key in mailer.toml")
    mac = _verp_hmac(secret_key).copy()
    mac.update(f"{campaign_id}:{recipient.lower()}".encode())
    return f"{campaign_id}.{base64.b32encode(mac.digest()[:10]).decode('ascii').lower()}"


@functools.lru_cache(maxsize=8)
def _verp_hmac(secret_key: str) -> hmac.HMAC:
    """The HMAC keyed for VERP tags, made once per key (copied per tag): every message sent and
    every bounce read makes or checks one, and keying an HMAC costs more than using it."""
    key = hmac.new(secret_key.encode(), b"mailer verp v1", hashlib.sha256).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def verp_encode(
    bounce_address: str, recipient: str, *, secret_key: str, campaign_id: int | None
) -> str:
    """bounces@example.org + kim@news.kr (campaign 12) -> bounces+kim=news.kr=12.TAG@example.org.

    `campaign_id` None (a confirmation email, no campaign) is written as 0.
    """
    local, _, domain = bounce_address.rpartition("@")
    r_local, _, r_domain = recipient.rpartition("@")
    tag = verp_tag(secret_key, recipient, campaign_id or 0)
    return f"{local}+{r_local}={r_domain}={tag}@{domain}"


def verp_decode(bounce_address: str, envelope_to: str, *, secret_key: str) -> Verp | None:
    """The recipient written in a VERP address for `bounce_address`, or None if it is not one.

    `signed` is True only when the tag is the HMAC of that recipient and campaign (compared in
    constant time); an old-style or hand-written address decodes with signed False.
    """
    local, _, domain = bounce_address.rpartition("@")
    e_local, _, e_domain = envelope_to.rpartition("@")
    if e_domain.lower() != domain.lower() or not e_local.lower().startswith(local.lower() + "+"):
        return None
    encoded = e_local[len(local) + 1 :]
    rest, sep, tag = encoded.rpartition("=")
    found = _VERP_TAG.match(tag.lower()) if sep else None
    if found is None:
        rest = encoded  # no tag: the old unsigned form, recipient only
    r_local, sep, r_domain = rest.rpartition("=")
    if not sep or not r_local or not r_domain:
        return None
    email = f"{r_local}@{r_domain}".lower()
    if found is None or not secret_key:
        return Verp(email, None, False)
    campaign_id = int(found.group(1))
    signed = hmac.compare_digest(verp_tag(secret_key, email, campaign_id), tag.lower())
    return Verp(email, (campaign_id or None) if signed else None, signed)


# Providers known to deliver every dot variant of a local part to one mailbox.
_DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_key(key: str) -> str:
    """The mailbox an address reaches: what rate limits and suppressions are keyed on.

    `victim+1@gmail.com`, `v.i.c.t.i.m@googlemail.com` and `victim@gmail.com` are one inbox, so
    they must share one limit and one suppression. A `+tag` is dropped for every domain (the
    common subaddress rule; at worst two people who differ only by a tag share a limit). Dots
    are dropped only where the provider ignores them (Gmail). Contacts stay keyed on the full
    address: this key only decides who is the same person for abuse and opt-out purposes.
    """
    local, _, domain = key.strip().lower().rpartition("@")
    base = local.split("+", 1)[0]
    if base:  # "+x@example.org" keeps its local part: there is nothing before the tag
        local = base
    if domain in _DOTLESS_DOMAINS:
        domain = _DOTLESS_DOMAINS[domain]
        local = local.replace(".", "") or local
    return f"{local}@{domain}"
