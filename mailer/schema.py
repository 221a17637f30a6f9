"""Schema management: an empty database is created and stamped at head; an old one is upgraded."""

from __future__ import annotations

import logging

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from mailer.errors import MailerError
from mailer.models import Base

# Alembic says "Context impl SQLiteImpl" at INFO on every check: noise in `mailer serve`'s log.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "mailer:migrations")
    cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(_bare_config())
    head = script.get_current_head()
    assert head is not None
    return head


def _bare_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "mailer:migrations")
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_schema(engine: Engine) -> None:
    """Create a new database at head, upgrade an older one, refuse a foreign one."""
    tables = set(inspect(engine).get_table_names())
    if not tables:
        Base.metadata.create_all(engine)
        command.stamp(alembic_config(engine), "head")
        return
    if "alembic_version" not in tables:
        raise MailerError(
            f"the database {engine.url.render_as_string(hide_password=True)} holds tables that "
            "mailer did not create; point database_url at an empty database"
        )
    if current_revision(engine) != head_revision():
        upgrade(engine)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to `revision`."""
    command.upgrade(alembic_config(engine), revision)
