"""Sending a release: the one entry point, `send_release`, and the steps it is made of.

`mailer send`, `mailer demo` and (later) the web console call send_release; `campaigns resume`
calls resume_campaign, the same last step for a campaign planned earlier. Callers differ only in
how they ask for confirmation (a y/N prompt, a page) and show progress: both are callbacks.

The steps, in order: load the release and refuse it when `release check` finds errors (rendering
only the variants this audience reads); test sends stop there; prove the transport works; plan
(find or create the campaign, freeze its audience) or, for a dry run, plan and build every
message inside a transaction that is rolled back; confirm; deliver.

Over 400 lines on purpose: it is the one way in for every caller (CLI, demo, resume, console),
so each step and its order is visible in one module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings, refuse_placeholders
from mailer.contacts.lists import get_list
from mailer.contacts.segments import resolve
from mailer.delivery import campaigns
from mailer.delivery.campaigns import get_campaign
from mailer.delivery.compiler import Compiler, campaign_renderer
from mailer.delivery.dkim import dkim_signer
from mailer.delivery.message import Recipient
from mailer.delivery.planning import (
    EarlySend,
    Plan,
    audience_languages,
    embargo_rule,
    plan_campaign,
    store_release,
)
from mailer.delivery.testsend import send_test
from mailer.delivery.transport import OutboxTransport, SmtpTransport, open_transport
from mailer.engagement.links import LinkRegistry
from mailer.errors import NotFoundError, ReleaseError, SendError
from mailer.localtext import in_language
from mailer.media import access as media_access
from mailer.media import store as media_store
from mailer.media.refs import media_json, with_media
from mailer.media.scan import scan_release
from mailer.releases import embargo as embargo_words
from mailer.releases.embargo import is_ahead
from mailer.releases.languages import choose
from mailer.releases.source import load_release
from mailer.store import audit
from mailer.store.db import session_factory, session_scope
from mailer.store.models import CampaignStatus, Contact, Delivery, DeliveryStatus, MailingList

if TYPE_CHECKING:
    # Rendering and checking are imported when a release is loaded, not when the CLI starts.
    from mailer.delivery.progress import Progress, RunResult
    from mailer.delivery.testsend import TestResult
    from mailer.releases.checks import Finding
    from mailer.releases.source import Release

# Given the number of messages due, the callback the engine calls with each Progress (the CLI
# passes its ProgressBar class: ProgressBar(due) is such a callback).
ProgressFactory = Callable[[int], Callable[["Progress"], None]]
SendStatus = Literal["tested", "dry-run", "scheduled", "nothing-left", "declined", "sent"]


@dataclass
class Checked:
    """A release after its check: the findings, its audience's languages (None when unknown)
    and the variants the check rendered (a send uses them instead of rendering again)."""

    release: Release
    findings: list[Finding]
    audience: dict[str, int] | None
    rendered: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DryRun:
    """Every message of a planned campaign, built and not sent."""

    messages: int
    size: int
    by_language: dict[str, int]
    sample: bytes | None


@dataclass
class SendOutcome:
    """What send_release did. `status` says which of the other fields are set:

    tested: `tests`; dry-run: `plan` and `built`; scheduled, nothing-left, declined: `plan`;
    sent: `plan` and `result` (the run may have stopped early: see result.stopped_by).
    """

    status: SendStatus
    release: Release
    transport: str = ""
    plan: Plan | None = None
    tests: list[TestResult] = field(default_factory=list)
    built: DryRun | None = None
    result: RunResult | None = None


def send_release(
    settings: Settings,
    path: str | Path,
    audience: Sequence[str] = (),
    *,
    confirm: Callable[[Plan], bool],
    tags: Sequence[str] = (),
    on_plan: Callable[[Plan, str], None] | None = None,
    on_progress: ProgressFactory | None = None,
    dry_run: bool = False,
    tests: Sequence[str] = (),
    at: datetime | None = None,
    not_after: datetime | None = None,
    rate: float | None = None,
    limit: int | None = None,
    new_version: bool = False,
    created_by: str = "",
    on_release: Callable[[Release], None] | None = None,
    where: Sequence[str] = (),
    segment: str | None = None,
    on_checked: Callable[[Checked], None] | None = None,
    before_embargo: bool = False,
    preflight: bool = False,
) -> SendOutcome:
    """Send the release at `path` to the lists `audience` (default: the release's `lists`).

    `tests`: send every variant to these addresses only (no campaign). `dry_run`: plan and
    build every message, store and send nothing. `at`: schedule (a worker starts it).
    `on_plan(plan, transport)` is called once the audience is frozen (after building, for a dry
    run); `confirm(plan)` only when there is something to send now: False (or an exception)
    forgets a campaign this call created, so a declined send stores nothing. `on_release` is
    called with the release once it passed its check (a caller shows its subjects with
    `headline`); `on_checked` with the whole check (its warnings, who reads which language: a
    caller shows every warning `release check` would, and `reader_variants`).

    Settings still at their placeholder (mailer.config.placeholder_settings) stop a send to
    real readers; a test send and the outbox only warn.

    `segment` (a saved segment: its lists and expressions) or `where` (filter expressions on
    the lists `audience`) send to part of the lists (docs/segments.md).

    Before the release's embargo only press lists may get it (planning.embargo_rule), each
    message marked EMBARGOED; the plan says so (`Plan.early`) and `confirm` must ask about it.
    `before_embargo`: the operator agreed to that beforehand, which scheduling before the lift
    (`at`) needs, since nobody is asked then. In a dry run `at` only says when it would start.
    """
    audience, where = segment_audience(settings, segment, audience, where)
    checked = load_for_sending(path, settings, audience, test_send=bool(tests))
    if preflight and not dry_run and settings.transport == "smtp":
        # What receivers check (DKIM key, DMARC) before anything is planned: an error refuses
        # (PreflightError), a warning joins the release's. Lazy: it loads dnspython.
        from mailer.delivery.preflight import before_send  # noqa: PLC0415

        checked.findings.extend(before_send(settings))
    release = checked.release
    if on_release is not None:
        on_release(release)
    if on_checked is not None:
        on_checked(checked)
    if tests:
        # Lazy: releases.render loads premailer and lxml (~0.4 s); only test sends render here.
        from mailer.releases.render import render_release  # noqa: PLC0415

        transport = checked_transport(settings, test_send=True)
        # The test copy is the press lists' early copy: the same banner and subject prefix.
        ahead = release.embargo if is_ahead(release.embargo, clock.now()) else None
        results = send_test(
            settings,
            # As every message: its file URLs carry the release's grant.
            render_release(media_access.granted(settings, release), settings, marked_until=ahead),
            tests,
            transport,
            embargo=release.embargo,
        )
        return SendOutcome("tested", release, transport.describe(), tests=results)
    slugs = audience_of(release, audience)
    transport = checked_transport(settings)
    described = transport.describe()
    smtputf8 = transport.supports_smtputf8()
    if dry_run:
        p, built = build_dry_run(
            settings,
            release,
            slugs,
            tags,
            smtputf8=smtputf8,
            transport=described,
            new_version=new_version,
            rendered=checked.rendered,
            where=where,
            segment=segment,
            at=at,
        )
        if on_plan is not None:
            on_plan(p, described)
        return SendOutcome("dry-run", release, described, plan=p, built=built)
    p = plan(
        settings,
        release,
        slugs,
        tags,
        smtputf8=smtputf8,
        transport=described,
        not_before=at,
        not_after=not_after,
        rate=rate,
        new_version=new_version,
        created_by=created_by,
        where=where,
        segment=segment,
        before_embargo=before_embargo,
    )
    if on_plan is not None:
        on_plan(p, described)
    if p.campaign.status == CampaignStatus.SCHEDULED:
        if p.early is not None:
            _record_early(settings, p, created_by)
        return SendOutcome("scheduled", release, described, plan=p)
    if p.campaign.status == CampaignStatus.DONE or (not p.due and not p.created):
        return SendOutcome("nothing-left", release, described, plan=p)
    try:
        go = confirm(p)
    except BaseException:
        if p.created:
            discard_draft(settings, p.campaign.id)
        raise
    if not go:
        if p.created:
            discard_draft(settings, p.campaign.id)
        return SendOutcome("declined", release, described, plan=p)
    if p.early is not None:
        _record_early(settings, p, created_by)
    # Lazy: the engine (ledger, lock, throttle) costs ~85 ms; release check and dry runs skip it.
    from mailer.delivery.engine import deliver  # noqa: PLC0415

    result = deliver(
        settings,
        p.campaign.id,
        transport,
        limit=limit,
        rate_per_second=rate,
        on_progress=on_progress(p.due) if on_progress else None,
        rendered=checked.rendered,
    )
    return SendOutcome("sent", release, described, plan=p, result=result)


def resume_campaign(
    settings: Settings,
    campaign_id: int,
    *,
    limit: int | None = None,
    on_progress: ProgressFactory | None = None,
) -> RunResult:
    """Carry on sending a campaign planned earlier (paused, interrupted, retries due)."""
    # Lazy: the engine costs ~85 ms; see send_release.
    from mailer.delivery.engine import deliver  # noqa: PLC0415

    transport = checked_transport(settings)
    with session_scope(settings) as s:
        campaigns.resume(s, campaign_id)
        due = campaigns.due_count(s, campaign_id)
    return deliver(
        settings,
        campaign_id,
        transport,
        limit=limit,
        on_progress=on_progress(due) if on_progress else None,
    )


# --- the steps ---------------------------------------------------------------------------------


def check_for_lists(
    settings: Settings,
    release: Release,
    list_slugs: Sequence[str] = (),
    *,
    sending: bool = False,
    test_send: bool = False,
) -> Checked:
    """`release check` with the audience of these lists (default: the release's `lists`).

    An unknown list is an error finding; when `sending`, it is left to the plan (which names
    it), only the variants the audience reads are rendered, and with the footer the campaign
    will carry (one list is named in it).
    """
    # Lazy: releases.checks loads premailer and lxml (~0.4 s); worker and resume skip it.
    from mailer.releases.checks import Finding, check_release  # noqa: PLC0415

    slugs = list(list_slugs) or list(release.lists)
    # The photos and documents the release names: checked, stored, and linked to by URL.
    local_files = scan_release(release, settings)
    release = with_media(release, local_files.refs)
    if local_files.files:
        with session_scope(settings) as s:
            media_store.save(s, settings, local_files)
            media_store.link(s, release)  # a test send's photos show before any plan
    audience: dict[str, int] | None = None
    missing: list[Finding] = []
    list_name = None
    if slugs:
        with session_scope(settings) as s:
            known = []
            for slug in slugs:
                try:
                    known.append(get_list(s, slug))
                except NotFoundError as err:
                    missing.append(Finding("error", f"{release.default.where}: {err}"))
            audience = audience_languages(s, [ml.slug for ml in known], release.default_language)
            if sending and len(set(slugs)) == 1 and known:
                # Named in each reader's language where the list has a name in it.
                list_name = known[0].local_name(settings.default_language)
    if sending and missing:
        audience, missing = None, []
    wanted = (
        None
        if not sending or audience is None
        else {choose(lang, release.variants, release.default_language) for lang in audience}
    )
    rendered: dict[str, Any] = {}
    findings = check_release(
        # Rendered as the messages link the files (mailer.media.access.granted) when sending.
        media_access.granted(settings, release) if sending else release,
        settings,
        audience_languages=audience,
        render_languages=wanted,
        list_name=list_name,
        rendered_out=rendered if sending else None,
        test_send=test_send,
        local_files=local_files,
    )
    return Checked(
        release, sorted(missing + findings, key=lambda f: f.level != "error"), audience, rendered
    )


def load_for_sending(
    path: str | Path, settings: Settings, list_slugs: Sequence[str] = (), *, test_send: bool = False
) -> Checked:
    """Load a release and refuse it when `release check` finds errors."""
    checked = check_for_lists(
        settings,
        load_release(path, settings.default_language),
        list_slugs,
        sending=True,
        test_send=test_send,
    )
    errors = [f.message for f in checked.findings if f.level == "error"]
    if errors:
        raise ReleaseError(
            f"{path}: `mailer release check` finds errors:\n  - " + "\n  - ".join(errors)
        )
    return checked


def checked_transport(
    settings: Settings, *, test_send: bool = False
) -> SmtpTransport | OutboxTransport:
    """The configured transport, after proving it works (login, TLS) and DKIM is consistent.

    Every road to real readers (send, resume, worker) passes here: one still at a placeholder
    setting (the example From, organisation name...) is refused, except a test send."""
    if settings.transport != "outbox" and not test_send:
        refuse_placeholders(settings)
    transport = open_transport(settings)
    dkim_signer(settings, settings.from_address)
    transport.check()
    return transport


def headline(settings: Settings, release: Release) -> list[tuple[str, str]]:
    """What readers see before they open the message: From, Reply-To and each language's
    subject, as (label, value) rows for the plan shown before a send is confirmed."""
    # As a reader's mail program shows it (formataddr would encode a Korean name as =?utf-8?).
    sender = (
        f"{settings.from_name} <{settings.from_address}>"
        if settings.from_name
        else settings.from_address
    )
    rows = [("From", sender)]
    for lang in release.languages:
        # A From name given per language (mailer.localtext): show each one that differs.
        name = in_language(settings.from_name, lang, settings.default_language)
        if name and name != settings.from_name:
            rows.append((f"From [{lang}]", f"{name} <{settings.from_address}>"))
    rows.append(("Reply-To", settings.reply_to or "(none: replies go to From)"))
    for lang in release.languages:
        meta = release.variants[lang].meta
        rows.append((f"Subject [{lang}]", " ".join((meta.subject or meta.title).split())))
    return rows


def segment_audience(
    settings: Settings, segment: str | None, list_slugs: Sequence[str], where: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The lists and expressions of --segment (plus any --where), or the --where checked."""
    if segment is None and not where:
        return list(list_slugs), []
    with session_scope(settings) as s:
        chosen = resolve(s, segment, list_slugs if segment else (), where)
    return (chosen.lists if segment else list(list_slugs)), chosen.expressions


def audience_of(release: Release, list_slugs: Sequence[str]) -> list[str]:
    slugs = list(list_slugs) or list(release.lists)
    if not slugs:
        raise SendError("no audience: give --list SLUG (or `lists:` in the release)")
    return slugs


def _plan(
    session: Session,
    settings: Settings,
    release: Release,
    list_slugs: Sequence[str],
    tags: Sequence[str],
    *,
    smtputf8: bool,
    transport: str,
    not_before: datetime | None,
    not_after: datetime | None,
    rate: float | None,
    new_version: bool,
    created_by: str,
    where: Sequence[str] = (),
    segment: str | None = None,
    early: EarlySend | None = None,
) -> Plan:
    stored = store_release(
        session,
        release.slug,
        release.title,
        release.default_language,
        dict(release.sources),
        _front_matter(release),
        release.content_hash,
        media=media_json(release),
    )
    media_store.link(session, release)
    expires = release.expires
    limit_after = min((t for t in (expires, not_after) if t is not None), default=None)
    return plan_campaign(
        session,
        settings,
        stored,
        list_slugs,
        tags,
        smtputf8=smtputf8,
        not_before=_not_before(release, not_before, early),
        not_after=limit_after,
        rate_per_second=rate,
        allow_new_version=new_version,
        created_by=created_by,
        transport=transport,
        where=where,
        segment=segment,
        early=early,
    )


def _not_before(
    release: Release, not_before: datetime | None, early: EarlySend | None
) -> datetime | None:
    """When the campaign may start: --at, else the embargo, except for press lists that the
    operator agreed to send to before it (they may start now)."""
    if not_before is not None or early is not None:
        return not_before
    return release.embargo


def plan(
    settings: Settings,
    release: Release,
    list_slugs: Sequence[str],
    tags: Sequence[str],
    *,
    smtputf8: bool,
    transport: str,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    rate: float | None = None,
    new_version: bool = False,
    created_by: str = "",
    where: Sequence[str] = (),
    segment: str | None = None,
    before_embargo: bool = False,
) -> Plan:
    """Find or create the campaign and freeze its audience (committed).

    Before the embargo only press lists (planning.embargo_rule); scheduled before it (`not_before`)
    only with `before_embargo`, since no one is asked when the worker starts it."""
    now = clock.now()
    if not_before is not None and not_before <= now:
        raise SendError(f"--at {not_before.isoformat()} is in the past")
    with session_scope(settings) as s:
        early = embargo_rule(
            s, settings, release.slug, release.embargo, list_slugs, not_before or now
        )
        if early is not None:
            _check_banner(settings, release, early)
        if early is not None and not_before is not None and not before_embargo:
            raise SendError(
                f"--at {not_before.isoformat()} is before the embargo ({early.until_text}): "
                f"scheduled then, the press lists ({', '.join(early.lists)}) would get it early, "
                "each message marked EMBARGOED. Pass --early to confirm that, or schedule it "
                f"for the lift (--at '{embargo_words.when_option(early.until, settings)}')"
            )
        p = _plan(
            s,
            settings,
            release,
            list_slugs,
            tags,
            smtputf8=smtputf8,
            transport=transport,
            not_before=not_before,
            not_after=not_after,
            rate=rate,
            new_version=new_version,
            created_by=created_by,
            where=where,
            segment=segment,
            early=early,
        )
        p.early = early
        c = p.campaign
        unstarted = c.started_at is None and c.status in (
            CampaignStatus.DRAFT,
            CampaignStatus.SCHEDULED,
        )
        if not p.created and not unstarted and (not_before or not_after or rate):
            raise SendError(
                f"campaign {c.id} has already started: --at, --not-after and "
                "--rate apply only to a campaign that has not"
            )
        if not p.created and unstarted:
            # An earlier plan that never went out (declined, interrupted): this command's
            # options win, so --at is never ignored.
            c.not_before = _not_before(release, not_before, early)
            if early is not None:
                c.plan = {**c.plan, "before_embargo": early.as_dict()}
            if not_after is not None:
                c.not_after = not_after
            if rate is not None:
                c.rate_per_second = rate
            c.status = CampaignStatus.DRAFT
        if not_before is not None:
            # A worker starts it when due (see mailer.delivery.worker).
            c.status = CampaignStatus.SCHEDULED
        return p


def build_dry_run(
    settings: Settings,
    release: Release,
    list_slugs: Sequence[str],
    tags: Sequence[str],
    *,
    smtputf8: bool,
    transport: str,
    new_version: bool = False,
    rendered: dict[str, Any] | None = None,
    where: Sequence[str] = (),
    segment: str | None = None,
    at: datetime | None = None,
) -> tuple[Plan, DryRun]:
    """Plan and build every message, then roll everything back: nothing is stored or sent.

    `rendered`: the variants the release check rendered (`Checked.rendered`); the others are
    rendered the way a send renders them, when a recipient needs one. `at`: when it would
    start (--at): the embargo rule and the EMBARGOED marking are those of that time."""
    session = session_factory(settings)()
    try:
        # What the real send would refuse, the dry run refuses: that is where it should show.
        early = embargo_rule(
            session, settings, release.slug, release.embargo, list_slugs, at or clock.now()
        )
        if early is not None:
            _check_banner(settings, release, early)
        p = _plan(
            session,
            settings,
            release,
            list_slugs,
            tags,
            smtputf8=smtputf8,
            transport=transport,
            not_before=None,
            not_after=None,
            rate=None,
            new_version=new_version,
            created_by="dry-run",
            where=where,
            segment=segment,
            early=early,
        )
        p.early = early
        lists = {ml.id: ml for ml in session.scalars(select(MailingList))}
        compiler = Compiler(
            settings,
            p.campaign.id,
            rendered or {},
            lists,
            render=campaign_renderer(
                settings,
                p.campaign,
                {i: ml.local_name(settings.default_language) for i, ml in lists.items()},
                at=at,
            ),
            # The sample shows the links as sent; the rows go with the dry run's rollback.
            links=LinkRegistry(settings, p.campaign.id, session=session),
        )
        count = size = 0
        by_language: dict[str, int] = {}
        sample = None
        rows = session.execute(
            select(Delivery, Contact.name)
            .outerjoin(Contact, Contact.id == Delivery.contact_id)
            .where(
                Delivery.campaign_id == p.campaign.id,
                # What a send would deliver now: a resumed campaign's sent rows are not.
                Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.DEFERRED)),
            )
            .order_by(Delivery.id)
            .execution_options(yield_per=1000)
        )
        for d, name in rows:
            recipient = Recipient(d.contact_id or 0, d.email, name or "", d.list_id, d.message_id)
            message = compiler.get(d.language, d.list_id).build(recipient)
            count += 1
            size += len(message)
            by_language[d.language] = by_language.get(d.language, 0) + 1
            if sample is None:
                sample = message
        return p, DryRun(count, size, by_language, sample)
    finally:
        # Detach before the rollback: a rollback expires what was already stored (an audience
        # sent to before is resumed, not created), and the caller still prints that plan.
        session.expunge_all()
        session.rollback()
        session.close()


def _check_banner(settings: Settings, release: Release, early: EarlySend) -> None:
    """Before anything is planned: the layouts show the EMBARGOED banner in every language."""
    # Lazy: releases.render loads premailer and lxml (~0.4 s); only early sends check here.
    from mailer.releases.render import check_marked_layouts  # noqa: PLC0415

    check_marked_layouts(release, settings, early.until)


def _record_early(settings: Settings, p: Plan, actor: str) -> None:
    """The event log keeps who sent a release to the press before its embargo, and to whom."""
    assert p.early is not None
    with session_scope(settings) as s:
        audit.record(
            s,
            "campaign.before_embargo",
            campaign_id=p.campaign.id,
            actor=actor,
            release=p.release_slug,
            until=p.early.until.isoformat(),
            lists=p.early.lists,
        )


def discard_draft(settings: Settings, campaign_id: int) -> None:
    """Forget a campaign planned a moment ago that the operator declined to send."""
    with session_scope(settings) as s:
        campaign = get_campaign(s, campaign_id)
        if campaign.started_at is None:
            s.delete(campaign)


def _front_matter(release: Release) -> dict[str, Any]:
    meta = release.variants[release.default_language].meta
    as_dict = getattr(meta, "as_dict", None)
    data: dict[str, Any] = as_dict() if callable(as_dict) else {}
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in data.items()}
