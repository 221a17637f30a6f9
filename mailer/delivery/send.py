"""The steps of `mailer send`, each a library call the CLI strings together."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.delivery.campaigns import get_campaign
from mailer.delivery.message import dkim_signer
from mailer.delivery.planning import Plan, plan_campaign, store_release
from mailer.delivery.transport import OutboxTransport, SmtpTransport, open_transport
from mailer.errors import MailerError, ReleaseError, SendError
from mailer.store.db import session_scope
from mailer.store.models import CampaignStatus, MailingList


@dataclass
class Loaded:
    """A release that passed its check, with the variants the check rendered for this
    audience (the send uses them instead of rendering and inlining again)."""

    release: Any
    rendered: dict[str, Any] = field(default_factory=dict)


def load_for_sending(path: str | Path, settings: Settings,
                     list_slugs: Sequence[str] = ()) -> Loaded:
    """Load a release and refuse it when `release check` finds errors.

    Only the variants this audience will receive are rendered (all of them when the audience
    is unknown), with the footer the campaign will carry: one list is named in it.
    """
    from mailer.releases.checks import audience_languages, check_release, variant_for
    from mailer.releases.source import load_release

    release = load_release(path, settings.default_language)
    languages = None
    list_name = None
    slugs = list(list_slugs) or list(release.lists)
    if slugs:
        with session_scope(settings) as s:
            try:
                languages = audience_languages(s, slugs, release.default_language)
                if len(set(slugs)) == 1:
                    from mailer.contacts.lists import get_list

                    list_name = get_list(s, slugs[0]).name
            except MailerError:
                languages = None  # an unknown list: the plan says so, by name
    wanted = None if languages is None else {
        variant_for(lang, release.languages, release.default_language) for lang in languages}
    rendered: dict[str, Any] = {}
    errors = [f.message for f in check_release(release, settings, audience_languages=languages,
                                               render_languages=wanted, list_name=list_name,
                                               rendered_out=rendered)
              if f.level == "error"]
    if errors:
        raise ReleaseError(f"{path}: `mailer release check` finds errors:\n  - "
                           + "\n  - ".join(errors))
    return Loaded(release, rendered)


def checked_transport(settings: Settings) -> SmtpTransport | OutboxTransport:
    """The configured transport, after proving it works (login, TLS) and DKIM is consistent."""
    transport = open_transport(settings)
    dkim_signer(settings, settings.from_address)
    transport.check()
    return transport


def audience_of(release: Any, list_slugs: Sequence[str]) -> list[str]:
    slugs = list(list_slugs) or list(release.lists)
    if not slugs:
        raise SendError("no audience: give --list SLUG (or `lists:` in the release)")
    return slugs


def _plan(session: Session, settings: Settings, release: Any, list_slugs: Sequence[str],
          tags: Sequence[str], *, smtputf8: bool, transport: str,
          not_before: datetime | None, not_after: datetime | None, rate: float | None,
          new_version: bool, created_by: str) -> Plan:
    stored = store_release(session, release.slug, release.title, release.default_language,
                           dict(release.sources), _front_matter(release), release.content_hash)
    expires = release.expires
    limit_after = min((t for t in (expires, not_after) if t is not None), default=None)
    return plan_campaign(
        session, settings, stored, list_slugs, tags, smtputf8=smtputf8,
        not_before=not_before or release.embargo, not_after=limit_after,
        rate_per_second=rate, allow_new_version=new_version, created_by=created_by,
        transport=transport,
    )


def plan(settings: Settings, release: Any, list_slugs: Sequence[str], tags: Sequence[str],
         *, smtputf8: bool, transport: str, not_before: datetime | None = None,
         not_after: datetime | None = None, rate: float | None = None,
         new_version: bool = False, created_by: str = "") -> Plan:
    """Find or create the campaign and freeze its audience (committed)."""
    embargo = release.embargo
    now = clock.now()
    if embargo is not None and now < embargo and (not_before is None or not_before < embargo):
        raise SendError(
            f"{release.slug} is under embargo until {embargo.isoformat()}: it cannot be sent "
            "before then (schedule it with --at, or test-send with --test ADDRESS)"
        )
    if not_before is not None and not_before <= now:
        raise SendError(f"--at {not_before.isoformat()} is in the past")
    with session_scope(settings) as s:
        p = _plan(s, settings, release, list_slugs, tags, smtputf8=smtputf8,
                  transport=transport, not_before=not_before, not_after=not_after, rate=rate,
                  new_version=new_version, created_by=created_by)
        c = p.campaign
        unstarted = c.started_at is None and c.status in (CampaignStatus.DRAFT,
                                                          CampaignStatus.SCHEDULED)
        if not p.created and not unstarted and (not_before or not_after or rate):
            raise SendError(f"campaign {c.id} has already started: --at, --not-after and "
                            "--rate apply only to a campaign that has not")
        if not p.created and unstarted:
            # An earlier plan that never went out (declined, interrupted): this command's
            # options win, so --at is never ignored.
            c.not_before = not_before or release.embargo
            if not_after is not None:
                c.not_after = not_after
            if rate is not None:
                c.rate_per_second = rate
            c.status = CampaignStatus.DRAFT
        if not_before is not None:
            # A worker starts it when due (see mailer.delivery.worker).
            c.status = CampaignStatus.SCHEDULED
        return p


def dry_run(settings: Settings, release: Any, list_slugs: Sequence[str], tags: Sequence[str],
            *, smtputf8: bool, transport: str, new_version: bool = False,
            rendered: dict[str, Any] | None = None) -> tuple[Plan, Any]:
    """Plan and build every message, then roll everything back: nothing is stored or sent.

    `rendered`: the variants the release check rendered (`Loaded.rendered`); the others are
    rendered the way a send renders them, when a recipient needs one."""
    from mailer.delivery.compiler import campaign_renderer
    from mailer.delivery.trial import dry_run as build_all
    from mailer.store.db import session_factory

    session = session_factory(settings)()
    try:
        p = _plan(session, settings, release, list_slugs, tags, smtputf8=smtputf8,
                  transport=transport, not_before=None, not_after=None, rate=None,
                  new_version=new_version, created_by="dry-run")
        names = dict(session.execute(select(MailingList.id, MailingList.name)).all())
        result = build_all(session, settings, p.campaign.id, rendered or {},
                           render=campaign_renderer(settings, p.campaign, names))
        return p, result
    finally:
        session.rollback()
        session.close()


def discard_draft(settings: Settings, campaign_id: int) -> None:
    """Forget a campaign planned a moment ago that the operator declined to send."""
    with session_scope(settings) as s:
        campaign = get_campaign(s, campaign_id)
        if campaign.started_at is None:
            s.delete(campaign)


def _front_matter(release: Any) -> dict[str, Any]:
    meta = release.variants[release.default_language].meta
    as_dict = getattr(meta, "as_dict", None)
    data: dict[str, Any] = as_dict() if callable(as_dict) else {}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
