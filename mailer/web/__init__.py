"""The subscriber web app: subscribe (double opt-in), confirm, unsubscribe (RFC 8058), preferences.

`create_app(settings)` builds it; `mailer serve` runs it on waitress. One request is one unit of
work: the request's session is committed just before the response leaves (so a one-click
unsubscribe is stored when the 200 is sent) and rolled back after any error.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from mailer.config import Settings
from mailer.errors import ConfigError, MailerError
from mailer.store.db import session_factory
from mailer.store.ratelimit import Limit
from mailer.web import security
from mailer.web.pages import BAD_REQUEST, EMBEDDABLE, FAILED, NOT_FOUND, language, message

log = logging.getLogger("mailer.web")

# Per client address: subscribe and "send a new link" posts together. (Per mailbox, domain and
# in all: mailer.subscribers.optin, when the confirmation email is sent.)
IP_LIMIT = Limit(20, 3600)


def create_app(settings: Settings, *, public: bool = True, console: bool | None = None) -> Flask:
    """The Flask app for these settings (the database schema is brought to head now).

    `public`: the subscriber pages; `console`: the staff console at /admin/ (default: the
    `console` setting). `mailer serve` makes two apps when `console_listen` gives the console
    an address of its own."""
    with_console = settings.console if console is None else console
    if not settings.secret_key:
        raise ConfigError("secret_key is empty: set it in mailer.toml (mailer init makes one)")
    app = Flask(__name__, static_folder=None, template_folder=None)
    app.config.update(
        MAILER_SETTINGS=settings,
        MAILER_SESSIONS=session_factory(settings),
        MAILER_IP_LIMIT=IP_LIMIT,
        MAX_CONTENT_LENGTH=settings.web_max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.web_max_body_bytes,
    )
    # Lazy: import cycle, the route modules import create_app's package.
    from mailer.web import console as console_area  # noqa: PLC0415
    from mailer.web import manage, views  # noqa: F401, PLC0415  (attaches the unsubscribe routes)

    if public:
        app.register_blueprint(views.bp)
        # Lazy: import cycle, as above. Press-kit files: the newsroom's and the emails' photos.
        from mailer.web import media  # noqa: PLC0415

        app.register_blueprint(media.bp)
        # Lazy: import cycle, as above. /l/ link redirects and /o/ opens (mailer.engagement).
        from mailer.web import track  # noqa: PLC0415

        track.register(app, settings)
        if settings.newsroom:
            # Lazy: import cycle, as above.
            from mailer.web import newsroom  # noqa: PLC0415

            newsroom.register(app, settings)
    if with_console:
        console_area.register(app, settings)
    if settings.trust_proxy:
        # Only behind a proxy that sets these: otherwise any client could pick its own address.
        # Wrapping wsgi_app is Flask's documented way to add middleware; its type forbids it.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1
        )
    https = settings.base_url.startswith("https://")

    @app.before_request
    def _refuse_big_bodies() -> None:
        # Before anything reads the body: a declared length over the limit is refused unread
        # (waitress refuses it even earlier under `mailer serve`; this covers other servers).
        limit = (
            settings.console_max_upload_bytes
            if request.endpoint in console_area.access.UPLOADS
            else settings.web_max_body_bytes
        )
        # Flask reads the body up to this (a chunked body without a length included).
        request.max_content_length = limit
        if limit > settings.web_max_body_bytes:
            # werkzeug holds each 64 KiB it reads of a multipart body to this limit, file parts
            # included: an upload needs room for one read (text fields stay small).
            request.max_form_memory_size = max(settings.web_max_body_bytes, 1 << 20)
        length = request.content_length
        if length is not None and length > limit:
            raise RequestEntityTooLarge()

    @app.after_request
    def _finish(response: Response) -> Response:
        session = g.get("db")
        if session is not None:
            if response.status_code < 500 and not g.get("failed"):
                session.commit()
            else:
                session.rollback()
        security.apply_headers(
            response,
            embeddable=bool(g.get(EMBEDDABLE)),
            website=settings.website,
            https=https,
            # The console's error pages too (an unknown /admin path has no blueprint).
            scripts=with_console and _in_console(),
        )
        return response

    @app.teardown_request
    def _close(exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.rollback()
            session.close()

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        code = err.code or 500
        if with_console and _in_console():
            if code >= 500:
                g.failed = True
            page = console_area.error_page(code)
            if code == 405:
                page.headers.update(err.get_headers())
                page.headers["Content-Type"] = "text/html; charset=utf-8"
            return page
        if code == 404:
            # Every unknown page and every bad token: the same page, whatever was wrong.
            return message(*NOT_FOUND, lang=language(), status=404)
        if code == 405:
            page = message(*NOT_FOUND, lang=language(), status=405)
            page.headers.update(err.get_headers())
            page.headers["Content-Type"] = "text/html; charset=utf-8"
            return page
        if code in (400, 413):
            return message(*BAD_REQUEST, lang=language(), status=code)
        g.failed = True
        return message(*FAILED, lang=language(), status=code)

    @app.errorhandler(MailerError)
    def _mailer_error(err: MailerError) -> Response:
        g.failed = True
        log.error("%s %s: %s", request.method, request.path, err)
        if with_console and _in_console():
            return console_area.error_page(503)
        return message(*FAILED, lang=language(), status=503)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        g.failed = True
        log.exception("%s %s failed", request.method, request.path)
        if with_console and _in_console():
            return console_area.error_page(500)
        return message(*FAILED, lang=language(), status=500)

    def _in_console() -> bool:
        # Without the subscriber pages (the console's own address), every page is the console's.
        return not public or request.path == "/admin" or request.path.startswith("/admin/")

    return app
