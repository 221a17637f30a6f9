"""SPF for the preflight (RFC 7208): a record parsed into its terms, the DNS lookups of its
whole include tree counted (at most ten), and check_host run for the SMTP host's addresses.

Records come from DNS and are hostile input: parsed strictly, shown shortened, and no walk goes
deeper than the lookup limit or round an include loop.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from mailer.delivery.preflight_dns import Dns, RecordError, shown

SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4

_QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
_MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
_LOOKUP_TERMS = ("include", "a", "mx", "ptr", "exists")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$"
)


@dataclass(frozen=True)
class SpfTerm:
    qualifier: str  # + - ~ ?
    name: str  # a mechanism
    domain: str = ""  # include:, a:, mx:, exists: (empty: the record's own domain)
    network: str = ""  # ip4:, ip6:
    cidr4: int = 32
    cidr6: int = 128

    @property
    def result(self) -> str:
        return _QUALIFIERS[self.qualifier]

    def __str__(self) -> str:
        q = "" if self.qualifier == "+" else self.qualifier
        value = self.network or self.domain
        return f"{q}{self.name}{':' + value if value else ''}"


@dataclass(frozen=True)
class SpfRecord:
    terms: tuple[SpfTerm, ...]
    redirect: str = ""

    @property
    def all_term(self) -> SpfTerm | None:
        return next((t for t in self.terms if t.name == "all"), None)

    def lookups(self) -> list[str]:
        """The terms that cost a DNS lookup, this record's only (redirect included)."""
        out = [str(t) for t in self.terms if t.name in _LOOKUP_TERMS]
        return [*out, f"redirect={self.redirect}"] if self.redirect else out


def spf_records(texts: list[str]) -> list[str]:
    return [t for t in texts if re.match(r"v=spf1(\s|$)", t, re.I)]


def parse_spf(text: str) -> SpfRecord:
    """An SPF record's terms; RecordError names the first one receivers could not read."""
    words = text.split()
    if not words or words[0].lower() != "v=spf1":
        raise RecordError(f"not an SPF record: {shown(text)!r}")
    terms: list[SpfTerm] = []
    redirect = ""
    for word in words[1:]:
        modifier = re.match(r"^([A-Za-z][A-Za-z0-9_.-]*)=(.*)$", word)
        if modifier:
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name == "redirect":
                if redirect:
                    raise RecordError("two redirect= modifiers")
                redirect = _domain_spec(value, word)
            continue  # exp= and unknown modifiers do not change the result
        qualifier = word[0] if word[0] in _QUALIFIERS else "+"
        rest = word[1:] if word[0] in _QUALIFIERS else word
        name, colon, value = rest.partition(":")
        cidr = ""
        if name.lower() not in ("ip4", "ip6") and "/" in (value if colon else name):
            if colon:
                value, _, cidr = value.partition("/")
            else:
                name, _, cidr = name.partition("/")
        name = name.lower()
        if name not in _MECHANISMS:
            raise RecordError(f"unknown mechanism {shown(word)!r}")
        if name == "all":
            if colon or cidr:
                raise RecordError(f"{shown(word)!r}: all takes no value")
            terms.append(SpfTerm(qualifier, name))
        elif name in ("ip4", "ip6"):
            try:
                net = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise RecordError(f"{shown(word)!r}: not an address or network") from None
            if (net.version == 4) != (name == "ip4"):
                raise RecordError(f"{shown(word)!r}: not an IPv{name[-1]} address")
            terms.append(SpfTerm(qualifier, name, network=str(net)))
        else:
            if name in ("include", "exists") and not value:
                raise RecordError(f"{shown(word)!r}: {name} needs a domain")
            cidr4, cidr6 = _cidrs(cidr, word) if cidr else (32, 128)
            domain = _domain_spec(value, word) if value else ""
            terms.append(SpfTerm(qualifier, name, domain=domain, cidr4=cidr4, cidr6=cidr6))
    return SpfRecord(tuple(terms), redirect)


def _domain_spec(value: str, word: str) -> str:
    if "%" in value:
        return value  # a macro (RFC 7208 7): kept as written, not evaluated
    if not _DOMAIN.match(value):
        raise RecordError(f"{shown(word)!r}: {shown(value)!r} is not a domain")
    return value.rstrip(".").lower()


def _cidrs(text: str, word: str) -> tuple[int, int]:
    four, _, six = text.partition("//") if "//" in text else (text, "", "")
    if text.startswith("/"):  # a//64: only the IPv6 length
        four, six = "", text[1:]
    try:
        c4 = int(four) if four else 32
        c6 = int(six) if six else 128
    except ValueError:
        raise RecordError(f"{shown(word)!r}: bad prefix length") from None
    if not (0 <= c4 <= 32 and 0 <= c6 <= 128):
        raise RecordError(f"{shown(word)!r}: prefix length out of range")
    return c4, c6


@dataclass
class SpfWalk:
    """The whole tree of a domain's SPF: how many lookups it costs, and its faults."""

    lookups: int = 0
    chain: list[str] = field(default_factory=list)


class SpfChecker:
    """RFC 7208 check_host, for the preflight: one domain's record against given addresses."""

    def __init__(self, lookup: Dns) -> None:
        self.dns = lookup

    def record(self, domain: str) -> SpfRecord | None:
        """The domain's one SPF record (None without one); RecordError for two or a bad one."""
        found = spf_records(self.dns.txt(domain))
        if not found:
            return None
        if len(found) > 1:
            raise RecordError(
                f"{domain} has {len(found)} SPF records (receivers then fail every message): "
                + " | ".join(shown(t, 80) for t in found)
            )
        return parse_spf(found[0])

    def count(
        self, domain: str, walk: SpfWalk | None = None, stack: tuple[str, ...] = ()
    ) -> SpfWalk:
        """Every DNS-querying term of the tree under `domain`; RecordError on a loop, a
        missing included record, or more than ten lookups."""
        walk = walk or SpfWalk()
        if domain in stack:
            raise RecordError("include loop: " + " -> ".join((*stack, domain)))
        record = self.record(domain)
        if record is None:
            if stack:
                raise RecordError(f"{stack[-1]} includes {domain}, which has no SPF record")
            return walk
        for term in record.lookups():
            walk.lookups += 1
            walk.chain.append(f"{domain}: {term}")
            if walk.lookups > SPF_LOOKUP_LIMIT:
                raise RecordError(
                    f"more than {SPF_LOOKUP_LIMIT} DNS lookups (RFC 7208 4.6.4): "
                    + ", ".join(walk.chain[:12])
                )
        targets = [t.domain for t in record.terms if t.name == "include"]
        if record.redirect:
            targets.append(record.redirect)
        for target in targets:
            if "%" not in target:
                self.count(target, walk, (*stack, domain))
        return walk

    def check(self, domain: str, ip: str, depth: int = 0) -> tuple[str, str]:
        """(result, the term that decided it) for mail from `ip` with `domain` in MAIL FROM."""
        if depth > SPF_LOOKUP_LIMIT:
            return "permerror", "too deep"
        try:
            record = self.record(domain)
        except RecordError as err:
            return "permerror", str(err)
        if record is None:
            return "none", ""
        addr = ipaddress.ip_address(ip)
        for term in record.terms:
            if self._matches(term, domain, addr, depth):
                return term.result, str(term)
        if record.redirect:
            result, why = self.check(record.redirect, ip, depth + 1)
            return (
                "permerror" if result == "none" else result
            ), f"redirect={record.redirect}: {why}"
        return "neutral", "no term matches (the default is ?all)"

    def _matches(
        self,
        term: SpfTerm,
        domain: str,
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address,
        depth: int,
    ) -> bool:
        target = term.domain or domain
        if "%" in target:
            return False  # macros are not evaluated here
        if term.name == "all":
            return True
        if term.name in ("ip4", "ip6"):
            return addr in ipaddress.ip_network(term.network)
        if term.name == "include":
            return self.check(target, str(addr), depth + 1)[0] == "pass"
        if term.name == "a":
            return self._in(addr, self.dns.addresses(target), term)
        if term.name == "mx":
            hosts = [h for _, h in self.dns.mx(target)][:10]
            return any(self._in(addr, self.dns.addresses(h), term) for h in hosts)
        if term.name == "exists":
            return bool(self.dns._ask(target, "A"))
        return False  # ptr: deprecated (RFC 7208 5.5); receivers may skip it too

    @staticmethod
    def _in(
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address, found: list[str], term: SpfTerm
    ) -> bool:
        for text in found:
            other = ipaddress.ip_address(text)
            if other.version != addr.version:
                continue
            prefix = term.cidr4 if other.version == 4 else term.cidr6
            if addr in ipaddress.ip_network(f"{other}/{prefix}", strict=False):
                return True
        return False
