"""Schema management: an empty database is created and stamped at head; an old one is upgraded.

Alembic (and the scan of the migration scripts) is loaded only when the schema must change:
every command opens the database, and the check that it is already at head is one query.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import Engine, insert, inspect, text
from sqlalchemy.exc import DBAPIError

from mailer.errors import MailerError
from mailer.store.models import Base, Installation, new_id_part

# Kept in a module of its own so that mailer/store/quick.py can read it without SQLAlchemy.
from mailer.store.revision import HEAD_REVISION as HEAD_REVISION

if TYPE_CHECKING:
    from alembic.config import Config


# Alembic says "Context impl SQLiteImpl" at INFO on every check: noise in `mailer serve`'s log.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)


def alembic_config(engine: Engine | None = None) -> Config:
    # Lazy: alembic costs ~0.15 s (~150 modules); only a new or old database needs it.
    from alembic.config import Config  # noqa: PLC0415

    cfg = Config()
    cfg.set_main_option("script_location", "mailer.store:migrations")
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def head_revision() -> str:
    """The head revision according to alembic's scan of the migration scripts."""
    # Lazy: alembic costs ~0.15 s (~150 modules); only a new or old database needs it.
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return None


def ensure_schema(engine: Engine) -> None:
    """Create a new database at head, upgrade an older one, refuse a foreign one."""
    if current_revision(engine) == HEAD_REVISION:
        return
    # Lazy: alembic costs ~0.15 s (~150 modules); only a new or old database needs it.
    from alembic import command  # noqa: PLC0415

    tables = set(inspect(engine).get_table_names())
    if not tables:
        Base.metadata.create_all(engine)
        with engine.begin() as conn:  # this database's own Message-ID part (migration 0010)
            conn.execute(insert(Installation).values(id=1, id_part=new_id_part()))
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
    # Lazy: alembic costs ~0.15 s (~150 modules); only a new or old database needs it.
    from alembic import command  # noqa: PLC0415

    command.upgrade(alembic_config(engine), revision)
