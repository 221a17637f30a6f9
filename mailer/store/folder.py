"""Setting a folder up: mailer.toml and the database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from mailer.config import Settings, config_template, load_settings
from mailer.errors import MailerError
from mailer.masking import mask_url
from mailer.private import create_private, write_private
from mailer.store.db import get_engine, make_engine
from mailer.store.schema import current_revision, ensure_schema, head_revision


@dataclass(frozen=True)
class InitResult:
    config_path: Path
    database: str


def init(config_path: Path, *, extra: str = "") -> InitResult:
    """Write a new mailer.toml (never over an existing one) and create its database."""
    if config_path.exists():
        raise MailerError(f"{config_path} already exists; not overwriting it")
    try:
        config_path.parent.mkdir(parents=True, exist_ok=True)
        # The file holds the secret key and, once edited, the SMTP password: owner only.
        write_private(config_path, (config_template() + extra).encode("utf-8"))
    except FileExistsError:
        raise MailerError(f"{config_path} already exists; not overwriting it") from None
    except OSError as err:
        raise MailerError(f"cannot write {config_path}: {err.strerror}") from None
    settings = load_settings(config_path)
    database = sqlite_file(settings.database_url)
    if database is not None:
        try:
            create_private(database)
        except OSError as err:
            raise MailerError(f"cannot create the database {database}: {err.strerror}") from None
    get_engine(settings)
    return InitResult(config_path, mask_url(settings.database_url))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL (None for other databases and in-memory SQLite)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def upgrade_database(settings: Settings) -> tuple[str | None, str]:
    """Upgrade the schema; returns the revisions before and after."""
    engine = make_engine(settings.database_url)
    try:
        before = current_revision(engine)
        ensure_schema(engine)
        return before, head_revision()
    finally:
        engine.dispose()
