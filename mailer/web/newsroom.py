"""The public newsroom under `newsroom_path` (default /news): indexes, release pages, feeds, the
sitemap, preview and view-in-browser pages. Each view reads one thing through mailer.newsroom
and returns it; anything not public (yet) is the subscriber pages' 404, whatever the URL.

Public pages may be kept by shared caches for a minute (a withdrawal reaches everyone within
it); a preview or view-in-browser page never (no-store), nor any error page.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, abort, current_app, g, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from mailer import clock
from mailer.config import Settings
from mailer.errors import TokenError
from mailer.media import access as media_access
from mailer.newsroom import catalog, feeds, links, state
from mailer.newsroom.pages import Newsroom
from mailer.store.models import Campaign, Publication
from mailer.web.pages import db, settings

bp = Blueprint("newsroom", __name__)

PUBLIC_CACHE = "public, max-age=60"
# Release images may live on the organisation's own website; everything else stays as strict as
# the subscriber pages' policy (mailer.web.security).
_IMAGES = "img-src 'self' data: https:"


def register(app: Flask, settings: Settings) -> None:
    """Serve the newsroom at `newsroom_path` on this app (the public one)."""
    app.config["MAILER_NEWSROOM"] = Newsroom(settings)
    app.register_blueprint(bp, url_prefix=links.root(settings))


def _newsroom() -> Newsroom:
    value: Newsroom = current_app.config["MAILER_NEWSROOM"]
    return value


@bp.after_app_request
def _headers(response: Response) -> Response:
    # Registered before the app's own after_request (create_app), so it runs after it: the
    # app writes no-store on every page, and a public newsroom page says otherwise here.
    if request.blueprint != "newsroom":
        return response
    policy = response.headers.get("Content-Security-Policy", "")
    response.headers["Content-Security-Policy"] = policy.replace("img-src 'self' data:", _IMAGES)
    if response.status_code in (200, 410) and g.get("newsroom_public"):
        response.headers["Cache-Control"] = PUBLIC_CACHE
    elif response.mimetype == "text/html":
        # Previews, view-in-browser pages, errors: the app's no-store stays; no search engine.
        response.headers["X-Robots-Tag"] = "noindex"
    return response


def _public(body: str, *, status: int = 200, mimetype: str = "text/html") -> Response:
    g.newsroom_public = True
    return Response(body, status=status, mimetype=mimetype)


def _private(body: str) -> Response:
    return Response(body, mimetype="text/html")


def _language(lang: str) -> str:
    if lang not in _newsroom().languages():
        abort(404)
    return lang


def _number(name: str) -> int | None:
    raw = request.args.get(name, "")
    if raw == "":
        return None
    if not raw.isdigit() or len(raw) > 6:
        abort(404)
    return int(raw)


# --- indexes, feeds, sitemap --------------------------------------------------------------------


@bp.get("/")
def home() -> BaseResponse:
    return redirect(links.index_path(settings(), settings().default_language))


@bp.get("/<lang>/")
def index(lang: str) -> Response:
    lang = _language(lang)
    now = clock.now()
    topic = None
    slug = request.args.get("list") or None
    if slug is not None:
        topic = catalog.public_list(db(), slug, now)
        if topic is None:
            abort(404)
    year = _number("year")
    number = _number("page")
    page = catalog.index(db(), now, year=year, list_slug=slug, page=1 if number is None else number)
    if page is None:
        abort(404)
    return _public(_newsroom().index_page(page, lang, year=year, topic=topic))


@bp.get("/<lang>/feed.atom")
def feed(lang: str) -> Response:
    lang = _language(lang)
    now = clock.now()
    entries = catalog.feed_entries(db(), now)
    body = feeds.atom(_newsroom(), entries, lang, now=now)
    return _public(body, mimetype="application/atom+xml")


@bp.get("/<lang>/lists/<slug>/feed.atom")
def list_feed(lang: str, slug: str) -> Response:
    lang = _language(lang)
    now = clock.now()
    topic = catalog.public_list(db(), slug, now)
    if topic is None:
        abort(404)
    entries = catalog.feed_entries(db(), now, list_slug=slug)
    body = feeds.atom(_newsroom(), entries, lang, now=now, topic=topic)
    return _public(body, mimetype="application/atom+xml")


@bp.get("/sitemap.xml")
def sitemap() -> Response:
    entries = catalog.sitemap_entries(db(), clock.now())
    return _public(feeds.sitemap(_newsroom(), entries), mimetype="application/xml")


@bp.get("/newsroom.css")
def stylesheet() -> Response:
    response = Response(_newsroom().stylesheet(), mimetype="text/css")
    # The pages link it with its digest (?v=...): a new stylesheet is a new URL.
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


# --- one release --------------------------------------------------------------------------------


@bp.get("/<int(fixed_digits=4):year>/<int(fixed_digits=2):month>/<slug>/<lang>")
def release(year: int, month: int, slug: str, lang: str) -> Response:
    now = clock.now()
    pub = catalog.at_url(db(), year, month, slug)
    if pub is None or lang not in catalog.languages(pub.release):
        abort(404)
    if state.shows_withdrawn(pub, now):
        return _public(_newsroom().withdrawn_page(pub, lang), status=410)
    if not state.is_public(pub, now):
        abort(404)
    return _public(_newsroom().release_page(pub, pub.release, lang, now=now))


@bp.get("/preview/<slug>/<lang>")
def preview(slug: str, lang: str) -> BaseResponse:
    now = clock.now()
    key = request.args.get("key", "")
    pub = state.find(db(), slug)
    if pub is None or not links.preview_grants(settings(), key, pub, now):
        abort(404)
    if lang not in catalog.languages(pub.release) or pub.withdrawn_at is not None:
        abort(404)
    if state.is_public(pub, now):
        return redirect(links.page_path(settings(), pub, lang))
    page = _newsroom().release_page(pub, pub.release, lang, now=now, preview_key=key)
    # Its photos are not public yet either: the page's file URLs carry the preview key.
    return _private(media_access.grant_page(page, settings(), f"preview={key}"))


@bp.get("/view/<token>/<lang>")
def view(token: str, lang: str) -> BaseResponse:
    """The "view in browser" link of a campaign's messages (see mailer.newsroom.links)."""
    now = clock.now()
    try:
        campaign = db().get(Campaign, links.read_view(settings(), token))
    except TokenError:
        abort(404)
    if campaign is None or lang not in catalog.languages(campaign.release):
        abort(404)
    pub = state.find(db(), campaign.release.slug)
    if pub is not None and state.shows_withdrawn(pub, now):
        # A token's URL: the same withdrawn page, but never kept by a shared cache.
        return Response(_newsroom().withdrawn_page(pub, lang), status=410, mimetype="text/html")
    if pub is not None and state.is_public(pub, now) and pub.release_id == campaign.release_id:
        return redirect(links.page_path(settings(), pub, lang))
    if pub is not None and pub.withdrawn_at is not None:
        abort(404)
    page = _newsroom().release_page(
        pub or _stand_in(campaign), campaign.release, lang, now=now, view_token=token
    )
    # As in the message itself, its photos open with the release's grant (mailer.media.access).
    grant = media_access.make_grant(settings(), campaign.release.slug)
    return _private(media_access.grant_page(page, settings(), f"k={grant}"))


def _stand_in(campaign: Campaign) -> Publication:
    """A campaign sent before the newsroom kept publications: its page has no state to show."""
    return Publication(
        slug=campaign.release.slug,
        release_id=campaign.release_id,
        release=campaign.release,
        year=0,
        month=0,
        publish=False,
        lists=[],
        corrections=[],
        withdrawn_note="",
    )
