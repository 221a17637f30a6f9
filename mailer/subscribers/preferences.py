"""The preferences page's logic: which lists a contact sees, and saving their choices.

The preferences link arrives in the subscriber's own mailbox, so ticking a list subscribes at
once (no second confirmation), and lifts an "unsubscribe from everything" the person made
themselves. Suppressions for hard bounces, complaints, manual blocks and erasures stay: ticks are
ignored for those addresses. Unticking a pending list leaves it pending (it waits for its link).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.contacts import contact as contacts
from mailer.contacts.suppressions import get_suppression
from mailer.engagement.retention import forget_person
from mailer.errors import NotFoundError
from mailer.store import audit
from mailer.store.models import (
    Contact,
    MailingList,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from mailer.subscribers import optin as subscribe


@dataclass(frozen=True)
class ListChoice:
    mailing_list: MailingList
    status: SubscriptionStatus | None

    @property
    def subscribed(self) -> bool:
        return self.status == SubscriptionStatus.SUBSCRIBED

    @property
    def pending(self) -> bool:
        return self.status == SubscriptionStatus.PENDING


@dataclass(frozen=True)
class Preferences:
    contact: Contact
    choices: list[ListChoice]
    suppression: Suppression | None

    @property
    def blocked(self) -> bool:
        """Suppressed for a reason the person cannot lift from here."""
        return self.suppression is not None and self.suppression.reason not in subscribe.LIFTABLE

    @property
    def suppressed_all(self) -> bool:
        return self.suppression is not None and not self.blocked

    @property
    def tracking_offered(self) -> bool:
        """The page offers the per-person tracking switch: one of the person's lists records
        who follows which link (`track_people`), or they switched it off before."""
        return self.contact.track_people_off or any(
            c.mailing_list.track_people and (c.subscribed or c.pending) for c in self.choices
        )


def load(session: Session, contact_id: int) -> Preferences:
    """The lists offered to this contact: the public ones and every list they have been on."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFoundError("the contact of this link no longer exists")
    subs = {
        s.list_id: s
        for s in session.scalars(select(Subscription).where(Subscription.contact_id == contact.id))
    }
    lists = session.scalars(
        select(MailingList)
        .where(or_(MailingList.public.is_(True), MailingList.id.in_(list(subs) or [-1])))
        .order_by(MailingList.name)
    )
    choices = [ListChoice(ml, subs[ml.id].status if ml.id in subs else None) for ml in lists]
    return Preferences(contact, choices, get_suppression(session, contact.email))


def save(
    session: Session,
    contact_id: int,
    *,
    name: str,
    language: str,
    wanted: set[str],
    evidence: subscribe.Evidence,
    tracking: bool | None = None,
) -> Preferences:
    """Apply the form: name, language, lists ticked or unticked, and per-person click tracking
    (`tracking`: on, off, or None when the form did not offer the switch)."""
    prefs = load(session, contact_id)
    contact = prefs.contact
    new_name = name.strip()[: subscribe.NAME_MAX]
    if new_name != contact.name or language != contact.language:
        contact.name = new_name
        contact.language = language
        audit.record(session, "preferences", contact_id=contact.id, language=language)
    if tracking is not None and contact.track_people_off == tracking:
        set_tracking(session, contact, on=tracking)
    now = clock.now()
    lifted = False
    for choice in prefs.choices:
        ml = choice.mailing_list
        if ml.slug not in wanted:
            if choice.subscribed:
                contacts.unsubscribe(session, contact.email, ml.slug, via="preferences")
            continue
        if choice.subscribed or prefs.blocked:
            continue
        if prefs.suppression is not None and not lifted:
            subscribe.lift_suppression(session, contact, prefs.suppression, via="preferences")
            lifted = True
        sub = session.scalar(
            select(Subscription).where(
                Subscription.contact_id == contact.id, Subscription.list_id == ml.id
            )
        )
        if sub is None:
            sub = Subscription(contact_id=contact.id, list_id=ml.id, source="web")
            session.add(sub)
        sub.status = SubscriptionStatus.SUBSCRIBED
        evidence.apply(sub, now)
        sub.confirmed_at = now
        sub.unsubscribed_at = None
        sub.unsubscribed_via = None
        audit.record(
            session,
            "subscribe",
            contact_id=contact.id,
            list_id=ml.id,
            source="preferences",
            ip=evidence.ip,
        )
    session.flush()
    session.expire_all()
    return load(session, contact_id)


def set_tracking(session: Session, contact: Contact, *, on: bool) -> None:
    """Switch per-person click tracking on or off for this person. Off: links in new messages
    name nobody (the token names a person only while this is on), and the clicks recorded so
    far forget them too; the counts per link stay."""
    contact.track_people_off = not on
    if not on:
        forget_person(session, contact.id)
    audit.record(session, "preferences.tracking", contact_id=contact.id, tracking=on)


def unsubscribe_everything(session: Session, contact_id: int) -> Preferences:
    """Suppress the address everywhere (the person's own choice: they may lift it later)."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFoundError("the contact of this link no longer exists")
    contacts.unsubscribe(session, contact.email, None, via="preferences")
    session.flush()
    session.expire_all()
    return load(session, contact_id)
