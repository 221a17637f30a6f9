"""The console under attack from outside: CSRF on every POST route, open redirects after sign-in,
role escalation through every form, the headers and markup every page must have, and stored and
reflected XSS through every field a subscriber, an import or a bounce can fill.

Generic over the app's URL map and the forms its pages show, so the pages other areas add are
covered without a line here.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import pytest
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from mailer.store.models import StaffRole
from mailer.web.console import access
from tests.support.console import (
    ROLES,
    XSS,
    Console,
    World,
    csrf_of,
    endpoint_of,
    forms_of,
    hostile_world,
    inline_code,
    location_path,
    methods,
    need,
    routes,
    to_login,
    unescaped,
)

pytestmark = pytest.mark.db

EVIL_ORIGIN = "https://evil.example"


def _post_routes(console: Console) -> list[Rule]:
    return [rule for rule in routes(console.app) if "POST" in methods(rule)]


def _is_html(response: TestResponse) -> bool:
    return response.mimetype == "text/html" and bool(response.data)


# --- CSRF -------------------------------------------------------------------------------------


def test_every_post_route_needs_this_sessions_csrf_value_and_a_same_site_origin(
    console: Console, tmp_path: Path
) -> None:
    world = hostile_world(console, tmp_path)
    admin = world.actors[StaffRole.ADMIN]
    console.add_user("second.admin@staff.example.org", "admin")
    problems: list[str] = []
    checked = 0
    for rule in _post_routes(console):
        path = world.path(rule)
        signed_out = need(rule) == access.PUBLIC
        for label in ("signed out", "admin") if signed_out else ("admin",):

            def fresh(label: str = label) -> FlaskClient:
                if label == "signed out":
                    client = console.client()
                    client.get("/admin/login")  # the pre-sign-in cookie a browser would hold
                    return client
                return console.session_client(admin)

            before = console.event_count()
            # No value at all.
            response = fresh().post(path, data={})
            if response.status_code != 400:
                problems.append(
                    f"POST {rule.rule} {label} without a CSRF value: {response.status_code}"
                )
            # Another session's value (or another browser's, signed out).
            other = (
                console.session_client("second.admin@staff.example.org")
                if label == "admin"
                else console.client()
            )
            stolen = console.csrf(other)
            response = fresh().post(path, data={"csrf": stolen})
            if response.status_code != 400:
                problems.append(
                    f"POST {rule.rule} {label} with another session's value: {response.status_code}"
                )
            # The right value, from a page of another site.
            client = fresh()
            response = client.post(
                path, data={"csrf": console.csrf(client)}, headers={"Origin": EVIL_ORIGIN}
            )
            if response.status_code != 403:
                problems.append(
                    f"POST {rule.rule} {label} from {EVIL_ORIGIN}: {response.status_code}"
                )
            if console.event_count() != before:
                problems.append(f"POST {rule.rule} {label}: a refused request left an event")
            # The control: the same request from this site passes the check (so the refusals
            # above came from the check, not from the view). htmx sends the value as a header.
            client = fresh()
            response = client.post(
                path,
                data={},
                headers={"X-CSRF-Token": console.csrf(client), "Origin": "http://localhost"},
            )
            if response.status_code in (400, 403):
                problems.append(
                    f"POST {rule.rule} {label} with the right value: {response.status_code}"
                )
            checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= len(_post_routes(console))


def test_a_csrf_value_dies_with_its_session(console: Console) -> None:
    client = console.signed_in("admin")
    token = console.csrf(client)
    console.post(client, "/admin/logout")
    assert console.sign_in(client, "admin@staff.example.org").status_code == 303
    response = client.post(
        "/admin/users", data={"csrf": token, "email": "x@example.org", "role": "admin"}
    )
    assert response.status_code == 400
    assert not [e for e in console.events("staff_invited") if e.data["user"] == "x@example.org"]


# --- open redirects ---------------------------------------------------------------------------

HOSTILE_NEXT = [
    "//evil.example",
    "//evil.example/admin/",
    "///evil.example",
    "https://evil.example",
    "https://evil.example/admin/",
    "https:evil.example",
    "http://localhost@evil.example/admin/",
    "/\\evil.example",
    "\\\\evil.example",
    "/admin/\\..\\..\\evil",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/admin/../evil",
    "/admin/./../../evil",
    "/admin/%2e%2e/evil",
    "/admin/.%2E/%2e./evil",
    " //evil.example",
    "\t//evil.example",
    "/\t/evil.example",
    "/admin/\r\nLocation: https://evil.example",
    "/admin/login?next=//evil.example",
    '/admin/"><script>alert(1)</script>',
]


def _browser_target(location: str) -> tuple[str, str]:
    """Where a browser goes for this Location, as (host, path): it drops tabs and newlines,
    reads a backslash as a slash and %2e as a dot, and resolves dot segments."""
    cleaned = re.sub(r"[\t\r\n]", "", location).strip(" \x00\x1f").replace("\\", "/")
    cleaned = re.sub(r"%2e", ".", cleaned, flags=re.IGNORECASE)
    resolved = urlsplit(urljoin("http://localhost/admin/login", cleaned))
    return resolved.netloc if resolved.scheme in (
        "http",
        "https",
    ) else resolved.scheme, resolved.path


def _stays(response: TestResponse) -> str | None:
    """What is wrong with the redirect after sign-in (None when it stays in the console)."""
    if response.status_code != 303:
        return f"status {response.status_code}"
    location = response.headers["Location"]
    host, path = _browser_target(location)
    if host != "localhost" or not path.startswith("/admin/"):
        return f"leaves the console: Location {location!r} -> {host} {path}"
    return None


@pytest.mark.parametrize("target", HOSTILE_NEXT)
def test_next_after_sign_in_never_leaves_the_console(console: Console, target: str) -> None:
    console.add_user("admin@staff.example.org", "admin")
    client = console.client()
    # The sign-in page shows next= escaped, in a hidden field.
    page = client.get("/admin/login?next=" + quote(target, safe=""))
    assert page.status_code == 200 and not unescaped(page.text) and not inline_code(page.text)
    response = console.sign_in(client, "admin@staff.example.org", next=target)
    assert _stays(response) is None, _stays(response)
    # Already signed in: the sign-in page sends the browser on at once.
    again = client.get("/admin/login?next=" + quote(target, safe=""))
    assert _stays(again) is None, _stays(again)


@pytest.mark.parametrize("target", ["//evil.example", "/admin/../evil", "https://evil.example"])
def test_next_through_the_second_factor_never_leaves_the_console(
    console: Console, target: str
) -> None:
    import pyotp

    from mailer import clock

    secret = pyotp.random_base32()
    console.add_user("admin@staff.example.org", "admin", totp=secret)
    client = console.client()
    first = console.sign_in(client, "admin@staff.example.org", next=target)
    assert location_path(first) == "/admin/login/2fa"
    form = client.get(first.headers["Location"])
    assert not unescaped(form.text)
    response = client.post(
        "/admin/login/2fa",
        data={
            "csrf": csrf_of(form.text),
            "code": pyotp.TOTP(secret).at(clock.now()),
            "next": target,
        },
    )
    assert _stays(response) is None, _stays(response)


def test_a_good_next_is_followed(console: Console) -> None:
    console.add_user("admin@staff.example.org", "admin")
    client = console.client()
    # The guard sends a signed-out browser to sign in with next= set to where it was going.
    bounced = client.get("/admin/users?x=1")
    assert to_login(bounced)
    assert bounced.headers["Location"] == "/admin/login?next=%2Fadmin%2Fusers%3Fx%3D1"
    response = console.sign_in(client, "admin@staff.example.org", next="/admin/users?x=1")
    assert response.headers["Location"] == "/admin/users?x=1"


# --- role escalation --------------------------------------------------------------------------


def _admin_forms(console: Console, world: World) -> dict[str, list[tuple[str, str]]]:
    """Every POST form an admin sees on any console page: action -> the values it sends."""
    admin = console.session_client(world.actors[StaffRole.ADMIN])
    found: dict[str, list[tuple[str, str]]] = {}
    for rule in routes(console.app):
        if "GET" not in methods(rule) or rule.endpoint == "console.static":
            continue
        path = world.path(rule)
        page = admin.get(path)
        if not _is_html(page):
            continue
        for form in forms_of(page.text, path):
            found.setdefault(form.action, form.values)
    return found


def test_no_role_gets_past_its_own_through_any_form(console: Console, tmp_path: Path) -> None:
    world = hostile_world(console, tmp_path)
    forms = _admin_forms(console, world)
    assert any(action.startswith("/admin/users/") for action in forms), sorted(forms)
    problems = []
    for action, values in sorted(forms.items()):
        endpoint = endpoint_of(console.app, action)
        assert endpoint is not None, f"a form posts to {action}, which no route takes"
        required = access.TABLE[endpoint]
        if not isinstance(required, StaffRole):
            continue
        for role in ROLES[: ROLES.index(required)]:
            before = console.event_count()
            client = console.session_client(world.actors[role])
            data = [(k, v) for k, v in values if k != "csrf"] + [("csrf", console.csrf(client))]
            response = client.post(action, data=MultiDict(data))
            if response.status_code != 403 or console.event_count() != before:
                problems.append(
                    f"{role.value} posting the form of {action}: {response.status_code}"
                )
    assert not problems, "\n".join(problems)


def test_nobody_changes_their_own_role_through_a_form(console: Console, tmp_path: Path) -> None:
    world = hostile_world(console, tmp_path)
    forms = _admin_forms(console, world)
    # Every form each role may post, with extra fields that would make them admin if a view
    # read them: their role must be what it was.
    extra = [("role", "admin"), ("is_admin", "1"), ("disabled", "0"), ("require_2fa", "")]
    for role in (StaffRole.VIEWER, StaffRole.EDITOR, StaffRole.SENDER):
        email = world.actors[role]
        own = console.users[email]
        extra_own = [*extra, ("user_id", str(own)), ("email", email)]
        for action, values in sorted(forms.items()):
            endpoint = endpoint_of(console.app, action)
            required = access.TABLE.get(endpoint or "")
            if not isinstance(required, StaffRole) or ROLES.index(required) > ROLES.index(role):
                continue
            client = console.session_client(email)
            data = [(k, v) for k, v in values if k != "csrf"] + extra_own
            client.post(action, data=MultiDict([*data, ("csrf", console.csrf(client))]))
        client = console.session_client(email)
        response = client.post(
            f"/admin/users/{own}/role", data={"csrf": console.csrf(client), "role": "admin"}
        )
        assert response.status_code == 403
        assert console.user(email).role == role
    # The invitation form cannot choose the invitee's role either.
    invite = world.values[("console.invitation_post", "token")]
    client = console.client()
    form = client.get(f"/admin/invite/{invite}")
    client.post(
        f"/admin/invite/{invite}",
        data={
            "csrf": csrf_of(form.text),
            "password": "a long enough passphrase",
            "password2": "a long enough passphrase",
            "role": "admin",
        },
    )
    assert console.user("invitee@staff.example.org").role == StaffRole.VIEWER


# --- headers and markup of every page ---------------------------------------------------------


def _every_page(console: Console, world: World) -> list[tuple[str, str, TestResponse]]:
    """Every GET page for an admin, for a browser owing its second factor or its set-up, and
    signed out; plain and as an htmx request."""
    console.add_user("pending@staff.example.org", "admin")
    from mailer.staff import sessions

    clients = {
        "admin": console.session_client(world.actors[StaffRole.ADMIN]),
        "2fa owed": console.session_client("pending@staff.example.org", sessions.PASSWORD),
        "setup owed": console.session_client("pending@staff.example.org", sessions.SETUP),
        "signed out": console.client(),
    }
    out = []
    for rule in routes(console.app):
        if "GET" not in methods(rule):
            continue
        path = world.path(rule)
        for label, client in clients.items():
            out.append((f"{label} {path}", path, client.get(path)))
            if label == "admin":
                fragment = client.get(path, headers={"HX-Request": "true"})
                out.append((f"{label} htmx {path}", path, fragment))
    out.append(("404", "/admin/no-such-page", clients["admin"].get("/admin/no-such-page")))
    return out


def test_every_page_has_the_security_headers_and_no_inline_code(
    console: Console, tmp_path: Path
) -> None:
    world = hostile_world(console, tmp_path)
    problems = []
    pages = 0
    for label, _path, response in _every_page(console, world):
        headers = response.headers
        csp = headers.get("Content-Security-Policy", "")
        if "script-src 'self'" not in csp or "unsafe-inline" in csp or "unsafe-eval" in csp:
            problems.append(f"{label}: CSP {csp!r}")
        if "frame-ancestors 'none'" not in csp or headers.get("X-Frame-Options") != "DENY":
            problems.append(f"{label}: may be framed")
        if headers.get("X-Content-Type-Options") != "nosniff":
            problems.append(f"{label}: no nosniff")
        static = urlsplit(label.split(" ")[-1]).path.startswith("/admin/static/")
        if not static and "no-store" not in headers.get("Cache-Control", ""):
            problems.append(f"{label}: Cache-Control {headers.get('Cache-Control')!r}")
        if _is_html(response):
            pages += 1
            problems += [f"{label}: {found}" for found in inline_code(response.text)]
    assert not problems, "\n".join(problems)
    assert pages > len(routes(console.app))


# --- stored and reflected XSS -----------------------------------------------------------------


def test_hostile_text_is_escaped_on_every_page(console: Console, tmp_path: Path) -> None:
    world = hostile_world(console, tmp_path)
    problems = []
    shown = 0
    for label, _path, response in _every_page(console, world):
        if response.status_code >= 500:
            problems.append(f"{label}: {response.status_code}")
        if _is_html(response):
            problems += [f"{label}: unescaped {m!r}" for m in unescaped(response.text)]
            problems += [f"{label}: {found}" for found in inline_code(response.text)]
            # The payloads are shown somewhere (escaped), or this test walked empty pages.
            shown += response.text.count("&lt;script&gt;alert(")
    assert not problems, "\n".join(problems)
    assert shown >= 3, "no page showed the hostile rows"


@pytest.mark.parametrize("payload", [XSS["script"], XSS["img"], XSS["attr"]])
def test_query_values_are_escaped_on_every_page(
    console: Console, tmp_path: Path, payload: str
) -> None:
    world = hostile_world(console, tmp_path)
    admin = console.session_client(world.actors[StaffRole.ADMIN])
    names = ["q", "next", "lang", "kind", "actor", "contact", "since", "list", "status", "tag"]
    names += ["segment", "sort", "before", "after", "page", "where", "error", "email", "name"]
    query = "&".join(f"{n}={quote(payload, safe='')}" for n in names)
    problems = []
    for rule in routes(console.app):
        if "GET" not in methods(rule):
            continue
        path = world.path(rule)
        for client in (admin, console.client()):
            response = client.get(f"{path}?{query}")
            if response.status_code >= 500:
                problems.append(f"{path}: {response.status_code}")
            if _is_html(response):
                problems += [f"{path}: unescaped {m!r}" for m in unescaped(response.text)]
                problems += [f"{path}: {f}" for f in inline_code(response.text)]
    # The error page of a hostile path.
    response = admin.get("/admin/" + quote(payload, safe=""))
    problems += [f"404 page: unescaped {m!r}" for m in unescaped(response.text)]
    assert not problems, "\n".join(problems)


def test_hostile_text_typed_into_every_form_comes_back_escaped(
    console: Console, tmp_path: Path
) -> None:
    # Every field of every form an admin sees, filled with a payload: the answer (a page with
    # the error, or a redirect and its notice) shows it escaped, and nothing fails.
    world = hostile_world(console, tmp_path)
    admin_email = world.actors[StaffRole.ADMIN]
    problems = []
    client = console.session_client(admin_email)
    pages = [
        (world.path(rule), rule)
        for rule in routes(console.app)
        if "GET" in methods(rule) and rule.endpoint != "console.static"
    ]
    seen: set[str] = set()
    for path, _rule in pages:
        page = client.get(path)
        if not _is_html(page):
            continue
        for form in forms_of(page.text, path):
            endpoint = endpoint_of(console.app, form.action) or ""
            if form.action in seen or not form.typed or endpoint in _ENDS_THE_SESSION:
                continue
            seen.add(form.action)
            for payload in (XSS["script"], XSS["attr"]):
                typed = dict.fromkeys(form.typed, payload)
                data = [(k, v) for k, v in form.values if k not in typed and k != "csrf"]
                data += [*typed.items(), ("csrf", console.csrf(client))]
                response = client.post(form.action, data=MultiDict(data))
                if response.status_code >= 500:
                    problems.append(f"{form.action}: {response.status_code}")
                answer = response
                if response.status_code in (302, 303):
                    answer = client.get(response.headers["Location"])
                if _is_html(answer):
                    where = f"{form.action} -> {answer.request.path}"
                    problems += [f"{where}: unescaped {m!r}" for m in unescaped(answer.text)]
                    problems += [f"{where}: {found}" for found in inline_code(answer.text)]
                if not _still_signed_in(client):
                    client = console.session_client(admin_email)
    assert seen, "no form was tried"
    assert not problems, "\n".join(problems)


# Forms that sign the admin out or change the admin's own secrets: tried elsewhere.
_ENDS_THE_SESSION = {
    "console.logout",
    "console.account_password",
    "console.twofactor_disable",
    "console.account_sign_out_everywhere",
}


def _still_signed_in(client: FlaskClient) -> bool:
    return client.get("/admin/account").status_code == 200
