"""What every command shares: the settings, one session per command, JSON output."""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from mailer.config import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class AppContext:
    """Loaded lazily so `--help` and `init` work without a config file."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            # A command needs a project: without a mailer.toml here or above, refuse rather than
            # start a new empty database in whatever folder this runs in.
            self._settings = load_settings(self.config_path, must_exist=True)
        return self._settings

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One command, one unit of work: committed at the end, rolled back on any error."""
        # Lazy: SQLAlchemy is most of a command's start-up; `lists ls` on SQLite needs none
        # of it (mailer/store/quick.py), nor do --help and --version.
        from mailer.store.db import session_scope  # noqa: PLC0415

        with session_scope(self.settings) as session:
            yield session


pass_app = click.make_pass_decorator(AppContext)


# What a terminal may act on instead of printing: C0 controls (ESC starts the sequences that
# retitle the window or clear the screen, BEL ends them), DEL, C1 controls (CSI 0x9b is ESC [ on
# some terminals) and the bidirectional overrides that make text display in another order.
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    r"\u2028\u2029]"
)

_UNSAFE_IN_JSON = re.compile(
    r"[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
    r"\u2028\u2029]"
)


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


# --- tables and times ---------------------------------------------------------------------------
# Every table the CLI prints goes through `table`: columns align by display width (a Hangul or
# CJK character takes two terminal columns, a combining mark none), and each has a header.


def display_width(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide and full-width characters count 2."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char) or char in "\u200b\u200d\ufeff":
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Collection[int] = ()
) -> list[str]:
    """The lines of a table: a header, then one line per row, cells escaped as `shown` does.

    Columns are two spaces apart and padded to their widest cell by display width; columns
    whose index is in `right` (numbers) align right. The last column is not padded."""
    cells = [[shown(h) for h in headers]]
    cells += [
        [shown("-" if value is None or value == "" else value) for value in row] for row in rows
    ]
    widths = [max(display_width(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = []
        for i, value in enumerate(row):
            gap = " " * (widths[i] - display_width(value))
            if i == len(row) - 1 and i not in right:
                parts.append(value)
            else:
                parts.append(gap + value if i in right else value + gap)
        lines.append("  ".join(parts).rstrip())
    return lines


def echo_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, right: Collection[int] = ()
) -> None:
    """Print `table(...)` (already escaped)."""
    for line in table(headers, rows, right=right):
        click.echo(line)


def time_zone(settings: Settings) -> tuple[tzinfo, str]:
    """The zone times are shown in and its name: the `timezone` setting, else this machine's."""
    if settings.timezone:
        return ZoneInfo(settings.timezone), settings.timezone  # validated when loaded
    name = _local_zone_name()
    if name is not None:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    return local, local.tzname(None) or "local time"


def _local_zone_name() -> str | None:
    """This machine's IANA zone name (TZ, else the /etc/localtime link), None if unknown."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return None
    _, found, name = target.partition("zoneinfo/")
    return name if found and name else None


def local_time(value: datetime | str | None, zone: tzinfo, *, named: bool = False) -> str:
    """A stored time (aware datetime or ISO text) in `zone`, to the minute; '-' for None.

    `named` adds the zone's abbreviation (KST, EDT), for times printed outside a table whose
    header already names the zone."""
    if value is None or value == "":
        return "-"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the database stores UTC
    local = moment.astimezone(zone)
    text = local.strftime("%Y-%m-%d %H:%M")
    return f"{text} {local.tzname()}" if named else text
