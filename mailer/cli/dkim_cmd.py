"""dkim keygen: a DKIM signing key, and the DNS record that publishes it."""

from __future__ import annotations

from pathlib import Path

import click

from mailer.cli import main
from mailer.cli.common import AppContext, pass_app
from mailer.delivery.dkim import generate_dkim_key


@main.group()
def dkim() -> None:
    """DKIM signing keys."""


@dkim.command("keygen")
@click.option(
    "--selector", default=None, help="DKIM selector (default: the dkim_selector setting)."
)
@click.option("--domain", default=None, help="Signing domain (default: the From domain).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="dkim.key",
    show_default=True,
    help="Where to write the private key.",
)
@pass_app
def dkim_keygen(app: AppContext, selector: str | None, domain: str | None, output: str) -> None:
    """Write a DKIM private key and print the DNS TXT record to publish."""
    settings = app.settings
    sel = selector or settings.dkim_selector
    dom = domain or settings.dkim_domain or settings.from_address.rpartition("@")[2]
    path = Path(output)
    if not path.is_absolute():
        path = settings.base_dir / path
    record = generate_dkim_key(path, sel, dom)
    # A 2048-bit key makes a value of ~410 characters, over the 255 octets one DNS string holds:
    # a zone file must split it (its parsers refuse a longer string), a web panel splits it
    # itself and wants it whole.
    click.echo(f"Wrote {path} (keep it secret). Publish this DNS record.")
    click.echo("")
    click.echo("In a zone file (BIND, nsd, knot), as several quoted strings:")
    click.echo(record.zone_form())
    click.echo("")
    click.echo("In a DNS provider's web panel: type TXT, name (host)")
    click.echo(f"  {record.selector}._domainkey")
    click.echo("and this value, on one line, without quotes (the panel splits it):")
    click.echo(f"  {record.value}")
    click.echo("")
    click.echo(
        f'Then set in mailer.toml: dkim_key_file = "{path.name}", dkim_selector = '
        f'"{sel}", dkim_domain = "{record.domain}"'
    )
