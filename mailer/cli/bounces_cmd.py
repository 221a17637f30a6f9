"""bounces process SOURCE: read the bounce mailbox and keep the suppression list right."""

from __future__ import annotations

import click

from mailer.bounces import policy as bounces_lib
from mailer.bounces.sources import open_source
from mailer.cli import main
from mailer.cli.common import AppContext, echo_json, json_option, pass_app


@main.group("bounces")
def bounces_group() -> None:
    """Bounces, complaints and mailed unsubscribes."""


@bounces_group.command("process")
@click.argument("source")
@click.option("--dry-run", is_flag=True,
              help="Show what would happen; record, suppress and move nothing.")
@json_option
@pass_app
def bounces_process(app: AppContext, source: str, dry_run: bool, as_json: bool) -> None:
    """Process an mbox file, a maildir folder or an imaps://user:pass@host/FOLDER mailbox."""
    settings = app.settings
    with open_source(source, readonly=dry_run) as box:
        with app.session() as s:
            report = bounces_lib.process_mailbox(s, settings, box, dry_run=dry_run)
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
    click.echo(f"{data['source']}: {data['messages']} message(s)"
               + (" (dry run: nothing changed)" if report.dry_run else ""))
    for item in report.items:
        who = item.email or "-"
        line = f"  {item.message:<14} {item.outcome:<15} {who:<36} {item.status or '':<7}"
        click.echo(line + f" {item.action}" if item.action != "none" else line.rstrip())
        if item.outcome in (bounces_lib.UNKNOWN_ADDRESS, bounces_lib.UNPARSEABLE,
                            bounces_lib.UNRECOGNISED):
            click.echo(f"  {'':<14} {item.detail}")
    counts = ", ".join(f"{n} {k}" for k, n in data["counts"].items() if n)
    click.echo(f"summary: {counts or 'nothing'}; {len(data['suppressed'])} suppressed, "
               f"{len(data['unsubscribed'])} unsubscribed, {data['left_in_place']} left in place")
    if report.acknowledged:
        click.echo(report.acknowledged)
