"""lists create | edit | ls | show | rm."""

from __future__ import annotations

from typing import Any

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, echo_table, json_option, pass_app
from mailer.store import quick

# The library (SQLAlchemy and the models) is imported inside each command that needs
# it: `lists ls` on SQLite needs none of it (mailer/store/quick.py), and it is most of the
# start-up of every command.


@main.group("lists")
def lists_group() -> None:
    """Mailing lists."""


def _names(name_ko: str | None, local: tuple[str, ...]) -> dict[str, str]:
    """--name-ko and --local-name LANG=NAME as {language: name}."""
    out: dict[str, str] = {}
    for item in local:
        language, sep, text = item.partition("=")
        if not sep or not language.strip():
            raise click.BadParameter(
                f"expected LANG=NAME, e.g. ko=보도자료, got {item!r}", param_hint="--local-name"
            )
        out[language.strip()] = text
    if name_ko is not None:
        out["ko"] = name_ko
    return out


def _local_name_options(f: Any) -> Any:
    f = click.option(
        "--local-name",
        "local",
        multiple=True,
        metavar="LANG=NAME",
        help="The name in another language (repeatable), e.g. ja=プレス.",
    )(f)
    return click.option(
        "--name-ko", default=None, help="The name Korean readers see (default: --name)."
    )(f)


@lists_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help='Display name in the default language, e.g. "Press".')
@_local_name_options
@click.option("--description", default="", help="What subscribers get.")
@click.option("--public", is_flag=True, help="Offer this list on the subscribe form.")
@click.option("--from", "from_address", default=None, help="From address for this list.")
@click.option(
    "--press",
    is_flag=True,
    help="A press list: it may get an embargoed release before the embargo, marked EMBARGOED.",
)
@click.option(
    "--archive/--no-archive",
    default=True,
    show_default=True,
    help="Releases sent to this list may appear in the public newsroom "
    "(--no-archive: a member-only newsletter).",
)
@click.option(
    "--track-clicks/--no-track-clicks",
    "track_clicks",
    default=None,
    help="Send its links through /l/ to count clicks [default: on for --press lists].",
)
@click.option(
    "--track-people/--no-track-people",
    "track_people",
    default=None,
    help="Record who clicked, not only how many [default: on for --press lists].",
)
@pass_app
def lists_create(
    app: AppContext,
    slug: str,
    name: str,
    description: str,
    public: bool,
    from_address: str | None,
    name_ko: str | None,
    local: tuple[str, ...],
    press: bool,
    archive: bool,
    track_clicks: bool | None,
    track_people: bool | None,
) -> None:
    """Create a list."""
    from mailer.contacts import lists as lists_lib  # noqa: PLC0415 (see the note above the imports)

    with app.session() as s:
        ml = lists_lib.create_list(
            s,
            slug,
            name,
            description,
            public=public,
            from_address=from_address,
            names=_names(name_ko, local),
            press=press,
            archive=archive,
            track_clicks=track_clicks,
            track_people=track_people,
        )
        others = "".join(f", {lang}: {text}" for lang, text in sorted(ml.names.items()))
        echo(f"Created list {ml.slug!r} ({ml.name}{others}){_flags(ml.press, ml.archive)}.")
        echo(f"  {_tracking(ml.track_clicks, ml.track_people)}")


def _tracking(clicks: bool, people: bool) -> str:
    """What a list's engagement flags mean (docs/engagement.md)."""
    if not clicks:
        return "clicks: not tracked"
    return "clicks: tracked" + (", per person" if people else ", counted per link only")


def _flags(press: bool, archive: bool) -> str:
    """What a list's flags mean for its releases, said once a list is created or changed."""
    said = []
    if press:
        said.append("a press list: embargoed releases may reach it early, marked EMBARGOED")
    if not archive:
        said.append("kept out of the newsroom")
    return "".join(f"; {x}" for x in said)


@lists_group.command("edit")
@click.argument("slug")
@click.option("--name", default=None, help="New display name (default language).")
@_local_name_options
@click.option("--description", default=None, help="New description.")
@click.option(
    "--public/--private",
    "public",
    default=None,
    help="Offer (or stop offering) this list on the subscribe form.",
)
@click.option(
    "--press/--no-press",
    "press",
    default=None,
    help="Make it a press list (embargoed releases may reach it early, marked EMBARGOED), or stop.",
)
@click.option(
    "--archive/--no-archive",
    "archive",
    default=None,
    help="Let releases sent to it appear in the public newsroom, or keep them off.",
)
@click.option(
    "--track-clicks/--no-track-clicks",
    "track_clicks",
    default=None,
    help="Send its links through /l/ to count clicks, or stop.",
)
@click.option(
    "--track-people/--no-track-people",
    "track_people",
    default=None,
    help="Record who clicked, or count clicks per link only.",
)
@pass_app
def lists_edit(
    app: AppContext,
    slug: str,
    name: str | None,
    description: str | None,
    public: bool | None,
    name_ko: str | None,
    local: tuple[str, ...],
    press: bool | None,
    archive: bool | None,
    track_clicks: bool | None,
    track_people: bool | None,
) -> None:
    """Change a list's name, description, visibility, press or newsroom flag (--name-ko ""
    removes the Korean name)."""
    from mailer.contacts import lists as lists_lib  # noqa: PLC0415 (see the note above the imports)

    with app.session() as s:
        ml = lists_lib.edit_list(
            s,
            slug,
            name=name,
            description=description,
            public=public,
            names=_names(name_ko, local),
            press=press,
            archive=archive,
            track_clicks=track_clicks,
            track_people=track_people,
        )
        flags = _flags(ml.press, ml.archive) if press is not None or archive is not None else ""
        echo(f"Updated list {ml.slug!r} ({ml.name}){flags}.")
        if track_clicks is not None or track_people is not None:
            echo(f"  {_tracking(ml.track_clicks, ml.track_people)}")


@lists_group.command("ls")
@json_option
@pass_app
def lists_ls(app: AppContext, as_json: bool) -> None:
    """Show every list with its subscriber counts."""
    rows = None if as_json else quick.list_rows(app.settings.database_url)
    if rows is None:
        from mailer.contacts import lists as lists_lib  # noqa: PLC0415 (see the note above the imports)

        with app.session() as s:
            summaries = lists_lib.all_lists(s)
            if as_json:
                echo_json([x.as_dict() for x in summaries])
                return
            rows = [
                quick.ListRow(
                    x.mailing_list.slug,
                    x.mailing_list.name,
                    x.mailing_list.public,
                    x.mailing_list.press,
                    x.mailing_list.archive,
                    x.counts["subscribed"],
                    x.counts["pending"],
                    x.counts["unsubscribed"],
                )
                for x in summaries
            ]
    if not rows:
        echo("No lists yet: mailer lists create SLUG --name NAME")
        return
    echo_table(
        ["SLUG", "SUBSCRIBED", "PENDING", "UNSUBSCRIBED", "PUBLIC", "PRESS", "ARCHIVE", "NAME"],
        (
            [
                r.slug,
                r.subscribed,
                r.pending,
                r.unsubscribed,
                "yes" if r.public else "no",
                "yes" if r.press else "no",
                "yes" if r.archive else "no",
                r.name,
            ]
            for r in rows
        ),
        right=(1, 2, 3),
    )


@lists_group.command("show")
@click.argument("slug")
@json_option
@pass_app
def lists_show(app: AppContext, slug: str, as_json: bool) -> None:
    """Show one list and its subscriber counts by status."""
    from mailer.contacts import lists as lists_lib  # noqa: PLC0415 (see the note above the imports)

    with app.session() as s:
        summary = lists_lib.summarise(s, lists_lib.get_list(s, slug))
        data = summary.as_dict()
        if as_json:
            echo_json(data)
            return
        echo(f"{data['slug']}: {data['name']}")
        for lang, text in sorted(data["names"].items()):
            echo(f"  name [{lang}]: {text}")
        if data["description"]:
            echo(f"  {data['description']}")
        echo(f"  public: {'yes' if data['public'] else 'no'}")
        press = "yes (embargoed releases may reach it early, marked)" if data["press"] else "no"
        echo(f"  press: {press}")
        archive = "yes (in the newsroom)" if data["archive"] else "no (kept out of the newsroom)"
        echo(f"  archive: {archive}")
        echo(f"  {_tracking(data['track_clicks'], data['track_people'])}")
        for status, n in data["subscribers"].items():
            echo(f"  {status:<13} {n}")


@lists_group.command("rm")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def lists_rm(app: AppContext, slug: str, yes: bool) -> None:
    """Delete a list and its subscriptions (contacts and suppressions stay)."""
    from mailer.contacts import lists as lists_lib  # noqa: PLC0415 (see the note above the imports)

    with app.session() as s:
        summary = lists_lib.summarise(s, lists_lib.get_list(s, slug))
        total = sum(summary.counts.values())
        if total and not yes:
            click.confirm(f"List {slug!r} has {total} subscriptions. Delete it?", abort=True)
        lists_lib.remove_list(s, slug)
        echo(f"Deleted list {slug!r} ({total} subscriptions).")
