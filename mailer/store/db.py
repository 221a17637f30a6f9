"""Engines and sessions. The caller owns the session: one command or request, one unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mailer.config import Settings
from mailer.errors import ConfigError, MailerError
from mailer.masking import mask_url, scrub

_engines: dict[str, Engine] = {}


def make_engine(url: str) -> Engine:
    """A new engine for `url`; SQLite gets foreign keys, WAL and write transactions that wait."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(f"database_url: not a database URL: {mask_url(url)!r}") from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"database_url {mask_url(url)!r} needs the Python package {err.name!r}: "
            "pip install 'mailer[postgres]'"
        ) from None
    except ArgumentError:  # NoSuchModuleError: postgres://, an unknown driver
        raise ConfigError(
            f"database_url {mask_url(url)!r}: unknown database or driver "
            f"{parsed.drivername!r} (use sqlite:///FILE or postgresql+psycopg://...)"
        ) from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: a reader that later writes can never fail with
        # SQLITE_BUSY half-way through (the sender and `mailer serve` share the file).
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(settings: Settings) -> Engine:
    """The process-wide engine for these settings, with the schema brought to head."""
    url = settings.database_url
    engine = _engines.get(url)
    if engine is None:
        # Lazy: schema imports the models; `release preview` opens no database and skips them.
        from mailer.store.schema import ensure_schema  # noqa: PLC0415

        engine = make_engine(url)
        try:
            ensure_schema(engine)
        except OperationalError as err:
            engine.dispose()
            raise MailerError(
                f"cannot open the database {mask_url(url)!r}: {scrub(str(err.orig), url)}"
            ) from None
        _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests, and after fork)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def session_factory(settings: Settings) -> sessionmaker[Session]:
    return sessionmaker(get_engine(settings), expire_on_commit=False)


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
