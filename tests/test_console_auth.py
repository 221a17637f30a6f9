"""Staff sign-in as an outsider tries it: invitations, passwords, throttling, sessions, password
reset, two-factor sign-in and its bypasses, and `mailer users` for the admin at the terminal."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pyotp
import pytest
from argon2 import PasswordHasher
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import StaffRole
from mailer.web import create_app
from tests.support.cli import Cli
from tests.support.console import (
    PASSWORD,
    SESSION_COOKIE,
    Clock,
    Console,
    csrf_of,
    location_path,
    to_login,
)

pytestmark = pytest.mark.db

NEW_PASSWORD = "another long passphrase 42"


def _link(output: str) -> str:
    found = re.search(r"https?://\S+/admin/invite/\S+", output)
    assert found, output
    return found.group(0)


def _cookie(client: FlaskClient) -> str | None:
    found = client.get_cookie(SESSION_COOKIE, path="/admin")
    return found.value if found else None


def _set_cookies(response: TestResponse, name: str) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]


def _signed_in(client: FlaskClient) -> bool:
    """True when the client's session opens the console's first page."""
    return client.get("/admin/").status_code == 200


def _error(response: TestResponse) -> str:
    found = re.search(r'id="form-error">([^<]*)<', response.text)
    return found.group(1) if found else ""


def _accept(console: Console, path: str, password: str, password2: str | None = None) -> Any:
    client = console.client()
    page = client.get(path)
    assert page.status_code == 200, page.text
    response = client.post(
        path,
        data={
            "csrf": csrf_of(page.text),
            "password": password,
            "password2": password if password2 is None else password2,
            "name": "Ana Kim",
        },
    )
    return client, response


def _secret_of(page: str) -> str:
    found = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page)
    assert found, "the set-up page shows no key"
    return found.group(1)


def _set_up_2fa(console: Console, client: FlaskClient, clock: Clock) -> tuple[str, list[str]]:
    """Turn on two-factor sign-in the way a user does; returns the secret and recovery codes."""
    page = client.get("/admin/account/2fa")
    assert page.status_code == 200, page.status_code
    secret = _secret_of(page.text)
    done = client.post(
        "/admin/account/2fa", data={"csrf": csrf_of(page.text), "code": clock.totp(secret)}
    )
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
    assert len(codes) == 10, done.text
    return secret, codes


# --- invitations ------------------------------------------------------------------------------


def test_cli_invitation_link_works_once_and_signs_the_invitee_in(
    console: Console, cli: Cli
) -> None:
    out = cli("users", "add", "Ana@Example.org", "--role", "editor", "--name", "Ana").output
    assert "ana@example.org is invited as editor" in out and "Emailed to the outbox too." in out
    link = _link(out)
    assert link.startswith(console.settings.base_url + "/admin/invite/")
    mailed = console.outbox()
    assert len(mailed) == 1 and mailed[0]["To"] == "ana@example.org"
    assert link in mailed[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    path = console.path(link)
    page = console.client().get(path)
    assert page.status_code == 200 and "ana@example.org" in page.text
    client, response = _accept(console, path, NEW_PASSWORD)
    assert response.status_code == 303 and location_path(response) == "/admin/"
    assert _signed_in(client)
    assert console.user("ana@example.org").name == "Ana Kim"
    assert [e.actor for e in console.events("staff_joined")] == ["user:ana@example.org"]
    # Twice: the link is spent, for reading and for posting.
    assert console.client().get(path).status_code == 404
    _again, second = _accept_spent(console, path)
    assert second.status_code == 404
    assert console.sign_in(console.client(), "ana@example.org", NEW_PASSWORD).status_code == 303


def _accept_spent(console: Console, path: str) -> tuple[FlaskClient, TestResponse]:
    client = console.client()
    form = client.get("/admin/login")
    response = client.post(
        path,
        data={"csrf": csrf_of(form.text), "password": "a third passphrase 77", "password2": ""},
    )
    return client, response


def test_invitation_expires_after_seven_days(console: Console, cli: Cli) -> None:
    clock = Clock()
    path = console.path(_link(cli("users", "add", "bo@example.org", "--role", "viewer").output))
    clock.advance(days=7, minutes=-1)
    assert console.client().get(path).status_code == 200
    clock.advance(minutes=2)
    assert console.client().get(path).status_code == 404
    _client, response = _accept_spent(console, path)
    assert response.status_code == 404
    assert console.user("bo@example.org").password_hash is None


def test_a_new_invitation_voids_the_old_link(console: Console, cli: Cli) -> None:
    old = console.path(_link(cli("users", "add", "cy@example.org", "--role", "viewer").output))
    out = cli("users", "invite", "cy@example.org").output
    new = console.path(_link(out))
    assert old != new and "older ones stop working" in out
    assert console.client().get(old).status_code == 404
    _client, response = _accept(console, new, NEW_PASSWORD)
    assert response.status_code == 303
    # Someone who has a password gets a reset, not a new invitation.
    refused = cli("users", "invite", "cy@example.org", expect=1)
    assert "already set a password" in refused.output and "Traceback" not in refused.output


@pytest.mark.parametrize(
    ("password", "password2", "message"),
    [
        ("short pass", None, "at least 12 characters"),
        ("x" * 257, None, "at most 256 characters"),
        ("my name is dae-ho kim", None, "must not contain your email address"),
        ("abababababababab", None, "too few different characters"),
        (NEW_PASSWORD, NEW_PASSWORD + "!", "The two passwords differ."),
    ],
)
def test_password_rules_are_told_and_nothing_is_set(
    console: Console, password: str, password2: str | None, message: str
) -> None:
    with session_scope(console.settings) as s:
        _user, token = accounts.add(s, "dae-ho@example.org", "viewer")
    path = f"/admin/invite/{token}"
    client, response = _accept(console, path, password, password2)
    assert response.status_code in (200, 422) and message in _error(response), response.text
    assert console.user("dae-ho@example.org").password_hash is None
    assert _cookie(client) is None
    # The refused try did not spend the link.
    _client, ok = _accept(console, path, NEW_PASSWORD)
    assert ok.status_code == 303


# --- signing in -------------------------------------------------------------------------------


def test_sign_in_with_the_right_and_a_wrong_password(console: Console) -> None:
    console.add_user("eun@example.org", "viewer")
    client = console.client()
    wrong = console.sign_in(client, "eun@example.org", "not the password at all")
    assert wrong.status_code == 200 and _cookie(client) is None
    assert "do not match an account" in _error(wrong)
    assert not _signed_in(client)
    right = console.sign_in(client, "EUN@example.org ", PASSWORD)
    assert right.status_code == 303 and location_path(right) == "/admin/"
    assert _signed_in(client)
    kinds = [e.kind for e in console.events() if e.kind.startswith("staff_sign")]
    assert kinds == ["staff_sign_in_failed", "staff_signed_in"]  # no second factor: signed in
    assert console.user("eun@example.org").last_login_at is not None


def test_an_unknown_address_and_a_wrong_password_get_the_same_answer(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    console.add_user("fay@example.org", "viewer")
    with session_scope(console.settings) as s:
        accounts.add(s, "invited@example.org", "viewer")  # no password yet
    # Count argon2 verifications: each answer must have cost one (the same time).
    calls: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append("verify")
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    answers = []
    for email in ("fay@example.org", "nobody@example.org", "invited@example.org"):
        calls.clear()
        response = console.sign_in(console.client(), email, "wrong password here")
        assert calls == ["verify"], (email, calls)
        # The page differs only by the address typed back and the form's CSRF value.
        answers.append((response.status_code, _normalised(response.text.replace(email, "E"))))
    assert answers[0] == answers[1] == answers[2]


def _normalised(page: str) -> str:
    """A page with its CSRF values blanked (they differ from browser to browser)."""
    page = re.sub(r'name="csrf" value="[^"]+"', 'name="csrf" value=""', page)
    return re.sub(r'"X-CSRF-Token": "[^"]+"', '"X-CSRF-Token": ""', page)


def _fail(console: Console, client: FlaskClient, email: str, times: int) -> None:
    for _ in range(times):
        response = console.sign_in(client, email, "wrong password here")
        assert response.status_code == 200 and _cookie(client) is None


def test_an_account_locks_after_five_tries_until_an_admin_unlocks_it(
    console: Console, cli: Cli
) -> None:
    clock = Clock()
    target = console.add_user("gil@example.org", "editor")
    _fail(console, console.client(), "gil@example.org", 5)
    # The right password on the sixth try, even from another address: still refused.
    elsewhere = console.client(REMOTE_ADDR="198.51.100.9")
    locked = console.sign_in(elsewhere, "gil@example.org", PASSWORD)
    assert locked.status_code == 200 and _cookie(elsewhere) is None
    assert "Too many sign-in attempts for this account. Try again after 09:15 UTC" in (
        _error(locked)
    )
    assert "ask an admin to unlock it" in _error(locked)
    # Other accounts from the same address are not locked.
    console.add_user("admin@example.org", "admin")
    admin = console.client()
    assert console.sign_in(admin, "admin@example.org").status_code == 303
    # The admin unlocks it on the Users page.
    response = console.post(admin, f"/admin/users/{target}/unlock")
    assert response.status_code == 303
    assert [e.actor for e in console.events("staff_unlocked")] == ["user:admin@example.org"]
    assert console.sign_in(console.client(), "gil@example.org").status_code == 303
    # Locked again, unlocked from the terminal this time.
    _fail(console, console.client(), "gil@example.org", 5)
    assert console.sign_in(console.client(), "gil@example.org").status_code == 200
    assert "can sign in again" in cli("users", "unlock", "gil@example.org").output
    assert console.sign_in(console.client(), "gil@example.org").status_code == 303
    # Or the window passes.
    _fail(console, console.client(), "gil@example.org", 5)
    clock.advance(minutes=16)
    assert console.sign_in(console.client(), "gil@example.org").status_code == 303


def test_thirty_tries_from_one_address_lock_that_address(console: Console) -> None:
    Clock()
    console.add_user("hana@example.org", "viewer")
    network = console.client(REMOTE_ADDR="203.0.113.7")
    for n in range(30):
        response = console.sign_in(network, f"guess{n}@example.org", "wrong password here")
        assert "Too many" not in _error(response), n
    refused = console.sign_in(network, "hana@example.org", PASSWORD)
    assert refused.status_code == 200 and _cookie(network) is None
    assert "Too many sign-in attempts from your network. Try again after 09:15 UTC." in (
        _error(refused)
    )
    assert (
        console.sign_in(console.client(REMOTE_ADDR="203.0.113.8"), "hana@example.org").status_code
        == 303
    )


# --- sessions ---------------------------------------------------------------------------------


def test_sign_in_gives_a_new_session_token_so_a_planted_one_is_worth_nothing(
    console: Console,
) -> None:
    console.add_user("mallory@example.org", "viewer", totp=pyotp.random_base32())
    console.add_user("ines@example.org", "admin")
    # The attacker's own session, half signed in (their password is right, a code is owed),
    # planted in the victim's browser: the sign-in form still shows there.
    attacker = console.client()
    assert location_path(console.sign_in(attacker, "mallory@example.org")) == "/admin/login/2fa"
    planted = _cookie(attacker)
    assert planted
    victim = console.client()
    victim.set_cookie(SESSION_COOKIE, planted, path="/admin")
    assert console.sign_in(victim, "ines@example.org").status_code == 303
    after = _cookie(victim)
    assert after and after != planted
    assert victim.get("/admin/users").status_code == 200
    # The planted token opens nothing now: not the victim's account, not the attacker's.
    replay = console.client()
    replay.set_cookie(SESSION_COOKIE, planted, path="/admin")
    assert to_login(replay.get("/admin/users")) and to_login(replay.get("/admin/"))
    # A made-up token set before sign-in is replaced as well.
    other = console.client()
    other.set_cookie(SESSION_COOKIE, "made-up-token-0123456789", path="/admin")
    assert console.sign_in(other, "ines@example.org").status_code == 303
    assert _cookie(other) not in (None, "made-up-token-0123456789")


def test_idle_and_absolute_timeouts(console: Console) -> None:
    clock = Clock()
    console.add_user("jin@example.org", "viewer")
    idle = console.signed_in("viewer", "jin@example.org")
    clock.advance(minutes=29)
    assert _signed_in(idle)
    clock.advance(minutes=29)  # 29 minutes since the last request: still in
    assert _signed_in(idle)
    clock.advance(minutes=31)
    assert to_login(idle.get("/admin/"))
    assert not _signed_in(idle)  # ended, not merely refused once
    # Busy all day: signed out 12 hours after signing in all the same.
    busy = console.signed_in("viewer", "jin@example.org")
    for _ in range(35):
        clock.advance(minutes=20)
        assert _signed_in(busy), clock.now
    clock.advance(minutes=20)  # 12 h 0 min after sign-in
    assert _signed_in(busy)
    clock.advance(minutes=1)
    assert to_login(busy.get("/admin/"))


def test_cookie_flags(console: Console) -> None:
    console.add_user("kai@example.org", "viewer")
    client = console.client()
    form = client.get("/admin/login")
    pre = _set_cookies(form, "mailer_console_pre")
    response = client.post(
        "/admin/login",
        data={"email": "kai@example.org", "password": PASSWORD, "csrf": csrf_of(form.text)},
    )
    session = _set_cookies(response, SESSION_COOKIE)
    logout = console.post(client, "/admin/logout")
    notice = _set_cookies(logout, "mailer_console_notice")
    assert pre and session and notice
    # base_url is https in the tests' settings: every console cookie is Secure.
    for header in (*pre, *session, *notice):
        assert "HttpOnly" in header and "Path=/admin" in header, header
        assert "SameSite=Lax" in header or "SameSite=Strict" in header, header
        assert "Secure" in header, header
    assert "SameSite=Lax" in session[0]  # an emailed link to a page opens it signed in
    # Over plain http (a trial on a laptop) the cookie cannot be Secure, or it would not work.
    plain = replace(console.settings, base_url="http://127.0.0.1:8000")
    http = Console(create_app(plain), plain)
    http_client = http.client()
    signed = http.sign_in(http_client, "kai@example.org")
    header = _set_cookies(signed, SESSION_COOKIE)[0]
    assert "HttpOnly" in header and "Secure" not in header
    # console_url decides where the console lives.
    tls = replace(plain, console_url="https://console.hanul.example.org")
    secure = Console(create_app(tls), tls)
    assert (
        "Secure"
        in _set_cookies(secure.sign_in(secure.client(), "kai@example.org"), SESSION_COOKIE)[0]
    )


def test_logout_ends_the_session(console: Console) -> None:
    client = console.signed_in("viewer")
    token = _cookie(client)
    response = console.post(client, "/admin/logout")
    assert response.status_code == 303 and location_path(response) == "/admin/login"
    assert _cookie(client) is None
    assert "You are signed out." in client.get("/admin/login").text
    replay = console.client()
    replay.set_cookie(SESSION_COOKIE, token or "", path="/admin")
    assert to_login(replay.get("/admin/"))


def test_sign_out_everywhere_else(console: Console) -> None:
    here = console.signed_in("editor")
    there = console.client()
    assert console.sign_in(there, "editor@staff.example.org").status_code == 303
    response = console.post(here, "/admin/account/sign-out-everywhere")
    assert response.status_code == 303
    assert _signed_in(here) and to_login(there.get("/admin/"))
    assert [e.data["sessions"] for e in console.events("staff_signed_out_everywhere")] == [1]


def test_changing_the_password_ends_the_other_sessions(console: Console) -> None:
    here = console.signed_in("editor")
    there = console.client()
    assert console.sign_in(there, "editor@staff.example.org").status_code == 303
    wrong = console.post(
        here,
        "/admin/account/password",
        {"current": "not my password", "new": NEW_PASSWORD, "new2": NEW_PASSWORD},
    )
    assert wrong.status_code == 422 and "current password is not right" in _error(wrong)
    assert _signed_in(there)
    response = console.post(
        here,
        "/admin/account/password",
        {"current": PASSWORD, "new": NEW_PASSWORD, "new2": NEW_PASSWORD},
    )
    assert response.status_code == 303
    assert _signed_in(here) and to_login(there.get("/admin/"))
    assert console.sign_in(console.client(), "editor@staff.example.org").status_code == 200
    assert (
        console.sign_in(console.client(), "editor@staff.example.org", NEW_PASSWORD).status_code
        == 303
    )
    assert len(console.events("staff_password_changed")) == 1


def _reset_link(console: Console) -> str:
    mailed = [m for m in console.outbox() if "Reset" in str(m["Subject"])]
    assert len(mailed) == 1, [m["Subject"] for m in console.outbox()]
    body = mailed[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    found = re.search(r"https?://\S+/admin/reset/\S+", body)
    assert found, body
    return console.path(found.group(0))


def _ask_reset(console: Console, email: str) -> TestResponse:
    client = console.client()
    form = client.get("/admin/reset")
    response = client.post("/admin/reset", data={"csrf": csrf_of(form.text), "email": email})
    # The email goes when the server closes the response, after sending it (as waitress does).
    response.close()
    return response


def test_password_reset_by_email_works_once_within_an_hour(console: Console) -> None:
    clock = Clock()
    console.add_user("lina@example.org", "editor")
    elsewhere = console.signed_in("editor", "lina@example.org")
    unknown = _ask_reset(console, "nobody@example.org")
    known = _ask_reset(console, "lina@example.org")
    assert unknown.status_code == known.status_code == 200
    assert _normalised(unknown.text) == _normalised(known.text)
    path = _reset_link(console)  # one email: none for the unknown address
    form = console.client().get(path)
    assert form.status_code == 200
    client = console.client()
    done = client.post(
        path,
        data={
            "csrf": csrf_of(client.get(path).text),
            "password": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )
    assert done.status_code == 303 and location_path(done) == "/admin/login"
    assert console.client().get(path).status_code == 404  # once
    assert to_login(elsewhere.get("/admin/"))  # a reset ends a stolen session
    assert console.sign_in(console.client(), "lina@example.org", NEW_PASSWORD).status_code == 303
    # An hour, no more.
    _ask_reset(console, "lina@example.org")
    mailed = [m for m in console.outbox() if "Reset" in str(m["Subject"])]
    body = mailed[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    late = console.path(re.findall(r"https?://\S+/admin/reset/\S+", body)[0])
    clock.advance(minutes=59)
    assert console.client().get(late).status_code == 200
    clock.advance(minutes=2)
    assert console.client().get(late).status_code == 404


def test_reset_emails_are_limited_per_account(console: Console) -> None:
    # Anyone can ask for a reset of anyone's account: a few emails an hour, and the same page.
    console.add_user("mo@example.org", "viewer")
    pages = {_normalised(_ask_reset(console, "mo@example.org").text) for _ in range(5)}
    assert len(pages) == 1
    mailed = [m for m in console.outbox() if "Reset" in str(m["Subject"])]
    assert len(mailed) == 3


def test_a_disabled_user_is_signed_out_at_once(console: Console, cli: Cli) -> None:
    target = console.add_user("min@example.org", "editor")
    victim = console.signed_in("editor", "min@example.org")
    admin = console.signed_in("admin")
    assert console.post(admin, f"/admin/users/{target}/disable").status_code == 303
    assert to_login(victim.get("/admin/"))
    refused = console.sign_in(console.client(), "min@example.org")
    assert refused.status_code == 200 and "This account is disabled" in _error(refused)
    assert "min@example.org is enabled." in cli("users", "enable", "min@example.org").output
    assert console.sign_in(console.client(), "min@example.org").status_code == 303
    # An admin cannot disable themselves, and the last admin cannot be disabled from the CLI.
    me = console.users["admin@staff.example.org"]
    console.post(admin, f"/admin/users/{me}/disable")
    assert not console.user("admin@staff.example.org").disabled
    last = cli("users", "disable", "admin@staff.example.org", expect=1)
    assert "only enabled admin" in last.output


def test_a_role_change_applies_at_once(console: Console, cli: Cli) -> None:
    target = console.add_user("nam@example.org", "viewer")
    nam = console.signed_in("viewer", "nam@example.org")
    assert nam.get("/admin/users").status_code == 403
    admin = console.signed_in("admin")
    response = console.post(admin, f"/admin/users/{target}/role", {"role": "admin"})
    assert response.status_code == 303 and console.user("nam@example.org").role == StaffRole.ADMIN
    # The old session (made when the role was viewer) is over; the next one has the new role.
    assert to_login(nam.get("/admin/"))
    nam = console.signed_in("admin", "nam@example.org")
    assert nam.get("/admin/users").status_code == 200
    cli("users", "role", "nam@example.org", "viewer")
    assert to_login(nam.get("/admin/users"))
    event = console.events("staff_role")[-1]
    assert (event.actor, event.data["old"], event.data["new"]) == ("cli", "admin", "viewer")


# --- two-factor sign-in -----------------------------------------------------------------------


def test_two_factor_set_up_with_an_authenticator_code_and_sign_in(console: Console) -> None:
    clock = Clock()
    client = console.signed_in("editor")
    other = console.client()
    assert console.sign_in(other, "editor@staff.example.org").status_code == 303
    secret, _codes = _set_up_2fa(console, client, clock)
    assert console.user("editor@staff.example.org").totp_enabled
    assert _signed_in(client)
    assert to_login(other.get("/admin/"))  # password-only sessions elsewhere end
    fresh = console.client()
    first = console.sign_in(fresh, "editor@staff.example.org")
    assert location_path(first) == "/admin/login/2fa"
    assert not _signed_in(fresh)
    clock.advance(seconds=30)
    form = fresh.get("/admin/login/2fa")
    done = fresh.post(
        "/admin/login/2fa", data={"csrf": csrf_of(form.text), "code": clock.totp(secret)}
    )
    assert done.status_code == 303 and location_path(done) == "/admin/"
    assert _signed_in(fresh)


def _second_factor(client: FlaskClient, code: str) -> TestResponse:
    form = client.get("/admin/login/2fa")
    assert form.status_code == 200, form.status_code
    return client.post("/admin/login/2fa", data={"csrf": csrf_of(form.text), "code": code})


def test_a_code_is_good_once_and_a_recovery_code_once(console: Console) -> None:
    clock = Clock()
    client = console.signed_in("editor")
    secret, codes = _set_up_2fa(console, client, clock)
    clock.advance(seconds=30)
    code = clock.totp(secret)
    first = console.client()
    console.sign_in(first, "editor@staff.example.org")
    assert _second_factor(first, code).status_code == 303
    # The same code again, within its 30 seconds (read over a shoulder, replayed from a log).
    replay = console.client()
    console.sign_in(replay, "editor@staff.example.org")
    again = _second_factor(replay, code)
    assert again.status_code == 200 and "code is not right" in _error(again)
    assert not _signed_in(replay)
    # A recovery code (typed as printed, or without the dash) works once.
    rescue = console.client()
    console.sign_in(rescue, "editor@staff.example.org")
    assert _second_factor(rescue, codes[0].upper()).status_code == 303
    twice = console.client()
    console.sign_in(twice, "editor@staff.example.org")
    assert _second_factor(twice, codes[0].replace("-", "")).status_code == 200
    assert _second_factor(twice, codes[1].replace("-", "")).status_code == 303
    assert len(console.user("editor@staff.example.org").recovery_codes) == 8


def test_two_factor_cannot_be_bypassed(console: Console) -> None:
    clock = Clock()
    client = console.signed_in("admin")
    secret, _codes = _set_up_2fa(console, client, clock)
    admin_id = console.users["admin@staff.example.org"]
    console.add_user("victim@example.org", "viewer")
    pending = console.client()
    assert location_path(console.sign_in(pending, "admin@staff.example.org")) == (
        "/admin/login/2fa"
    )
    # Going to any page while owing a code leads back to the code page.
    for path in ("/admin/", "/admin/users", "/admin/account", "/admin/account/2fa", "/admin/audit"):
        assert location_path(pending.get(path)) == "/admin/login/2fa", path
    # POSTing to other endpoints at the password stage does nothing.
    token = console.csrf(pending)
    before = console.event_count()
    victim_id = console.users["victim@example.org"]
    posts: dict[str, dict[str, str]] = {
        "/admin/users": {"email": "evil@example.org", "role": "admin"},
        f"/admin/users/{victim_id}/role": {"role": "admin"},
        f"/admin/users/{admin_id}/reset-2fa": {},
        "/admin/account/2fa/disable": {"password": PASSWORD},
        "/admin/account/2fa": {"code": clock.totp(secret)},
        "/admin/account/password": {"current": PASSWORD, "new": NEW_PASSWORD, "new2": NEW_PASSWORD},
        "/admin/account/sign-out-everywhere": {},
        "/admin/users/policy": {},
    }
    for path, data in posts.items():
        response = pending.post(path, data={**data, "csrf": token})
        assert location_path(response) == "/admin/login/2fa", (path, response.status_code)
    assert console.event_count() == before
    user = console.user("admin@staff.example.org")
    assert user.totp_enabled and user.totp_secret == secret
    assert console.user("victim@example.org").role == StaffRole.VIEWER
    # Wrong codes count against the account, with the password's try: 4 guesses, then signing
    # in again with the right password does not buy 4 more (it would, were the password's
    # success to forget the account's failures while a code is still owed).
    for _ in range(4):
        assert "code is not right" in _error(_second_factor(pending, "000000"))
    again = console.client()
    relog = console.sign_in(again, "admin@staff.example.org")
    assert "Too many sign-in attempts" in _error(relog) and _cookie(again) is None
    clock.advance(seconds=30)
    locked = _second_factor(pending, clock.totp(secret))
    assert "Too many sign-in attempts" in _error(locked)
    assert not _signed_in(pending)
    # Once the window is over, the right code upgrades the session under a new token.
    clock.advance(minutes=16)
    fresh = console.client()
    console.sign_in(fresh, "admin@staff.example.org")
    pre = _cookie(fresh)
    assert _second_factor(fresh, clock.totp(secret)).status_code == 303
    assert _cookie(fresh) not in (None, pre) and _signed_in(fresh)
    stale = console.client()
    stale.set_cookie(SESSION_COOKIE, pre or "", path="/admin")
    assert to_login(stale.get("/admin/")) and to_login(stale.get("/admin/login/2fa"))
    # A code owed for more than 5 minutes: the half-finished sign-in is over.
    slow = console.client()
    console.sign_in(slow, "admin@staff.example.org")
    clock.advance(minutes=6)
    assert to_login(slow.get("/admin/login/2fa"))


def test_two_factor_required_for_a_role(console: Console, cli: Cli) -> None:
    clock = Clock()
    console.add_user("ola@example.org", "editor")
    admin = console.signed_in("admin")
    assert "required for editor" in cli("users", "require-2fa", "editor").output
    client = console.client()
    first = console.sign_in(client, "ola@example.org")
    assert location_path(first) == "/admin/account/2fa"
    # Nothing but setting it up (and the account page's language, and signing out).
    for path in ("/admin/", "/admin/users", "/admin/audit"):
        assert location_path(client.get(path)) == "/admin/account/2fa", path
    token = console.csrf(client)
    response = client.post(
        "/admin/account/password",
        data={"csrf": token, "current": PASSWORD, "new": NEW_PASSWORD, "new2": NEW_PASSWORD},
    )
    assert location_path(response) == "/admin/account/2fa"
    assert client.get("/admin/account/2fa").status_code == 200
    before = _cookie(client)
    _set_up_2fa(console, client, clock)
    assert _cookie(client) != before and _signed_in(client)
    # The admin lifts the rule on the Users page: the checkboxes say which roles need it.
    response = console.post(admin, "/admin/users/policy", {"require_2fa": ["admin"]})
    assert response.status_code == 303
    with session_scope(console.settings) as s:
        assert not accounts.requires_2fa(s, StaffRole.EDITOR)
        assert accounts.requires_2fa(s, StaffRole.ADMIN)
    # The rule applies at the admin's next sign-in.
    assert location_path(console.sign_in(console.client(), "admin@staff.example.org")) == (
        "/admin/account/2fa"
    )
    # A role that requires it cannot turn it off.
    cli("users", "require-2fa", "editor")
    clock.advance(seconds=30)
    ola = console.client()
    console.sign_in(ola, "ola@example.org", totp=_secret(console, "ola@example.org"))
    refused = console.post(ola, "/admin/account/2fa/disable", {"password": PASSWORD})
    assert refused.status_code == 303
    assert console.user("ola@example.org").totp_enabled


def _secret(console: Console, email: str) -> str:
    secret = console.user(email).totp_secret
    assert secret
    return secret


# --- mailer users -----------------------------------------------------------------------------


def test_mailer_users_commands(console: Console, cli: Cli) -> None:
    clock = Clock()
    assert "No staff accounts yet" in cli("users", "ls").output
    cli("users", "add", "root@example.org", "--role", "admin")
    console.add_user("pia@example.org", "editor")
    rows = {r["email"]: r for r in json.loads(cli("users", "ls", "--json").output)}
    assert rows["root@example.org"]["status"] == "invited"
    assert rows["pia@example.org"]["status"] == "active"
    assert rows["pia@example.org"]["role"] == "editor"
    table = cli("users", "ls").output
    assert "pia@example.org" in table and "editor" in table
    # role
    pia = console.signed_in("editor", "pia@example.org")
    assert (
        "pia@example.org is now sender." in cli("users", "role", "pia@example.org", "sender").output
    )
    assert to_login(pia.get("/admin/"))
    bad = cli("users", "role", "pia@example.org", "owner", expect=1)
    assert "unknown role 'owner'" in bad.output and "viewer, editor, sender, admin" in bad.output
    missing = cli("users", "role", "nobody@example.org", "viewer", expect=1)
    assert "no staff account 'nobody@example.org'" in missing.output
    # disable / enable
    cli("users", "disable", "pia@example.org")
    rows = {r["email"]: r for r in json.loads(cli("users", "ls", "--json").output)}
    assert rows["pia@example.org"]["status"] == "disabled"
    cli("users", "enable", "pia@example.org")
    # unlock
    _fail(console, console.client(), "pia@example.org", 5)
    assert console.sign_in(console.client(), "pia@example.org").status_code == 200
    cli("users", "unlock", "pia@example.org")
    assert console.sign_in(console.client(), "pia@example.org").status_code == 303
    # reset-2fa: a lost phone
    client = console.signed_in("sender", "pia@example.org")
    _set_up_2fa(console, client, clock)
    out = cli("users", "reset-2fa", "pia@example.org").output
    assert "Two-factor sign-in is off for pia@example.org" in out
    assert to_login(client.get("/admin/"))
    user = console.user("pia@example.org")
    assert not user.totp_enabled and user.totp_secret is None and user.recovery_codes == []
    assert location_path(console.sign_in(console.client(), "pia@example.org")) == "/admin/"
    # require-2fa and --off
    cli("users", "require-2fa", "sender")
    assert location_path(console.sign_in(console.client(), "pia@example.org")) == (
        "/admin/account/2fa"
    )
    assert "no longer required" in cli("users", "require-2fa", "sender", "--off").output
    assert location_path(console.sign_in(console.client(), "pia@example.org")) == "/admin/"
    bad_role = cli("users", "require-2fa", "boss", expect=1)
    assert "unknown role" in bad_role.output and "Traceback" not in bad_role.output
    # Every change is in the event log, by "cli".
    kinds = {e.kind for e in console.events() if e.actor == "cli"}
    assert {
        "staff_invited",
        "staff_role",
        "staff_disabled",
        "staff_enabled",
        "staff_unlocked",
        "staff_2fa_reset",
        "staff_2fa_policy",
    } <= kinds
