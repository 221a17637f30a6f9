"""The staff console at /admin/: one blueprint, one module per area, one access table.

Every request passes `_guard` first: it loads the session from its cookie (mailer.staff.sessions),
refuses what access.TABLE does not allow (an endpoint missing from the table is refused), checks
the CSRF value of every POST and refuses a cross-site Origin. Pages are server-rendered; htmx
(served from mailer/web/static) only makes some of them quicker, and every form also works
as a plain form post.
"""

from __future__ import annotations

import importlib.resources
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, abort, g, request, url_for

from mailer.config import Settings
from mailer.staff import roles, sessions
from mailer.web.console import access
from mailer.web.console.base import (
    NOTICE_COOKIE,
    PRE_COOKIE,
    SESSION_COOKIE,
    csrf_ok,
    login_url,
    render,
    secure_cookies,
)
from mailer.web.pages import db, settings

bp = Blueprint("console", __name__, url_prefix="/admin")

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}


@bp.get("/static/<name>")
def static(name: str) -> Response:
    folder = importlib.resources.files("mailer.web") / "static"
    node = folder / name
    suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES or not node.is_file():
        abort(404)
    response = Response(node.read_bytes(), mimetype=STATIC_TYPES[suffix])
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@bp.before_request
def _guard() -> Response | None:
    s = settings()
    token = request.cookies.get(SESSION_COOKIE)
    found = sessions.load(s, db(), token) if token else None
    g.staff = found
    g.notice = request.cookies.get(NOTICE_COOKIE)
    need = access.TABLE.get(request.endpoint or "")
    if need is None:
        abort(404)  # fail closed: a route nobody declared is nobody's
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.host:
            abort(403)
        if not csrf_ok():
            abort(400)
    if need == access.PUBLIC:
        return None
    if found is None:
        return _to_login()
    stage = found.stage
    if need == access.PENDING:
        return None
    if stage == sessions.PASSWORD:
        return _redirect(url_for("console.second_factor"))
    if need == access.SETUP:
        return None
    if stage == sessions.SETUP:
        return _redirect(url_for("console.twofactor_setup"))
    if not roles.allows(found.user.role, need):
        abort(403)
    return None


def _redirect(target: str) -> Response:
    if request.headers.get("HX-Request") == "true":
        # htmx follows a redirect inside the fragment; HX-Redirect makes it load the whole page.
        response = Response("", status=204)
        response.headers["HX-Redirect"] = target
        return response
    response = Response("", status=303)
    response.headers["Location"] = target
    return response


def _to_login() -> Response:
    if request.method == "GET":
        return _redirect(login_url())
    abort(401)


@bp.after_request
def _cookies(response: Response) -> Response:
    nonce = g.get("set_pre_cookie")
    secure = secure_cookies()
    if nonce:
        response.set_cookie(
            PRE_COOKIE, nonce, path="/admin", httponly=True, samesite="Strict", secure=secure
        )
    if request.cookies.get(NOTICE_COOKIE) and not g.get("keep_notice"):
        response.delete_cookie(NOTICE_COOKIE, path="/admin")
    new_token = g.get("new_session_token")
    if new_token is not None:
        if new_token:
            response.set_cookie(
                SESSION_COOKIE,
                new_token,
                path="/admin",
                httponly=True,
                samesite="Lax",
                secure=secure,
            )
        else:
            response.delete_cookie(SESSION_COOKIE, path="/admin")
    # Pages and downloads show contacts, addresses and tokens: never stored by a cache (a
    # view's own "no-cache" would still let the browser keep an export on disk). Only the
    # package's static files may be kept.
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def error_page(code: int) -> Response:
    """The console's own error pages (the app hands /admin errors here)."""
    # Lazy: base imports flask's g; only errors need the translated titles.
    from mailer.web.console.base import _  # noqa: PLC0415

    titles = {
        400: _("That request could not be used"),
        401: _("Please sign in"),
        403: _("You do not have access to this page"),
        404: _("Page not found"),
        405: _("Page not found"),
        413: _("That file is too large"),
    }
    bodies = {
        400: _("The form may have been open too long. Go back, reload the page and try again."),
        401: _("Your session has ended. Sign in again to go on."),
        403: _("Ask an admin if you need it."),
        404: _("There is no page at this address."),
        405: _("There is no page at this address."),
        413: _("Choose a smaller file, or import it with the mailer command line."),
    }
    title = titles.get(code, _("Something went wrong"))
    body = bodies.get(code, _("The error has been logged. Try again in a minute."))
    return render("error.html", status=code, title=title, body=body)


def register(app: Flask, settings: Settings) -> None:
    """Attach the console's blueprint and its areas to `app`."""
    # Lazy: import cycle, the area modules import this package's blueprint.
    from mailer.web.console import (  # noqa: F401, PLC0415  (attach their routes to bp)
        account,
        audit_log,
        auth,
        campaigns,
        contacts,
        dashboard,
        imports,
        lists,
        releases,
        segments,
        sending,
        suppressions,
        users,
    )

    app.register_blueprint(bp)
