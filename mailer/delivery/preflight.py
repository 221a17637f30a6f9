"""The preflight: is this setup one that mailbox providers accept mail from?

`mailer doctor` runs every check (`run_all`); `mailer send` runs the cheap ones (`before_send`:
the DKIM record matches the key, DMARC exists and aligns) before planning. Each finding says
what is wrong and how to fix it. DNS goes through the `dns_resolver` setting (preflight_dns),
the SMTP and web checks are in preflight_smtp.

Decisions a user relies on:
- A check that cannot be made (DNS does not answer, the outbox transport) is "skipped" with
  the reason, never an error: a send is refused only for what was seen to be wrong.
- Without `dkim_key_file` mailer signs nothing; whether the provider signs for the domain
  cannot be known from here, so `doctor` warns and a send does not refuse. With a key, a
  missing or different DKIM record refuses the send: every message would fail DKIM.
- Example domains (example.org, *.test...: RFC 2606, 6761) are not looked up with this
  machine's resolver; with a resolver of one's own (a lab's) they are.

A little over 400 lines: one function per check, each with the words of its findings.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from mailer.config import Settings
from mailer.delivery import preflight_dns as pd
from mailer.delivery import preflight_spf as spf
from mailer.errors import SendError

if TYPE_CHECKING:
    from mailer.releases.checks import Finding

Status = Literal["ok", "warning", "error", "skipped"]


@dataclass(frozen=True)
class Check:
    """One finding: which check, how it went, what was seen, and what to do about it."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check, "status": self.status, "detail": self.detail, "fix": self.fix}


class PreflightError(SendError):
    """A send refused because a receiver would reject or junk its messages."""


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def dkim_domain(settings: Settings) -> str:
    return (settings.dkim_domain or domain_of(settings.from_address)).lower()


# --- the DNS checks ---------------------------------------------------------------------------


def _guarded(
    name: str, lookup: pd.Dns | None, domain: str, run: Callable[[pd.Dns], list[Check]]
) -> list[Check]:
    """Run one DNS check; what DNS could not answer makes it skipped, with the reason."""
    if lookup is None:
        return [Check(name, "skipped", "DNS cannot be asked here", "set dns_resolver")]
    if lookup.skips(domain):
        return [
            Check(
                name,
                "skipped",
                f"{domain} is reserved for examples (RFC 2606): no one can publish its records",
                "use your organisation's own domain (or a dns_resolver that serves this one)",
            )
        ]
    try:
        return run(lookup)
    except pd.DnsUnavailable as err:
        return [Check(name, "skipped", f"could not ask DNS: {err}", _dns_fix(lookup))]


def _dns_fix(lookup: pd.Dns) -> str:
    return (
        "check the dns_resolver setting and that the server answers"
        if lookup.own
        else "check this machine's network and DNS (or set dns_resolver)"
    )


def check_spf(settings: Settings, lookup: pd.Dns | None, smtp_host: str | None) -> list[Check]:
    domain = domain_of(settings.bounce_address)

    def run(dns: pd.Dns) -> list[Check]:
        checker = spf.SpfChecker(dns)
        try:
            record = checker.record(domain)
            if record is None:
                return [
                    Check(
                        "spf",
                        "error",
                        f"{domain} (the envelope sender's domain) has no SPF record",
                        f'publish a TXT record at {domain}: "v=spf1 include:<your provider> '
                        "-all\" (or ip4:<your server's address>)",
                    )
                ]
            walk = checker.count(domain)
        except pd.RecordError as err:
            return [Check("spf", "error", f"SPF of {domain}: {err}", _spf_fix(domain))]
        out = [Check("spf", "ok", f"{domain} has one SPF record ({walk.lookups} DNS lookups)")]
        last = record.all_term
        if last is not None and last.qualifier in "+?":
            out = [
                Check(
                    "spf",
                    "warning",
                    f"SPF of {domain} ends in {last}: "
                    + ("anyone may send as it" if last.qualifier == "+" else "it asserts nothing"),
                    "end the record with -all (or ~all) once every sender is listed",
                )
            ]
        out.append(_spf_host(checker, domain, dns, smtp_host))
        return out

    return _guarded("spf", lookup, domain, run)


def _spf_fix(domain: str) -> str:
    return (
        f"publish exactly one TXT record starting v=spf1 at {domain}, with at most 10 "
        "include/a/mx/exists/redirect terms in all (flatten includes into ip4:/ip6:)"
    )


def _spf_host(checker: spf.SpfChecker, domain: str, dns: pd.Dns, host: str | None) -> Check:
    if host is None:
        return Check("spf-host", "skipped", "the transport is the outbox: no SMTP host to check")
    addresses = dns.addresses(host)
    if not addresses:
        return Check(
            "spf-host", "skipped", f"the SMTP host {host} has no address in DNS", _dns_fix(dns)
        )
    worst: Check | None = None
    for ip in addresses:
        result, why = checker.check(domain, ip)
        if result == "pass" and why == "all":
            found = Check(
                "spf-host", "warning", f"{ip} ({host}) passes only through +all", _spf_fix(domain)
            )
        elif result == "pass":
            found = Check("spf-host", "ok", f"SPF of {domain} allows {ip} ({host}): {why}")
        elif result in ("fail", "softfail"):
            found = Check(
                "spf-host",
                "error",
                f"SPF of {domain} does not allow {ip}, the address of the SMTP host {host} "
                f"({why}): receivers {'reject' if result == 'fail' else 'junk'} the mail",
                f"add ip{4 if ':' not in ip else 6}:{ip}, or include: your provider's SPF, "
                f"to the record at {domain}",
            )
        elif result == "neutral":
            found = Check(
                "spf-host",
                "warning",
                f"SPF of {domain} says nothing about {ip} ({host}): {why}",
                f"list {ip} (or include: your provider) in the record at {domain}",
            )
        else:
            found = Check("spf-host", "error", f"SPF of {domain}: {result} ({why})", "")
        if worst is None or _rank(found) > _rank(worst):
            worst = found
    assert worst is not None
    return worst


def _rank(check: Check) -> int:
    return {"ok": 0, "skipped": 1, "warning": 2, "error": 3}[check.status]


def check_dkim(settings: Settings, lookup: pd.Dns | None) -> list[Check]:
    domain = dkim_domain(settings)
    name = f"{settings.dkim_selector}._domainkey.{domain}"
    key_file = settings.dkim_key_file
    if key_file is None:
        return [
            Check(
                "dkim",
                "warning",
                "no dkim_key_file: mailer does not sign its messages",
                "run `mailer dkim keygen`, publish the record it prints and set dkim_key_file "
                "(or make sure your provider signs with d=" + domain + ")",
            )
        ]

    if not pd.is_selector(settings.dkim_selector):
        # Checked before DNS: dnspython would look the name up (IDNA, escaped spaces) while the
        # signature carries the raw text (s=a;b=c adds a tag), so DNS could look right.
        return [
            Check(
                "dkim",
                "error",
                f"dkim_selector {pd.shown(settings.dkim_selector)!r} is not a DNS name: every "
                "signature would name a key no receiver can find",
                "set dkim_selector to letters, digits and hyphens (dots between labels), "
                "as in `mailer dkim keygen --selector`",
            )
        ]

    def run(dns: pd.Dns) -> list[Check]:
        try:
            pem = Path(key_file).read_bytes()
        except OSError as err:
            return [Check("dkim", "error", f"dkim_key_file {key_file}: {err.strerror}", "")]
        if pd.key_kind(pem) == "ed25519":
            # dkimpy signs Ed25519 only from a raw base64 key and with ed25519-sha256, which
            # mailer does not ask for: the send would fail at its first message.
            return [
                Check(
                    "dkim",
                    "error",
                    f"dkim_key_file {key_file.name} holds an Ed25519 key: mailer signs with "
                    "RSA (rsa-sha256) only",
                    "run `mailer dkim keygen` for an RSA key, publish its record and set "
                    "dkim_key_file to it",
                )
            ]
        texts = dns.txt(name)
        try:
            record = pd.dkim_record(texts)
            same = pd.same_key(pem, record)
        except pd.RecordError as err:
            return [
                Check(
                    "dkim",
                    "error",
                    f"DKIM at {name}: {err}",
                    f"publish the record `mailer dkim keygen` printed for {key_file.name} as a "
                    f"TXT record at {name}",
                )
            ]
        if not same:
            return [
                Check(
                    "dkim",
                    "error",
                    f"the DKIM record at {name} holds another public key than {key_file.name}: "
                    "every signature would fail",
                    f"publish the public key of {key_file} at {name} (or point dkim_key_file "
                    "and dkim_selector at the key that is published)",
                )
            ]
        return [Check("dkim", "ok", f"{name} publishes the public key of {key_file.name}")]

    return _guarded("dkim", lookup, domain, run)


def check_dmarc(settings: Settings, lookup: pd.Dns | None) -> list[Check]:
    domain = domain_of(settings.from_address)

    def run(dns: pd.Dns) -> list[Check]:
        org = pd.org_domain(domain)
        try:
            policy = pd.dmarc_record(dns.txt(f"_dmarc.{domain}"), f"_dmarc.{domain}")
            if policy is None and org != domain:
                # RFC 7489 6.6.3: a subdomain without a record takes its organisation's.
                policy = pd.dmarc_record(dns.txt(f"_dmarc.{org}"), f"_dmarc.{org}", subdomain=True)
        except pd.RecordError as err:
            return [Check("dmarc", "error", f"DMARC of {domain}: {err}", _dmarc_fix(org))]
        if policy is None:
            return [
                Check(
                    "dmarc",
                    "error",
                    f"{domain} has no DMARC record: Gmail, Yahoo and Microsoft refuse bulk mail "
                    "without one",
                    _dmarc_fix(org),
                )
            ]
        if policy.policy == "none":
            found = Check(
                "dmarc",
                "warning",
                f"DMARC of {domain} ({policy.found_at}) is p=none: it asks receivers for reports "
                "only",
                "once the reports show every sender aligned, move to p=quarantine, then p=reject",
            )
        else:
            found = Check(
                "dmarc", "ok", f"DMARC of {domain}: p={policy.policy} ({policy.found_at})"
            )
        return [found, _alignment(settings, domain, policy)]

    return _guarded("dmarc", lookup, domain, run)


def _dmarc_fix(org: str) -> str:
    return f'publish a TXT record at _dmarc.{org}: "v=DMARC1; p=none; rua=mailto:dmarc@{org}"'


def _alignment(settings: Settings, from_domain: str, policy: pd.Dmarc) -> Check:
    if settings.dkim_key_file is None:
        return Check(
            "dmarc-alignment",
            "skipped",
            "no dkim_key_file: the DKIM d= is your provider's, unknown here",
        )
    d = dkim_domain(settings)
    strict = policy.adkim == "s"
    if pd.aligned(from_domain, d, strict=strict):
        return Check(
            "dmarc-alignment",
            "ok",
            f"DKIM d={d} aligns with From {from_domain} ({'strict' if strict else 'relaxed'})",
        )
    return Check(
        "dmarc-alignment",
        "error",
        f"DKIM d={d} does not align with the From domain {from_domain} "
        + ("(adkim=s: they must be equal)" if strict else "(not the same organisational domain)"),
        f"set dkim_domain to {from_domain} (or a parent of it) and publish its key",
    )


def check_mx(settings: Settings, lookup: pd.Dns | None) -> list[Check]:
    domain = domain_of(settings.bounce_address)

    def run(dns: pd.Dns) -> list[Check]:
        hosts = dns.mx(domain)
        if any(host in ("", ".") for _, host in hosts):
            return [
                Check(
                    "mx",
                    "error",
                    f"{domain} publishes a null MX: it accepts no mail, so bounces are lost",
                    "use an envelope_sender at a domain that receives mail",
                )
            ]
        if hosts:
            names = ", ".join(h for _, h in hosts[:3])
            return [Check("mx", "ok", f"bounces to {domain} go to {names}")]
        if dns.addresses(domain):
            return [
                Check(
                    "mx",
                    "warning",
                    f"{domain} has no MX record; mail to it falls back to its address",
                    f"publish an MX record for {domain} (where bounces are read)",
                )
            ]
        return [
            Check(
                "mx",
                "error",
                f"{domain} (the envelope sender's domain) has no MX record: bounces cannot "
                "come back, and receivers distrust a sender they cannot reply to",
                f"publish an MX record for {domain}, or set envelope_sender to a mailbox that "
                "receives mail",
            )
        ]

    return _guarded("mx", lookup, domain, run)


def check_base_url(settings: Settings, lookup: pd.Dns | None) -> list[Check]:
    host = urlsplit(settings.base_url).hostname or ""

    def run(dns: pd.Dns) -> list[Check]:
        found = dns.addresses(host)
        if not found:
            return [
                Check(
                    "base-url",
                    "error",
                    f"the base_url host {host} does not resolve: every unsubscribe link and "
                    "the one-click unsubscribe would fail",
                    f"publish an A (or AAAA) record for {host}, or correct base_url",
                )
            ]
        loopback = all(ipaddress.ip_address(a).is_loopback for a in found)
        if loopback and not dns.own:
            return [
                Check(
                    "base-url",
                    "warning",
                    f"base_url {host} is this machine: readers cannot open its links",
                    "set base_url to the public https address of `mailer serve`",
                )
            ]
        return [Check("base-url", "ok", f"{host} resolves to {', '.join(found[:4])}")]

    return _guarded("base-url", lookup, host, run)


def open_dns(settings: Settings) -> tuple[pd.Dns | None, list[Check]]:
    try:
        return pd.Dns(settings), []
    except pd.DnsUnavailable as err:
        return None, [Check("dns", "skipped", str(err), "set dns_resolver")]


# --- the two entry points ---------------------------------------------------------------------


def run_all(settings: Settings, release: str | Path | None = None) -> list[Check]:
    """Every check `mailer doctor` makes, in the order a reader fixes them."""
    # Lazy: smtplib, ssl and rendering a sample; `mailer send` needs none of them here.
    from mailer.delivery import preflight_smtp  # noqa: PLC0415

    lookup, out = open_dns(settings)
    host = preflight_smtp.smtp_host(settings)
    out += check_spf(settings, lookup, host)
    out += check_dkim(settings, lookup)
    out += check_dmarc(settings, lookup)
    out += check_mx(settings, lookup)
    out += check_base_url(settings, lookup)
    out += preflight_smtp.check_smtp(settings, release)
    out += preflight_smtp.check_one_click(settings, lookup)
    return out


def cheap_checks(settings: Settings) -> list[Check]:
    """What a send checks: the DKIM record matches the key, DMARC exists and aligns."""
    lookup, out = open_dns(settings)
    if settings.dkim_key_file is not None:
        out += check_dkim(settings, lookup)
    return out + check_dmarc(settings, lookup)


def before_send(settings: Settings) -> list[Finding]:
    """Refuse a send that receivers would reject (PreflightError); warnings come back as
    release-check findings, shown with the plan."""
    # Lazy: releases.checks loads the renderer; send_release has imported it by now.
    from mailer.releases.checks import Finding  # noqa: PLC0415

    found = cheap_checks(settings)
    errors = [c for c in found if c.status == "error"]
    if errors:
        raise PreflightError(
            "the checks before sending find what receivers would reject:\n"
            + "\n".join(
                f"  - {c.detail}" + (f"\n    fix: {c.fix}" if c.fix else "") for c in errors
            )
            + "\n  `mailer doctor` runs every check; --skip-preflight sends anyway"
        )
    return [Finding("warning", f"preflight: {c.detail}") for c in found if c.status == "warning"]
