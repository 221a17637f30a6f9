"""/l/TOKEN: a tracked link's redirect; /o/TOKEN: the open pixel (mailer.engagement).

The redirect goes to the URL the release had for that link (its tracked_link row) and nowhere
else: nothing of the request chooses the destination, so it is no open redirect. A token that
is not exactly one we wrote, is signed for another link, or names a link not in its campaign's
release is the usual 404, and nothing is recorded. Rows never change once written, so each
process keeps them in memory (a campaign's language at a time: one query for a whole message).
The click is handed to the batched recorder (mailer.engagement.recorder), which journals it
before the 302 leaves; the request never waits for the database.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass
from urllib.parse import quote

from flask import Blueprint, Flask, Response, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.engagement import machines
from mailer.engagement.recorder import Recorder, message_key, recorder_for
from mailer.engagement.tokens import ClickSigner, parse_link
from mailer.errors import TokenError
from mailer.store.models import TrackedLink

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
    process that died left in its journal now, before the first request)."""
    factory: sessionmaker[Session] = app.config["MAILER_SESSIONS"]
    recorder = recorder_for(settings, factory)
    if any(recorder.folder.glob("journal-*.log")):
        recorder.start()
    app.config["MAILER_TRACK"] = State(
        settings, ClickSigner(settings.secret_key), Links(factory), recorder
    )
    app.register_blueprint(bp)


def _state() -> State:
    value: State = current_app.config["MAILER_TRACK"]
    return value


def _client() -> tuple[str, str]:
    return request.remote_addr or "", request.headers.get("User-Agent", "")


@bp.route("/l/<token>", methods=["GET", "HEAD"])
def follow(token: str) -> Response:
    st = _state()
    try:
        parsed = parse_link(token)
    except TokenError:
        abort(404)
    link = st.links.get(parsed.link_id)
    if link is None or link.campaign_id != parsed.campaign_id:
        abort(404)
    try:
        st.signer.check_link(parsed, link.language, link.position)
    except TokenError:
        abort(404)
    address, agent = _client()
    st.recorder.record(
        "click",
        parsed.campaign_id,
        parsed.link_id,
        link.language,
        parsed.contact_id,
        machines.request_reason(request.method, agent, address),
        message_key(parsed.campaign_id, parsed.contact_id, address, agent),
        link.in_message,
    )
    response = Response(status=302)
    response.headers["Location"] = link.location
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
