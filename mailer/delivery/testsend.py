"""Test sends: every language variant to the staff's own addresses; no campaign, no ledger."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from mailer import clock
from mailer.config import Settings
from mailer.contacts.addresses import normalise, smtp_form
from mailer.delivery.dkim import dkim_signer
from mailer.delivery.message import (
    CompiledVariant,
    Recipient,
    sender_for,
    test_message_id,
)
from mailer.delivery.transport import Reply, Transport
from mailer.localtext import in_language
from mailer.releases import embargo as embargo_words


@dataclass(frozen=True)
class TestResult:
    address: str
    language: str
    subject: str
    reply: Reply


# The word that marks a test copy, in the reader's language. Not "[TEST]": capitals in a
# subject otherwise in Korean fire SpamAssassin's SUBJ_ALL_CAPS (+0.5), and staff check test
# sends to see what readers will get, score included.
TEST_MARK = {"ko": "[테스트]", "en": "[Test]"}


def test_subject_prefix(embargo: datetime | None, settings: Settings, language: str) -> str:
    """[Test] (in the variant's language), and the embargo when there is one still ahead,
    worded as the real send's."""
    prefix = TEST_MARK.get(language.split("-")[0].lower(), TEST_MARK["en"]) + " "
    if embargo is not None and embargo_words.is_ahead(embargo, clock.now()):
        # The same words as a press list's copy (mailer.releases.embargo).
        prefix += embargo_words.subject_prefix(embargo, settings, language)
    return prefix


def send_test(
    settings: Settings,
    rendered: dict[str, Any],
    addresses: Sequence[str],
    transport: Transport,
    *,
    embargo: datetime | None = None,
    list_name: str = "",
    list_slug: str = "test",
) -> list[TestResult]:
    """Every language variant to every test address; no campaign, no ledger.

    `embargo`: the release's; while it is ahead, each subject says so in the variant's language
    (render the variants with `marked_until` for the banner: see send_release)."""
    targets = [normalise(a) for a in addresses]
    sender = sender_for(settings, list_name or settings.organisation_name, list_slug)
    results = []
    conn = transport.open()
    try:
        for lang in sorted(rendered):
            # As readers of `lang` get it: the From name in their language (mailer.localtext).
            local = replace(
                sender, from_name=in_language(settings.from_name, lang, settings.default_language)
            )
            compiled = CompiledVariant(
                rendered[lang],
                local,
                settings,
                subject_prefix=test_subject_prefix(embargo, settings, lang),
                signer=dkim_signer(settings, sender.from_address),
            )
            for target in targets:
                r = Recipient(0, target.key, "", None, test_message_id(sender.domain))
                address, utf8 = smtp_form(target.key)
                reply = conn.send(
                    settings.bounce_address, address, compiled.build(r), smtputf8=utf8
                )
                results.append(TestResult(target.key, lang, compiled.subject, reply))
    finally:
        conn.close()
    return results
