"""release preview | check | export | import | drafts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, echo_table, json_option, pass_app
from mailer.errors import InvalidInputError, NotFoundError
from mailer.releases import checks, render
from mailer.releases.languages import from_name, normalise
from mailer.releases.source import load_release

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@main.group("release")
def release_group() -> None:
    """Preview and check press releases (NAME.md, or NAME.en.md + NAME.ko.md)."""


@release_group.command("preview")
@click.argument("path", type=click.Path())
@click.option(
    "--lang",
    "language",
    default=None,
    help="Language variant to show (default: the release's default language).",
)
@click.option("--all-langs", is_flag=True, help="Every language variant.")
@click.option("--text", "as_text", is_flag=True, help="The text part instead of the HTML.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to FILE (with --all-langs: FILE.LANG.html, ...) instead of stdout.",
)
@click.option(
    "--list-name", default=None, help="List name for the footer's 'why you receive this' line."
)
@pass_app
def release_preview(
    app: AppContext,
    path: str,
    language: str | None,
    all_langs: bool,
    as_text: bool,
    output: Path | None,
    list_name: str | None,
) -> None:
    """Write the email as a subscriber would get it, with sample personal values."""
    if language and all_langs:
        raise click.UsageError("give --lang or --all-langs, not both")
    settings = app.settings
    release = load_release(path, settings.default_language)
    if all_langs:
        languages = list(release.languages)
    else:
        # As `contacts edit --lang` reads it: a code, or a name such as Korean or 한국어.
        languages = [
            normalise(from_name(language) or language) if language else release.default_language
        ]
        if languages[0] not in release.variants:
            raise InvalidInputError(
                f"{path}: no {languages[0]!r} variant (it has {', '.join(release.languages)})"
            )
    for lang in languages:
        page = render.preview(release, lang, settings, text=as_text, list_name=list_name)
        if output is None:
            if len(languages) > 1:
                click.echo(f"===== {release.slug} [{lang}] =====", err=True)
            click.echo(page, nl=False)
            continue
        target = (
            output
            if len(languages) == 1
            else output.with_name(
                f"{output.stem}.{lang}{output.suffix or ('.txt' if as_text else '.html')}"
            )
        )
        target.write_text(page, encoding="utf-8")
        click.echo(f"wrote {target} ({lang}, {len(page.encode('utf-8')) / 1024:.1f} KB)", err=True)


@release_group.command("check")
@click.argument("path", type=click.Path())
@click.option(
    "--list",
    "list_slugs",
    multiple=True,
    help="Audience list (repeatable; default: the front matter's `lists`).",
)
@json_option
@pass_app
def release_check(app: AppContext, path: str, list_slugs: tuple[str, ...], as_json: bool) -> None:
    """Report errors (exit status 1) and warnings before a release is sent."""
    # Lazy: only `release check` needs the send pipeline (SMTP, planning); preview skips it.
    from mailer.delivery.send import check_for_lists  # noqa: PLC0415

    settings = app.settings
    release = load_release(path, settings.default_language)
    slugs = list(list_slugs) or list(release.lists)
    checked = check_for_lists(settings, release, slugs)
    findings, audience = checked.findings, checked.audience
    if as_json:
        echo_json(
            {
                "release": release.slug,
                "languages": list(release.languages),
                "lists": slugs,
                "audience": audience,
                "findings": [f.as_dict() for f in findings],
            }
        )
    else:
        for finding in findings:
            click.echo(f"{finding.level}: {finding.message}")
        if audience is None:
            click.echo(
                "note: no lists given (--list or front matter `lists`); the readers' "
                "languages were not checked",
                err=True,
            )
        click.echo(checks.summary_line(findings, release), err=True)
    if checks.has_errors(findings):
        raise SystemExit(1)


# --- drafts: the console's releases as files, and back (mailer.releases.drafts) ----------------


def _draft_id(s: Session, ident: str) -> int:
    """A draft by its number or its name."""
    # Lazy: the drafts library and the models are only for these commands.
    from sqlalchemy import select  # noqa: PLC0415

    from mailer.releases import drafts  # noqa: PLC0415
    from mailer.store.models import ReleaseDraft  # noqa: PLC0415

    if ident.isdigit() and len(ident) < 10:
        return drafts.get_draft(s, int(ident)).id
    found = s.scalar(select(ReleaseDraft.id).where(ReleaseDraft.slug == ident))
    if found is None:
        raise NotFoundError(f"no release draft {ident!r} (see `mailer release drafts`)")
    return found


@release_group.command("export")
@click.argument("ident", metavar="ID")
@click.argument("folder", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--version", "number", type=int, default=None, help="A version (default: newest).")
@pass_app
def release_export(app: AppContext, ident: str, folder: Path, number: int | None) -> None:
    """Write a console draft (its number or name) as a release folder: NAME.LANG.md files and
    its press-kit files, as `release check` and `send` read them."""
    # Lazy: the drafts library is only for these commands.
    from mailer.releases import drafts  # noqa: PLC0415

    with app.session() as s:
        draft_id = _draft_id(s, ident)
        path = drafts.export(s, app.settings, draft_id, folder, version=number)
        version = drafts.get_version(s, draft_id, number)
        count = len(version.sources) + len(version.files)
    echo(f"wrote {path} (version {version.number}, {count} files in {folder})")


@release_group.command("import")
@click.argument("path", metavar="DIR", type=click.Path(exists=True, path_type=Path))
@pass_app
def release_import(app: AppContext, path: Path) -> None:
    """Read a release folder (or one of its NAME.md / NAME.LANG.md files) into the console: a
    new draft, or a new version of the draft of that name."""
    # Lazy: the drafts library is only for these commands.
    from mailer.releases import drafts  # noqa: PLC0415

    with app.session() as s:
        draft, version, created = drafts.import_release(s, app.settings, path, author="cli")
        slug, draft_id, number = draft.slug, draft.id, version.number
        count = len(version.files)
    what = "new draft" if created else "draft"
    echo(f"{slug}: {what} {draft_id}, version {number} ({count} press-kit files)")


@release_group.command("drafts")
@json_option
@pass_app
def release_drafts(app: AppContext, as_json: bool) -> None:
    """List the console's release drafts, last changed first."""
    # Lazy: the drafts library is only for these commands.
    from mailer.releases import drafts  # noqa: PLC0415

    with app.session() as s:
        rows: list[dict[str, Any]] = [
            {
                "id": d.draft.id,
                "name": d.draft.slug,
                "title": d.title,
                "version": d.draft.current_version,
                "languages": list(d.languages),
                "updated_at": d.draft.updated_at.isoformat(),
                "campaigns": [c.id for c in d.campaigns],
            }
            for d in drafts.list_drafts(s, app.settings)
        ]
    if as_json:
        echo_json(rows)
        return
    echo_table(
        ["ID", "NAME", "VERSION", "LANGUAGES", "UPDATED", "TITLE"],
        [
            [
                r["id"],
                r["name"],
                r["version"],
                ",".join(r["languages"]),
                r["updated_at"][:16],
                r["title"],
            ]
            for r in rows
        ],
        right=(0, 2),
    )
