"""The command line: each command parses, calls one library function, and echoes.

No SQL, SMTP or rendering here. MailerError becomes `Error: ...` and exit status 1.
"""

from __future__ import annotations

from typing import Any

import click

from mailer import __version__
from mailer.cli.common import AppContext
from mailer.errors import MailerError


class MailerGroup(click.Group):
    """A group that turns the library's errors into clean one-line messages."""

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


def _register() -> None:
    # Each command family lives in its own module; importing it attaches it to `main`.
    from mailer.cli import (  # noqa: F401
        bounces_cmd,
        campaigns_cmd,
        contacts_cmd,
        core_cmd,
        import_cmd,
        lists_cmd,
        release_cmd,
        send_cmd,
        serve_cmd,
        suppressions_cmd,
        worker_cmd,
    )


_register()
