"""`mailer doctor` and the checks before a send, against a real DNS server (dnslib on
127.0.0.1 with a zone per test), a real aiosmtpd server and the real subscriber app over https."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from mailer.config import Settings, load_settings
from mailer.delivery import preflight, preflight_smtp
from mailer.delivery import preflight_dns as pd
from mailer.delivery import preflight_spf as spf
from mailer.delivery.preflight import Check
from mailer.errors import ConfigError
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.dnsserver import DnsServer, Zone
from tests.support.sending import populate
from tests.support.smtp import SmtpServer, free_port

DOMAIN = "hanul.test"
WEB_HOST = f"news.{DOMAIN}"
DNS_CHECKS = ("spf", "spf-host", "dkim", "dmarc", "dmarc-alignment", "mx", "base-url")


# --- parts ------------------------------------------------------------------------------------


def dkim_key(folder: Path, name: str = "dkim.key") -> tuple[Path, str]:
    """A key file and the base64 public key its DNS record publishes."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = folder / name
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, base64.b64encode(public).decode()


def split(text: str, size: int = 100) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def good_zone(public: str) -> Zone:
    zone = Zone()
    zone.txt(DOMAIN, "v=spf1 a:mail.hanul.test include:_spf.provider.test -all")
    zone.txt(DOMAIN, "google-site-verification=abc")  # another TXT beside SPF
    zone.txt("_spf.provider.test", "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    zone.a("mail.hanul.test", "127.0.0.1")
    zone.mx(DOMAIN, "mail.hanul.test")
    # Split in strings as long keys are published: receivers join them.
    zone.txt(f"mailer._domainkey.{DOMAIN}", *split(f"v=DKIM1; k=rsa; p={public}"))
    zone.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=quarantine; rua=mailto:dmarc@hanul.test")
    zone.a(WEB_HOST, "127.0.0.1")
    return zone


def certificate(folder: Path, host: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{host}.pem", folder / f"{host}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def https_server(app: Any, port: int, cert: Path, key: Path) -> WSGIServer:
    """The app over https on 127.0.0.1:port, as `mailer serve` behind a TLS proxy."""
    server = make_server("127.0.0.1", port, app, handler_class=Quiet)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def dns_zone() -> Iterator[tuple[Zone, DnsServer]]:
    zone = Zone()
    server = DnsServer(zone).start()
    yield zone, server
    server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(auth=("press", "s3cret-pass")).start()
    yield server
    server.stop()


class Setup:
    """The test's folder: mailer.toml on the DNS server, the SMTP server and a web port."""

    def __init__(self, tmp_path: Path, settings: Settings, zone: Zone, dns: DnsServer) -> None:
        self.tmp_path = tmp_path
        self.zone = zone
        self.key, self.public = dkim_key(tmp_path)
        zone.records.update(good_zone(self.public).records)
        self.values: dict[str, Any] = {
            "database_url": settings.database_url,
            "from_address": f"press@{DOMAIN}",
            "dns_resolver": dns.address,
            "dkim_key_file": str(self.key),
            "dkim_selector": "mailer",
            "base_url": f"https://{WEB_HOST}:{free_port()}",
        }

    def settings(self, **extra: Any) -> Settings:
        write_config(self.tmp_path, {**self.values, **extra})
        return load_settings(self.tmp_path / "mailer.toml", env={})


@pytest.fixture
def setup(tmp_path: Path, settings: Settings, dns_zone: tuple[Zone, DnsServer]) -> Setup:
    return Setup(tmp_path, settings, *dns_zone)


def dns_checks(settings: Settings) -> dict[str, Check]:
    lookup, found = preflight.open_dns(settings)
    assert not found
    host = preflight_smtp.smtp_host(settings) or "mail.hanul.test"
    checks = [
        *preflight.check_spf(settings, lookup, host),
        *preflight.check_dkim(settings, lookup),
        *preflight.check_dmarc(settings, lookup),
        *preflight.check_mx(settings, lookup),
        *preflight.check_base_url(settings, lookup),
    ]
    return {c.check: c for c in checks}


# --- every check passes on the good setup ----------------------------------------------------


def test_the_good_setup_passes_every_check(
    setup: Setup, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate(setup.tmp_path, WEB_HOST)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the test's CA, as a public one would be
    settings = setup.settings(transport="smtp", smtp_url=smtp_server.url("press", "s3cret-pass"))
    port = int(settings.base_url.rsplit(":", 1)[1])
    web = https_server(create_app(settings, console=False), port, cert, key)
    try:
        result = Cli(setup.tmp_path / "mailer.toml")("doctor", "--json")
        text = Cli(setup.tmp_path / "mailer.toml")("doctor").output
    finally:
        web.shutdown()
        web.server_close()
    checks = json.loads(result.output)
    assert [c["check"] for c in checks] == [
        *DNS_CHECKS,
        *preflight_smtp.SMTP_CHECKS,
        "one-click",
    ]
    assert {c["status"] for c in checks} == {"ok"}, checks
    assert all(set(c) == {"check", "status", "detail", "fix"} for c in checks)
    assert "0 error(s), 0 warning(s)." in text
    assert "s3cret-pass" not in result.output + text
    # Nothing was sent: the session ended after MAIL FROM.
    assert smtp_server.sink.received == []


# --- each broken zone names its fault --------------------------------------------------------


def _two_spf(z: Zone) -> None:
    z.txt(DOMAIN, "v=spf1 mx -all")


def _loop(z: Zone) -> None:
    z.replace_txt(DOMAIN, "v=spf1 include:a.hanul.test -all")
    z.txt("a.hanul.test", "v=spf1 include:b.hanul.test -all")
    z.txt("b.hanul.test", "v=spf1 include:a.hanul.test -all")


def _too_many(z: Zone) -> None:
    z.replace_txt(DOMAIN, "v=spf1 " + " ".join(f"include:s{i}.hanul.test" for i in range(6)))
    for i in range(6):
        z.txt(f"s{i}.hanul.test", "v=spf1 a mx ?all")


def _other_key(z: Zone, tmp_path: Path) -> None:
    _, public = dkim_key(tmp_path, "other.key")
    z.replace_txt(f"mailer._domainkey.{DOMAIN}", *split(f"v=DKIM1; k=rsa; p={public}"))


BROKEN: list[tuple[str, Any, str, str, str]] = [
    ("no SPF", lambda z, _: z.drop(DOMAIN, "TXT"), "spf", "error", "has no SPF record"),
    ("two SPF", lambda z, _: _two_spf(z), "spf", "error", "has 2 SPF records"),
    (
        "-all excludes the SMTP host",
        lambda z, _: z.replace_txt(DOMAIN, "v=spf1 ip4:192.0.2.1 -all"),
        "spf-host",
        "error",
        "does not allow 127.0.0.1",
    ),
    (
        "~all excludes the SMTP host",
        lambda z, _: z.replace_txt(DOMAIN, "v=spf1 ip4:192.0.2.1 ~all"),
        "spf-host",
        "error",
        "junk the mail",
    ),
    (
        "?all",
        lambda z, _: z.replace_txt(DOMAIN, "v=spf1 a:mail.hanul.test ?all"),
        "spf",
        "warning",
        "ends in ?all",
    ),
    ("include loop", lambda z, _: _loop(z), "spf", "error", "include loop"),
    ("over 10 lookups", lambda z, _: _too_many(z), "spf", "error", "more than 10 DNS lookups"),
    (
        "bad SPF",
        lambda z, _: z.replace_txt(DOMAIN, "v=spf1 ip4:300.1.1.1 -all"),
        "spf",
        "error",
        "not an address",
    ),
    (
        "DKIM missing",
        lambda z, _: z.drop(f"mailer._domainkey.{DOMAIN}", "TXT"),
        "dkim",
        "error",
        "no DKIM record",
    ),
    ("DKIM another key", _other_key, "dkim", "error", "another public key"),
    (
        "DMARC missing",
        lambda z, _: z.drop(f"_dmarc.{DOMAIN}", "TXT"),
        "dmarc",
        "error",
        "no DMARC record",
    ),
    (
        "DMARC p=none",
        lambda z, _: z.replace_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none"),
        "dmarc",
        "warning",
        "p=none",
    ),
    ("no MX", lambda z, _: z.drop(DOMAIN, "MX"), "mx", "error", "has no MX record"),
    (
        "base_url host missing",
        lambda z, _: z.drop(WEB_HOST, "A"),
        "base-url",
        "error",
        f"{WEB_HOST} does not resolve",
    ),
]


@pytest.mark.parametrize(
    ("breakage", "check", "status", "words"),
    [pytest.param(b[1], b[2], b[3], b[4], id=b[0]) for b in BROKEN],
)
def test_each_broken_zone_names_its_fault(
    setup: Setup, breakage: Any, check: str, status: str, words: str
) -> None:
    good = dns_checks(setup.settings())
    assert {c.status for c in good.values()} == {"ok"}, good
    breakage(setup.zone, setup.tmp_path)
    found = dns_checks(setup.settings())
    assert found[check].status == status, found[check]
    assert words in found[check].detail
    assert found[check].fix
    # The others still pass: the finding names this fault, not a cascade of them.
    assert [c for c in found.values() if c.status != "ok"] == [found[check]]


def test_misaligned_dkim_domain_is_an_error(setup: Setup) -> None:
    setup.zone.txt("mailer._domainkey.other.test", *split(f"v=DKIM1; p={setup.public}"))
    found = dns_checks(setup.settings(dkim_domain="other.test"))
    assert found["dkim"].status == "ok"
    assert found["dmarc-alignment"].status == "error"
    assert "d=other.test does not align" in found["dmarc-alignment"].detail
    # A parent domain aligns (relaxed), not under adkim=s.
    setup.zone.txt("mailer._domainkey.test", *split(f"v=DKIM1; p={setup.public}"))
    setup.zone.txt(f"mailer._domainkey.{DOMAIN}", "x")
    sub = setup.settings(from_address="press@news.hanul.test", dkim_domain=DOMAIN)
    assert dns_checks(sub)["dmarc-alignment"].status == "ok"
    setup.zone.replace_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject; adkim=s")
    assert dns_checks(sub)["dmarc-alignment"].status == "error"


def test_dns_that_does_not_answer_skips_and_never_errs(setup: Setup) -> None:
    # Nothing listens there: each DNS check is skipped with the reason.
    dead = setup.settings(dns_resolver=f"127.0.0.1:{free_port()}")
    found = dns_checks(dead)
    assert {c.status for c in found.values()} == {"skipped"}
    assert "could not ask DNS" in found["dkim"].detail


# --- SMTP -------------------------------------------------------------------------------------


def smtp_checks(settings: Settings) -> dict[str, Check]:
    return {c.check: c for c in preflight_smtp.check_smtp(settings)}


def test_smtp_login_refused(setup: Setup, smtp_server: SmtpServer) -> None:
    found = smtp_checks(
        setup.settings(transport="smtp", smtp_url=smtp_server.url("press", "wrong-pass"))
    )
    assert found["smtp-connect"].status == "ok"
    assert found["smtp-auth"].status == "error"
    assert "refused the login for 'press'" in found["smtp-auth"].detail
    assert "wrong-pass" not in json.dumps([c.as_dict() for c in found.values()])


def test_smtp_sender_refused(setup: Setup, smtp_server: SmtpServer) -> None:
    smtp_server.sink.refuse_sender = "553 5.7.1 Sender address not yours"
    found = smtp_checks(
        setup.settings(transport="smtp", smtp_url=smtp_server.url("press", "s3cret-pass"))
    )
    assert found["smtp-auth"].status == "ok"
    assert found["smtp-mail-from"].status == "error"
    assert "553 5.7.1 Sender address not yours" in found["smtp-mail-from"].detail
    assert smtp_server.sink.received == []


def test_smtp_size_limit_below_the_largest_message(setup: Setup, smtp_server: SmtpServer) -> None:
    small = Controller(
        smtp_server.sink, hostname="127.0.0.1", port=free_port(), data_size_limit=100000
    )
    small.start()
    try:
        url = f"smtp://127.0.0.1:{small.port}?tls=none"
        found = smtp_checks(setup.settings(transport="smtp", smtp_url=url))
        release = Path(preflight_smtp.SAMPLE)
        fits = preflight_smtp.check_smtp(
            setup.settings(transport="smtp", smtp_url=url, attach_max_bytes=1), release
        )
    finally:
        small.stop()
    assert found["smtp-size"].status == "error"
    assert "at most 100000 bytes" in found["smtp-size"].detail
    # The sample release alone (no attachments) fits.
    assert {c.check: c.status for c in fits}["smtp-size"] == "ok"


def test_smtp_self_signed_certificate_is_an_error(setup: Setup) -> None:
    cert, key = certificate(setup.tmp_path, "127.0.0.1")
    server = SmtpServer(auth=("press", "s3cret-pass"), tls_cert=cert, tls_key=key).start()
    try:
        url = server.url("press", "s3cret-pass")
        found = smtp_checks(setup.settings(transport="smtp", smtp_url=url))
        trusted = smtp_checks(
            setup.settings(transport="smtp", smtp_url=url, smtp_ca_file=str(cert))
        )
    finally:
        server.stop()
    assert found["smtp-tls"].status == "error"
    assert "certificate" in found["smtp-tls"].detail
    assert "smtp_ca_file" in found["smtp-tls"].fix
    # No password over an unverified connection: the login is not even tried.
    assert found["smtp-auth"].status == "skipped"
    assert {c.status for c in trusted.values()} == {"ok"}, trusted


def test_outbox_skips_the_smtp_checks(setup: Setup) -> None:
    found = smtp_checks(setup.settings(transport="outbox"))
    assert set(found) == set(preflight_smtp.SMTP_CHECKS)
    assert {c.status for c in found.values()} == {"skipped"}
    assert "outbox" in found["smtp-connect"].detail


# --- one-click --------------------------------------------------------------------------------


class NoPost(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_one_click_host_that_refuses_post(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = certificate(setup.tmp_path, WEB_HOST)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server = http.server.HTTPServer(("127.0.0.1", 0), NoPost)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = setup.settings(base_url=f"https://{WEB_HOST}:{server.server_address[1]}")
    lookup, _ = preflight.open_dns(settings)
    try:
        [refused] = preflight_smtp.check_one_click(settings, lookup)
        server.shutdown()
        server.server_close()
        [unreachable] = preflight_smtp.check_one_click(settings, lookup)
    finally:
        server.server_close()
    assert refused.status == "error" and "answers 405" in refused.detail
    assert unreachable.status == "warning" and "cannot check" in unreachable.detail
    [plain] = preflight_smtp.check_one_click(setup.settings(base_url=f"http://{WEB_HOST}"), lookup)
    assert plain.status == "error" and "not https" in plain.detail


# --- the CLI and the send preflight ------------------------------------------------------------


def test_doctor_exit_status_and_json_on_a_broken_zone(setup: Setup) -> None:
    setup.zone.drop(f"_dmarc.{DOMAIN}", "TXT")
    setup.settings()
    cli = Cli(setup.tmp_path / "mailer.toml")
    result = cli("doctor", "--json", expect=1)
    checks = {c["check"]: c for c in json.loads(result.output)}
    assert checks["dmarc"]["status"] == "error"
    assert checks["dmarc"]["fix"].startswith("publish a TXT record at _dmarc.hanul.test")
    assert checks["smtp-connect"]["status"] == "skipped"  # the outbox
    text = cli("doctor", expect=1).output
    assert "ERROR" in text and "fix: publish a TXT record at _dmarc.hanul.test" in text


def test_send_refuses_a_dkim_record_that_does_not_match(
    setup: Setup, smtp_server: SmtpServer, release: Path
) -> None:
    _other_key(setup.zone, setup.tmp_path)
    setup.zone.replace_txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    settings = setup.settings(transport="smtp", smtp_url=smtp_server.url("press", "s3cret-pass"))
    populate(settings)
    cli = Cli(setup.tmp_path / "mailer.toml")
    refused = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "another public key" in refused and "--skip-preflight" in refused
    assert smtp_server.sink.received == []
    # A dry run and the outbox are not checked; --skip-preflight sends anyway.
    cli("send", str(release), "--list", "press", "--dry-run")
    sent = cli("send", str(release), "--list", "press", "--yes", "--skip-preflight").output
    assert len(smtp_server.sink.received) == 6
    assert "p=none" not in sent  # skipped: no check, no warning
    # With the right key published, the send goes on and says the p=none warning.
    setup.zone.replace_txt(f"mailer._domainkey.{DOMAIN}", f"v=DKIM1; p={setup.public}")
    findings = preflight.before_send(settings)
    assert [f.level for f in findings] == ["warning"] and "p=none" in findings[0].message


def test_send_preflight_skips_example_domains_on_the_system_resolver(
    setup: Setup,
) -> None:
    settings = setup.settings(dns_resolver="", from_address="press@hanul.example.org")
    found = preflight.cheap_checks(settings)
    assert {c.status for c in found} == {"skipped"}
    assert "reserved for examples" in found[0].detail
    assert preflight.before_send(settings) == []


# --- the record parsers -------------------------------------------------------------------------


def test_spf_parser_and_domains() -> None:
    record = spf.parse_spf("v=spf1 a/24 mx:mail.hanul.test//64 ip6:2001:db8::/32 ~all")
    assert [str(t) for t in record.terms][-1] == "~all"
    assert record.terms[0].cidr4 == 24 and record.terms[1].cidr6 == 64
    for bad, words in (
        ("v=spf1 foo:bar -all", "unknown mechanism"),
        ("v=spf1 include -all", "needs a domain"),
        ("v=spf1 redirect=a.test redirect=b.test", "two redirect"),
        ("v=spf1 ip6:192.0.2.1", "not an IPv6"),
    ):
        with pytest.raises(pd.RecordError, match=words):
            spf.parse_spf(bad)
    assert pd.org_domain("news.hanul.co.kr") == "hanul.co.kr"
    assert pd.aligned("news.hanul.org", "hanul.org", strict=False)
    assert not pd.aligned("news.hanul.org", "hanul.org", strict=True)
    assert pd.parse_resolver("[::1]:5353") == ("::1", 5353)
    with pytest.raises(ConfigError, match="dns_resolver"):
        pd.parse_resolver("dns.example.org:53")
    with pytest.raises(pd.RecordError, match="revoked"):
        pd.dkim_record(["v=DKIM1; k=rsa; p="])
