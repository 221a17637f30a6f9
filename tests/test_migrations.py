"""Migrating an empty database to head gives exactly the schema of the models."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from mailer.store.models import Base
from mailer.store.schema import (
    HEAD_REVISION,
    alembic_config,
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


# SQLite's expression indexes cannot be reflected: compared by the next test instead.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
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


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_expression_indexes_are_the_models_on_sqlite(engine_name: str, tmp_path: Path) -> None:
    # Alembic cannot reflect SQLite's expression indexes (it warns and skips them above): the
    # migrated database's CREATE INDEX text is compared with the models' instead.
    if engine_name != "sqlite":
        pytest.skip("PostgreSQL's expression indexes are compared by compare_metadata")
    migrated = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    created = create_engine(f"sqlite:///{tmp_path / 'created.db'}")
    upgrade(migrated)
    Base.metadata.create_all(created)

    def indexes(engine: Engine) -> dict[str, str]:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql LIKE '%(%(%'"
                )
            )
            return {name: " ".join(sql.split()).replace('"', "") for name, sql in rows}

    try:
        found = indexes(migrated)
        assert found == indexes(created)
        assert found["ix_contact_beat"] == "CREATE INDEX ix_contact_beat ON contact (lower(beat))"
    finally:
        migrated.dispose()
        created.dispose()


CONTACTS_0006 = [
    # (email, organisation, attributes as stored before 0007)
    ("kim@example.com", "Korea Daily", {"beat": "정치", "media_type": "신문", "desk": "night"}),
    ("lee@example.com", "", {"role": "Editor", "region": "PA", "phone": "+1 215 555 0101"}),
    ("park@example.com", "KTV", {"media_type": "T.V.", "Beat": "sports", "twitter": "@park"}),
    ("choi@example.com", "", {"media_type": "podcast", "beat": 7, "region": "x" * 250}),
    ("jung@example.com", "", {}),
]


def test_press_attributes_move_into_their_columns_and_back(empty_engine: Engine) -> None:
    upgrade(empty_engine, "0006")
    with empty_engine.begin() as conn:
        for i, (email, outlet, attributes) in enumerate(CONTACTS_0006, start=1):
            conn.execute(
                text(
                    "INSERT INTO contact (id, email, email_original, name, organisation, "
                    "attributes, created_at, updated_at) VALUES (:id, :email, :email, '', :org, "
                    ":attributes, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {
                    "id": i,
                    "email": email,
                    "org": outlet,
                    "attributes": json.dumps(attributes, ensure_ascii=False),
                },
            )
    upgrade(empty_engine)

    def rows() -> dict[str, tuple[Any, ...]]:
        with empty_engine.connect() as conn:
            found = conn.execute(
                text("SELECT email, role, beat, media_type, region, phone, attributes FROM contact")
            )
            return {r[0]: (*r[1:6], _json(r[6])) for r in found}

    after = rows()
    assert after["kim@example.com"] == ("", "정치", "print", "", "", {"desk": "night"})
    assert after["lee@example.com"] == ("Editor", "", "", "PA", "+1 215 555 0101", {})
    # "Beat" is not the importer's name for the field: it stays an attribute, in its place.
    assert after["park@example.com"] == (
        "",
        "",
        "tv",
        "",
        "",
        {"Beat": "sports", "twitter": "@park"},
    )
    # A number and a text too long for the column stay attributes; an unknown type as written.
    assert after["choi@example.com"] == (
        "",
        "",
        "podcast",
        "",
        "",
        {"beat": 7, "region": "x" * 250},
    )
    assert after["jung@example.com"] == ("", "", "", "", "", {})

    upgrade_down(empty_engine, "0006")
    with empty_engine.connect() as conn:
        back = {
            email: _json(attributes)
            for email, attributes in conn.execute(text("SELECT email, attributes FROM contact"))
        }
    assert back["kim@example.com"] == {"desk": "night", "beat": "정치", "media_type": "print"}
    assert back["lee@example.com"] == {
        "role": "Editor",
        "region": "PA",
        "phone": "+1 215 555 0101",
    }
    assert back["jung@example.com"] == {}
    assert "beat" not in {c["name"] for c in inspect(empty_engine).get_columns("contact")}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade_down(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
