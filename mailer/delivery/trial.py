"""Sends that touch no campaign: test sends to the staff's own addresses, and dry runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.addresses import normalise, smtp_form
from mailer.delivery.message import (
    CompiledVariant,
    Recipient,
    dkim_signer,
    sender_for,
    test_message_id,
)
from mailer.delivery.transport import Reply, Transport
from mailer.store.models import Contact, Delivery, MailingList


@dataclass(frozen=True)
class TestResult:
    address: str
    language: str
    subject: str
    reply: Reply


def test_subject_prefix(embargo: Any) -> str:
    """[TEST], and the embargo when there is one still ahead."""
    prefix = "[TEST] "
    if embargo is not None and clock.now() < embargo:
        prefix += f"EMBARGOED until {embargo:%Y-%m-%d %H:%M %Z}: "
    return prefix


def send_test(settings: Settings, rendered: dict[str, Any], addresses: Sequence[str],
              transport: Transport, *, embargo: Any = None,
              list_name: str = "", list_slug: str = "test") -> list[TestResult]:
    """Every language variant to every test address; no campaign, no ledger."""
    targets = [normalise(a) for a in addresses]
    sender = sender_for(settings, list_name or settings.organisation_name, list_slug)
    prefix = test_subject_prefix(embargo)
    results = []
    conn = transport.open()
    try:
        for lang in sorted(rendered):
            compiled = CompiledVariant(rendered[lang], sender, settings, subject_prefix=prefix,
                                       signer=dkim_signer(settings, sender.from_address))
            for target in targets:
                r = Recipient(0, target.key, "", None, test_message_id(sender.domain))
                address, utf8 = smtp_form(target.key)
                reply = conn.send(settings.bounce_address, address, compiled.build(r),
                                  smtputf8=utf8)
                results.append(TestResult(target.key, lang, compiled.subject, reply))
    finally:
        conn.close()
    return results


@dataclass(frozen=True)
class DryRunResult:
    messages: int
    size: int
    by_language: dict[str, int]
    sample: bytes | None


def dry_run(session: Session, settings: Settings, campaign_id: int,
            rendered: dict[str, Any],
            render: Callable[[str], Any] | None = None) -> DryRunResult:
    """Build every message of a planned campaign and send none (the caller rolls back)."""
    from mailer.delivery.compiler import Compiler

    compiler = Compiler(settings, campaign_id, rendered,
                        {ml.id: ml for ml in session.scalars(select(MailingList))},
                        render=render)
    count = 0
    size = 0
    by_language: dict[str, int] = {}
    sample = None
    rows = session.execute(
        select(Delivery, Contact.name).outerjoin(Contact, Contact.id == Delivery.contact_id)
        .where(Delivery.campaign_id == campaign_id).order_by(Delivery.id)
        .execution_options(yield_per=1000)
    )
    for d, name in rows:
        recipient = Recipient(d.contact_id or 0, d.email, name or "", d.list_id, d.message_id)
        message = compiler.get(d.language, d.list_id).build(recipient)
        count += 1
        size += len(message)
        by_language[d.language] = by_language.get(d.language, 0) + 1
        if sample is None:
            sample = message
    return DryRunResult(count, size, by_language, sample)
