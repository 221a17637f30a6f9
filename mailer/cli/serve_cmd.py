"""serve: the subscriber pages on waitress (a production WSGI server, never Flask's own).

waitress' own defaults (1 GiB bodies spooled to disk, 100 connections, 120 s of silence) let a
few slow or huge requests shut the one-click unsubscribe out: the web_* settings replace them.
A thread beside the server sends the queued confirmation emails (mailer.subscribers.queue).
"""

from __future__ import annotations

import logging

import click
import waitress

from mailer.cli import main
from mailer.cli.common import AppContext, pass_app
from mailer.errors import ConfigError
from mailer.subscribers.queue import NoticeSender
from mailer.web import create_app


@main.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface).",
)
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port to listen on.",
)
@click.option(
    "--threads",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Requests handled at once.",
)
@click.option(
    "--no-notices",
    is_flag=True,
    help="Do not send confirmation emails from this process (a `mailer worker` does).",
)
@pass_app
def serve(app: AppContext, host: str, port: int, threads: int, no_notices: bool) -> None:
    """Serve the subscribe, confirm, unsubscribe and preferences pages."""
    settings = app.settings
    for name in (
        "web_max_body_bytes",
        "web_max_header_bytes",
        "web_channel_timeout",
        "web_connection_limit",
    ):
        if getattr(settings, name) < 1:
            raise ConfigError(
                f"{settings.source}: {name}: expected at least 1, got {getattr(settings, name)}"
            )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    wsgi = create_app(settings)
    server = waitress.create_server(
        wsgi,
        host=host,
        port=port,
        threads=threads,
        ident="mailer",
        # A declared Content-Length over this gets 413 before one byte of the body is read.
        max_request_body_size=settings.web_max_body_bytes,
        max_request_header_size=settings.web_max_header_bytes,
        channel_timeout=settings.web_channel_timeout,
        # Each open connection is one socket in the poll set, not a thread: slow clients cost
        # little, so the limit can be far above waitress' 100 (poll(), not select()'s 1024).
        connection_limit=settings.web_connection_limit,
        asyncore_use_poll=True,
        cleanup_interval=max(1, min(30, settings.web_channel_timeout // 2)),
    )
    sender = None if no_notices else NoticeSender(settings)
    if sender is not None:
        sender.start()
    click.echo(
        f"Serving the subscriber pages on http://{host}:{server.effective_port} "
        f"(public address: {settings.base_url}; Ctrl-C stops)",
        err=True,
    )
    if settings.trust_proxy:
        click.echo(
            "Trusting X-Forwarded-* headers from the proxy in front (trust_proxy).", err=True
        )
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        if sender is not None:
            sender.stop.set()
            sender.join(timeout=10)
