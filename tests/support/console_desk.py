"""The console's sending desk for tests: a console with a staff of every role, a press list,
and a draft of the sample release (tests/test_console_sending.py and the attacks on it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from mailer.config import Settings
from mailer.releases import drafts
from mailer.store.db import session_scope
from mailer.store.models import Campaign, Event, StaffRole
from mailer.web import create_app
from tests.support.console import Console, csrf_of
from tests.support.sending import SAMPLES, populate, use_smtp
from tests.support.smtp import SmtpServer

EDITOR = "editor@staff.example.org"
SENDER = "sender@staff.example.org"
SENDER2 = "second.sender@staff.example.org"
ADMIN = "admin@staff.example.org"
VIEWER = "viewer@staff.example.org"


@dataclass
class Desk:
    console: Console
    settings: Settings
    smtp: SmtpServer
    draft_id: int

    def client(self, email: str) -> FlaskClient:
        client = self.console.client()
        response = self.console.sign_in(client, email)
        assert response.status_code == 303, response.text
        return client

    def post(self, client: FlaskClient, path: str, data: dict[str, Any]) -> Any:
        page = client.get(f"/admin/releases/{self.draft_id}/test")
        token = csrf_of(page.text) if page.status_code == 200 else self.console.csrf(client)
        response = client.post(path, data={**data, "csrf": token})
        response.close()  # the approval emails go once the response is closed, as on waitress
        return response

    def campaigns(self) -> list[Campaign]:
        with session_scope(self.settings) as s:
            rows = list(s.scalars(select(Campaign).order_by(Campaign.id)))
            s.expunge_all()
            return rows

    def events(self, kind: str) -> list[Event]:
        return self.console.events(kind)


def sample_sources() -> dict[str, str]:
    return {
        lang: (SAMPLES / f"election-night.{lang}.md").read_text(encoding="utf-8")
        for lang in ("en", "ko")
    }


def make_desk(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, author: str = EDITOR, **extra: Any
) -> Desk:
    s = use_smtp(settings, tmp_path, smtp, timezone="Asia/Seoul", **extra)
    console = Console(create_app(s), s)
    for email, role in (
        (EDITOR, StaffRole.EDITOR),
        (SENDER, StaffRole.SENDER),
        (SENDER2, StaffRole.SENDER),
        (ADMIN, StaffRole.ADMIN),
        (VIEWER, StaffRole.VIEWER),
    ):
        console.add_user(email, role, name=email.split("@")[0])
    with session_scope(s) as db:
        # The Korean speaker reads the console in Korean: every page in both languages.
        for u in [console.user(SENDER2)]:
            found = db.get(type(u), u.id)
            assert found is not None
            found.language = "ko"
    populate(s)
    with session_scope(s) as db:
        draft = drafts.create_draft(
            db, s, "election-night", sample_sources(), author=f"user:{author}"
        )
        draft_id = draft.id
    return Desk(console, s, smtp, draft_id)
