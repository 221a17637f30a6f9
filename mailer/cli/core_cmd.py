"""init, config show, db upgrade."""

from __future__ import annotations

from pathlib import Path

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, json_option, pass_app
from mailer.store import folder as setup


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Folder to set up.",
)
@click.pass_obj
def init(app: AppContext, directory: str) -> None:
    """Create mailer.toml (with a new secret key) and the database."""
    target = Path(app.config_path) if app.config_path else Path(directory) / "mailer.toml"
    if not app.config_path and not target.exists():
        # Commands find mailer.toml in the nearest folder upward: a second one inside a project
        # (`mailer init` typed in releases/, say) would silently take over that subfolder with an
        # empty database of its own.
        here = target.absolute().parent
        above = next(
            (f / "mailer.toml" for f in here.parents if (f / "mailer.toml").is_file()), None
        )
        if above is not None:
            raise click.ClickException(
                f"{here} is inside the project of {above}: commands run here already use it, "
                "and a mailer.toml here would hide it behind a new, empty database. Run "
                "`mailer init` in a folder outside that project; to start a separate project "
                f"here all the same: mailer --config {target.absolute()} init"
            )
    result = setup.init(target)
    echo(f"Created {result.config_path}")
    echo(f"Database ready: {result.database}")
    # The stand-ins stop every real send: say so before the user's first list and release.
    echo(
        f"Next: fill in organisation_name, postal_address, from_address, from_name and base_url "
        f'in {result.config_path}, then: mailer lists create press --name "Press"'
    )


@main.group()
def config() -> None:
    """Inspect the effective settings."""


@config.command("show")
@json_option
@pass_app
def config_show(app: AppContext, as_json: bool) -> None:
    """Print the effective settings, secrets masked."""
    settings = app.settings
    data = settings.public()
    if as_json:
        echo_json({"source": settings.source, "settings": data})
        return
    echo(f"# from {settings.source} and MAILER_* variables")
    width = max(len(k) for k in data)
    for key, value in data.items():
        echo(
            f"{key.ljust(width)} = {value!r}"
            if not isinstance(value, str)
            else f"{key.ljust(width)} = {value}"
        )


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Bring the database schema to the newest version."""
    before, after = setup.upgrade_database(app.settings)
    if before == after:
        echo(f"Database already at {after}.")
    else:
        echo(f"Database upgraded from {before or 'empty'} to {after}.")


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default="mailer-demo",
    show_default=True,
    help="A new folder for the demo.",
)
def demo(directory: str) -> None:
    """Run the whole job in a new folder: import, send a bilingual release to the outbox."""
    # Lazy: only `mailer demo` needs the send pipeline; init, config and db skip it.
    from mailer.demo import run_demo  # noqa: PLC0415

    folder = Path(directory).absolute()
    echo(f"Setting up a demo organisation in {folder} ...")
    r = run_demo(folder)
    sent = r.counts.get("sent", 0)
    echo(f"Imported the sample press list: {r.imported.get('contacts_added', 0)} contacts.")
    echo(
        f"Sent campaign {r.campaign_id} ({r.release.name} + its Korean variant) to the "
        f"outbox: {sent} messages, one per reporter, each in their language."
    )
    echo("")
    echo("Where to look:")
    echo(f"  {r.outbox}/new/                the messages as recipients get them")
    cfg = f"mailer --config {r.config}"
    echo(f"  {cfg} campaigns show {r.campaign_id}")
    echo(f"  {cfg} release preview {r.release} --all-langs -o preview.html")
    echo(f"  {cfg} contacts ls --list press")
    echo("Nothing left this machine: the demo uses the outbox transport.")
