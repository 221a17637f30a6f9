"""TLS, AUTH and DKIM against real servers and real signatures."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select

from mailer.config import Settings
from mailer.store.db import session_scope
from mailer.store.models import Delivery
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.sending import populate, use_smtp
from tests.support.smtp import SmtpServer


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[SmtpServer, Path]]:
    cert, key = self_signed(tmp_path)
    server = SmtpServer(auth=("sender", "s3cret-pass"), tls_cert=cert, tls_key=key).start()
    yield server, cert
    server.stop()


def test_starttls_with_private_ca_and_auth(
    settings: Settings, tmp_path: Path, tls_server: tuple[SmtpServer, Path], release: Path, cli: Cli
) -> None:
    server, cert = tls_server
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "transport": "smtp",
            "smtp_url": server.url("sender", "s3cret-pass"),
            "smtp_ca_file": str(cert),
        },
    )
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--yes").output
    assert "s3cret-pass" not in out
    assert len(server.sink.received) == 6


def test_untrusted_certificate_is_a_clear_error_before_any_claim(
    settings: Settings,
    tmp_path: Path,
    tls_server: tuple[SmtpServer, Path],
    release: Path,
    cli: Cli,
) -> None:
    server, _ = tls_server
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "transport": "smtp",
            "smtp_url": server.url("sender", "s3cret-pass"),
        },
    )
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert out.startswith("Error:") and "TLS handshake failed" in out
    assert "s3cret-pass" not in out
    with session_scope(settings) as s:
        assert s.scalars(select(Delivery)).all() == []
    assert server.sink.received == []


def test_refused_login_is_a_clear_error_before_any_claim(
    settings: Settings,
    tmp_path: Path,
    tls_server: tuple[SmtpServer, Path],
    release: Path,
    cli: Cli,
) -> None:
    server, cert = tls_server
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "transport": "smtp",
            "smtp_url": server.url("sender", "wrong-password"),
            "smtp_ca_file": str(cert),
        },
    )
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "refused the login for 'sender'" in out
    assert "wrong-password" not in out
    with session_scope(settings) as s:
        assert s.scalars(select(Delivery)).all() == []


def test_unreachable_server_is_a_clear_error(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    from tests.support.smtp import free_port

    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "transport": "smtp",
            "smtp_url": f"smtp://127.0.0.1:{free_port()}?tls=none",
        },
    )
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "cannot reach the SMTP server" in out


def test_dkim_signatures_verify(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    server = SmtpServer().start()
    try:
        settings = use_smtp(settings, tmp_path, server)
        out = cli("dkim", "keygen", "--selector", "s2026", "--domain", "hanul.example.org").output
        record = out.splitlines()[3]  # the zone form; the one-line value follows it
        txt = out.split("(the panel splits it):\n", 1)[1].splitlines()[0].strip().encode()
        assert record.startswith("s2026._domainkey.hanul.example.org. IN TXT")
        settings = use_smtp(
            settings,
            tmp_path,
            server,
            dkim_key_file="dkim.key",
            dkim_selector="s2026",
            dkim_domain="hanul.example.org",
        )
        populate(settings)
        cli("send", str(release), "--list", "press", "--yes")
        assert len(server.sink.received) == 6

        def dns(name: bytes, timeout: int = 5) -> bytes:
            assert name == b"s2026._domainkey.hanul.example.org."
            return txt

        for r in server.sink.received:
            data = r.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            assert data.startswith(b"DKIM-Signature:")
            assert dkim.verify(data, dnsfunc=dns)
            sig = data.split(b"\r\n\r\n")[0].decode()
            h = sig.split(" h=")[1].split(";")[0].replace("\r\n", "").replace(" ", "")
            signed = h.lower().split(":")
            for name in (
                "from",
                "subject",
                "date",
                "message-id",
                "to",
                "list-id",
                "list-unsubscribe",
                "list-unsubscribe-post",
            ):
                assert signed.count(name) >= 2, name  # over-signed
            assert "a=rsa-sha256" in sig.replace(" ", "") and "c=relaxed/relaxed" in sig
            # Tampering breaks it.
            assert not dkim.verify(data.replace(b"Subject: ", b"Subject: X", 1), dnsfunc=dns)
    finally:
        server.stop()


def test_from_outside_the_dkim_domain_is_refused(
    settings: Settings, tmp_path: Path, release: Path, cli: Cli
) -> None:
    cli("dkim", "keygen", "--domain", "other.example.com")
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "dkim_key_file": "dkim.key",
            "dkim_domain": "other.example.com",
        },
    )
    populate(settings)
    out = cli("send", str(release), "--list", "press", "--yes", expect=1).output
    assert "outside the DKIM domain" in out
    with session_scope(settings) as s:
        assert s.scalars(select(Delivery)).all() == []
