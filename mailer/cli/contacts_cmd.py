"""contacts add | edit | tag | untag | show | ls | unsubscribe | erase."""

from __future__ import annotations

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, echo_table, json_option, pass_app
from mailer.contacts import contact as contacts_lib
from mailer.contacts import segments
from mailer.contacts.press import LABELS, PRESS_FIELDS
from mailer.errors import InvalidInputError


@main.group("contacts")
def contacts_group() -> None:
    """Contacts and their subscriptions."""


PRESS_HEADERS = ["ROLE", "BEAT", "MEDIA", "REGION", "PHONE"]  # PRESS_FIELDS in `contacts ls`


@contacts_group.command("add")
@click.argument("email")
@click.option("--list", "list_slug", required=True, help="List to subscribe the contact to.")
@click.option("--name", default="", help="Full name (any script).")
@click.option(
    "--lang",
    "language",
    default=None,
    help="Preferred language: a code (en, ko) or a name (English, 한국어).",
)
@click.option("--org", "organisation", default="", help="Organisation or outlet.")
@click.option("--tag", "tags", multiple=True, help="Tag the contact (repeatable).")
@pass_app
def contacts_add(
    app: AppContext,
    email: str,
    list_slug: str,
    name: str,
    language: str | None,
    organisation: str,
    tags: tuple[str, ...],
) -> None:
    """Add a contact and subscribe it to a list."""
    with app.session() as s:
        contact, sub = contacts_lib.add_contact(
            s, email, list_slug, name=name, language=language, organisation=organisation, tags=tags
        )
        echo(f"{contact.email}: {sub.status.value} to {list_slug!r}.")


def _parse_attributes(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--set {value!r}: expected NAME=VALUE, e.g. beat=politics")
        out[key.strip()] = text
    return out


@contacts_group.command("edit")
@click.argument("email")
@click.option("--name", default=None, help="New full name ('' to empty it).")
@click.option(
    "--lang",
    "language",
    default=None,
    help="New language, a code or a name ('' for the default language).",
)
@click.option("--org", "organisation", default=None, help="New organisation ('' to empty it).")
@click.option(
    "--set",
    "set_values",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set an attribute, or a press field: role, beat, media_type, region, phone, outlet "
    "(repeatable).",
)
@click.option(
    "--unset",
    "unset_values",
    multiple=True,
    metavar="NAME",
    help="Remove an attribute, or empty a press field (repeatable).",
)
@pass_app
def contacts_edit(
    app: AppContext,
    email: str,
    name: str | None,
    language: str | None,
    organisation: str | None,
    set_values: tuple[str, ...],
    unset_values: tuple[str, ...],
) -> None:
    """Change a contact's name, language, organisation, press fields or attributes."""
    attributes = _parse_attributes(set_values)
    with app.session() as s:
        contact, changed = contacts_lib.edit_contact(
            s,
            email,
            name=name,
            language=language,
            organisation=organisation,
            set_attributes=attributes,
            unset_attributes=unset_values,
        )
        if changed:
            echo(f"{contact.email}: changed {', '.join(changed)}.")
        else:
            echo(f"{contact.email}: nothing to change.")


@contacts_group.command("tag")
@click.argument("email")
@click.argument("tags", nargs=-1, required=True)
@pass_app
def contacts_tag(app: AppContext, email: str, tags: tuple[str, ...]) -> None:
    """Add one or more tags to a contact."""
    with app.session() as s:
        added = contacts_lib.tag_contact(s, email, tags)
        address = contacts_lib.get_contact(s, email).email
    echo(f"{address}: tagged {', '.join(added)}." if added else f"{address}: already tagged.")


@contacts_group.command("untag")
@click.argument("email")
@click.argument("tags", nargs=-1, required=True)
@pass_app
def contacts_untag(app: AppContext, email: str, tags: tuple[str, ...]) -> None:
    """Remove one or more tags from a contact."""
    with app.session() as s:
        removed = contacts_lib.untag_contact(s, email, tags)
        address = contacts_lib.get_contact(s, email).email
    if removed:
        echo(f"{address}: removed {', '.join(removed)}.")
    else:
        echo(f"{address}: had none of those tags.")


@contacts_group.command("show")
@click.argument("email")
@json_option
@pass_app
def contacts_show(app: AppContext, email: str, as_json: bool) -> None:
    """Show a contact, its subscriptions and any suppression."""
    with app.session() as s:
        data = contacts_lib.contact_as_dict(s, contacts_lib.get_contact(s, email))
    if as_json:
        echo_json(data)
        return
    echo(f"{data['email']}" + (f"  ({data['name']})" if data["name"] else ""))
    echo(f"  typed as:     {data['email_original']}")
    echo(f"  language:     {data['language'] or '-'}")
    echo(f"  organisation: {data['organisation'] or '-'}")
    for field in PRESS_FIELDS:
        if data[field]:
            echo(f"  {LABELS[field] + ':':<13} {data[field]}")
    if data["tags"]:
        echo(f"  tags:         {', '.join(data['tags'])}")
    for key, value in data["attributes"].items():
        echo(f"  {key}: {value}")
    if data["suppressed"]:
        echo(
            f"  SUPPRESSED:   {data['suppressed']['reason']} since "
            f"{data['suppressed']['since'][:10]}"
        )
    for sub in data["subscriptions"]:
        echo(f"  list {sub['list']}: {sub['status']} (source {sub['source']})")


@contacts_group.command("ls")
@click.option("--list", "list_slug", default=None, help="Only contacts on this list.")
@click.option(
    "--status",
    type=click.Choice(["pending", "subscribed", "unsubscribed"]),
    default=None,
    help="Only subscriptions with this status.",
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="EXPRESSION",
    help="Only contacts for whom this holds (repeatable; docs/segments.md).",
)
@click.option("--segment", default=None, metavar="NAME", help="Only this saved segment's contacts.")
@json_option
@pass_app
def contacts_ls(
    app: AppContext,
    list_slug: str | None,
    status: str | None,
    as_json: bool,
    where: tuple[str, ...] = (),
    segment: str | None = None,
) -> None:
    """List contacts, optionally by list and status."""
    with app.session() as s:
        chosen = segments.contact_filter(s, segment, where)
        rows = (
            contacts_lib.iter_contacts(s, list_slug, status)
            if chosen is None
            else segments.iter_contacts(s, chosen, list_slug, status)
        )
        if as_json:
            echo_json([contacts_lib.contact_as_dict(s, c) for c, _ in rows])
            return
        table = [
            [
                contact.email,
                contact.name,
                contact.language,
                contact.organisation,
                *(getattr(contact, field) for field in PRESS_FIELDS),
                ", ".join(sorted(t.tag for t in contact.tags)),
                ", ".join(f"{x.mailing_list.slug}:{x.status.value}" for x in subs),
            ]
            for contact, subs in rows
        ]
    # A press field's column only when someone listed has it: a plain mailing list stays narrow.
    header = ["EMAIL", "NAME", "LANG", "ORGANISATION", *PRESS_HEADERS, "TAGS", "LISTS"]
    keep = [
        i
        for i, title in enumerate(header)
        if title not in PRESS_HEADERS or any(row[i] for row in table)
    ]
    if table:
        echo_table([header[i] for i in keep], [[row[i] for i in keep] for row in table])
    echo(f"{len(table)} contact(s)", err=True)


@contacts_group.command("unsubscribe")
@click.argument("email")
@click.option(
    "--list",
    "list_slug",
    default=None,
    help="Only from this list (default: every list, and suppress the address).",
)
@click.option("--yes", is_flag=True, help="Suppress everywhere without asking.")
@pass_app
def contacts_unsubscribe(app: AppContext, email: str, list_slug: str | None, yes: bool) -> None:
    """Unsubscribe from one list, or suppress the address everywhere."""
    if list_slug is None:
        with app.session() as s:
            known = contacts_lib.find_contact(s, email) is not None
        if not known:
            echo(f"{email} is not a contact.")
        if not yes:
            click.confirm(
                f"Suppress {email} on every list, so it is never mailed again?"
                if known
                else f"Suppress {email} anyway, so it is never mailed?",
                abort=True,
            )
    with app.session() as s:
        changed = contacts_lib.unsubscribe(s, email, list_slug, via="cli")
    if list_slug is None:
        echo(
            f"{email}: suppressed (never mailed again)"
            + (f"; unsubscribed from {', '.join(changed)}." if changed else ".")
        )
    elif changed:
        echo(f"{email}: unsubscribed from {list_slug!r}.")
    else:
        echo(f"{email}: already unsubscribed from {list_slug!r}.")


@contacts_group.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def contacts_erase(app: AppContext, email: str, yes: bool) -> None:
    """Delete a person's data, keeping only a suppression so they are never mailed."""
    if not yes:
        click.confirm(f"Erase every personal detail of {email}?", abort=True)
    with app.session() as s:
        contacts_lib.erase(s, email)
    echo(f"{email}: erased; the address stays suppressed so it is never mailed again.")
