"""Contacts and their subscriptions: add, edit, tag, show, list, unsubscribe, erase.

Over 400 lines on purpose: erase, unsubscribe and the edits must agree on what a contact's data
is (erase must find every piece).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import Any

from sqlalchemy import Text, cast, delete, or_, select
from sqlalchemy.orm import Session, selectinload

from mailer import clock
from mailer.contacts.addresses import normalise
from mailer.contacts.lists import get_list
from mailer.contacts.press import PRESS_FIELDS, check_press_field
from mailer.contacts.suppressions import get_suppression, suppress
from mailer.engagement.retention import forget_person
from mailer.errors import InvalidInputError, NotFoundError
from mailer.releases.languages import from_name
from mailer.store import audit
from mailer.store.models import (
    Bounce,
    BounceSource,
    Contact,
    ContactTag,
    Delivery,
    Event,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)

LANGUAGE_MAX = 16
MAX_TEXT = 200  # Contact.name and Contact.organisation
MAX_ATTRIBUTE_NAME = 100
TAG_SPLIT = re.compile(r"[,;]")


def check_tag(tag: str) -> str:
    """A tag: 1-100 characters, no comma or semicolon (those separate tags in a cell)."""
    tag = tag.strip()
    if not tag or len(tag) > 100 or TAG_SPLIT.search(tag):
        raise InvalidInputError(f"tag {tag!r}: use 1-100 characters without ',' or ';'")
    return tag


def _check_text(field: str, value: str) -> str:
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise InvalidInputError(f"{field}: at most {MAX_TEXT} characters, got {len(value)}")
    return value


def check_language(value: str | None) -> str | None:
    """A language tag such as en, ko or pt-BR (primary subtag lower-cased); None when empty.

    A language name or alias code ('Korean', '한국어', 'KR') reads as its tag: the names table
    is mailer.releases.languages', the one language rule."""
    if value is None or not value.strip():
        return None
    tag = (from_name(value) or value).strip().replace("_", "-")
    parts = tag.split("-")
    if (
        not (2 <= len(parts[0]) <= 3 and parts[0].isascii() and parts[0].isalpha())
        or len(tag) > LANGUAGE_MAX
    ):
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
    tags: Collection[str] = (),
    source: str = "cli",
    actor: str = "",
) -> tuple[Contact, Subscription]:
    """Add (or update) a contact and subscribe it to a list, never over an opt-out."""
    address = normalise(email)
    language = check_language(language)
    name, organisation = _check_text("name", name), _check_text("organisation", organisation)
    tags = [check_tag(t) for t in tags]
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
        contact = Contact(
            email=address.key,
            email_original=address.original,
            name=name.strip(),
            language=language,
            organisation=organisation.strip(),
            attributes={},
        )
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
        select(Subscription).where(
            Subscription.contact_id == contact.id, Subscription.list_id == ml.id
        )
    )
    if sub is not None and sub.status == SubscriptionStatus.UNSUBSCRIBED:
        when = f"{sub.unsubscribed_at:%Y-%m-%d}" if sub.unsubscribed_at else "earlier"
        raise InvalidInputError(
            f"{address.key} unsubscribed from {ml.slug!r} ({when}, via {sub.unsubscribed_via}); "
            "only the subscriber can opt in again"
        )
    if sub is None:
        sub = Subscription(
            contact_id=contact.id,
            list_id=ml.id,
            status=SubscriptionStatus.SUBSCRIBED,
            source=source,
            consent_at=now,
            consent_form=source,
            confirmed_at=now,
        )
        session.add(sub)
        session.flush()
        audit.record(
            session, "subscribe", contact_id=contact.id, list_id=ml.id, actor=actor, source=source
        )
    if tags:
        tag_contact(session, contact.email, tags, actor=actor)
    return contact, sub


def edit_contact(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    language: str | None = None,
    organisation: str | None = None,
    set_attributes: Mapping[str, str] | None = None,
    unset_attributes: Collection[str] = (),
    actor: str = "",
) -> tuple[Contact, list[str]]:
    """Change a contact's details; None leaves a field as it is, '' empties it.

    Returns the contact and the names of the fields that changed. Attributes are set one by one
    (`set_attributes`) or removed (`unset_attributes`, each of which must exist); a press field's
    name there (role, beat, media_type, region, phone, and outlet) sets or empties that field,
    as `--where` reads it. The event names the fields changed, never their values (an erasure
    scrubs events by contact anyway)."""
    contact = get_contact(session, email)
    changed: list[str] = []
    have = contact.attributes or {}
    set_attributes = dict(set_attributes or {})
    press = {
        field: set_attributes.pop(key)
        for key in list(set_attributes)
        if (field := _press_name(key, have)) is not None
    }
    unset_attributes = list(unset_attributes)
    for key in list(unset_attributes):
        field = _press_name(key, have)
        if field is not None:
            unset_attributes.remove(key)
            press.setdefault(field, "")
    if "organisation" in press:
        organisation = press.pop("organisation")
    if name is not None and (value := _check_text("name", name)) != contact.name:
        contact.name = value
        changed.append("name")
    if (
        organisation is not None
        and (value := _check_text("organisation", organisation)) != contact.organisation
    ):
        contact.organisation = value
        changed.append("organisation")
    if language is not None and (tag := check_language(language)) != contact.language:
        contact.language = tag
        changed.append("language")
    for field, value in press.items():
        value = check_press_field(field, value)
        if value != getattr(contact, field):
            setattr(contact, field, value)
            changed.append(field)
    attributes = dict(contact.attributes or {})
    for key in unset_attributes:
        if key not in attributes:
            known = ", ".join(repr(k) for k in attributes) or "none"
            raise InvalidInputError(f"{contact.email} has no attribute {key!r} (it has {known})")
        del attributes[key]
    for key, value in set_attributes.items():
        key = key.strip()
        if not key or len(key) > MAX_ATTRIBUTE_NAME:
            raise InvalidInputError(
                f"attribute name {key!r}: use 1-{MAX_ATTRIBUTE_NAME} characters"
            )
        attributes[key] = value
    if attributes != (contact.attributes or {}):
        # A new dict: the JSON column notices a reassignment, not an edit in place.
        contact.attributes = attributes
        changed.append("attributes")
    if changed:
        contact.updated_at = clock.now()
        session.flush()
        audit.record(session, "contact.edit", contact_id=contact.id, actor=actor, fields=changed)
    return contact, changed


def _press_name(key: str, attributes: Mapping[str, Any]) -> str | None:
    """The field `--set NAME=...` names when NAME is a press field (outlet: organisation).

    "beat" is always the field; "Beat" too, unless the contact has an attribute of exactly
    that name (a second Beat column of a sheet), which it then names."""
    name = key.strip().lower().replace("-", "_").replace(" ", "_")
    field = "organisation" if name in ("outlet", "organisation", "organization") else name
    if field not in (*PRESS_FIELDS, "organisation"):
        return None
    if key != name and key in attributes:
        return None
    return field


def tag_contact(
    session: Session, email: str, tags: Collection[str], *, actor: str = ""
) -> list[str]:
    """Add tags to a contact; returns the ones it did not have yet."""
    contact = get_contact(session, email)
    have = {t.tag for t in contact.tags}
    added = [t for t in dict.fromkeys(check_tag(t) for t in tags) if t not in have]
    for tag in added:
        contact.tags.append(ContactTag(tag=tag))
    if added:
        session.flush()
        audit.record(session, "contact.tag", contact_id=contact.id, actor=actor, added=added)
    return added


def untag_contact(
    session: Session, email: str, tags: Collection[str], *, actor: str = ""
) -> list[str]:
    """Remove tags from a contact; returns the ones it had (others are ignored)."""
    contact = get_contact(session, email)
    wanted = {t.strip() for t in tags}
    removed = [t.tag for t in contact.tags if t.tag in wanted]
    if removed:
        session.execute(
            delete(ContactTag).where(
                ContactTag.contact_id == contact.id, ContactTag.tag.in_(removed)
            )
        )
        session.expire(contact, ["tags"])
        session.flush()
        audit.record(session, "contact.untag", contact_id=contact.id, actor=actor, removed=removed)
    return sorted(removed)


def iter_contacts(
    session: Session, list_slug: str | None = None, status: str | None = None
) -> Iterator[tuple[Contact, list[Subscription]]]:
    """Contacts (by address) with their subscriptions, filtered by list and status."""
    if status is not None and status not in {s.value for s in SubscriptionStatus}:
        raise InvalidInputError(f"unknown status {status!r} (pending, subscribed or unsubscribed)")
    stmt = (
        select(Contact)
        .options(
            selectinload(Contact.subscriptions).selectinload(Subscription.mailing_list),
            selectinload(Contact.tags),
        )
        .order_by(Contact.email)
    )
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
        **{name: getattr(contact, name) for name in PRESS_FIELDS},
        "attributes": contact.attributes or {},
        "tags": sorted(t.tag for t in contact.tags),
        "created_at": contact.created_at.isoformat(),
        "updated_at": contact.updated_at.isoformat(),
        "suppressed": None
        if sup is None
        else {
            "reason": sup.reason.value,
            "since": sup.created_at.isoformat(),
            "source": sup.source,
        },
        "subscriptions": [
            subscription_as_dict(s)
            for s in sorted(contact.subscriptions, key=lambda s: s.mailing_list.slug)
        ],
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
    session: Session,
    email: str,
    list_slug: str | None = None,
    *,
    via: str = "cli",
    actor: str = "",
    campaign_id: int | None = None,
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
            changed = [
                s.mailing_list.slug
                for s in contact.subscriptions
                if s.status != SubscriptionStatus.UNSUBSCRIBED
            ]
        suppress(session, address.key, SuppressionReason.UNSUBSCRIBE_ALL, source=via, actor=actor)
        if contact is not None:
            audit.record(
                session,
                "unsubscribe",
                contact_id=contact.id,
                actor=actor,
                via=via,
                lists=changed,
                all_lists=True,
                campaign_id=campaign_id,
            )
        return changed
    ml = get_list(session, list_slug)
    contact = get_contact(session, email)
    sub = session.scalar(
        select(Subscription).where(
            Subscription.contact_id == contact.id, Subscription.list_id == ml.id
        )
    )
    if sub is None:
        raise NotFoundError(f"{contact.email} is not on the list {ml.slug!r}")
    if sub.status == SubscriptionStatus.UNSUBSCRIBED:
        return []
    sub.status = SubscriptionStatus.UNSUBSCRIBED
    sub.unsubscribed_at = now
    sub.unsubscribed_via = via
    audit.record(
        session,
        "unsubscribe",
        contact_id=contact.id,
        list_id=ml.id,
        actor=actor,
        via=via,
        campaign_id=campaign_id,
    )
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
    for delivery in session.scalars(
        select(Delivery).where(or_(Delivery.contact_id == contact_id, Delivery.email == key))
    ):
        delivery.email = placeholder
        delivery.contact_id = None
        if delivery.smtp_reply:
            delivery.smtp_reply = scrub(delivery.smtp_reply)
    reports: set[str] = set()
    bounce_ids: set[int] = set()
    for bounce in session.scalars(
        select(Bounce).where(or_(Bounce.email == key, *_mentions(Bounce.source_message_id, forms)))
    ):
        # A report about several recipients has a row each ("REPORT-ID ADDRESS").
        reports.update({bounce.source_message_id, bounce.source_message_id.rsplit(" ", 1)[0]})
        bounce_ids.add(bounce.id)
        bounce.email = None
        bounce.diagnostic = None
        bounce.source_message_id = scrub(bounce.source_message_id)
    _forget_reports(session, bounce_ids, reports)
    for ev in session.scalars(select(Event).where(Event.contact_id == contact_id)):
        ev.data = {}
        ev.contact_id = None
    # Events that named the address without a contact (a suppression's source, a bounce) lose
    # it as well; JSON may hold it escaped (non-ASCII as \\uXXXX), hence both forms.
    json_forms = forms | {json.dumps(f)[1:-1] for f in forms}
    for ev in session.scalars(
        select(Event).where(or_(*_mentions(cast(Event.data, Text), json_forms)))
    ):
        ev.data = _scrub_data(ev.data, scrub)
    if sup is not None and sup.source:
        sup.source = scrub(sup.source)
    if contact is not None:
        session.execute(delete(ContactTag).where(ContactTag.contact_id == contact.id))
        # Their clicks stay counted per link and language, naming nobody.
        forget_person(session, contact.id)
        session.delete(contact)
    session.flush()
    audit.record(session, "contact.erase", actor=actor)


def _forget_reports(session: Session, bounce_ids: set[int], reports: set[str]) -> None:
    """Delete the report messages kept for these bounce rows and every row of the same reports
    (bounce_source): a message names the address in forms no scrub finds (encoded, quoted)."""
    ids = sorted(bounce_ids)
    for at in range(0, len(ids), 1000):
        session.execute(delete(BounceSource).where(BounceSource.bounce_id.in_(ids[at : at + 1000])))
    for part in _chunked(sorted(reports)):
        about = or_(
            Bounce.source_message_id.in_(part),
            *(Bounce.source_message_id.startswith(r + " ", autoescape=True) for r in part),
        )
        session.execute(
            delete(BounceSource).where(BounceSource.bounce_id.in_(select(Bounce.id).where(about)))
        )


def _chunked(values: list[str], size: int = 200) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


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
    pattern = re.compile(
        "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True) if f), re.IGNORECASE
    )

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
