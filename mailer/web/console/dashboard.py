"""The console's first page: list sizes and growth, scheduled and recent campaigns, and the
bounce and complaint rates against the line mailbox providers draw.

The figures come from the library (mailer.contacts.stats, mailer.delivery.rates); this module
only lays the growth chart out as inline SVG (no script: the page has a table of the same
figures for screen readers and for anyone who prefers numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Response, request

from mailer.contacts import stats
from mailer.delivery import rates
from mailer.web.console import bp
from mailer.web.console.base import render
from mailer.web.pages import db

# The chart's drawing box (SVG user units; CSS scales it to the page's width).
WIDTH, HEIGHT = 600, 220
LEFT, RIGHT, TOP, BOTTOM = 80, 8, 14, 34
LABEL_EVERY = 4  # a date under every fourth bar: 13 dates would overlap on a phone


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    day: str
    labelled: bool


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    ticks: list[tuple[float, int]]  # (y, value) of the horizontal grid lines
    width: int
    height: int
    left: int
    right: float
    baseline: float
    first: Bar
    last: Bar


def _ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (a round axis top)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if factor * step >= value:
                return factor * step
        step *= 10


def chart(points: list[datetime], sizes: list[int]) -> Chart:
    """Bars for `sizes` (one per point), scaled to a round maximum."""
    top = _ceiling(max([*sizes, 1]))
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    slot = plot_w / len(sizes)
    baseline = TOP + plot_h
    bars = []
    for i, (moment, value) in enumerate(zip(points, sizes, strict=True)):
        h = plot_h * value / top
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.15, 1),
                y=round(baseline - h, 1),
                width=round(slot * 0.7, 1),
                height=round(h, 1),
                value=value,
                day=f"{moment:%Y-%m-%d}",
                labelled=(len(sizes) - 1 - i) % LABEL_EVERY == 0,
            )
        )
    # Grid lines at 0, the top and, when it is a whole number, halfway.
    halves = (0, 1, 2) if top % 2 == 0 else (0, 2)
    ticks = [(round(baseline - plot_h * k / 2, 1), top * k // 2) for k in halves]
    return Chart(
        bars=bars,
        ticks=ticks,
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=WIDTH - RIGHT,
        baseline=baseline,
        first=bars[0],
        last=bars[-1],
    )


@bp.get("/")
def dashboard() -> Response:
    session = db()
    growth = stats.list_growth(session)
    wanted = request.args.get("list", "")[:64]
    chosen = growth.one(wanted) if wanted else None
    sizes = chosen.sizes if chosen is not None else growth.total_sizes
    return render(
        "dashboard.html",
        growth=growth,
        chosen=chosen,
        chart=chart(growth.points, sizes),
        recent=rates.recent_rates(session),
        days=rates.RECENT_DAYS,
        line=f"{rates.COMPLAINT_LINE:.1%}",
        aim=f"{rates.COMPLAINT_AIM:.1%}",
        scheduled=rates.campaign_figures(session, rates.scheduled_campaigns(session)),
        latest=rates.campaign_figures(session, rates.recent_campaigns(session)),
    )
