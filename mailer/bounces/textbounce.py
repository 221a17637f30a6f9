"""Bounces that are not RFC 3464 reports: who failed, and the words about each address.

Older and odd servers (qmail, Exim without DSNs, Sendmail v5, Exchange 2003, Lotus Notes,
Japanese carriers, OpenSMTPD, ...) write a human-readable explanation, then (often) a copy of the
original message. The failed addresses are those the explanation names that are not ours: not
the report's sender or recipient, not the original's sender. Each address gets the text from
each of its mentions to the next mention of another failed address, so one recipient's
"mailbox full" never becomes another's reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import Message
from email.utils import parseaddr

from mailer.bounces import mime

_ADDR = re.compile(
    r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
# Lines that quote headers of the report or of the original: their addresses are not failures.
_HEADER_LINE = re.compile(
    r"^\s*(from|reply-to|sender|return-path|message-id|references|in-reply-to|received|to|cc"
    r"|date|subject|x-[\w-]+|dkim-signature|envelope-from|errors-to|list-[\w-]+|mail from)\s*:",
    re.I,
)
# Where the explanation ends and the returned message (or its headers) begins.
ORIGINAL_MARKER = re.compile(
    r"^[ \t>|-]*(this is a copy of|below (this line )?is a copy|a copy of the original"
    r"|original message (follows|headers?)|the original message|(original|returned|undelivered)"
    r" message\b|the headers? of (the|your) (original )?message|message headers follow"
    r"|unsent message below|content-type: message/rfc822|--- ?original message)",
    re.I | re.M,
)
DELAY_WORDS = re.compile(
    r"not yet been delivered|delivery (has been |is )?delayed|delayed mail|still being retried"
    r"|will (continue to )?(be )?retr(y|ied)|no action is required|will keep trying"
    r"|still trying|warning: (message|mail) .{0,40}delayed|delivery (status )?warning"
    r"|(delivery )?attempts will continue|will continue to try|has been postponed"
    r"|advisory.only|not been delivered yet|will be retried|retrying",
    re.I,
)
# Bounds that keep a hostile message cheap: real reports name a few addresses, a few times.
MAX_ADDRESSES = 100
MAX_MENTIONS = 20
MAX_SEGMENT = 10_000
PERMANENT_SUBJECT = re.compile(r"permanent|fatal|failed|failure|undeliver|returned", re.I)
PERMANENT_TEXT = re.compile(
    r"permanent(ly)? (error|failure|fatal)|fatal error|given up|no further (delivery )?attempts"
    r"|will not be retried|failed permanently|permanent(ly)? failed",
    re.I,
)


def is_delay(subject: str, explanation: str) -> bool:
    """A warning that delivery is still being tried: the text's words first, then the subject's."""
    if PERMANENT_TEXT.search(explanation):
        return False
    if DELAY_WORDS.search(explanation):
        return True
    return bool(DELAY_WORDS.search(subject)) and not PERMANENT_SUBJECT.search(subject)


def ours(msg: Message, attached: Message | None) -> set[str]:
    """Addresses that are the report's own or our original sender's: never a failed recipient."""
    found: set[str] = set()
    for name in (
        "from",
        "to",
        "delivered-to",
        "x-original-to",
        "return-path",
        "reply-to",
        "envelope-to",
    ):
        for addr in mime.header_addresses(msg, name):
            found.add(addr.lower())
    if attached is not None:
        for name in ("from", "sender", "return-path", "reply-to", "errors-to"):
            for addr in mime.header_addresses(attached, name):
                found.add(addr.lower())
    found.discard("")
    return found


def failed_addresses(msg: Message, explanation: str, own: set[str], extra: list[str]) -> list[str]:
    """The failed recipients: X-Failed-Recipients, then those the explanation names."""
    out: list[str] = []
    seen: set[str] = set()

    def add(addr: str) -> None:
        addr = addr.strip().strip("<>.;,'\"").strip()
        if (
            "@" in addr
            and addr.lower() not in own
            and addr.lower() not in seen
            and len(out) < MAX_ADDRESSES
        ):
            out.append(addr)
            seen.add(addr.lower())

    for addr in mime.header_addresses(msg, "x-failed-recipients"):
        add(addr)
    for line in explanation.splitlines():
        if _HEADER_LINE.match(line) or "message-id" in line.lower():
            continue
        for found in _ADDR.finditer(line):
            add(found.group(0))
    if not out:
        for addr in extra:
            add(addr)
    return out


def segments(explanation: str, addresses: list[str]) -> dict[str, str]:
    """For each address, the text from each of its mentions to the next mention of another."""
    lowered = explanation.lower()
    mentions: list[tuple[int, str]] = []
    for addr in addresses:
        start, found = 0, 0
        while found < MAX_MENTIONS and (at := lowered.find(addr.lower(), start)) >= 0:
            mentions.append((at, addr))
            start, found = at + len(addr), found + 1
    mentions.sort()
    out: dict[str, list[str]] = {a: [] for a in addresses}
    end = len(explanation)
    # From the last mention back: where the next mention of another address starts.
    ends: list[int] = []
    for n in range(len(mentions) - 1, -1, -1):
        if n + 1 < len(mentions) and mentions[n + 1][1].lower() != mentions[n][1].lower():
            end = mentions[n + 1][0]
        ends.append(end)
    ends.reverse()
    for (at, addr), stop in zip(mentions, ends, strict=True):
        out[addr].append(explanation[at:stop][:MAX_SEGMENT])
    return {a: "\n".join(parts) for a, parts in out.items()}


def lead(explanation: str, addr: str) -> str:
    """The words on the line of the first mention of `addr`, before it (after any other
    address on that line): several mail systems put the reason there ("Unknown user: addr")."""
    at = explanation.lower().find(addr.lower())
    if at < 0:
        return ""
    line = explanation[max(explanation.rfind("\n", 0, at) + 1, at - MAX_SEGMENT) : at]
    others = list(_ADDR.finditer(line))
    return line[others[-1].end() :] if others else line


def around(explanation: str, addr: str, others: Iterable[str] = ()) -> str:
    """The text about each mention of `addr` that may name the SMTP command refused.

    From the line before the mention (a transcript's ">>> DATA" before "<<< 550 <addr> ...")
    to the end of its paragraph (Postfix's "(in reply to RCPT TO command)", Exim's "after RCPT
    TO:<addr>:", qmail's "does not like recipient"), stopping at the next command of a
    transcript (">>> ...") or at a line that names another of the failed addresses, `others`.
    """
    lowered = explanation.lower()
    needle = addr.lower()
    stop = {o.lower() for o in others} - {needle}
    pieces: list[str] = []
    start = 0
    while len(pieces) < MAX_MENTIONS and (at := lowered.find(needle, start)) >= 0:
        start = at + len(needle)
        # Bounded either side: a hostile message's single huge line costs one slice.
        line_start = max(explanation.rfind("\n", 0, at) + 1, at - MAX_SEGMENT)
        before = explanation[max(0, line_start - MAX_SEGMENT) : line_start].rstrip("\r\n")
        previous = before[before.rfind("\n") + 1 :]
        piece = [previous] if previous.strip() and not _names(previous, stop) else []
        lines = explanation[line_start : at + MAX_SEGMENT].split("\n")
        piece.append(lines[0])
        for line in lines[1:13]:
            if not line.strip() or line.lstrip().startswith(">>>") or _names(line, stop):
                break
            piece.append(line)
        pieces.append("\n".join(piece))
    return "\n".join(pieces)


def _names(line: str, addresses: set[str]) -> bool:
    return any(m.group(0).lower() in addresses for m in _ADDR.finditer(line))


def original_to(attached: Message | None, explanation: str) -> list[str]:
    """The To of the returned message (its copy, or its headers quoted in the text)."""
    if attached is not None:
        found = mime.header_addresses(attached, "to")
        if found:
            return found
    quoted = re.search(r"^\s*to:\s*(.+)$", explanation, re.I | re.M)
    if quoted:
        addr = parseaddr(quoted.group(1)[:4000])[1]
        if "@" in addr:
            return [addr]
    return []
