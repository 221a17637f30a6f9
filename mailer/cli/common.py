"""What every command shares: the settings, one session per command, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.orm import Session

from mailer.config import Settings, load_settings
from mailer.store.db import session_scope


class AppContext:
    """Loaded lazily so `--help` and `init` work without a config file."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One command, one unit of work: committed at the end, rolled back on any error."""
        with session_scope(self.settings) as session:
            yield session


pass_app = click.make_pass_decorator(AppContext)


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON; Korean and other scripts stay readable."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def is_tty() -> bool:
    return sys.stdout.isatty()


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (see README).")
