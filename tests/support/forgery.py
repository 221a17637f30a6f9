"""One campaign really sent, with VERP, through the SMTP sink: the `sent` and `db` fixtures
the forged-bounce tests share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.config import Settings, load_settings
from mailer.contacts.suppressions import get_suppression
from mailer.store.db import session_scope
from mailer.store.models import (
    Campaign,
    SuppressionReason,
)
from tests.support.cli import Cli
from tests.support.config import write_config
from tests.support.sending import populate
from tests.support.smtp import Received, SmtpServer

VICTIM = "victim@example.com"


MALLORY = "mallory@evil.example"


BOUNCES = "bounces@hanul.example.org"


PEOPLE = [
    (VICTIM, "Victim", "en"),
    (MALLORY, "Mallory", "en"),
    ("kim@news.example.kr", "김민수", "ko"),
]


@dataclass
class Sent:
    settings: Settings
    received: dict[str, Received]  # by recipient
    campaign_id: int


@pytest.fixture
def sent(settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli) -> Sent:
    """One campaign really sent to three contacts, with VERP, through the SMTP sink."""
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "transport": "smtp",
            "smtp_url": smtp.url(),
            "verp": True,
            "envelope_sender": BOUNCES,
            "from_address": "press@hanul.example.org",
        },
    )
    verp = load_settings(tmp_path / "mailer.toml", env={})
    populate(verp, PEOPLE)
    cli("send", str(release), "--list", "press", "--yes")
    received = {r.rcpt_tos[0].lower(): r for r in smtp.sink.received}
    assert set(received) == {e for e, _, _ in PEOPLE}
    with session_scope(verp) as s:
        campaign_id = s.scalars(select(Campaign.id)).one()
    return Sent(verp, received, campaign_id)


@pytest.fixture
def db(sent: Sent) -> Iterator[Session]:
    with session_scope(sent.settings) as s:
        yield s


def suppressed(session: Session, email: str) -> SuppressionReason | None:
    sup = get_suppression(session, email)
    return sup.reason if sup else None
