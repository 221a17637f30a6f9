"""send (plan, confirm, deliver), and dkim keygen."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from mailer.cli import main
from mailer.cli.common import AppContext, pass_app
from mailer.delivery import send as dispatch
from mailer.errors import InvalidInputError


def parse_when(value: str | None, option: str) -> datetime | None:
    """'2026-12-01 09:00 America/New_York' or ISO 8601 with an offset -> aware datetime."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    text = value.strip()
    parts = text.rsplit(" ", 1)
    try:
        if (len(parts) == 2 and "/" in parts[1]) or parts[-1] == "UTC":
            when = datetime.fromisoformat(parts[0])
            return when.replace(tzinfo=ZoneInfo(parts[1]))
        when = datetime.fromisoformat(text)
    except (ValueError, ZoneInfoNotFoundError):
        raise InvalidInputError(
            f"{option}: not a date and time: {value!r} (e.g. '2026-12-01 09:00 America/New_York' "
            "or 2026-12-01T09:00:00-05:00)"
        ) from None
    if when.tzinfo is None:
        raise InvalidInputError(f"{option}: {value!r} needs a time zone (e.g. 'Asia/Seoul' or "
                                "+09:00)")
    return when


def echo_plan(p: Any, transport: str) -> None:
    c = p.campaign
    verb = "Planned" if p.created else "Resuming"
    click.echo(f"{verb} campaign {c.id}: {p.release_slug!r} to {', '.join(c.audience['lists'])}"
               + (f" (tags: {', '.join(c.audience['tags'])})" if c.audience.get("tags") else ""))
    click.echo(f"  recipients: {p.total}  ("
               + ", ".join(f"{lang}: {n}" for lang, n in sorted(p.by_language.items())) + ")")
    if p.excluded:
        click.echo("  excluded:   " + ", ".join(f"{k}: {v}" for k, v in p.excluded.items()))
    if c.not_before or c.not_after:
        click.echo(f"  window:     not before {c.not_before or '-'}, not after "
                   f"{c.not_after or '-'}")
    if not p.created:
        done = {k: v for k, v in p.statuses.items() if v}
        click.echo("  so far:     " + ", ".join(f"{k} {v}" for k, v in done.items()))
    click.echo(f"  transport:  {transport}")


def echo_result(result: Any) -> None:
    pr = result.progress
    click.echo(f"Campaign {result.campaign_id}: sent {pr.sent}, failed {pr.failed}, deferred "
               f"{pr.deferred}, skipped {pr.skipped}, in doubt {pr.in_doubt} this run.")
    counts = {k: v for k, v in result.counts.items() if v}
    click.echo("  ledger: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if result.complete:
        click.echo("  done: every recipient's fate is recorded.")
    else:
        if result.counts.get("in_doubt"):
            click.echo(f"  {result.counts['in_doubt']} in doubt (the server may have them): "
                       f"mailer campaigns resolve {result.campaign_id} --in-doubt resend|mark-sent")
        if result.next_retry:
            click.echo(f"  deferred messages retry from {result.next_retry:%Y-%m-%d %H:%M UTC}: "
                       f"mailer campaigns resume {result.campaign_id} (or run `mailer worker`)")
        if result.stopped_by in ("paused", "limit", "interrupted"):
            click.echo(f"  stopped ({result.stopped_by}): mailer campaigns resume "
                       f"{result.campaign_id}")


class ProgressBar:
    """A progress line on a terminal: sent, failed, deferred, rate and time left."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, progress: Any) -> None:
        if not self.enabled:
            return
        import time

        now = time.monotonic()
        if now - self.last < 0.2 and progress.done < self.total:
            return
        self.last = now
        rate = progress.rate
        left = max(0, self.total - progress.done)
        eta = f"{int(left / rate) // 60}m{int(left / rate) % 60:02d}s" if rate > 0 else "?"
        width = 30
        filled = int(width * progress.done / self.total) if self.total else width
        click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{self.total} "
                   f"sent {progress.sent} failed {progress.failed} deferred {progress.deferred} "
                   f"{rate:.0f}/s left {eta}   ", nl=False, err=True)
        if progress.done >= self.total:
            click.echo("", err=True)


@main.command()
@click.argument("path", type=click.Path())
@click.option("--list", "lists", multiple=True, help="List to send to (repeatable; default: the "
              "release's `lists`).")
@click.option("--tag", "tags", multiple=True, help="Only contacts with this tag (repeatable: any).")
@click.option("--test", "tests", multiple=True, metavar="ADDRESS",
              help="Send every language variant to this address only, subject [TEST].")
@click.option("--dry-run", is_flag=True, help="Plan and build every message; send and store "
              "nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--rate", type=float, default=None, help="Most messages a second.")
@click.option("--limit", type=int, default=None, help="Send at most N messages in this run.")
@click.option("--not-after", default=None, help="Cancel what is not sent by then (date, time, "
              "zone).")
@click.option("--at", "at", default=None, help="Schedule instead of sending now, e.g. "
              "\"2026-12-01 09:00 America/New_York\" (`mailer worker` starts it).")
@click.option("--new-version", is_flag=True, help="The release changed after a campaign to this "
              "audience: send the new text as a new campaign.")
@pass_app
def send(app: AppContext, path: str, lists: tuple[str, ...], tags: tuple[str, ...],
         tests: tuple[str, ...], dry_run: bool, yes: bool, rate: float | None,
         limit: int | None, not_after: str | None, at: str | None, new_version: bool) -> None:
    """Send a release: plan, confirm, deliver, report (re-running resumes)."""
    from mailer.delivery.engine import deliver
    from mailer.delivery.trial import send_test
    from mailer.releases.render import render_release

    settings = app.settings
    loaded = dispatch.load_for_sending(path, settings, lists)
    release = loaded.release
    if tests:
        transport = dispatch.checked_transport(settings)
        results = send_test(settings, render_release(release, settings), tests, transport,
                            embargo=release.embargo)
        for r in results:
            click.echo(f"{r.address} [{r.language}] {r.reply.outcome.value}: {r.reply.code} "
                       f"{r.reply.text}  ({r.subject})")
        if any(r.reply.outcome.value != "sent" for r in results):
            raise click.ClickException("some test messages were not accepted")
        return
    slugs = dispatch.audience_of(release, lists)
    limit_after = parse_when(not_after, "--not-after")
    transport = dispatch.checked_transport(settings)
    smtputf8 = transport.supports_smtputf8()
    if dry_run:
        p, built = dispatch.dry_run(settings, release, slugs, tags, smtputf8=smtputf8,
                                    transport=transport.describe(), new_version=new_version,
                                    rendered=loaded.rendered)
        echo_plan(p, "dry run (nothing is sent or stored)")
        click.echo(f"Dry run: built {built.messages} messages ({built.size / 1024:.0f} KiB); "
                   "none sent, nothing stored.")
        return
    start_at = parse_when(at, "--at")
    p = dispatch.plan(settings, release, slugs, tags, smtputf8=smtputf8,
                      transport=transport.describe(), not_after=limit_after, rate=rate,
                      new_version=new_version, created_by="cli", not_before=start_at)
    echo_plan(p, transport.describe())
    if p.campaign.status.value == "scheduled":
        when = p.campaign.not_before
        click.echo(f"Scheduled campaign {p.campaign.id} for {when:%Y-%m-%d %H:%M %Z}: "
                   "`mailer worker` starts it then (cancel: mailer campaigns cancel "
                   f"{p.campaign.id}).")
        return
    due = p.statuses.get("pending", 0) + p.statuses.get("deferred", 0)
    if p.campaign.status.value == "done" or (not due and not p.created):
        click.echo("Nothing left to send.")
        return
    if not yes:
        if not sys.stdin.isatty():
            if p.created:
                dispatch.discard_draft(settings, p.campaign.id)
            raise click.ClickException("not a terminal: pass --yes to send")
        if not click.confirm(f"Send to {due} recipient(s) now?"):
            if p.created:
                dispatch.discard_draft(settings, p.campaign.id)
            click.echo("Not sent; nothing stored.")
            return
    result = deliver(settings, p.campaign.id, transport, limit=limit, rate_per_second=rate,
                     on_progress=ProgressBar(due), rendered=loaded.rendered)
    echo_result(result)


@main.group()
def dkim() -> None:
    """DKIM signing keys."""


@dkim.command("keygen")
@click.option("--selector", default=None, help="DKIM selector (default: the dkim_selector "
              "setting).")
@click.option("--domain", default=None, help="Signing domain (default: the From domain).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="dkim.key",
              show_default=True, help="Where to write the private key.")
@pass_app
def dkim_keygen(app: AppContext, selector: str | None, domain: str | None, output: str) -> None:
    """Write a DKIM private key and print the DNS TXT record to publish."""
    from mailer.delivery.message import generate_dkim_key

    settings = app.settings
    sel = selector or settings.dkim_selector
    dom = domain or settings.dkim_domain or settings.from_address.rpartition("@")[2]
    path = Path(output)
    if not path.is_absolute():
        path = settings.base_dir / path
    record = generate_dkim_key(path, sel, dom)
    click.echo(f"Wrote {path} (keep it secret). Publish this DNS record:")
    click.echo(record)
    click.echo(f"Then set in mailer.toml: dkim_key_file = \"{path.name}\", dkim_selector = "
               f"\"{sel}\", dkim_domain = \"{dom}\"")
