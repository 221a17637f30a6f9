"""suppressions ls | add | rm | import."""

from __future__ import annotations

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
from mailer.contacts import suppressions as sup_lib
from mailer.store.models import SuppressionReason

REASONS = [r.value for r in SuppressionReason]


@main.group("suppressions")
def suppressions_group() -> None:
    """The global suppression list: addresses never mailed and never re-subscribed."""


@suppressions_group.command("ls")
@click.option("--reason", type=click.Choice(REASONS), default=None, help="Only this reason.")
@json_option
@pass_app
def suppressions_ls(app: AppContext, reason: str | None, as_json: bool) -> None:
    """List suppressed addresses, newest first."""
    with app.session() as s:
        rows = [sup_lib.suppression_as_dict(x) for x in sup_lib.list_suppressions(s, reason)]
    if as_json:
        echo_json(rows)
        return
    if rows:
        zone, zone_name = time_zone(app.settings)
        echo_table(
            ["EMAIL", "REASON", f"SINCE ({zone_name})", "SOURCE"],
            (
                [r["email"], r["reason"], local_time(r["created_at"], zone), r["source"]]
                for r in rows
            ),
        )
    echo(f"{len(rows)} suppressed address(es)", err=True)


@suppressions_group.command("add")
@click.argument("email")
@click.option(
    "--reason",
    type=click.Choice(REASONS),
    default="manual",
    show_default=True,
    help="Why the address is suppressed.",
)
@click.option("--source", default="cli", show_default=True, help="Where the request came from.")
@pass_app
def suppressions_add(app: AppContext, email: str, reason: str, source: str) -> None:
    """Suppress an address: it is never mailed, and every subscription of it ends."""
    with app.session() as s:
        sup, new = sup_lib.add_suppression(s, email, reason, source)
        if new:
            echo(f"{sup.email}: suppressed ({reason}).")
        else:
            echo(
                f"{sup.email}: already suppressed ({sup.reason.value} since "
                f"{sup.created_at:%Y-%m-%d})."
            )


@suppressions_group.command("rm")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def suppressions_rm(app: AppContext, email: str, yes: bool) -> None:
    """Lift a suppression (ended subscriptions stay unsubscribed)."""
    if not yes:
        click.confirm(
            f"Allow mail to {email} again (its subscriptions stay unsubscribed)?", abort=True
        )
    with app.session() as s:
        sup = sup_lib.remove_suppression(s, email)
    echo(
        f"{sup.email}: no longer suppressed; it can be subscribed again, its old "
        "subscriptions stay unsubscribed."
    )


@suppressions_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--reason",
    type=click.Choice(REASONS),
    default="unsubscribe-all",
    show_default=True,
    help="Reason recorded for every address.",
)
@click.option("--source", default=None, help="Where the list came from (default: the file name).")
@click.option("--dry-run", is_flag=True, help="Print the report, change nothing.")
@click.option("--sheet", default=None, help="XLSX: the sheet to read (default: the first).")
@click.option("--encoding", default=None, help="CSV: the encoding, when detection guesses wrong.")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="email=COLUMN",
    help="Read the address from COLUMN (as for `contacts import`).",
)
@json_option
@pass_app
def suppressions_import(
    app: AppContext,
    file: str,
    reason: str,
    source: str | None,
    dry_run: bool,
    sheet: str | None,
    encoding: str | None,
    mappings: tuple[str, ...],
    as_json: bool,
) -> None:
    """Suppress every address in a CSV/XLSX file, e.g. another tool's unsubscribes."""
    # Lazy: only `suppressions import` needs the spreadsheet machinery (mailer.imports).
    from mailer.imports.columns import parse_map  # noqa: PLC0415

    mapping = parse_map(mappings)
    with app.session() as s:
        report = sup_lib.import_suppressions(
            s,
            file,
            reason,
            source,
            dry_run=dry_run,
            sheet=sheet,
            encoding=encoding,
            mapping=mapping,
        )
    data = report.as_dict()
    if as_json:
        echo_json(data)
        return
    added = data["counts"]["added"]
    if dry_run:
        echo(
            f"Dry run, nothing changed: {file}: {added} address(es) would be suppressed ({reason})."
        )
    else:
        echo(f"{file}: {added} address(es) suppressed ({reason}).")
    for key, value in data["counts"].items():
        echo(f"  {key.replace('_', ' '):<22} {value:>7}")
    for err in data["errors"][:10]:
        echo(f"  line {err['line']}: {err['reason']}", err=True)
