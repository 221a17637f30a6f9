"""/l/TOKEN: a tracked link's redirect; /o/TOKEN: the open pixel (mailer.engagement).

The redirect goes to the URL the release had for that link (its tracked_link row) and nowhere
else: nothing of the request chooses the destination, so it is no open redirect. A token that
is not exactly one we wrote, is signed for another link, or names a link not in its campaign's
release is the usual 404, and nothing is recorded; the link's signature is checked before any
database read, so made-up tokens cost no query. Rows never change once written, so each
process keeps them in memory (a campaign's language at a time: one query for a whole message).
The click is handed to the batched recorder (mailer.engagement.recorder), which journals it
before the 302 leaves; the request never waits for the database.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Flask, Response, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.engagement import machines
from mailer.engagement.recorder import Recorder, message_key, recorder_for
from mailer.engagement.tokens import ClickSigner
from mailer.errors import TokenError
from mailer.store.models import TrackedLink
from mailer.web import security

bp = Blueprint("track", __name__)

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
# Anything a Location header cannot carry as it is (non-ASCII, spaces, controls): %-encoded,
# which names the same resource (RFC 3987 section 3.1).
_UNSAFE = re.compile(r"[^\x21-\x7e]")
_MISSING_LIMIT = 10000


@dataclass(frozen=True)
class Link:
    campaign_id: int
    language: str
    position: int
    location: str
    in_message: int  # links of this (campaign, language): the sweep rule's "every link"


class Links:
    """tracked_link rows by id, read once per (campaign, language) and kept."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self.rows: dict[int, Link] = {}
        self.missing: set[int] = set()  # ids known not to exist (bounded)
        self.lock = threading.Lock()

    def get(self, link_id: int) -> Link | None:
        found = self.rows.get(link_id)
        if found is not None or link_id in self.missing:
            return found
        with self.factory() as s:
            row = s.get(TrackedLink, link_id)
            if row is None:
                with self.lock:
                    if len(self.missing) >= _MISSING_LIMIT:
                        self.missing.clear()
                    self.missing.add(link_id)
                return None
            siblings = list(
                s.scalars(
                    select(TrackedLink).where(
                        TrackedLink.campaign_id == row.campaign_id,
                        TrackedLink.language == row.language,
                    )
                )
            )
        count = len(siblings)
        with self.lock:
            for r in siblings:
                location = _UNSAFE.sub(lambda m: quote(m.group(0), safe=""), r.url)
                self.rows[r.id] = Link(r.campaign_id, r.language, r.position, location, count)
        return self.rows.get(link_id)


@dataclass
class State:
    settings: Settings
    signer: ClickSigner
    links: Links
    recorder: Recorder


def register(app: Flask, settings: Settings) -> None:
    """The routes on the subscriber app, with this process's recorder (replaying what a
    process that died left in its journal now, before the first request), and the fast path
    in front of Flask (FastPath)."""
    factory: sessionmaker[Session] = app.config["MAILER_SESSIONS"]
    recorder = recorder_for(settings, factory)
    if any(recorder.folder.glob("journal-*.log")):
        recorder.start()
    state = State(settings, ClickSigner(settings.secret_key), Links(factory), recorder)
    app.config["MAILER_TRACK"] = state
    app.register_blueprint(bp)
    # Wrapping wsgi_app is Flask's documented way to add middleware; its type forbids it.
    app.wsgi_app = FastPath(app.wsgi_app, state, _redirect_headers(settings))  # type: ignore[method-assign]


def _redirect_headers(settings: Settings) -> list[tuple[str, str]]:
    """What every answer of the app carries (mailer.web.security), for the fast path's 302."""
    sample = Response(status=302)
    security.apply_headers(
        sample,
        embeddable=False,
        website=settings.website,
        https=settings.base_url.startswith("https://"),
    )
    _private(sample)
    skip = {"content-type", "content-length"}
    return [(k, v) for k, v in sample.headers.items() if k.lower() not in skip]


class FastPath:
    """A genuine /l/ token answered before Flask: the redirect is the hot path of a campaign's
    first hour, and Flask's request machinery costs several times the redirect itself. The
    same checks and recording as the blueprint's route (click()); anything else (a token
    refused, another path) goes on to the app, which answers as usual (the 404 page)."""

    def __init__(self, wsgi: Any, state: State, headers: list[tuple[str, str]]) -> None:
        self.wsgi = wsgi
        self.state = state
        self.headers = [*headers, ("Content-Length", "0")]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path.startswith("/l/") and method in ("GET", "HEAD"):
            location = click(
                self.state,
                path[3:],
                method,
                environ.get("REMOTE_ADDR") or "",
                environ.get("HTTP_USER_AGENT", ""),
            )
            if location is not None:
                start_response("302 Found", [("Location", location), *self.headers])
                return [b""]
        return self.wsgi(environ, start_response)


def _state() -> State:
    value: State = current_app.config["MAILER_TRACK"]
    return value


def _client() -> tuple[str, str]:
    return request.remote_addr or "", request.headers.get("User-Agent", "")


def click(st: State, token: str, method: str, address: str, agent: str) -> str | None:
    """The link's Location, the click recorded; None (nothing recorded) for any token that is
    not one we wrote for a link of its campaign's release."""
    try:
        parsed = st.signer.read_link(token)  # the link's signature: no database yet
    except TokenError:
        return None
    link = st.links.get(parsed.link_id)
    if link is None or link.campaign_id != parsed.campaign_id:
        return None
    try:
        st.signer.check_reader(parsed, link.language)
    except TokenError:
        return None
    st.recorder.record(
        "click",
        parsed.campaign_id,
        parsed.link_id,
        link.language,
        parsed.contact_id,
        machines.request_reason(method, agent, address),
        message_key(parsed.campaign_id, parsed.contact_id, address, agent),
        link.in_message,
    )
    return link.location


@bp.route("/l/<token>", methods=["GET", "HEAD"])
def follow(token: str) -> Response:
    address, agent = _client()
    location = click(_state(), token, request.method, address, agent)
    if location is None:
        abort(404)
    response = Response(status=302)
    response.headers["Location"] = location
    _private(response)
    return response


@bp.route("/o/<token>", methods=["GET", "HEAD"])
def opened(token: str) -> Response:
    st = _state()
    try:
        parsed = st.signer.read_open(token)
    except TokenError:
        abort(404)
    if st.settings.track_opens:
        address, agent = _client()
        st.recorder.record(
            "open",
            parsed.campaign_id,
            None,
            parsed.language,
            parsed.contact_id,
            machines.request_reason(request.method, agent, address),
            message_key(parsed.campaign_id, parsed.contact_id, address, agent),
        )
    response = Response(PIXEL, status=200, mimetype="image/gif")
    _private(response)
    return response


def _private(response: Response) -> None:
    # Every request must reach us to be counted, and the token never leaves in a Referer.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
