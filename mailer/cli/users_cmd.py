"""users add | ls | role | disable | enable | invite | unlock | reset-2fa | require-2fa.

For the admin at a terminal: the first account, and the way back in for someone locked out of
the console (a lost phone, a forgotten password with no mail server, the only admin disabled).
"""

from __future__ import annotations

from typing import Any

import click

from mailer.cli import main
from mailer.cli.common import AppContext, echo, echo_json, echo_table, json_option, pass_app
from mailer.errors import MailerError
from mailer.staff import accounts, roles
from mailer.staff import mail as staff_mail

_ROLE_HELP = (
    "viewer (reports), editor (contacts, releases, test sends), sender (also sends and "
    "approves), admin (also users, lists, imports, suppressions)."
)


@main.group("users")
def users_group() -> None:
    """Staff accounts of the web console (mailer serve, /admin/)."""


def _send_invitation(app: AppContext, email: str, link: str) -> None:
    """Email the link when possible; the link is printed either way."""
    settings = app.settings
    with app.session() as s:
        user = accounts.get(s, email)
        s.expunge(user)
    try:
        staff_mail.send(settings, user, "invite", link)
    except MailerError as err:
        echo(f"(Not emailed: {err}. Send the link yourself.)")
        return
    where = "the outbox" if settings.transport == "outbox" else email
    echo(f"Emailed to {where} too.")


@users_group.command("add")
@click.argument("email")
@click.option("--role", required=True, help=_ROLE_HELP)
@click.option("--name", default="", help="The person's name.")
@click.option(
    "--language", default="en", type=click.Choice(["en", "ko"]), help="Their console language."
)
@pass_app
def users_add(app: AppContext, email: str, role: str, name: str, language: str) -> None:
    """Add an account and print its one-time invitation link (valid 7 days)."""
    with app.session() as s:
        user, token = accounts.add(s, email, role, name=name, language=language, actor="cli")
        address, role_name = user.email, user.role.value
    link = staff_mail.invitation_link(app.settings, token)
    echo(f"{address} is invited as {role_name}. Invitation link (works once, for 7 days):")
    echo(link)
    _send_invitation(app, address, link)


@users_group.command("invite")
@click.argument("email")
@pass_app
def users_invite(app: AppContext, email: str) -> None:
    """Print a new invitation link for an account that has no password yet."""
    with app.session() as s:
        user = accounts.get(s, email)
        token = accounts.reinvite(s, user, actor="cli")
        address = user.email
    link = staff_mail.invitation_link(app.settings, token)
    echo(f"New invitation link for {address} (the older ones stop working):")
    echo(link)
    _send_invitation(app, address, link)


@users_group.command("ls")
@json_option
@pass_app
def users_ls(app: AppContext, as_json: bool) -> None:
    """List staff accounts."""
    with app.session() as s:
        rows: list[dict[str, Any]] = [
            {
                "email": u.email,
                "name": u.name,
                "role": u.role.value,
                "status": "disabled"
                if u.disabled
                else ("active" if u.password_hash else "invited"),
                "two_factor": u.totp_enabled,
                "last_sign_in": u.last_login_at.isoformat() if u.last_login_at else None,
            }
            for u in accounts.all_users(s)
        ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        echo("No staff accounts yet: mailer users add EMAIL --role admin")
        return
    echo_table(
        ["email", "name", "role", "status", "2fa", "last sign-in"],
        [
            [
                r["email"],
                r["name"],
                r["role"],
                r["status"],
                "on" if r["two_factor"] else "off",
                (r["last_sign_in"] or "")[:16],
            ]
            for r in rows
        ],
    )


@users_group.command("role")
@click.argument("email")
@click.argument("role")
@pass_app
def users_role(app: AppContext, email: str, role: str) -> None:
    """Change an account's role (its sessions end)."""
    with app.session() as s:
        user = accounts.get(s, email)
        accounts.set_role(s, user, roles.parse(role), actor="cli")
        echo(f"{user.email} is now {user.role.value}.")


@users_group.command("disable")
@click.argument("email")
@pass_app
def users_disable(app: AppContext, email: str) -> None:
    """Disable an account (signed out at once; the account and its history stay)."""
    with app.session() as s:
        user = accounts.get(s, email)
        accounts.set_disabled(s, user, True, actor="cli")
        echo(f"{user.email} is disabled.")


@users_group.command("enable")
@click.argument("email")
@pass_app
def users_enable(app: AppContext, email: str) -> None:
    """Enable a disabled account."""
    with app.session() as s:
        user = accounts.get(s, email)
        accounts.set_disabled(s, user, False, actor="cli")
        echo(f"{user.email} is enabled.")


@users_group.command("unlock")
@click.argument("email")
@pass_app
def users_unlock(app: AppContext, email: str) -> None:
    """Forget an account's failed sign-ins (it was locked after too many)."""
    with app.session() as s:
        user = accounts.get(s, email)
        accounts.unlock(s, user, actor="cli")
        echo(f"{user.email} can sign in again.")


@users_group.command("reset-2fa")
@click.argument("email")
@pass_app
def users_reset_2fa(app: AppContext, email: str) -> None:
    """Turn off an account's two-factor sign-in (a lost phone); they set it up again."""
    with app.session() as s:
        user = accounts.get(s, email)
        accounts.reset_2fa(s, user, actor="cli")
        echo(f"Two-factor sign-in is off for {user.email}; they are signed out everywhere.")


@users_group.command("require-2fa")
@click.argument("role")
@click.option("--off", is_flag=True, help="No longer require it.")
@pass_app
def users_require_2fa(app: AppContext, role: str, off: bool) -> None:
    """Require two-factor sign-in of every account with ROLE (at their next sign-in)."""
    parsed = roles.parse(role)
    with app.session() as s:
        accounts.set_require_2fa(s, parsed, not off, actor="cli")
    state = "no longer required" if off else "required"
    echo(f"Two-factor sign-in is {state} for {parsed.value} accounts.")
