"""The foundation's commands, through the CLI, on every database engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.store.models import Contact, Event, Subscription, Suppression
from tests.support.cli import Cli


def counts(session: Session) -> tuple[int, int, int, int]:
    contacts, subscriptions, suppressions, events = (
        session.scalar(select(func.count()).select_from(m)) or 0
        for m in (Contact, Subscription, Suppression, Event)
    )
    session.rollback()  # end the read: on SQLite an open transaction holds the write lock
    return contacts, subscriptions, suppressions, events


def test_acceptance_add_and_show_a_korean_contact(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli(
        "contacts",
        "add",
        "Reporter@Example.COM",
        "--list",
        "press",
        "--name",
        "김기자",
        "--lang",
        "ko",
    )
    data = json.loads(cli("contacts", "show", "reporter@example.com", "--json").output)
    assert data["email"] == "reporter@example.com"
    assert data["email_original"] == "Reporter@Example.COM"
    assert data["name"] == "김기자"
    assert data["language"] == "ko"
    assert [(s["list"], s["status"]) for s in data["subscriptions"]] == [("press", "subscribed")]


def test_address_is_unique_case_insensitively(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "Kim@Example.org", "--list", "press")
    cli("contacts", "add", "kim@EXAMPLE.ORG", "--list", "press", "--name", "Kim")
    assert counts(session)[:2] == (1, 1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["not-an-address", "--list", "press"], "not an email address: 'not-an-address'"),
        (["a@example.org", "--list", "nosuchlist"], "no list named 'nosuchlist'"),
        (["a@example.org", "--list", "press", "--lang", "korean!"], "not a language code"),
    ],
)
def test_user_mistakes_are_clear_errors_that_write_nothing(
    cli: Cli, session: Session, args: list[str], message: str
) -> None:
    cli("lists", "create", "press", "--name", "Press")
    before = counts(session)
    result = cli("contacts", "add", *args, expect=1)
    assert result.output.startswith("Error: ")
    assert message in result.output
    assert "Traceback" not in result.output
    assert counts(session) == before


def test_usage_error_exits_2(cli: Cli) -> None:
    result = cli("contacts", "add", "a@example.org", expect=2)
    assert "--list" in result.output


def test_lists_ls_show_rm(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press", "--description", "Reporters")
    cli("lists", "create", "members", "--name", "Members")
    cli("contacts", "add", "a@example.org", "--list", "press")
    cli("contacts", "add", "b@example.org", "--list", "press")
    cli("contacts", "unsubscribe", "b@example.org", "--list", "press")
    listed = json.loads(cli("lists", "ls", "--json").output)
    assert [x["slug"] for x in listed] == ["members", "press"]
    shown = json.loads(cli("lists", "show", "press", "--json").output)
    assert shown["subscribers"] == {"pending": 0, "subscribed": 1, "unsubscribed": 1}
    assert "subscribed" in cli("lists", "show", "press").output
    cli("lists", "rm", "press", "--yes")
    assert [x["slug"] for x in json.loads(cli("lists", "ls", "--json").output)] == ["members"]
    assert cli("lists", "show", "press", expect=1).output.startswith("Error: no list")


def test_duplicate_list_and_bad_slug(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    assert "already exists" in cli("lists", "create", "press", "--name", "P", expect=1).output
    assert "lower-case" in cli("lists", "create", "Press Team", "--name", "P", expect=1).output


def test_contacts_ls_filters(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("lists", "create", "members", "--name", "Members")
    cli("contacts", "add", "a@example.org", "--list", "press")
    cli("contacts", "add", "b@example.org", "--list", "members")
    cli("contacts", "add", "c@example.org", "--list", "press")
    cli("contacts", "unsubscribe", "c@example.org", "--list", "press")
    everyone = json.loads(cli("contacts", "ls", "--json").output)
    assert [c["email"] for c in everyone] == ["a@example.org", "b@example.org", "c@example.org"]
    press = json.loads(
        cli("contacts", "ls", "--list", "press", "--status", "subscribed", "--json").output
    )
    assert [c["email"] for c in press] == ["a@example.org"]
    gone = json.loads(cli("contacts", "ls", "--status", "unsubscribed", "--json").output)
    assert [c["email"] for c in gone] == ["c@example.org"]


def test_global_unsubscribe_suppresses_and_blocks_re_adding(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("lists", "create", "members", "--name", "Members")
    cli("contacts", "add", "a@example.org", "--list", "press")
    cli("contacts", "add", "a@example.org", "--list", "members")
    cli("contacts", "unsubscribe", "A@example.org", "--yes")
    data = json.loads(cli("contacts", "show", "a@example.org", "--json").output)
    assert data["suppressed"]["reason"] == "unsubscribe-all"
    assert {s["status"] for s in data["subscriptions"]} == {"unsubscribed"}
    result = cli("contacts", "add", "a@example.org", "--list", "press", expect=1)
    assert "suppression list" in result.output


def test_list_unsubscribe_is_not_undone_by_add(cli: Cli) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli("contacts", "add", "a@example.org", "--list", "press")
    cli("contacts", "unsubscribe", "a@example.org", "--list", "press")
    assert (
        "only the subscriber"
        in cli("contacts", "add", "a@example.org", "--list", "press", expect=1).output
    )


def test_erase_keeps_only_the_suppression(cli: Cli, session: Session) -> None:
    cli("lists", "create", "press", "--name", "Press")
    cli(
        "contacts",
        "add",
        "Erin@Example.org",
        "--list",
        "press",
        "--name",
        "Erin Doe",
        "--org",
        "Daily",
    )
    cli("contacts", "erase", "erin@example.org", "--yes")
    assert session.scalar(select(func.count()).select_from(Contact)) == 0
    sup = session.scalars(select(Suppression)).one()
    assert sup.email == "erin@example.org"
    # No event keeps the name or the address.
    for ev in session.scalars(select(Event)):
        assert "Erin" not in json.dumps(ev.data) and "erin@" not in json.dumps(ev.data)
    session.rollback()
    assert (
        "suppression list"
        in cli("contacts", "add", "erin@example.org", "--list", "press", expect=1).output
    )
    assert cli("contacts", "show", "erin@example.org", expect=1).output.startswith("Error:")


def test_init_in_an_empty_folder(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("MAILER_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-m", "mailer", "init"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "mailer.toml").read_text()
    assert 'secret_key = "' in text and "# smtp_url = " in text
    assert (tmp_path / "mailer.db").exists()
    again = subprocess.run(
        [sys.executable, "-m", "mailer", "init"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 1 and "already exists" in again.stderr
