"""doctor: check the sending setup (DNS, SMTP, the one-click unsubscribe) and say how to fix it."""

from __future__ import annotations

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, pass_app

MARKS = {"ok": "ok     ", "warning": "WARNING", "error": "ERROR  ", "skipped": "skipped"}
COLOURS = {"warning": "yellow", "error": "red"}


@main.command()
@click.option(
    "--release",
    "release",
    type=click.Path(dir_okay=False),
    default=None,
    help="Measure this release's largest message against the server's SIZE limit "
    "(default: the sample with attachments up to attach_max_bytes).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print a JSON list of {"check", "status", "detail", "fix"}.',
)
@pass_app
def doctor(app: AppContext, release: str | None, as_json: bool) -> None:
    """Check the sending setup (SPF, DKIM, DMARC, SMTP) and say how to fix it."""
    # Lazy: the checks load dnspython and smtplib; `mailer --help` must not.
    from mailer.delivery.preflight import run_all  # noqa: PLC0415

    checks = run_all(app.settings, release)
    if as_json:
        echo_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            mark = click.style(MARKS[c.status], fg=COLOURS.get(c.status))
            click.echo(f"{mark} {c.check:<16} ", nl=False)
            echo(c.detail)
            if c.fix and c.status in ("warning", "error"):
                echo(f"{'':25}fix: {c.fix}")
        errors = sum(c.status == "error" for c in checks)
        warnings = sum(c.status == "warning" for c in checks)
        click.echo(f"{errors} error(s), {warnings} warning(s).")
    if any(c.status == "error" for c in checks):
        raise click.exceptions.Exit(1)
