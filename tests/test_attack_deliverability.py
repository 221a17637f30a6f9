"""An outsider's attacks on deliverability (issue 16): hostile DNS answers to `mailer doctor`,
secrets in its output, settings that would break DKIM, forged complaints and refusals.

Real parts only: a dnslib server on 127.0.0.1 (tests/support/dnsserver.py, here also answering
CNAME chains), aiosmtpd (tests/support/smtp.py), the corpus's ARF report, SQLite."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dnslib import CNAME, QTYPE, RR
from sqlalchemy import select, update

from mailer import clock
from mailer.bounces.policy import process_message
from mailer.config import Settings, load_settings
from mailer.delivery import preflight, preflight_smtp
from mailer.delivery.dkim import dkim_signer
from mailer.delivery.guards import refusal
from mailer.delivery.message import (
    Sender,
    _address_header,
    feedback_id_header,
    fold_header,
    list_id_header,
)
from mailer.delivery.transport import Outcome, classify
from mailer.errors import ConfigError
from mailer.store.db import session_scope
from mailer.store.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, ProviderHold
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.dnsserver import DnsServer, Zone
from tests.support.sending import bulk_audience
from tests.support.smtp import SmtpServer

DOMAIN = "hanul.test"
CORPUS = Path(__file__).parent / "bounce_corpus"


class ChainZone(Zone):
    """A Zone that also answers CNAME chains (and loops) as a recursive resolver would."""

    def __init__(self) -> None:
        super().__init__()
        self.cnames: dict[str, str] = {}

    def resolve(self, request: Any, handler: Any) -> Any:
        name = str(request.q.qname).rstrip(".").lower()
        if name not in self.cnames:
            return super().resolve(request, handler)
        reply = request.reply()
        for _ in range(40):
            if name not in self.cnames:
                break
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(self.cnames[name]), ttl=60))
            name = self.cnames[name]
        return reply


@pytest.fixture
def zone() -> Iterator[tuple[ChainZone, DnsServer]]:
    z = ChainZone()
    server = DnsServer(z).start()
    yield z, server
    server.stop()


def rsa_key(folder: Path) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = folder / "dkim.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, base64.b64encode(der).decode()


def config(tmp_path: Path, settings: Settings, dns: DnsServer, **extra: Any) -> Settings:
    values = {
        "database_url": settings.database_url,
        "from_address": f"press@{DOMAIN}",
        "dns_resolver": dns.address,
        "base_url": f"https://news.{DOMAIN}",
        **extra,
    }
    write_config(tmp_path, values)
    return load_settings(tmp_path / "mailer.toml", env={})


# --- hostile DNS answers: a finding each, never a traceback -------------------------------------


def hostile(z: ChainZone, public: str) -> None:
    # 40 SPF records, one of them in a redirect loop; a loop of CNAMEs at the MX name.
    for i in range(40):
        z.txt(DOMAIN, f"v=spf1 ip4:192.0.2.{i} redirect=loop.{DOMAIN}")
    z.txt(f"loop.{DOMAIN}", f"v=spf1 redirect={DOMAIN}")
    # Two DMARC records, one with control and non-ASCII characters.
    z.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=reject")
    z.txt(f"_dmarc.{DOMAIN}", "v=DMARC1; p=rejé\x07ct")
    # DKIM: p= not base64, then a second record.
    z.txt(f"mailer._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=кл@ч")
    z.txt(f"mailer._domainkey.{DOMAIN}", f"v=DKIM1; p={public[:40]}")
    z.cnames[f"news.{DOMAIN}"] = f"a.{DOMAIN}"
    z.cnames[f"a.{DOMAIN}"] = f"news.{DOMAIN}"


def test_hostile_dns_gives_clear_findings_in_text_and_json(
    tmp_path: Path, settings: Settings, zone: tuple[ChainZone, DnsServer]
) -> None:
    z, dns = zone
    key, public = rsa_key(tmp_path)
    hostile(z, public)
    config(tmp_path, settings, dns, dkim_key_file=str(key))
    cli = Cli(tmp_path / "mailer.toml")
    found = {c["check"]: c for c in json.loads(cli("doctor", "--json", expect=1).output)}
    assert found["spf"]["status"] == "error" and "40 SPF records" in found["spf"]["detail"]
    assert found["dmarc"]["status"] == "error" and "2 DMARC records" in found["dmarc"]["detail"]
    assert found["dkim"]["status"] == "error" and "DKIM records" in found["dkim"]["detail"]
    assert found["base-url"]["status"] in ("skipped", "error")
    for c in found.values():
        assert not re.search(r"[\x00-\x1f]", c["detail"] + c["fix"]), c
    text = cli("doctor", expect=1).output
    assert "Traceback" not in text and "error(s)" in text


def test_spf_redirect_loop_and_the_lookup_limit(
    tmp_path: Path, settings: Settings, zone: tuple[ChainZone, DnsServer]
) -> None:
    z, dns = zone
    s = config(tmp_path, settings, dns)
    z.txt(DOMAIN, f"v=spf1 redirect=r1.{DOMAIN}")
    z.txt(f"r1.{DOMAIN}", f"v=spf1 include:r2.{DOMAIN} redirect={DOMAIN}")
    z.txt(f"r2.{DOMAIN}", "v=spf1 -all")
    lookup, _ = preflight.open_dns(s)
    [loop] = preflight.check_spf(s, lookup, "127.0.0.1")
    assert loop.status == "error" and "loop" in loop.detail
    # Eleven includes, each its own domain: over RFC 7208's ten.
    z.replace_txt(DOMAIN, "v=spf1 " + " ".join(f"include:i{n}.{DOMAIN}" for n in range(11)))
    for n in range(11):
        z.txt(f"i{n}.{DOMAIN}", "v=spf1 -all")
    lookup, _ = preflight.open_dns(s)
    [many] = preflight.check_spf(s, lookup, "127.0.0.1")
    assert many.status == "error" and "more than 10 DNS lookups" in many.detail


# --- settings that break DKIM: doctor must say so ----------------------------------------------


def test_an_ed25519_key_is_refused_before_a_send_fails_at_signing(
    tmp_path: Path, settings: Settings, zone: tuple[ChainZone, DnsServer]
) -> None:
    # Fixed in preflight.py: doctor said "ok" for a key dkimpy cannot sign with.
    z, dns = zone
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    z.txt(f"mailer._domainkey.{DOMAIN}", f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}")
    s = config(tmp_path, settings, dns, dkim_key_file=str(path))
    with pytest.raises(Exception):  # noqa: B017  # dkimpy's KeyFormatError
        sign = dkim_signer(s, s.from_address)
        assert sign is not None
        sign(b"From: press@hanul.test\nSubject: x\n\nbody\n")
    lookup, _ = preflight.open_dns(s)
    [dkim] = preflight.check_dkim(s, lookup)
    assert dkim.status == "error" and "Ed25519" in dkim.detail


@pytest.mark.parametrize("selector", ["a;b=c", "my sel", "sélecteur", "a..b"])
def test_a_selector_that_is_not_a_dns_name_is_refused(
    tmp_path: Path, settings: Settings, zone: tuple[ChainZone, DnsServer], selector: str
) -> None:
    # Fixed in preflight.py and dkim.py: "a;b=c" went raw into s= (adding a tag), a space or
    # non-ASCII named a key no receiver finds, and doctor looked the IDNA form up as "ok".
    z, dns = zone
    key, public = rsa_key(tmp_path)
    z.txt(f"{selector}._domainkey.{DOMAIN}", f"v=DKIM1; p={public}")
    s = config(tmp_path, settings, dns, dkim_key_file=str(key), dkim_selector=selector)
    lookup, _ = preflight.open_dns(s)
    [dkim] = preflight.check_dkim(s, lookup)
    assert dkim.status == "error" and "not a DNS name" in dkim.detail
    with pytest.raises(ConfigError, match="dkim_selector"):
        dkim_signer(s, s.from_address)


# --- SMTP: no traceback, no secret --------------------------------------------------------------


def test_non_ascii_password_is_a_finding_and_never_shown(
    tmp_path: Path, settings: Settings, zone: tuple[ChainZone, DnsServer]
) -> None:
    # Fixed in preflight_smtp.py: smtplib's UnicodeEncodeError was a traceback.
    _, dns = zone
    secret = "pässwört-geheim"
    server = SmtpServer(auth=("press", secret)).start()
    try:
        s = config(tmp_path, settings, dns, transport="smtp", smtp_url=server.url("press", secret))
        found = {c.check: c for c in preflight_smtp.check_smtp(s)}
        out = Cli(tmp_path / "mailer.toml")("doctor", "--json", expect=1).output
    finally:
        server.stop()
    assert found["smtp-auth"].status == "error" and "non-ASCII" in found["smtp-auth"].detail
    assert secret not in out and "geheim" not in out
    assert "p%C3%A4ssw" not in out


def test_non_ascii_envelope_sender_is_a_finding(
    tmp_path: Path, settings: Settings, zone: tuple[ChainZone, DnsServer]
) -> None:
    # Fixed in preflight_smtp.py: MAIL FROM:<bounce@bücher.test> was a traceback.
    _, dns = zone
    server = SmtpServer(auth=("press", "pw")).start()
    try:
        s = config(
            tmp_path,
            settings,
            dns,
            transport="smtp",
            smtp_url=server.url("press", "pw"),
            envelope_sender="bounce@bücher.test",
        )
        found = {c.check: c for c in preflight_smtp.check_smtp(s)}
    finally:
        server.stop()
    assert found["smtp-mail-from"].status in ("ok", "error"), found["smtp-mail-from"]
    assert "bücher.test" in found["smtp-mail-from"].detail
    assert server.sink.received == []


# --- strangers: forged complaints, forged DSNs, refusals ----------------------------------------


def sending_campaign(settings: Settings, audience: int = 1010, sent: int = 1000) -> int:
    from mailer.delivery.planning import plan_campaign, store_release

    bulk_audience(settings, audience)
    with session_scope(settings) as s:
        release = store_release(s, "r", "R", "en", {"en": "---\ntitle: R\n---\nBody"}, {}, "h")
        campaign = plan_campaign(s, settings, release, ["press"]).campaign
        campaign.status = CampaignStatus.SENDING
        campaign.started_at = clock.now()
        cid = campaign.id
    with session_scope(settings) as s:
        first = list(s.scalars(select(Delivery.id).order_by(Delivery.id).limit(sent)))
        s.execute(
            update(Delivery)
            .where(Delivery.id.in_(first))
            .values(status=DeliveryStatus.SENT, attempts=1, sent_at=clock.now(), smtp_code=250)
        )
    return cid


def forged_arf(email: str, message_id: str, n: int) -> bytes:
    raw = (CORPUS / "09-arf-aol-abuse.eml").read_bytes()
    local, _, domain = email.partition("@")
    for old, new in (
        (b"lim.taeyang@aol.example", email),
        (b"lim.taeyang=aol.example", f"{local}={domain}"),
        (b"<c1.r9.a1b2c3d4e5@hanul.example.org>", message_id),
        (b"<fbl.20250304162033.71234@aol.example>", f"<fbl.forged.{n}@aol.example>"),
    ):
        raw = raw.replace(old, new.encode())
    return raw


def test_forged_complaints_never_pause_a_campaign(settings: Settings) -> None:
    cid = sending_campaign(settings)
    with session_scope(settings) as s:
        own = s.scalar(select(Delivery.message_id).where(Delivery.email == "r00000@example.org"))
    assert own is not None
    for n in range(1, 30):
        # A stranger names real readers: with a guessed Message-ID, or with their own
        # (real) one naming another reader.
        mid = own if n % 2 else f"<c{cid}.{n:024x}@hanul.example.org>"
        with session_scope(settings) as s:
            for item in process_message(
                s, settings, f"f{n}", forged_arf(f"r{n:05d}@example.org", mid, n)
            ):
                assert item.campaign_id is None or item.email == "r00000@example.org", item
    with session_scope(settings) as s:
        c = s.get_one(Campaign, cid)
        assert (c.status, c.pause_reason) == (CampaignStatus.SENDING, None)
        assert s.scalars(select(ProviderHold)).all() == []


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (550, "5.7.1 Recipient address rejected: blocked by policy"),
        (554, "5.7.26 unauthenticated"),
        (550, "No such user here - your IP is blocked"),
    ],
)
def test_a_refusal_of_the_sender_never_suppresses_the_recipient(code: int, text: str) -> None:
    reply = classify(code, text)
    assert reply.outcome != Outcome.BAD_ADDRESS or refusal(code, text) is not None


# --- header injection through names and settings ------------------------------------------------

NAMES = [
    "Ann\r\nBcc: victim@example.org",
    "=?utf-8?b?QWRtaW4=?= \u2028 <admin@evil.test>",
    "한울 커뮤니티 센터 " * 12,
    "😀" * 90,
    'a"b\\c' * 60,
    "é" + "a" * 300,
]


@pytest.mark.parametrize("name", NAMES)
def test_names_never_inject_and_keep_words_and_lines_short(name: str) -> None:
    clean = name.replace("\r\n", " ").replace("\u2028", " ")
    sender = Sender(f"press@{DOMAIN}", clean, "", clean[:200], "press", DOMAIN)
    heads = [
        fold_header("From", _address_header(clean, f"press@{DOMAIN}", "From")),
        list_id_header(sender),
    ]
    for head in heads:
        text = head.decode("ascii") if head.isascii() else head.decode("utf-8")
        lines = text.rstrip("\n").split("\n")
        assert all(line.startswith((" ", "\t")) for line in lines[1:]), text
        assert all(len(line) <= 998 for line in lines)
        assert all(len(w) <= 75 for w in re.findall(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=", text))
        assert "\nBcc:" not in text


def test_feedback_id_sender_cannot_add_fields_or_headers(
    tmp_path: Path, settings: Settings, zone: tuple[ChainZone, DnsServer]
) -> None:
    _, dns = zone
    s = config(tmp_path, settings, dns, feedback_id_sender="evil:x:y:zé")
    head = feedback_id_header(s, Sender(f"press@{DOMAIN}", "", "", "L", "press", DOMAIN), 7)
    assert head.count(b"\n") == 1 and head.count(b":") == 4  # "Feedback-ID:" and 3 separators
    with pytest.raises(ConfigError):
        config(tmp_path, settings, dns, feedback_id_sender="a\r\nBcc: x@evil.test")
