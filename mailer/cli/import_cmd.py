"""contacts import | export."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

import click

from mailer.cli.common import AppContext, echo, echo_json, json_option, pass_app
from mailer.cli.contacts_cmd import contacts_group
from mailer.imports import export as export_lib
from mailer.imports import importer

REPORT_LINES = (
    ("rows", "rows read"),
    ("contacts_added", "contacts added"),
    ("contacts_updated", "contacts updated"),
    ("subscribed", "newly subscribed"),
    ("pending_confirmed", "  of which were pending"),
    ("already_subscribed", "already subscribed"),
    ("kept_unsubscribed", "kept unsubscribed"),
    ("invalid", "invalid (rejected)"),
    ("duplicates", "duplicates in the file"),
)


class ProgressBar:
    """A progress bar on stderr, only when stderr is a terminal; started on the first report."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="Reading", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(max(0, done - self.bar.pos))

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.bar is not None:
            self.bar.__exit__(exc_type, exc, tb)


@contacts_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--list", "list_slug", required=True, help="List to subscribe the contacts to.")
@click.option("--tag", "tags", multiple=True, help="Tag every imported contact (repeatable).")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Read FIELD (email, name, first_name, last_name, organisation (or outlet), language, "
    "tags, role, beat, media_type, region, phone) from COLUMN (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Print the report, change nothing.")
@click.option(
    "--update-attributes",
    is_flag=True,
    help="Update names, organisation, language, press fields and attributes of known "
    "contacts (never a subscription status).",
)
@click.option(
    "--errors",
    "errors_path",
    type=click.Path(dir_okay=False),
    help="Write every rejected row (line, reason, cells) to this CSV file.",
)
@click.option(
    "--consent-source",
    default=None,
    help="How these people consented, recorded on each new subscription.",
)
@click.option("--check-dns", is_flag=True, help="Also check each domain accepts mail (slow).")
@click.option("--sheet", default=None, help="XLSX: the sheet to read (default: the first).")
@click.option("--encoding", default=None, help="CSV: the encoding, when detection guesses wrong.")
@json_option
@pass_app
def contacts_import(
    app: AppContext,
    file: str,
    list_slug: str,
    tags: tuple[str, ...],
    mappings: tuple[str, ...],
    dry_run: bool,
    update_attributes: bool,
    errors_path: str | None,
    consent_source: str | None,
    check_dns: bool,
    sheet: str | None,
    encoding: str | None,
    as_json: bool,
) -> None:
    """Import contacts from a CSV or XLSX file into a list, all or nothing."""
    mapping = importer.parse_map(mappings)
    with ProgressBar() as bar, app.session() as s:
        report = importer.import_contacts(
            s,
            file,
            list_slug,
            tags=tags,
            mapping=mapping,
            dry_run=dry_run,
            update_attributes=update_attributes,
            consent_source=consent_source,
            check_dns=check_dns,
            sheet=sheet,
            encoding=encoding,
            errors_path=errors_path,
            progress=bar,
            default_language=app.settings.default_language,
        )
    if as_json:
        echo_json(report.as_dict())
        return
    data = report.as_dict()
    where = f"{data['format'].upper()}"
    if data["encoding"]:
        where += f", {data['encoding']}"
    if data["sheet"]:
        where += f", sheet {data['sheet']!r}"
    if dry_run:
        echo(f"Dry run of {file} ({where}) into {list_slug!r}: nothing was changed.")
    else:
        echo(f"Imported {file} ({where}) into {list_slug!r} as import {data['import_id']}.")
    cols = ", ".join(f"{k}={v!r}" for k, v in data["columns"].items())
    echo(f"  columns: {cols}")
    if data["attribute_columns"]:
        echo(f"  kept as attributes: {', '.join(data['attribute_columns'])}")
    for key, label in REPORT_LINES:
        if key == "pending_confirmed" and not data["counts"][key]:
            continue
        echo(f"  {label:<24} {data['counts'][key]:>7}")
    for warning in report.warnings[:10]:
        echo(f"  WARNING line {warning.line}: {warning.message}", err=True)
    if len(report.warnings) > 10:
        echo(f"  ... and {len(report.warnings) - 10} more warnings (--json lists 100)", err=True)
    for err in report.rejected[:10]:
        echo(f"  line {err.line}: {err.reason}", err=True)
    more = len(report.rejected) - 10
    if more > 0:
        hint = f" (all in {errors_path})" if errors_path else " (use --errors FILE to see all)"
        echo(f"  ... and {more} more rejected rows{hint}", err=True)
    elif errors_path:
        echo(f"  rejected rows written to {errors_path}", err=True)


@contacts_group.command("export")
@click.option("--list", "list_slug", default=None, help="Only contacts on this list.")
@click.option(
    "--status",
    type=click.Choice(["pending", "subscribed", "unsubscribed"]),
    default=None,
    help="Only contacts with a subscription in this status.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file (default: standard output).",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="EXPRESSION",
    help="Only contacts for whom this holds (repeatable; docs/segments.md).",
)
@click.option("--segment", default=None, metavar="NAME", help="Only this saved segment's contacts.")
@pass_app
def contacts_export(
    app: AppContext,
    list_slug: str | None,
    status: str | None,
    output: str | None,
    where: tuple[str, ...] = (),
    segment: str | None = None,
) -> None:
    """Export contacts as CSV (UTF-8 with BOM) that Excel opens and `import` reads back."""
    with app.session() as s:
        if output is None:
            n = export_lib.export_contacts(
                s, click.open_file("-", "wb"), list_slug, status, where=where, segment=segment
            )
        else:
            n = export_lib.export_to_file(
                s, output, list_slug, status, where=where, segment=segment
            )
    echo(f"{n} contact(s) exported" + (f" to {output}." if output else "."), err=True)
