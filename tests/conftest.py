"""Fixtures: every database test runs on SQLite, and on PostgreSQL when MAILER_TEST_DATABASE_URL
is set. Each test gets empty tables of its own.

Speed (the whole suite runs under pytest-xdist, `pytest -n auto`):
- SQLite: the schema is built once per test process into a template file, and each test gets a
  copy of that file (a copy is ten times cheaper than create_all + alembic's stamp).
- PostgreSQL: each xdist worker has a database of its own, named after MAILER_TEST_DATABASE_URL's
  database plus the worker id (test_gw0, test_gw1, ...; made anew at the start of each run),
  emptied before each test with DELETE (on these small tables ten times faster than TRUNCATE,
  which makes new files for every table). Workers never share a database.
- A test marked `serial` runs while no other test runs in any worker (a file lock), for the few
  tests that cannot share the machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mailer import clock
from mailer.cli import main
from mailer.config import Settings, load_settings
from mailer.store import db as store_db
from mailer.store.db import get_engine, make_engine, session_factory
from mailer.store.models import Base
from mailer.store.schema import ensure_schema

# The server and database the run was given; tests/test_migrations.py connects to it to create
# databases of its own. Database tests use worker_pg_url(), never this database itself.
PG_URL = os.environ.get("MAILER_TEST_DATABASE_URL", "")
ENGINES = ["sqlite", "postgresql"]
ENGINE_PROPERTY = "database_engine"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_name" in metafunc.fixturenames:
        metafunc.parametrize("engine_name", ENGINES)


def worker_id() -> str:
    """The xdist worker running this process ("gw0", ...), or "main" without xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def worker_pg_url(base_url: str = PG_URL) -> str:
    """This worker's own PostgreSQL database: the base URL's database name + the worker id."""
    url = make_url(base_url)
    return url.set(database=f"{url.database}_{worker_id()}").render_as_string(hide_password=False)


_pg_ready: set[str] = set()


def _ensure_pg_database(url: str) -> None:
    """Make this worker's database anew, once per run: a database left by an earlier run may hold
    a schema that no migration leads from (a revision renamed since); a new one is built at head
    by the first get_engine."""
    if url in _pg_ready:
        return
    name = make_url(url).database
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # FORCE: a killed earlier run may have left connections open.
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    _pg_ready.add(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the schema's head, built once per test process, copied per test."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        ensure_schema(engine)
    finally:
        # Closing the last connection checkpoints the WAL into the file and deletes it, so the
        # one file is the whole database.
        engine.dispose()
    assert not path.with_name(path.name + "-wal").exists(), "template left a WAL file behind"
    return path


@pytest.fixture
def db_url(engine_name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database URL with empty tables; PostgreSQL tests skip when no server is configured."""
    if engine_name == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    if not PG_URL:
        pytest.skip("MAILER_TEST_DATABASE_URL is not set")
    url = worker_pg_url()
    _ensure_pg_database(url)
    truncate_all(url)
    yield url


_sequences: dict[str, list[str]] = {}


def truncate_all(url: str) -> None:
    """Empty every table and restart the id sequences (PostgreSQL)."""
    settings = Settings(database_url=url, secret_key="x")
    engine = get_engine(settings)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]  # children first
    with engine.begin() as conn:
        if url not in _sequences:
            _sequences[url] = list(
                conn.execute(
                    text(
                        "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
                    )
                ).scalars()
            )
        statements = [f'DELETE FROM "{name}"' for name in tables]
        statements += [f'ALTER SEQUENCE "{name}" RESTART' for name in _sequences[url]]
        conn.exec_driver_sql("; ".join(statements))


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
    # Counted by the controller (xdist sends user_properties back with each report).
    request.node.user_properties.append((ENGINE_PROPERTY, engine_name))
    write_config(tmp_path, {"database_url": db_url})
    yield load_settings(tmp_path / "mailer.toml", env={})
    clock.set_clock(None)
    if db_url.startswith("sqlite"):
        # Close this test's SQLite file only: the worker's PostgreSQL engine (and its pooled
        # connections) is kept for the next test.
        engine = store_db._engines.pop(db_url, None)
        if engine is not None:
            engine.dispose()


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
        result = self.runner.invoke(
            main, ["--config", str(self.config), *args], input=input, catch_exceptions=True
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    return Cli(tmp_path / "mailer.toml")


# --- serial tests -------------------------------------------------------------------------------
# Every test holds a shared lock on one file for the whole run of all workers; a `serial` test
# holds it exclusively. The turnstile lock keeps a waiting serial test from being starved by the
# shared holders of the other workers.


def _lock_dir(config: pytest.Config) -> Path:
    # Under xdist every worker's basetemp is a folder in the controller's: one place for all.
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    folder = _lock_dir(item.config)
    serial = item.get_closest_marker("serial") is not None
    with (
        open(folder / "serial.turnstile", "a") as turnstile,
        open(folder / "serial.lock", "a") as lock,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- the summary --------------------------------------------------------------------------------


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per database engine and one line per skip reason (not one line per test)."""
    engines: Counter[str] = Counter()
    for status in ("passed", "failed"):
        for report in terminalreporter.stats.get(status, []):
            if getattr(report, "when", "") != "call":
                continue
            for key, value in getattr(report, "user_properties", []):
                if key == ENGINE_PROPERTY:
                    engines[value] += 1
    if engines:
        runs = ", ".join(f"{n} on {name}" for name, n in sorted(engines.items()))
        terminalreporter.write_line(f"database tests: {runs}")
    reasons: Counter[str] = Counter(
        _skip_reason(report) for report in terminalreporter.stats.get("skipped", [])
    )
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"skipped {n}: {reason}")
