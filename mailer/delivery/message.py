"""Per-recipient MIME messages, compiled once per language variant.

Everything that is the same for every recipient of a variant (From, Subject, List-Id, the MIME
skeleton) is encoded once, in `CompiledVariant.__init__`. `build()` then only fills the personal
values, encodes the two bodies and writes the per-recipient headers (To, Date, Message-ID,
List-Unsubscribe): no email.message objects, no premailer, no template engine per recipient.

Over 400 lines on purpose: header encoding, the refusal of line breaks and the DKIM signature
must agree byte for byte, and are read together here (the DKIM signature itself: dkim.py).
"""

from __future__ import annotations

import base64
import binascii
import email.base64mime
import email.quoprimime
import email.utils
import hashlib
import hmac
import html
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.header import Header
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import want_bytes
from itsdangerous.signer import HMACAlgorithm

from mailer import clock, tokens
from mailer.config import Settings
from mailer.contacts.addresses import smtp_form
from mailer.errors import ConfigError, MailerError
from mailer.releases.personalise import PersonalTemplate

if TYPE_CHECKING:
    from mailer.engagement.links import Tracking


class RenderedVariant(Protocol):
    """What mailer.releases.render produces for one language (rendered and inlined once)."""

    @property
    def language(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> PersonalTemplate: ...
    @property
    def text(self) -> PersonalTemplate: ...


@dataclass(frozen=True)
class Recipient:
    """One addressee: the values that differ per message."""

    contact_id: int
    email: str
    name: str
    list_id: int | None
    message_id: str


@dataclass(frozen=True)
class Sender:
    """Who a message is from and for which list; the same for a whole campaign."""

    from_address: str
    from_name: str
    reply_to: str
    list_name: str
    list_slug: str
    domain: str

    @property
    def list_id_header(self) -> str:
        return f"{self.list_name} <{self.list_slug}.{self.domain}>"


def sender_for(
    settings: Settings, list_name: str, list_slug: str, from_address: str | None = None
) -> Sender:
    address = from_address or settings.from_address
    return Sender(
        from_address=address,
        from_name=settings.from_name,
        reply_to=settings.reply_to,
        list_name=list_name,
        list_slug=list_slug,
        domain=address.rpartition("@")[2].lower(),
    )


def message_id(
    campaign_id: int, contact_id: int, secret_key: str, domain: str, installation: str = ""
) -> str:
    """`<c12.TAG@domain>`, TAG an HMAC of (campaign, contact) under the secret key and this
    database's own random part (`installation`, see mailer.delivery.message_ids): two databases
    sharing one mailer.toml number their campaigns alike, and must not write the same ids.

    Deterministic per (campaign, contact), so a resend of an in-doubt message keeps its id, and
    unguessable: a recipient who sees their own id cannot write another recipient's, so a report
    quoting an id found in the ledger proves it is about the message sent to that recipient.
    """
    return message_id_maker(secret_key, domain, installation)(campaign_id, contact_id)


def message_id_maker(
    secret_key: str, domain: str, installation: str = ""
) -> Callable[[int, int], str]:
    """message_id for many recipients, with the HMAC key derived once."""
    prepared = hmac.new(message_id_key(secret_key, installation), digestmod=hashlib.sha256)

    def make(campaign_id: int, contact_id: int) -> str:
        mac = prepared.copy()
        mac.update(f"{campaign_id}:{contact_id}".encode())
        # 24 hex characters: 96 bits, beyond guessing.
        return f"<c{campaign_id}.{mac.hexdigest()[:24]}@{domain}>"

    return make


def message_id_key(secret_key: str, installation: str = "") -> bytes:
    """The HMAC key of Message-IDs: derived, so it differs from every other use of the secret,
    and per database (`installation`). Without one, the key of ledgers planned before it."""
    label = b"mailer message-id v1" + (b":" + installation.encode() if installation else b"")
    return hmac.new(secret_key.encode(), label, hashlib.sha256).digest()


def test_message_id(domain: str) -> str:
    """A test message's id: random, never in the ledger, so no report about it proves anything."""
    return f"<test.{secrets.token_hex(12)}@{domain}>"


def campaign_nonce(secret_key: str, campaign_id: int) -> str:
    """A short per-campaign value, kept in the campaign's plan (no longer part of Message-IDs)."""
    digest = hmac.new(secret_key.encode(), f"campaign:{campaign_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:10]


class HeaderValueError(MailerError):
    """A header value holds a line break: it would end the header and start another."""


# Every character str.splitlines() treats as a line end: a mail reader may break a line there.
_LINE_BREAK = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
# The same, except the one fold a value may already hold: the one email.header writes between
# two RFC 2047 encoded words of a long non-ASCII name ("?=\n =?", from _address_header and
# _list_id_value). Its next line starts with a space, so it continues the header; any other
# line break (a bare "\n ", which may leave a line of blanks some readers take for the end of
# the headers, included) is refused.
_BREAK_NOT_FOLD = re.compile(r"\r|(?<!\?=)\n|\n(?! =\?)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def check_header_value(name: str, value: str) -> str:
    """`value` unchanged, or HeaderValueError if it holds a line break (header injection)."""
    found = _BREAK_NOT_FOLD.search(value)
    if found is not None:
        raise HeaderValueError(
            f"{name}: the value {value!r} holds a line break ({found.group(0)!r}): refused"
        )
    return value


def one_line(text: str) -> str:
    """Data shown in a header (a name): each line break becomes a space."""
    return _LINE_BREAK.sub(" ", text)


def fold_header(name: str, value: str) -> bytes:
    """One unstructured header, folded at 78; non-ASCII as RFC 2047 encoded words (<= 75 each).

    The only line breaks in the result are the folds this function makes: a value holding one
    is refused (HeaderValueError)."""
    check_header_value(name, value)
    if value.isascii():
        folded = Header(value, "us-ascii", maxlinelen=78, header_name=name).encode(linesep="\n")
    else:
        folded = _encoded(value, name)
    return f"{name}: {folded}\n".encode("ascii")


# RFC 2047 section 2: an encoded word is at most 75 characters; "=?utf-8?b?" and "?=" take 12.
_WORD_MAX = 75
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def _fits(name: str, folded: str) -> bool:
    """Every encoded word of `name: folded` within 75 characters, every line within 78."""
    lines = f"{name}: {folded}".split("\n")
    return all(len(line) <= 78 for line in lines) and all(
        len(word) <= _WORD_MAX for word in _ENCODED_WORD.findall(folded)
    )


def _encoded(text: str, name: str) -> str:
    """`text` as RFC 2047 encoded words on folded lines, for the header `name`.

    email.header.Header writes what readers expect (B or Q, whichever is shorter), but its
    limit is the line, not the word: without a header name, or after a long first line, it
    writes words of 76 or 77 characters, which strict readers (and RFC 2047) refuse. Its result
    is kept when it is right, else the text is written as B words that are right by
    construction."""
    folded = Header(text, "utf-8", maxlinelen=76, header_name=name).encode(linesep="\n")
    if _fits(name, folded):
        return folded
    return "\n ".join(_b_words(text, 78 - len(name) - 2))


def _b_words(text: str, first_room: int) -> list[str]:
    """B encoded words of at most 75 characters (the first within `first_room` when it can),
    each holding whole characters: a word never ends inside a UTF-8 sequence."""

    def capacity(room: int) -> int:  # bytes of text a word of `room` characters holds
        return max(1, (min(room, _WORD_MAX) - 12) // 4) * 3

    words: list[str] = []
    limit = capacity(max(first_room, 16))
    chunk = b""
    for ch in text:
        raw = ch.encode("utf-8")
        if chunk and len(chunk) + len(raw) > limit:
            words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
            chunk, limit = b"", capacity(_WORD_MAX)
        chunk += raw
    words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
    return words


# RFC 5322 atext: what a phrase may hold without quoting.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def phrase(text: str, header_name: str) -> str:
    """`text` as an RFC 5322 phrase (a display name, the name of a List-Id): atoms as they
    are, else a quoted-string with its quotes and backslashes escaped, else (non-ASCII) RFC
    2047 encoded words of at most 75 characters; "" for an empty name."""
    text = _CONTROL.sub(" ", one_line(text)).strip()
    if not text:
        return ""
    if not text.isascii():
        return _encoded(text, header_name)
    if _ATOMS.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _address_header(name: str, address: str, header_name: str = "To") -> str:
    check_header_value(header_name, name)
    check_header_value(header_name, address)
    if not address.isascii():
        # An internationalised address goes out with SMTPUTF8; the header carries it as UTF-8.
        return f"{name} <{address}>" if name else address
    name = _CONTROL.sub(" ", name)
    if name.strip() and not name.isascii():
        # RFC 2047: a long Korean name becomes several encoded words of at most 75 characters
        # on folded lines (formataddr would write one word of any length).
        raw = name.encode("utf-8")
        word = "=?utf-8?b?" + base64.b64encode(raw).decode("ascii") + "?="
        # What Header writes for a name that fits on the line and is shorter in base64 than in
        # Q encoding (a Korean name is), at a fifth of the cost.
        if len(header_name) + 2 + len(word) <= 76 and email.base64mime.header_length(
            raw
        ) < _q_length(raw):
            return f"{word} <{address}>"
        return f"{_encoded(name, header_name)} <{address}>"
    shown = phrase(name, header_name)
    return f"{shown} <{address}>" if shown else address


# The bytes RFC 2047's Q encoding writes as themselves (space becomes "_"); every other byte
# becomes "=XX". The same table as email.quoprimime's header map.
_Q_LITERAL = b" -!*+/ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _q_length(raw: bytes) -> int:
    """email.quoprimime.header_length(raw), counted in C rather than byte by byte."""
    return len(raw) + 2 * len(raw.translate(None, _Q_LITERAL))


def encode_qp(text: str) -> bytes:
    """Quoted-printable body (C speed); lines stay under 76 characters."""
    return binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)


def encode_b64(text: str | bytes) -> bytes:
    """Base64 body in 76-character lines."""
    return _b64_bytes(text.encode("utf-8") if isinstance(text, str) else text)


def _b64_bytes(data: bytes) -> bytes:
    raw = binascii.b2a_base64(data, newline=False)
    return b"\n".join([raw[i : i + 76] for i in range(0, len(raw), 76)]) + b"\n"


def _mostly_ascii(text: str) -> bool:
    # Quoted-printable triples every non-ASCII byte: Korean text is smaller and faster in base64,
    # while English stays readable (and unsuspicious to spam filters) in quoted-printable.
    sample = text[:20000]
    return sum(1 for ch in sample if ord(ch) > 127) * 5 < len(sample)


class _Body:
    """One MIME part's body, with as much encoding as possible done once per variant.

    Quoted-printable: each literal stretch of the template is encoded once and ends with a soft
    line break, so a recipient's values are encoded alone and spliced in; the decoded text is
    exactly the filled template. Base64 cannot be spliced at any point, only after a whole
    number of 57-byte lines: the text before the first value is encoded once up to such a
    boundary, the rest per recipient (the bytes are those of encoding the filled text whole).
    """

    def __init__(self, template: PersonalTemplate) -> None:
        self.template = template
        self.qp = _mostly_ascii(template.source)
        self.cte = b"quoted-printable" if self.qp else b"base64"
        # The soft line break that ends each value is put at the start of the next literal.
        self.literals = [
            (b"=\n" if i else b"") + (encode_qp(p) + b"=\n" if p else b"")
            for i, p in enumerate(template.parts[0::2])
        ]
        self.names = template.parts[1::2]
        self.escape = template.escape_html
        # A value used many times (a tracked link's reader part follows every link: mailer.
        # engagement.links) is escaped and encoded once per message, not once per use.
        self.distinct = tuple(dict.fromkeys(self.names))
        self.repeated = len(self.distinct) < len(self.names)
        lead = template.parts[0].encode("utf-8")
        cut = len(lead) // 57 * 57 if len(template.parts) > 1 else 0
        self.b64_lead = encode_b64(lead[:cut]) if cut else b""
        self.b64_rest = lead[cut:]

    def encode(self, values: dict[str, str], out: list[bytes]) -> None:
        """Append the encoded body to `out` (the message is joined once, at the end)."""
        if not self.qp:
            self._encode_b64(values, out)
            return
        literals = self.literals
        out.append(literals[0])
        if self.repeated:
            escape = self.escape
            encoded = {
                n: encode_qp(html.escape(values[n], quote=True) if escape else values[n])
                for n in self.distinct
            }
            for i, name in enumerate(self.names, 1):
                out.append(encoded[name])
                out.append(literals[i])
            return
        for i, name in enumerate(self.names, 1):
            value = values[name]
            if self.escape:
                value = html.escape(value, quote=True)
            out.append(encode_qp(value))
            out.append(literals[i])

    def _encode_b64(self, values: dict[str, str], out: list[bytes]) -> None:
        parts = self.template.parts
        if len(parts) == 1:
            out.append(encode_b64(parts[0]))
            return
        tail = []
        for i in range(1, len(parts)):
            piece = parts[i]
            if i % 2:
                piece = values[piece]
                if self.escape:
                    piece = html.escape(piece, quote=True)
            tail.append(piece)
        rest = self.b64_rest + "".join(tail).encode("utf-8")
        out.append(self.b64_lead)
        if rest or not self.b64_lead:  # nothing after whole lines adds nothing, not a line end
            out.append(_b64_bytes(rest))


def to_header(name: str, address: str) -> bytes:
    """The To header without the email package's general folder (the per-message hot path)."""
    # A name is data (from a web form or a spreadsheet cell); a line break in it is shown as a
    # space. The address was validated on the way in; a break there is refused.
    value = check_header_value("To", _address_header(one_line(name), address))
    if len(value) > 900:
        return fold_header("To", value)
    return b"To: " + value.encode("utf-8") + b"\n"


class _TokenMaker:
    """mailer.tokens' signed tokens, made with the signing key derived once rather than per call.

    The payload is what URLSafeSerializer writes for a short list of integers: compact JSON in
    URL-safe base64. The serializer would also try zlib on it, which never makes a payload this
    short shorter and costs more than the rest together; both forms read back the same. The
    signature is itsdangerous' own (its derived key, its HMAC digest, URL-safe base64 without
    padding) from a prepared HMAC copied per token. Tests compare the tokens with
    tokens.make_unsubscribe and tokens.make_preferences.
    """

    def __init__(self, secret_key: str, salt: str) -> None:
        signer = URLSafeSerializer(secret_key, salt=salt).make_signer()
        algorithm = signer.algorithm
        if not isinstance(algorithm, HMACAlgorithm):  # pragma: no cover - itsdangerous default
            raise ConfigError(f"unexpected token signer {algorithm!r}")
        self.mac = hmac.new(signer.derive_key(), digestmod=algorithm.digest_method)
        self.sep = want_bytes(signer.sep)

    def make(self, data: list[int | None]) -> str:
        payload = "[" + ",".join("null" if v is None else str(int(v)) for v in data) + "]"
        encoded = base64.urlsafe_b64encode(payload.encode("ascii")).rstrip(b"=")
        mac = self.mac.copy()
        mac.update(encoded)
        signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")
        return (encoded + self.sep + signature).decode("ascii")


class _DateCache:
    """RFC 5322 Date, formatted at most once a second (the clock stays the only source)."""

    def __init__(self) -> None:
        self.second = -1.0
        self.value = b""

    def get(self) -> bytes:
        now = clock.now()
        stamp = now.timestamp() // 1
        if stamp != self.second:
            self.second = stamp
            self.value = b"Date: " + email.utils.format_datetime(now).encode() + b"\n"
        return self.value


class CompiledVariant:
    """A language variant ready for mass personalisation."""

    def __init__(
        self,
        rendered: RenderedVariant,
        sender: Sender,
        settings: Settings,
        *,
        subject_prefix: str = "",
        campaign_id: int | None = None,
        signer: Callable[[bytes], bytes] | None = None,
        tracking: Tracking | None = None,
    ) -> None:
        self.rendered = rendered
        # Per-recipient /l/ links (mailer.engagement.links): a list that tracks people.
        self.tracking = tracking
        self.language = rendered.language
        self.settings = settings
        self.campaign_id = campaign_id
        self.signer = signer
        self.subject = subject_prefix + rendered.subject
        self.unsubscribe_address = settings.unsubscribe_address
        self.boundary = "=_mailer_" + secrets.token_hex(12)
        from_header = _address_header(sender.from_name, sender.from_address)
        head = [
            fold_header("From", from_header),
            fold_header("Subject", self.subject),
            b"MIME-Version: 1.0\n",
            fold_header("Content-Language", rendered.language),
            list_id_header(sender),
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\n",
            feedback_id_header(settings, sender, campaign_id),
        ]
        if sender.reply_to:
            head.append(fold_header("Reply-To", sender.reply_to))
        b = self.boundary.encode()
        alternative = b'Content-Type: multipart/alternative; boundary="' + b + b'"\n'
        # Real attachments (`attach:`): text and HTML become the first part of a
        # multipart/mixed message, the files follow, each encoded once per variant.
        attached = _attachments(settings, getattr(rendered, "attachments", ()))
        mixed = ("=_mailer_mixed_" + secrets.token_hex(12)).encode() if attached else b""
        if attached:
            head.append(b'Content-Type: multipart/mixed; boundary="' + mixed + b'"\n')
        else:
            head.append(alternative)
        self.head = b"".join(head)
        self.text_body = _Body(rendered.text)
        self.html_body = _Body(rendered.html)
        self.text_open = (
            (b"\n--" + mixed + b"\n" + alternative if attached else b"")
            + b"\n--"
            + b
            + b'\nContent-Type: text/plain; charset="utf-8"\n'
            b"Content-Transfer-Encoding: " + self.text_body.cte + b"\n\n"
        )
        self.html_open = (
            b"\n--" + b + b'\nContent-Type: text/html; charset="utf-8"\n'
            b"Content-Transfer-Encoding: " + self.html_body.cte + b"\n\n"
        )
        self.close = b"\n--" + b + b"--\n"
        if attached:
            self.close += b"".join(_attachment_part(mixed, *item) for item in attached)
            self.close += b"\n--" + mixed + b"--\n"
        self.dates = _DateCache()
        self.base_url = settings.base_url.rstrip("/")
        tokens.make_preferences(settings, 0)  # raises ConfigError without a secret_key
        self._unsubscribe = _TokenMaker(settings.secret_key, tokens.UNSUBSCRIBE)
        self._preferences = _TokenMaker(settings.secret_key, tokens.PREFERENCES)
        self._mailto = f"mailto:{self.unsubscribe_address}?subject=unsubscribe%20".encode()
        # Both are written into List-Unsubscribe for every recipient without fold_header.
        check_header_value("List-Unsubscribe", self.base_url + " " + self.unsubscribe_address)

    def personal_values(self, r: Recipient) -> dict[str, str]:
        """The values a layout's placeholders take for this recipient."""
        unsub = self._unsubscribe.make([r.contact_id, r.list_id, self.campaign_id])
        prefs = self._preferences.make([r.contact_id])
        values = {
            "name": r.name,
            "email": r.email,
            "unsubscribe_url": f"{self.base_url}/u/{unsub}",
            "preferences_url": f"{self.base_url}/preferences/{prefs}",
            "_unsubscribe_token": unsub,
        }
        if self.tracking is not None:
            self.tracking.fill(values, r.contact_id)
        return values

    def build(self, r: Recipient, *, deliver_to: str | None = None) -> bytes:
        """The complete message for one recipient, LF line ends (the transports fix them)."""
        values = self.personal_values(r)
        address = deliver_to or smtp_form(r.email)[0]
        to = to_header(r.name if deliver_to is None else "", address)
        out = [
            self.head,
            to,
            self.dates.get(),
            b"Message-ID: " + r.message_id.encode() + b"\n",
            # A token is URL-safe base64 and dots: nothing in it needs %-quoting in the mailto.
            b"List-Unsubscribe: <"
            + values["unsubscribe_url"].encode()
            + b">,\n <"
            + self._mailto
            + values["_unsubscribe_token"].encode()
            + b">\n",
            self.text_open,
        ]
        self.text_body.encode(values, out)
        out.append(self.html_open)
        self.html_body.encode(values, out)
        out.append(self.close)
        message = b"".join(out)
        if self.signer is not None:
            message = self.signer(message) + message
        return message


_FEEDBACK_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def feedback_id_header(settings: Settings, sender: Sender, campaign_id: int | None) -> bytes:
    """Gmail's Feedback-ID (its feedback loop): `campaign:list:sender-id:mailer`, so complaint
    rates are reported per campaign and list. A colon separates the fields, so no value holds
    one (each is cut to letters, digits, ".", "_" and "-"); a test send's campaign is "test"."""
    sender_id = settings.feedback_id_sender or sender.domain.split(".", 1)[0]
    fields = [str(campaign_id) if campaign_id is not None else "test", sender.list_slug]
    fields += [sender_id, "mailer"]
    clean = [_FEEDBACK_UNSAFE.sub("-", f).strip("-")[:60] or "none" for f in fields]
    return b"Feedback-ID: " + ":".join(clean).encode("ascii") + b"\n"


def _attachments(settings: Settings, files: Iterable[Any]) -> list[tuple[Any, bytes]]:
    """Each attached file (mailer.media.refs.MediaFileInfo) with its stored bytes."""
    wanted = list(files)
    if not wanted:
        return []
    # Lazy: the media store (and its scan) matters only to a release with attachments.
    from mailer.media.store import read  # noqa: PLC0415

    return [(info, read(settings, info)) for info in wanted]


# RFC 2231 attribute-char: what a parameter value may hold unencoded.
_ATTR_SAFE = "!#$&+-.^_`|~"


def mime_parameter(name: str, value: str) -> bytes:
    """'; name="value"' for a plain ASCII value, else RFC 2231: the UTF-8 value percent-
    encoded (a Korean file name), in numbered pieces on lines of their own when long."""
    if value.isascii() and value.isprintable() and not any(c in value for c in '"\\'):
        return f';\n {name}="{value}"'.encode("ascii")
    encoded = quote(value.encode("utf-8"), safe=_ATTR_SAFE)
    pieces: list[str] = []
    while encoded:
        cut = min(50, len(encoded))
        # Never split a %XX triplet between two pieces.
        if "%" in encoded[max(0, cut - 2) : cut]:
            cut = encoded.rindex("%", 0, cut)
        pieces.append(encoded[:cut])
        encoded = encoded[cut:]
    if len(pieces) == 1:
        return f";\n {name}*=utf-8''{pieces[0]}".encode("ascii")
    return "".join(
        f";\n {name}*{i}*=" + ("utf-8''" if i == 0 else "") + piece
        for i, piece in enumerate(pieces)
    ).encode("ascii")


def _attachment_part(boundary: bytes, info: Any, data: bytes) -> bytes:
    return (
        b"\n--"
        + boundary
        + b"\nContent-Type: "
        + str(info.content_type).encode("ascii")
        + mime_parameter("name", info.name)
        + b"\nContent-Disposition: attachment"
        + mime_parameter("filename", info.name)
        + b"\nContent-Transfer-Encoding: base64\n\n"
        + _b64_bytes(data)
    )


def list_id_header(sender: Sender) -> bytes:
    """The List-Id header (RFC 2919): the list's name as a phrase, then its id."""
    # Checked before encoding: an encoded word would hide the line break.
    check_header_value("List-Id", sender.list_name)
    ident = f"<{sender.list_slug}.{sender.domain}>"
    check_header_value("List-Id", ident)
    name = phrase(sender.list_name, "List-Id")
    if not name:
        return f"List-Id: {ident}\n".encode("ascii")
    last = name.rpartition("\n")[2] if "\n" in name else "List-Id: " + name
    sep = "\n " if len(last) + 1 + len(ident) > 78 else " "
    return f"List-Id: {name}{sep}{ident}\n".encode("ascii")
