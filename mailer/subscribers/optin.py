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
- At most one confirmation email per MAILBOX per 24 hours (dot and +tag variants count as one,
  addresses.mailbox_key), and at most confirm_domain_per_hour to one domain and
  confirm_global_per_hour in all (counted in the database).
- The form only queues the request (a `notice` row); the checks above, the pending subscription
  and the email happen in the notice sender (mailer.subscribers.queue), so the form's answer and
  its database work are the same for every address.

Over 400 lines on purpose: the pending subscription, its evidence, the email and the
confirmation are one consent record's life.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock, tokens, translations
from mailer.config import Settings
from mailer.contacts.addresses import mailbox_key, normalise
from mailer.contacts.suppressions import get_suppression, mailbox_suppressions
from mailer.delivery import notices
from mailer.errors import InvalidInputError, NotFoundError
from mailer.localtext import in_language
from mailer.store import audit, ratelimit
from mailer.store.models import (
    Contact,
    MailingList,
    Notice,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from mailer.subscribers import templating

# Suppressions that a confirmed double opt-in may lift: only the person's own "stop everything".
LIFTABLE = frozenset({SuppressionReason.UNSUBSCRIBE_ALL})
# Confirmation emails per mailbox (the one definition; domain and global caps are settings).
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
class PrepareOutcome:
    """What the notice sender made of a queued request (the form's answer never depends on it)."""

    reason: str  # "ready", "suppressed", "throttled-mailbox|domain|global", "no-lists", "gone"

    @property
    def ready(self) -> bool:
        return self.reason == "ready"


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
    return translations.gettext(
        language,
        "I agree to receive the emails chosen above from %(org)s. I can unsubscribe at any time "
        "with the link at the bottom of every email.",
        org=in_language(organisation, language),
    )


def public_lists(session: Session) -> list[MailingList]:
    """The lists offered on the subscribe form, by name."""
    return list(
        session.scalars(
            select(MailingList).where(MailingList.public.is_(True)).order_by(MailingList.name)
        )
    )


def public_list(session: Session, slug: str) -> MailingList:
    """A public list by slug, or NotFoundError (private lists are not offered on the web)."""
    ml = session.scalar(
        select(MailingList).where(MailingList.slug == slug, MailingList.public.is_(True))
    )
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
) -> Notice:
    """Queue a subscription request; the notice sender checks and mails it (see `prepare`).

    Nothing here reads anything about the address: a new, known, suppressed or erased one costs
    the same statements and writes the same one row, so neither the answer nor its timing can
    tell them apart.
    """
    address = normalise(email)
    lists = _resolve_lists(session, list_slugs)
    notice = Notice(
        kind="subscribe",
        state="queued",
        email=address.key,
        language=language,
        data={
            "original": address.original,
            "lists": [ml.id for ml in lists],
            "name": name.strip()[:NAME_MAX],
            "evidence": {
                "ip": evidence.ip,
                "user_agent": evidence.user_agent,
                "form": evidence.form,
                "text": evidence.text,
            },
        },
        created_at=clock.now(),
        due_at=clock.now(),
    )
    session.add(notice)
    session.flush()
    return notice


def resend(session: Session, expired: tokens.ConfirmToken, *, language: str) -> str:
    """Queue a fresh link for the request an expired token stood for; returns the address.

    The same checks as a request (suppression, per-mailbox limits) run when it is sent.
    """
    contact = session.get(Contact, expired.contact_id)
    if contact is None:
        raise NotFoundError("the contact of this link no longer exists")
    session.add(
        Notice(
            kind="resend",
            state="queued",
            email=contact.email,
            contact_id=contact.id,
            language=language,
            data={"lists": list(expired.list_ids)},
            created_at=clock.now(),
            due_at=clock.now(),
        )
    )
    session.flush()
    return contact.email


def prepare(session: Session, settings: Settings, notice: Notice) -> PrepareOutcome:
    """Apply a queued request: suppression, limits, contact and pending subscriptions.

    On "ready" the notice names the contact and the lists its confirmation link is for, written
    in this same transaction as the pending subscriptions.
    """
    lists = [
        ml
        for ml in (session.get(MailingList, i) for i in notice.data.get("lists", []))
        if ml is not None
    ]
    if not lists:
        return PrepareOutcome("no-lists")
    sup = get_suppression(session, notice.email)
    if sup is not None and sup.reason not in LIFTABLE:
        evidence = notice.data.get("evidence") or {}
        audit.record(
            session,
            "subscribe.refused",
            reason=sup.reason.value,
            form=evidence.get("form", "web:resend"),
        )
        return PrepareOutcome("suppressed")
    throttled = _throttled(session, settings, notice.email)
    if throttled:
        return PrepareOutcome(throttled)
    if notice.kind == "resend":
        contact = session.get(Contact, notice.contact_id) if notice.contact_id else None
        if contact is None:
            return PrepareOutcome("gone")
        audit.record(
            session, "subscribe.resend", contact_id=contact.id, lists=[ml.slug for ml in lists]
        )
    else:
        contact = _record_request(session, notice, lists)
    notice.contact_id = contact.id
    notice.data = {**notice.data, "lists": [ml.id for ml in lists]}
    notice.state = "ready"
    session.flush()
    return PrepareOutcome("ready")


def _throttled(session: Session, settings: Settings, key: str) -> str:
    """ "" when one more confirmation email may go to `key`, else which limit stops it."""
    mailbox = mailbox_key(key)
    checks = [("mailbox", "confirm-mailbox:" + _digest(mailbox), ADDRESS_LIMIT)]
    if settings.confirm_domain_per_hour:
        checks.append(
            (
                "domain",
                "confirm-domain:" + _digest(mailbox.rpartition("@")[2]),
                ratelimit.Limit(settings.confirm_domain_per_hour, 3600),
            )
        )
    if settings.confirm_global_per_hour:
        checks.append(
            ("global", "confirm-all", ratelimit.Limit(settings.confirm_global_per_hour, 3600))
        )
    for name, key_, limit in checks:
        if not ratelimit.hit(session, key_, limit).allowed:
            return f"throttled-{name}"
    return ""


def _record_request(session: Session, notice: Notice, lists: list[MailingList]) -> Contact:
    data = notice.data
    ev = data.get("evidence") or {}
    evidence = Evidence(
        ip=ev.get("ip"),
        user_agent=ev.get("user_agent"),
        form=ev.get("form", "web:subscribe"),
        text=ev.get("text", ""),
    )
    at = notice.created_at
    contact = session.scalar(select(Contact).where(Contact.email == notice.email))
    if contact is None:
        contact = Contact(
            email=notice.email,
            email_original=data.get("original", notice.email),
            name=str(data.get("name", ""))[:NAME_MAX],
            language=notice.language,
            organisation="",
            attributes={},
        )
        session.add(contact)
        session.flush()
        audit.record(session, "contact.add", contact_id=contact.id, source="web")
    existing = {
        s.list_id: s
        for s in session.scalars(select(Subscription).where(Subscription.contact_id == contact.id))
    }
    for ml in lists:
        sub = existing.get(ml.id)
        if sub is None:
            sub = Subscription(
                contact_id=contact.id,
                list_id=ml.id,
                status=SubscriptionStatus.PENDING,
                source="web",
            )
            session.add(sub)
        if sub.status == SubscriptionStatus.SUBSCRIBED:
            continue
        # The evidence of this request; an unsubscribed row keeps its status until confirmed.
        evidence.apply(sub, at)
    session.flush()
    audit.record(
        session,
        "subscribe.request",
        contact_id=contact.id,
        form=evidence.form,
        lists=[ml.slug for ml in lists],
        ip=evidence.ip,
        user_agent=evidence.user_agent,
        consent_text=evidence.text,
        consent_text_hash=evidence.text_hash,
        language=notice.language,
    )
    return contact


def describe_confirm(
    session: Session, token: tokens.ConfirmToken
) -> tuple[Contact, list[MailingList]]:
    """The contact and lists a confirm token names (read only), or NotFoundError."""
    contact = session.get(Contact, token.contact_id)
    if contact is None:
        raise NotFoundError("the contact of this link no longer exists")
    lists = [ml for ml in (session.get(MailingList, i) for i in token.list_ids) if ml]
    return contact, lists


def confirm(
    session: Session, token: tokens.ConfirmToken, *, ip: str | None, user_agent: str | None
) -> ConfirmOutcome:
    """Subscribe the contact to the token's lists (idempotent)."""
    contact, lists = describe_confirm(session, token)
    sup = get_suppression(session, contact.email)
    if sup is not None and sup.reason not in LIFTABLE:
        return ConfirmOutcome(contact, lists, blocked=True)
    now = clock.now()
    if sup is not None:
        # The person proved they hold the mailbox and asked again: their own opt-out yields.
        lift_suppression(session, contact, sup, via="double-opt-in")
    existing = {
        s.list_id: s
        for s in session.scalars(select(Subscription).where(Subscription.contact_id == contact.id))
    }
    for ml in lists:
        sub = existing.get(ml.id)
        if sub is None:
            sub = Subscription(
                contact_id=contact.id,
                list_id=ml.id,
                status=SubscriptionStatus.PENDING,
                source="web",
                consent_at=now,
                consent_ip=ip,
                consent_form="web:confirm",
                consent_user_agent=(user_agent or "")[:UA_MAX] or None,
            )
            session.add(sub)
        if sub.status == SubscriptionStatus.SUBSCRIBED:
            continue
        sub.status = SubscriptionStatus.SUBSCRIBED
        sub.confirmed_at = now
        sub.unsubscribed_at = None
        sub.unsubscribed_via = None
        audit.record(
            session, "confirm", contact_id=contact.id, list_id=ml.id, ip=ip, user_agent=user_agent
        )
    session.flush()
    return ConfirmOutcome(contact, lists, blocked=False)


def lift_suppression(session: Session, contact: Contact, sup: Suppression, *, via: str) -> None:
    """Remove the person's own unsubscribe-from-everything (never any other reason)."""
    if sup.reason not in LIFTABLE:
        raise InvalidInputError(
            f"{contact.email} is suppressed ({sup.reason.value}); "
            "only an administrator can lift that"
        )
    audit.record(session, "unsuppress", contact_id=contact.id, reason=sup.reason.value, via=via)
    # Every variant of the mailbox the person opted out with: one left behind would still match.
    for row in mailbox_suppressions(session, contact.email):
        if row.reason in LIFTABLE:
            session.delete(row)
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


def confirmation(
    settings: Settings, contact: Contact, lists: list[MailingList], *, language: str
) -> notices.OutgoingNotice:
    """The confirmation email (text + HTML, UTF-8) in `language`.

    It greets nobody by name: the name was typed by whoever filled in the form, and this email
    goes to an address that may belong to someone else.
    """
    token = tokens.make_confirm(settings, contact.id, tuple(ml.id for ml in lists))
    link = tokens.confirm_url(settings, token)
    days = max(1, settings.confirm_max_age // 86400)
    # The organisation and the lists as readers of `language` know them (mailer.localtext).
    org = in_language(settings.organisation_name, language, settings.default_language)
    values = {
        "lang": language,
        "organisation": org,
        "postal_address": in_language(settings.postal_address, language, settings.default_language),
        "website": settings.website,
        "name": "",
        "lists": [
            {
                "name": ml.local_name(settings.default_language).get(language),
                "description": ml.description,
            }
            for ml in lists
        ],
        "confirm_url": link,
        "days": days,
    }
    env = templating.environment(settings)
    return notices.OutgoingNotice(
        to=contact.email,
        subject=translations.gettext(
            language, "Please confirm your subscription to %(org)s", org=org
        ),
        text=env.get_template("confirm_email.txt").render(values),
        html=env.get_template("confirm_email.html").render(values),
        language=language,
    )


def ready_confirmation(
    session: Session, settings: Settings, notice: Notice
) -> notices.OutgoingNotice | None:
    """The email a "ready" notice stands for, or None when its contact or lists are gone."""
    contact = session.get(Contact, notice.contact_id) if notice.contact_id else None
    lists = [
        ml
        for ml in (session.get(MailingList, i) for i in notice.data.get("lists", []))
        if ml is not None
    ]
    if contact is None or not lists:
        return None
    return confirmation(settings, contact, lists, language=notice.language)
