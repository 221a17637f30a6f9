"""serve: the subscriber pages on waitress (a production WSGI server, never Flask's own)."""

from __future__ import annotations

import logging

import click

from mailer.cli import main
from mailer.cli.common import AppContext, pass_app


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port to listen on.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Requests handled at once.")
@pass_app
def serve(app: AppContext, host: str, port: int, threads: int) -> None:
    """Serve the subscribe, confirm, unsubscribe and preferences pages."""
    import waitress

    from mailer.web import create_app

    settings = app.settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    wsgi = create_app(settings)
    server = waitress.create_server(wsgi, host=host, port=port, threads=threads,
                                    ident="mailer")
    click.echo(f"Serving the subscriber pages on http://{host}:{server.effective_port} "
               f"(public address: {settings.base_url}; Ctrl-C stops)", err=True)
    if settings.trust_proxy:
        click.echo("Trusting X-Forwarded-* headers from the proxy in front (trust_proxy).",
                   err=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
