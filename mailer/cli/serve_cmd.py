"""serve: the subscriber pages and the staff console on waitress (never Flask's own server).

waitress' own defaults (1 GiB bodies spooled to disk, 100 connections, 120 s of silence) let a
few slow or huge requests shut the one-click unsubscribe out: the web_* settings replace them.
A thread beside the server sends the queued confirmation emails (mailer.subscribers.queue), and
another runs the delivery worker (mailer.delivery.worker_thread: setting `serve_worker`,
`--no-worker`), so sends started from the console go out without a second process.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from typing import Any

import click
import waitress
from flask import Flask

from mailer.cli import main
from mailer.cli.common import AppContext, pass_app
from mailer.config import Settings
from mailer.delivery.worker_thread import EmbeddedWorker
from mailer.engagement.recorder import stop_all as stop_recorders
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
@click.option(
    "--no-worker",
    is_flag=True,
    help="Do not send campaigns from this process (separate `mailer worker` processes do); "
    "the default follows the serve_worker setting.",
)
@pass_app
def serve(
    app: AppContext, host: str, port: int, threads: int, no_notices: bool, no_worker: bool
) -> None:
    """Serve the subscriber pages and the staff console (/admin/)."""
    settings = app.settings
    embedded = settings.serve_worker and not no_worker
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
    # With console_listen the console gets a server of its own (and the public one has none):
    # the subscriber pages can face the internet while the console stays on a private address.
    separate = settings.console and bool(settings.console_listen)
    public = _server(
        settings,
        _app(create_app(settings, console=settings.console and not separate), embedded),
        host=host,
        port=port,
        threads=threads,
        uploads=settings.console and not separate,
    )
    console = None
    if separate:
        console_host, _, console_port = settings.console_listen.rpartition(":")
        console = _server(
            settings,
            _app(create_app(settings, public=False, console=True), embedded),
            host=console_host.strip("[]"),
            port=int(console_port),
            threads=threads,
            uploads=True,
        )
    sender = None if no_notices else NoticeSender(settings)
    if sender is not None:
        sender.start()
    worker = EmbeddedWorker(settings) if embedded else None
    if worker is not None:
        worker.start()
        click.echo("Campaigns are sent by the worker inside this server (serve_worker).", err=True)
    else:
        click.echo("Campaigns are sent by separate `mailer worker` processes.", err=True)
    click.echo(
        f"Serving the subscriber pages on http://{host}:{public.effective_port} "
        f"(public address: {settings.base_url}; Ctrl-C stops)",
        err=True,
    )
    if console is not None:
        click.echo(
            f"Serving the staff console on http://{settings.console_listen}/admin/", err=True
        )
        threading.Thread(target=console.run, name="console", daemon=True).start()
    elif settings.console:
        click.echo(
            f"The staff console is at http://{host}:{public.effective_port}/admin/", err=True
        )
    if settings.trust_proxy:
        click.echo(
            "Trusting X-Forwarded-* headers from the proxy in front (trust_proxy).", err=True
        )
    # Everything loaded so far (the apps, templates, the ORM's mappers) lives as long as the
    # server: frozen, the garbage collector stops walking it on every collection, whose pauses
    # were the /l/ redirect's slowest answers under load.
    gc.collect()
    gc.freeze()
    # SIGTERM (systemd, docker stop) ends the server like Ctrl-C: the finally below runs.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        public.run()
    except KeyboardInterrupt:
        pass
    finally:
        public.close()
        # The clicks still queued are written, and the journal removed (mailer.engagement).
        stop_recorders()
        if console is not None:
            console.close()
        if sender is not None:
            sender.stop.set()
            sender.join(timeout=10)
        if worker is not None:
            # The messages in flight finish; the ledger makes anything cut short safe to resume.
            worker.stop.set()
            worker.join(timeout=30)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _app(wsgi: Flask, embedded: bool) -> Flask:
    """The console tells who carries out its sends: this server's worker or separate ones."""
    wsgi.config["MAILER_EMBEDDED_WORKER"] = embedded
    return wsgi


def _server(
    settings: Settings, wsgi: Flask, *, host: str, port: int, threads: int, uploads: bool
) -> Any:
    """A waitress server for `wsgi` with the web_* limits (`uploads`: the console's file
    uploads may be larger; the app still holds every other request to web_max_body_bytes)."""
    body = settings.web_max_body_bytes
    if uploads:
        body = max(body, settings.console_max_upload_bytes)
    return waitress.create_server(
        wsgi,
        host=host,
        port=port,
        threads=threads,
        ident="mailer",
        # A declared Content-Length over this gets 413 before one byte of the body is read.
        max_request_body_size=body,
        max_request_header_size=settings.web_max_header_bytes,
        channel_timeout=settings.web_channel_timeout,
        # Each open connection is one socket in the poll set, not a thread: slow clients cost
        # little, so the limit can be far above waitress' 100 (poll(), not select()'s 1024).
        connection_limit=settings.web_connection_limit,
        asyncore_use_poll=True,
        cleanup_interval=max(1, min(30, settings.web_channel_timeout // 2)),
    )
