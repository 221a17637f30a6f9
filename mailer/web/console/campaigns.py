"""Campaigns: the list, one campaign's live progress with its controls (pause, resume, cancel,
the in-doubt rows resolved), the report with its timeline chart, and the CSV download.

Figures come from mailer.delivery.reports, controls from mailer.delivery.campaigns (the
functions `mailer campaigns pause|resume|cancel|resolve` call), so the console and the command
line do and log the same thing. Progress follows the send two ways: server-sent events
(`campaign_stream`, read by static/progress.js; each stream ends after STREAM_SECONDS and the
browser's EventSource reconnects, because waitress gives each stream a thread of its own), and,
where scripts or EventSource are missing, the same fragment polled by htmx every 3 s. The
bounces and complaints across campaigns are in campaign_bounces.py.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Response, abort, request, stream_with_context

from mailer.delivery import campaigns as campaigns_lib
from mailer.delivery import reports
from mailer.engagement import report as engagement_report
from mailer.errors import InvalidInputError, NotFoundError, SendError
from mailer.store.db import session_scope
from mailer.store.models import CampaignStatus, DeliveryStatus
from mailer.web.console import bp
from mailer.web.console.base import _, actor, environment, lang, notice_then, render
from mailer.web.pages import db, settings

STREAM_SECONDS = 30.0  # one stream's life; EventSource reconnects after `retry`
STREAM_EVERY = 2.0  # seconds between two events of a stream
RETRY_MS = 2000
RESOLUTIONS = ("mark-sent", "resend")
# The chart's drawing box (SVG user units; CSS scales it to the page's width).
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 14, 34
LABELS = 6  # about this many times under the bars: more would overlap on a phone


def _progress_or_404(campaign_id: int) -> reports.Progress:
    try:
        return reports.progress(db(), campaign_id)
    except NotFoundError:
        abort(404)


@bp.get("/campaigns")
def campaigns() -> Response:
    return render("campaigns.html", active="campaigns", rows=reports.campaign_rows(db()))


@bp.get("/campaigns/<int:campaign_id>")
def campaign(campaign_id: int) -> Response:
    p = _progress_or_404(campaign_id)
    c = campaigns_lib.get_campaign(db(), campaign_id)
    return render("campaign.html", active="campaigns", c=c, p=p, **_controls(c.status))


def _controls(status: CampaignStatus) -> dict[str, bool]:
    return {
        "can_pause": status
        in (CampaignStatus.SENDING, CampaignStatus.SCHEDULED, CampaignStatus.DRAFT),
        "can_resume": status == CampaignStatus.PAUSED,
        "can_cancel": status not in (CampaignStatus.DONE, CampaignStatus.CANCELLED),
    }


@bp.get("/campaigns/<int:campaign_id>/progress")
def campaign_progress(campaign_id: int) -> Response:
    """The progress fragment (htmx polls it; also the whole of what an event carries)."""
    return render("campaign_progress.html", p=_progress_or_404(campaign_id))


@bp.get("/campaigns/<int:campaign_id>/stream")
def campaign_stream(campaign_id: int) -> Response:
    """Server-sent events: the progress fragment every STREAM_EVERY seconds for STREAM_SECONDS,
    then the stream ends and the browser reconnects. A finished campaign gets one last event
    named `end` (the script then stops listening)."""
    _progress_or_404(campaign_id)
    s = settings()
    template = environment().get_template("campaign_progress.html")
    page_lang = lang()

    def events() -> Iterator[str]:
        # Each event reads in a short session of its own: the request's session was committed
        # when the response started, and a stream must never hold a transaction (on SQLite
        # that is the write lock the sender needs).
        yield f"retry: {RETRY_MS}\n\n"
        ends = time.monotonic() + STREAM_SECONDS
        while True:
            with session_scope(s) as session:
                p = reports.progress(session, campaign_id)
            html = template.render(p=p, lang=page_lang, htmx=False)
            name = "end" if p.final else "progress"
            yield f"event: {name}\n" + "".join(f"data: {line}\n" for line in html.splitlines())
            yield "\n"
            if p.final or time.monotonic() + STREAM_EVERY > ends:
                return
            time.sleep(STREAM_EVERY)

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"  # a proxy in front must not hold events back
    return response


# --- controls ---------------------------------------------------------------------------------


def _failed(campaign_id: int, err: Exception) -> Response:
    return notice_then(
        "console.campaign",
        _("That could not be done: %(why)s", why=str(err)),
        campaign_id=campaign_id,
    )


@bp.post("/campaigns/<int:campaign_id>/pause")
def campaign_pause(campaign_id: int) -> Response:
    try:
        campaigns_lib.pause(db(), campaign_id, actor=actor())
    except NotFoundError:
        abort(404)
    except SendError as err:
        return _failed(campaign_id, err)
    return notice_then(
        "console.campaign",
        _("Paused. Messages already on their way finish; nothing new starts until you resume."),
        campaign_id=campaign_id,
    )


@bp.post("/campaigns/<int:campaign_id>/resume")
def campaign_resume(campaign_id: int) -> Response:
    try:
        campaigns_lib.resume(db(), campaign_id, actor=actor())
    except NotFoundError:
        abort(404)
    except SendError as err:
        return _failed(campaign_id, err)
    return notice_then(
        "console.campaign",
        _("Resumed. The sender carries on where it stopped."),
        campaign_id=campaign_id,
    )


def _confirm_page(
    campaign_id: int, template: str, *, status: int = 200, error: str = "", **extra: object
) -> Response:
    p = _progress_or_404(campaign_id)
    c = campaigns_lib.get_campaign(db(), campaign_id)
    return render(template, status=status, active="campaigns", c=c, p=p, error=error, **extra)


@bp.get("/campaigns/<int:campaign_id>/cancel")
def campaign_cancel_confirm(campaign_id: int) -> Response:
    return _confirm_page(campaign_id, "campaign_cancel.html")


@bp.post("/campaigns/<int:campaign_id>/cancel")
def campaign_cancel(campaign_id: int) -> Response:
    if request.form.get("confirm") != "yes":
        return _confirm_page(
            campaign_id,
            "campaign_cancel.html",
            status=422,
            error=_("Tick the box to confirm that the rest of this campaign is not sent."),
        )
    try:
        n = campaigns_lib.cancel(db(), campaign_id, actor=actor())
    except NotFoundError:
        abort(404)
    except SendError as err:
        return _failed(campaign_id, err)
    return notice_then(
        "console.campaign",
        _("Cancelled. %(count)s messages not yet sent will not be sent.", count=format(n, ",")),
        campaign_id=campaign_id,
    )


def _resolution(value: str) -> str:
    if value not in RESOLUTIONS:
        abort(404)
    return value


@bp.get("/campaigns/<int:campaign_id>/resolve")
def campaign_resolve_confirm(campaign_id: int) -> Response:
    how = _resolution(request.args.get("action", ""))
    return _confirm_page(campaign_id, "campaign_resolve.html", how=how)


@bp.post("/campaigns/<int:campaign_id>/resolve")
def campaign_resolve(campaign_id: int) -> Response:
    how = _resolution(request.form.get("action", ""))
    if request.form.get("confirm") != "yes":
        return _confirm_page(
            campaign_id,
            "campaign_resolve.html",
            status=422,
            how=how,
            error=_("Tick the box to confirm your decision."),
        )
    try:
        n = campaigns_lib.resolve_in_doubt(db(), campaign_id, how, actor=actor())
    except NotFoundError:
        abort(404)
    except (SendError, InvalidInputError) as err:
        return _failed(campaign_id, err)
    if how == "resend":
        message = _("%(count)s messages in doubt will be sent again.", count=format(n, ","))
    else:
        message = _("%(count)s messages in doubt are now counted as sent.", count=format(n, ","))
    return notice_then("console.campaign", message, campaign_id=campaign_id)


# --- the report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    label: str  # "HH:MM" (or "MM-DD HH:MM" across days), UTC
    labelled: bool


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[tuple[float, int]]
    width: int
    height: int
    left: int
    right: int
    baseline: float


def _ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (a round axis top)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def chart(t: reports.Timeline) -> Chart | None:
    if not t.buckets:
        return None
    top = _ceiling(max(t.peak, 1))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(t.buckets)
    baseline = TOP + plot_h
    days = {b.start.date() for b in t.buckets}
    every = max(1, -(-len(t.buckets) // LABELS))
    bars = []
    for i, b in enumerate(t.buckets):
        h = plot_h * b.sent / top
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.1, 1),
                y=round(baseline - h, 1),
                width=round(max(slot * 0.8, 0.5), 1),
                height=round(h, 1),
                value=b.sent,
                label=f"{b.start:%m-%d %H:%M}" if len(days) > 1 else f"{b.start:%H:%M}",
                labelled=i % every == 0,
            )
        )
    ticks = [(round(baseline - plot_h * k / 2, 1), top * k // 2) for k in (0, 1, 2)]
    if top % 2:
        ticks = [ticks[0], ticks[2]]
    return Chart(bars, ticks, WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, baseline)


@bp.get("/campaigns/<int:campaign_id>/report")
def campaign_report(campaign_id: int) -> Response:
    try:
        r = reports.report(db(), campaign_id)
    except NotFoundError:
        abort(404)
    return render(
        "campaign_report.html",
        active="campaigns",
        r=r,
        c=r.campaign,
        p=r.progress,
        chart=chart(r.timeline),
        statuses=[s.value for s in DeliveryStatus],
        # campaign_engagement.html: clicks, who engaged, opens (mailer.engagement.report).
        engagement=engagement_report.engagement(db(), campaign_id),
    )


@bp.get("/campaigns/<int:campaign_id>/report.csv")
def campaign_report_csv(campaign_id: int) -> Response:
    """The per-recipient CSV: the very bytes `mailer campaigns report --csv` writes."""
    out = io.StringIO()
    out.write("\ufeff")  # the BOM open_private's utf-8-sig writes: Excel reads UTF-8 then
    try:
        campaigns_lib.write_report_to(db(), campaign_id, out)
    except NotFoundError:
        abort(404)
    response = Response(out.getvalue().encode("utf-8"), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="campaign-{campaign_id}-report.csv"'
    )
    return response


# The bounces pages attach their routes to the same blueprint.
from mailer.web.console import campaign_bounces  # noqa: E402, F401
