"""campaigns ls | show | resume | pause | cancel | retry | resolve | report."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Any

import click

from mailer.cli import main
from mailer.cli.common import (
    AppContext,
    echo,
    echo_json,
    echo_table,
    json_option,
    local_time,
    pass_app,
    time_zone,
)
from mailer.delivery import campaigns as campaigns_lib


@main.group("campaigns")
def campaigns_group() -> None:
    """Campaigns and their delivery ledgers."""


@campaigns_group.command("ls")
@json_option
@pass_app
def campaigns_ls(app: AppContext, as_json: bool) -> None:
    """List campaigns, newest first."""
    with app.session() as s:
        rows = [campaigns_lib.campaign_as_dict(s, c) for c in campaigns_lib.list_campaigns(s)]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        echo("No campaigns yet: mailer send RELEASE.md --list SLUG")
        return
    zone, zone_name = time_zone(app.settings)
    echo_table(
        [
            "ID",
            "STATUS",
            "SENT",
            "TOTAL",
            f"CREATED ({zone_name})",
            f"SCHEDULED ({zone_name})",
            "RELEASE",
            "LISTS",
        ],
        (
            [
                r["id"],
                r["status"],
                r["counts"]["sent"],
                r["recipients"],
                local_time(r["created_at"], zone),
                local_time(r["not_before"], zone),
                r["release"],
                ", ".join(r["lists"]),
            ]
            for r in rows
        ),
        right=(0, 2, 3),
    )
    for r in rows:
        if r.get("pause_reason"):
            echo(f"Campaign {r['id']} paused itself: {r['pause_reason']}")


@campaigns_group.command("show")
@click.argument("campaign_id", type=int)
@json_option
@pass_app
def campaigns_show(app: AppContext, campaign_id: int, as_json: bool) -> None:
    """Counts by status and language, and the servers' replies."""
    with app.session() as s:
        data = campaigns_lib.campaign_as_dict(s, campaigns_lib.get_campaign(s, campaign_id))
    if as_json:
        echo_json(data)
        return
    echo(f"Campaign {data['id']}: {data['title']} ({data['release']})")
    _echo_guards(app, data)
    echo(f"  status: {data['status']}  lists: {', '.join(data['lists'])}")
    if data.get("segment") or data.get("where"):
        echo(
            f"  segment: {data.get('segment') or '(--where)'}: "
            + " and ".join(data.get("where") or [])
        )
    zone, zone_name = time_zone(app.settings)
    echo(f"  times in {zone_name}:")
    echo(
        f"  created {local_time(data['created_at'], zone, named=True)}  started "
        f"{local_time(data['started_at'], zone, named=True)}  finished "
        f"{local_time(data['finished_at'], zone, named=True)}"
    )
    if data["not_before"] or data["not_after"]:
        echo(
            f"  scheduled for {local_time(data['not_before'], zone, named=True)}"
            + (
                f"  not after {local_time(data['not_after'], zone, named=True)}"
                if data["not_after"]
                else ""
            )
        )
    echo("  " + ", ".join(f"{k} {v}" for k, v in data["counts"].items() if v))
    _echo_embargo(data, zone)
    for lang, counts in sorted(data["by_language"].items()):
        echo(f"  [{lang}] " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if data["excluded"]:
        echo(
            "  excluded at planning: " + ", ".join(f"{k} {v}" for k, v in data["excluded"].items())
        )
    if any(data["bounces"].values()):
        echo("  bounces: " + ", ".join(f"{k} {v}" for k, v in data["bounces"].items() if v))
    for r in data["replies"]:
        echo(f"  {r['count']:>6} x {r['code'] or '-'} {r['reply']}")
    if data.get("problems"):
        echo("  not reached (first 20):")
        for p in data["problems"]:
            who = ", ".join(x for x in (p["name"], p["outlet"], p["beat"]) if x)
            echo(f"    {p['status']:<9} {p['email']}" + (f" ({who})" if who else ""))
    _echo_engagement(data.get("engagement") or {}, zone)


def _echo_engagement(e: dict[str, Any], zone: tzinfo) -> None:
    """Clicks per link and language, humans and machines apart; who engaged (press lists)."""
    if not e.get("tracked") and not e.get("opens"):
        return
    echo(
        f"  engagement: {e['human_clicks']} human click(s), {e['machine_clicks']} machine "
        "click(s) (scanners, previews: not counted as people)"
    )
    if e.get("unique_clickers") is not None:
        echo(f"    unique human clickers: {e['unique_clickers']}")
    else:
        echo("    aggregate lists only: clicks are counted per link, no person is recorded")
    for lang, n in e["by_language"].items():
        echo(f"    [{lang}] human {n['human']}, machine {n['machine']}")
    for link in e["links"]:
        echo(f"    {link['human']:>6} {link['machine']:>6}m  [{link['language']}] {link['url']}")
    if e.get("engaged"):
        echo("    who engaged (first human click):")
        for p in e["engaged"]:
            who = ", ".join(x for x in (p["outlet"], p["beat"]) if x)
            echo(
                f"      {local_time(p['first_click'], zone, named=True)}  "
                f"{p['name'] or p['email']}"
                + (f" ({who})" if who else "")
                + f"  {p['clicks']} click(s)"
            )
    if e.get("opens"):
        echo(f"    {e['opens']['label']}: {e['opens']['count']}")


def _echo_guards(app: AppContext, data: dict[str, Any]) -> None:
    """First of all: why the campaign paused itself, and which providers refuse the sender."""
    if data.get("pause_reason"):
        echo(f"  PAUSED ITSELF: {data['pause_reason']}")
        echo(f"    (mailer campaigns resume {data['id']} carries on and clears this)")
    zone, _ = time_zone(app.settings)
    for h in data.get("provider_holds") or []:
        until = local_time(h["until"], zone, named=True)
        echo(f"  {h['provider']}: {h['summary']}, {h['deferred']:,} deferred until {until}")


def _echo_embargo(data: dict[str, Any], zone: tzinfo) -> None:
    """The release's embargo, and whether this campaign went out before it."""
    if not data.get("embargo"):
        return
    until = local_time(data["embargo"], zone, named=True)
    early = data.get("before_embargo")
    if early is None:
        echo(f"  embargo until {until}")
        return
    echo(
        f"  sent before embargo (until {until}): {early['sent']} message(s), to the press "
        f"lists {', '.join(early['lists'])}, marked EMBARGOED"
    )


@campaigns_group.command("resume")
@click.argument("campaign_id", type=int)
@click.option("--limit", type=int, default=None, help="Send at most N messages in this run.")
@pass_app
def campaigns_resume(app: AppContext, campaign_id: int, limit: int | None) -> None:
    """Carry on sending a campaign (paused, interrupted, or with retries due)."""
    # Lazy: the send pipeline (SMTP, engine) is for resume only; campaigns ls/show skip it.
    from mailer.cli.send_cmd import ProgressBar, echo_result  # noqa: PLC0415
    from mailer.delivery.send import resume_campaign  # noqa: PLC0415

    echo_result(resume_campaign(app.settings, campaign_id, limit=limit, on_progress=ProgressBar))


@campaigns_group.command("pause")
@click.argument("campaign_id", type=int)
@pass_app
def campaigns_pause(app: AppContext, campaign_id: int) -> None:
    """Stop sending after the messages in flight (resume carries on)."""
    with app.session() as s:
        campaigns_lib.pause(s, campaign_id)
    echo(f"Campaign {campaign_id} paused; senders stop after the messages in flight.")


@campaigns_group.command("cancel")
@click.argument("campaign_id", type=int)
@pass_app
def campaigns_cancel(app: AppContext, campaign_id: int) -> None:
    """Cancel every message not sent yet."""
    with app.session() as s:
        n = campaigns_lib.cancel(s, campaign_id)
    echo(f"Campaign {campaign_id} cancelled; {n} message(s) will not be sent.")


@campaigns_group.command("retry")
@click.argument("campaign_id", type=int)
@pass_app
def campaigns_retry(app: AppContext, campaign_id: int) -> None:
    """Make deferred messages due now (then resume)."""
    with app.session() as s:
        n = campaigns_lib.retry_now(s, campaign_id)
    echo(f"{n} deferred message(s) are due now: mailer campaigns resume {campaign_id}")


@campaigns_group.command("resolve")
@click.argument("campaign_id", type=int)
@click.option(
    "--in-doubt",
    "action",
    type=click.Choice(["resend", "mark-sent"]),
    required=True,
    help="resend: send again with the same Message-ID; mark-sent: count as sent.",
)
@pass_app
def campaigns_resolve(app: AppContext, campaign_id: int, action: str) -> None:
    """Decide what happens to messages whose fate is unknown."""
    with app.session() as s:
        n = campaigns_lib.resolve_in_doubt(s, campaign_id, action)
    if action == "resend":
        echo(f"{n} in-doubt message(s) will be sent again: mailer campaigns resume {campaign_id}")
    else:
        echo(f"{n} in-doubt message(s) marked sent.")


@campaigns_group.command("report")
@click.argument("campaign_id", type=int)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the per-recipient CSV.",
)
@pass_app
def campaigns_report(app: AppContext, campaign_id: int, csv_path: str) -> None:
    """Write every recipient's fate to a CSV file."""
    with app.session() as s:
        n = campaigns_lib.write_report(s, campaign_id, Path(csv_path))
        data = campaigns_lib.embargo_summary(s, campaigns_lib.get_campaign(s, campaign_id))
    echo(f"Wrote {n} row(s) to {csv_path}.")
    if data["before_embargo"] is not None:
        # The column `before_embargo` says who; this line says that it happened at all.
        zone, _ = time_zone(app.settings)
        until = local_time(data["embargo"], zone, named=True)
        echo(
            f"  sent before embargo (until {until}): {data['before_embargo']['sent']} "
            "message(s), marked EMBARGOED (column before_embargo)."
        )
