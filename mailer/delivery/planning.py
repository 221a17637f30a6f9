"""Planning a campaign: the release stored, the audience frozen into the ledger (one row each).

Over 400 lines on purpose: freezing the audience is one transaction of several statements (the
release, the ledger rows, exclusions, SMTPUTF8) whose order is the guarantee.
"""

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
    case,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.lists import get_list
from mailer.contacts.segments import Audience, not_suppressed, subscribed_to
from mailer.delivery.campaigns import status_counts
from mailer.delivery.message import campaign_nonce
from mailer.delivery.message_ids import message_id_column
from mailer.errors import InvalidInputError, SendError
from mailer.newsroom import state as publication
from mailer.releases import embargo as embargo_words
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


@dataclass(frozen=True)
class EarlySend:
    """A release going to press lists before its embargo: each message marked EMBARGOED."""

    until: datetime
    lists: list[str]
    # The embargo as the plan and the messages say it: in the organisation's zone, zone named.
    until_text: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"until": self.until.isoformat(), "until_text": self.until_text, "lists": self.lists}


@dataclass
class Plan:
    """What a send will do; printed before the operator confirms.

    `early`: the release goes out before its embargo (to press lists only), marked."""

    campaign: Campaign
    created: bool
    by_language: dict[str, int]
    excluded: dict[str, int]
    statuses: dict[str, int] = field(default_factory=dict)
    release_slug: str = ""
    early: EarlySend | None = None

    @property
    def total(self) -> int:
        return sum(self.by_language.values())

    @property
    def due(self) -> int:
        """Messages a run would send now: pending, and deferred ones (their retry may wait)."""
        return self.statuses.get("pending", 0) + self.statuses.get("deferred", 0)

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON shape of the plan (`mailer send --json`)."""
        c = self.campaign

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "campaign": c.id,
            "created": self.created,
            "release": self.release_slug,
            "lists": list(c.audience.get("lists", [])),
            "tags": list(c.audience.get("tags", [])),
            "segment": c.audience.get("segment"),
            "where": list(c.audience.get("where", [])),
            "recipients": self.total,
            "by_language": dict(self.by_language),
            "excluded": dict(self.excluded),
            "statuses": dict(self.statuses),
            "due": self.due,
            "not_before": iso(c.not_before),
            "not_after": iso(c.not_after),
            "before_embargo": self.early.as_dict() if self.early else None,
        }


def embargo_rule(
    session: Session,
    settings: Settings,
    release_slug: str,
    embargo: datetime | None,
    list_slugs: Sequence[str],
    start: datetime,
) -> EarlySend | None:
    """Who may get a release that starts going out at `start`, before its embargo.

    None when nothing is early (no embargo, or `start` at or after the lift). Before the lift
    only press lists may get it (EarlySend: each message marked); any other list is refused,
    and a mix of the two too, since one campaign cannot hold back part of its audience."""
    if embargo is None or start >= embargo:
        return None
    lists = [get_list(session, slug) for slug in dict.fromkeys(list_slugs)]
    press = [ml.slug for ml in lists if ml.press]
    others = [ml.slug for ml in lists if not ml.press]
    when = embargo_words.when_text(embargo, settings)
    if not others:
        return EarlySend(embargo, press, when)
    at = embargo_words.when_option(embargo, settings)
    named = ", ".join(others)
    if press:
        raise SendError(
            f"{release_slug} is under embargo until {when}. Press lists get it early, marked "
            f"EMBARGOED ({', '.join(press)}), but {named} "
            f"{'is not a press list' if len(others) == 1 else 'are not press lists'}: send in "
            f"two steps, the press lists now (--list {' --list '.join(press)}) and the others "
            f"when it lifts (--list {' --list '.join(others)} --at '{at}')"
        )
    raise SendError(
        f"{release_slug} is under embargo until {when}: it cannot go to {named} before then "
        f"(only press lists get an embargoed release early; see `mailer lists edit SLUG "
        f"--press`). Schedule it for the lift with --at '{at}', or test-send it with "
        "--test ADDRESS"
    )


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
    media: dict[str, list[dict[str, Any]]] | None = None,
) -> Release:
    """The stored copy of a release version (created once per content hash).

    `media`: each language's local files as stored (mailer.media.refs.media_json), kept beside
    its source so a campaign renders the very files that were planned."""
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
            variants={
                lang: {
                    "source": text,
                    **({"media": media[lang]} if media and lang in media else {}),
                }
                for lang, text in sources.items()
            },
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
    early: EarlySend | None = None,
) -> Plan:
    """Find the campaign for this release and audience, or create it and freeze its audience.

    `where`: filter expressions (mailer.contacts.filters), ANDed, evaluated by the database at
    planning time; `segment` only names where they came from (the campaign records both).
    `early`: it goes out before its embargo (embargo_rule): the campaign records it."""
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
                early,
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
    # Campaigns that sent (or are sending) this very release before: usually none. Named here,
    # so the INSERT never reads the table it writes (see _insert_deliveries).
    earlier = list(
        session.scalars(
            select(Campaign.id).where(Campaign.release_id == release.id, Campaign.id != campaign.id)
        )
    )
    for i, ml in enumerate(lists):
        before = [other.id for other in lists[:i]]
        _insert_deliveries(
            session, campaign, ml, before, tags, language, msgid, now, earlier, chosen
        )
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
        session, campaign, [ml.id for ml in lists], tags, earlier, chosen if where else None
    )
    campaign.plan = {
        "nonce": nonce,
        "by_language": by_language,
        "excluded": excluded,
        "transport": transport,
        "domain": domain,
        **({"before_embargo": early.as_dict()} if early else {}),
    }
    audit.record(
        session,
        "campaign.plan",
        campaign_id=campaign.id,
        actor=created_by,
        release=release.slug,
        recipients=sum(by_language.values()),
    )
    # The release enters the newsroom's state (public only once it is sent and its embargo lifts).
    publication.on_plan(session, settings, campaign)
    return Plan(
        campaign,
        True,
        by_language,
        excluded,
        status_counts(session, campaign.id),
        release.slug,
        early,
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
    # Counted by the database, one row per language: the audience may be a million contacts.
    rows = session.execute(
        select(Contact.language, func.count(func.distinct(Contact.id)))
        .join(Subscription, Subscription.contact_id == Contact.id)
        .where(
            Subscription.list_id.in_(list_ids),
            Subscription.status == SubscriptionStatus.SUBSCRIBED,
            not_suppressed(session),
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
    before: Sequence[int],
    tags: Sequence[str],
    language: Any,
    msgid: Any,
    now: datetime,
    earlier: Sequence[int],
    chosen: Any = None,
) -> None:
    # One INSERT ... SELECT per list, in the order given: a contact on several lists gets one
    # row, attributed to the first list. Nothing is loaded into Python, whatever the list size.
    # `language` is the SQL of language_case; `before`: the lists planned already.
    #
    # The SELECT never reads `delivery` for this campaign. It used to skip contacts already
    # planned with NOT EXISTS (delivery of this campaign): on a database whose delivery table
    # was empty when last measured (a new one: the first campaign), PostgreSQL ran that as a
    # nested loop re-scanning the table for each contact, while the INSERT kept growing it
    # (766 s for 100,000 contacts). Every condition below but the list is about the contact,
    # so "planned for an earlier list" is "subscribed to an earlier list", and that is asked
    # of `subscription`.
    conditions = [
        Subscription.list_id == ml.id,
        Subscription.status == SubscriptionStatus.SUBSCRIBED,
        # Suppressed by this address or another spelling of its mailbox (addresses.mailbox_key).
        not_suppressed(session),
    ]
    if before:
        conditions.append(~subscribed_to(before))
    if earlier:
        conditions.append(~_already_has(earlier))
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


def _already_has(campaign_ids: Sequence[int]) -> Any:
    """EXISTS: the contact got (or is getting) the release from one of these campaigns.

    They are the other campaigns of the same release: a cancelled campaign resent, or a second
    audience overlapping the first, must not mail anyone twice; a changed text is a new release
    row (send --new-version)."""
    earlier = Delivery.__table__.alias("earlier")
    return exists().where(
        earlier.c.contact_id == Contact.id,
        earlier.c.campaign_id.in_(list(campaign_ids)),
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
    earlier: Sequence[int],
    chosen: Any = None,
) -> dict[str, int]:
    """Why contacts of these lists are not in the audience, by reason.

    Each reason is a condition the planner left the contact out for, so on PostgreSQL none of
    these counts reads the rows just planned (whose statistics it does not have yet)."""
    in_lists = Subscription.list_id.in_(list_ids)
    # SQLite tests its conditions in order, one contact at a time: "not planned" first (one
    # index probe) spares the mailbox-key expression for everyone planned. It changes no count
    # (a contact left out for a reason was never planned). PostgreSQL plans joins from
    # statistics, which it does not have yet for the rows just written: there it is left out.
    first = []
    if session.get_bind().dialect.name == "sqlite":
        first.append(
            ~exists().where(
                Delivery.campaign_id == campaign.id, Delivery.contact_id == Subscription.contact_id
            )
        )

    def count(*where: Any) -> int:
        return (
            session.scalar(
                select(func.count(func.distinct(Subscription.contact_id)))
                .select_from(Subscription)
                .join(Contact, Contact.id == Subscription.contact_id)
                .where(in_lists, *first, *where)
            )
            or 0
        )

    # A negated condition is counted as a difference (all - those for whom it holds): NOT of
    # an EXISTS inside OR / AND is a subquery per contact to PostgreSQL, and priced so high
    # that it compiles the query (JIT, seconds), while the positive forms are plain joins.
    unsuppressed = not_suppressed(session)
    subscribed_any = subscribed_to(list_ids)
    result = {
        "already received this release": (
            count(unsuppressed, subscribed_any, _already_has(earlier)) if earlier else 0
        ),
        "suppressed": count() - count(unsuppressed),
        "unsubscribed": count(
            unsuppressed, Subscription.status == SubscriptionStatus.UNSUBSCRIBED, ~subscribed_any
        ),
        "unconfirmed": count(
            unsuppressed, Subscription.status == SubscriptionStatus.PENDING, ~subscribed_any
        ),
    }
    if tags:
        tagged = exists().where(ContactTag.contact_id == Contact.id, ContactTag.tag.in_(tags))
        result["without the tag"] = count(unsuppressed, subscribed_any, ~tagged)
    if chosen is not None:
        result["outside the segment"] = count(unsuppressed, subscribed_any) - count(
            unsuppressed, subscribed_any, chosen
        )
    result["needs SMTPUTF8"] = (
        session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign.id, Delivery.status == DeliveryStatus.SKIPPED
            )
        )
        or 0
    )
    return {k: v for k, v in result.items() if v}
