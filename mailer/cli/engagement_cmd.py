"""engagement purge."""

from __future__ import annotations

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, json_option, pass_app


@main.group("engagement")
def engagement_group() -> None:
    """Click tracking's per-person records: retention."""


@engagement_group.command("purge")
@json_option
@pass_app
def engagement_purge(app: AppContext, as_json: bool) -> None:
    """Forget who clicked, for clicks older than engagement_retention_days (counts are kept).

    `mailer serve` and `mailer worker` do this by themselves once an hour; this runs it now."""
    # Lazy: the command module loads with `mailer --help`'s listing; the library only here.
    from mailer.engagement.retention import cutoff, purge  # noqa: PLC0415

    with app.session() as s:
        before = cutoff(app.settings)
        n = purge(s, app.settings)
    if as_json:
        echo_json({"rows": n, "before": before.isoformat() if before else None})
        return
    if before is None:
        echo("engagement_retention_days = 0: clicks keep their person until erased.")
        return
    echo(
        f"{n} click(s) older than {app.settings.engagement_retention_days} days no longer name "
        "anyone (the counts per link and language are kept)."
    )
