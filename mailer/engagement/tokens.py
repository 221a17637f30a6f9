"""Signed /l/ (link) and /o/ (open) tokens: campaign, link and, where allowed, the reader.

A link token is `CAMPAIGN.LINK.LINKSIG`; on a list that tracks people it goes on with
`.CONTACT.READERSIG` (CONTACT 0: a reader who switched it off). An open token is
`CAMPAIGN.LANGUAGE.CONTACT.SIG` (CONTACT 0: nobody). They follow mailer.tokens' rules (a key
of their own derived from `secret_key`, one 404 for every forged or altered token, canonical
text only: no leading zeros, no padding, nothing else), but not its itsdangerous encoding: a
press list's message carries a token per link, built per recipient on the hot path.

Each SIG is 12 characters of URL-safe base64: 72 bits of a keyed BLAKE2b. LINKSIG signs
(campaign, link, whether a reader part follows) and is written into the variant once;
READERSIG signs (campaign, language, contact) and is the same after every link of one reader's
message, so a message costs one hash however many links it has (the per-recipient text is one
value: mailer.engagement.links). Cutting the reader part off is refused (LINKSIG says one must
follow); putting one genuine reader part after another genuine link part of the same message
gives the token that message already had for that link: no alteration yields a link, a
reader or a campaign that the emails did not carry. The link's language comes from its row.
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
SIG_CHARS = 12  # 9 bytes: base64 without padding, every character significant
_ID = r"[1-9][0-9]{0,11}"
_SIG = rf"[A-Za-z0-9_-]{{{SIG_CHARS}}}"
_LINK = re.compile(rf"({_ID})\.({_ID})\.({_SIG})(?:\.(0|{_ID})\.({_SIG}))?")
_LANGUAGE = r"[a-z]{2,3}(?:-[a-z0-9]{1,8}){0,3}"
_OPEN = re.compile(rf"({_ID})\.({_LANGUAGE})\.(0|{_ID})\.({_SIG})")


@dataclass(frozen=True)
class LinkToken:
    campaign_id: int
    link_id: int
    contact_id: int | None  # None: the click names nobody
    reader_signature: str  # "" without a reader part (a list that does not track people)
    personal: bool  # it has a reader part (CONTACT 0: a reader who switched tracking off)


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
        key = derive_key(secret_key)
        # One prepared hash per use (its `person` parameter keeps the uses apart), copied per
        # signature: the key is absorbed once.
        self._link = hashlib.blake2b(key=key, digest_size=9, person=b"mailer.link")
        self._reader = hashlib.blake2b(key=key, digest_size=9, person=b"mailer.reader")
        self._open = hashlib.blake2b(key=key, digest_size=9, person=b"mailer.open")

    @staticmethod
    def _sig(prepared: hashlib.blake2b, text: str) -> str:
        mac = prepared.copy()
        mac.update(text.encode())
        return base64.urlsafe_b64encode(mac.digest()).decode("ascii")

    def link_part(self, campaign_id: int, link_id: int, *, personal: bool) -> str:
        """`CAMPAIGN.LINK.LINKSIG`. `personal`: a reader part must follow (a list that tracks
        people), so a token with its reader part cut off is refused, not counted."""
        sig = self._sig(self._link, f"{campaign_id}.{link_id}.{'p' if personal else 'a'}")
        return f"{campaign_id}.{link_id}.{sig}"

    def reader_part(self, campaign_id: int, language: str, contact_id: int) -> str:
        """`.CONTACT.READERSIG`, appended to every link part of this reader's message
        (contact 0: a reader who switched per-person tracking off)."""
        sig = self._sig(self._reader, f"{campaign_id}.{language}.{contact_id}")
        return f".{contact_id}.{sig}"

    def link_token(
        self, campaign_id: int, link_id: int, language: str, contact_id: int | None
    ) -> str:
        """The token of one link: with a reader part when `contact_id` is not None (0: the
        reader part of someone who switched it off)."""
        token = self.link_part(campaign_id, link_id, personal=contact_id is not None)
        if contact_id is not None:
            token += self.reader_part(campaign_id, language, contact_id)
        return token

    def read_link(self, token: str) -> LinkToken:
        """The token's parts once its link signature holds, or TokenError (the reader's is
        checked with the link's language: check_reader)."""
        found = _LINK.fullmatch(token)
        if found is None:
            raise TokenError("invalid token")
        campaign, link, sig, contact, reader_sig = found.groups()
        mode = "a" if contact is None else "p"
        if not hmac.compare_digest(self._sig(self._link, f"{campaign}.{link}.{mode}"), sig):
            raise TokenError("invalid token")
        return LinkToken(
            int(campaign),
            int(link),
            int(contact) or None if contact else None,
            reader_sig or "",
            contact is not None,
        )

    def check_reader(self, token: LinkToken, language: str) -> None:
        """TokenError unless the reader part was made for this campaign and language."""
        if not token.personal:
            return
        contact = token.contact_id or 0
        expected = self._sig(self._reader, f"{token.campaign_id}.{language}.{contact}")
        if not hmac.compare_digest(expected, token.reader_signature):
            raise TokenError("invalid token")

    def open_signature(self, campaign_id: int, language: str, contact: str) -> str:
        return self._sig(self._open, f"{campaign_id}.{language}.{contact}")

    def open_token(self, campaign_id: int, language: str, contact_id: int | None) -> str:
        contact = str(contact_id or 0)
        sig = self.open_signature(campaign_id, language, contact)
        return f"{campaign_id}.{language}.{contact}.{sig}"

    def read_open(self, token: str) -> OpenToken:
        found = _OPEN.fullmatch(token)
        if found is None:
            raise TokenError("invalid token")
        campaign, language, contact, sig = found.groups()
        if not hmac.compare_digest(self.open_signature(int(campaign), language, contact), sig):
            raise TokenError("invalid token")
        return OpenToken(int(campaign), language, int(contact) or None)


def signer(settings: Settings) -> ClickSigner:
    return ClickSigner(settings.secret_key)
