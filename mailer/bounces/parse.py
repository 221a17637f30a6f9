"""Reading one message from the bounce mailbox: what kind of report it is and what it says.

Pure parsing, no database. Understands RFC 3464 delivery status notifications, RFC 5965 (ARF)
complaint reports, mailed unsubscribe requests, RFC 3834 auto-replies, and the non-standard
bounces of older servers (through flufl.bounce, the library Mailman uses). Classification is
deliberately conservative: only evidence the reporting server states (an enhanced status code,
or a permanent failure that says the address does not exist) makes a bounce "hard".
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.errors import CloseBoundaryNotFoundDefect, StartBoundaryNotFoundDefect
from email.header import Header, decode_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses, parseaddr

import flufl.bounce

# What a report says about one recipient.
HARD = "hard"            # the address does not exist (5.1.x): suppress at once
SOFT = "soft"            # mailbox full, temporary failure given up on, unexplained failure
BLOCK = "block"          # policy or spam refusal (x.7.x, content): about us, not the address
DELAYED = "delayed"      # still being retried: never a bounce
COMPLAINT = "complaint"  # the recipient marked the message as spam (ARF)
UNSUBSCRIBE = "unsubscribe"
AUTOREPLY = "autoreply"
IGNORED = "ignored"      # a report that needs no action (delivered, relayed, not-spam, ...)

COMPLAINT_TYPES = frozenset({"abuse", "fraud"})

# flufl.bounce logs each detector that crashes, with a traceback; the run reports it instead.
_flufl_log = logging.getLogger("flufl.bounce")
_flufl_log.addHandler(logging.NullHandler())
_flufl_log.propagate = False

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<![\d.])([45]\d\d)(?:[ :-]|$)", re.M)
_TOKEN = r"\.?[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+"  # an itsdangerous token: base64url parts
_UNSUB_LINE = re.compile(rf"^\s*unsubscribe[\s:]+({_TOKEN})\s*$", re.I)
_PREFIX = re.compile(
    r"^\s*((re|fwd?|fw|aw|wg|sv|tr|답장|회신|전달)\s*(\[\d+\])?\s*[:：]\s*)+", re.I
)
_INTENT = re.compile(
    r"^(please\s+)?(unsubscribe|remove)(\s+me)?(\s+please)?[\s.!]*$"
    r"|^(수신\s?거부|구독\s?취소|구독\s?해지)(\s?합니다|\s?해\s?주세요|\s?요청)?[\s.!]*$",
    re.I,
)
# Words a server uses when it says the address itself does not exist.
_HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|user not found"
    r"|unknown recipient|recipient unknown|recipient not found|recipientnotfound"
    r"|address not found|mailbox (not found|does not exist)|does not exist"
    r"|no mailbox here by that name|unrouteable address|not a valid (mailbox|recipient)"
    r"|invalid (recipient|mailbox)|doesn't have an? \S+ account",
    re.I,
)
# Words of refusals that are about the sender or the content, never about the address.
_BLOCK_WORDS = re.compile(
    r"spam|block|blacklist|\blisted (at|on|by)\b|reputation|policy|rbl\b|spamhaus|barracuda"
    r"|dmarc|\bspf\b|dkim|unauthenticated|rate limit|too many|not accepted|junk|abuse",
    re.I,
)
_FULL_WORDS = re.compile(
    r"quota|mailbox (is )?full|insufficient (system )?storage|storage allocation", re.I
)
_DELAY_WORDS = re.compile(
    r"not yet been delivered|delivery (has been |is )?delayed|delayed mail|still being retried"
    r"|will (continue to )?(be )?retr(y|ied)|no action is required|will keep trying", re.I,
)
_PERMANENT_WORDS = re.compile(r"permanent(ly)?|fatal error|could not be delivered|failed", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|returned mail|mail delivery fail"
    r"|delivery fail|failure notice|non.?delivery|could not be delivered|delivery has failed"
    r"|delayed mail|delivery delayed|warning: message .* delayed|mail system error", re.I,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)
_DAEMON_NAME = re.compile(r"mail delivery|mailer.daemon|postmaster", re.I)
_AUTOREPLY_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|autoreply|auto:|out of (the )?office"
    r"|vacation|away from|abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|자동\s?(회신|응답)|부재\s?중|不在)", re.I,
)
_ORIGINAL_MARKER = re.compile(
    r"^-+ ?(this is a copy of|original message|below this line is a copy|the original message)"
    r"|^-+ ?original message -+", re.I | re.M,
)
_MSGID = re.compile(r"^message-id:\s*(<[^<>\s]+>)", re.I | re.M)


@dataclass
class Recipient:
    """One recipient's line in a report, classified."""

    original: str | None  # Original-Recipient, when the report gives it
    final: str | None     # Final-Recipient, or the address found in the text
    kind: str
    status: str | None    # the enhanced status code, e.g. 5.1.1
    diagnostic: str | None
    why: str              # the evidence for `kind`, shown in the report


@dataclass
class Report:
    """What one message in the bounce mailbox is and says."""

    form: str  # dsn, arf, bounce (non-standard), unsubscribe, autoreply, unrecognised
    source_id: str  # the report's Message-ID, or a hash of its bytes when it has none
    subject: str = ""
    sender: str | None = None  # the From address
    envelope_to: list[str] = field(default_factory=list)  # where it was delivered (VERP)
    original_ids: list[str] = field(default_factory=list)  # Message-IDs of the message it is about
    recipients: list[Recipient] = field(default_factory=list)
    feedback_type: str | None = None
    tokens: list[str] = field(default_factory=list)  # candidate unsubscribe tokens
    intent: bool = False  # an unsubscribe request without a token (subject or first line)
    note: str = ""


class Unparseable(Exception):  # a parse outcome, caught by bounces/policy.py
    """The bytes are not an email message, or the message is cut off."""


def parse(raw: bytes) -> Report:
    """Read one message and say what it is; raise Unparseable for garbage or truncation."""
    if not raw.strip():
        raise Unparseable("empty message")
    msg = message_from_bytes(raw)
    if not any(msg.get(h) for h in ("from", "subject", "message-id", "date", "content-type")):
        raise Unparseable("no mail headers (From, Subject, Date, Message-ID)")
    _check_complete(msg)
    report = Report(form="unrecognised", source_id=_source_id(msg, raw))
    report.subject = _header_text(msg.get("subject", ""))
    report.sender = parseaddr(str(msg.get("from", "")))[1] or None
    report.envelope_to = _envelope_to(msg)
    content_type = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "") or "").lower()
    if _find(msg, "message/feedback-report") is not None or report_type == "feedback-report":
        _read_arf(msg, report)
    elif _find(msg, "message/delivery-status") is not None or (
            content_type == "multipart/report" and report_type == "delivery-status"):
        _read_dsn(msg, report)
    elif _is_autoreply(msg, report):
        report.form = AUTOREPLY
        report.original_ids = _reply_ids(msg)
    elif _bounce_signs(msg, report):
        _read_nonstandard(msg, report)
    else:
        _read_unsubscribe(msg, report)
    return report


def classify(action: str | None, status: str | None, diagnostic: str | None,
             *, permanent: bool) -> tuple[str, str | None, str]:
    """(kind, enhanced status, evidence) for one recipient of a report.

    `permanent` says the report states a final failure (DSN `Action: failed`, or a bounce).
    """
    action = (action or "").strip().lower()
    text = diagnostic or ""
    if action.startswith("delayed"):
        return DELAYED, _code(status, text), "Action: delayed (still being retried)"
    if action and not action.startswith(("failed", "fail", "error")):
        return IGNORED, _code(status, text), f"Action: {action} (not a failure)"
    code = _code(status, text)
    basic = _BASIC.search(text.replace("smtp;", " "))
    klass = code[0] if code else (basic.group(1)[0] if basic else "")
    if code:
        _, subject, detail = (int(x) for x in code.split("."))
        if klass == "2":
            return IGNORED, code, f"status {code} (success)"
        if subject == 7 or subject == 6:
            return BLOCK, code, f"status {code} (policy or content refusal; never suppresses alone)"
        if klass == "4":
            return SOFT, code, f"status {code} (temporary failure, given up)"
        if subject == 1 and detail in (7, 8):
            return BLOCK, code, f"status {code} (about the sender's address, not the recipient)"
        if subject == 1:
            return HARD, code, f"status {code} (bad destination address)"
        if subject != 0:
            return SOFT, code, f"status {code}"
    # No specific enhanced code (absent or x.0.0): read the server's words, conservatively.
    if klass == "4":
        return SOFT, code, "temporary failure, given up"
    if _BLOCK_WORDS.search(text):
        return BLOCK, code, "refusal that mentions spam or policy"
    if _FULL_WORDS.search(text):
        return SOFT, code, "mailbox full"
    if (klass == "5" or (permanent and not code)) and _HARD_WORDS.search(text):
        words = _HARD_WORDS.search(text)
        assert words is not None
        return HARD, code, f"permanent failure: {words.group(0)!r}"
    return SOFT, code, "failure without a stated reason"


def _code(status: str | None, text: str) -> str | None:
    """The most specific enhanced status code: the Status field unless it is x.0.0."""
    found = _ENHANCED.search(status or "")
    from_status = ".".join(found.groups()) if found else None
    in_text = _ENHANCED.search(text)
    from_text = ".".join(in_text.groups()) if in_text else None
    if from_status and not from_status.endswith(".0.0"):
        return from_status
    if from_text and (from_status is None or from_text[0] == from_status[0]):
        return from_text
    return from_status


def _check_complete(msg: Message) -> None:
    for part in msg.walk():
        for defect in part.defects:
            if isinstance(defect, CloseBoundaryNotFoundDefect | StartBoundaryNotFoundDefect):
                raise Unparseable(
                    f"truncated: a MIME part ({part.get_content_type()}) has no closing boundary"
                )


def _source_id(msg: Message, raw: bytes) -> str:
    mid = str(msg.get("message-id", "")).strip()
    found = re.search(r"<[^<>\s]+>", mid)
    if found and len(found.group(0)) <= 400:
        return found.group(0)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _header_text(value: object) -> str:
    """A header as text: RFC 2047 words decoded, raw 8-bit bytes read as UTF-8."""
    try:
        parts = decode_header(value if isinstance(value, Header) else str(value))
        text = "".join(
            data.decode("utf-8" if charset in (None, "unknown-8bit") else charset, "replace")
            if isinstance(data, bytes) else data
            for data, charset in parts
        )
    except (ValueError, LookupError, UnicodeError):
        text = str(value)
    return " ".join(text.split())


def _envelope_to(msg: Message) -> list[str]:
    headers = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "x-rcpt-to", "to")
    found: list[str] = []
    for name in headers:
        for _, addr in getaddresses([str(v) for v in msg.get_all(name, [])]):
            if "@" in addr and addr not in found:
                found.append(addr)
    return found


def _find(msg: Message, content_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a delivery-status or feedback-report part, however it was parsed."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    blocks = re.split(r"\r?\n\s*\r?\n", _decoded(part))
    return [HeaderParser().parsestr(b.strip() + "\n") for b in blocks if b.strip()]


def _address_field(value: str | None) -> str | None:
    """`rfc822; kim@news.kr` (RFC 3464 address-type; address) -> kim@news.kr."""
    if not value:
        return None
    value = " ".join(value.split())
    if ";" in value:
        value = value.split(";", 1)[1]
    addr = parseaddr(value.strip())[1] or value.strip().strip("<>")
    return addr if "@" in addr else None


def _original_ids(msg: Message) -> list[str]:
    """Message-IDs of the message a report is about: attached message or headers."""
    ids: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        headers: Message | None = None
        if ctype == "message/rfc822":
            headers = _attached(part)
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            headers = HeaderParser().parsestr(_decoded(part).lstrip())
        if headers is not None:
            for value in headers.get_all("message-id", []):
                found = re.search(r"<[^<>\s]+>", str(value))
                if found and found.group(0) not in ids:
                    ids.append(found.group(0))
    if not ids:
        ids = [m for m in _MSGID.findall(_body_text(msg, stop_at_attachment=False))]
    return ids


def _reply_ids(msg: Message) -> list[str]:
    ids: list[str] = []
    for name in ("in-reply-to", "references"):
        for found in re.findall(r"<[^<>\s]+>", str(msg.get(name, ""))):
            if found not in ids:
                ids.append(found)
    return ids


def _read_dsn(msg: Message, report: Report) -> None:
    report.form = "dsn"
    report.original_ids = _original_ids(msg)
    part = _find(msg, "message/delivery-status")
    blocks = _field_blocks(part) if part is not None else []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        final = _address_field(block.get("final-recipient"))
        original = _address_field(block.get("original-recipient")) or \
            _address_field(block.get("x-actual-recipient"))
        if final is None and original is None:
            continue
        action = block.get("action")
        diagnostic = " ".join(str(block.get("diagnostic-code", "")).split()) or None
        kind, code, why = classify(action, block.get("status"), diagnostic, permanent=True)
        report.recipients.append(Recipient(original, final, kind, code, diagnostic, why))
    if not report.recipients:
        report.form = "unrecognised"
        report.note = "a delivery-status report that names no recipient"


def _read_arf(msg: Message, report: Report) -> None:
    report.form = "arf"
    report.original_ids = _original_ids(msg)
    part = _find(msg, "message/feedback-report")
    fields: Message | None = None
    if part is not None:
        blocks = _field_blocks(part)
        fields = blocks[0] if blocks else None
    feedback = str(fields.get("feedback-type", "")).strip().lower() if fields else ""
    if fields is None or not feedback:
        report.form = "unrecognised"
        report.note = "a feedback report without a Feedback-Type"
        return
    report.feedback_type = feedback
    kind = COMPLAINT if feedback in COMPLAINT_TYPES else IGNORED
    why = f"Feedback-Type: {feedback}" + ("" if kind == COMPLAINT else " (not a complaint)")
    rcpt = _address_field(str(fields.get("original-rcpt-to", "")))
    # The complained-about message's envelope sender (Original-Mail-From, or the Return-Path of
    # the attached copy) is our VERP address when VERP is on: put it first for matching.
    mail_from = _address_field(str(fields.get("original-mail-from", "")))
    if mail_from:
        report.envelope_to.insert(0, mail_from)
    part = _find(msg, "message/rfc822")
    inner = _attached(part) if part is not None else None
    to_header = None
    if inner is not None:
        rp = parseaddr(str(inner.get("return-path", "")))[1]
        if rp:
            report.envelope_to.insert(0, rp)
        to_header = parseaddr(str(inner.get("to", "")))[1] or None
    report.recipients.append(Recipient(rcpt, to_header, kind, None, None, why))


def _is_autoreply(msg: Message, report: Report) -> bool:
    if _bounce_signs(msg, report):
        return False
    auto = str(msg.get("auto-submitted", "")).strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if any(msg.get(h) for h in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-vacation")):
        return True
    if str(msg.get("precedence", "")).strip().lower() == "auto_reply":
        return True
    return bool(_AUTOREPLY_SUBJECT.search(_PREFIX.sub("", report.subject)))


def _bounce_signs(msg: Message, report: Report) -> bool:
    name, _ = parseaddr(str(msg.get("from", "")))
    return bool(
        msg.get("x-failed-recipients")
        or _DAEMON.search(report.sender or "")
        or _DAEMON_NAME.search(name)
        or _BOUNCE_SUBJECT.search(report.subject)
    )


def _read_nonstandard(msg: Message, report: Report) -> None:
    """A bounce that is not a DSN: flufl.bounce finds the addresses, the text gives the reason."""
    report.form = "bounce"
    report.original_ids = _original_ids(msg)
    text = _body_text(msg, stop_at_attachment=True)
    marker = _ORIGINAL_MARKER.search(text)
    explanation = text[:marker.start()] if marker else text
    try:
        temporary, permanent = flufl.bounce.all_failures(msg)
    except Exception as err:  # a third-party heuristic must never stop the run
        report.note = f"flufl.bounce failed on this message: {type(err).__name__}: {err}"
        temporary, permanent = frozenset(), frozenset()
    delayed = (bool(_DELAY_WORDS.search(report.subject + "\n" + explanation))
               and not _PERMANENT_WORDS.search(report.subject))
    addresses = [a.decode("ascii", "replace") for a in sorted(permanent | temporary)]
    if not addresses:
        # No address in the text: VERP or the Message-ID may still name the recipient.
        addresses = [""]
    for addr in addresses:
        is_temp = addr.encode() in temporary and addr.encode() not in permanent
        segment = _segment(explanation, addr)
        if delayed or is_temp:
            kind, code, why = DELAYED, _code(None, segment), "a delay warning, not a failure"
        else:
            permanent_text = bool(_PERMANENT_WORDS.search(explanation))
            kind, code, why = classify("failed", None, segment, permanent=permanent_text)
        diagnostic = " ".join(segment.split())[:1000] or None
        report.recipients.append(Recipient(None, addr or None, kind, code, diagnostic, why))


def _segment(text: str, addr: str) -> str:
    """The part of a bounce's text about one address: from its first mention to the next."""
    if not addr:
        return text
    at = text.lower().find(addr.lower())
    if at < 0:
        return text
    rest = text[at + len(addr):]
    following = re.search(r"\n\s*\n\s*<?[^\s@<>]+@[^\s@<>]+>?[:\s]*\n", rest)
    return text[at:at + len(addr) + (following.start() if following else len(rest))]


def _read_unsubscribe(msg: Message, report: Report) -> None:
    subject = _PREFIX.sub("", report.subject).strip()
    tokens: list[str] = []
    found = _UNSUB_LINE.match(subject)
    if found:
        tokens.append(found.group(1))
    first_lines: list[str] = []
    for line in _body_text(msg, stop_at_attachment=True).splitlines():
        if not line.strip() or line.lstrip().startswith(">"):
            continue
        first_lines.append(line.strip())
        if len(first_lines) >= 5:
            break
    for line in first_lines:
        found = _UNSUB_LINE.match(line)
        if found and found.group(1) not in tokens:
            tokens.append(found.group(1))
    intent = bool(_INTENT.match(subject)) or bool(first_lines and _INTENT.match(first_lines[0]))
    if tokens or intent or subject.lower().startswith("unsubscribe"):
        report.form = UNSUBSCRIBE
        report.tokens = tokens
        report.intent = intent or subject.lower().startswith("unsubscribe")
    else:
        report.note = "not a bounce, complaint, auto-reply or unsubscribe request"


def _body_text(msg: Message, *, stop_at_attachment: bool) -> str:
    """The message's text parts, decoded; HTML reduced to its text."""
    out: list[str] = []

    def visit(part: Message) -> None:
        ctype = part.get_content_type()
        if part.is_multipart():
            if ctype == "message/rfc822" and stop_at_attachment:
                return
            payload = part.get_payload()
            for sub in payload if isinstance(payload, list) else []:
                if isinstance(sub, Message):
                    visit(sub)
            return
        if part.get_content_maintype() != "text" or (
                ctype == "text/rfc822-headers" and stop_at_attachment):
            return
        text = _decoded(part)
        if ctype == "text/html":
            text = re.sub(r"<br\s*/?>|</p>|</div>|</tr>", "\n", text, flags=re.I)
            text = re.sub(r"<[^>]+>", " ", text)
        out.append(text)

    visit(msg)
    return "\n".join(out)


def _decoded(part: Message) -> str:
    """A leaf part's payload as text, in its declared charset (UTF-8 when unknown)."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    try:
        return data.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def _attached(part: Message) -> Message | None:
    """The message inside a message/rfc822 part."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    return None
