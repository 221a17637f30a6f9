"""What every command shares: the settings, one session per command, JSON output."""

from __future__ import annotations

import json
import re
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


# What a terminal may act on instead of printing: C0 controls (ESC starts the sequences that
# retitle the window or clear the screen, BEL ends them), DEL, C1 controls (CSI 0x9b is ESC [ on
# some terminals) and the bidirectional overrides that make text display in another order.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                     r"\u2028\u2029]")

_UNSAFE_IN_JSON = re.compile(r"[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                             r"\u2028\u2029]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: object) -> str:
    """Text from the database or a file as the terminal may print it: control characters
    (line breaks included: one value, one line) written as \\xNN / \\uNNNN escapes."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape_char, text) if _UNSAFE.search(text) else text


def echo(line: str, *, err: bool = False) -> None:
    """click.echo for a line that contains stored data: every control character escaped."""
    click.echo(shown(line), err=err)


def echo_json(data: Any) -> None:
    """Print `data` as indented JSON; Korean and other scripts stay readable.

    json.dumps escapes C0 controls itself; C1 controls and bidi overrides it leaves as they are
    (ensure_ascii=False), so those are escaped here (inside JSON strings, where alone they occur,
    \\uNNNN reads back as the same character)."""
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str)
    click.echo(_UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def is_tty() -> bool:
    return sys.stdout.isatty()


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (see README).")
