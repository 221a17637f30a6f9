"""segments create | ls | show | preview | rm."""

from __future__ import annotations

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, echo_table, json_option, pass_app
from mailer.contacts import segments as segments_lib


@main.group("segments")
def segments_group() -> None:
    """Saved segments: part of lists, chosen with --where expressions."""


@segments_group.command("create")
@click.argument("name")
@click.option(
    "--list",
    "lists",
    multiple=True,
    required=True,
    help="List the segment is part of (repeatable).",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="EXPRESSION",
    help="Filter expression (repeatable: all must hold; docs/segments.md).",
)
@click.option("--description", default="", help="What the segment is for.")
@pass_app
def segments_create(
    app: AppContext, name: str, lists: tuple[str, ...], where: tuple[str, ...], description: str
) -> None:
    """Save a segment: contacts of these lists for whom every --where holds."""
    with app.session() as s:
        seg = segments_lib.create_segment(
            s, name, lists, where, description=description, actor="cli"
        )
        audience = segments_lib.resolve(s, seg.name, (), ())
        n = segments_lib.count(s, audience)
        echo(
            f"Segment {seg.name!r} saved: {n} contact(s) now (mailer segments preview {seg.name})."
        )


@segments_group.command("ls")
@json_option
@pass_app
def segments_ls(app: AppContext, as_json: bool) -> None:
    """List saved segments."""
    with app.session() as s:
        rows = [segments_lib.segment_as_dict(seg) for seg in segments_lib.all_segments(s)]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        echo("No segments yet: mailer segments create NAME --list SLUG --where EXPRESSION")
        return
    echo_table(
        ["NAME", "LISTS", "WHERE", "DESCRIPTION"],
        (
            [r["name"], ", ".join(r["lists"]), " and ".join(r["where"]) or "-", r["description"]]
            for r in rows
        ),
    )


@segments_group.command("show")
@click.argument("name")
@json_option
@pass_app
def segments_show(app: AppContext, name: str, as_json: bool) -> None:
    """Show a segment's lists, expressions and how many contacts it holds now."""
    with app.session() as s:
        seg = segments_lib.get_segment(s, name)
        data = segments_lib.segment_as_dict(seg)
        data["contacts"] = segments_lib.count(s, segments_lib.resolve(s, seg.name, (), ()))
    if as_json:
        echo_json(data)
        return
    echo(f"Segment {data['name']}" + (f": {data['description']}" if data["description"] else ""))
    echo(f"  lists: {', '.join(data['lists'])}")
    for expression in data["where"]:
        echo(f"  where: {expression}")
    echo(f"  contacts now: {data['contacts']} (subscribed, not suppressed)")


@segments_group.command("preview")
@click.argument("name")
@click.option("--limit", type=int, default=20, show_default=True, help="Rows to show.")
@json_option
@pass_app
def segments_preview(app: AppContext, name: str, limit: int, as_json: bool) -> None:
    """Count a segment's contacts per language and show the first of them."""
    with app.session() as s:
        audience = segments_lib.resolve(s, name, (), ())
        p = segments_lib.preview(s, audience, app.settings.default_language, limit=limit)
        rows = [
            [
                c.email,
                c.name,
                c.language or "",
                c.organisation,
                c.beat,
            ]
            for c in p.rows
        ]
    if as_json:
        echo_json(
            {
                "segment": audience.segment,
                "contacts": p.total,
                "by_language": p.by_language,
                "suppressed": p.suppressed,
                "first": [
                    dict(zip(["email", "name", "language", "outlet", "beat"], r, strict=True))
                    for r in rows
                ],
            }
        )
        return
    echo(
        f"Segment {audience.segment}: {p.total} contact(s) ("
        + ", ".join(f"{lang}: {n}" for lang, n in p.by_language.items())
        + ")"
        + (f"; {p.suppressed} more suppressed" if p.suppressed else "")
    )
    if rows:
        echo_table(["EMAIL", "NAME", "LANG", "OUTLET", "BEAT"], rows)


@segments_group.command("rm")
@click.argument("name")
@pass_app
def segments_rm(app: AppContext, name: str) -> None:
    """Delete a saved segment (campaigns sent to it keep its expressions)."""
    with app.session() as s:
        segments_lib.remove_segment(s, name, actor="cli")
    echo(f"Segment {name!r} deleted.")
