"""Complaint feedback and provider notifications: ARF (RFC 5965), older Hotmail/JMRP forms,
and Amazon SES JSON notifications (bounces and complaints sent by mail through SNS)."""

from __future__ import annotations

import json
import re
from email.message import Message
from email.utils import parseaddr
from typing import Any

from mailer.bounces import mime
from mailer.bounces.reasons import COMPLAINT, IGNORED, judge
from mailer.bounces.report import Recipient, Report

COMPLAINT_TYPES = frozenset({"abuse", "fraud"})
# Headers by which older feedback loops (Hotmail/Outlook JMRP, some ISPs) name the recipient
# inside the attached copy of the complained-about message.
_RECIPIENT_HEADERS = ("x-hmxmroriginalrecipient", "x-original-rcpt-to", "x-rcpt-to")


def is_feedback(msg: Message) -> bool:
    report_type = str(msg.get_param("report-type", "") or "").lower()
    return mime.find(msg, "message/feedback-report") is not None or report_type == "feedback-report"


def read_arf(msg: Message, report: Report) -> None:
    """An RFC 5965 report: Feedback-Type abuse/fraud is a complaint, anything else is not."""
    report.form = "arf"
    report.original_ids = mime.original_ids(msg)
    part = mime.find(msg, "message/feedback-report")
    fields: Message | None = None
    if part is not None:
        blocks = mime.field_blocks(part)
        fields = blocks[0] if blocks else None
    feedback = str(fields.get("feedback-type", "")).strip().lower() if fields else ""
    if fields is None or not feedback:
        report.form = "unrecognised"
        report.note = "a feedback report without a Feedback-Type"
        return
    report.feedback_type = feedback
    kind = COMPLAINT if feedback in COMPLAINT_TYPES else IGNORED
    why = f"Feedback-Type: {feedback}" + ("" if kind == COMPLAINT else " (not a complaint)")
    rcpts = [
        a for a in (mime.address_field(v) for v in fields.get_all("original-rcpt-to", [])) if a
    ]
    # The complained-about message's envelope sender (Original-Mail-From, or the Return-Path of
    # the attached copy) is our VERP address when VERP is on: put it first for matching.
    mail_from = mime.address_field(fields.get("original-mail-from", ""))
    if mail_from:
        report.envelope_to.insert(0, mail_from)
    inner = mime.returned_headers(msg)
    to_header = None
    if inner is not None:
        rp = parseaddr(str(inner.get("return-path", ""))[:4000])[1]
        if rp:
            report.envelope_to.insert(0, rp)
        to_header = parseaddr(str(inner.get("to", ""))[:4000])[1] or None
        rcpts = rcpts or [
            a for a in (mime.address_field(inner.get(h)) for h in _RECIPIENT_HEADERS) if a
        ]
    if not rcpts:
        report.recipients.append(Recipient(None, to_header, kind, None, None, why))
    for rcpt in rcpts:
        report.recipients.append(
            Recipient(rcpt, rcpt if len(rcpts) > 1 else to_header, kind, None, None, why)
        )


def is_old_complaint(msg: Message) -> bool:
    """A pre-ARF complaint: the copy of the message with a header naming the complainant."""
    part = mime.find(msg, "message/rfc822")
    inner = mime.attached(part) if part is not None else None
    return inner is not None and any(inner.get(h) for h in _RECIPIENT_HEADERS[:1])


def read_old_complaint(msg: Message, report: Report) -> None:
    report.form = "arf"
    report.feedback_type = "abuse"
    part = mime.find(msg, "message/rfc822")
    inner = mime.attached(part) if part is not None else None
    assert inner is not None
    report.original_ids = mime.original_ids(msg)
    rcpt = mime.address_field(inner.get(_RECIPIENT_HEADERS[0]))
    rp = parseaddr(str(inner.get("return-path", ""))[:4000])[1]
    if rp:
        report.envelope_to.insert(0, rp)
    to_header = parseaddr(str(inner.get("to", ""))[:4000])[1] or None
    report.recipients.append(
        Recipient(
            rcpt,
            to_header,
            COMPLAINT,
            None,
            None,
            "a feedback-loop complaint (the copy names the recipient in X-HmXmrOriginalRecipient)",
        )
    )


_JSON_START = re.compile(r"^\s*\{", re.S)


def ses_notification(text: str) -> dict[str, Any] | None:
    """An Amazon SES notification (Bounce or Complaint) in the body, else None."""
    if not _JSON_START.match(text) or ("notificationType" not in text and "eventType" not in text):
        return None
    start = text.index("{")
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except (ValueError, RecursionError):
        # SNS folds long lines ("!\n " marks a fold): undo the folding and try once more.
        unfolded = re.sub(r"!\r?\n ", "", text[start:])
        try:
            data, _ = json.JSONDecoder().raw_decode(unfolded)
        except (ValueError, RecursionError):
            return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("Message"), str):  # an SNS envelope around the notification
        try:
            data = json.loads(data["Message"])
        except (ValueError, RecursionError):
            return None
    kind = data.get("notificationType") or data.get("eventType")
    return data if kind in ("Bounce", "Complaint", "Delivery") else None


def read_ses(data: dict[str, Any], report: Report) -> None:
    kind = data.get("notificationType") or data.get("eventType")
    mail = data.get("mail") or {}
    mid = mail.get("messageId")
    if isinstance(mid, str):
        report.original_ids = [f"<{mid}@email.amazonses.com>"]
    if kind == "Complaint":
        report.form = "arf"
        body = data.get("complaint") or {}
        feedback = str(body.get("complaintFeedbackType") or "abuse").lower()
        report.feedback_type = feedback
        is_complaint = feedback in COMPLAINT_TYPES
        for r in body.get("complainedRecipients") or []:
            addr = str(r.get("emailAddress") or "") or None
            report.recipients.append(
                Recipient(
                    addr,
                    addr,
                    COMPLAINT if is_complaint else IGNORED,
                    None,
                    None,
                    f"Amazon SES complaint notification (feedback type {feedback})",
                )
            )
        return
    report.form = "dsn"
    if kind == "Delivery":
        for addr in (data.get("delivery") or {}).get("recipients") or []:
            report.recipients.append(
                Recipient(
                    str(addr), str(addr), IGNORED, None, None, "Amazon SES delivery notification"
                )
            )
        return
    body = data.get("bounce") or {}
    permanent = str(body.get("bounceType", "")).lower() == "permanent"
    for r in body.get("bouncedRecipients") or []:
        addr = str(r.get("emailAddress") or "") or None
        diagnostic = str(r.get("diagnosticCode") or "") or None
        action = str(r.get("action") or ("failed" if permanent else "delayed"))
        kind_, code, why = judge(action, r.get("status"), diagnostic, permanent=permanent)
        report.recipients.append(
            Recipient(addr, addr, kind_, code, diagnostic, f"Amazon SES bounce notification: {why}")
        )
