"""The figures of one campaign for the console: live progress, and the report after it.

`progress` is what the progress page shows every few seconds: counts by status per language,
the rate over the last minutes and the time left at that rate, in ONE grouped query (the
recent sends are summed in the same scan, so a 100,000-row campaign costs one pass).

`report` adds the delivery timeline (sent per time bucket, grouped in SQL by minute and merged
into wider buckets here), bounces by kind and reason, outcomes per outlet and per beat (the
contact's `organisation` and `beat`) and the SMTP replies grouped by code and text: a handful
of grouped queries, never a row-by-row walk; the ledger's figures of a campaign not sending are
kept in the database until its rows change (see `report`), so its report renders in well under
200 ms (bench/bench_console_report.py).

Bounces across campaigns are in mailer.delivery.report_bounces. Status counts, the CSV, pause,
cancel and resolve stay in mailer.delivery.campaigns; this module only reads.

Over 400 lines on purpose: the figures, their grouped queries and the kept copy's
(de)serialisation must agree field by field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, func, select, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces.reasons import (
    BLOCK,
    COMPLAINT,
    HARD,
    SOFT,
)
from mailer.delivery import campaigns, report_bounces
from mailer.store.models import (
    Bounce,
    Campaign,
    CampaignFigures,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    Release,
)

# The rate is measured over the sends of the last few minutes: long enough to smooth batches
# and connection set-up, short enough to follow a throttle or a slow server.
RATE_WINDOW = timedelta(minutes=5)
WAITING = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.DEFERRED)
FINAL_CAMPAIGN = (CampaignStatus.DONE, CampaignStatus.CANCELLED)
# Bucket widths of the timeline, in minutes: the narrowest that gives at most MAX_BUCKETS bars.
BUCKET_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 10080)
MAX_BUCKETS = 60
TOP_GROUPS = 25  # outlets and beats listed by name; the rest are summed as one row
TOP_REPLIES = 20
# Bounce kinds, every one listed in a report (mailer.delivery.report_bounces, which reads
# bounces across campaigns, keeps the tuple).
BOUNCE_KINDS = report_bounces.BOUNCE_KINDS


# --- progress ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class LanguageCounts:
    language: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def waiting(self) -> int:
        return sum(self.counts[s.value] for s in WAITING)


@dataclass(frozen=True)
class Progress:
    campaign_id: int
    status: str
    counts: dict[str, int]  # every DeliveryStatus value, zero included
    languages: list[LanguageCounts]
    rate_per_second: float | None  # None: nothing sent in the last minutes, or not sending
    seconds_left: float | None  # None: unknown (no rate) or nothing left to send
    at: datetime

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def waiting(self) -> int:
        return sum(self.counts[s.value] for s in WAITING)

    @property
    def finished(self) -> int:
        """Rows whose fate is known (in doubt counts: the operator decides it)."""
        return self.total - self.waiting

    @property
    def final(self) -> bool:
        return self.status in {s.value for s in FINAL_CAMPAIGN}

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "status": self.status,
            "counts": self.counts,
            "by_language": {lc.language: lc.counts for lc in self.languages},
            "rate_per_second": self.rate_per_second,
            "seconds_left": self.seconds_left,
            "at": self.at.isoformat(),
        }


def _empty_counts() -> dict[str, int]:
    return {s.value: 0 for s in DeliveryStatus}


def progress(session: Session, campaign_id: int) -> Progress:
    """Counts by status per language, and the rate over the last RATE_WINDOW: one query."""
    campaign = campaigns.get_campaign(session, campaign_id)
    now = clock.now()
    since = now - RATE_WINDOW
    recent = and_(Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= since)
    # Grouped by status alone, which the claim index (campaign_id, status, id) already orders,
    # with one conditional count per language of the release: SQLite then never sorts the
    # campaign's rows (grouping by language too sorts them all: three times the time).
    languages = sorted(campaign.release.variants or {}) or [campaign.release.default_language]
    by_lang: dict[str, dict[str, int]] = {lang: _empty_counts() for lang in languages}
    counts = _empty_counts()
    recent_sent, first_recent, unknown = 0, None, False
    for status, n, recent_n, first, *per_language in session.execute(
        select(
            Delivery.status,
            func.count(),
            func.sum(case((recent, 1), else_=0)),
            func.min(case((recent, Delivery.sent_at))),
            *(func.sum(case((Delivery.language == lang, 1), else_=0)) for lang in languages),
        )
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    ):
        value = DeliveryStatus(status).value
        counts[value] += n
        for lang, k in zip(languages, per_language, strict=True):
            by_lang[lang][value] += int(k or 0)
        unknown = unknown or sum(int(k or 0) for k in per_language) != n
        recent_sent += int(recent_n or 0)
        if first is not None:
            first = _aware(first)
            first_recent = first if first_recent is None else min(first_recent, first)
    if unknown:
        # Rows in a language the release has no variant for (not written by planning): the
        # exact, slower grouping rather than a figure that does not add up.
        by_lang = {}
        for language, status, n in session.execute(
            select(Delivery.language, Delivery.status, func.count())
            .where(Delivery.campaign_id == campaign_id)
            .group_by(Delivery.language, Delivery.status)
        ):
            by_lang.setdefault(language, _empty_counts())[DeliveryStatus(status).value] = n
    by_lang = {lang: c for lang, c in by_lang.items() if any(c.values())}
    rate = None
    if campaign.status == CampaignStatus.SENDING and recent_sent and first_recent is not None:
        # Measured from the start of the window, or of the run when it began inside it.
        start = max(since, _aware(campaign.started_at) if campaign.started_at else first_recent)
        start = min(start, first_recent)
        rate = recent_sent / max((now - start).total_seconds(), 1.0)
    waiting = sum(counts[s.value] for s in WAITING)
    left = waiting / rate if rate and waiting else None
    per_language = [
        LanguageCounts(lang, c)
        for lang, c in sorted(by_lang.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    ]
    return Progress(campaign.id, campaign.status.value, counts, per_language, rate, left, now)


def _aware(value: datetime) -> datetime:
    # The UTC type hands back aware values; a bare aggregate (min over a CASE) may not.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# --- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    start: datetime
    sent: int


@dataclass(frozen=True)
class Timeline:
    buckets: list[Bucket]
    minutes: int  # the width of one bucket

    @property
    def total(self) -> int:
        return sum(b.sent for b in self.buckets)

    @property
    def peak(self) -> int:
        return max((b.sent for b in self.buckets), default=0)


@dataclass
class AudienceGroup:
    """Outcomes of the recipients of one outlet (or beat); name "" is "none given"."""

    name: str
    counts: dict[str, int] = field(default_factory=_empty_counts)
    bounces: dict[str, int] = field(default_factory=dict)
    others: int = 0  # on the summed row: how many names it stands for

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def bounced(self) -> int:
        return sum(self.bounces.get(k, 0) for k in (HARD, SOFT, BLOCK))

    @property
    def complaints(self) -> int:
        return self.bounces.get(COMPLAINT, 0)


@dataclass(frozen=True)
class BounceReason:
    kind: str
    status: str  # the enhanced status code ("" when the report gave none)
    count: int


@dataclass(frozen=True)
class ReplyGroup:
    code: int | None
    reply: str
    count: int


@dataclass(frozen=True)
class Report:
    campaign: Campaign
    progress: Progress
    timeline: Timeline
    bounce_kinds: dict[str, int]
    bounce_reasons: list[BounceReason]
    outlets: list[AudienceGroup]
    beats: list[AudienceGroup]
    replies: list[ReplyGroup]


def report(session: Session, campaign_id: int) -> Report:
    """Everything the report page shows: the ledger's figures (progress, timeline, outcomes per
    outlet and beat, replies: scans of all the campaign's rows, about half a second for
    100,000) and the bounces (a few rows, always read: they arrive after the sending).

    The ledger of a campaign that is not sending (finished, cancelled, paused, scheduled)
    changes only when someone acts on it (resolving in-doubt rows, a retry, a resume), and
    every such change moves rows between statuses. So its figures are kept in the database
    (campaign_figures) under its status and status counts, which an index alone answers, and
    read again only when those differ; the sender keeps them when a campaign finishes
    (`keep`), so even the first report after a send reads no ledger row. A campaign still
    sending is read afresh each time (its live page polls the cheaper `progress`)."""
    campaign = campaigns.get_campaign(session, campaign_id)
    if campaign.status == CampaignStatus.SENDING:
        ledger = _ledger_figures(session, campaign_id)
    else:
        ledger = keep(session, campaign_id)
    outlets = {g.name: _copy_group(g) for g in ledger.outlets}
    beats = {g.name: _copy_group(g) for g in ledger.beats}
    _add_bounces(session, campaign_id, outlets, beats)
    return Report(
        campaign=campaign,
        progress=ledger.progress,
        timeline=ledger.timeline,
        bounce_kinds=_bounce_kinds(session, campaign_id),
        bounce_reasons=_bounce_reasons(session, campaign_id),
        outlets=_top(outlets),
        beats=_top(beats),
        replies=ledger.replies,
    )


def keep(session: Session, campaign_id: int) -> _LedgerFigures:
    """The campaign's ledger figures: the kept ones while its rows are as they were, else read
    and kept (in the caller's transaction; when two keep at once, the first row stays: both
    hold the same figures)."""
    campaign = campaigns.get_campaign(session, campaign_id)
    marker = json.dumps(
        [
            campaign.status.value,
            campaign.finished_at.isoformat() if campaign.finished_at else None,
            sorted(campaigns.status_counts(session, campaign_id).items()),
        ]
    )
    row = session.get(CampaignFigures, campaign_id)
    if row is not None and row.marker == marker:
        return _LedgerFigures.from_json(row.figures)
    figures = _ledger_figures(session, campaign_id)
    try:
        with session.begin_nested():
            if row is None:
                session.add(
                    CampaignFigures(
                        campaign_id=campaign_id, marker=marker, figures=figures.as_json()
                    )
                )
            else:
                row.marker, row.figures, row.made_at = marker, figures.as_json(), clock.now()
    except IntegrityError:
        pass
    return figures


def _copy_group(group: AudienceGroup) -> AudienceGroup:
    # Kept groups are never changed: bounces are added to copies.
    return AudienceGroup(group.name, dict(group.counts), dict(group.bounces), group.others)


@dataclass(frozen=True)
class _LedgerFigures:
    """The part of a report read from the ledger's rows (see `report`)."""

    progress: Progress
    timeline: Timeline
    outlets: list[AudienceGroup]
    beats: list[AudienceGroup]
    replies: list[ReplyGroup]

    def as_json(self) -> dict[str, Any]:
        p = self.progress

        def groups(items: list[AudienceGroup]) -> list[Any]:
            return [[g.name, g.counts, g.bounces, g.others] for g in items]

        return {
            "progress": {
                "campaign": p.campaign_id,
                "status": p.status,
                "counts": p.counts,
                "languages": [[lc.language, lc.counts] for lc in p.languages],
                "rate": p.rate_per_second,
                "left": p.seconds_left,
                "at": p.at.isoformat(),
            },
            "timeline": {
                "minutes": self.timeline.minutes,
                "buckets": [[b.start.isoformat(), b.sent] for b in self.timeline.buckets],
            },
            "outlets": groups(self.outlets),
            "beats": groups(self.beats),
            "replies": [[r.code, r.reply, r.count] for r in self.replies],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _LedgerFigures:
        p = data["progress"]

        def groups(items: list[Any]) -> list[AudienceGroup]:
            return [AudienceGroup(n, dict(c), dict(b), o) for n, c, b, o in items]

        return cls(
            progress=Progress(
                p["campaign"],
                p["status"],
                dict(p["counts"]),
                [LanguageCounts(lang, dict(c)) for lang, c in p["languages"]],
                p["rate"],
                p["left"],
                datetime.fromisoformat(p["at"]),
            ),
            timeline=Timeline(
                [Bucket(datetime.fromisoformat(t), n) for t, n in data["timeline"]["buckets"]],
                data["timeline"]["minutes"],
            ),
            outlets=groups(data["outlets"]),
            beats=groups(data["beats"]),
            replies=[ReplyGroup(c, r, n) for c, r, n in data["replies"]],
        )


def _ledger_figures(session: Session, campaign_id: int) -> _LedgerFigures:
    outlets, beats = _audience_counts(session, campaign_id)
    return _LedgerFigures(
        progress=progress(session, campaign_id),
        timeline=timeline(session, campaign_id),
        outlets=list(outlets.values()),
        beats=list(beats.values()),
        replies=[
            ReplyGroup(r["code"], r["reply"], r["count"])
            for r in campaigns.reply_counts(session, campaign_id, TOP_REPLIES)
        ],
    )


def _minute(session: Session) -> ColumnElement[str]:
    """sent_at as "YYYY-MM-DD HH:MM" (UTC) in SQL: the same text on both databases."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Delivery.sent_at), "YYYY-MM-DD HH24:MI")
    # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" (UTCDateTime): the first 16 characters are the
    # minute, and cutting them is a fifth of the cost of strftime() parsing every value.
    return func.substr(type_coerce(Delivery.sent_at, String), 1, 16)


def timeline(session: Session, campaign_id: int) -> Timeline:
    """Messages sent per time bucket: grouped per minute in SQL (a few hundred rows for a large
    campaign), merged here into the narrowest width that gives at most MAX_BUCKETS bars, with
    the empty buckets between the first send and the last filled in."""
    minute = _minute(session)
    per_minute: dict[datetime, int] = {}
    for stamp, n in session.execute(
        select(minute, func.count())
        .where(
            Delivery.campaign_id == campaign_id,
            Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at.is_not(None),
        )
        .group_by(minute)
    ):
        if stamp:
            per_minute[datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)] = n
    if not per_minute:
        return Timeline([], 1)
    first, last = min(per_minute), max(per_minute)
    span = int((last - first).total_seconds() // 60) + 1
    width = next((w for w in BUCKET_MINUTES if -(-span // w) <= MAX_BUCKETS), BUCKET_MINUTES[-1])
    # Buckets start on a multiple of their width (10:00, 10:05, ...), as a reader expects.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = epoch + timedelta(minutes=int((first - epoch).total_seconds() // 60) // width * width)
    counts: dict[int, int] = {}
    for moment, n in per_minute.items():
        k = int((moment - start).total_seconds() // 60) // width
        counts[k] = counts.get(k, 0) + n
    top = max(counts)
    buckets = [
        Bucket(start + timedelta(minutes=k * width), counts.get(k, 0)) for k in range(top + 1)
    ]
    return Timeline(buckets, width)


def _bounce_kinds(session: Session, campaign_id: int) -> dict[str, int]:
    counts = dict.fromkeys(BOUNCE_KINDS, 0)
    for kind, n in session.execute(
        select(Bounce.kind, func.count())
        .where(Bounce.campaign_id == campaign_id)
        .group_by(Bounce.kind)
    ):
        counts[kind] = n
    return counts


def _bounce_reasons(session: Session, campaign_id: int) -> list[BounceReason]:
    rows = session.execute(
        select(Bounce.kind, Bounce.status_code, func.count())
        .where(Bounce.campaign_id == campaign_id)
        .group_by(Bounce.kind, Bounce.status_code)
    )
    found = [BounceReason(kind, code or "", n) for kind, code, n in rows]
    return sorted(found, key=lambda r: (-r.count, r.kind, r.status))


def _audience_counts(
    session: Session, campaign_id: int
) -> tuple[dict[str, AudienceGroup], dict[str, AudienceGroup]]:
    """Outcomes per outlet and per beat: one scan grouped by (outlet, beat) with a conditional
    count per status (fewer groups than status in the grouping), summed both ways here."""
    org = func.coalesce(Contact.organisation, "")
    beat = func.coalesce(Contact.beat, "")
    outlets: dict[str, AudienceGroup] = {}
    beats: dict[str, AudienceGroup] = {}
    statuses = list(DeliveryStatus)
    for outlet_name, beat_name, *per_status in session.execute(
        select(
            org,
            beat,
            *(func.sum(case((Delivery.status == s, 1), else_=0)) for s in statuses),
        )
        .select_from(Delivery)
        .outerjoin(Contact, Contact.id == Delivery.contact_id)
        .where(Delivery.campaign_id == campaign_id)
        .group_by(org, beat)
    ):
        for table, name in ((outlets, outlet_name), (beats, beat_name)):
            group = table.setdefault(name, AudienceGroup(name))
            for s, n in zip(statuses, per_status, strict=True):
                group.counts[s.value] += int(n or 0)
    return outlets, beats


def _add_bounces(
    session: Session,
    campaign_id: int,
    outlets: dict[str, AudienceGroup],
    beats: dict[str, AudienceGroup],
) -> None:
    """Bounces per outlet and beat, from the (few) bounce rows of the campaign."""
    org = func.coalesce(Contact.organisation, "")
    beat = func.coalesce(Contact.beat, "")
    for outlet_name, beat_name, kind, n in session.execute(
        select(org, beat, Bounce.kind, func.count())
        .select_from(Bounce)
        .join(Delivery, Delivery.id == Bounce.delivery_id)
        .outerjoin(Contact, Contact.id == Delivery.contact_id)
        .where(Bounce.campaign_id == campaign_id)
        .group_by(org, beat, Bounce.kind)
    ):
        for table, name in ((outlets, outlet_name), (beats, beat_name)):
            group = table.setdefault(name, AudienceGroup(name))
            group.bounces[kind] = group.bounces.get(kind, 0) + n


def _top(groups: dict[str, AudienceGroup]) -> list[AudienceGroup]:
    """The TOP_GROUPS largest by recipients (named ones first), the rest summed as one row."""
    ranked = sorted(groups.values(), key=lambda g: (g.name == "", -g.total, g.name))
    if len(ranked) <= TOP_GROUPS + 1:
        return ranked
    shown, rest = ranked[:TOP_GROUPS], ranked[TOP_GROUPS:]
    other = AudienceGroup("", others=len(rest))
    for g in rest:
        for k, v in g.counts.items():
            other.counts[k] += v
        for k, v in g.bounces.items():
            other.bounces[k] = other.bounces.get(k, 0) + v
    return [*shown, other]


# --- campaigns list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignRow:
    campaign: Campaign
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def campaign_rows(session: Session, limit: int = 200) -> list[CampaignRow]:
    """The newest campaigns with their counts by status (one grouped query for all of them)."""
    found = list(
        session.scalars(select(Campaign).join(Release).order_by(Campaign.id.desc()).limit(limit))
    )
    counts: dict[int, dict[str, int]] = {c.id: _empty_counts() for c in found}
    if found:
        for cid, status, n in session.execute(
            select(Delivery.campaign_id, Delivery.status, func.count())
            .where(Delivery.campaign_id.in_(list(counts)))
            .group_by(Delivery.campaign_id, Delivery.status)
        ):
            counts[cid][DeliveryStatus(status).value] = n
    return [CampaignRow(c, counts[c.id]) for c in found]
