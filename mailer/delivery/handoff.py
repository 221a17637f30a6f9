"""Sends started from the console: the plan shown, then planned and handed to a worker.

The console never sends inside a web request. It shows the plan `mailer send --dry-run` would
print (mailer.delivery.send: load_for_sending, build_dry_run, headline: nothing here re-does
them), then plans the campaign exactly as `mailer send --at` does (send.plan) and leaves it
`scheduled`: a worker (the one inside `mailer serve`, or `mailer worker` processes) starts it
when it is due, which for "send now" is at once (or at the embargo, for readers who may not
have it before). Every rule of a CLI send holds: `release check` errors refuse it, the transport
is proven, placeholder settings stop it, and before the embargo only press lists get it, and
only when the sender said so (`before_embargo`).

Also the one parser of the console's date, time and zone fields (`moment`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from mailer import clock
from mailer.config import Settings
from mailer.delivery import send
from mailer.delivery.planning import Plan
from mailer.errors import InvalidInputError, SendError
from mailer.store import audit
from mailer.store.db import session_scope
from mailer.store.models import Campaign, CampaignStatus

if TYPE_CHECKING:
    from mailer.releases.checks import ReaderVariant
    from mailer.releases.source import Release


@dataclass
class PlanView:
    """Everything the plan page shows, from one dry run (nothing stored)."""

    release: Release
    plan: Plan
    messages: int
    transport: str
    headline: list[tuple[str, str]]
    readers: list[ReaderVariant]
    lists: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def recipients(self) -> int:
        """Messages a send would carry out now (a resumed campaign: what is left)."""
        return self.messages


def preview(
    settings: Settings, path: str | Path, lists: Sequence[str] = (), *, at: datetime | None = None
) -> PlanView:
    """The plan of a send of the release at `path` to `lists` (default: its `lists`), as
    `mailer send --dry-run` makes it: audience frozen and every message built, then rolled back.
    Refused (ReleaseError, SendError, TransportError...) for what a send would refuse."""
    # Lazy: releases.checks loads premailer and lxml (~0.4 s).
    from mailer.releases.checks import reader_variants  # noqa: PLC0415

    checked = send.load_for_sending(path, settings, list(lists))
    release = checked.release
    slugs = send.audience_of(release, list(lists))
    transport = send.checked_transport(settings)
    described = transport.describe()
    p, built = send.build_dry_run(
        settings,
        release,
        slugs,
        (),
        smtputf8=transport.supports_smtputf8(),
        transport=described,
        rendered=checked.rendered,
        at=at,
    )
    readers = reader_variants(release, checked.audience) if checked.audience else []
    return PlanView(
        release,
        p,
        built.messages,
        described,
        send.headline(settings, release),
        readers,
        slugs,
        [f.message for f in checked.findings if f.level == "warning"],
    )


def hand_off(
    settings: Settings,
    path: str | Path,
    lists: Sequence[str] = (),
    *,
    at: datetime | None = None,
    before_embargo: bool = False,
    actor: str,
    confirm: Callable[[Plan], str] | None = None,
) -> Plan:
    """Plan the campaign (committed) and leave it to a worker: at `at`, or now.

    Now, before the release's embargo: press lists only, and only with `before_embargo` (the
    sender agreed to each message being marked EMBARGOED); other lists wait for the lift, as
    `mailer send` makes them. A campaign already sending, paused or done is refused (the
    campaign's own page resumes it). `confirm(plan)`: what stops the send once its audience is
    known ("" lets it go; a reason refuses it and forgets the campaign this call planned)."""
    checked = send.load_for_sending(path, settings, list(lists))
    release = checked.release
    slugs = send.audience_of(release, list(lists))
    transport = send.checked_transport(settings)
    p = send.plan(
        settings,
        release,
        slugs,
        (),
        smtputf8=transport.supports_smtputf8(),
        transport=transport.describe(),
        not_before=at,
        before_embargo=before_embargo,
        created_by=actor,
    )
    c = p.campaign
    problem = ""
    if p.early is not None and at is None and not before_embargo:
        problem = (
            f"embargoed until {p.early.until_text}: sending now gives it to "
            f"{', '.join(p.early.lists)} before the embargo (each message marked EMBARGOED); "
            "tick the box that says so, or schedule it for the lift"
        )
    elif c.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        problem = (
            f"campaign {c.id} to this audience is already {c.status.value}: "
            "follow it on its own page (or send the new text as a new campaign with the CLI's "
            "--new-version)"
        )
    elif not p.due:
        problem = f"campaign {c.id}: nothing left to send"
    elif confirm is not None:
        problem = confirm(p)
    if problem:
        if p.created:
            send.discard_draft(settings, c.id)
        raise SendError(problem)
    with session_scope(settings) as s:
        # The same state `send --at` leaves: a worker starts it once not_before has passed
        # (None, or the embargo for readers who may not have it earlier).
        campaign = s.get(Campaign, c.id)
        if campaign is None:  # cancelled and deleted in between: nothing to hand over
            raise SendError(f"campaign {c.id} is gone")
        campaign.status = c.status = CampaignStatus.SCHEDULED
        audit.record(
            s,
            "campaign.handed_off",
            campaign_id=c.id,
            actor=actor,
            release=p.release_slug,
            at=at.isoformat() if at else "now",
        )
        if p.early is not None:
            # As `mailer send` records it: who gave the press the release before its embargo.
            audit.record(
                s,
                "campaign.before_embargo",
                campaign_id=c.id,
                actor=actor,
                release=p.release_slug,
                until=p.early.until.isoformat(),
                lists=p.early.lists,
            )
    return p


# --- the date, time and zone fields -----------------------------------------------------------


def zones() -> list[str]:
    """Every IANA zone name, sorted (the picker's choices)."""
    return sorted(z for z in available_timezones() if "/" in z or z == "UTC")


def moment(day: str, at: str, zone: str, *, future: bool = True) -> datetime:
    """The moment a date (YYYY-MM-DD), a time (HH:MM) and an IANA zone name mean, in UTC.

    Each bad value is named with its field; a local time that does not exist in the zone (the
    hour skipped when clocks go forward) is refused rather than moved."""
    try:
        d = date.fromisoformat(day.strip())
    except ValueError:
        raise InvalidInputError(f"date: not a date: {day[:40]!r} (e.g. 2026-12-01)") from None
    try:
        t = time.fromisoformat(at.strip())
    except ValueError:
        raise InvalidInputError(f"time: not a time: {at[:40]!r} (e.g. 09:00)") from None
    name = zone.strip()
    try:
        tz = ZoneInfo(name) if name and ".." not in name and not name.startswith("/") else None
    except (ZoneInfoNotFoundError, ValueError):
        tz = None
    if tz is None:
        raise InvalidInputError(
            f"time zone: not a time zone: {zone[:60]!r} (e.g. Asia/Seoul or America/New_York)"
        )
    local = datetime.combine(d, t.replace(tzinfo=None), tzinfo=tz)
    utc = local.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise InvalidInputError(
            f"time: {d.isoformat()} {t.strftime('%H:%M')} does not exist in {name} "
            "(the clocks skip it): choose another time"
        )
    if future and utc <= clock.now():
        raise InvalidInputError(
            f"date: {d.isoformat()} {t.strftime('%H:%M')} {name} is in the past"
        )
    return utc
