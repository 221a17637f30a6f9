"""Migrating an empty database to head gives exactly the schema of the models."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from mailer.store.models import Base
from mailer.store.schema import (
    HEAD_REVISION,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)
from tests.support.database import PG_URL


@pytest.fixture
def empty_engine(engine_name: str, tmp_path: Path) -> Iterator[Engine]:
    if engine_name == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'migrate.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        pytest.skip("MAILER_TEST_DATABASE_URL is not set")
    name = f"mailer_migrate_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_engine(PG_URL.rsplit("/", 1)[0] + "/" + name)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}"'))
        admin.dispose()


def test_the_quick_head_check_names_alembics_head() -> None:
    # ensure_schema compares the database with HEAD_REVISION before it loads alembic at all.
    assert head_revision() == HEAD_REVISION


def test_migrations_match_the_models(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    with empty_engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []


def test_new_database_is_created_and_stamped(empty_engine: Engine) -> None:
    ensure_schema(empty_engine)
    assert current_revision(empty_engine) == head_revision()
    tables = set(inspect(empty_engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
