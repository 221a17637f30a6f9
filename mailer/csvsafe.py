"""Every CSV file mailer writes goes through here, so no cell can run as a spreadsheet formula.

A cell Excel, LibreOffice or Google Sheets would read as a formula starts with = + - @, a tab or
a carriage return (OWASP "CSV injection"): `=HYPERLINK(...)` in a name, or `=1+2@x` as an
address, would run when the operator opens the report. Such a cell is written with one leading
apostrophe, which the spreadsheet shows as text and hides.

Exactly what changes: a cell that, once any leading apostrophes are ignored, starts with one of
= + - @ TAB CR gets one more apostrophe in front, UNLESS the whole cell is plainly a number or a
phone number: only digits, spaces and - + ( ) . with at least one digit ("+1 215-555-0101",
"-12.50", "(02) 123-4567"). Those cannot call anything and stay as they are. Every other cell is
written unchanged. `restore` takes exactly one apostrophe off a cell that has one followed by
such a start, so restore(neutralise(v)) == v for every v (the importer uses it on mailer's own
exports only).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[0-9 ()+\-.]*[0-9][0-9 ()+\-.]*$")
_ESCAPED = re.compile(r"^'+[=+\-@\t\r]")


def neutralise(value: str) -> str:
    """The cell as it may be written to a CSV file (see the module docstring)."""
    if value.lstrip("'").startswith(FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


def restore(value: str) -> str:
    """Undo `neutralise` (only for files mailer exported)."""
    if _ESCAPED.match(value):
        return value[1:]
    return value


def cell(value: Any) -> str:
    """Any value as a guarded CSV cell: None is empty, numbers and dates as str()."""
    if value is None:
        return ""
    return neutralise(value if isinstance(value, str) else str(value))


def write_csv(out: IO[str], rows: Iterable[Iterable[Any]]) -> int:
    """Write rows as CSV (CRLF), every cell through `cell`; returns the number of rows."""
    writer = csv.writer(out, lineterminator="\r\n")
    n = 0
    for row in rows:
        writer.writerow([cell(c) for c in row])
        n += 1
    return n
