"""news ls | show | withdraw | correct | preview-link."""

from __future__ import annotations

from typing import Any

import click

from mailer import clock
from mailer.cli import main
from mailer.cli.common import (
    AppContext,
    echo,
    echo_json,
    echo_table,
    json_option,
    local_time,
    pass_app,
    time_zone,
)
from mailer.newsroom import admin, state


@main.group("news")
def news_group() -> None:
    """The public newsroom: releases on the web, previews, withdrawals, corrections."""


@news_group.command("ls")
@json_option
@pass_app
def news_ls(app: AppContext, as_json: bool) -> None:
    """List the newsroom's releases, newest first, whatever their state."""
    with app.session() as s:
        rows = admin.listing(s, app.settings, clock.now())
    if as_json:
        echo_json(rows)
        return
    if not rows:
        echo("No releases in the newsroom yet: a release enters it when it is sent to a list.")
        return
    zone, zone_name = time_zone(app.settings)
    echo_table(
        ["RELEASE", "STATUS", f"PUBLIC FROM ({zone_name})", "LANGUAGES", "LISTS"],
        (
            [
                r["release"],
                r["status"],
                local_time(r["public_from"], zone),
                ", ".join(r["languages"]),
                ", ".join(r["lists"]),
            ]
            for r in rows
        ),
    )


def _echo_show(data: dict[str, Any], app: AppContext) -> None:
    zone, _ = time_zone(app.settings)
    echo(f"{data['release']}: {data['title']}")
    echo(f"  status:      {data['status']}" + ("" if data["publish"] else " (kept off)"))
    echo(f"  lists:       {', '.join(data['lists']) or '-'}")
    echo(f"  embargo:     {local_time(data['embargo'], zone, named=True)}")
    echo(f"  first sent:  {local_time(data['first_sent_at'], zone, named=True)}")
    echo(f"  public from: {local_time(data['public_from'], zone, named=True)}")
    for code, url in data["urls"].items():
        echo(f"  [{code}] {url}")
    if data["withdrawn_at"]:
        echo(
            f"  withdrawn {local_time(data['withdrawn_at'], zone, named=True)}: "
            f"{data['withdrawn_note']}"
        )
    for note in data["corrections"]:
        what = "updated" if note["update"] else "correction"
        echo(f"  {what} {local_time(note['at'], zone, named=True)}: {note['note']}".rstrip(": "))


@news_group.command("show")
@click.argument("slug")
@json_option
@pass_app
def news_show(app: AppContext, slug: str, as_json: bool) -> None:
    """A release's state in the newsroom, its URLs, withdrawal and corrections."""
    with app.session() as s:
        data = admin.describe(app.settings, state.get(s, slug), clock.now())
    if as_json:
        echo_json(data)
    else:
        _echo_show(data, app)


@news_group.command("withdraw")
@click.argument("slug")
@click.option("--note", required=True, help="Why it was withdrawn (shown on its page).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def news_withdraw(app: AppContext, slug: str, note: str, yes: bool) -> None:
    """Withdraw a release: its page then says so, with the note, and shows no content."""
    if not yes:
        click.confirm(
            f"Withdraw {slug!r} from the newsroom? Its page will show only the note.", abort=True
        )
    with app.session() as s:
        state.withdraw(s, slug, note, actor="cli")
    echo(f"{slug}: withdrawn. Its page now says so (shared caches follow within a minute).")


@news_group.command("correct")
@click.argument("slug")
@click.option("--note", required=True, help="The correction, as readers should see it.")
@pass_app
def news_correct(app: AppContext, slug: str, note: str) -> None:
    """Add a visible correction note to a release's page (send a corrected version with
    `mailer send --new-version` to replace its text too)."""
    with app.session() as s:
        state.correct(s, slug, note, actor="cli")
    echo(f"{slug}: correction added to its page.")


@news_group.command("preview-link")
@click.argument("slug")
@click.option(
    "--hours",
    type=float,
    default=48.0,
    show_default=True,
    help="How long the link works.",
)
@json_option
@pass_app
def news_preview_link(app: AppContext, slug: str, hours: float, as_json: bool) -> None:
    """A signed link that shows a release before it is public, marked EMBARGOED; it expires."""
    with app.session() as s:
        expires, urls = admin.preview_links(s, app.settings, slug, hours, clock.now())
    if as_json:
        echo_json({"release": slug, "expires": expires.isoformat(), "urls": urls})
        return
    zone, _ = time_zone(app.settings)
    echo(
        f"Preview of {slug}, until {local_time(expires, zone, named=True)} "
        "(anyone with the link can read it):"
    )
    for code, url in urls.items():
        echo(f"  [{code}] {url}")
