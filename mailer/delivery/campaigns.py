"""Campaigns after planning: status, reports, the operator's controls (pause, cancel, resolve).

Over 400 lines on purpose: each control (pause, resume, cancel, resolve, retry) reads and
changes the same rows under the same rules; together they are checked against each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import (
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from mailer import clock
from mailer.csvsafe import write_csv
from mailer.engagement import report as engagement_report
from mailer.errors import InvalidInputError, NotFoundError, SendError
from mailer.private import open_private
from mailer.releases.embargo import stored_embargo
from mailer.store import audit
from mailer.store.models import (
    FINAL_DELIVERY_STATUSES,
    Campaign,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    MailingList,
)

# --- status and reports -----------------------------------------------------------------


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign {campaign_id} (see `mailer campaigns ls`)")
    return campaign


def status_counts(session: Session, campaign_id: int) -> dict[str, int]:
    counts = {s.value: 0 for s in DeliveryStatus}
    for status, n in session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    ):
        counts[DeliveryStatus(status).value] = n
    return counts


def is_complete(session: Session, campaign_id: int) -> bool:
    """Every row final (in_doubt is not: the operator must decide)."""
    open_rows = session.scalar(
        select(func.count()).where(
            Delivery.campaign_id == campaign_id,
            Delivery.status.not_in(list(FINAL_DELIVERY_STATUSES)),
        )
    )
    return not open_rows


def campaign_as_dict(session: Session, campaign: Campaign) -> dict[str, Any]:
    """The documented JSON shape of `campaigns show --json`."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    by_lang: dict[str, dict[str, int]] = {}
    for lang, status, n in session.execute(
        select(Delivery.language, Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign.id)
        .group_by(Delivery.language, Delivery.status)
    ):
        by_lang.setdefault(lang, {})[DeliveryStatus(status).value] = n
    replies = reply_counts(session, campaign.id)
    release = campaign.release
    data: dict[str, Any] = {
        "id": campaign.id,
        "release": release.slug,
        "title": release.title,
        "content_hash": release.content_hash,
        "status": campaign.status.value,
        # Why it paused itself, and the mail providers whose recipients wait (delivery/guards.py).
        "pause_reason": campaign.pause_reason,
        "provider_holds": _provider_holds(session, campaign.id),
        "lists": campaign.audience.get("lists", []),
        "tags": campaign.audience.get("tags", []),
        "segment": campaign.audience.get("segment"),
        "where": campaign.audience.get("where", []),
        "created_at": iso(campaign.created_at),
        "started_at": iso(campaign.started_at),
        "finished_at": iso(campaign.finished_at),
        "not_before": iso(campaign.not_before),
        "not_after": iso(campaign.not_after),
        "recipients": sum(status_counts(session, campaign.id).values()),
        "counts": status_counts(session, campaign.id),
        "by_language": by_lang,
        "excluded": campaign.plan.get("excluded", {}),
        "replies": replies,
        "bounces": _bounce_counts(session, campaign.id),
        "problems": _problems(session, campaign.id),
        **embargo_summary(session, campaign),
        # Clicks per link and language, humans and machines apart (mailer.engagement.report).
        "engagement": engagement_report.engagement(session, campaign.id),
    }
    return data


def reply_counts(session: Session, campaign_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The servers' replies to messages not simply sent, grouped by code and text, most first
    (a "250 queued as ..." reply is unique per message: grouping those says nothing)."""
    return [
        {"code": code, "reply": reply, "count": n}
        for code, reply, n in session.execute(
            select(Delivery.smtp_code, Delivery.smtp_reply, func.count())
            .where(
                Delivery.campaign_id == campaign_id,
                Delivery.smtp_reply.is_not(None),
                Delivery.status != DeliveryStatus.SENT,
            )
            .group_by(Delivery.smtp_code, Delivery.smtp_reply)
            .order_by(func.count().desc())
            .limit(limit)
        )
    ]


def embargo_summary(session: Session, campaign: Campaign) -> dict[str, Any]:
    """The release's embargo, and what of this campaign went out before it (to press lists,
    marked EMBARGOED): `before_embargo` is None when nothing was meant to or did."""
    until = stored_embargo(campaign.release.front_matter)
    if until is None:
        return {"embargo": None, "before_embargo": None}
    early = sent_before(session, campaign.id, until)
    planned = campaign.plan.get("before_embargo")
    if not early and not planned:
        return {"embargo": until.isoformat(), "before_embargo": None}
    return {
        "embargo": until.isoformat(),
        "before_embargo": {
            "lists": list((planned or {}).get("lists") or campaign.audience.get("lists", [])),
            "sent": early,
        },
    }


def sent_before(session: Session, campaign_id: int, until: datetime) -> int:
    """Messages of this campaign sent before `until` (the embargo)."""
    return (
        session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == DeliveryStatus.SENT,
                Delivery.sent_at < until,
            )
        )
        or 0
    )


def _problems(session: Session, campaign_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """Recipients not reached (failed, in doubt), with who they are: a press office calls."""
    rows = session.execute(
        select(
            Delivery.email,
            Delivery.status,
            Delivery.smtp_reply,
            Contact.name,
            Contact.organisation,
            Contact.beat,
        )
        .outerjoin(Contact, Contact.id == Delivery.contact_id)
        .where(
            Delivery.campaign_id == campaign_id,
            Delivery.status.in_([DeliveryStatus.FAILED, DeliveryStatus.IN_DOUBT]),
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    return [
        {
            "email": email,
            "status": DeliveryStatus(status).value,
            "reply": reply or "",
            "name": name or "",
            "outlet": outlet or "",
            "beat": beat_text or "",
        }
        for email, status, reply, name, outlet, beat_text in rows
    ]


def _provider_holds(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    from mailer.delivery.guards import hold_summaries  # noqa: PLC0415  # see _bounce_counts

    return hold_summaries(session, campaign_id)


def _bounce_counts(session: Session, campaign_id: int) -> dict[str, int]:
    # Lazy: bounces.policy loads the bounce parsers (~70 modules); only reports count bounces.
    from mailer.bounces.policy import bounce_counts  # noqa: PLC0415

    return bounce_counts(session, campaign_id)


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc())))


def write_report(session: Session, campaign_id: int, path: Path) -> int:
    """Per-recipient CSV (UTF-8 with BOM for Excel); returns the number of rows.

    Every cell is guarded against formula injection (mailer.csvsafe): an address like
    `=1+2@x` or an SMTP reply chosen by a remote server never runs as a formula."""
    try:
        with open_private(path) as fh:  # addresses: owner only, whatever the umask
            return write_report_to(session, campaign_id, fh)
    except OSError as err:
        raise InvalidInputError(f"cannot write {path}: {err.strerror}") from None


def write_report_to(session: Session, campaign_id: int, fh: IO[str]) -> int:
    """The CSV of `write_report` into an open text stream (the console's download); the
    caller writes the BOM (open_private's utf-8-sig does). Returns the number of rows."""
    campaign = get_campaign(session, campaign_id)
    until = stored_embargo(campaign.release.front_matter)
    slugs = dict(session.execute(select(MailingList.id, MailingList.slug)).all())
    # Per-person engagement: one row per clicker, looked up per recipient (empty cells where
    # none can exist: engagement_report.csv_cells).
    clicks = engagement_report.per_recipient(session, campaign_id)
    people_lists = engagement_report.people_lists(session)

    def rows() -> Iterator[list[Any]]:
        # name, outlet and beat come last: scripts reading the earlier columns keep working.
        yield [
            "email",
            "language",
            "list",
            "status",
            "attempts",
            "smtp_code",
            "smtp_reply",
            "sent_at",
            "updated_at",
            "message_id",
            "name",
            "outlet",
            "beat",
            "before_embargo",
            "first_click",
            "clicks",
        ]
        # Who the recipient is, for the press office reading the report (empty once erased).
        for d, name, outlet, beat_text, opted_out in session.execute(
            select(
                Delivery, Contact.name, Contact.organisation, Contact.beat, Contact.track_people_off
            )
            .outerjoin(Contact, Contact.id == Delivery.contact_id)
            .where(Delivery.campaign_id == campaign_id)
            .order_by(Delivery.id)
            .execution_options(yield_per=2000)
        ):
            yield [
                d.email,
                d.language,
                slugs.get(d.list_id or 0, ""),
                d.status.value,
                d.attempts,
                d.smtp_code or "",
                d.smtp_reply or "",
                d.sent_at.isoformat() if d.sent_at else "",
                d.updated_at.isoformat(),
                d.message_id,
                name or "",
                outlet or "",
                beat_text or "",
                # "yes": this reporter got it before the embargo, marked EMBARGOED.
                "yes"
                if until and d.status == DeliveryStatus.SENT and d.sent_at and d.sent_at < until
                else "",
                # This recipient's first human click and how many (machines never count).
                *engagement_report.csv_cells(
                    clicks,
                    people_lists,
                    contact_id=d.contact_id,
                    list_id=d.list_id,
                    opted_out=opted_out,
                ),
            ]

    return write_csv(fh, rows()) - 1


# --- the operator's controls ------------------------------------------------------------


def pause(session: Session, campaign_id: int, *, actor: str = "") -> Campaign:
    c = get_campaign(session, campaign_id)
    if c.status not in (CampaignStatus.SENDING, CampaignStatus.SCHEDULED, CampaignStatus.DRAFT):
        raise SendError(
            f"campaign {c.id} is {c.status.value}; only a sending or scheduled "
            "campaign can be paused"
        )
    c.status = CampaignStatus.PAUSED
    audit.record(session, "campaign.pause", campaign_id=c.id, actor=actor)
    return c


def cancel(session: Session, campaign_id: int, *, actor: str = "") -> int:
    """Cancel what is not sent yet; returns how many rows were cancelled."""
    c = get_campaign(session, campaign_id)
    if c.status in (CampaignStatus.DONE, CampaignStatus.CANCELLED):
        raise SendError(f"campaign {c.id} is already {c.status.value}")
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.campaign_id == c.id,
            Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
        )
        .values(
            status=DeliveryStatus.CANCELLED,
            smtp_reply="cancelled by the operator",
            updated_at=clock.now(),
        )
    )
    c.status = CampaignStatus.CANCELLED
    c.finished_at = clock.now()
    audit.record(session, "campaign.cancel", campaign_id=c.id, actor=actor)
    # execute() of an UPDATE/DELETE returns a CursorResult, typed as Result (no rowcount).
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def retry_now(session: Session, campaign_id: int) -> int:
    """Make every deferred row due now; returns how many."""
    c = get_campaign(session, campaign_id)
    result = session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == c.id, Delivery.status == DeliveryStatus.DEFERRED)
        .values(next_attempt_at=clock.now())
    )
    # execute() of an UPDATE/DELETE returns a CursorResult, typed as Result (no rowcount).
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def resolve_in_doubt(session: Session, campaign_id: int, action: str, *, actor: str = "") -> int:
    """The operator's decision on in-doubt rows: resend them (same Message-ID) or mark sent."""
    c = get_campaign(session, campaign_id)
    if c.status == CampaignStatus.CANCELLED:
        raise SendError(f"campaign {c.id} was cancelled; its in-doubt messages stay as they are")
    now = clock.now()
    if action == "resend":
        values: dict[str, Any] = {
            "status": DeliveryStatus.PENDING,
            "claimed_by": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
    elif action == "mark-sent":
        values = {
            "status": DeliveryStatus.SENT,
            "sent_at": now,
            "claimed_by": None,
            "lease_expires_at": None,
            "updated_at": now,
            "smtp_reply": "marked sent by the operator (was in doubt)",
        }
    else:
        raise InvalidInputError(f"--in-doubt: expected resend or mark-sent, got {action!r}")
    result = session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == c.id, Delivery.status == DeliveryStatus.IN_DOUBT)
        .values(**values)
    )
    # execute() of an UPDATE/DELETE returns a CursorResult, typed as Result (no rowcount).
    n = int(result.rowcount or 0)  # type: ignore[attr-defined]
    audit.record(session, "campaign.resolve", campaign_id=c.id, action=action, rows=n, actor=actor)
    if n and c.status == CampaignStatus.DONE and action == "resend":
        c.status = CampaignStatus.SENDING
    if is_complete(session, c.id) and c.status == CampaignStatus.SENDING:
        c.status = CampaignStatus.DONE
        c.finished_at = now
    return n


def resume(session: Session, campaign_id: int, *, actor: str = "") -> Campaign:
    """Make a paused campaign sendable again (the sender does the rest)."""
    c = get_campaign(session, campaign_id)
    if c.status == CampaignStatus.CANCELLED:
        raise SendError(f"campaign {c.id} was cancelled; it cannot be resumed")
    if c.status == CampaignStatus.DONE:
        raise SendError(f"campaign {c.id} is done: every recipient's fate is recorded")
    if c.status == CampaignStatus.PAUSED:
        from mailer.delivery.guards import acknowledge  # noqa: PLC0415  # see _bounce_counts

        reason = c.pause_reason
        acknowledge(session, c)  # a pause of its own: the reason goes, complaints acknowledged
        c.status = CampaignStatus.SENDING
        extra: dict[str, Any] = {"cleared": reason} if reason else {}
        audit.record(session, "campaign.resume", campaign_id=c.id, actor=actor, **extra)
    return c


def due_count(session: Session, campaign_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign_id,
                Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.DEFERRED]),
            )
        )
        or 0
    )
