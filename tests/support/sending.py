"""Sending tests' parts: the sample release, the SMTP sink fixture, contacts to send to."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings, load_settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.store.db import session_scope
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    Release,
    Subscription,
    SubscriptionStatus,
)
from tests.support.config import write_config
from tests.support.smtp import SmtpServer

SAMPLES = Path(__file__).parents[2] / "mailer" / "samples"


PEOPLE = [
    ("kim.reporter@example.com", "김민수", "ko"),
    ("jane.editor@example.net", "Jane O'Neil", "en"),
    ("park@example.org", "박서연", "ko"),
    ("lee@example.com", "David Lee", None),
    ("choi@example.net", "최지훈", "ko-KR"),
    ("smith@example.org", "Ann Smith", "fr"),
]


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def release(tmp_path: Path) -> Path:
    folder = tmp_path / "releases"
    folder.mkdir()
    for f in SAMPLES.glob("election-night.*.md"):
        shutil.copy(f, folder / f.name)
    return folder / "election-night.en.md"


def use_smtp(settings: Settings, tmp_path: Path, server: SmtpServer, **extra: object) -> Settings:
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "transport": "smtp",
            "smtp_url": server.url(),
            "concurrency": 2,
            "batch_size": 2,
            **extra,
        },
    )
    return load_settings(tmp_path / "mailer.toml", env={})


def populate(
    settings: Settings, people: Sequence[tuple[str, str, str | None]] = PEOPLE, slug: str = "press"
) -> None:
    with session_scope(settings) as s:
        create_list(s, slug, "Press 기자단")
        for email, name, lang in people:
            add_contact(s, email, slug, name=name, language=lang)


def bulk_audience(settings: Settings, n: int) -> None:
    with session_scope(settings) as s:
        ml = create_list(s, "press", "Press")
        list_id = ml.id
    now = clock.now()
    with session_scope(settings) as s:
        s.execute(
            insert(Contact),
            [
                {
                    "email": f"r{i:05d}@example.org",
                    "email_original": f"r{i:05d}@example.org",
                    "name": f"Reader {i}",
                    "language": "ko" if i % 2 else "en",
                    "organisation": "",
                    "attributes": {},
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(n)
            ],
        )
        ids = s.scalars(select(Contact.id)).all()
        s.execute(
            insert(Subscription),
            [
                {
                    "contact_id": cid,
                    "list_id": list_id,
                    "status": SubscriptionStatus.SUBSCRIBED,
                    "source": "test",
                    "created_at": now,
                    "updated_at": now,
                }
                for cid in ids
            ],
        )


def campaign_with(session: Session, deliveries: list[tuple[str, str]]) -> Campaign:
    """A finished campaign whose ledger holds these (address, SMTP reply) rows."""
    ml = create_list(session, "press", "Press")
    release = Release(slug="r", title="R", default_language="en", content_hash="0" * 64)
    session.add(release)
    session.flush()
    campaign = Campaign(release_id=release.id, audience_key="press", status=CampaignStatus("done"))
    session.add(campaign)
    session.flush()
    for n, (email, reply) in enumerate(deliveries):
        session.add(
            Delivery(
                campaign_id=campaign.id,
                contact_id=None,
                list_id=ml.id,
                email=email,
                language="en",
                status=DeliveryStatus("failed"),
                message_id=f"<m{n}@example.org>",
                smtp_reply=reply,
                smtp_code=550,
            )
        )
    session.flush()
    return campaign
