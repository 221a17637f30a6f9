"""MIME helpers for reading reports: parts, header blocks, decoded text, addresses."""

from __future__ import annotations

import re
from email.header import Header, decode_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr
from typing import Any

# Text read from one part: reports say what they have to say in far less.
_MAX_PART = 200_000
MSGID = re.compile(r"^message-id:\s*(<[^<>\s]+>)", re.I | re.M)


def header_text(value: object) -> str:
    """A header as text: RFC 2047 words decoded, raw 8-bit bytes read as UTF-8."""
    try:
        parts = decode_header(value if isinstance(value, Header) else str(value))
        text = "".join(
            data.decode("utf-8" if charset in (None, "unknown-8bit") else charset, "replace")
            if isinstance(data, bytes)
            else data
            for data, charset in parts
        )
    except (ValueError, LookupError, UnicodeError):
        text = str(value)
    return " ".join(text.split())


# A header worth reading names a few addresses; parsing a huge one costs seconds.
_MAX_HEADER = 4_000
# One address of dot-separated atoms, bare or in angle brackets after a plain display name
# (words, or one quoted string without escapes), and nothing else: getaddresses returns the
# address unchanged (the fast path of header_addresses).
_SIMPLE_ADDRESS = re.compile(
    r"(?:(?P<open>[A-Za-z0-9_ \t-]*<|[ \t]*\"[^\"\\\r\n]*\"[ \t]*<)|[ \t]*)"
    r"(?P<addr>[A-Za-z0-9_%+=-]+(?:\.[A-Za-z0-9_%+=-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)"
    r"(?(open)>)[ \t]*\Z"
)


_MISSING = object()


class ReadMessage(Message):
    """A compat32 Message for reading reports, whose header lookups are indexed.

    The classifier asks each part for a few dozen headers (Content-Type alone about thirty
    times a message: get_content_type, get_param, walk), and compat32's `get` compares every
    header's name on each call: over a third of the time a report took to classify. Reports are
    never modified after parsing, so each answer is kept; the parser adds headers while it
    reads, so an answer is kept only for the header count (and default type) it was made at.
    Every answer is the one Message itself gives."""

    _memo: tuple[int, str, dict[Any, Any]] | None = None

    def _answers(self) -> dict[Any, Any]:
        memo = self._memo
        count = len(self.__dict__["_headers"])  # Message's header list, where the parser appends
        default = self.get_default_type()
        if memo is None or memo[0] != count or memo[1] != default:
            memo = self._memo = (count, default, {})
        return memo[2]

    def get(self, name: str, failobj: Any = None) -> Any:
        answers = self._answers()
        key = name.lower()
        value = answers.get(key, _MISSING)
        if value is _MISSING:
            value = answers[key] = super().get(name, _MISSING)
        return failobj if value is _MISSING else value

    def get_content_type(self) -> str:
        answers = self._answers()
        value = answers.get(_MISSING)
        if value is None:
            value = answers[_MISSING] = super().get_content_type()
        return str(value)

    def _get_params_preserve(self, failobj: Any, header: str) -> Any:
        answers = self._answers()
        key = ("params", header.lower())
        value = answers.get(key, _MISSING)
        if value is _MISSING:
            value = answers[key] = super()._get_params_preserve(_MISSING, header)  # type: ignore[misc]
        if value is _MISSING:
            return failobj
        # A copy: get_params(unquote=False) hands this list to its caller.
        return list(value)


_HEADERS: dict[int, tuple[Message, dict[str, list[object]]]] = {}


def header_values(msg: Message, name: str) -> list[object]:
    """`msg.get_all(name, [])`, from an index of the message's headers made once.

    get_all compares every header's name with `name` on every call, and the readers ask a
    message for a dozen headers, most of them absent. The last few indexes are kept (keyed by
    the message object, held so that its id cannot be reused meanwhile)."""
    cached = _HEADERS.get(id(msg))
    if cached is None or cached[0] is not msg:
        index: dict[str, list[object]] = {}
        for key, value in msg.items():  # the values get_all returns (policy.header_fetch_parse)
            index.setdefault(key.lower(), []).append(value)
        if len(_HEADERS) >= 8:
            _HEADERS.clear()
        cached = _HEADERS[id(msg)] = (msg, index)
    return cached[1].get(name.lower(), [])


def header_addresses(msg: Message, name: str) -> list[str]:
    """The addresses in every `name` header of `msg` (each header read up to a bound)."""
    values = [str(v)[:_MAX_HEADER] for v in header_values(msg, name)]
    simple = [_SIMPLE_ADDRESS.match(v) for v in values]
    if all(simple):
        # Most such headers are one plain address: getaddresses (a character-by-character
        # parser, the costliest step of reading the headers) returns it unchanged.
        return [m.group("addr") for m in simple if m]
    return [addr for _, addr in getaddresses(values) if addr]


_PARTS: dict[int, tuple[Message, list[tuple[Message, str]]]] = {}


def typed_parts(msg: Message) -> list[tuple[Message, str]]:
    """`msg.walk()` with each part's content type, in walk order.

    Walked once per message: readers ask for parts by type dozens of times per message, and
    get_content_type re-reads the Content-Type header on every call. The last few results are
    kept (keyed by the message object, held so that its id cannot be reused meanwhile)."""
    cached = _PARTS.get(id(msg))
    if cached is not None and cached[0] is msg:
        return cached[1]
    parts = [(part, part.get_content_type()) for part in msg.walk()]
    if len(_PARTS) >= 8:
        _PARTS.clear()
    _PARTS[id(msg)] = (msg, parts)
    return parts


def find(msg: Message, content_type: str) -> Message | None:
    for part, ctype in typed_parts(msg):
        if ctype == content_type:
            return part
    return None


def field_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part, however it was parsed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return text_blocks(decoded(part))


def text_blocks(text: str) -> list[Message]:
    blocks = re.split(r"\r?\n\s*\r?\n", text)
    return [HeaderParser(ReadMessage).parsestr(b.strip() + "\n") for b in blocks if b.strip()]


def address_field(value: object) -> str | None:
    """`rfc822; kim@news.kr` (RFC 3464 address-type; address) -> kim@news.kr."""
    if not value:
        return None
    text = " ".join(str(value).split())
    if ";" in text:
        text = text.split(";", 1)[1]
    text = text[:_MAX_HEADER].strip()
    simple = _SIMPLE_ADDRESS.match(text)
    # A plain address (most fields) is what parseaddr would return, without its parser.
    addr = simple.group("addr") if simple else parseaddr(text)[1] or text.strip("<>")
    return addr if "@" in addr and " " not in addr else None


def attached(part: Message) -> Message | None:
    """The message inside a message/rfc822 part."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return None


def returned_headers(msg: Message) -> Message | None:
    """The returned original: the attached message, or its headers (text/rfc822-headers)."""
    for part, ctype in typed_parts(msg):
        if ctype == "message/rfc822":
            inner = attached(part)
            if inner is not None:
                return inner
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            return _header_part(part)
    return None


_HEADER_PARTS: dict[int, tuple[Message, Message]] = {}


def _header_part(part: Message) -> Message:
    """A text/rfc822-headers part read as headers; parsed once (returned_headers and
    original_ids both read it), the last few kept as body_text keeps its results."""
    cached = _HEADER_PARTS.get(id(part))
    if cached is not None and cached[0] is part:
        return cached[1]
    headers = HeaderParser(ReadMessage).parsestr(decoded(part).lstrip())
    if len(_HEADER_PARTS) >= 8:
        _HEADER_PARTS.clear()
    _HEADER_PARTS[id(part)] = (part, headers)
    return headers


def original_ids(msg: Message) -> list[str]:
    """Message-IDs of the message a report is about: attached message or headers."""
    ids: list[str] = []
    for part, ctype in typed_parts(msg):
        headers: Message | None = None
        if ctype == "message/rfc822":
            headers = attached(part)
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            headers = _header_part(part)
        if headers is not None:
            for value in headers.get_all("message-id", []):
                found = re.search(r"<[^<>\s]+>", str(value))
                if found and found.group(0) not in ids:
                    ids.append(found.group(0))
    if not ids:
        ids = list(MSGID.findall(body_text(msg, stop_at_attachment=False)))
    return ids


_TEXTS: dict[tuple[int, bool], tuple[Message, str]] = {}


def body_text(msg: Message, *, stop_at_attachment: bool) -> str:
    """The message's text parts, decoded; HTML reduced to its text (only without plain text).

    Several readers ask for the same message's text: the last few results are kept (keyed by
    the message object, which is held so that its id cannot be reused meanwhile)."""
    key = (id(msg), stop_at_attachment)
    cached = _TEXTS.get(key)
    if cached is not None and cached[0] is msg:
        return cached[1]
    text = _body_text(msg, stop_at_attachment=stop_at_attachment)
    if len(_TEXTS) >= 8:
        _TEXTS.clear()
    _TEXTS[key] = (msg, text)
    return text


def _body_text(msg: Message, *, stop_at_attachment: bool) -> str:
    out: list[str] = []

    def visit(part: Message) -> None:
        ctype = part.get_content_type()
        if part.is_multipart():
            if ctype == "message/rfc822" and stop_at_attachment:
                return
            payload = part.get_payload()
            subs = (
                [s for s in payload if isinstance(s, Message)] if isinstance(payload, list) else []
            )
            if ctype == "multipart/alternative":
                # One rendering is enough: the plain one when it has words.
                plain = [
                    s for s in subs if s.get_content_type() == "text/plain" and decoded(s).strip()
                ]
                subs = plain[:1] or subs[:1]
            for sub in subs:
                visit(sub)
            return
        if ctype.startswith("multipart/") and isinstance(part.get_payload(), str):
            # A multipart whose boundary never appears: its body is all there is.
            out.append(str(part.get_payload()))
            return
        if part.get_content_maintype() != "text" or (
            ctype == "text/rfc822-headers" and stop_at_attachment
        ):
            return
        text = decoded(part)[:_MAX_PART]
        if ctype == "text/html":
            text = re.sub(r"<br\s*/?>|</p>|</div>|</tr>|</li>", "\n", text, flags=re.I)
            text = _drop_blocks(text)
            text = re.sub(r"<[^<>]*>", " ", text)  # never past the next "<": one pass
            text = re.sub(r"&nbsp;", " ", text).replace("&lt;", "<").replace("&gt;", ">")
        out.append(text)

    visit(msg)
    return "\n".join(out)


def _drop_blocks(html: str) -> str:
    """HTML without its <style> and <script> blocks (one pass: a regex would be quadratic on
    an opening tag that is never closed)."""
    lowered = html.lower()
    out: list[str] = []
    at = 0
    while True:
        starts = [i for i in (lowered.find("<style", at), lowered.find("<script", at)) if i >= 0]
        if not starts:
            out.append(html[at:])
            return " ".join(out)
        start = min(starts)
        out.append(html[at:start])
        closing = "</style>" if lowered.startswith("<style", start) else "</script>"
        end = lowered.find(closing, start)
        if end < 0:
            return " ".join(out)
        at = end + len(closing)


_DECODED: dict[int, tuple[Message, str]] = {}


def decoded(part: Message) -> str:
    """A leaf part's payload as text, in its declared charset (UTF-8 when unknown).

    The readers decode the same parts several times (the text, the returned headers, the
    Message-IDs), and reading the charset parameter costs more than the decoding: the last few
    results are kept (keyed by the part, which is held so that its id cannot be reused)."""
    cached = _DECODED.get(id(part))
    if cached is not None and cached[0] is part:
        return cached[1]
    text = _decoded(part)
    if len(_DECODED) >= 64:
        _DECODED.clear()
    _DECODED[id(part)] = (part, text)
    return text


def _decoded(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, LookupError, AssertionError):
        return str(part.get_payload())
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")
