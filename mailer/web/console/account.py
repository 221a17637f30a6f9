"""The signed-in user's own account: language, password, two-factor login, sign out everywhere."""

from __future__ import annotations

from flask import Response, g, request

from mailer.errors import InvalidInputError
from mailer.staff import accounts, passwords, sessions, twofactor
from mailer.store import audit
from mailer.web.console import bp
from mailer.web.console.auth import _password_error
from mailer.web.console.base import SESSION_COOKIE, _, current, notice_then, render, user
from mailer.web.pages import db


@bp.get("/account")
def account() -> Response:
    me = user()
    return render(
        "account.html",
        account=me,
        required=accounts.requires_2fa(db(), me.role),
        error="",
    )


@bp.post("/account/language")
def account_language() -> Response:
    language = request.form.get("language", "")
    try:
        accounts.set_language(db(), user(), language)
    except InvalidInputError:
        return notice_then("console.account", _("Choose English or Korean."))
    return notice_then("console.account", _("Language saved."))


@bp.post("/account/password")
def account_password() -> Response:
    me = user()
    new = request.form.get("new", "")[:1024]
    if new != request.form.get("new2", "")[:1024]:
        return _account_error(_("The two new passwords differ."))
    if not passwords.verify(me.password_hash, request.form.get("current", "")[:1024]):
        return _account_error(_("Your current password is not right."))
    try:
        accounts.change_password(
            db(), me, request.form.get("current", "")[:1024], new, keep=_token()
        )
    except InvalidInputError as err:
        return _account_error(_password_error(err))
    return notice_then(
        "console.account", _("Password changed. Your other sessions are signed out.")
    )


def _account_error(error: str) -> Response:
    me = user()
    return render(
        "account.html",
        status=422,
        account=me,
        required=accounts.requires_2fa(db(), me.role),
        error=error,
    )


def _token() -> str:
    return request.cookies.get(SESSION_COOKIE, "")


@bp.post("/account/sign-out-everywhere")
def account_sign_out_everywhere() -> Response:
    me = user()
    count = sessions.end_all(db(), me, keep=_token())
    audit.record(db(), "staff_signed_out_everywhere", actor=f"user:{me.email}", sessions=count)
    return notice_then("console.account", _("Your other sessions are signed out."))


@bp.get("/account/2fa")
def twofactor_setup() -> Response:
    me = user()
    if me.totp_enabled:
        return notice_then("console.account", _("Two-factor sign-in is already on."))
    secret = me.totp_secret or accounts.begin_2fa(me)
    uri = twofactor.provisioning_uri(me, secret)
    return render(
        "twofactor_setup.html",
        qr=twofactor.qr_svg(uri),
        secret=secret,
        error="",
        codes=None,
        required=accounts.requires_2fa(db(), me.role),
    )


@bp.post("/account/2fa")
def twofactor_setup_post() -> Response:
    me = user()
    if me.totp_enabled:
        return notice_then("console.account", _("Two-factor sign-in is already on."))
    code = request.form.get("code", "")[:64]
    try:
        codes = accounts.confirm_2fa(db(), me, code)
    except InvalidInputError:
        secret = me.totp_secret or accounts.begin_2fa(me)
        return render(
            "twofactor_setup.html",
            status=422,
            qr=twofactor.qr_svg(twofactor.provisioning_uri(me, secret)),
            secret=secret,
            error=_("That code is not right. Type the 6 digits the app shows now."),
            codes=None,
            required=accounts.requires_2fa(db(), me.role),
        )
    found = current()
    assert found is not None
    if found.stage != sessions.FULL:
        g.new_session_token = sessions.upgrade(db(), found, sessions.FULL)
    # Other browsers signed in with the password alone must now show the second factor too.
    sessions.end_all(db(), me, keep=g.get("new_session_token") or _token())
    return render("twofactor_setup.html", qr="", secret="", error="", codes=codes, required=False)


@bp.post("/account/2fa/disable")
def twofactor_disable() -> Response:
    me = user()
    if accounts.requires_2fa(db(), me.role):
        return notice_then("console.account", _("Your role requires two-factor sign-in."))
    if not passwords.verify(me.password_hash, request.form.get("password", "")[:1024]):
        return _account_error(_("Your current password is not right."))
    accounts.reset_2fa(db(), me, actor=f"user:{me.email}")
    # reset_2fa signed every session out, this one too: sign this browser in again.
    g.new_session_token = sessions.start(db(), me, sessions.FULL)
    return notice_then("console.account", _("Two-factor sign-in is off."))
