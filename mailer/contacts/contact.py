"""Contacts and their subscriptions: add, show, list, unsubscribe, erase."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Text, cast, delete, or_, select
from sqlalchemy.orm import Session, selectinload

from mailer import clock
from mailer.contacts.addresses import normalise
from mailer.contacts.lists import get_list
from mailer.contacts.suppressions import get_suppression, suppress
from mailer.errors import InvalidInputError, NotFoundError
from mailer.releases.languages import from_name
from mailer.store import audit
from mailer.store.models import (
    Bounce,
    Contact,
    ContactTag,
    Delivery,
    Event,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)

LANGUAGE_MAX = 16


def check_language(value: str | None) -> str | None:
    """A language tag such as en, ko or pt-BR (primary subtag lower-cased); None when empty.

    A language name or alias code ('Korean', '한국어', 'KR') reads as its tag: the names table
    is mailer.releases.languages', the one language rule."""
    if value is None or not value.strip():
        return None
    tag = (from_name(value) or value).strip().replace("_", "-")
    parts = tag.split("-")
    if not (2 <= len(parts[0]) <= 3 and parts[0].isascii() and parts[0].isalpha()) or \
            len(tag) > LANGUAGE_MAX:
        raise InvalidInputError(f"not a language code: {value!r} (expected e.g. en or ko)")
    return parts[0].lower() + "".join("-" + p for p in parts[1:])


def find_contact(session: Session, email: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.email == normalise(email).key))


def get_contact(session: Session, email: str) -> Contact:
    """The contact for this address (any spelling of it), or NotFoundError."""
    contact = find_contact(session, email)
    if contact is None:
        raise NotFoundError(f"no contact with the address {email!r}")
    return contact


def add_contact(
    session: Session,
    email: str,
    list_slug: str,
    *,
    name: str = "",
    language: str | None = None,
    organisation: str = "",
    source: str = "cli",
    actor: str = "",
) -> tuple[Contact, Subscription]:
    """Add (or update) a contact and subscribe it to a list, never over an opt-out."""
    address = normalise(email)
    language = check_language(language)
    ml = get_list(session, list_slug)
    sup = get_suppression(session, address.key)
    if sup is not None:
        raise InvalidInputError(
            f"{address.key} is on the suppression list ({sup.reason.value}, "
            f"{sup.created_at:%Y-%m-%d}); it cannot be subscribed again from here"
        )
    now = clock.now()
    contact = session.scalar(select(Contact).where(Contact.email == address.key))
    if contact is None:
        contact = Contact(email=address.key, email_original=address.original, name=name.strip(),
                          language=language, organisation=organisation.strip(), attributes={})
        session.add(contact)
        session.flush()
        audit.record(session, "contact.add", contact_id=contact.id, actor=actor, source=source)
    else:
        if name.strip():
            contact.name = name.strip()
        if language:
            contact.language = language
        if organisation.strip():
            contact.organisation = organisation.strip()
    sub = session.scalar(
        select(Subscription).where(Subscription.contact_id == contact.id,
                                   Subscription.list_id == ml.id)
    )
    if sub is not None and sub.status == SubscriptionStatus.UNSUBSCRIBED:
        when = f"{sub.unsubscribed_at:%Y-%m-%d}" if sub.unsubscribed_at else "earlier"
        raise InvalidInputError(
            f"{address.key} unsubscribed from {ml.slug!r} ({when}, via {sub.unsubscribed_via}); "
            "only the subscriber can opt in again"
        )
    if sub is None:
        sub = Subscription(contact_id=contact.id, list_id=ml.id,
                           status=SubscriptionStatus.SUBSCRIBED, source=source, consent_at=now,
                           consent_form=source, confirmed_at=now)
        session.add(sub)
        session.flush()
        audit.record(session, "subscribe", contact_id=contact.id, list_id=ml.id, actor=actor,
                     source=source)
    return contact, sub


def iter_contacts(
    session: Session, list_slug: str | None = None, status: str | None = None
) -> Iterator[tuple[Contact, list[Subscription]]]:
    """Contacts (by address) with their subscriptions, filtered by list and status."""
    if status is not None and status not in {s.value for s in SubscriptionStatus}:
        raise InvalidInputError(
            f"unknown status {status!r} (pending, subscribed or unsubscribed)"
        )
    stmt = select(Contact).options(
        selectinload(Contact.subscriptions).selectinload(Subscription.mailing_list),
        selectinload(Contact.tags),
    ).order_by(Contact.email)
    if list_slug is not None or status is not None:
        matching = select(Subscription.contact_id)
        if list_slug is not None:
            ml = get_list(session, list_slug)
            matching = matching.where(Subscription.list_id == ml.id)
        if status is not None:
            matching = matching.where(Subscription.status == SubscriptionStatus(status))
        stmt = stmt.where(Contact.id.in_(matching))
    for contact in session.scalars(stmt.execution_options(yield_per=500)):
        yield contact, sorted(contact.subscriptions, key=lambda s: s.mailing_list.slug)


def contact_as_dict(session: Session, contact: Contact) -> dict[str, Any]:
    """The documented JSON shape of a contact (see README, "JSON output")."""
    sup = get_suppression(session, contact.email)
    return {
        "email": contact.email,
        "email_original": contact.email_original,
        "name": contact.name,
        "language": contact.language,
        "organisation": contact.organisation,
        "attributes": contact.attributes or {},
        "tags": sorted(t.tag for t in contact.tags),
        "created_at": contact.created_at.isoformat(),
        "updated_at": contact.updated_at.isoformat(),
        "suppressed": None if sup is None else {
            "reason": sup.reason.value, "since": sup.created_at.isoformat(), "source": sup.source,
        },
        "subscriptions": [subscription_as_dict(s) for s in
                          sorted(contact.subscriptions, key=lambda s: s.mailing_list.slug)],
    }


def subscription_as_dict(sub: Subscription) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "list": sub.mailing_list.slug,
        "status": sub.status.value,
        "source": sub.source,
        "consent_at": iso(sub.consent_at),
        "consent_form": sub.consent_form,
        "confirmed_at": iso(sub.confirmed_at),
        "unsubscribed_at": iso(sub.unsubscribed_at),
        "unsubscribed_via": sub.unsubscribed_via,
    }


def unsubscribe(
    session: Session, email: str, list_slug: str | None = None, *, via: str = "cli",
    actor: str = "", campaign_id: int | None = None,
) -> list[str]:
    """Unsubscribe from one list, or (no list) suppress the address everywhere.

    Returns the slugs of the lists whose subscription changed. Works for addresses that are not
    contacts yet when suppressing globally, so a request is never lost. `campaign_id` (the
    message the person unsubscribed from) goes into the event, for per-campaign reports.
    """
    address = normalise(email)
    now = clock.now()
    if list_slug is None:
        contact = session.scalar(select(Contact).where(Contact.email == address.key))
        changed = []
        if contact is not None:
            changed = [s.mailing_list.slug for s in contact.subscriptions
                       if s.status != SubscriptionStatus.UNSUBSCRIBED]
        suppress(session, address.key, SuppressionReason.UNSUBSCRIBE_ALL, source=via, actor=actor)
        if contact is not None:
            audit.record(session, "unsubscribe", contact_id=contact.id, actor=actor, via=via,
                         lists=changed, all_lists=True, campaign_id=campaign_id)
        return changed
    ml = get_list(session, list_slug)
    contact = get_contact(session, email)
    sub = session.scalar(select(Subscription).where(Subscription.contact_id == contact.id,
                                                    Subscription.list_id == ml.id))
    if sub is None:
        raise NotFoundError(f"{contact.email} is not on the list {ml.slug!r}")
    if sub.status == SubscriptionStatus.UNSUBSCRIBED:
        return []
    sub.status = SubscriptionStatus.UNSUBSCRIBED
    sub.unsubscribed_at = now
    sub.unsubscribed_via = via
    audit.record(session, "unsubscribe", contact_id=contact.id, list_id=ml.id, actor=actor,
                 via=via, campaign_id=campaign_id)
    return [ml.slug]


def erase(session: Session, email: str, *, actor: str = "") -> None:
    """Forget a person: delete the contact, scrub the ledger, bounces and log, keep a suppression.

    The address survives only in its suppression (the one thing needed so it is never mailed
    again). Everywhere else it is replaced by `erased-HASH`: in delivery rows (and their SMTP
    replies), in bounce rows (including the report's id, which names the recipient when one
    report covers several) and in the data of every event that names it."""
    address = normalise(email)
    key = address.key
    contact = session.scalar(select(Contact).where(Contact.email == key))
    if contact is None and get_suppression(session, key) is None:
        raise NotFoundError(f"no contact with the address {email!r}")
    sup = get_suppression(session, key)
    if sup is None:
        suppress(session, key, SuppressionReason.ERASED, source="erase", actor=actor)
    placeholder = "erased-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    forms = {key, address.original, email.strip()}
    if contact is not None and contact.email_original:
        forms.add(contact.email_original)
    scrub = _scrubber(forms, placeholder)
    contact_id = contact.id if contact is not None else -1
    for delivery in session.scalars(select(Delivery).where(
            or_(Delivery.contact_id == contact_id, Delivery.email == key))):
        delivery.email = placeholder
        delivery.contact_id = None
        if delivery.smtp_reply:
            delivery.smtp_reply = scrub(delivery.smtp_reply)
    for bounce in session.scalars(select(Bounce).where(or_(
            Bounce.email == key, *_mentions(Bounce.source_message_id, forms)))):
        bounce.email = None
        bounce.diagnostic = None
        bounce.source_message_id = scrub(bounce.source_message_id)
    for ev in session.scalars(select(Event).where(Event.contact_id == contact_id)):
        ev.data = {}
        ev.contact_id = None
    # Events that named the address without a contact (a suppression's source, a bounce) lose
    # it as well; JSON may hold it escaped (non-ASCII as \\uXXXX), hence both forms.
    json_forms = forms | {json.dumps(f)[1:-1] for f in forms}
    for ev in session.scalars(select(Event).where(
            or_(*_mentions(cast(Event.data, Text), json_forms)))):
        ev.data = _scrub_data(ev.data, scrub)
    if sup is not None and sup.source:
        sup.source = scrub(sup.source)
    if contact is not None:
        session.execute(delete(ContactTag).where(ContactTag.contact_id == contact.id))
        session.delete(contact)
    session.flush()
    audit.record(session, "contact.erase", actor=actor)


def _mentions(column: Any, forms: set[str]) -> list[Any]:
    """Conditions true when `column` contains one of `forms` (any case; LIKE's own wildcards
    escaped)."""
    out = []
    for form in forms:
        if form:
            pattern = form.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            out.append(column.ilike(f"%{pattern}%", escape="\\"))
    return out


def _scrubber(forms: set[str], placeholder: str) -> Callable[[str], str]:
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)
                                  if f), re.IGNORECASE)

    def scrub(text: str) -> str:
        return pattern.sub(placeholder, text)

    return scrub


def _scrub_data(value: Any, scrub: Callable[[str], str]) -> Any:
    """A JSON value with the address replaced in every string, keys included."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k): _scrub_data(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_data(v, scrub) for v in value]
    return value
