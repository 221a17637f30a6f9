"""worker: send every due campaign (scheduled starts, retries), from as many processes as needed."""

from __future__ import annotations

import signal
from types import FrameType

import click

from mailer.cli import main
from mailer.cli.common import AppContext, pass_app
from mailer.delivery.send import checked_transport
from mailer.delivery.worker import Worker
from mailer.subscribers.queue import NoticeSender, send_due


@main.command()
@click.option(
    "--concurrency",
    type=int,
    default=None,
    help="SMTP connections in this process (default: the concurrency setting).",
)
@click.option("--once", is_flag=True, help="Send what is due now, then exit (for cron).")
@click.option(
    "--poll",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds between looks for new work when idle.",
)
@pass_app
def worker(app: AppContext, concurrency: int | None, once: bool, poll: float) -> None:
    """Send due campaigns; run several on PostgreSQL to send in parallel."""
    settings = app.settings
    transport = checked_transport(settings)
    w = Worker(
        settings,
        transport,
        concurrency=concurrency,
        poll_seconds=poll,
        on_result=lambda r: click.echo(
            f"campaign {r.campaign_id}: sent {r.progress.sent}, failed {r.progress.failed}"
            f", deferred {r.progress.deferred}, in doubt {r.progress.in_doubt}"
            + (" (done)" if r.complete else "")
        ),
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        click.echo("Stopping after the messages in flight ...", err=True)
        w.stop.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    click.echo(f"mailer worker: {transport.describe()}" + (" (once)" if once else ""), err=True)
    # Queued confirmation emails (the web form's notices) go out from here too.
    notices = None if once else NoticeSender(settings, poll=poll)
    if notices is not None:
        notices.start()
    try:
        w.run(once=once)
        if once:
            send_due(settings)
    finally:
        if notices is not None:
            notices.stop.set()
            notices.join(timeout=10)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
