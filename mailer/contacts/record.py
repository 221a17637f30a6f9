"""One contact's whole record for the console's contact page: subscriptions with their consent
evidence, tags, attributes, any suppression of the address, every delivery with its campaign and
last server reply, and every bounce.

Reading only: the page's actions call mailer.contacts.contact and mailer.contacts.suppressions,
as the command line does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from mailer.contacts.suppressions import get_suppression
from mailer.errors import NotFoundError
from mailer.store.models import (
    Bounce,
    Campaign,
    Contact,
    Delivery,
    Release,
    Subscription,
    Suppression,
)

# Rows of deliveries and of bounces shown, newest first (a press contact gets a few hundred
# releases in years; the page says how many more there are).
HISTORY = 500


@dataclass
class DeliveryRow:
    delivery: Delivery
    campaign_id: int
    release_title: str
    release_slug: str


@dataclass
class Record:
    contact: Contact
    subscriptions: list[Subscription]
    tags: list[str]
    attributes: list[tuple[str, str]]
    suppression: Suppression | None
    deliveries: list[DeliveryRow] = field(default_factory=list)
    deliveries_total: int = 0
    bounces: list[Bounce] = field(default_factory=list)
    bounces_total: int = 0


def shown(value: Any) -> str:
    """An attribute's value as text: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def get(session: Session, contact_id: int) -> Contact:
    contact = session.scalar(
        select(Contact)
        .where(Contact.id == contact_id)
        .options(
            selectinload(Contact.subscriptions).selectinload(Subscription.mailing_list),
            selectinload(Contact.tags),
        )
    )
    if contact is None:
        raise NotFoundError(f"no contact with the id {contact_id}")
    return contact


def load(session: Session, contact_id: int) -> Record:
    """The contact page's record; NotFoundError when there is no such contact (erased)."""
    contact = get(session, contact_id)
    record = Record(
        contact=contact,
        subscriptions=sorted(contact.subscriptions, key=lambda s: s.mailing_list.slug),
        tags=sorted(t.tag for t in contact.tags),
        attributes=[(str(k), shown(v)) for k, v in (contact.attributes or {}).items()],
        suppression=get_suppression(session, contact.email),
    )
    mine = Delivery.contact_id == contact.id
    rows = session.execute(
        select(Delivery, Campaign.id, Release.title, Release.slug)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .join(Release, Release.id == Campaign.release_id)
        .where(mine)
        .order_by(Delivery.id.desc())
        .limit(HISTORY)
    )
    record.deliveries = [DeliveryRow(d, cid, title, slug) for d, cid, title, slug in rows]
    record.deliveries_total = _total(
        session, len(record.deliveries), select(Delivery.id).where(mine)
    )
    # A bounce names the address it was about, and (when tied to one) the delivery.
    about = or_(
        Bounce.email == contact.email,
        Bounce.delivery_id.in_(select(Delivery.id).where(mine)),
    )
    record.bounces = list(
        session.scalars(select(Bounce).where(about).order_by(Bounce.id.desc()).limit(HISTORY))
    )
    record.bounces_total = _total(session, len(record.bounces), select(Bounce.id).where(about))
    return record


def _total(session: Session, shown_rows: int, ids: Any) -> int:
    if shown_rows < HISTORY:
        return shown_rows
    return int(session.scalar(select(func.count()).select_from(ids.subquery())) or 0)
