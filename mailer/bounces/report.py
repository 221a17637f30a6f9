"""What one message in the bounce mailbox is and says (the parse result, no database)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailer.bounces.reasons import suppresses


@dataclass
class Recipient:
    """One recipient's line in a report, classified."""

    original: str | None  # Original-Recipient, when the report gives it
    final: str | None  # Final-Recipient, or the address found in the text
    kind: str
    status: str | None  # the enhanced status code, e.g. 5.1.1
    diagnostic: str | None
    why: str  # the evidence for `kind`, shown in the report

    @property
    def address(self) -> str | None:
        """The address the report is about: the Final-Recipient, else the Original-Recipient.

        (Matching a report to a contact, policy.py tries both, the original first.)"""
        return self.final or self.original

    @property
    def suppress(self) -> bool:
        """Whether this line, by itself, calls for suppressing the address (hard, complaint)."""
        return suppresses(self.kind)


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
