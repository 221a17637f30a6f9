"""The compiled message path (CompiledVariant.build) and the benchmark's baseline (a plain
EmailMessage per recipient) produce the same message: parsed with the email package, the same
headers and the same decoded parts, for English and Korean recipients whose names have non-ASCII
characters and RFC 5322 specials."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from html import escape as html_escape
from typing import Any

import pytest

from bench.bench_build import straightforward_build
from mailer import clock, tokens
from mailer.config import Settings
from mailer.delivery.message import CompiledVariant, Recipient, Sender, sender_for
from mailer.delivery.transport import _dot_stuff
from mailer.releases.personalise import PersonalTemplate
from mailer.releases.render import render_release
from mailer.releases.source import load_release
from mailer.samples import SAMPLE_ORGANISATION, sample_path

NAMES = {
    "en": [
        "Jane Smith",
        "Jane O'Neil",
        "José García-Müller",
        'Ann "Nan" Smith, PhD',
        "Dr. Lee (Metro Desk); <desk>",
        "Tom & Jerry =?utf-8?q?x?=",
        ".Dot Leading",
        "A Very Long Name " * 6,
        "",
    ],
    "ko": ["김민수", "박서연 (한인일보)", '최지훈 "기자", 서울', "Park 서연 & Co.", "이은지   "],
}


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(
        **SAMPLE_ORGANISATION,
        secret_key="equivalence-secret",
        from_address="press@hanul.example.org",
        reply_to="desk@hanul.example.org",
        base_url="https://news.hanul.example.org",
    )


@pytest.fixture(scope="module")
def rendered(settings: Settings) -> dict[str, Any]:
    """The sample release, with a greeting that puts the name in both bodies (its layouts
    only put the links and the address there)."""
    out = {}
    for language, variant in render_release(load_release(sample_path()), settings).items():
        greeting = "Dear __MAILER_NAME__ (__MAILER_EMAIL__),"
        html = variant.html.source.replace("<body", f"<p>{greeting}</p><body", 1)
        out[language] = dataclasses.replace(
            variant,
            html=PersonalTemplate.compile(html, escape_html=True),
            text=PersonalTemplate.compile(
                f"{greeting}\n\n{variant.text.source}", escape_html=False
            ),
        )
    return out


@pytest.fixture(scope="module")
def sender(settings: Settings) -> Sender:
    return sender_for(settings, "Press 기자단", "press")


@pytest.fixture(autouse=True)
def pinned_clock() -> Any:
    when = datetime(2026, 11, 27, 21, 30, 15, tzinfo=UTC)
    clock.set_clock(lambda: when)
    yield when
    clock.set_clock(None)


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects, msg.defects
    return msg


def headers(msg: EmailMessage) -> dict[str, str]:
    # Folding whitespace is not content: compare unfolded, decoded values.
    out = {k.lower(): re.sub(r"\s+", " ", str(v)).strip() for k, v in msg.items()}
    del out["content-type"]  # the boundary differs by design; the type is compared below
    return out


def parts(msg: EmailMessage) -> list[tuple[str, str | None, str]]:
    # Line ends are the transport's business (LF when built, CRLF on the wire).
    return [
        (p.get_content_type(), p.get_content_charset(), p.get_content().replace("\r\n", "\n"))
        for p in msg.iter_parts()
    ]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_compiled_and_email_package_messages_are_equivalent(
    language: str, settings: Settings, rendered: dict[str, Any], sender: Sender
) -> None:
    compiled = CompiledVariant(rendered[language], sender, settings, campaign_id=7)
    for i, name in enumerate(NAMES[language], start=100):
        r = Recipient(i, f"reader{i}@example.org", name, 3, f"<c7.r{i}.abc@hanul.example.org>")
        fast, slow = parse(compiled.build(r)), parse(straightforward_build(compiled, sender, r))
        assert headers(fast) == headers(slow), name
        assert fast.get_content_type() == slow.get_content_type() == "multipart/alternative"
        assert parts(fast) == parts(slow), name
        assert [p[:2] for p in parts(fast)] == [("text/plain", "utf-8"), ("text/html", "utf-8")]
        # The values really are personal: the name as typed (the HTML part escapes it) and the
        # recipient's own unsubscribe link in the header and in both bodies.
        if "=?" not in name:  # an encoded word typed in a name is decoded by readers (both paths)
            assert email.utils.parseaddr(str(fast["To"])) == (name.strip(), r.email)
        url = str(fast["List-Unsubscribe"]).split(">")[0][1:]
        token = url.rsplit("/", 1)[1]
        assert tokens.read_unsubscribe(settings, token) == tokens.UnsubscribeToken(i, 3, 7)
        assert token == tokens.make_unsubscribe(settings, i, 3, 7)
        text, html = (p[2] for p in parts(fast))
        assert url in text and url in html
        assert f"Dear {name} (" in text and f"Dear {html_escape(name)} (" in html
        assert "__MAILER_" not in text + html


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_compiled_message_survives_the_smtp_framing(
    language: str, settings: Settings, rendered: dict[str, Any], sender: Sender
) -> None:
    """What the sink receives (CRLF, dot-stuffed, then un-stuffed) parses to the same message."""
    compiled = CompiledVariant(rendered[language], sender, settings, campaign_id=7)
    r = Recipient(5, "reader5@example.org", NAMES[language][1], 3, "<c7.r5.x@hanul.example.org>")
    built = compiled.build(r)
    wire = _dot_stuff(built)
    assert b"\r\n" in wire and b"\n" not in wire.replace(b"\r\n", b"")
    received = re.sub(rb"(?m)^\.\.", b".", wire)
    assert headers(parse(received)) == headers(parse(built))
    assert parts(parse(received)) == parts(parse(built))


def test_tokens_match_the_tokens_module(
    settings: Settings, rendered: dict[str, Any], sender: Sender
) -> None:
    """The compiled path signs its own tokens (faster); they are the tokens module's tokens."""
    compiled = CompiledVariant(rendered["en"], sender, settings, campaign_id=None)
    for contact_id, list_id in [(1, None), (42, 3), (987_654, 12), (2**31 - 1, 7)]:
        values = compiled.personal_values(
            Recipient(contact_id, "a@example.org", "A", list_id, "<x@example.org>")
        )
        assert values["_unsubscribe_token"] == tokens.make_unsubscribe(
            settings, contact_id, list_id, None
        )
        pref = values["preferences_url"].rsplit("/", 1)[1]
        assert pref == tokens.make_preferences(settings, contact_id)
        assert tokens.read_preferences(settings, pref) == contact_id


def test_tokens_read_back_where_the_tokens_module_would_compress(
    settings: Settings, rendered: dict[str, Any], sender: Sender
) -> None:
    """Repetitive ids are where itsdangerous zlib-compresses its payload; the compiled path never
    does, and its tokens must still open the same pages."""
    compiled = CompiledVariant(rendered["en"], sender, settings, campaign_id=11111)
    for contact_id, list_id in [(111_111_111, 1111), (1_000_000_000, None), (11111, 1111)]:
        r = Recipient(contact_id, "a@example.org", "A", list_id, "<x@example.org>")
        values = compiled.personal_values(r)
        assert tokens.read_unsubscribe(
            settings, values["_unsubscribe_token"]
        ) == tokens.UnsubscribeToken(contact_id, list_id, 11111)
        pref = values["preferences_url"].rsplit("/", 1)[1]
        assert tokens.read_preferences(settings, pref) == contact_id
    # The case exists: the tokens module does compress one of these (so the test means it).
    assert tokens.make_unsubscribe(settings, 111_111_111, 1111, 11111).count(".") == 2


def test_smtp_framing_matches_rfc_5321(settings: Settings) -> None:
    """CRLF line ends and dot-stuffing (the fast path) equal the general rule on any input."""
    import random

    def reference(message: bytes) -> bytes:
        data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", message)
        data = re.sub(rb"(?m)^\.", b"..", data)
        return data if data.endswith(b"\r\n") else data + b"\r\n"

    rnd = random.Random(5321)
    for _ in range(20000):
        message = bytes(rnd.choice(b"a.\n\r ") for _ in range(rnd.randint(0, 24)))
        assert _dot_stuff(message) == reference(message), message


def test_base64_bodies_equal_encoding_the_filled_text_whole() -> None:
    """A base64 part encoded partly once per variant has the bytes of encoding it whole."""
    import random

    from mailer.delivery.message import _Body, encode_b64
    from mailer.releases.personalise import placeholder

    rnd = random.Random(2045)
    alphabet = "가나다 abc\n&<>\"'"

    def text(sizes: list[int]) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.choice(sizes)))

    for _ in range(3000):
        pieces = []
        for _ in range(rnd.randint(0, 3)):
            pieces += [
                text([0, 1, 19, 56, 57, 58, 120]),
                placeholder(rnd.choice(["name", "email", "unsubscribe_url"])),
            ]
        template = PersonalTemplate.compile(
            "한" * rnd.choice([0, 19, 57]) + "".join(pieces) + text([0, 1, 57]),
            escape_html=rnd.random() < 0.5,
        )
        body = _Body(template)
        body.qp = False  # whatever the text, exercise the base64 path
        values = {"name": text([0, 3, 9]), "email": "", "unsubscribe_url": "https://x/u/t"}
        out: list[bytes] = []
        body.encode(values, out)
        assert b"".join(out) == encode_b64(template.fill(values)), (template.parts, values)


def test_address_headers_are_what_the_email_package_writes() -> None:
    """The short cut for a short non-ASCII name writes what email.header.Header writes."""
    import random
    from email.header import Header

    from mailer.delivery.message import _address_header

    rnd = random.Random(2047)
    pool = "김박최이정한울서연민수 Jé-ü\"'(),.&=?_"
    for _ in range(3000):
        name = "".join(rnd.choice(pool) for _ in range(rnd.randint(1, 30)))
        if name.isascii():
            continue
        for header_name in ("To", "From", "Reply-To"):
            words = Header(name, "utf-8", maxlinelen=76, header_name=header_name)
            assert (
                _address_header(name, "a@example.org", header_name)
                == f"{words.encode(linesep=chr(10))} <a@example.org>"
            ), name


def test_q_length_counts_what_the_email_package_counts() -> None:
    # The To header picks base64 or Q encoding for a name by the shorter; _q_length must give
    # the email package's figure for every byte value.
    import email.quoprimime
    import random

    from mailer.delivery.message import _q_length

    rnd = random.Random(5)
    samples = [bytes(range(256)), "박서연 (한인일보)".encode(), b"Ann O'Neil", b"a_b=c?d"]
    samples += [bytes(rnd.randrange(256) for _ in range(rnd.randrange(60))) for _ in range(500)]
    for raw in samples:
        assert _q_length(raw) == email.quoprimime.header_length(raw), raw
