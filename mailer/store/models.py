"""The data model (docs/architecture.md) as typed SQLAlchemy 2.0 models; all times aware UTC.

Over 400 lines on purpose: one class per table, and the schema test compares them all at once
with the migrations.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    column,
    event,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mailer import clock
from mailer.contacts.addresses import mailbox_key
from mailer.store import contact_search

if TYPE_CHECKING:
    from mailer.localtext import LocalText

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back an aware UTC datetime (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as VARCHAR with a CHECK so SQLite and PostgreSQL hold the same values and adding a
    # member is a plain migration; values (not member names) go into the database.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class SubscriptionStatus(enum.StrEnum):
    PENDING = "pending"
    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"


class SuppressionReason(enum.StrEnum):
    UNSUBSCRIBE_ALL = "unsubscribe-all"
    HARD_BOUNCE = "hard-bounce"
    COMPLAINT = "complaint"
    MANUAL = "manual"
    ERASED = "erased"


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    DONE = "done"
    CANCELLED = "cancelled"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    IN_DOUBT = "in_doubt"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


FINAL_DELIVERY_STATUSES = frozenset(
    {DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED, DeliveryStatus.CANCELLED}
)


def _now() -> datetime:
    return clock.now()


# SQLite without AUTOINCREMENT gives a new row the id of the newest deleted one. Links carry
# contact and list ids (unsubscribe, preferences, confirm): an erased person's old link must never
# name the next subscriber, so these tables never reuse an id (PostgreSQL sequences never do).
_NO_ID_REUSE = {"sqlite_autoincrement": True}


def _like_press(context: Any) -> bool:
    # Engagement tracking (issue 17) is on by default for press lists only: a list made
    # without saying takes its `press` flag (mailer.engagement, docs/engagement.md).
    return bool(context.get_current_parameters().get("press", False))


class MailingList(Base):
    __tablename__ = "mailing_list"
    __table_args__ = _NO_ID_REUSE

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # The name in other languages than the default ({"ko": "보도자료"}): `name` is the default
    # language's, and readers of a language without one get it (local_name).
    # The database default too: rows inserted by SQL of one's own (scripts, tests) get none.
    names: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    description: Mapped[str] = mapped_column(Text, default="")
    from_address: Mapped[str | None] = mapped_column(String(320))
    list_id: Mapped[str | None] = mapped_column(String(255))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    # A press list: reporters on it get an embargoed release before the embargo lifts.
    press: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Releases sent to it may appear in the public newsroom (false: member-only newsletters).
    archive: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    # Engagement (mailer.engagement): links go through /l/ (track_clicks); clicks name the reader
    # (track_people). Both default to `press` (migration 0014 set existing lists so).
    track_clicks: Mapped[bool] = mapped_column(
        Boolean, default=_like_press, server_default=text("false")
    )
    track_people: Mapped[bool] = mapped_column(
        Boolean, default=_like_press, server_default=text("false")
    )
    created_at: Mapped[datetime] = mapped_column(default=_now)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="mailing_list", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<MailingList {self.slug!r}>"

    def local_name(self, default_language: str = "") -> LocalText:
        """The name as a str that knows its languages (mailer.localtext.LocalText); `name` is
        the default language's ("" when it does not matter which that is)."""
        # Lazy: `lists ls` never names a list in several languages; it skips mailer.localtext.
        from mailer.localtext import LocalText  # noqa: PLC0415

        return LocalText({**(self.names or {}), default_language: self.name}, default_language)


class Contact(Base):
    """A person. The press fields (outlet, role, beat, media type, region, phone) are columns;
    any other spreadsheet column is a free attribute in `attributes`."""

    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Normalised by email-validator and lower-cased whole: the key for uniqueness and delivery.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_original: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str | None] = mapped_column(String(16))
    # The outlet ("outlet" in --where, the import's headers and reports): the column keeps its
    # first name, so exports, JSON output and scripts written against them keep working.
    organisation: Mapped[str] = mapped_column(String(200), default="")
    # Press fields: "" when unknown (never NULL, so `--where` compares the column itself and
    # the expression indexes below serve it). The database default too: rows inserted by SQL
    # of one's own (scripts, benchmarks) get "".
    role: Mapped[str] = mapped_column(String(200), default="", server_default=text("''"))
    beat: Mapped[str] = mapped_column(String(200), default="", server_default=text("''"))
    # print, tv, radio, online or ethnic (mailer.contacts.press), or the text a sheet had.
    media_type: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    region: Mapped[str] = mapped_column(String(200), default="", server_default=text("''"))
    phone: Mapped[str] = mapped_column(String(100), default="", server_default=text("''"))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The reader switched per-person engagement off on the preference page (mailer.engagement).
    track_people_off: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", passive_deletes=True
    )
    tags: Mapped[list[ContactTag]] = relationship(
        back_populates="contact", cascade="all, delete-orphan", passive_deletes=True
    )

    # `--where` compares lower(field) (mailer.contacts.filters): these indexes serve `=` and
    # `in`, and give PostgreSQL statistics on exactly those expressions, so a segment's row
    # count is estimated from the data instead of guessed (a guess of "1 row" made it join
    # 100,000 subscriptions by nested loops). Language is NULL for "the default": hence coalesce.
    # SQLite keeps no statistics, so it gets only the two that find few rows (a beat, an
    # outlet): each index costs every import, and SQLite's per-row trigger (contact_search)
    # makes that cost several times what it is alone.
    __table_args__ = (
        Index("ix_contact_organisation", func.lower(column("organisation"))),
        Index("ix_contact_beat", func.lower(column("beat"))),
        Index("ix_contact_language", func.lower(func.coalesce(column("language"), ""))).ddl_if(
            dialect="postgresql"
        ),
        Index("ix_contact_role", func.lower(column("role"))).ddl_if(dialect="postgresql"),
        Index("ix_contact_media_type", func.lower(column("media_type"))).ddl_if(
            dialect="postgresql"
        ),
        Index("ix_contact_region", func.lower(column("region"))).ddl_if(dialect="postgresql"),
        _NO_ID_REUSE,
    )

    def __repr__(self) -> str:
        return f"<Contact {self.email!r}>"


class ContactTag(Base):
    __tablename__ = "contact_tag"
    __table_args__ = (
        UniqueConstraint("contact_id", "tag"),
        # The console's tag filter (and `--where tag = x`) compares lower(tag): contacts of a
        # rare tag come from this index, not from a walk over every contact.
        Index("ix_contact_tag_lower_tag", func.lower(column("tag"))),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String(100), index=True)

    contact: Mapped[Contact] = relationship(back_populates="tags")

    def __repr__(self) -> str:
        return f"<ContactTag {self.contact_id} {self.tag!r}>"


class ContactSearch(Base):
    """One contact's search line (mailer/store/contact_search.py), for the console's search.

    Written only by triggers on `contact`, never by Python, so every writer keeps it right; no
    foreign key (the delete trigger removes a contact's line): an import pays no per-row check.
    PostgreSQL indexes it by trigrams (pg_trgm); SQLite has no such index and reads the narrow
    table whole, so its index is an empty partial one (WHERE 0) that keeps both schemas alike."""

    __tablename__ = "contact_search"
    __table_args__ = (
        Index(
            contact_search.TRIGRAM_INDEX,
            "body",
            postgresql_using="gin",
            postgresql_ops={"body": "gin_trgm_ops"},
            sqlite_where=text("0"),
        ).ddl_if(callable_=contact_search.index_wanted),
    )

    contact_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    body: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        return f"<ContactSearch {self.contact_id}>"


# The triggers go on `contact` once every table exists (contact_search has no foreign key, so
# create_all may create it first); pg_trgm before the trigram index.
event.listen(Base.metadata, "before_create", contact_search.before_create)
event.listen(Base.metadata, "after_create", contact_search.after_create)


class Subscription(Base):
    __tablename__ = "subscription"
    __table_args__ = (UniqueConstraint("contact_id", "list_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    list_id: Mapped[int] = mapped_column(
        ForeignKey("mailing_list.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[SubscriptionStatus] = mapped_column(
        _enum(SubscriptionStatus, "subscription_status")
    )
    source: Mapped[str] = mapped_column(String(40), default="cli")
    # Consent evidence: when, from where, through which form or import, and what text was shown.
    consent_at: Mapped[datetime | None]
    consent_ip: Mapped[str | None] = mapped_column(String(64))
    consent_user_agent: Mapped[str | None] = mapped_column(String(500))
    consent_form: Mapped[str | None] = mapped_column(String(200))
    consent_text_hash: Mapped[str | None] = mapped_column(String(64))
    consent_note: Mapped[str | None] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    unsubscribed_via: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    contact: Mapped[Contact] = relationship(back_populates="subscriptions")
    mailing_list: Mapped[MailingList] = relationship(back_populates="subscriptions")

    def __repr__(self) -> str:
        return f"<Subscription contact={self.contact_id} list={self.list_id} {self.status}>"


def _mailbox_of_email(context: Any) -> str:
    # A column default, so every insert (ORM or a bulk Core insert) fills it.
    return mailbox_key(context.get_current_parameters()["email"])


class Suppression(Base):
    __tablename__ = "suppression"
    # The console lists suppressions newest first, a page at a time.
    __table_args__ = (Index("ix_suppression_created_at_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # addresses.mailbox_key(email): dot and +tag variants of one inbox match one suppression.
    mailbox: Mapped[str] = mapped_column(String(320), index=True, default=_mailbox_of_email)
    reason: Mapped[SuppressionReason] = mapped_column(
        _enum(SuppressionReason, "suppression_reason")
    )
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<Suppression {self.email!r} {self.reason}>"


class Segment(Base):
    """A saved audience: contacts subscribed to these lists for whom every expression holds.

    The expressions are the `--where` filter language (mailer.contacts.filters), kept as typed;
    a campaign planned from a segment copies them, so editing the segment later changes no
    ledger."""

    __tablename__ = "segment"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    lists: Mapped[list[str]] = mapped_column(JSON, default=list)  # list slugs
    expressions: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    def __repr__(self) -> str:
        return f"<Segment {self.name!r}>"


class ContactImport(Base):
    """One run of `contacts import`: the id that consent evidence points to."""

    __tablename__ = "contact_import"

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("mailing_list.id", ondelete="SET NULL"))
    consent_source: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<ContactImport {self.id} {self.filename!r}>"


class Release(Base):
    """A release as sent: its sources frozen, so a campaign renders what was planned."""

    __tablename__ = "release"
    __table_args__ = (UniqueConstraint("slug", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(String(500))
    default_language: Mapped[str] = mapped_column(String(16))
    front_matter: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {language: {"path": ..., "source": full file text}}
    variants: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<Release {self.slug!r} {self.content_hash[:8]}>"


class Campaign(Base):
    __tablename__ = "campaign"
    __table_args__ = (Index("ix_campaign_release_audience", "release_id", "audience_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id"))
    # A stable description of the audience (lists and tags), so a second `send` resumes.
    audience_key: Mapped[str] = mapped_column(String(500))
    audience: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[CampaignStatus] = mapped_column(_enum(CampaignStatus, "campaign_status"))
    not_before: Mapped[datetime | None]
    not_after: Mapped[datetime | None]
    rate_per_second: Mapped[float | None]
    plan: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=_now)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Why the campaign paused itself (delivery/guards.py: complaints over the line); cleared,
    # and the complaints so far acknowledged, by a resume.
    pause_reason: Mapped[str | None] = mapped_column(Text)
    complaints_acknowledged: Mapped[int | None] = mapped_column(Integer)

    release: Mapped[Release] = relationship()

    def __repr__(self) -> str:
        return f"<Campaign {self.id} {self.status}>"


class Delivery(Base):
    """One recipient of one campaign: the ledger row."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        Index("ix_delivery_claim", "campaign_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True
    )
    # The list this recipient is mailed for (List-Id, the unsubscribe link): the first of the
    # campaign's lists the contact was subscribed to when the campaign was planned.
    list_id: Mapped[int | None] = mapped_column(ForeignKey("mailing_list.id", ondelete="SET NULL"))
    # Frozen at plan time: the ledger stays readable after a contact is erased.
    email: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(16))
    status: Mapped[DeliveryStatus] = mapped_column(_enum(DeliveryStatus, "delivery_status"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    smtp_code: Mapped[int | None]
    smtp_reply: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(255), index=True)
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    def __repr__(self) -> str:
        return f"<Delivery {self.id} campaign={self.campaign_id} {self.email!r} {self.status}>"


class Bounce(Base):
    """A bounce, complaint or mailed unsubscribe read from the bounce mailbox."""

    __tablename__ = "bounce"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The Message-ID of the report itself, so processing the same mailbox twice counts once.
    source_message_id: Mapped[str] = mapped_column(String(500), unique=True)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    # hard, soft, block, complaint, unsubscribe, delayed, autoreply, ignored (see bounces/parse.py)
    kind: Mapped[str] = mapped_column(String(20))
    status_code: Mapped[str | None] = mapped_column(String(20))
    diagnostic: Mapped[str | None] = mapped_column(Text)
    # Indexed: deleting a campaign's deliveries (a declined plan) sets this NULL row by row.
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("delivery.id", ondelete="SET NULL"), index=True
    )
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<Bounce {self.kind} {self.email!r}>"


class BounceReview(Base):
    """A report that could not be tied to a message mailer sent: held for a person to decide.

    Until `bounces review --apply` it suppresses nothing and its bounce counts toward no score.
    """

    __tablename__ = "bounce_review"

    id: Mapped[int] = mapped_column(primary_key=True)
    bounce_id: Mapped[int] = mapped_column(ForeignKey("bounce.id", ondelete="CASCADE"), unique=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    # What applying it does: suppress (hard bounce), complaint, score (soft/block), unsubscribe
    action: Mapped[str] = mapped_column(String(20))
    why: Mapped[str] = mapped_column(Text)  # why it was not applied automatically
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(Text)  # what applying it did

    def __repr__(self) -> str:
        return f"<BounceReview {self.id} {self.action} {self.email!r} {self.state}>"


class Notice(Base):
    """An email to send outside any campaign (a confirmation link), queued by a web request.

    The form only writes this row, whatever the address: the checks that depend on the address
    (suppression, per-mailbox limits) and the sending happen later, in `mailer serve`'s sender
    thread or `mailer worker`, so the answer cannot tell one address from another. The row is
    deleted once sent or dropped (the event log keeps what happened, without the address).
    """

    __tablename__ = "notice"
    __table_args__ = (Index("ix_notice_due", "state", "due_at"), _NO_ID_REUSE)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # "subscribe", "resend"
    # queued: as the form left it; ready: checked, pending subscription written; sending: leased
    state: Mapped[str] = mapped_column(String(20), default="queued")
    email: Mapped[str] = mapped_column(String(320))
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(default=_now)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<Notice {self.id} {self.kind} {self.state}>"


class RateLimit(Base):
    """A fixed-window counter shared by every process on the database (web forms, send rate)."""

    __tablename__ = "rate_limit"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    window_start: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return f"<RateLimit {self.key!r} {self.count}>"


class Lock(Base):
    """A named lease lock (e.g. the one sender allowed on SQLite)."""

    __tablename__ = "lock"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime]

    def __repr__(self) -> str:
        return f"<Lock {self.name!r} {self.holder!r}>"


class Event(Base):
    """Append-only audit log: imports, subscribes, confirms, unsubscribes, bounces, sends."""

    __tablename__ = "event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=_now, index=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    contact_id: Mapped[int | None] = mapped_column(
        ForeignKey("contact.id", ondelete="SET NULL"), index=True
    )
    list_id: Mapped[int | None] = mapped_column(ForeignKey("mailing_list.id", ondelete="SET NULL"))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaign.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(200), default="")
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    def __repr__(self) -> str:
        return f"<Event {self.id} {self.kind}>"


class StaffRole(enum.StrEnum):
    """Console roles, each allowed everything the ones before it are (mailer.staff.roles)."""

    VIEWER = "viewer"
    EDITOR = "editor"
    SENDER = "sender"
    ADMIN = "admin"


class StaffUser(Base):
    """A person who signs in to the console (not a contact: staff are never mailed releases)."""

    __tablename__ = "staff_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Lower-cased: the sign-in name, compared exactly.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole, "staff_role"))
    language: Mapped[str] = mapped_column(String(16), default="en")
    # argon2id (mailer.staff.passwords); None until the invitation is accepted.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # Base32 TOTP secret: set while two-factor login is being set up, used once `totp_enabled`.
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # The last time step whose code was accepted: a code is good once (no replay in its window).
    totp_last_step: Mapped[int] = mapped_column(Integer, default=0)
    # SHA-256 digests of the unused recovery codes.
    recovery_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    last_login_at: Mapped[datetime | None] = mapped_column()

    def __repr__(self) -> str:
        return f"<StaffUser {self.email!r} {self.role}>"


class StaffSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is kept here, so a
    copy of the database signs nobody in."""

    __tablename__ = "staff_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the token
    user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_user.id", ondelete="CASCADE"), index=True
    )
    # "password": the password was right and a second factor is still owed; "full": signed in.
    stage: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=_now)
    last_seen_at: Mapped[datetime] = mapped_column(default=_now)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")

    def __repr__(self) -> str:
        return f"<StaffSession user={self.user_id} {self.stage}>"


class StaffToken(Base):
    """A one-time link: an invitation or a password reset (only the token's SHA-256 is kept)."""

    __tablename__ = "staff_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("staff_user.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(16))  # "invite" | "reset"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column()

    def __repr__(self) -> str:
        return f"<StaffToken {self.purpose} user={self.user_id}>"


class StaffPolicy(Base):
    """Per-role rules an admin sets in the console: today, whether two-factor login is required."""

    __tablename__ = "staff_policy"

    role: Mapped[StaffRole] = mapped_column(_enum(StaffRole, "staff_role"), primary_key=True)
    require_2fa: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"<StaffPolicy {self.role} 2fa={self.require_2fa}>"


class Publication(Base):
    """A release in the public newsroom (mailer.newsroom): which version, from when, withdrawn.

    Public from max(embargo, first_sent_at) when `publish` and not withdrawn; never before,
    whatever URL is guessed."""

    __tablename__ = "publication"
    __table_args__ = (Index("ix_publication_year_month", "year", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    release_id: Mapped[int] = mapped_column(ForeignKey("release.id"))
    year: Mapped[int] = mapped_column(Integer)
    month: Mapped[int] = mapped_column(Integer)
    embargo: Mapped[datetime | None] = mapped_column()
    first_sent_at: Mapped[datetime | None] = mapped_column(index=True)
    publish: Mapped[bool] = mapped_column(Boolean, default=True)
    lists: Mapped[list[str]] = mapped_column(JSON, default=list)  # list slugs it was sent to
    withdrawn_at: Mapped[datetime | None] = mapped_column()
    withdrawn_note: Mapped[str] = mapped_column(Text, default="")
    corrections: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=_now)

    release: Mapped[Release] = relationship()

    def __repr__(self) -> str:
        return f"<Publication {self.slug!r}>"


class MediaFile(Base):
    """A press-kit file or image, stored once by content (media_dir/SHA256), served at /media/."""

    __tablename__ = "media_file"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    # A scaled copy for email width (scale 1 or 2) of this original.
    original_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    scale: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<MediaFile {self.sha256[:12]} {self.name!r}>"


class ReleaseMedia(Base):
    """Which release uses which media file: /media/ serves a file only while one of its releases
    is public (or with that release's preview link)."""

    __tablename__ = "release_media"

    release_slug: Mapped[str] = mapped_column(String(200), primary_key=True)
    sha256: Mapped[str] = mapped_column(
        ForeignKey("media_file.sha256", ondelete="CASCADE"), primary_key=True, index=True
    )

    def __repr__(self) -> str:
        return f"<ReleaseMedia {self.release_slug!r} {self.sha256[:12]}>"


class ReleaseDraft(Base):
    """A release being written in the console (mailer.releases.drafts): its versions are kept,
    the current one is what every release command reads once materialised as files."""

    __tablename__ = "release_draft"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The release's NAME (NAME.LANG.md); a campaign sent from the draft has this release slug.
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now)
    # The number of the newest version; a save names the version it was based on and is refused
    # when this moved meanwhile (optimistic, compared and set in one UPDATE).
    current_version: Mapped[int] = mapped_column(Integer, default=0)

    def __repr__(self) -> str:
        return f"<ReleaseDraft {self.slug!r} v{self.current_version}>"


class ReleaseVersion(Base):
    """One saved state of a draft: every language's file text and its press-kit files."""

    __tablename__ = "release_version"
    __table_args__ = (UniqueConstraint("draft_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    draft_id: Mapped[int] = mapped_column(
        ForeignKey("release_draft.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    # {language: the whole NAME.LANG.md text, front matter and body, exactly as the file holds}
    sources: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # {relative path in the release folder: SHA-256 of the file in the media store}
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The language written as NAME.md (no language in the name) when imported so; else None.
    plain_language: Mapped[str | None] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<ReleaseVersion draft={self.draft_id} v{self.number}>"


class ProviderHold(Base):
    """A mail provider that refused the sender for several recipients in a row during a
    campaign: its recipients wait until `held_until` (delivery/guards.py). Removed once the
    provider accepts a message again; `level` doubles the wait each time it is held again."""

    __tablename__ = "provider_hold"
    __table_args__ = (UniqueConstraint("campaign_id", "provider"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    # "mx:HOST" (the recipients' domains share this MX host) or "domain:DOMAIN".
    provider: Mapped[str] = mapped_column(String(300))
    label: Mapped[str] = mapped_column(String(400))  # "gmail.com (MX gmail-smtp-in...)"
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(String(200))  # "5.7.26 unauthenticated"
    smtp_code: Mapped[int | None]
    smtp_reply: Mapped[str] = mapped_column(Text, default="")
    level: Mapped[int] = mapped_column(Integer, default=1)
    held_until: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now, onupdate=_now)

    def __repr__(self) -> str:
        return f"<ProviderHold {self.campaign_id} {self.provider!r} until {self.held_until}>"


class Installation(Base):
    """This database's own random value, made once when the database is created (or migrated
    to 0010): part of every Message-ID's key (mailer.delivery.message_ids), so two databases
    sharing one mailer.toml (a copy for tests, a second office) never write the same ids."""

    __tablename__ = "installation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1: one row
    id_part: Mapped[str] = mapped_column(String(64))

    def __repr__(self) -> str:
        return "<Installation>"


def new_id_part() -> str:
    """A new installation's random part: 128 bits, hex."""
    import secrets  # noqa: PLC0415 - only a new database needs it

    return secrets.token_hex(16)


class ReleaseApproval(Base):
    """A request to approve one version of a release draft, and its decision (issue 15,
    mailer.releases.approval). "approved" holds only while the draft's current version is still
    `version`: an edit after approval voids it."""

    __tablename__ = "release_approval"

    id: Mapped[int] = mapped_column(primary_key=True)
    draft_id: Mapped[int] = mapped_column(
        ForeignKey("release_draft.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(String(200))  # "user:EMAIL"
    requested_at: Mapped[datetime] = mapped_column(default=_now)
    # "approved", "rejected", or None while the request waits for a sender.
    decision: Mapped[str | None] = mapped_column(String(16))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column()
    comment: Mapped[str] = mapped_column(Text, default="")

    def __repr__(self) -> str:
        return f"<ReleaseApproval draft={self.draft_id} v{self.version} {self.decision}>"


class TrackedLink(Base):
    """A link of a campaign's email in one language, as the release had it: /l/ tokens name its
    id, and the redirect goes to `url` and nowhere else (mailer.engagement.links). Written once
    per (campaign, language) when the variant is compiled; never changed afterwards."""

    __tablename__ = "tracked_link"
    __table_args__ = (UniqueConstraint("campaign_id", "language", "position"), _NO_ID_REUSE)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(16))
    # 0, 1, 2...: the link's place among the variant's distinct URLs (part of its token's key).
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)

    def __repr__(self) -> str:
        where = f"campaign={self.campaign_id} {self.language}#{self.position}"
        return f"<TrackedLink {self.id} {where}>"


class Click(Base):
    """One request to /l/ (kind "click") or /o/ (kind "open"), written in batches by
    mailer.engagement.recorder. `contact_id` is NULL unless the list tracks people and the
    reader has not switched it off; `machine` (with its reason) keeps scanners apart."""

    __tablename__ = "click"
    __table_args__ = (
        Index("ix_click_campaign_link", "campaign_id", "link_id"),  # reports
        Index("ix_click_contact_campaign", "contact_id", "campaign_id"),  # erase, `clicked`
        Index("ix_click_at", "at"),  # the retention purge
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL for an open (it is of the message, not of a link).
    link_id: Mapped[int | None] = mapped_column(ForeignKey("tracked_link.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(16))
    # Erasing a contact leaves an anonymous count, never a person.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=_now)
    machine: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # "head", "agent", "network", "early", "sweep" (mailer.engagement.machines); "" for a human.
    machine_reason: Mapped[str] = mapped_column(String(40), default="", server_default=text("''"))
    kind: Mapped[str] = mapped_column(String(8), default="click", server_default=text("'click'"))

    def __repr__(self) -> str:
        return f"<Click {self.id} {self.kind} link={self.link_id} machine={self.machine}>"


class BounceSource(Base):
    """The report message behind a bounce row, as the bounce mailbox held it (cut at
    `bounce_raw_max_bytes`), so the console can show what a suppression rests on. A report about
    several recipients is kept once per bounce row. Deleted with its bounce, and by erase."""

    __tablename__ = "bounce_source"

    bounce_id: Mapped[int] = mapped_column(
        ForeignKey("bounce.id", ondelete="CASCADE"), primary_key=True
    )
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)

    def __repr__(self) -> str:
        return f"<BounceSource {self.bounce_id} {len(self.raw)} bytes>"


class CampaignFigures(Base):
    """A campaign's report figures read from its ledger (mailer/delivery/reports.py), kept while
    its rows stay as they were: `marker` is the campaign's status and status counts then."""

    __tablename__ = "campaign_figures"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True
    )
    marker: Mapped[str] = mapped_column(Text)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    made_at: Mapped[datetime] = mapped_column(default=_now)

    def __repr__(self) -> str:
        return f"<CampaignFigures {self.campaign_id}>"
