"""bounces process SOURCE: read the bounce mailbox and keep the suppression list right;
bounces classify PATH...: say what messages are, without a database."""

from __future__ import annotations

import getpass

import click

from mailer.bounces import classify as bounce_classify
from mailer.bounces import policy as bounces_lib
from mailer.bounces import review as bounce_review
from mailer.bounces.sources import open_source
from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, json_option, pass_app


@main.group("bounces")
def bounces_group() -> None:
    """Bounces, complaints and mailed unsubscribes."""


@bounces_group.command("classify")
@click.argument("paths", nargs=-1, required=True)
@json_option
def bounces_classify(paths: tuple[str, ...], as_json: bool) -> None:
    """Say what each message in PATHS is, per recipient; no database, no mailer.toml needed.

    PATHS are message files, folders (every file in them), mbox files or maildirs.
    """
    try:
        verdicts = list(bounce_classify.classify_paths(paths))
    except bounce_classify.ClassifyError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        echo_json([v.as_dict() for v in verdicts])
        return
    suppressed = 0
    for v in verdicts:
        echo(f"{v.file}: {v.form}" + (f" ({v.note})" if v.note else ""))
        for r in v.recipients:
            suppressed += r.suppress
            echo(
                f"  {r.address or '(address not given)':<40} {r.kind:<11} "
                f"{'suppress' if r.suppress else 'keep':<8} {r.status or '-':<8} {r.why}"
            )
    forms: dict[str, int] = {}
    for v in verdicts:
        forms[v.form] = forms.get(v.form, 0) + 1
    click.echo(
        f"{len(verdicts)} message(s): "
        + ", ".join(f"{n} {form}" for form, n in sorted(forms.items()))
        + f"; {suppressed} recipient(s) to suppress"
    )


@bounces_group.command("process")
@click.argument("source")
@click.option(
    "--dry-run", is_flag=True, help="Show what would happen; record, suppress and move nothing."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=64),
    default=None,
    metavar="N",
    help="Classify in N processes (default: one per core; 1 keeps everything in this process).",
)
@json_option
@pass_app
def bounces_process(
    app: AppContext, source: str, dry_run: bool, workers: int | None, as_json: bool
) -> None:
    """Process an mbox file, a maildir folder or an imaps://user:pass@host/FOLDER mailbox."""
    settings = app.settings
    with open_source(source, readonly=dry_run) as box:
        with app.session() as s:
            report = bounces_lib.process_mailbox(s, settings, box, dry_run=dry_run, workers=workers)
        # Only after the commit: a message moved away but not recorded would be lost.
        bounces_lib.acknowledge(box, report)
    if as_json:
        echo_json(report.as_dict())
    else:
        _echo_text(report)
    if report.acknowledge_error:
        raise click.ClickException(report.acknowledge_error)


def _echo_text(report: bounces_lib.RunReport) -> None:
    data = report.as_dict()
    echo(
        f"{data['source']}: {data['messages']} message(s)"
        + (" (dry run: nothing changed)" if report.dry_run else "")
    )
    for item in report.items:
        who = item.email or "-"
        line = f"  {item.message:<14} {item.outcome:<15} {who:<36} {item.status or '':<7}"
        echo(line + f" {item.action}" if item.action != "none" else line.rstrip())
        if item.outcome in (
            bounces_lib.UNKNOWN_ADDRESS,
            bounces_lib.UNPARSEABLE,
            bounces_lib.UNRECOGNISED,
        ) or item.action.startswith("held for review"):
            echo(f"  {'':<14} {item.detail}")
    counts = ", ".join(f"{n} {k}" for k, n in data["counts"].items() if n)
    click.echo(
        f"summary: {counts or 'nothing'}; {len(data['suppressed'])} suppressed, "
        f"{len(data['unsubscribed'])} unsubscribed, {len(data['held'])} held for review, "
        f"{data['left_in_place']} left in place"
    )
    if report.acknowledged:
        echo(report.acknowledged)


# -- the review queue (reports that prove nothing are held here, see docs/bounces.md) ---------
# Every line above and below that shows a report goes through `echo`: a report's Message-ID,
# status and diagnostic are written by whoever mailed the bounce address.


@bounces_group.command("review")
@click.option(
    "--apply",
    "apply_id",
    type=int,
    metavar="ID",
    help="Apply held report ID as if it had been proven (suppress, count, unsubscribe).",
)
@click.option(
    "--dismiss",
    "dismiss_id",
    type=int,
    metavar="ID",
    help="Dismiss held report ID: nothing is done, for good.",
)
@click.option("--all", "show_all", is_flag=True, help="List applied and dismissed reports too.")
@click.option(
    "--by",
    "actor",
    default=None,
    metavar="NAME",
    help="Who decides (recorded in the log; default: the login name).",
)
@json_option
@pass_app
def bounces_review(
    app: AppContext,
    apply_id: int | None,
    dismiss_id: int | None,
    show_all: bool,
    actor: str | None,
    as_json: bool,
) -> None:
    """List reports held because nothing proves mailer sent the message they are about."""
    if apply_id is not None and dismiss_id is not None:
        raise click.UsageError("give --apply or --dismiss, not both")
    settings = app.settings
    if apply_id is not None or dismiss_id is not None:
        who = actor or _login()
        with app.session() as s:
            held = bounce_review.decide(
                s, settings, apply_id or dismiss_id or 0, apply=apply_id is not None, actor=who
            )
        if as_json:
            echo_json(held.as_dict())
        else:
            echo(f"{held.id}: {held.state} ({held.action} {held.email}): {held.outcome}")
        return
    with app.session() as s:
        rows = bounce_review.list_held(s, None if show_all else bounce_review.PENDING)
    if as_json:
        echo_json([r.as_dict() for r in rows])
        return
    if not rows:
        click.echo("no held reports" + ("" if show_all else " pending review"))
        return
    for r in rows:
        echo(
            f"{r.id:>5}  {r.state:<9} {r.created_at:%Y-%m-%d %H:%M}  {r.action:<11} "
            f"{r.email}  {r.status or ''}".rstrip()
        )
        echo(f"       why: {r.why}")
        echo(
            f"       report {r.source_message_id}"
            + (f"; {r.decided_by}: {r.outcome}" if r.outcome else "")
        )
    pending = sum(1 for r in rows if r.state == bounce_review.PENDING)
    if pending:
        click.echo(f"{pending} pending: `mailer bounces review --apply ID` or `--dismiss ID`")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in a container: still a record of the command
        return "cli"
