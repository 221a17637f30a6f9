"""The test databases: SQLite from a template copy, PostgreSQL one database per xdist worker.

Fixtures: sqlite_template, db_url, settings, session (registered in tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings, load_settings
from mailer.store import db as store_db
from mailer.store.db import get_engine, make_engine, session_factory
from mailer.store.models import Base
from mailer.store.schema import ensure_schema
from tests.support.config import write_config

PG_URL = os.environ.get("MAILER_TEST_DATABASE_URL", "")


ENGINE_PROPERTY = "database_engine"


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
