"""Start-up: `mailer --help` and `--version` import click and not the library; a command imports
only its own module. Checked in a fresh interpreter (sys.modules), never by timing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import text

import mailer
from mailer.cli import COMMAND_HELP, LAZY_COMMANDS, load_all_commands, main
from mailer.config import Settings
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.store import quick
from mailer.store.db import session_scope
from mailer.store.models import SubscriptionStatus
from tests.support.cli import Cli

ROOT = Path(__file__).resolve().parents[1]

# What `--help` used to import (over a second of CPU): none of it is needed to print help.
HEAVY = (
    "premailer",
    "flask",
    "mailer.bounces",
    "sqlalchemy.orm",
    "requests",
    "cssutils",
    "openpyxl",
    "alembic",
)


def modules_after(args: list[str], cwd: Path) -> tuple[str, list[str]]:
    """Run `mailer ARGS` in a fresh interpreter; its output and the modules it imported."""
    code = (
        "import json, sys\n"
        "import click.formatting\n"
        "from mailer.cli import main\n"
        # The width CliRunner gives in-process, so that the two listings compare line for line.
        "click.formatting.FORCED_WIDTH = 80\n"
        "try:\n"
        f"    main({args!r}, prog_name='mailer')\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('MODULES=' + json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILER_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    output, _, modules = proc.stdout.rpartition("MODULES=")
    return output, json.loads(modules)


def loaded(modules: list[str], prefix: str) -> list[str]:
    return [m for m in modules if m == prefix or m.startswith(prefix + ".")]


def test_help_and_version_import_none_of_the_library(tmp_path: Path) -> None:
    for args in (["--help"], ["--version"]):
        output, modules = modules_after(args, tmp_path)
        assert output.strip(), args
        for heavy in HEAVY:
            assert loaded(modules, heavy) == [], (args, heavy)
        # Not one command module either: listing the commands must not import them.
        assert [m for m in modules if m.endswith("_cmd")] == [], args


def test_lists_ls_imports_only_what_it_uses(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "mailer", "init"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    output, modules = modules_after(["lists", "ls"], tmp_path)
    assert "No lists yet" in output
    # On SQLite at this revision the lists are read with the standard library
    # (mailer/store/quick.py): not even SQLAlchemy, nor anything that renders, sends, parses
    # bounces, reads spreadsheets, serves pages, migrates or validates addresses.
    assert loaded(modules, "sqlalchemy") == []
    for heavy in (
        *HEAVY,
        "jinja2",
        "markdown_it",
        "email_validator",
        "dkim",
        "mailer.delivery",
        "mailer.web",
        "mailer.imports",
        "mailer.releases.render",
        "mailer.releases.inline",
        "mailer.releases.checks",
    ):
        assert loaded(modules, heavy) == [], heavy
    assert [m for m in modules if m.endswith("_cmd")] == ["mailer.cli.lists_cmd"]


def test_lists_ls_says_the_same_both_ways(
    engine_name: str, settings: Settings, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick read (the standard library's sqlite3) and the library's (SQLAlchemy) give the
    same table, Korean names and every subscription status included; a database at an older
    revision (to be upgraded first) and any other database take the library's way."""
    if engine_name != "sqlite":
        pytest.skip("the quick read is SQLite's (PostgreSQL takes the library's way)")
    with session_scope(settings) as s:
        create_list(s, "press", "보도 기자단", press=True)
        create_list(s, "members", "Members", public=True, archive=False)
        create_list(s, "empty", "Nobody yet")
        for n, status in enumerate(["subscribed"] * 3 + ["pending"] * 2 + ["unsubscribed"]):
            _contact, sub = add_contact(s, f"r{n}@example.org", "press")
            sub.status = SubscriptionStatus(status)
        add_contact(s, "m@example.org", "members")
    rows = quick.list_rows(settings.database_url)
    assert rows is not None and [r.slug for r in rows] == ["empty", "members", "press"]
    assert (rows[2].subscribed, rows[2].pending, rows[2].unsubscribed) == (3, 2, 1)
    fast = cli("lists", "ls").output
    assert "보도 기자단" in fast and "press" in fast
    with monkeypatch.context() as m:
        m.setattr(quick, "list_rows", lambda url: None)
        assert cli("lists", "ls").output == fast
    orm = cli("lists", "ls", "--json").output  # --json always takes the library's way
    by_slug = {x["slug"]: x for x in json.loads(orm)}
    for r in rows:
        counts = by_slug[r.slug]["subscribers"]
        assert (counts["subscribed"], counts["pending"], counts["unsubscribed"]) == (
            r.subscribed,
            r.pending,
            r.unsubscribed,
        )
    with session_scope(settings) as s:
        s.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    assert quick.list_rows(settings.database_url) is None
    assert quick.list_rows("postgresql+psycopg://postgres@127.0.0.1:5432/x") is None
    assert quick.list_rows("sqlite:////no/such/file.db") is None


def test_help_lists_every_command_with_its_own_first_line(tmp_path: Path) -> None:
    # The listing from COMMAND_HELP (nothing imported) is the listing click makes from the
    # commands themselves once they are all imported.
    lazy_output, _ = modules_after(["--help"], tmp_path)
    load_all_commands()
    ctx = click.Context(main)
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        assert COMMAND_HELP.get(name) == command.get_short_help_str(limit=1000), name
    assert set(COMMAND_HELP) == set(LAZY_COMMANDS)
    loaded_output = CliRunner().invoke(main, ["--help"], prog_name="mailer").output
    assert lazy_output.strip() == loaded_output.strip()


def test_startup_bench_reports_each_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_startup.py"), "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(data["startup"]) == {"python -c pass", "--help", "--version", "lists ls"}
    assert all(seconds > 0 for seconds in data["startup"].values())


def test_only_the_edges_import_click_or_flask() -> None:
    """The library under mailer/ is plain Python: click and Flask (and werkzeug) are imported
    only by the two edges, mailer/cli/ and mailer/web/ (docs/architecture.md, the rules of the
    house)."""
    root = Path(mailer.__file__).parent
    framework = {"click", "flask", "werkzeug"}
    offenders = []
    checked = 0
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).parts[0] in ("cli", "web"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(root)}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[0] in framework
            ]
        checked += 1
    assert checked > 150
    assert not offenders, offenders


def test_a_long_module_says_why_at_its_top() -> None:
    """No module of mailer/ over 400 lines without the reason at the top of its docstring
    (docs/architecture.md, the rules of the house); migrations are written once and kept."""
    root = Path(mailer.__file__).parent
    silent = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= 400:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if "400 lines" not in doc:
            silent.append(f"{path.relative_to(root)} ({text.count(chr(10))} lines)")
    assert not silent, silent
