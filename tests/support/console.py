"""The staff console in tests: accounts per role, a signed-in Flask test client, CSRF values, a
pinned clock, and a walk over every /admin route of the app's URL map with real ids.

Fixtures: `console` (a Console on the test's settings). Registered in tests/conftest.py.

The walk (`routes`, `path_of`, `hostile_world`) is generic: it reads the routes from the app, so
pages other areas add are walked too. A route whose URL has an argument this module cannot fill
fails with a message naming the argument; teach `hostile_world` a row for it.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import lxml.html
import pyotp
import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from mailer import clock
from mailer.bounces.policy import process_message
from mailer.config import Settings
from mailer.contacts.contact import add_contact, edit_contact
from mailer.contacts.lists import create_list
from mailer.contacts.segments import create_segment
from mailer.contacts.suppressions import add_suppression
from mailer.imports.importer import import_contacts
from mailer.releases.drafts import create_draft
from mailer.staff import accounts, passwords, sessions
from mailer.store import audit
from mailer.store.db import session_scope
from mailer.store.models import (
    Base,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Event,
    Release,
    StaffRole,
    StaffUser,
)
from mailer.web import create_app
from mailer.web.console import access
from tests.support.bounces import dsn
from tests.support.imports import write_csv
from tests.support.web import Web, confirm_url

# Real argon2id at a test's cost: the default parameters (64 MiB, 3 passes: about a quarter of
# a second a hash) would make each sign-in in the suite that slow. Hashes made here verify in a
# full-cost `mailer serve` too (the parameters are in the hash), which rehashes them at sign-in.
passwords._HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
passwords._DUMMY = passwords._HASHER.hash("not a password of anyone's")

PASSWORD = "correct horse battery staple"
UA = "Mozilla/5.0 (console test)"
SESSION_COOKIE = "mailer_console"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
ROLES = (StaffRole.VIEWER, StaffRole.EDITOR, StaffRole.SENDER, StaffRole.ADMIN)
# Methods Flask adds to every route by itself; the walk tries the ones a view declares.
AUTOMATIC = frozenset({"HEAD", "OPTIONS"})


def csrf_of(page: str) -> str:
    """The CSRF value of the first form on a page."""
    found = _CSRF.search(page)
    assert found, "the page has no form with a CSRF value"
    return found.group(1)


class Clock:
    """mailer.clock pinned to a moment that a test moves on by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        clock.set_clock(lambda: self.now)

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def totp(self, secret: str, *, steps: int = 0) -> str:
        """The authenticator app's code at this moment (`steps` 30-second steps later)."""
        return pyotp.TOTP(secret).at(self.now + timedelta(seconds=30 * steps))


@dataclass
class Console:
    app: Flask
    settings: Settings
    users: dict[str, int] = field(default_factory=dict)

    def client(self, **environ: Any) -> FlaskClient:
        client = self.app.test_client()
        client.environ_base.update({"HTTP_USER_AGENT": UA, **environ})
        return client

    def add_user(
        self,
        email: str,
        role: StaffRole | str,
        *,
        password: str = PASSWORD,
        totp: str = "",
        name: str = "",
    ) -> int:
        """An account that has accepted its invitation (and, with `totp`, set up 2FA)."""
        with session_scope(self.settings) as s:
            user, token = accounts.add(s, email, role, name=name)
            accounts.accept_invitation(s, token, password)
            if totp:
                user.totp_secret = totp
                user.totp_enabled = True
            s.flush()
            self.users[email] = user.id
            return user.id

    def user(self, email: str) -> StaffUser:
        with session_scope(self.settings) as s:
            found = accounts.get(s, email)
            s.expunge(found)
            return found

    def sign_in(
        self,
        client: FlaskClient,
        email: str,
        password: str = PASSWORD,
        *,
        totp: str = "",
        next: str | None = None,
    ) -> TestResponse:
        """The sign-in form posted (then the 2FA form, with a code for the secret `totp`)."""
        page = client.get("/admin/login")
        data = {"email": email, "password": password, "csrf": csrf_of(page.text)}
        if next is not None:
            data["next"] = next
        response = client.post("/admin/login", data=data)
        if totp and response.status_code == 303 and "/admin/login/2fa" in response.location:
            form = client.get("/admin/login/2fa")
            code = pyotp.TOTP(totp).at(clock.now())
            response = client.post(
                "/admin/login/2fa",
                data={"code": code, "csrf": csrf_of(form.text), "next": next or ""},
            )
        return response

    def signed_in(self, role: StaffRole | str, email: str | None = None) -> FlaskClient:
        """A client signed in as a new user with `role`."""
        value = role.value if isinstance(role, StaffRole) else role
        email = email or f"{value}@staff.example.org"
        if email not in self.users:
            self.add_user(email, value)
        client = self.client()
        response = self.sign_in(client, email)
        assert response.status_code == 303, response.text
        return client

    def session_client(self, email: str, stage: str = sessions.FULL) -> FlaskClient:
        """A client holding a session of `stage` made by the library, without the sign-in
        form (no password hashing: the walks need hundreds of fresh sessions)."""
        with session_scope(self.settings) as s:
            user = accounts.get(s, email)
            token = sessions.start(s, user, stage, ip="127.0.0.1", user_agent=UA)
        client = self.client()
        client.set_cookie(SESSION_COOKIE, token, path="/admin")
        return client

    def csrf(self, client: FlaskClient) -> str:
        """The CSRF value of whatever the client holds: a session of any stage, or none (the
        account page, or the 2FA or sign-in page the guard sends the client to instead)."""
        page = client.get("/admin/account", follow_redirects=True)
        assert page.status_code == 200, (page.status_code, page.request.path)
        return csrf_of(page.text)

    def post(
        self, client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> TestResponse:
        """POST with the CSRF value of the client's session (or of a signed-out browser)."""
        return client.post(path, data={**(data or {}), "csrf": self.csrf(client)}, **kw)

    def events(self, kind: str | None = None) -> list[Event]:
        with session_scope(self.settings) as s:
            query = select(Event).order_by(Event.id)
            if kind is not None:
                query = query.where(Event.kind == kind)
            rows = list(s.scalars(query))
            s.expunge_all()
            return rows

    def event_count(self) -> int:
        with session_scope(self.settings) as s:
            return int(s.scalar(select(func.count()).select_from(Event)) or 0)

    def outbox(self) -> list[EmailMessage]:
        return Web(self.app, self.settings).outbox()

    def path(self, url: str) -> str:
        """The path of a link mailer printed or mailed (the test client has no host)."""
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.path.startswith("/admin/"), url
        return parts.path


@pytest.fixture(name="console")
def console_fixture(settings: Settings) -> Console:
    return Console(create_app(settings), settings)


# --- responses --------------------------------------------------------------------------------


def location_path(response: TestResponse) -> str:
    """Where a redirect goes, as a path ("" when it is not a redirect)."""
    if response.status_code not in (301, 302, 303, 307, 308):
        return ""
    return urlsplit(response.headers.get("Location", "")).path


def to_login(response: TestResponse) -> bool:
    return location_path(response) == "/admin/login"


def links_leaving(page: str) -> list[str]:
    """Hyperlinks, form targets and sources of a page that point away from this site."""
    tree = lxml.html.fromstring(page)
    out = []
    for element, attribute, link, _pos in tree.iterlinks():
        parts = urlsplit(link.strip())
        if parts.scheme not in ("", "http", "https") or parts.netloc:
            out.append(f"<{element.tag} {attribute}={link!r}>")
    return out


def inline_code(page: str) -> list[str]:
    """What a page runs or styles inline: <script> without src or with a body, on* attributes,
    style= attributes, <style> elements, javascript: URLs. The CSP forbids them; a finding here
    is either a broken page (blocked) or an injection that got through escaping."""
    tree = lxml.html.fromstring(page)
    found = []
    for element in tree.iter():
        if not isinstance(element.tag, str):
            continue
        tag = element.tag.lower().rsplit("}", 1)[-1]
        if tag == "script" and (not element.get("src") or (element.text or "").strip()):
            found.append(f"inline <script>: {(element.text or '')[:60]!r}")
        if tag == "style":
            found.append("<style> element")
        for name, value in element.attrib.items():
            lowered = name.lower()
            if lowered.startswith("on"):
                found.append(f"<{tag} {name}={value!r}>")
            if lowered == "style":
                found.append(f"<{tag} style={value!r}>")
            if lowered in ("href", "src", "action", "formaction", "xlink:href") and re.match(
                r"\s*(javascript|vbscript|data):", value, re.IGNORECASE
            ):
                found.append(f"<{tag} {name}={value!r}>")
    return found


# --- the URL map ------------------------------------------------------------------------------


def routes(app: Flask) -> list[Rule]:
    """Every route of the console (the app's URL map under /admin), in a stable order."""
    found = [
        rule
        for rule in app.url_map.iter_rules()
        if rule.rule == "/admin" or rule.rule.startswith("/admin/")
    ]
    return sorted(found, key=lambda r: (r.rule, r.endpoint))


def methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - AUTOMATIC)


def need(rule: Rule) -> access.Need:
    found = access.TABLE.get(rule.endpoint)
    assert found is not None, f"{rule.endpoint} ({rule.rule}) is missing from access.TABLE"
    return found


# Payloads a subscriber, an import file or a bounce can carry into the console. Each is short
# enough for a 200-character field; MARKERS are what must never appear unescaped in a page.
# Their alert() texts start "xss-", which no page has of its own.
XSS = {
    "script": "<script>alert('xss-script')</script>",
    "img": '"><img src=x onerror=alert("xss-img")>',
    "svg": "'><svg onload=alert('xss-svg')>",
    "close": "</textarea></title><script>alert('xss-close')</script>",
    "js": "javascript:alert('xss-js')",
    "attr": '" autofocus onfocus=alert("xss-attr") x="',
}
MARKERS = ("<script>alert(", "<img src=x", "<svg onload")


def unescaped(page: str) -> list[str]:
    """Payload fragments found unescaped in a page. (The attribute payload, once escaped, still
    reads "onfocus=alert" as text: `inline_code` finds it when it became an attribute.)"""
    return [m for m in MARKERS if m in page]


@dataclass
class World:
    """Rows for every URL argument the console's routes take, with hostile text everywhere a
    subscriber, an import or a bounce can write. `values[(endpoint, argument)]` wins over
    `values[argument]`."""

    values: dict[Any, Any]
    actors: dict[StaffRole, str]

    def path(self, rule: Rule) -> str:
        """The rule's URL with real values in place of its arguments."""
        args = {}
        for name in sorted(rule.arguments):
            key: Any = (rule.endpoint, name)
            if key not in self.values:
                key = name
            assert key in self.values, (
                f"{rule.endpoint} ({rule.rule}): no sample value for the URL argument {name!r}. "
                "Add a row for it in tests/support/console.py hostile_world()."
            )
            args[name] = self.values[key]
        built = rule.build(args, append_unknown=False)
        assert built is not None, f"{rule.rule} could not be built from {args}"
        return built[1]


def _endpoint_path(app: Flask, endpoint: str) -> str:
    """The path of an endpoint without URL arguments ("" when the app has no such route)."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint == endpoint and not rule.arguments:
            built = rule.build({}, append_unknown=False)
            return built[1] if built else ""
    return ""


def _first_id(session: Any, model: type[Base]) -> int | None:
    column = model.__table__.c.get("id")
    if column is None or column.type.python_type is not int:
        return None
    value = session.scalar(select(func.min(column)))
    return int(value) if value is not None else None


def hostile_world(console: Console, tmp_path: Path) -> World:
    """Staff of every role, and one row of each kind the console shows, filled by the ways an
    outsider fills them: the subscribe form, an import file, a bounce report, invitations."""
    s = console.settings
    actors = {role: f"{role.value}@staff.example.org" for role in ROLES}
    for role, email in actors.items():
        if email not in console.users:
            console.add_user(email, role)
    # The user the admin pages act on, and one who has not accepted the invitation yet.
    target_id = console.add_user("target@staff.example.org", "editor", name=XSS["img"])
    values: dict[Any, Any] = {"user_id": target_id}
    with session_scope(s) as db:
        invitee, invite_token = accounts.add(db, "invitee@staff.example.org", "viewer")
        invitee.name = XSS["script"]
        target = db.get(StaffUser, target_id)
        assert target is not None
        found = accounts.request_reset(db, target.email)
        assert found is not None
        reset_token = found[1]
        ml = create_list(
            db,
            "xss",
            XSS["script"],
            XSS["img"],
            public=True,
            names={"ko": XSS["svg"]},
        )
        contact, _sub = add_contact(
            db,
            "kim.xss@example.org",
            "xss",
            name=XSS["script"],
            organisation=XSS["img"],
            tags=[XSS["svg"], XSS["close"]],
            language="en",
        )
        edit_contact(
            db,
            contact.email,
            set_attributes={XSS["script"]: XSS["img"], "website": XSS["js"], "note": XSS["attr"]},
        )
        add_suppression(db, "blocked.xss@example.org", "manual", source=XSS["close"])
        create_segment(
            db,
            "xss-segment",
            ["xss"],
            [f'name ~ "{XSS["script"]}"'],
            description=XSS["img"],
        )
        # Event data whose key and value are hostile (the log shows both).
        hostile_data: dict[str, Any] = {"note": XSS["svg"], XSS["script"]: "x"}
        audit.record(db, "staff_note", actor="cli", **hostile_data)
        values.update(
            {
                "list_id": ml.id,
                "slug": ml.slug,
                "list_slug": ml.slug,
                "contact_id": contact.id,
                "email": contact.email,
                "tag": XSS["svg"],
                "segment": "xss-segment",
                "segment_name": "xss-segment",
                ("console.invitation", "token"): invite_token,
                ("console.invitation_post", "token"): invite_token,
                ("console.reset", "token"): reset_token,
                ("console.reset_post", "token"): reset_token,
                ("console.static", "name"): "console.css",
            }
        )
    # An import whose file name, header and cells are hostile (rejected rows too).
    csv_path = write_csv(
        tmp_path / (XSS["img"] + ".csv"),
        [
            ["email", "name", "outlet", XSS["script"]],
            ["lee.xss@example.org", XSS["close"], XSS["svg"], XSS["img"]],
            ["not an address " + XSS["script"], "x", "y", "z"],
        ],
    )
    with session_scope(s) as db:
        report = import_contacts(db, csv_path, "xss", actor="user:admin@staff.example.org")
        values["import_id"] = report.import_id
    # The same file uploaded through the console's import page, when the app has one: its
    # upload id is a URL argument of the import pages.
    upload = _endpoint_path(console.app, "console.imports_upload")
    if upload:
        admin = console.session_client(actors[StaffRole.ADMIN])
        response = admin.post(
            upload,
            data={
                "csrf": console.csrf(admin),
                "list": "xss",
                "consent_source": XSS["attr"],
                "tags": XSS["svg"],
                # No double quote in the name: the test client would not escape it.
                "file": (io.BytesIO(csv_path.read_bytes()), XSS["svg"] + ".csv"),
            },
            content_type="multipart/form-data",
        )
        assert response.status_code == 303, (upload, response.status_code, response.text[:2000])
        values["upload_id"] = location_path(response).rstrip("/").rsplit("/", 1)[-1]
    # A subscriber at the public form, with a hostile name and browser.
    web = Web(console.app, s)
    web.subscribe(
        web.client(HTTP_USER_AGENT=XSS["script"]), "park.xss@example.org", ["xss"], name=XSS["img"]
    )
    confirm = [m for m in web.outbox() if m["To"] and "park.xss" in m["To"]]
    assert confirm, "the subscribe form sent no confirmation email"
    web.client(HTTP_USER_AGENT=XSS["svg"]).post(web.path(confirm_url(confirm[-1])))
    # A bounce report about the contact with a hostile diagnostic (held for review).
    with session_scope(s) as db:
        process_message(
            db,
            s,
            "xss-1",
            dsn("kim.xss@example.org", diagnostic="smtp; 550 " + XSS["script"]),
        )
    # A campaign (the campaign pages' `campaign_id`) whose title and server replies are hostile.
    with session_scope(s) as db:
        release = Release(slug="xss", title=XSS["script"], default_language="en", content_hash="0")
        db.add(release)
        db.flush()
        campaign = Campaign(release_id=release.id, audience_key="xss", status=CampaignStatus.DONE)
        db.add(campaign)
        db.flush()
        db.add(
            Delivery(
                campaign_id=campaign.id,
                contact_id=contact.id,
                email=contact.email,
                language="en",
                status=DeliveryStatus.FAILED,
                message_id="<xss@example.org>",
                smtp_code=550,
                smtp_reply="550 " + XSS["img"],
            )
        )
    # A release draft (the release pages' `draft_id`) whose title and text are hostile; its
    # preview frame's key and language (a key nobody rendered: 404 to whoever may look).
    with session_scope(s) as db:
        hostile = f"---\ntitle: {json.dumps(XSS['close'])}\n---\n\n{XSS['script']} {XSS['img']}\n"
        create_draft(db, s, "xss-draft", {"en": hostile}, author="user:xss@example.org")
    values[("console.release_preview_frame", "key")] = "no-such-preview"
    values[("console.release_preview_frame", "lang")] = "en"
    # Any other `<thing>_id` argument: the first row of the table named like it.
    with session_scope(s) as db:
        for mapper in Base.registry.mappers:
            model = mapper.class_
            table = model.__tablename__
            key = table.rsplit("_", 1)[-1] + "_id"
            if key not in values and (found_id := _first_id(db, model)) is not None:
                values[key] = found_id
            if f"{table}_id" not in values and (found_id := _first_id(db, model)) is not None:
                values[f"{table}_id"] = found_id
        values["event_id"] = _first_id(db, Event)
    return World(values, actors)


@dataclass(frozen=True)
class Form:
    """A POST form found on a page: where it posts, what it sends as it stands, and which of
    its fields a person types into."""

    action: str
    values: list[tuple[str, str]]
    typed: list[str]
    multipart: bool


def forms_of(page: str, at: str) -> list[Form]:
    """The POST forms of a page (`at`: the page's path, for forms without an action)."""
    tree = lxml.html.fromstring(page)
    out = []
    for form in tree.forms:
        if (form.method or "GET").upper() != "POST":
            continue
        action = urlsplit(form.get("action") or at).path or at
        typed = [
            str(el.get("name"))
            for el in form.inputs
            if el.get("name")
            and el.tag in ("input", "textarea")
            and (el.get("type") or "text").lower()
            in ("text", "email", "search", "url", "tel", "textarea", "date", "number")
        ]
        typed += [str(el.get("name")) for el in form.iter("textarea") if el.get("name")]
        multipart = (form.get("enctype") or "").lower() == "multipart/form-data"
        out.append(Form(action, list(form.form_values()), sorted(set(typed)), multipart))
    return out


def endpoint_of(app: Flask, path: str, method: str = "POST") -> str | None:
    """The endpoint a request would reach (None when nothing matches)."""
    try:
        endpoint, _args = app.url_map.bind("localhost").match(path, method=method)
    except Exception:  # NotFound, MethodNotAllowed, RequestRedirect: no view is reached
        return None
    return str(endpoint)
