"""DKIM: signing every message mailer sends (RFC 6376) and making the key and its DNS record.

Which headers are signed is the point (DKIM_HEADERS): every header a reader sees or a receiver
judges by, each signed once more than present, so that a replayed, validly signed release cannot
have its Reply-To or Subject replaced or a second From added.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.private import write_private

DKIM_HEADERS = (
    b"from",
    b"reply-to",
    b"subject",
    b"date",
    b"message-id",
    b"to",
    b"mime-version",
    b"content-type",
    b"content-language",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"feedback-id",
    b"auto-submitted",
)
_HEADER_NAME = re.compile(rb"^([A-Za-z0-9-]+):", re.MULTILINE)
# A selector as receivers look it up: ASCII DNS labels separated by dots (RFC 6376 3.1).
_SELECTOR = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def oversigned(message: bytes) -> list[bytes]:
    """DKIM_HEADERS, each named once more than the message holds it (RFC 6376 section 8.15):
    the extra, empty instance is signed too, so a copy added later (a second Reply-To, From or
    Subject that a reader might show) breaks the signature."""
    head = message.split(b"\n\n", 1)[0]
    present: dict[bytes, int] = {}
    for found in _HEADER_NAME.findall(head):
        key = found.lower()
        present[key] = present.get(key, 0) + 1
    return [name for name in DKIM_HEADERS for _ in range(present.get(name, 0) + 1)]


def dkim_signer(settings: Settings, from_address: str) -> Callable[[bytes], bytes] | None:
    """A function returning the DKIM-Signature header for a message, or None without a key."""
    if settings.dkim_key_file is None:
        return None
    # Lazy: dkimpy loads dnspython (~100 modules); only a configured DKIM key needs it.
    import dkim  # noqa: PLC0415

    domain = (settings.dkim_domain or from_address.rpartition("@")[2]).lower()
    from_domain = from_address.rpartition("@")[2].lower()
    if from_domain != domain and not from_domain.endswith("." + domain):
        raise ConfigError(
            f"From address {from_address!r} is outside the DKIM domain {domain!r}: receivers "
            "would not align the signature with From (DMARC). Set dkim_domain or from_address."
        )
    if not _SELECTOR.fullmatch(settings.dkim_selector):
        # The selector is written raw into s=: a ";" would add a tag, a space or non-ASCII
        # names a key no receiver finds.
        raise ConfigError(
            f"dkim_selector {settings.dkim_selector!r}: expected a DNS name (letters, digits, "
            "hyphens and dots), such as `mailer dkim keygen` uses"
        )
    key = _read_key(settings.dkim_key_file)
    selector = settings.dkim_selector.encode()

    def sign(message: bytes) -> bytes:
        sig: bytes = dkim.sign(
            message.replace(b"\n", b"\r\n"),
            selector,
            domain.encode(),
            key,
            include_headers=oversigned(message),
            canonicalize=(b"relaxed", b"relaxed"),
        )
        return sig.replace(b"\r\n", b"\n")

    return sign


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigError(f"dkim_key_file {path}: cannot read: {err.strerror}") from None


@dataclass(frozen=True)
class DkimRecord:
    """The DNS TXT record publishing a DKIM public key, in the forms DNS tools take."""

    selector: str
    domain: str
    value: str  # "v=DKIM1; k=rsa; p=...", over 255 octets for a 2048-bit key

    @property
    def name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}."

    def strings(self) -> list[str]:
        """The value cut into DNS character-strings of at most 255 octets (RFC 1035 3.3):
        a TXT record holds several, and readers join them with nothing between."""
        return [self.value[i : i + 255] for i in range(0, len(self.value), 255)]

    def zone_form(self) -> str:
        """For a zone file (BIND, nsd, knot): the strings in parentheses, one a line."""
        quoted = "\n".join(f'    "{part}"' for part in self.strings())
        return f"{self.name} IN TXT (\n{quoted} )"


def generate_dkim_key(path: Path, selector: str, domain: str, bits: int = 2048) -> DkimRecord:
    """Write a new RSA private key (PEM, mode 0600) and return the DNS TXT record to publish."""
    # Lazy: cryptography is needed only by `mailer dkim keygen`.
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    if path.exists():
        raise ConfigError(f"{path} already exists; not overwriting a key")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_private(path, pem)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; not overwriting a key") from None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    p = binascii.b2a_base64(public, newline=False).decode()
    return DkimRecord(selector, domain.rstrip(".").lower(), f"v=DKIM1; k=rsa; p={p}")
