"""Planning a campaign: the release stored, the audience frozen into the ledger (one row each)."""

from __future__ import annotations

import hashlib
import json
import secrets
import zlib
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.lists import get_list
from mailer.contacts.segments import Audience
from mailer.contacts.segments import suppressed as suppressed_sql
from mailer.delivery.campaigns import status_counts
from mailer.delivery.message import campaign_nonce
from mailer.delivery.message_ids import message_id_column
from mailer.errors import InvalidInputError, SendError
from mailer.releases.languages import choose as choose_language
from mailer.releases.languages import normalise as normalise_language
from mailer.store import audit
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    ContactTag,
    Delivery,
    DeliveryStatus,
    MailingList,
    Release,
    Subscription,
    SubscriptionStatus,
)

ACTIVE = (
    CampaignStatus.DRAFT,
    CampaignStatus.SCHEDULED,
    CampaignStatus.SENDING,
    CampaignStatus.PAUSED,
)


@dataclass
class Plan:
    """What a send will do; printed before the operator confirms."""

    campaign: Campaign
    created: bool
    by_language: dict[str, int]
    excluded: dict[str, int]
    statuses: dict[str, int] = field(default_factory=dict)
    release_slug: str = ""

    @property
    def total(self) -> int:
        return sum(self.by_language.values())

    @property
    def due(self) -> int:
        """Messages a run would send now: pending, and deferred ones (their retry may wait)."""
        return self.statuses.get("pending", 0) + self.statuses.get("deferred", 0)


def audience_key(list_slugs: Sequence[str], tags: Sequence[str], where: Sequence[str] = ()) -> str:
    """A stable name for an audience, so sending again finds the same campaign.

    `--where` expressions enter as a hash of their text (the key has 500 characters)."""
    key = "lists=" + ",".join(sorted(set(list_slugs))) + ";tags=" + ",".join(sorted(set(tags)))
    if where:
        digest = hashlib.sha256(json.dumps(sorted(set(where))).encode()).hexdigest()[:24]
        key += ";where=" + digest
    return key


def store_release(
    session: Session,
    slug: str,
    title: str,
    default_language: str,
    sources: dict[str, str],
    front_matter: dict[str, Any],
    content_hash: str,
) -> Release:
    """The stored copy of a release version (created once per content hash)."""
    row = session.scalar(
        select(Release).where(Release.slug == slug, Release.content_hash == content_hash)
    )
    if row is None:
        row = Release(
            slug=slug,
            title=title,
            default_language=default_language,
            front_matter=front_matter,
            content_hash=content_hash,
            variants={lang: {"source": text} for lang, text in sources.items()},
        )
        session.add(row)
        session.flush()
    return row


def find_campaign(session: Session, slug: str, key: str) -> Campaign | None:
    """The newest campaign that was not cancelled for this release name and audience."""
    return session.scalar(
        select(Campaign)
        .join(Release)
        .where(
            Release.slug == slug,
            Campaign.audience_key == key,
            Campaign.status != CampaignStatus.CANCELLED,
        )
        .order_by(Campaign.id.desc())
        .limit(1)
    )


def plan_campaign(
    session: Session,
    settings: Settings,
    release: Release,
    list_slugs: Sequence[str],
    tags: Sequence[str] = (),
    *,
    smtputf8: bool = True,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    rate_per_second: float | None = None,
    allow_new_version: bool = False,
    created_by: str = "",
    transport: str = "",
    where: Sequence[str] = (),
    segment: str | None = None,
) -> Plan:
    """Find the campaign for this release and audience, or create it and freeze its audience.

    `where`: filter expressions (mailer.contacts.filters), ANDed, evaluated by the database at
    planning time; `segment` only names where they came from (the campaign records both)."""
    if not list_slugs:
        raise InvalidInputError(
            "no audience: give at least one --list (or `lists:` in the release's front matter)"
        )
    if session.get_bind().dialect.name == "postgresql":
        # Two `mailer send` at once for one release must not both plan: the second waits here
        # and then finds the first one's campaign (SQLite's BEGIN IMMEDIATE does the same).
        session.execute(
            select(func.pg_advisory_xact_lock(zlib.crc32(f"mailer.plan:{release.slug}".encode())))
        )
    lists = [get_list(session, slug) for slug in dict.fromkeys(list_slugs)]
    tags = sorted(set(tags))
    where = list(where)
    key = audience_key([ml.slug for ml in lists], tags, where)
    existing = find_campaign(session, release.slug, key)
    if existing is not None:
        if existing.release_id == release.id:
            return Plan(
                existing,
                False,
                dict(existing.plan.get("by_language", {})),
                dict(existing.plan.get("excluded", {})),
                status_counts(session, existing.id),
                release.slug,
            )
        if not allow_new_version:
            what = (
                "already sent"
                if existing.status == CampaignStatus.DONE
                else f"is {existing.status.value}"
            )
            raise SendError(
                f"campaign {existing.id} for {release.slug!r} and this audience {what} with an "
                "earlier version of the release. Sending the changed file would mail everyone "
                "again: finish or cancel campaign "
                f"{existing.id} first, or pass --new-version to send the new text as a new "
                "campaign"
            )
        if existing.status in ACTIVE:
            raise SendError(
                f"campaign {existing.id} is still {existing.status.value}: cancel it "
                f"(mailer campaigns cancel {existing.id}) before sending a new version"
            )
    now = clock.now()
    campaign = Campaign(
        release_id=release.id,
        audience_key=key,
        audience={
            "lists": [ml.slug for ml in lists],
            "list_ids": [ml.id for ml in lists],
            "tags": tags,
            **({"segment": segment} if segment else {}),
            **({"where": where} if where else {}),
        },
        status=CampaignStatus.DRAFT,
        not_before=not_before,
        not_after=not_after,
        rate_per_second=rate_per_second,
        created_by=created_by,
        created_at=now,
        plan={},
    )
    session.add(campaign)
    session.flush()
    nonce = campaign_nonce(settings.secret_key or secrets.token_hex(8), campaign.id)
    domain = settings.from_address.rpartition("@")[2].lower()
    # Unguessable and the same on every resend: an HMAC of (campaign, contact), see
    # bounces/proof.py.
    msgid = message_id_column(
        session, campaign.id, settings.secret_key or secrets.token_hex(16), domain, Contact.id
    )
    language = language_case(
        session, [ml.id for ml in lists], release.variants, release.default_language
    )
    chosen = Audience([ml.slug for ml in lists], where, segment, [ml.id for ml in lists]).condition(
        session, now
    )
    if where and session.get_bind().dialect.name == "postgresql":
        # PostgreSQL multiplies the guessed selectivities of the expressions into "1 row" and
        # then joins 100,000 subscriptions by nested loops (minutes); hash joins are right at
        # any size. For this transaction only.
        session.execute(text("SET LOCAL enable_nestloop = off"))
    for ml in lists:
        _insert_deliveries(session, campaign, ml, tags, language, msgid, now, release.id, chosen)
    if not smtputf8:
        _skip_smtputf8(session, campaign.id)
    by_language: dict[str, int] = dict(
        session.execute(
            select(Delivery.language, func.count())
            .where(Delivery.campaign_id == campaign.id, Delivery.status == DeliveryStatus.PENDING)
            .group_by(Delivery.language)
        ).all()
    )
    excluded = _excluded(
        session, campaign, [ml.id for ml in lists], tags, chosen if where else None
    )
    campaign.plan = {
        "nonce": nonce,
        "by_language": by_language,
        "excluded": excluded,
        "transport": transport,
        "domain": domain,
    }
    audit.record(
        session,
        "campaign.plan",
        campaign_id=campaign.id,
        actor=created_by,
        release=release.slug,
        recipients=sum(by_language.values()),
    )
    return Plan(
        campaign, True, by_language, excluded, status_counts(session, campaign.id), release.slug
    )


def audience_languages(
    session: Session, list_slugs: Sequence[str], default_language: str
) -> dict[str, int]:
    """Subscribed, unsuppressed contacts on any of these lists, counted once, per language.

    Tags are normalised (mailer.releases.languages); a contact without a language is counted
    under `default_language` (pass the release's: that is what the planner gives them). This is
    what `release check` warns about, handed to the pure check_release."""
    list_ids = [get_list(session, slug).id for slug in list_slugs]
    if not list_ids:
        return {}
    suppressed = suppressed_sql(session)
    # Counted by the database, one row per language: the audience may be a million contacts.
    rows = session.execute(
        select(Contact.language, func.count(func.distinct(Contact.id)))
        .join(Subscription, Subscription.contact_id == Contact.id)
        .where(
            Subscription.list_id.in_(list_ids),
            Subscription.status == SubscriptionStatus.SUBSCRIBED,
            ~suppressed,
        )
        .group_by(Contact.language)
    )
    counts: Counter[str] = Counter()
    for language, n in rows:
        counts[normalise_language(language) or default_language] += n
    return dict(sorted(counts.items()))


def language_case(
    session: Session, list_ids: Sequence[int], variants: Collection[str], default_language: str
) -> Any:
    """SQL for the variant each contact of these lists gets, generated from the Python rule.

    The rule (mailer.releases.languages.choose) is applied to each distinct language value
    stored for these lists' contacts (a handful: one per way of writing a language), and the
    answers become `CASE language WHEN IN (...) THEN variant ... ELSE default END`. So the
    planner cannot disagree with `release check` or `release preview`, on either engine. A
    contact whose language is first written between this query and the INSERT (PostgreSQL,
    another connection) gets the default; SQLite plans under its write lock.
    """
    stored = session.scalars(
        select(Contact.language)
        .distinct()
        .join(Subscription, Subscription.contact_id == Contact.id)
        .where(Subscription.list_id.in_(list_ids))
    ).all()
    readers: dict[str, list[str]] = {}
    for raw in stored:
        if raw is None:
            continue  # NULL is in no IN (...) list: the ELSE gives it the default
        chosen = choose_language(raw, variants, default_language)
        if chosen != default_language:
            readers.setdefault(chosen, []).append(raw)
    if not readers:
        return literal(default_language)
    return case(
        *[
            (Contact.language.in_(sorted(raws)), literal(variant))
            for variant, raws in sorted(readers.items())
        ],
        else_=literal(default_language),
    )


def _insert_deliveries(
    session: Session,
    campaign: Campaign,
    ml: MailingList,
    tags: Sequence[str],
    language: Any,
    msgid: Any,
    now: datetime,
    release_id: int,
    chosen: Any = None,
) -> None:
    # One INSERT ... SELECT per list, in the order given: a contact on several lists gets one
    # row, attributed to the first list. Nothing is loaded into Python, whatever the list size.
    # `language` is the SQL of language_case.
    # The INSERT's own table, aliased so the NOT EXISTS below does not correlate with it.
    planned = Delivery.__table__.alias("planned")
    conditions = [
        Subscription.list_id == ml.id,
        Subscription.status == SubscriptionStatus.SUBSCRIBED,
        # Suppressed by this address or another spelling of its mailbox (addresses.mailbox_key).
        ~suppressed_sql(session),
        ~exists().where(planned.c.campaign_id == campaign.id, planned.c.contact_id == Contact.id),
    ]
    conditions.append(~_already_has(release_id))
    if tags:
        conditions.append(
            exists().where(ContactTag.contact_id == Contact.id, ContactTag.tag.in_(tags))
        )
    if chosen is not None:
        conditions.append(chosen)  # the segment's expressions: one SQL condition
    select_rows = (
        select(
            literal(campaign.id),
            Contact.id,
            literal(ml.id),
            Contact.email,
            language,
            literal(DeliveryStatus.PENDING.value),
            literal(0),
            msgid,
            literal(now),
        )
        .select_from(Subscription)
        .join(Contact, Contact.id == Subscription.contact_id)
        .where(*conditions)
    )
    session.execute(
        insert(Delivery).from_select(
            [
                "campaign_id",
                "contact_id",
                "list_id",
                "email",
                "language",
                "status",
                "attempts",
                "message_id",
                "updated_at",
            ],
            select_rows,
        )
    )


NOT_RECEIVED = (
    DeliveryStatus.FAILED.value,
    DeliveryStatus.SKIPPED.value,
    DeliveryStatus.CANCELLED.value,
)


def _already_has(release_id: int) -> Any:
    """EXISTS: the contact got (or is getting) this very release in another campaign.

    A cancelled campaign resent, or a second audience overlapping the first, must not mail
    anyone twice; a changed text is a new release row (send --new-version)."""
    earlier = Delivery.__table__.alias("earlier")
    earlier_campaign = Campaign.__table__.alias("earlier_campaign")
    return exists().where(
        earlier.c.contact_id == Contact.id,
        earlier.c.campaign_id == earlier_campaign.c.id,
        earlier_campaign.c.release_id == release_id,
        earlier.c.status.not_in(NOT_RECEIVED),
    )


def _skip_smtputf8(session: Session, campaign_id: int) -> None:
    """Addresses whose local part is not ASCII cannot go to a server without SMTPUTF8."""
    ids = [
        row_id
        for row_id, email in session.execute(
            select(Delivery.id, Delivery.email)
            .where(Delivery.campaign_id == campaign_id)
            .execution_options(yield_per=5000)
        )
        if not email.rpartition("@")[0].isascii()
    ]
    for start in range(0, len(ids), 500):
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids[start : start + 500]))
            .values(
                status=DeliveryStatus.SKIPPED,
                smtp_reply="excluded: the address needs SMTPUTF8, which the server does not offer",
            )
        )


def _excluded(
    session: Session,
    campaign: Campaign,
    list_ids: list[int],
    tags: Sequence[str],
    chosen: Any = None,
) -> dict[str, int]:
    """Why contacts of these lists are not in the audience, by reason."""
    in_lists = Subscription.list_id.in_(list_ids)
    not_planned = ~exists().where(
        Delivery.campaign_id == campaign.id, Delivery.contact_id == Subscription.contact_id
    )

    def count(*where: Any) -> int:
        return (
            session.scalar(
                select(func.count(func.distinct(Subscription.contact_id)))
                .select_from(Subscription)
                .join(Contact, Contact.id == Subscription.contact_id)
                .where(in_lists, not_planned, *where)
            )
            or 0
        )

    suppressed = suppressed_sql(session)
    other = Subscription.__table__.alias("other")
    subscribed_any = exists().where(
        and_(
            other.c.contact_id == Contact.id,
            other.c.list_id.in_(list_ids),
            other.c.status == SubscriptionStatus.SUBSCRIBED.value,
        )
    )
    received = _already_has(campaign.release_id)
    result = {
        "already received this release": count(~suppressed, subscribed_any, received),
        "suppressed": count(suppressed),
        "unsubscribed": count(
            ~suppressed, Subscription.status == SubscriptionStatus.UNSUBSCRIBED, ~subscribed_any
        ),
        "unconfirmed": count(
            ~suppressed, Subscription.status == SubscriptionStatus.PENDING, ~subscribed_any
        ),
    }
    if tags:
        result["without the tag"] = count(~suppressed, subscribed_any)
    if chosen is not None:
        result["outside the segment"] = count(~suppressed, subscribed_any, ~chosen)
    result["needs SMTPUTF8"] = (
        session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign.id, Delivery.status == DeliveryStatus.SKIPPED
            )
        )
        or 0
    )
    return {k: v for k, v in result.items() if v}
