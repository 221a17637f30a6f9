"""send: plan, confirm, deliver.

Over 400 lines on purpose: the send command's options, its plan display and its confirmation are
one dialogue with the operator.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, pass_app, shown
from mailer.config import placeholder_message, placeholder_settings
from mailer.delivery.planning import Plan
from mailer.delivery.send import headline, send_release
from mailer.errors import InvalidInputError

if TYPE_CHECKING:
    from mailer.releases.source import Release


def parse_when(value: str | None, option: str) -> datetime | None:
    """'2026-12-01 09:00 America/New_York' or ISO 8601 with an offset -> aware datetime."""
    if value is None:
        return None
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
        raise InvalidInputError(
            f"{option}: {value!r} needs a time zone (e.g. 'Asia/Seoul' or +09:00)"
        )
    return when


def reader_lines(checked: Any, counted: bool = True) -> list[tuple[str, bool]]:
    """One line per reader language: who gets which variant, and whether that is a fallback
    (another language's variant). `counted`: with the number of readers (on the lists; a
    --tag, --where or --segment send reaches part of them)."""
    # Lazy: releases.checks loads premailer and lxml (~0.4 s); `mailer dkim` skips it.
    from mailer.releases.checks import reader_variants  # noqa: PLC0415

    if checked.audience is None:
        return []
    out = []
    for rv in reader_variants(checked.release, checked.audience):
        who = f"{rv.language} readers" if rv.language else "readers without a language"
        if counted:
            who = f"{rv.readers} {who}"
        line = f"{who} get the {rv.variant} variant"
        if rv.fallback:
            line += f" (there is no {rv.language} variant)"
        out.append((line, rv.fallback))
    return out


def echo_plan(
    p: Any,
    transport: str,
    headline: Sequence[tuple[str, str]] = (),
    readers: Sequence[tuple[str, bool]] = (),
) -> None:
    c = p.campaign
    verb = "Planned" if p.created else "Resuming"
    echo(
        f"{verb} campaign {c.id}: {p.release_slug!r} to {', '.join(c.audience['lists'])}"
        + (f" (tags: {', '.join(c.audience['tags'])})" if c.audience.get("tags") else "")
    )
    if c.audience.get("segment") or c.audience.get("where"):
        name = c.audience.get("segment")
        echo(f"  segment:    {name or '(--where)'}: " + " and ".join(c.audience.get("where", [])))
    click.echo(
        f"  recipients: {p.total}  ("
        + ", ".join(f"{lang}: {n}" for lang, n in sorted(p.by_language.items()))
        + ")"
    )
    if not p.created:
        # The reader lines count the lists as they are now; a resumed campaign's audience was
        # frozen when it was planned, so they would contradict the recipients line above.
        readers = ()
        click.echo(
            "  audience:   frozen when the campaign was planned; contacts added to the "
            "lists since are not in it"
        )
    for i, (line, fallback) in enumerate(readers):
        # A fallback is red on a terminal: those readers get another language's text.
        click.echo(
            ("  languages:  " if i == 0 else " " * 14)
            + (click.style(line, fg="red") if fallback else line)
        )
    if p.excluded:
        click.echo("  excluded:   " + ", ".join(f"{k}: {v}" for k, v in p.excluded.items()))
    if c.not_before or c.not_after:
        click.echo(
            f"  window:     not before {c.not_before or '-'}, not after {c.not_after or '-'}"
        )
    early = getattr(p, "early", None)
    if early is not None:
        # Said in the plan itself, and again in the question: nobody sends this by accident.
        click.echo(
            click.style(
                f"  embargo:    BEFORE THE EMBARGO: embargoed until {early.until_text}; "
                f"the press lists {', '.join(early.lists)} get it now, each message marked "
                f"EMBARGOED UNTIL {early.until_text} (subject and banner, in its language)",
                fg="red",
                bold=True,
            )
        )
    if not p.created:
        done = {k: v for k, v in p.statuses.items() if v}
        click.echo("  so far:     " + ", ".join(f"{k} {v}" for k, v in done.items()))
    # What the readers will see, last before the question: a placeholder From or a wrong
    # subject is caught here, not in the readers' inboxes.
    width = max([len(label) for label, _ in headline] + [10])
    for label, value in headline:
        echo(f"  {(label + ':').ljust(width + 1)} {value}")
    click.echo(f"  {'transport:'.ljust(width + 1)} {transport}")


def echo_result(result: Any) -> None:
    pr = result.progress
    click.echo(
        f"Campaign {result.campaign_id}: sent {pr.sent}, failed {pr.failed}, deferred "
        f"{pr.deferred}, skipped {pr.skipped}, in doubt {pr.in_doubt} this run."
    )
    counts = {k: v for k, v in result.counts.items() if v}
    click.echo("  ledger: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if result.complete:
        click.echo("  done: every recipient's fate is recorded.")
    else:
        if result.counts.get("in_doubt"):
            click.echo(
                f"  {result.counts['in_doubt']} in doubt (the server may have them): "
                f"mailer campaigns resolve {result.campaign_id} --in-doubt resend|mark-sent"
            )
        if result.next_retry:
            click.echo(
                f"  deferred messages retry from {result.next_retry:%Y-%m-%d %H:%M UTC}: "
                f"mailer campaigns resume {result.campaign_id} (or run `mailer worker`)"
            )
        if result.stopped_by in ("paused", "limit", "interrupted"):
            click.echo(
                f"  stopped ({result.stopped_by}): mailer campaigns resume {result.campaign_id}"
            )


class ProgressBar:
    """A progress line on a terminal: sent, failed, deferred, rate and time left."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, progress: Any) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and progress.done < self.total:
            return
        self.last = now
        rate = progress.rate
        left = max(0, self.total - progress.done)
        eta = f"{int(left / rate) // 60}m{int(left / rate) % 60:02d}s" if rate > 0 else "?"
        width = 30
        filled = int(width * progress.done / self.total) if self.total else width
        click.echo(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{self.total} "
            f"sent {progress.sent} failed {progress.failed} deferred {progress.deferred} "
            f"{rate:.0f}/s left {eta}   ",
            nl=False,
            err=True,
        )
        if progress.done >= self.total:
            click.echo("", err=True)


@main.command()
@click.argument("path", type=click.Path())
@click.option(
    "--list",
    "lists",
    multiple=True,
    help="List to send to (repeatable; default: the release's `lists`).",
)
@click.option("--tag", "tags", multiple=True, help="Only contacts with this tag (repeatable: any).")
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="EXPRESSION",
    help='Only contacts for whom this holds, e.g. "beat in (politics, elections)" '
    "(repeatable: all must hold; docs/segments.md).",
)
@click.option(
    "--segment",
    default=None,
    metavar="NAME",
    help="Send to a saved segment (its lists and expressions; see `mailer segments`).",
)
@click.option(
    "--test",
    "tests",
    multiple=True,
    metavar="ADDRESS",
    help="Send every language variant to this address only, subject marked [Test] ([테스트]).",
)
@click.option(
    "--dry-run", is_flag=True, help="Plan and build every message; send and store nothing."
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--early",
    is_flag=True,
    help="Confirm sending an embargoed release to press lists before its embargo, each message "
    "marked EMBARGOED UNTIL ... (needed with --yes, and with an --at before the embargo).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the plan and the outcome as one JSON object (with --yes, --dry-run or --test).",
)
@click.option("--rate", type=float, default=None, help="Most messages a second.")
@click.option("--limit", type=int, default=None, help="Send at most N messages in this run.")
@click.option(
    "--not-after", default=None, help="Cancel what is not sent by then (date, time, zone)."
)
@click.option(
    "--at",
    "at",
    default=None,
    help="Schedule instead of sending now, e.g. "
    '"2026-12-01 09:00 America/New_York" (`mailer worker` starts it).',
)
@click.option(
    "--new-version",
    is_flag=True,
    help="The release changed after a campaign to this "
    "audience: send the new text as a new campaign.",
)
@click.option(
    "--skip-preflight",
    is_flag=True,
    help="Send even when the checks before sending (DKIM record, DMARC) find an error "
    "(`mailer doctor` runs them all).",
)
@pass_app
def send(
    app: AppContext,
    path: str,
    lists: tuple[str, ...],
    tags: tuple[str, ...],
    tests: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    rate: float | None,
    limit: int | None,
    not_after: str | None,
    at: str | None,
    new_version: bool,
    where: tuple[str, ...],
    segment: str | None,
    early: bool,
    as_json: bool,
    skip_preflight: bool,
) -> None:
    """Send a release: plan, confirm, deliver, report (re-running resumes)."""
    if as_json and not (yes or dry_run or tests):
        raise click.UsageError("--json asks no question: add --yes (or use --dry-run or --test)")
    not_after_at = parse_when(not_after, "--not-after")
    # Checked on a dry run too: a dry run is where a mistyped --at must show, not the real send.
    # A dry run takes it as the time it would start (the embargo rule of that time).
    when_at = parse_when(at, "--at")

    settings = app.settings
    rows: list[tuple[str, str]] = []
    readers: list[tuple[str, bool]] = []
    shown_transport = [""]

    def keep_release(release: Release) -> None:
        rows.extend(headline(settings, release))
        # A real send has refused them already; to the outbox or a tester, say so once.
        found = placeholder_settings(settings)
        if found:
            click.echo("warning: " + placeholder_message(settings, found), err=True)

    warnings: list[str] = []

    def show_checked(checked: Any) -> None:
        found = placeholder_settings(settings)
        said = placeholder_message(settings, found) if found else None
        warnings.extend(
            f.message for f in checked.findings if f.level == "warning" and f.message != said
        )
        readers.extend(reader_lines(checked, counted=not (tags or where or segment)))

    def show_warnings() -> None:
        # Every warning `release check` finds (the placeholder one is said above), red on a
        # terminal, with the plan: a missing language variant is only a warning, and Korean
        # readers getting the English text must not go unseen.
        for message in warnings:
            click.echo(click.style("warning: " + message, fg="red"), err=True)

    def show_plan(p: Plan, transport: str) -> None:
        show_warnings()
        shown_transport[0] = transport
        if as_json:
            return
        echo_plan(p, "dry run (nothing is sent or stored)" if dry_run else transport, rows, readers)

    def ask(p: Plan) -> bool:
        if p.early is not None and yes and not early:
            raise click.ClickException(
                f"embargoed until {p.early.until_text}: sending now gives it to "
                f"{', '.join(p.early.lists)} before the embargo (each message marked EMBARGOED). "
                "With --yes, confirm that with --early; or leave out --yes to be asked"
            )
        if yes:
            return True
        if not sys.stdin.isatty():
            more = " --early" if p.early is not None else ""
            raise click.ClickException(f"not a terminal: pass --yes{more} to send")
        sender = next((value for label, value in rows if label == "From"), "")
        question = f"Send to {p.due} recipient(s) now, from {sender} via {shown_transport[0]}?"
        if p.early is not None:
            question = (
                f"Send to {p.due} recipient(s) on {', '.join(p.early.lists)} now, BEFORE THE "
                f"EMBARGO (embargoed until {p.early.until_text}), each marked EMBARGOED, "
                f"from {sender} via {shown_transport[0]}?"
            )
        return click.confirm(shown(question))

    outcome = send_release(
        settings,
        path,
        lists,
        tags=tags,
        confirm=ask,
        on_plan=show_plan,
        on_release=keep_release,
        on_checked=show_checked,
        on_progress=ProgressBar,
        dry_run=dry_run,
        tests=tests,
        at=when_at,
        before_embargo=early,
        not_after=not_after_at,
        rate=rate,
        limit=limit,
        new_version=new_version,
        created_by="cli",
        where=where,
        segment=segment,
        preflight=not skip_preflight,
    )
    p = outcome.plan
    if as_json:
        echo_json(outcome_as_dict(outcome))
        if outcome.status == "tested" and any(
            r.reply.outcome.value != "sent" for r in outcome.tests
        ):
            raise click.exceptions.Exit(1)
        return
    if outcome.status == "tested":
        show_warnings()
        for r in outcome.tests:
            # The reply text is the SMTP server's: escaped like any stored text.
            echo(
                f"{r.address} [{r.language}] {r.reply.outcome.value}: {r.reply.code} "
                f"{r.reply.text}  ({r.subject})"
            )
        if any(r.reply.outcome.value != "sent" for r in outcome.tests):
            raise click.ClickException("some test messages were not accepted")
    elif outcome.status == "dry-run" and outcome.built is not None:
        built = outcome.built
        click.echo(
            f"Dry run: built {built.messages} messages ({built.size / 1024:.0f} KiB); "
            "none sent, nothing stored."
        )
        if when_at is not None:
            click.echo(f"  with --at it would be scheduled for {when_at:%Y-%m-%d %H:%M %Z}.")
    elif outcome.status == "scheduled" and p is not None:
        when = p.campaign.not_before
        click.echo(
            f"Scheduled campaign {p.campaign.id} for {when:%Y-%m-%d %H:%M %Z}: "
            "`mailer worker` starts it then (cancel: mailer campaigns cancel "
            f"{p.campaign.id})."
        )
        if p.early is not None:
            click.echo(
                f"  before the embargo (until {p.early.until_text}): each message marked EMBARGOED."
            )
    elif outcome.status == "nothing-left":
        click.echo("Nothing left to send.")
    elif outcome.status == "declined":
        click.echo("Not sent; nothing stored.")
    elif outcome.result is not None:
        echo_result(outcome.result)


def outcome_as_dict(outcome: Any) -> dict[str, Any]:
    """`send --json`: the plan (Plan.as_dict) and what happened, as one object."""
    data: dict[str, Any] = {
        "status": outcome.status,
        "release": outcome.release.slug,
        "transport": outcome.transport,
        "plan": outcome.plan.as_dict() if outcome.plan is not None else None,
    }
    if outcome.status == "tested":
        data["tests"] = [
            {
                "address": r.address,
                "language": r.language,
                "subject": r.subject,
                "outcome": r.reply.outcome.value,
                "code": r.reply.code,
                "reply": r.reply.text,
            }
            for r in outcome.tests
        ]
    if outcome.built is not None:
        data["built"] = {
            "messages": outcome.built.messages,
            "size": outcome.built.size,
            "by_language": outcome.built.by_language,
        }
    if outcome.result is not None:
        r = outcome.result
        data["result"] = {
            "campaign": r.campaign_id,
            "this_run": r.progress.as_dict(),
            "counts": r.counts,
            "complete": r.complete,
            "next_retry": r.next_retry.isoformat() if r.next_retry else None,
            "stopped_by": r.stopped_by,
        }
    return data
