"""Double opt-in: pending subscriptions, consent evidence, the confirmation email, confirming.

Rules (README, "Subscribing on the web"):
- A request changes nothing that matters to an opted-out person: new and pending subscriptions
  become (or stay) pending with fresh consent evidence; an unsubscribed one keeps its status
  until the link is confirmed; a subscribed one is left alone. An existing contact's name and
  language are not changed by a form anyone can fill in (the preferences page does that).
- A suppressed address gets the same answer as everyone else and no email, with one exception:
  a person who unsubscribed from everything may subscribe again, and confirming the emailed link
  (proof that they hold the mailbox) lifts that suppression. Hard bounces, complaints, manual
  suppressions and erasures are never mailed.
- At most one confirmation email per address per 24 hours (counted in the database).
"""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock, tokens
from mailer.config import Settings
from mailer.contacts.addresses import mask, normalise, smtp_form, verp_encode
from mailer.contacts.suppressions import get_suppression
from mailer.delivery.transport import Outcome, open_transport
from mailer.errors import InvalidInputError, NotFoundError, TransportError
from mailer.store import audit, ratelimit
from mailer.store.models import (
    Contact,
    MailingList,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from mailer.subscribers import templating
from mailer.subscribers import words as i18n

# Suppressions that a confirmed double opt-in may lift: only the person's own "stop everything".
LIFTABLE = frozenset({SuppressionReason.UNSUBSCRIBE_ALL})
ADDRESS_LIMIT = ratelimit.Limit(1, 24 * 3600)
NAME_MAX = 200
UA_MAX = 500


class NoListsError(InvalidInputError):
    """The form named no list to subscribe to."""


@dataclass(frozen=True)
class Evidence:
    """What the person saw and where they were when they asked."""

    ip: str | None
    user_agent: str | None
    form: str  # e.g. "web:/subscribe/press" or "web:snippet"
    text: str  # the consent statement exactly as shown

    @property
    def text_hash(self) -> str:
        return consent_hash(self.text)

    def apply(self, sub: Subscription, at: datetime) -> None:
        """Write this evidence onto a subscription."""
        sub.consent_at = at
        sub.consent_ip = self.ip
        sub.consent_user_agent = (self.user_agent or "")[:UA_MAX] or None
        sub.consent_form = self.form
        sub.consent_text_hash = self.text_hash


@dataclass(frozen=True)
class RequestOutcome:
    """What happened; the page shown is the same whatever it says."""

    address: str
    emailed: bool
    reason: str  # "sent", "suppressed", "throttled"


@dataclass(frozen=True)
class ConfirmOutcome:
    contact: Contact
    lists: list[MailingList]
    blocked: bool  # suppressed for a reason a form cannot lift: nothing was changed


def consent_hash(text: str) -> str:
    """SHA-256 (hex) of the consent statement shown, as stored in subscription.consent_text_hash."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def consent_text(language: str, organisation: str) -> str:
    """The consent statement of the form in `language` (what the snippet must show too)."""
    return i18n.plain(language, "consent_text", org=organisation)


def public_lists(session: Session) -> list[MailingList]:
    """The lists offered on the subscribe form, by name."""
    return list(session.scalars(
        select(MailingList).where(MailingList.public.is_(True)).order_by(MailingList.name)
    ))


def public_list(session: Session, slug: str) -> MailingList:
    """A public list by slug, or NotFoundError (private lists are not offered on the web)."""
    ml = session.scalar(select(MailingList).where(MailingList.slug == slug,
                                                  MailingList.public.is_(True)))
    if ml is None:
        raise NotFoundError(f"no public list named {slug!r}")
    return ml


def request_subscription(
    session: Session,
    settings: Settings,
    email: str,
    list_slugs: list[str],
    *,
    name: str = "",
    language: str,
    evidence: Evidence,
    limit: ratelimit.Limit = ADDRESS_LIMIT,
) -> RequestOutcome:
    """Record a subscription request and email a confirmation link (if allowed)."""
    address = normalise(email)
    lists = _resolve_lists(session, list_slugs)
    sup = get_suppression(session, address.key)
    if sup is not None and sup.reason not in LIFTABLE:
        audit.record(session, "subscribe.refused", reason=sup.reason.value, form=evidence.form)
        return RequestOutcome(address.key, False, "suppressed")
    if not ratelimit.hit(session, "confirm-address:" + _digest(address.key), limit).allowed:
        return RequestOutcome(address.key, False, "throttled")
    now = clock.now()
    contact = session.scalar(select(Contact).where(Contact.email == address.key))
    if contact is None:
        contact = Contact(email=address.key, email_original=address.original,
                          name=name.strip()[:NAME_MAX], language=language, organisation="",
                          attributes={})
        session.add(contact)
        session.flush()
        audit.record(session, "contact.add", contact_id=contact.id, source="web")
    existing = {s.list_id: s for s in session.scalars(
        select(Subscription).where(Subscription.contact_id == contact.id))}
    for ml in lists:
        sub = existing.get(ml.id)
        if sub is None:
            sub = Subscription(contact_id=contact.id, list_id=ml.id,
                               status=SubscriptionStatus.PENDING, source="web")
            session.add(sub)
        if sub.status == SubscriptionStatus.SUBSCRIBED:
            continue
        # The evidence of this request; an unsubscribed row keeps its status until confirmed.
        evidence.apply(sub, now)
    session.flush()
    audit.record(session, "subscribe.request", contact_id=contact.id, form=evidence.form,
                 lists=[ml.slug for ml in lists], ip=evidence.ip,
                 user_agent=evidence.user_agent, consent_text=evidence.text,
                 consent_text_hash=evidence.text_hash, language=language)
    send_confirmation(settings, contact, lists, language=language)
    return RequestOutcome(address.key, True, "sent")


def resend(session: Session, settings: Settings, expired: tokens.ConfirmToken, *,
           language: str, limit: ratelimit.Limit = ADDRESS_LIMIT) -> RequestOutcome:
    """Send a fresh link for the request an expired token stood for (same rules as a request)."""
    contact = session.get(Contact, expired.contact_id)
    if contact is None:
        raise NotFoundError("the contact of this link no longer exists")
    lists = [ml for ml in (session.get(MailingList, i) for i in expired.list_ids) if ml]
    sup = get_suppression(session, contact.email)
    if sup is not None and sup.reason not in LIFTABLE:
        return RequestOutcome(contact.email, False, "suppressed")
    if not lists:
        return RequestOutcome(contact.email, False, "no-lists")
    if not ratelimit.hit(session, "confirm-address:" + _digest(contact.email), limit).allowed:
        return RequestOutcome(contact.email, False, "throttled")
    audit.record(session, "subscribe.resend", contact_id=contact.id,
                 lists=[ml.slug for ml in lists])
    send_confirmation(settings, contact, lists, language=language)
    return RequestOutcome(contact.email, True, "sent")


def describe_confirm(session: Session,
                     token: tokens.ConfirmToken) -> tuple[Contact, list[MailingList]]:
    """The contact and lists a confirm token names (read only), or NotFoundError."""
    contact = session.get(Contact, token.contact_id)
    if contact is None:
        raise NotFoundError("the contact of this link no longer exists")
    lists = [ml for ml in (session.get(MailingList, i) for i in token.list_ids) if ml]
    return contact, lists


def confirm(session: Session, token: tokens.ConfirmToken, *, ip: str | None,
            user_agent: str | None) -> ConfirmOutcome:
    """Subscribe the contact to the token's lists (idempotent)."""
    contact, lists = describe_confirm(session, token)
    sup = get_suppression(session, contact.email)
    if sup is not None and sup.reason not in LIFTABLE:
        return ConfirmOutcome(contact, lists, blocked=True)
    now = clock.now()
    if sup is not None:
        # The person proved they hold the mailbox and asked again: their own opt-out yields.
        lift_suppression(session, contact, sup, via="double-opt-in")
    existing = {s.list_id: s for s in session.scalars(
        select(Subscription).where(Subscription.contact_id == contact.id))}
    for ml in lists:
        sub = existing.get(ml.id)
        if sub is None:
            sub = Subscription(contact_id=contact.id, list_id=ml.id,
                               status=SubscriptionStatus.PENDING, source="web",
                               consent_at=now, consent_ip=ip, consent_form="web:confirm",
                               consent_user_agent=(user_agent or "")[:UA_MAX] or None)
            session.add(sub)
        if sub.status == SubscriptionStatus.SUBSCRIBED:
            continue
        sub.status = SubscriptionStatus.SUBSCRIBED
        sub.confirmed_at = now
        sub.unsubscribed_at = None
        sub.unsubscribed_via = None
        audit.record(session, "confirm", contact_id=contact.id, list_id=ml.id, ip=ip,
                     user_agent=user_agent)
    session.flush()
    return ConfirmOutcome(contact, lists, blocked=False)


def lift_suppression(session: Session, contact: Contact, sup: Suppression, *, via: str) -> None:
    """Remove the person's own unsubscribe-from-everything (never any other reason)."""
    if sup.reason not in LIFTABLE:
        raise InvalidInputError(f"{contact.email} is suppressed ({sup.reason.value}); "
                                "only an administrator can lift that")
    audit.record(session, "unsuppress", contact_id=contact.id, reason=sup.reason.value, via=via)
    session.delete(sup)
    session.flush()


def _resolve_lists(session: Session, slugs: list[str]) -> list[MailingList]:
    seen: dict[str, MailingList] = {}
    for slug in slugs:
        if slug and slug not in seen:
            seen[slug] = public_list(session, slug)
    if not seen:
        raise NoListsError("choose at least one list")
    return list(seen.values())


def _digest(key: str) -> str:
    # Counters name addresses by digest: the rate-limit table never holds an address.
    return hashlib.sha256(key.encode()).hexdigest()[:40]


# --- the confirmation email -----------------------------------------------------------------


def build_confirmation(settings: Settings, contact: Contact, lists: list[MailingList], *,
                       language: str) -> EmailMessage:
    """The confirmation email (text + HTML, UTF-8) in `language`."""
    token = tokens.make_confirm(settings, contact.id, tuple(ml.id for ml in lists))
    link = tokens.confirm_url(settings, token)
    days = max(1, settings.confirm_max_age // 86400)
    org = settings.organisation_name
    values = {
        "lang": language,
        "organisation": org,
        "postal_address": settings.postal_address,
        "website": settings.website,
        "name": contact.name,
        "lists": [{"name": ml.name, "description": ml.description} for ml in lists],
        "confirm_url": link,
        "days": days,
        "t": lambda key, **kw: i18n.translate(language, key, **kw),
        "p": lambda key, **kw: i18n.plain(language, key, **kw),
    }
    env = templating.environment(settings)
    text = env.get_template("confirm_email.txt").render(values)
    html = env.get_template("confirm_email.html").render(values)
    msg = EmailMessage(policy=email.policy.SMTP.clone(linesep="\n"))
    msg["From"] = email.utils.formataddr((settings.from_name, settings.from_address))
    msg["To"] = contact.email
    msg["Subject"] = i18n.plain(language, "mail_subject", org=org)
    msg["Date"] = email.utils.format_datetime(clock.now())
    domain = settings.from_address.rpartition("@")[2]
    msg["Message-ID"] = email.utils.make_msgid("confirm", domain=domain)
    # RFC 3834: an automatic message; vacation responders must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    msg.set_content(text, charset="utf-8")
    msg.add_alternative(html, subtype="html", charset="utf-8")
    # After the parts exist: making a message multipart moves Content-* headers into its first part.
    msg["Content-Language"] = language
    return msg


def send_confirmation(settings: Settings, contact: Contact, lists: list[MailingList], *,
                      language: str) -> None:
    """Build and send the confirmation email through the configured transport."""
    msg = build_confirmation(settings, contact, lists, language=language)
    target = settings.test_recipient or contact.email
    recipient, utf8 = smtp_form(normalise(target).key)
    envelope_from = settings.bounce_address
    if settings.verp:
        envelope_from = verp_encode(envelope_from, recipient)
    transport = open_transport(settings)
    conn = transport.open()
    try:
        reply = conn.send(envelope_from, recipient, msg.as_bytes(), smtputf8=utf8)
    finally:
        conn.close()
    if reply.outcome != Outcome.SENT:
        raise TransportError(
            f"{transport.describe()}: the confirmation email to {mask(contact.email)} was not "
            f"accepted: {reply.code} {reply.text}"
        )
