"""Contact-import tests' helpers: writing a CSV, counting rows, reading a contact back."""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.store.models import (
    Contact,
    ContactImport,
    ContactTag,
    Event,
    MailingList,
    Subscription,
    SubscriptionStatus,
    Suppression,
)


def write_csv(
    path: Path, rows: list[list[str]], encoding: str = "utf-8", delimiter: str = ","
) -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


def tables(session: Session) -> dict[str, int]:
    """Row counts of every table an import touches."""
    out = {
        m.__tablename__: session.scalar(select(func.count()).select_from(m)) or 0
        for m in (Contact, Subscription, ContactTag, ContactImport, Suppression, Event)
    }
    session.rollback()  # end the read: on SQLite an open transaction holds the write lock
    return out


def contact(session: Session, email: str) -> Contact:
    found = session.scalar(select(Contact).where(Contact.email == email))
    assert found is not None, email
    return found


def status_on(session: Session, email: str, slug: str) -> str | None:
    sub = session.scalar(
        select(Subscription)
        .join(MailingList)
        .where(MailingList.slug == slug, Subscription.contact_id == contact(session, email).id)
    )
    return None if sub is None else SubscriptionStatus(sub.status).value
