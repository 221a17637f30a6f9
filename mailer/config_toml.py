"""Reading mailer.toml with errors that name the file, the line, the key and the fix.

TOML has traps for someone editing a settings file by hand: a `[table]` header takes every
later `key = value` into that table (a setting written after `[about]` silently becomes an about
text), an inline table must stay on one line, text needs quotes. tomllib reports only "Invalid
value (at line 3, column 13)"; this module turns that, and the silent cases, into a sentence.

A light line scanner finds where keys and table headers stand; it is only used to point at
lines and to explain, never to decide what a value is (tomllib does that).
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailer.errors import ConfigError

_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]#]+?)\s*\]\]?\s*(#.*)?$")
_KEY_LINE = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_\-]+)\s*(\.[^=]*)?=\s*(.*)$""")
_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_VALUE_START = re.compile(r"""^(["'\[{]|[+-]?\d|true\b|false\b|[+-]?inf\b|[+-]?nan\b)""")


@dataclass(frozen=True)
class KeyLine:
    """One `key = value` line: the key as written (its first part when dotted), the line number
    (1-based), the value text, and the [table] it stands in with that header's line."""

    key: str
    line: int
    value: str
    table: str | None
    table_line: int


def scan(text: str) -> list[KeyLine]:
    """Every `key = value` line outside multi-line strings, with the table it belongs to."""
    out: list[KeyLine] = []
    table: str | None = None
    table_line = 0
    in_string: str | None = None  # the delimiter of an open multi-line string
    for number, line in enumerate(text.splitlines(), start=1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        header = _TABLE_HEADER.match(line)
        if header:
            table, table_line = _unquote(header.group(1).split(".")[0].strip()), number
            continue
        m = _KEY_LINE.match(line)
        if m:
            value = m.group(3)
            out.append(KeyLine(_unquote(m.group(1)), number, value, table, table_line))
            for delimiter in ('"""', "'''"):
                if value.count(delimiter) % 2 == 1:
                    in_string = delimiter
    return out


def _unquote(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'" else key


def read_toml(path: Path, kinds: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse the file at `path`, given the known settings and their kinds (str, int, dict...):
    the values, and the line of each top-level key (for messages about a value).

    Raises ConfigError naming the line and the fix for syntax errors, a setting swallowed by a
    [table] above it, and an unknown setting (with the nearest known name)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        # utf-8-sig: Windows editors may save "UTF-8 with BOM"; TOML has no BOM, and tomllib's
        # error about it would show an invisible character.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line}: not UTF-8 text; save the file as UTF-8") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(explain_syntax_error(path, text, str(err), kinds)) from None
    lines = scan(text)
    check_tables(path, lines, kinds)
    for key in raw:
        if key not in kinds:
            raise ConfigError(unknown_key_message(path, key, lines, kinds))
    where: dict[str, int] = {}
    for k in lines:
        if k.table is None:
            where.setdefault(k.key, k.line)
        else:
            where.setdefault(k.table, k.table_line)
    return raw, where


def check_tables(path: Path, lines: list[KeyLine], kinds: Mapping[str, str]) -> None:
    """A setting written below a [table] header belongs to that table: say so, with the fix."""
    swallowed = [k for k in lines if k.table is not None and k.key in kinds and k.key != k.table]
    if not swallowed:
        return
    first = swallowed[0]
    table = first.table
    more = [k.key for k in swallowed[1:] if k.table == table]
    also = f" (so are {', '.join(f'`{k}`' for k in more)} after it)" if more else ""
    per_language = kinds.get(table or "") in ("dict", "text")
    example = _inline_example(table or "") if per_language else f"{table} = {{...}}"
    raise ConfigError(
        f"{path} line {first.line}: `{first.key}` is inside the [{table}] table started on line "
        f"{first.table_line}, so it is read as part of {table}, not as a setting{also}; move it "
        f"above [{table}] (every [table] must come after all the plain settings) or write "
        f"{table} as an inline table on one line: {example}"
    )


def _inline_example(key: str) -> str:
    # `social` maps link labels to URLs; the other tables map languages to text.
    if key == "social":
        return 'social = {Facebook = "https://...", Instagram = "https://..."}'
    return f'{key} = {{en = "...", ko = "..."}}'


def unknown_key_message(
    path: Path, key: str, lines: list[KeyLine], kinds: Mapping[str, str]
) -> str:
    where = next((f"{path} line {k.line}" for k in lines if k.key == key and k.table is None), None)
    if where is None:
        where = next((f"{path} line {k.table_line}" for k in lines if k.table == key), str(path))
    close = difflib.get_close_matches(key, list(kinds), n=1, cutoff=0.6)
    if close:
        hint = f"did you mean `{close[0]}`?"
    else:
        hint = (
            "the mailer.toml that `mailer init` writes lists every setting, commented, "
            "with its default"
        )
    return f"{where}: unknown setting {key!r}; {hint}"


def explain_syntax_error(path: Path, text: str, message: str, kinds: Mapping[str, str]) -> str:
    """tomllib's message, with the line and, for the common mistakes, the fix."""
    at = _AT.search(message)
    reason = _AT.sub("", message)
    if at is None:
        return f"{path}: not valid TOML: {reason}"
    number = int(at.group(1))
    lines = text.splitlines()
    line = lines[number - 1] if 0 < number <= len(lines) else ""
    opened = _open_inline_table(lines, number)
    if opened is not None:
        start, key = opened
        return (
            f"{path} line {start}: the inline table `{key} = {{` goes on over several lines; "
            f"TOML wants an inline table on one line: write {_inline_example(key)} on one "
            f"line, or a [{key}] table at the end of the file"
        )
    m = _KEY_LINE.match(line)
    if m:
        key, value = _unquote(m.group(1)), m.group(3).strip()
        kind = kinds.get(key, "str")
        if reason.startswith("Illegal character '\\n'") and value[:1] in "\"'":
            return (
                f"{path} line {number}: the text of `{key}` has no closing quote; for text "
                f'over several lines use triple quotes: {key} = """..."""'
            )
        if reason == "Invalid value" and not _VALUE_START.match(value):
            if kind == "bool":
                fix = f"write {key} = true or {key} = false (lower case, no quotes)"
            elif kind in ("int", "float"):
                fix = f"write a number without quotes, e.g. {key} = 10"
            else:
                fix = f"put it in quotes: {key} = {json.dumps(_plain(value), ensure_ascii=False)}"
            return f"{path} line {number}: the value of `{key}` is not valid TOML: {fix}"
        if reason == "Cannot overwrite a value":
            first = next(
                (
                    i
                    for i, text_line in enumerate(lines[: number - 1], start=1)
                    if (k := _KEY_LINE.match(text_line)) and _unquote(k.group(1)) == key
                ),
                None,
            )
            earlier = f" (first on line {first})" if first else ""
            return f"{path} line {number}: `{key}` is set twice{earlier}; keep one of them"
    shown = line.strip()
    return f"{path} line {number}: not valid TOML: {reason}" + (f": {shown}" if shown else "")


def _plain(value: str) -> str:
    """An unquoted value as the user meant it: typographic quotes dropped."""
    return value.strip().strip("\u201c\u201d\u2018\u2019")


def _open_inline_table(lines: list[str], number: int) -> tuple[int, str] | None:
    """(line, key) of an inline table `key = {` that is still open at line `number`."""
    for index in range(number - 1, max(-1, number - 40), -1):
        m = _KEY_LINE.match(lines[index])
        if m is None:
            continue
        value = _strip_strings(m.group(3))
        if value.startswith("{") and value.count("{") > value.count("}"):
            return index + 1, _unquote(m.group(1))
        if index < number - 1:
            return None  # the nearest key line above is an ordinary one
    return None


def _strip_strings(value: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', '""', value)
