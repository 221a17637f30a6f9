"""Fixtures: every database test runs on SQLite, and on PostgreSQL when MAILER_TEST_DATABASE_URL
is set. Each test gets empty tables of its own."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.orm import Session

from mailer import clock
from mailer.cli import main
from mailer.config import Settings, load_settings
from mailer.store.db import dispose_engines, get_engine, session_factory
from mailer.store.models import Base

PG_URL = os.environ.get("MAILER_TEST_DATABASE_URL", "")
ENGINES = ["sqlite", "postgresql"]
_engine_runs: Counter[str] = Counter()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_name" in metafunc.fixturenames:
        metafunc.parametrize("engine_name", ENGINES)


@pytest.fixture
def db_url(engine_name: str, tmp_path: Path) -> Iterator[str]:
    """A database URL with empty tables; PostgreSQL tests skip when no server is configured."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if not PG_URL:
        pytest.skip("MAILER_TEST_DATABASE_URL is not set")
    truncate_all(PG_URL)
    yield PG_URL


def truncate_all(url: str) -> None:
    settings = Settings(database_url=url, secret_key="x")
    engine = get_engine(settings)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


CONFIG_EXTRA = {
    "secret_key": "test-secret-key-not-for-production",
    "organisation_name": "Hanul Community Center",
    "postal_address": "100 Main Street, North Wales, PA 19454, USA",
    "from_address": "press@hanul.example.org",
    "from_name": "Hanul Community Center",
    "base_url": "https://news.hanul.example.org",
    "website": "https://hanul.example.org",
}


@pytest.fixture
def settings(db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings on the test's database, written to tmp_path/mailer.toml for CLI tests too."""
    engine_name = request.getfixturevalue("engine_name")
    _engine_runs[engine_name] += 1
    write_config(tmp_path, {"database_url": db_url})
    yield load_settings(tmp_path / "mailer.toml", env={})
    clock.set_clock(None)
    if db_url.startswith("sqlite"):
        dispose_engines()


def write_config(folder: Path, values: dict[str, Any]) -> Path:
    merged = {**CONFIG_EXTRA, **values}
    lines = []
    for key, value in merged.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, dict):
            inner = ", ".join(f'{k} = "{v}"' for k, v in value.items())
            lines.append(f"{key} = {{{inner}}}")
        else:
            lines.append(f'{key} = "{value}"')
    path = folder / "mailer.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    """A session on the test database. On SQLite every transaction takes the write lock (BEGIN
    IMMEDIATE), so end a read with session.rollback() before running a CLI command."""
    s = session_factory(settings)()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


class Cli:
    """Runs `mailer` in-process against the test's mailer.toml."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, expect: int | None = 0) -> Result:
        result = self.runner.invoke(main, ["--config", str(self.config), *args], input=input,
                                    catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    return Cli(tmp_path / "mailer.toml")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _engine_runs:
        runs = ", ".join(f"{n} on {name}" for name, n in sorted(_engine_runs.items()))
        terminalreporter.write_line(f"database tests: {runs}")
