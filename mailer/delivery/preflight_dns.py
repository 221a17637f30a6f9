"""The DNS side of the preflight: a small wrapper over dnspython, and DKIM and DMARC records
read as pure functions over their text (SPF: preflight_spf).

Everything read from DNS is hostile input: records are parsed strictly and shown shortened, and
no lookup follows more than RFC 7208's ten DNS-querying terms.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass

import dns.exception
import dns.resolver

from mailer.config import Settings
from mailer.errors import ConfigError, MailerError

LIFETIME = 4.0  # seconds for one question, retries included: a doctor must not hang
# RFC 2606 and RFC 6761: names no one can publish records for in the public DNS.
RESERVED_SUFFIXES = ("example", "test", "invalid", "localhost")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
# Public suffixes of two labels under which organisations register (a small part of the Public
# Suffix List, enough for the usual cases; alignment of rarer ones is judged by two labels).
TWO_LABEL_SUFFIXES = frozenset(
    f"{second}.{top}"
    for top, seconds in {
        "uk": "co org ac gov ltd plc me net",
        "kr": "co or ne ac go re pe",
        "jp": "co or ne ac go",
        "au": "com net org edu gov",
        "nz": "co org net ac govt",
        "br": "com net org gov",
        "cn": "com net org gov",
        "in": "co net org gov ac",
        "za": "co org",
        "tw": "com org net",
        "hk": "com org net",
        "sg": "com org net",
        "mx": "com org",
    }.items()
    for second in seconds.split()
)


class DnsUnavailable(MailerError):
    """DNS could not be asked (no resolver, time-out, server failure): nothing was learnt."""


class RecordError(MailerError):
    """A record that receivers cannot read; the message names the fault."""


def shown(text: str, limit: int = 120) -> str:
    """A record as it may be printed: no control characters, long ones shortened."""
    clean = re.sub(r"[\x00-\x1f\x7f-\x9f]", "?", text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def is_reserved(domain: str) -> bool:
    d = domain.lower().rstrip(".")
    return d in RESERVED_DOMAINS or any(
        d == s or d.endswith("." + s) for s in (*RESERVED_SUFFIXES, *RESERVED_DOMAINS)
    )


def org_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 3.2): the registered name under its public suffix."""
    labels = domain.lower().rstrip(".").split(".")
    keep = 3 if ".".join(labels[-2:]) in TWO_LABEL_SUFFIXES else 2
    return ".".join(labels[-keep:])


def aligned(a: str, b: str, *, strict: bool) -> bool:
    """DMARC identifier alignment of two domains: equal (strict), or one organisation (relaxed)."""
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    return a == b if strict else org_domain(a) == org_domain(b)


# --- DNS --------------------------------------------------------------------------------------


class Dns:
    """The questions the preflight asks, through the `dns_resolver` setting's server."""

    def __init__(self, settings: Settings) -> None:
        spec = settings.dns_resolver.strip()
        self.own = bool(spec)
        self.queries = 0
        self._cache: dict[tuple[str, str], list[str]] = {}
        try:
            if spec:
                host, port = parse_resolver(spec)
                self.resolver = dns.resolver.Resolver(configure=False)
                self.resolver.nameservers = [host]
                self.resolver.port = port
            else:
                self.resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise DnsUnavailable("this machine has no DNS resolver configured") from None
        self.resolver.lifetime = LIFETIME
        self.resolver.timeout = LIFETIME / 2

    def skips(self, domain: str) -> bool:
        """Reserved example names are looked up only with a resolver of one's own (a lab's)."""
        return not self.own and is_reserved(domain)

    def _ask(self, name: str, rdtype: str) -> list[str]:
        key = (name.lower().rstrip("."), rdtype)
        if key in self._cache:
            return self._cache[key]
        self.queries += 1
        try:
            answer = self.resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            found: list[str] = []
        except dns.resolver.NoNameservers as err:
            raise DnsUnavailable(f"no DNS server answered for {name} ({rdtype}): {err}") from None
        except dns.exception.Timeout:
            raise DnsUnavailable(f"DNS did not answer in time for {name} ({rdtype})") from None
        except dns.exception.DNSException as err:
            raise DnsUnavailable(f"DNS lookup of {name} ({rdtype}) failed: {err}") from None
        else:
            found = []
            for rdata in answer:
                if rdtype == "TXT":
                    # A record may be split in strings of 255 bytes: receivers join them.
                    found.append(b"".join(rdata.strings).decode("utf-8", "replace"))
                elif rdtype == "MX":
                    found.append(
                        f"{rdata.preference} {rdata.exchange.to_text(omit_final_dot=True)}"
                    )
                else:
                    found.append(rdata.to_text())
        self._cache[key] = found
        return found

    def txt(self, name: str) -> list[str]:
        return self._ask(name, "TXT")

    def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of `name` (an address literal is its own)."""
        try:
            return [str(ipaddress.ip_address(name.strip("[]")))]
        except ValueError:
            pass
        return self._ask(name, "A") + self._ask(name, "AAAA")

    def mx(self, name: str) -> list[tuple[int, str]]:
        out = []
        for text in self._ask(name, "MX"):
            pref, _, host = text.partition(" ")
            out.append((int(pref), host))
        return sorted(out)


def parse_resolver(spec: str) -> tuple[str, int]:
    """'127.0.0.1:5353', '[::1]:53', '192.0.2.1' or '::1' -> (address, port)."""
    m = re.fullmatch(
        r"\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?|([^:\s]+)(?::(\d{1,5}))?|([0-9A-Fa-f:]+)", spec
    )
    host = port = None
    if m:
        host = m.group(1) or m.group(3) or m.group(5)
        port = m.group(2) or m.group(4)
    try:
        address = str(ipaddress.ip_address(host or ""))
    except ValueError:
        raise ConfigError(
            f"dns_resolver: expected an IP address, optionally with a port (e.g. "
            f"127.0.0.1:5353 or [::1]:53), got {spec!r}"
        ) from None
    number = int(port) if port else 53
    if not 0 < number < 65536:
        raise ConfigError(f"dns_resolver: bad port in {spec!r}")
    return address, number


# --- DKIM and DMARC ---------------------------------------------------------------------------


def parse_tags(text: str) -> dict[str, str]:
    """A tag=value list (RFC 6376 3.2), as DKIM and DMARC records are written."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not eq or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise RecordError(f"{shown(part)!r} is not a tag=value pair")
        if name in tags:
            raise RecordError(f"the tag {name}= is given twice")
        tags[name] = value.strip()
    return tags


@dataclass(frozen=True)
class DkimKey:
    kind: str  # rsa or ed25519
    public: bytes  # as the record's p= holds it (base64 decoded)


def dkim_record(texts: list[str]) -> DkimKey:
    """The key of the DKIM record at selector._domainkey.domain; RecordError names the fault."""
    records = []
    for text in texts:
        try:
            tags = parse_tags(text)
        except RecordError:
            continue  # not a DKIM record (another TXT at the name)
        if "p" in tags and tags.get("v", "DKIM1") == "DKIM1":
            records.append(tags)
    if not records:
        raise RecordError("no DKIM record (v=DKIM1; k=rsa; p=...) there")
    if len(records) > 1:
        raise RecordError(f"{len(records)} DKIM records at one name: receivers pick one at random")
    tags = records[0]
    p = re.sub(r"\s+", "", tags["p"])
    if not p:
        raise RecordError("the record's p= is empty: the key is revoked")
    try:
        public = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError):
        raise RecordError("the record's p= is not base64") from None
    return DkimKey(tags.get("k", "rsa").lower(), public)


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SELECTOR = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")


def is_selector(selector: str) -> bool:
    """A DKIM selector receivers can look up (RFC 6376 3.1): ASCII DNS labels, dot-separated."""
    return len(selector) <= 200 and _SELECTOR.fullmatch(selector) is not None


def key_kind(pem: bytes) -> str:
    """The kind of a PEM private key: rsa, ed25519 or other ("" when it cannot be read)."""
    # Lazy: cryptography's serialization matters only when a DKIM key is configured.
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: PLC0415

    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        return ""
    if isinstance(private, rsa.RSAPrivateKey):
        return "rsa"
    return "ed25519" if isinstance(private, ed25519.Ed25519PrivateKey) else "other"


def same_key(pem: bytes, record: DkimKey) -> bool:
    """Does the record publish the public half of this private key (PEM)?"""
    # Lazy: cryptography's serialization matters only when a DKIM key is configured.
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa  # noqa: PLC0415

    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as err:
        raise RecordError(f"cannot read the private key: {err}") from None
    if isinstance(private, ed25519.Ed25519PrivateKey):
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return record.kind == "ed25519" and raw == record.public
    if not isinstance(private, rsa.RSAPrivateKey) or record.kind != "rsa":
        return False
    try:
        published = serialization.load_der_public_key(record.public)
    except ValueError:
        raise RecordError("the record's p= is not an RSA public key") from None
    return (
        isinstance(published, rsa.RSAPublicKey)
        and published.public_numbers() == private.public_key().public_numbers()
    )


@dataclass(frozen=True)
class Dmarc:
    policy: str  # none, quarantine, reject
    adkim: str  # r or s
    aspf: str
    found_at: str
    tags: dict[str, str]


def dmarc_record(texts: list[str], name: str, *, subdomain: bool = False) -> Dmarc | None:
    """The DMARC policy at `name` (None without a record). `subdomain`: found at the
    organisational domain for a subdomain's mail, so sp= applies."""
    found = [t for t in texts if re.match(r"v\s*=\s*DMARC1\s*(;|$)", t)]
    if not found:
        return None
    if len(found) > 1:
        raise RecordError(f"{len(found)} DMARC records at {name}: receivers ignore them all")
    tags = parse_tags(found[0])
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        raise RecordError(f"p= must be none, quarantine or reject, got {shown(policy)!r}")
    if subdomain and tags.get("sp", "").lower() in ("none", "quarantine", "reject"):
        policy = tags["sp"].lower()
    modes = {}
    for tag in ("adkim", "aspf"):
        mode = tags.get(tag, "r").lower()
        if mode not in ("r", "s"):
            raise RecordError(f"{tag}= must be r or s, got {shown(mode)!r}")
        modes[tag] = mode
    return Dmarc(policy, modes["adkim"], modes["aspf"], name, tags)
