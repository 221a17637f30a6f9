"""Sign-in, second factor, sign-out, invitation and password reset pages.

Answers never say whether an address has an account: a wrong address and a wrong password get
the same words, a reset request gets the same page whatever was typed, and an unknown address
costs the same password-hashing time as a known one (mailer.staff.passwords.verify).
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import partial

from flask import Response, g, request, url_for

from mailer.config import Settings
from mailer.delivery.notices import OutgoingNotice
from mailer.errors import InvalidInputError, MailerError
from mailer.staff import accounts, sessions
from mailer.staff import mail as staff_mail
from mailer.staff import tokens as staff_tokens
from mailer.store import ratelimit
from mailer.store.models import StaffUser
from mailer.web.console import bp
from mailer.web.console.base import SESSION_COOKIE, _, back_to, current, notice_then, render
from mailer.web.pages import client_ip, db, settings, user_agent

log = logging.getLogger("mailer.console")


def _start(user: StaffUser, stage: str) -> None:
    """Begin a new session under a fresh token: a token planted before sign-in (session
    fixation) or seen on the sign-in page is worth nothing after it."""
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        sessions.end(db(), old)
    g.new_session_token = sessions.start(
        db(), user, stage, ip=client_ip() or "", user_agent=user_agent() or ""
    )


def _after_sign_in(stage: str) -> Response:
    if stage == sessions.PASSWORD:
        return _go(url_for("console.second_factor", next=request.form.get("next") or None))
    if stage == sessions.SETUP:
        return _go(url_for("console.twofactor_setup"))
    return _go(back_to(request.form.get("next"), url_for("console.dashboard")))


def _go(target: str) -> Response:
    response = Response("", status=303)
    response.headers["Location"] = target
    return response


def _when(moment: datetime | None) -> str:
    # Shown to the person locked out: minutes are enough, in UTC (the console does not know
    # their zone before sign-in).
    return moment.strftime("%H:%M UTC") if moment is not None else ""


@bp.get("/login")
def login() -> Response:
    found = current()
    if found is not None and found.stage == sessions.FULL:
        return _go(back_to(request.args.get("next"), url_for("console.dashboard")))
    return render("login.html", next=request.args.get("next", ""), email="", error="")


@bp.post("/login")
def login_post() -> Response:
    email = request.form.get("email", "")[:320]
    password = request.form.get("password", "")[:1024]
    nxt = request.form.get("next", "")
    result = accounts.sign_in(db(), email, password, ip=client_ip() or "")
    if result.user is None:
        if result.refused == "locked":
            error = _(
                "Too many sign-in attempts for this account. Try again after %(time)s, or ask "
                "an admin to unlock it.",
                time=_when(result.retry_at),
            )
        elif result.refused == "address":
            error = _(
                "Too many sign-in attempts from your network. Try again after %(time)s.",
                time=_when(result.retry_at),
            )
        elif result.refused == "disabled":
            error = _("This account is disabled. Ask an admin.")
        else:
            error = _("That email address and password do not match an account.")
        # 200, not 401: the tries are already counted, and the page is the form again.
        return render("login.html", status=200, next=nxt, email=email, error=error)
    stage = accounts.stage_after_password(db(), result.user)
    _start(result.user, stage)
    return _after_sign_in(stage)


@bp.get("/login/2fa")
def second_factor() -> Response:
    found = current()
    if found is not None and found.stage != sessions.PASSWORD:
        return _go(url_for("console.dashboard"))
    return render("second_factor.html", next=request.args.get("next", ""), error="")


@bp.post("/login/2fa")
def second_factor_post() -> Response:
    found = current()
    assert found is not None
    if found.stage != sessions.PASSWORD:
        return _go(url_for("console.dashboard"))
    user = found.user
    allowed = accounts.second_factor_allowed(db(), user)
    code = request.form.get("code", "")[:64]
    if allowed.user is None:
        error = _(
            "Too many sign-in attempts for this account. Try again after %(time)s, or ask an "
            "admin to unlock it.",
            time=_when(allowed.retry_at),
        )
        return render("second_factor.html", next=request.form.get("next", ""), error=error)
    if not accounts.second_factor(db(), user, code):
        return render(
            "second_factor.html",
            next=request.form.get("next", ""),
            error=_(
                "That code is not right. Type the 6 digits your app shows now, or a recovery code."
            ),
        )
    g.new_session_token = sessions.upgrade(db(), found, sessions.FULL)
    return _go(back_to(request.form.get("next"), url_for("console.dashboard")))


@bp.post("/logout")
def logout() -> Response:
    sessions.end(db(), request.cookies.get(SESSION_COOKIE))
    g.new_session_token = ""
    return notice_then("console.login", _("You are signed out."))


# --- invitation -------------------------------------------------------------------------------


@bp.get("/invite/<token>")
def invitation(token: str) -> Response:
    user = staff_tokens.peek(db(), token, staff_tokens.INVITE)
    if user is None or user.disabled:
        return _link_gone()
    g.invitee_language = user.language
    return render("invitation.html", invitee=user, token=token, error="")


@bp.post("/invite/<token>")
def invitation_post(token: str) -> Response:
    user = staff_tokens.peek(db(), token, staff_tokens.INVITE)
    if user is None or user.disabled:
        return _link_gone()
    g.invitee_language = user.language
    password = request.form.get("password", "")[:1024]
    if password != request.form.get("password2", "")[:1024]:
        return render(
            "invitation.html", invitee=user, token=token, error=_("The two passwords differ.")
        )
    try:
        user = accounts.accept_invitation(
            db(), token, password, name=request.form.get("name", "")[:200]
        )
    except InvalidInputError as err:
        return render("invitation.html", invitee=user, token=token, error=_password_error(err))
    stage = accounts.stage_after_password(db(), user)
    # A new password has just been chosen: the second factor does not exist yet.
    _start(user, sessions.SETUP if stage == sessions.SETUP else sessions.FULL)
    return _after_sign_in(sessions.SETUP if stage == sessions.SETUP else sessions.FULL)


def _password_error(err: InvalidInputError) -> str:
    # The library's messages are English; the console shows its own translated words.
    text = str(err)
    if "at least" in text:
        return _("The password needs at least 12 characters.")
    if "at most" in text:
        return _("The password may have at most 256 characters.")
    if "address" in text:
        return _("The password must not contain your email address.")
    if "different characters" in text:
        return _("The password uses too few different characters. Choose another.")
    return _("That password cannot be used. Choose another.")


def _link_gone() -> Response:
    return render(
        "message.html",
        status=404,
        title=_("This link does not work any more"),
        body=_(
            "Links in invitation and reset emails work once, and for a limited time. Ask an "
            "admin for a new invitation, or ask for a new reset link."
        ),
        link=url_for("console.reset_request"),
        link_text=_("Ask for a new reset link"),
    )


# --- password reset ---------------------------------------------------------------------------


@bp.get("/reset")
def reset_request() -> Response:
    return render("reset_request.html", sent=False)


@bp.post("/reset")
def reset_request_post() -> Response:
    email = request.form.get("email", "")[:320]
    # The same answer, in about the same time, whatever was typed: the email is sent after the
    # response has gone (and after the request's commit made its link valid), so how long the
    # mail server takes does not tell which addresses have accounts.
    notice = None
    if ratelimit.hit(db(), f"reset-ip:{client_ip()}", accounts.ADDRESS_LIMIT).allowed:
        found = accounts.request_reset(db(), email)
        if found is not None:
            user, token = found
            link = staff_mail.reset_link(settings(), token)
            notice = staff_mail.compose(settings(), user, "reset", link)
    response = render("reset_request.html", sent=True)
    if notice is not None:
        response.call_on_close(partial(_deliver_quietly, settings(), notice))
    return response


def _deliver_quietly(s: Settings, notice: OutgoingNotice) -> None:
    try:
        staff_mail.deliver(s, notice)
    except MailerError as err:
        log.error("reset email for a staff account could not be sent: %s", err)


@bp.get("/reset/<token>")
def reset(token: str) -> Response:
    if staff_tokens.peek(db(), token, staff_tokens.RESET) is None:
        return _link_gone()
    return render("reset.html", token=token, error="")


@bp.post("/reset/<token>")
def reset_post(token: str) -> Response:
    if staff_tokens.peek(db(), token, staff_tokens.RESET) is None:
        return _link_gone()
    password = request.form.get("password", "")[:1024]
    if password != request.form.get("password2", "")[:1024]:
        return render("reset.html", token=token, error=_("The two passwords differ."))
    try:
        accounts.reset_password(db(), token, password)
    except InvalidInputError as err:
        return render("reset.html", token=token, error=_password_error(err))
    return notice_then("console.login", _("Your password is changed. Sign in with it now."))
