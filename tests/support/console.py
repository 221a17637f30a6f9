"""The staff console in tests: accounts per role, a signed-in Flask test client, CSRF values.

Fixtures: `console` (a Console on the test's settings). Registered in tests/conftest.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from mailer.config import Settings
from mailer.staff import accounts
from mailer.store.db import session_scope
from mailer.store.models import StaffRole, StaffUser
from mailer.web import create_app

PASSWORD = "correct horse battery staple"
UA = "Mozilla/5.0 (console test)"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF value of the first form on a page."""
    found = _CSRF.search(page)
    assert found, "the page has no form with a CSRF value"
    return found.group(1)


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
        self, email: str, role: StaffRole | str, *, password: str = PASSWORD, totp: str = ""
    ) -> int:
        """An account that has accepted its invitation (and, with `totp`, set up 2FA)."""
        with session_scope(self.settings) as s:
            user, token = accounts.add(s, email, role)
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
        self, client: FlaskClient, email: str, password: str = PASSWORD, *, totp: str = ""
    ) -> TestResponse:
        page = client.get("/admin/login")
        response = client.post(
            "/admin/login",
            data={"email": email, "password": password, "csrf": csrf_of(page.text)},
        )
        if totp and response.status_code == 303 and "/admin/login/2fa" in response.location:
            form = client.get("/admin/login/2fa")
            response = client.post(
                "/admin/login/2fa",
                data={"code": pyotp.TOTP(totp).now(), "csrf": csrf_of(form.text)},
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

    def post(
        self, client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any
    ) -> TestResponse:
        """POST with the CSRF value of the signed-in session (read from its account page)."""
        page = client.get("/admin/account")
        return client.post(path, data={**(data or {}), "csrf": csrf_of(page.text)}, **kw)


@pytest.fixture(name="console")
def console_fixture(settings: Settings) -> Console:
    return Console(create_app(settings), settings)
