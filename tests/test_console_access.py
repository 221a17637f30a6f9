"""Who may open what: every console route of the app's URL map, for every role, for no session,
for a session still owing its second factor and for one that must set it up first, against the
one declared table (mailer/web/console/access.py).

Generic: the routes come from the app, so a page another area adds is walked too, and a route
without a line in access.TABLE fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from mailer.staff import sessions
from mailer.store.models import StaffRole
from mailer.web import create_app
from mailer.web.console import access
from tests.support.console import (
    ROLES,
    Console,
    World,
    hostile_world,
    location_path,
    methods,
    need,
    routes,
    to_login,
)

pytestmark = pytest.mark.db

# Where the guard sends a session that is not fully signed in.
STAGE_PAGE = {sessions.PASSWORD: "/admin/login/2fa", sessions.SETUP: "/admin/account/2fa"}


def test_every_console_route_is_in_the_table_and_the_table_has_no_stale_line(
    console: Console,
) -> None:
    endpoints = {rule.endpoint for rule in routes(console.app)}
    assert endpoints, "the app has no /admin routes: is the console registered?"
    missing = sorted(endpoints - set(access.TABLE))
    assert not missing, f"routes without a rule in mailer/web/console/access.py: {missing}"
    stale = sorted(set(access.TABLE) - endpoints)
    assert not stale, f"access.TABLE lines for endpoints the app does not have: {stale}"
    # Every console endpoint lives under /admin (a second rule elsewhere would skip the guard).
    elsewhere = [
        rule.rule
        for rule in console.app.url_map.iter_rules()
        if rule.endpoint in endpoints and not rule.rule.startswith("/admin")
    ]
    assert not elsewhere, elsewhere
    for endpoint in access.UPLOADS:
        assert endpoint not in access.TABLE or access.TABLE[endpoint] != access.PUBLIC


def test_an_undeclared_route_is_refused_for_everyone(console: Console) -> None:
    # Fail closed: a console view without a table line answers 404, even to an admin. The probe
    # goes on a second app (the fixture's stays as it is); its endpoint's "console." prefix puts
    # it under the console blueprint's guard, as a view an area forgot to declare would be.
    app = create_app(console.settings)
    app.add_url_rule(
        "/admin/undeclared-probe", endpoint="console.undeclared_probe", view_func=lambda: "reached"
    )
    other = Console(app, console.settings)
    other.add_user("admin@staff.example.org", "admin")
    for client in (other.session_client("admin@staff.example.org"), other.client()):
        response = client.get("/admin/undeclared-probe")
        assert response.status_code == 404 and b"reached" not in response.data


Actor = tuple[str, StaffRole | None, str | None]  # (label, role, stage); role None: no session


def _actors() -> list[Actor]:
    out: list[Actor] = [("no session", None, None)]
    out += [(role.value, role, sessions.FULL) for role in ROLES]
    # A session owing its second factor, and one that must set it up: an admin's, so that a
    # refusal cannot come from the role.
    out.append(("admin owing a 2FA code", StaffRole.ADMIN, sessions.PASSWORD))
    out.append(("admin owing 2FA setup", StaffRole.ADMIN, sessions.SETUP))
    return out


def _allowed(required: access.Need, role: StaffRole | None, stage: str | None) -> bool:
    if required == access.PUBLIC:
        return True
    if role is None or stage is None:
        return False
    if required == access.PENDING:
        return True
    if stage == sessions.PASSWORD:
        return False
    if required == access.SETUP:
        return True
    if stage == sessions.SETUP:
        return False
    assert isinstance(required, StaffRole)
    # The order of the issue, written out here rather than read from mailer.staff.roles.
    return ROLES.index(role) >= ROLES.index(required)


def _check(
    rule: Rule,
    method: str,
    actor: Actor,
    response: TestResponse,
) -> str | None:
    """What is wrong with `response` (None when it is what the table says)."""
    label, role, stage = actor
    required = need(rule)
    where = f"{method} {rule.rule} ({rule.endpoint}, needs {required}) as {label}"
    got = f"{response.status_code} {location_path(response)}".strip()
    if response.status_code >= 500:
        return f"{where}: server error {got}"
    if _allowed(required, role, stage):
        if response.status_code in (401, 403) or (method == "GET" and to_login(response)):
            return f"{where}: refused ({got}) but the table allows it"
        if (
            stage in STAGE_PAGE
            and location_path(response) == STAGE_PAGE[stage]
            and rule.endpoint not in ("console.twofactor_setup", "console.second_factor")
        ):
            return f"{where}: sent to {got} but the table allows it"
        return None
    if role is None:
        expected_login = to_login(response) if method == "GET" else response.status_code == 401
        if not expected_login:
            return f"{where}: got {got}, expected the sign-in page (GET) or 401 (POST)"
        return None
    if stage in STAGE_PAGE:
        if location_path(response) != STAGE_PAGE[stage]:
            return f"{where}: got {got}, expected a redirect to {STAGE_PAGE[stage]}"
        return None
    if response.status_code != 403:
        return f"{where}: got {got}, expected 403"
    return None


def _served_by_another_rule(console: Console, path: str, method: str) -> bool:
    try:
        console.app.url_map.bind("localhost").match(path, method=method)
    except MethodNotAllowed:
        return False
    return True


def _client_for(console: Console, world: World, actor: Actor) -> FlaskClient:
    _label, role, stage = actor
    if role is None or stage is None:
        return console.client()
    return console.session_client(world.actors[role], stage)


def _walk(console: Console, world: World, walked: set[str]) -> list[str]:
    """GET every route, then each route's own methods, as every actor; returns the problems."""
    problems: list[str] = []
    rules = routes(console.app)
    # Every GET first: a permitted POST may change the rows later requests use.
    plan = [(rule, "GET") for rule in rules]
    plan += [(rule, method) for rule in rules for method in methods(rule) if method != "GET"]
    for rule, method in plan:
        path = world.path(rule)
        if method not in (rule.methods or set()) and _served_by_another_rule(console, path, method):
            continue  # e.g. GET of a form's POST address: that GET route is walked itself
        # Refusals first, for the same reason.
        for actor in sorted(_actors(), key=lambda a: _allowed(need(rule), a[1], a[2])):
            client = _client_for(console, world, actor)
            if method == "GET":
                response = client.get(path)
            else:
                response = client.open(path, method=method, data={"csrf": console.csrf(client)})
            if method not in (rule.methods or set()):
                if response.status_code != 405:
                    problems.append(
                        f"{method} {rule.rule} as {actor[0]}: {response.status_code}, "
                        "expected 405 (the route does not take this method)"
                    )
                continue
            walked.add(rule.endpoint)
            problem = _check(rule, method, actor, response)
            if problem:
                problems.append(problem)
    return problems


def test_every_route_for_every_role_and_stage_follows_the_table(
    console: Console, tmp_path: Path
) -> None:
    world = hostile_world(console, tmp_path)
    walked: set[str] = set()
    problems = _walk(console, world, walked)
    assert not problems, "\n".join(problems)
    # The walk went to every route (it cannot pass by walking nothing).
    assert walked == {rule.endpoint for rule in routes(console.app)}


def test_a_denied_post_changes_nothing(console: Console, tmp_path: Path) -> None:
    # Refused requests leave no event: the refusal comes before the view.
    world = hostile_world(console, tmp_path)
    before = console.event_count()
    for rule in routes(console.app):
        if "POST" not in methods(rule) or need(rule) != StaffRole.ADMIN:
            continue
        for role in (StaffRole.VIEWER, StaffRole.EDITOR, StaffRole.SENDER):
            client = console.session_client(world.actors[role])
            response = client.post(world.path(rule), data={"csrf": console.csrf(client)})
            assert response.status_code == 403, (rule.rule, role, response.status_code)
    assert console.event_count() == before
