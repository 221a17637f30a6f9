"""The command line: each command parses, calls one library function, and echoes.

No SQL, SMTP or rendering here. MailerError becomes `Error: ...` and exit status 1.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from mailer import __version__
from mailer.cli.common import AppContext
from mailer.errors import MailerError

# Each command family lives in its own module, imported only when one of its commands runs
# (`mailer send` does not load Flask, the bounce parsers or openpyxl): faster start-up, and less
# memory for long sends. Importing a module attaches its commands to `main`.
LAZY_COMMANDS = {
    "init": ("core_cmd",), "config": ("core_cmd",), "db": ("core_cmd",), "demo": ("core_cmd",),
    "lists": ("lists_cmd",),
    "contacts": ("contacts_cmd", "import_cmd"),
    "suppressions": ("suppressions_cmd",),
    "release": ("release_cmd",),
    "send": ("send_cmd",), "dkim": ("send_cmd",),
    "campaigns": ("campaigns_cmd",),
    "worker": ("worker_cmd",),
    "serve": ("serve_cmd",),
    "bounces": ("bounces_cmd",),
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

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MailerError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=MailerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Path to mailer.toml (default: MAILER_CONFIG, then ./mailer.toml).")
@click.version_option(__version__, prog_name="mailer")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """Send press releases and newsletters by email, safely."""
    ctx.obj = AppContext(config_path)


def load_all_commands() -> None:
    """Import every command module (for help listings and the docs test)."""
    for modules in LAZY_COMMANDS.values():
        for module in modules:
            importlib.import_module(f"mailer.cli.{module}")
