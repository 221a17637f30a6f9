"""contacts add | show | ls | unsubscribe | erase."""

from __future__ import annotations

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, json_option, pass_app
from mailer.contacts import contact as contacts_lib


@main.group("contacts")
def contacts_group() -> None:
    """Contacts and their subscriptions."""


@contacts_group.command("add")
@click.argument("email")
@click.option("--list", "list_slug", required=True, help="List to subscribe the contact to.")
@click.option("--name", default="", help="Full name (any script).")
@click.option("--lang", "language", default=None, help="Preferred language, e.g. en or ko.")
@click.option("--org", "organisation", default="", help="Organisation or outlet.")
@pass_app
def contacts_add(app: AppContext, email: str, list_slug: str, name: str, language: str | None,
                 organisation: str) -> None:
    """Add a contact and subscribe it to a list."""
    with app.session() as s:
        contact, sub = contacts_lib.add_contact(s, email, list_slug, name=name, language=language,
                                                organisation=organisation)
        echo(f"{contact.email}: {sub.status.value} to {list_slug!r}.")


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
    if data["tags"]:
        echo(f"  tags:         {', '.join(data['tags'])}")
    for key, value in data["attributes"].items():
        echo(f"  {key}: {value}")
    if data["suppressed"]:
        echo(f"  SUPPRESSED:   {data['suppressed']['reason']} since "
                   f"{data['suppressed']['since'][:10]}")
    for sub in data["subscriptions"]:
        echo(f"  list {sub['list']}: {sub['status']} (source {sub['source']})")


@contacts_group.command("ls")
@click.option("--list", "list_slug", default=None, help="Only contacts on this list.")
@click.option("--status", type=click.Choice(["pending", "subscribed", "unsubscribed"]),
              default=None, help="Only subscriptions with this status.")
@json_option
@pass_app
def contacts_ls(app: AppContext, list_slug: str | None, status: str | None,
                as_json: bool) -> None:
    """List contacts, optionally by list and status."""
    with app.session() as s:
        rows = contacts_lib.iter_contacts(s, list_slug, status)
        if as_json:
            echo_json([contacts_lib.contact_as_dict(s, c) for c, _ in rows])
            return
        n = 0
        for contact, subs in rows:
            n += 1
            lists = ", ".join(f"{x.mailing_list.slug}:{x.status.value}" for x in subs)
            echo(f"{contact.email:<40} {contact.language or '-':<5} "
                       f"{contact.name:<24} {lists}")
        echo(f"{n} contact(s)", err=True)


@contacts_group.command("unsubscribe")
@click.argument("email")
@click.option("--list", "list_slug", default=None,
              help="Only from this list (default: every list, and suppress the address).")
@pass_app
def contacts_unsubscribe(app: AppContext, email: str, list_slug: str | None) -> None:
    """Unsubscribe from one list, or suppress the address everywhere."""
    with app.session() as s:
        changed = contacts_lib.unsubscribe(s, email, list_slug, via="cli")
    if list_slug is None:
        echo(f"{email}: suppressed (never mailed again)" +
                   (f"; unsubscribed from {', '.join(changed)}." if changed else "."))
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
