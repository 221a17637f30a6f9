"""Signed /l/ (link) and /o/ (open) tokens: campaign, link and, where allowed, the reader.

A link token is `CAMPAIGN.LINK.CONTACT.SIG` (decimal ids, CONTACT 0 when the click names nobody)
and an open token `CAMPAIGN.LANGUAGE.CONTACT.SIG`. They follow mailer.tokens' rules (a key of
their own derived from `secret_key`, one 404 for every forged or altered token, canonical text
only: no leading zeros, no other characters), but not its itsdangerous encoding: a message to a
press list carries one token per link, built per recipient on the hot path, so the signature is
made cheap.

SIG is 12 characters of URL-safe base64: 72 bits cut from a keyed BLAKE2b digest of
(campaign, language, contact, block). One 63-byte digest signs 7 links (positions 7b..7b+6 of
the variant, slice p % 7), so a message with 20 links costs 3 hashes, not 20. Every slice is an
independent part of a pseudo-random function's output: holding the token of one link says
nothing of another link's. The verifier finds language and position from the link's row (a
link id names exactly one (campaign, language, position)), so altering the link, the contact or
the campaign changes the digest it must match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

from mailer.config import Settings
from mailer.errors import ConfigError, TokenError

SALT = b"mailer.click.v1"
PER_BLOCK = 7  # 63 bytes = 7 signatures of 9 bytes (12 base64 characters, no padding)
SIG_CHARS = 12
_ID = r"(0|[1-9][0-9]{0,11})"
_LINK = re.compile(rf"{_ID}\.{_ID}\.{_ID}\.([A-Za-z0-9_-]{{{SIG_CHARS}}})")
_OPEN = re.compile(
    rf"{_ID}\.([a-z]{{2,3}}(?:-[a-z0-9]{{1,8}}){{0,3}})\.{_ID}\.([A-Za-z0-9_-]{{{SIG_CHARS}}})"
)


@dataclass(frozen=True)
class LinkToken:
    campaign_id: int
    link_id: int
    contact_id: int | None  # None: the click names nobody
    signature: str


@dataclass(frozen=True)
class OpenToken:
    campaign_id: int
    language: str
    contact_id: int | None


def derive_key(secret_key: str) -> bytes:
    if not secret_key:
        raise ConfigError("secret_key is empty: set it in mailer.toml (mailer init makes one)")
    return hmac.new(secret_key.encode(), SALT, hashlib.sha256).digest()


class ClickSigner:
    """Signs and checks link and open tokens with the installation's key (derived once)."""

    def __init__(self, secret_key: str) -> None:
        self._hash = hashlib.blake2b(key=derive_key(secret_key), digest_size=63)
        self._open = hashlib.blake2b(key=derive_key(secret_key), digest_size=9, person=b"open")

    def block(self, prefix: bytes, index: int) -> str:
        """84 base64 characters: the signatures of positions 7*index .. 7*index+6.
        `prefix` is b"CAMPAIGN.LANGUAGE.CONTACT." (see signatures)."""
        mac = self._hash.copy()
        mac.update(prefix + str(index).encode())
        return base64.urlsafe_b64encode(mac.digest()).decode("ascii")

    def signatures(self, campaign_id: int, language: str, contact: str, count: int) -> list[str]:
        """The signatures of positions 0..count-1 for this reader ("0": nobody)."""
        prefix = f"{campaign_id}.{language}.{contact}.".encode()
        out: list[str] = []
        for index in range((count + PER_BLOCK - 1) // PER_BLOCK):
            text = self.block(prefix, index)
            out += [text[i : i + SIG_CHARS] for i in range(0, 84, SIG_CHARS)]
        return out[:count]

    def link_token(
        self, campaign_id: int, link_id: int, language: str, position: int, contact_id: int | None
    ) -> str:
        contact = str(contact_id or 0)
        sig = self.signatures(campaign_id, language, contact, position + 1)[position]
        return f"{campaign_id}.{link_id}.{contact}.{sig}"

    def check_link(self, token: LinkToken, language: str, position: int) -> None:
        """TokenError unless `token` was made for this link's language and position."""
        contact = str(token.contact_id or 0)
        prefix = f"{token.campaign_id}.{language}.{contact}.".encode()
        text = self.block(prefix, position // PER_BLOCK)
        start = position % PER_BLOCK * SIG_CHARS
        if not hmac.compare_digest(text[start : start + SIG_CHARS], token.signature):
            raise TokenError("invalid token")

    def open_token(self, campaign_id: int, language: str, contact_id: int | None) -> str:
        contact = str(contact_id or 0)
        sig = self.open_signature(campaign_id, language, contact)
        return f"{campaign_id}.{language}.{contact}.{sig}"

    def read_open(self, token: str) -> OpenToken:
        found = _OPEN.fullmatch(token)
        if found is None:
            raise TokenError("invalid token")
        campaign, language, contact, sig = found.groups()
        if campaign == "0" or not hmac.compare_digest(
            self.open_signature(int(campaign), language, contact), sig
        ):
            raise TokenError("invalid token")
        return OpenToken(int(campaign), language, int(contact) or None)

    def open_signature(self, campaign_id: int, language: str, contact: str) -> str:
        mac = self._open.copy()
        mac.update(f"{campaign_id}.{language}.{contact}".encode())
        return base64.urlsafe_b64encode(mac.digest()).decode("ascii")


def parse_link(token: str) -> LinkToken:
    """The token's parts, or TokenError unless it is exactly the text we write (its signature
    is checked against the link's row: ClickSigner.check_link)."""
    found = _LINK.fullmatch(token)
    if found is None:
        raise TokenError("invalid token")
    campaign, link, contact, sig = found.groups()
    if campaign == "0" or link == "0":
        raise TokenError("invalid token")
    return LinkToken(int(campaign), int(link), int(contact) or None, sig)


def signer(settings: Settings) -> ClickSigner:
    return ClickSigner(settings.secret_key)
