"""What every view shares: the settings, the request's session, the language, rendering."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request, url_for
from sqlalchemy.orm import Session, sessionmaker

from mailer import translations
from mailer.config import Settings
from mailer.localtext import in_language
from mailer.store.ratelimit import Limit
from mailer.subscribers import templating
from mailer.translations import N_

EMBEDDABLE = "mailer_embeddable"

# The error pages' (title, body), as English messages for `message`.
NOT_FOUND = (
    N_("Page not found"),
    N_(
        "This link is not valid. If you copied it from an email, please make sure you copied "
        "all of it."
    ),
)
BAD_REQUEST = (
    N_("The form could not be read"),
    N_("Please go back, reload the page and try again."),
)
FAILED = (
    N_("Something went wrong"),
    N_("We could not complete your request. Please try again later."),
)


def settings() -> Settings:
    """The app's settings."""
    value: Settings = current_app.config["MAILER_SETTINGS"]
    return value


def db() -> Session:
    """The request's session (one request, one unit of work; committed by the app)."""
    if "db" not in g:
        factory: sessionmaker[Session] = current_app.config["MAILER_SESSIONS"]
        g.db = factory()
    session: Session = g.db
    return session


def limit(name: str) -> Limit:
    """A rate limit from the app's config (MAILER_IP_LIMIT)."""
    value: Limit = current_app.config[name]
    return value


def languages() -> list[str]:
    return translations.supported(settings().languages)


def choose(value: str | None, fallback: str) -> str:
    """`value` when it is a language the pages speak, else `fallback`."""
    return value if value is not None and value in languages() else fallback


def language(contact_language: str | None = None) -> str:
    """The page language: ?lang=, then the contact's, then Accept-Language, then the default."""
    accept = [tag for tag, _q in request.accept_languages]
    return translations.pick(
        languages(),
        explicit=request.args.get("lang"),
        contact=contact_language,
        accept=accept,
        default=settings().default_language,
    )


def client_ip() -> str | None:
    """The client's address (X-Forwarded-For only counts when trust_proxy is set: ProxyFix)."""
    return request.remote_addr


def user_agent() -> str | None:
    return request.headers.get("User-Agent") or None


def language_links(lang: str) -> list[dict[str, Any]]:
    """Links that show the same page in each language: a bare query, so always this page."""
    return [
        {
            "code": code,
            "name": translations.NAMES[code],
            "url": f"?lang={code}",
            "current": code == lang,
        }
        for code in languages()
    ]


def render(
    template: str,
    *,
    lang: str,
    status: int = 200,
    embeddable: bool = False,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response:
    """Render a page template in `lang` with the values every page uses."""
    s = settings()
    values: dict[str, Any] = {
        "lang": lang,
        # Settings given per language (mailer.localtext): the page's language, else the default.
        "organisation": in_language(s.organisation_name, lang, s.default_language),
        "postal_address": in_language(s.postal_address, lang, s.default_language),
        "website": s.website,
        "language_links": language_links(lang),
        "stylesheet": url_for("web.stylesheet"),
        "embedded": embeddable,
        **context,
    }
    html = templating.environment(s).get_template(template).render(values)
    response = Response(html, status=status, mimetype="text/html")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if embeddable:
        g.setdefault(EMBEDDABLE, True)
    return response


def message(
    title: str,
    body: str,
    *,
    lang: str,
    status: int,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A simple page with a title and one paragraph (errors, notices).

    `title` and `body` are English messages (marked with `N_` where they are written), shown
    in `lang`; `extra` values are escaped into the body."""
    return render(
        "message.html",
        lang=lang,
        status=status,
        headers=headers,
        title=translations.markup(lang, title),
        paragraphs=[translations.markup(lang, body, **extra)],
    )


def language_choices() -> list[tuple[str, str]]:
    """(code, name) of each language the pages speak, for the email language pickers."""
    return [(code, translations.NAMES[code]) for code in languages()]
