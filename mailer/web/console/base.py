"""What every console page shares: the signed-in user, CSRF values, rendering in the user's
language, confirmation messages carried across a redirect, and the audit actor."""

from __future__ import annotations

import hashlib
import hmac
import importlib.resources
from collections.abc import Callable
from functools import cache
from typing import Any
from urllib.parse import unquote, urlencode

from flask import Response, current_app, g, request, url_for
from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateNotFound, select_autoescape

from mailer import translations
from mailer.config import console_address
from mailer.staff.sessions import Current
from mailer.store.models import StaffRole, StaffUser
from mailer.web.console.access import TABLE
from mailer.web.pages import settings
from mailer.web.security import check_csrf, make_csrf, new_nonce

SESSION_COOKIE = "mailer_console"
PRE_COOKIE = "mailer_console_pre"  # the nonce of the signed-out forms' CSRF value
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
NOTICE_COOKIE = "mailer_console_notice"


class _ConsoleLoader(BaseLoader):
    """Templates inside the installed package (mailer.templates/console)."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = importlib.resources.files("mailer.templates") / "console"
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise TemplateNotFound(template)
            node = node / part
        if not node.is_file():
            raise TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), None, lambda: True


def lang() -> str:
    """The page language: the user's; signed out, ?lang= then Accept-Language, then default."""
    current: Current | None = g.get("staff")
    if current is not None and current.user.language in translations.LANGUAGES:
        return current.user.language
    # An invitation page speaks the invitee's language, as their invitation email did.
    invitee = g.get("invitee_language")
    if invitee in translations.LANGUAGES:
        return str(invitee)
    asked = request.args.get("lang")
    if asked in translations.LANGUAGES:
        return str(asked)
    best = request.accept_languages.best_match(translations.LANGUAGES)
    if best:
        return best
    default = settings().default_language
    return default if default in translations.LANGUAGES else translations.SOURCE


def _(message: str, **values: Any) -> str:
    """`message` in the page's language (for text built in Python: flash notices, errors)."""
    return translations.gettext(lang(), message, **values)


@cache
def environment() -> Environment:
    env = Environment(
        loader=_ConsoleLoader(),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    gettext_, ngettext_ = translations.jinja_callables(lang)
    env.install_gettext_callables(gettext_, ngettext_, newstyle=True)  # type: ignore[attr-defined]
    env.globals["url_for"] = url_for
    return env


def current() -> Current | None:
    value: Current | None = g.get("staff")
    return value


def user() -> StaffUser:
    """The signed-in user (only called from pages that need a session: see access.py)."""
    found = current()
    assert found is not None, "access.py lets no signed-out request reach this page"
    return found.user


def actor() -> str:
    """How the event log names the acting user."""
    return f"user:{user().email}"


def can(role: StaffRole) -> bool:
    found = current()
    if found is None or found.stage != "full":
        return False
    # Lazy: mailer.staff.roles is small, but keeps this module's imports to what pages need.
    from mailer.staff.roles import allows  # noqa: PLC0415

    return allows(found.user.role, role)


# --- CSRF -----------------------------------------------------------------------------------
# Signed in: an HMAC of the session's key under the secret key (no state; a new session after
# sign-in or 2FA gets a new value). Signed out (sign-in, invitation, reset forms): the
# subscriber pages' double-submit value, bound to a nonce in an HttpOnly cookie.


def csrf_token() -> str:
    found = current()
    if found is not None:
        return _session_csrf(found.session.id)
    nonce = g.get("pre_nonce") or request.cookies.get(PRE_COOKIE)
    if not nonce or len(nonce) > 64:
        nonce = new_nonce()
        g.set_pre_cookie = nonce
    g.pre_nonce = nonce
    return make_csrf(settings().secret_key, "console", nonce)


def _session_csrf(session_key: str) -> str:
    key = settings().secret_key.encode()
    return hmac.new(key, b"console-csrf:" + session_key.encode(), hashlib.sha256).hexdigest()


def csrf_ok() -> bool:
    value = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    found = current()
    if found is not None:
        return hmac.compare_digest(value.encode(), _session_csrf(found.session.id).encode())
    return check_csrf(settings().secret_key, "console", value, request.cookies.get(PRE_COOKIE))


# --- pages ----------------------------------------------------------------------------------


def _nav() -> list[dict[str, Any]]:
    """The main menu: every area this app has, shown to the roles that may open it."""
    areas = [
        ("lists", _("Lists"), "console.lists"),
        ("contacts", _("Contacts"), "console.contacts"),
        ("segments", _("Segments"), "console.segments"),
        ("import", _("Import"), "console.imports"),
        ("suppressions", _("Suppressions"), "console.suppressions"),
        ("users", _("Users"), "console.users"),
        ("audit", _("Audit log"), "console.audit"),
    ]
    items = []
    endpoints = current_app.view_functions
    for key, label, endpoint in areas:
        need = TABLE.get(endpoint)
        if endpoint in endpoints and isinstance(need, StaffRole):
            items.append({"key": key, "label": label, "url": url_for(endpoint), "role": need})
    return items


def render(template: str, *, status: int = 200, **context: Any) -> Response:
    found = current()
    values: dict[str, Any] = {
        "lang": lang(),
        "me": found.user if found is not None and found.stage == "full" else None,
        "stage": found.stage if found is not None else None,
        "csrf": csrf_token(),
        "can": can,
        "Role": StaffRole,
        "notice": g.get("notice"),
        "organisation": str(settings().organisation_name),
        "htmx": request.headers.get("HX-Request") == "true",
        "nav_items": _nav() if found is not None and found.stage == "full" else [],
        "active": "",
        **context,
    }
    html = environment().get_template(template).render(values)
    return Response(html, status=status, mimetype="text/html")


def secure_cookies() -> bool:
    """Whether the console's cookies get `Secure`: over https, and whenever the console's
    address is https (a proxy in front may end TLS, so the request itself looks like http)."""
    return request.is_secure or console_address(settings()).startswith("https://")


def notice_then(endpoint: str, message: str, **url_values: Any) -> Response:
    """Redirect (303) to `endpoint` and show `message` once there (post/redirect/get)."""
    response = Response("", status=303)
    response.headers["Location"] = url_for(endpoint, **url_values)
    # Not signed: the text is shown escaped, and only to the browser that holds the cookie.
    response.set_cookie(
        NOTICE_COOKIE,
        message[:300],
        path="/admin",
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(),
        max_age=60,
    )
    return response


def back_to(target: str | None, fallback: str) -> str:
    """A path to go to after sign-in: only a path inside the console, never another site."""
    if (
        target
        and target.startswith("/admin/")
        and not target.startswith(("//", "/\\"))
        and "\\" not in target
        and not any(ord(ch) < 33 for ch in target)
        and not _dot_segments(target)
    ):
        return target
    return fallback


def _dot_segments(target: str) -> bool:
    """True when the path has a "." or ".." segment: a browser resolves "/admin/../x" (and its
    %2e spellings) to "/x", outside the console."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    return any(part in (".", "..") for part in unquote(path).split("/"))


def login_url() -> str:
    wanted = request.full_path.rstrip("?") if request.method == "GET" else None
    query = {"next": wanted} if wanted and wanted.startswith("/admin/") else {}
    return url_for("console.login") + ("?" + urlencode(query) if query else "")
