"""`mailer dkim keygen`: the TXT record printed in forms DNS software accepts.

A 2048-bit key's record is ~410 characters, over the 255 octets of one DNS character-string:
the zone form must be split into strings a zone parser (dnspython here, as BIND) reads back to
the one-line value, and both must carry the private key's public half."""

from __future__ import annotations

import base64
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.zone
from cryptography.hazmat.primitives import serialization

from tests.support.cli import Cli


def _public_der(key_file: Path) -> bytes:
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _keygen(cli: Cli) -> tuple[str, str, str]:
    """The command's output, its zone form (the lines from the name to ")") and one-line value."""
    out = cli("dkim", "keygen", "--selector", "s2026", "--domain", "Hanul.Example.org.").output
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("s2026._domainkey."))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith(")"))
    zone_form = "\n".join(lines[start : end + 1])
    value = lines[
        lines.index("and this value, on one line, without quotes (the panel splits it):") + 1
    ]
    return out, zone_form, value.strip()


def test_zone_form_parses_and_equals_the_one_line_value(cli: Cli, tmp_path: Path) -> None:
    out, zone_form, value = _keygen(cli)
    assert "zone file" in out and "web panel" in out  # which form goes where
    assert value.startswith("v=DKIM1; k=rsa; p=") and len(value) > 255
    zone = dns.zone.from_text(
        "$ORIGIN hanul.example.org.\n$TTL 3600\n"
        "@ IN SOA ns.hanul.example.org. admin.hanul.example.org. 1 3600 600 86400 300\n"
        "@ IN NS ns.hanul.example.org.\n" + zone_form + "\n",
        relativize=False,
    )
    rdataset = zone.find_rdataset("s2026._domainkey.hanul.example.org.", "TXT")
    [txt] = list(rdataset)
    assert all(len(part) <= 255 for part in txt.strings)
    assert len(txt.strings) >= 2
    joined = b"".join(txt.strings).decode("ascii")
    assert joined == value
    # The same strings as one rdata (what an API or nsupdate takes).
    rdata_text = " ".join(zone_form.split("TXT", 1)[1].strip().strip("()").split())
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, rdata_text)
    assert isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
    assert b"".join(rdata.strings).decode() == value
    # The key published is the private key's.
    p = dict(tag.strip().split("=", 1) for tag in value.split(";"))["p"]
    assert base64.b64decode(p) == _public_der(tmp_path / "dkim.key")


def test_a_single_string_over_255_octets_is_refused_by_the_zone_parser() -> None:
    # Why the split matters: the form printed before is not a valid zone line.
    long = "v=DKIM1; k=rsa; p=" + "A" * 392
    try:
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, f'"{long}"')
    except dns.exception.SyntaxError:
        return
    raise AssertionError("dnspython accepted a 410-octet character-string")
