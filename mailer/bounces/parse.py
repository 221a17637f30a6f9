"""Reading one message from the bounce mailbox: what kind of report it is and what it says.

Pure parsing, no database. Understands RFC 3464 delivery status notifications (also when their
fields are quoted in plain text), RFC 5965 (ARF) complaint reports and older feedback-loop forms,
Amazon SES notifications, mailed unsubscribe requests, RFC 3834 auto-replies, and the
non-standard bounces of older servers (textbounce.py, with flufl.bounce's detectors as a second
opinion on addresses). What each recipient's failure means is decided in one place,
reasons.judge: deliberately conservative, only what the reporting server states makes a bounce
"hard". A message cut off in its returned copy is still read from its whole parts; one cut off
in the report itself is Unparseable (never act on half a report).

Over 400 lines on purpose: the readers of each report layout (DSN, non-standard, auto-reply,
unsubscribe) and the truncation rules decide together what a message is; split, each would re-
read the parts.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from email import message_from_bytes
from email.errors import CloseBoundaryNotFoundDefect, StartBoundaryNotFoundDefect
from email.message import Message
from email.utils import parseaddr

import flufl.bounce

from mailer.bounces import feeds, mime, textbounce
from mailer.bounces.reasons import (
    AUTOREPLY,
    BLOCK,
    COMPLAINT,
    DELAYED,
    HARD,
    IGNORED,
    SOFT,
    UNSUBSCRIBE,
    judge,
    smtp_stage,
)
from mailer.bounces.report import Recipient, Report, Unparseable

__all__ = [
    "AUTOREPLY",
    "BLOCK",
    "COMPLAINT",
    "COMPLAINT_TYPES",
    "DELAYED",
    "HARD",
    "IGNORED",
    "SOFT",
    "UNSUBSCRIBE",
    "Recipient",
    "Report",
    "Unparseable",
    "classify",
    "parse",
]

COMPLAINT_TYPES = feeds.COMPLAINT_TYPES
# The one decision, under its older name.
classify = judge

# flufl.bounce logs each detector that crashes, with a traceback; the run reports it instead.
_flufl_log = logging.getLogger("flufl.bounce")
_flufl_log.addHandler(logging.NullHandler())
_flufl_log.propagate = False

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
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|returned mail|mail delivery fail"
    r"|delivery (status )?warning|delivery failure|failure notification|mail delivery problem"
    r"|delivery fail|failure notice|non.?delivery|could not be delivered|delivery has failed"
    r"|delayed mail|delivery delayed|warning: message .* delayed|mail system error",
    re.I,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)
_DAEMON_NAME = re.compile(r"mail delivery|mailer.daemon|postmaster", re.I)
_AUTOREPLY_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|autoreply|auto:|out of (the )?office"
    r"|vacation|away from|abwesenheit|r[ée]ponse automatique|respuesta autom[áa]tica"
    r"|자동\s?(회신|응답)|부재\s?중|不在)",
    re.I,
)
# Content-filtering gateways that write bounces of their own, by the marks they leave.
_GATEWAYS = (
    ("SurfControl", re.compile(r"surfcontrol", re.I), ("x-mailer", "x-sef-processed")),
    ("McAfee", re.compile(r"mcafee", re.I), ("x-nai-header",)),
    ("m-FILTER", re.compile(r"m-filter", re.I), ("x-mailer", "received")),
    ("MailFoundry", re.compile(r"\(mailfoundry\)", re.I), ("received",)),
    ("ActiveHunter", re.compile(r".", re.S), ("x-ahmailid",)),
)
_MAX_EXPLANATION = 100_000
_MAX_FOR_FLUFL = 64_000
# One report about more recipients than this is not about a message mailer sent (one
# recipient per message); reading further only costs time.
_MAX_RECIPIENTS = 500
_MAX_MULTIPARTS = 100
_REPORT_TYPES = (
    "message/delivery-status",
    "message/feedback-report",
    "message/global-delivery-status",
)
_DSN_FIELD = re.compile(r"^(final-recipient|original-recipient)\s*:", re.I | re.M)


def parse(raw: bytes) -> Report:
    """Read one message and say what it is; raise Unparseable for garbage or truncation."""
    if not raw.strip():
        raise Unparseable("empty message")
    msg = message_from_bytes(raw, _class=mime.ReadMessage)
    if not any(msg.get(h) for h in ("from", "subject", "message-id", "date", "content-type")):
        raise Unparseable("no mail headers (From, Subject, Date, Message-ID)")
    # Parts walked once, with their types (mime.typed_parts): every reader below asks again.
    containers = (p for p, ctype in mime.typed_parts(msg) if ctype.startswith("multipart/"))
    for count, _ in enumerate(containers, 1):
        if count > _MAX_MULTIPARTS:
            raise Unparseable(f"more than {_MAX_MULTIPARTS} multipart MIME parts: not a report")
    note = _check_complete(msg)
    report = Report(form="unrecognised", source_id=_source_id(msg, raw))
    report.subject = mime.header_text(msg.get("subject", ""))
    report.sender = _parsed_from(str(msg.get("from", ""))[:4000])[1] or None
    report.envelope_to = _envelope_to(msg)
    _read(msg, report)
    if note:
        report.note = (report.note + "; " if report.note else "") + note
    return report


@functools.lru_cache(maxsize=4)
def _parsed_from(value: str) -> tuple[str, str]:
    """parseaddr of a From header: parse and _bounce_signs both read the message's From."""
    return parseaddr(value)


def _read(msg: Message, report: Report) -> None:
    content_type = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "") or "").lower()
    status_part = mime.find(msg, "message/delivery-status") or mime.find(
        msg, "message/global-delivery-status"
    )
    if feeds.is_feedback(msg):
        feeds.read_arf(msg, report)
        return
    if feeds.is_old_complaint(msg):
        feeds.read_old_complaint(msg, report)
        return
    ses = feeds.ses_notification(mime.body_text(msg, stop_at_attachment=True))
    if ses is not None:
        feeds.read_ses(ses, report)
        return
    if status_part is not None or (
        content_type == "multipart/report" and report_type == "delivery-status"
    ):
        _read_dsn(msg, report, status_part)
        if report.recipients:
            return
    # Computed once: _is_autoreply asks first (re-parsing From each time).
    bounce_signs = _bounce_signs(msg, report)
    if _is_autoreply(msg, report, bounce_signs=bounce_signs):
        report.form = AUTOREPLY
        report.original_ids = _reply_ids(msg)
    elif bounce_signs or (report.form == "unrecognised" and bool(report.note)):
        note = report.note
        _read_nonstandard(msg, report)
        if note and not any(r.final for r in report.recipients):
            # A DSN that names no recipient, and whose text names none either.
            report.form, report.note, report.recipients = "unrecognised", note, []
    else:
        _read_unsubscribe(msg, report)


def _check_complete(msg: Message) -> str:
    """'' for a whole message; a note when what is missing is not needed; else raise."""
    inside_copy: set[int] = set()
    for part, ctype in mime.typed_parts(msg):
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            inside_copy.update(id(p) for p, _ in mime.typed_parts(part))
    for part, _ in mime.typed_parts(msg):
        if any(isinstance(d, StartBoundaryNotFoundDefect) for d in part.defects) and isinstance(
            part.get_payload(), str
        ):
            # The boundary never appears (stripped or mistyped by a relay): nothing is cut, the
            # whole body is read as text.
            return "a multipart whose boundary never appears: read as text"
        if not any(isinstance(d, CloseBoundaryNotFoundDefect) for d in part.defects):
            continue
        if id(part) in inside_copy:
            return "truncated: the returned copy is cut off; read from the whole parts"
        payload = part.get_payload()
        subs = [s for s in payload if isinstance(s, Message)] if isinstance(payload, list) else []
        cut = subs[-1] if subs else None
        # The part the message ends in is the cut one. A message cut in its only (explanation)
        # part is half a report: never act on it.
        if cut is None or (
            len(subs) < 2
            and part is msg
            and cut.get_content_type() not in ("message/rfc822", "text/rfc822-headers")
        ):
            raise Unparseable(
                f"truncated: a MIME part ({part.get_content_type()}) has no "
                "closing boundary and nothing whole before it"
            )
        report_part = next((p for p in cut.walk() if p.get_content_type() in _REPORT_TYPES), None)
        if report_part is not None and not _fields_whole(report_part):
            raise Unparseable(f"truncated: the report part ({cut.get_content_type()}) is cut off")
        return "truncated: the message has no closing boundary; read from the whole parts"
    return ""


def _fields_whole(part: Message) -> bool:
    """Whether every recipient block of a report part has its Action and Status (or, for a
    feedback report, its Feedback-Type): then the cut came after them."""
    blocks = mime.field_blocks(part)
    if part.get_content_type() == "message/feedback-report":
        return bool(blocks and blocks[0].get("feedback-type"))
    rcpts = [b for b in blocks if b.get("final-recipient") or b.get("original-recipient")]
    return bool(rcpts) and all(b.get("action") and b.get("status") for b in rcpts)


def _source_id(msg: Message, raw: bytes) -> str:
    mid = str(msg.get("message-id", "")).strip()
    found = re.search(r"<[^<>\s]+>", mid)
    if found and len(found.group(0)) <= 400:
        return found.group(0)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _envelope_to(msg: Message) -> list[str]:
    headers = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "x-rcpt-to", "to")
    found: list[str] = []
    for name in headers:
        for addr in mime.header_addresses(msg, name):
            if "@" in addr and addr not in found:
                found.append(addr)
    return found


def _reply_ids(msg: Message) -> list[str]:
    ids: list[str] = []
    for name in ("in-reply-to", "references"):
        for found in re.findall(r"<[^<>\s]+>", str(msg.get(name, ""))):
            if found not in ids:
                ids.append(found)
    return ids


def _read_dsn(msg: Message, report: Report, part: Message | None) -> None:
    """RFC 3464: one block per recipient; the human-readable part explains a bare failure."""
    report.form = "dsn"
    report.original_ids = mime.original_ids(msg)
    blocks = mime.field_blocks(part) if part is not None else []
    if not any(b.get("final-recipient") or b.get("original-recipient") for b in blocks):
        # Some servers quote the DSN fields in the text (or mislabel the part): read them there.
        text = mime.body_text(msg, stop_at_attachment=True)
        found = _DSN_FIELD.search(text)
        blocks = mime.text_blocks(text[found.start() :]) if found else []
    explanation = _explanation(msg)[0]
    gateway = _gateway(msg)
    blocks = _split_recipients(blocks)[:_MAX_RECIPIENTS]
    failed = [a for a in (mime.address_field(b.get("final-recipient")) for b in blocks) if a]
    for block in blocks:
        final = mime.address_field(block.get("final-recipient"))
        original = mime.address_field(block.get("original-recipient")) or mime.address_field(
            block.get("x-actual-recipient")
        )
        if final is None and original is None:
            continue
        action = str(block.get("action", "") or "") or None
        diagnostic = " ".join(str(block.get("diagnostic-code", "")).split()) or None
        addr = final or original or ""
        segment = textbounce.segments(explanation, [addr]).get(addr, "")
        # The stage the server refused at, as the report's text around the address names it
        # (else anywhere in what the text says about this address).
        context = textbounce.around(explanation, addr, failed)
        context = context if smtp_stage(context) else segment
        kind, code, why = judge(
            action,
            block.get("status"),
            diagnostic,
            permanent=True,
            context=context,
            gateway=gateway,
        )
        if kind == SOFT and (
            why.endswith("without a stated reason") or (code or "").endswith(".0")
        ):
            # The report's fields say only "failed" (or a code's catch-all, x.y.0): its own
            # words about this address may say why (Courier, Exchange, Gmail notifications).
            more = judge(
                action,
                block.get("status"),
                f"{diagnostic or ''}\n{segment}",
                permanent=True,
                context=context,
                gateway=gateway,
            )
            if more[2] != why and not more[2].endswith("without a stated reason"):
                kind, code, why = more[0], more[1], more[2] + " (in the report's text)"
        report.recipients.append(Recipient(original, final, kind, code, diagnostic, why))
    if not report.recipients:
        report.form = "unrecognised"
        report.note = "a delivery-status report that names no recipient"


def _gateway(msg: Message) -> str | None:
    """The filtering gateway that wrote this report, if its marks are on it."""
    for name, mark, headers in _GATEWAYS:
        for header in headers:
            if any(mark.search(str(v)) for v in mime.header_values(msg, header)):
                return name
    return None


def _split_recipients(blocks: list[Message]) -> list[Message]:
    """Blocks as the RFC has them: some servers run several recipients together in one block."""
    out: list[Message] = []
    for block in blocks:
        if len(block.get_all("final-recipient", [])) < 2:
            out.append(block)
            continue
        text = "".join(f"{k}: {v}\n" for k, v in block.items())
        starts = [m.start() for m in re.finditer(r"^final-recipient:", text, re.I | re.M)]
        out += mime.text_blocks(
            "\n\n".join(text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True))
        )
    return out


def _is_autoreply(msg: Message, report: Report, *, bounce_signs: bool | None = None) -> bool:
    if _bounce_signs(msg, report) if bounce_signs is None else bounce_signs:
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
    name, _ = _parsed_from(str(msg.get("from", ""))[:4000])
    return bool(
        msg.get("x-failed-recipients")
        or _DAEMON.search(report.sender or "")
        or _DAEMON_NAME.search(name)
        or _BOUNCE_SUBJECT.search(report.subject)
    )


def _explanation(msg: Message) -> tuple[str, str]:
    """The report's own words (its text before the copy of the original), and the rest."""
    # A report's own words fit in far less than this; the cap keeps hostile input cheap.
    text = mime.body_text(msg, stop_at_attachment=True)[:_MAX_EXPLANATION]
    marker = textbounce.ORIGINAL_MARKER.search(text, 1)
    return (text[: marker.start()], text[marker.start() :]) if marker else (text, "")


def _read_nonstandard(msg: Message, report: Report) -> None:
    """A bounce that is not a DSN: the addresses it names that are not ours, and their words."""
    report.form = "bounce"
    report.original_ids = mime.original_ids(msg)
    explanation, rest = _explanation(msg)
    returned = mime.returned_headers(msg)
    sent_to = textbounce.original_to(returned, rest or explanation)
    # The returned message's recipients are never "ours", even where the report's own headers
    # name them (a report delivered to the address it is about, or a sender writing to itself).
    own = textbounce.ours(msg, returned) - {a.lower() for a in sent_to}
    addresses = textbounce.failed_addresses(msg, explanation, own, [])
    temporary: frozenset[bytes] = frozenset()
    permanent: frozenset[bytes] = frozenset()
    if not addresses and len(explanation) + len(rest) < _MAX_FOR_FLUFL:
        # flufl.bounce's detectors (slow: tens of milliseconds, more on long lines) only when
        # the text names no one, and only on a message of a bounce's usual size.
        try:
            temporary, permanent = (frozenset(x) for x in flufl.bounce.all_failures(msg))
        except Exception as err:  # a third-party heuristic must never stop the run
            report.note = f"flufl.bounce failed on this message: {type(err).__name__}: {err}"
        flufl_found = [a.decode("ascii", "replace") for a in sorted(permanent | temporary)]
        addresses = textbounce.failed_addresses(msg, explanation, own, flufl_found)
    from_copy = False
    if not addresses and len(sent_to) == 1:
        addresses, from_copy = sent_to, True
    delayed = textbounce.is_delay(report.subject, explanation)
    temp = {a.lower() for a in (x.decode("ascii", "replace") for x in temporary)}
    gateway = _gateway(msg)  # the same for every recipient: read the headers once
    texts = textbounce.segments(explanation, addresses) if not from_copy else {}
    for addr in addresses or [""]:
        before = textbounce.lead(explanation, addr) if addr else ""
        # The words on the address's line before it are about it ("Unknown user: <addr>").
        segment = f"{before} {texts.get(addr) or ''}".strip()
        if len(addresses) <= 1 and not _says_something(segment):
            segment = explanation
        if delayed or (addr.lower() in temp and addr.encode() not in permanent):
            kind, code, why = DELAYED, None, "a delay warning, not a failure"
        else:
            kind, code, why = judge(
                "failed",
                None,
                segment,
                permanent=True,
                context=_stage_context(explanation, addr, addresses, segment),
                gateway=gateway,
            )
        if from_copy:
            why += " (address from the returned message's To header)"
        diagnostic = " ".join(segment.split())[:1000] or None
        report.recipients.append(Recipient(None, addr or None, kind, code, diagnostic, why))


def _stage_context(explanation: str, addr: str, addresses: list[str], said: str) -> str:
    """The text that names the SMTP command refused for `addr`: around its mentions, else what
    is said about it."""
    near = textbounce.around(explanation, addr, addresses) if addr else ""
    return near if smtp_stage(near) else said


def _says_something(text: str) -> bool:
    _kind, _, why = judge("failed", None, text, permanent=True)
    return not why.endswith("without a stated reason")


def _read_unsubscribe(msg: Message, report: Report) -> None:
    subject = _PREFIX.sub("", report.subject).strip()
    tokens: list[str] = []
    found = _UNSUB_LINE.match(subject)
    if found:
        tokens.append(found.group(1))
    first_lines: list[str] = []
    for line in mime.body_text(msg, stop_at_attachment=True).splitlines():
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
