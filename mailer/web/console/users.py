"""Staff accounts for admins: invite, change role, disable, reset two-factor login, unlock, and
which roles must use two-factor sign-in."""

from __future__ import annotations

import logging

from flask import Response, request

from mailer.errors import InvalidInputError, MailerError
from mailer.staff import accounts, roles
from mailer.staff import mail as staff_mail
from mailer.store.models import StaffUser
from mailer.web.console import bp
from mailer.web.console.base import _, actor, notice_then, render, user
from mailer.web.pages import db, settings

log = logging.getLogger("mailer.console")


def _target(user_id: int) -> StaffUser:
    found = db().get(StaffUser, user_id)
    if found is None:
        # Lazy: flask.abort is only needed on this path.
        from flask import abort  # noqa: PLC0415

        abort(404)
    return found


@bp.get("/users")
def users() -> Response:
    policy = {role: accounts.requires_2fa(db(), role) for role in roles.ORDER}
    return render(
        "users.html",
        users=accounts.all_users(db()),
        roles=roles.ORDER,
        policy=policy,
        invited_link=None,
        error="",
    )


@bp.post("/users")
def users_invite() -> Response:
    email = request.form.get("email", "")[:320]
    role = request.form.get("role", "")
    language = request.form.get("language", "en")
    try:
        new, token = accounts.add(
            db(),
            email,
            role,
            name=request.form.get("name", "")[:200],
            language=language,
            actor=actor(),
        )
    except InvalidInputError as err:
        policy = {r: accounts.requires_2fa(db(), r) for r in roles.ORDER}
        return render(
            "users.html",
            status=422,
            users=accounts.all_users(db()),
            roles=roles.ORDER,
            policy=policy,
            invited_link=None,
            error=_("The invitation was not made: %(error)s", error=str(err)),
        )
    link = staff_mail.invitation_link(settings(), token)
    sent = _email(new, "invite", link)
    policy = {r: accounts.requires_2fa(db(), r) for r in roles.ORDER}
    return render(
        "users.html",
        users=accounts.all_users(db()),
        roles=roles.ORDER,
        policy=policy,
        invited_link=link,
        invited=new,
        emailed=sent,
        error="",
    )


def _email(target: StaffUser, kind: str, link: str) -> bool:
    try:
        staff_mail.send(settings(), target, kind, link)
    except MailerError as err:
        log.error("invitation email could not be sent: %s", err)
        return False
    return True


@bp.post("/users/<int:user_id>/role")
def user_role(user_id: int) -> Response:
    target = _target(user_id)
    try:
        accounts.set_role(db(), target, request.form.get("role", ""), actor=actor())
    except InvalidInputError as err:
        return notice_then("console.users", _("Not changed: %(error)s", error=str(err)))
    return notice_then("console.users", _("Role changed for %(email)s.", email=target.email))


@bp.post("/users/<int:user_id>/disable")
def user_disable(user_id: int) -> Response:
    target = _target(user_id)
    if target.id == user().id:
        return notice_then("console.users", _("You cannot disable your own account."))
    try:
        accounts.set_disabled(db(), target, True, actor=actor())
    except InvalidInputError as err:
        return notice_then("console.users", _("Not changed: %(error)s", error=str(err)))
    return notice_then("console.users", _("%(email)s is disabled.", email=target.email))


@bp.post("/users/<int:user_id>/enable")
def user_enable(user_id: int) -> Response:
    target = _target(user_id)
    accounts.set_disabled(db(), target, False, actor=actor())
    return notice_then("console.users", _("%(email)s is enabled.", email=target.email))


@bp.post("/users/<int:user_id>/reset-2fa")
def user_reset_2fa(user_id: int) -> Response:
    target = _target(user_id)
    accounts.reset_2fa(db(), target, actor=actor())
    return notice_then(
        "console.users", _("Two-factor sign-in is reset for %(email)s.", email=target.email)
    )


@bp.post("/users/<int:user_id>/reinvite")
def user_reinvite(user_id: int) -> Response:
    target = _target(user_id)
    try:
        token = accounts.reinvite(db(), target, actor=actor())
    except InvalidInputError as err:
        return notice_then("console.users", _("Not changed: %(error)s", error=str(err)))
    link = staff_mail.invitation_link(settings(), token)
    sent = _email(target, "invite", link)
    policy = {r: accounts.requires_2fa(db(), r) for r in roles.ORDER}
    return render(
        "users.html",
        users=accounts.all_users(db()),
        roles=roles.ORDER,
        policy=policy,
        invited_link=link,
        invited=target,
        emailed=sent,
        error="",
    )


@bp.post("/users/<int:user_id>/unlock")
def user_unlock(user_id: int) -> Response:
    target = _target(user_id)
    accounts.unlock(db(), target, actor=actor())
    return notice_then("console.users", _("%(email)s can sign in again.", email=target.email))


@bp.post("/users/policy")
def users_policy() -> Response:
    chosen = set(request.form.getlist("require_2fa"))
    for role in roles.ORDER:
        wanted = role.value in chosen
        if accounts.requires_2fa(db(), role) != wanted:
            accounts.set_require_2fa(db(), role, wanted, actor=actor())
    return notice_then("console.users", _("Two-factor sign-in rules saved."))
