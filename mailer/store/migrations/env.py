"""Alembic environment: the engine comes from mailer (schema.alembic_config), never from an ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine

from mailer.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine: Engine | None = config.attributes.get("engine")
    connection: Connection | None = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    if engine is None:
        raise RuntimeError("mailer migrations need an engine: use mailer.store.schema.upgrade()")
    with engine.begin() as conn:
        _run(conn)


if context.is_offline_mode():  # pragma: no cover
    raise RuntimeError("offline migrations are not supported")
run_migrations_online()
