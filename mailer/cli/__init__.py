"""The command line: each command parses, calls one library function, and echoes.

No SQL, SMTP or rendering here. MailerError becomes `Error: ...` and exit status 1.

Start-up cost matters (every command pays it): `mailer --help` and `mailer --version` import click
and nothing of the library; a command imports only its own module (tests/test_startup.py).
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from mailer import __version__
from mailer.errors import MailerError

# Each command family lives in its own module, imported only when one of its commands runs
# (`mailer send` does not load Flask, the bounce parsers or openpyxl): faster start-up, and less
# memory for long sends. Importing a module attaches its commands to `main`.
LAZY_COMMANDS = {
    "init": ("core_cmd",),
    "config": ("core_cmd",),
    "db": ("core_cmd",),
    "demo": ("core_cmd",),
    "lists": ("lists_cmd",),
    "contacts": ("contacts_cmd", "import_cmd"),
    "suppressions": ("suppressions_cmd",),
    "release": ("release_cmd",),
    "send": ("send_cmd",),
    "dkim": ("dkim_cmd",),
    "doctor": ("doctor_cmd",),
    "campaigns": ("campaigns_cmd",),
    "segments": ("segments_cmd",),
    "worker": ("worker_cmd",),
    "serve": ("serve_cmd",),
    "bounces": ("bounces_cmd",),
    "users": ("users_cmd",),
    "news": ("news_cmd",),
    "engagement": ("engagement_cmd",),
}

# The one-line help `mailer --help` lists, so that listing the commands imports none of them
# (importing them all costs over a second: SQLAlchemy's ORM, premailer, the bounce parsers).
# Each line is the first line of the command's docstring; tests/test_startup.py checks that they
# still agree, so edit both together.
COMMAND_HELP = {
    "bounces": "Bounces, complaints and mailed unsubscribes.",
    "campaigns": "Campaigns and their delivery ledgers.",
    "config": "Inspect the effective settings.",
    "contacts": "Contacts and their subscriptions.",
    "db": "Database schema.",
    "demo": "Run the whole job in a new folder: import, send a bilingual release to the outbox.",
    "dkim": "DKIM signing keys.",
    "doctor": "Check the sending setup (SPF, DKIM, DMARC, SMTP) and say how to fix it.",
    "engagement": "Click tracking's per-person records: retention.",
    "init": "Create mailer.toml (with a new secret key) and the database.",
    "lists": "Mailing lists.",
    "news": "The public newsroom: releases on the web, previews, withdrawals, corrections.",
    "release": "Preview and check press releases (NAME.md, or NAME.en.md + NAME.ko.md).",
    "send": "Send a release: plan, confirm, deliver, report (re-running resumes).",
    "segments": "Saved segments: part of lists, chosen with --where expressions.",
    "serve": "Serve the subscriber pages and the staff console (/admin/).",
    "suppressions": "The global suppression list: addresses never mailed and never re-subscribed.",
    "users": "Staff accounts of the web console (mailer serve, /admin/).",
    "worker": "Send due campaigns; run several on PostgreSQL to send in parallel.",
}


class MailerGroup(click.Group):
    """Loads command modules on demand and turns the library's errors into one-line messages."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            for module in LAZY_COMMANDS[cmd_name]:
                importlib.import_module(f"mailer.cli.{module}")
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """click's listing, but a command not imported yet shows its line from COMMAND_HELP."""
        rows: list[tuple[str, str | None]] = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None and name in COMMAND_HELP:
                rows.append((name, COMMAND_HELP[name]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, None))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        lines = []
        for name, short in rows:
            if short is None:
                cmd = self.commands[name]
                lines.append((name, cmd.get_short_help_str(limit)))
            else:
                # A stand-in command shortens the line exactly as click shortens a real one.
                lines.append((name, click.Command(name, help=short).get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(lines)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MailerError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=MailerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Path to mailer.toml (default: MAILER_CONFIG, then mailer.toml in this folder or "
    "the nearest folder above it, as git finds its repository).",
)
@click.version_option(__version__, prog_name="mailer")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Send press releases and newsletters by email, safely."""
    # Lazy: cli.common loads SQLAlchemy's ORM (~0.3 s); --help and --version never get here.
    from mailer.cli.common import AppContext  # noqa: PLC0415

    ctx.obj = AppContext(config_path)


def load_all_commands() -> None:
    """Import every command module (for help listings and the docs test)."""
    for modules in LAZY_COMMANDS.values():
        for module in modules:
            importlib.import_module(f"mailer.cli.{module}")
