"""Column by column: what each column of a file feeds, as the console's mapping form says.

`contacts import --map FIELD=COLUMN` names one column per field. The console shows every column
with a choice beside it (a field, "keep as an attribute" or "leave out") and sends all of them
back. `apply_choices` lays those choices over the guess of `map_columns`, so everything after it
(reading, validation, merging, the report) is the import's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from mailer.errors import ImportFileError, InvalidInputError
from mailer.imports import columns as columns_mod
from mailer.imports.columns import Columns

ATTRIBUTE = "attribute"  # keep the column as a contact attribute under its header
SKIP = "skip"  # leave the column out of the import


def choices_of(columns: Columns) -> dict[int, str]:
    """The guess as choices: what the mapping form shows before anyone changes it."""
    out = dict.fromkeys(range(len(columns.headers)), SKIP)
    for index, _name in columns.attributes:
        out[index] = ATTRIBUTE
    for field_name, index in columns.fields.items():
        out[index] = field_name
    return out


def valid_choices() -> tuple[str, ...]:
    """Every value a column's choice may take: the fields, then attribute and skip."""
    return (*columns_mod.FIELDS, ATTRIBUTE, SKIP)


def apply_choices(path: Path, columns: Columns, choices: Mapping[int, str]) -> Columns:
    """`columns` with the chosen columns changed; InvalidInputError names a bad choice.

    Columns the choices do not name keep their guess. A field chosen for one column takes it
    from the column it was guessed for (that one becomes an attribute); a field chosen for two
    columns, or no email column at all, is an error naming the columns."""
    headers = columns.headers
    allowed = valid_choices()
    for index, value in choices.items():
        if not 0 <= index < len(headers):
            raise InvalidInputError(f"{path}: no column {index + 1} (the file has {len(headers)})")
        if value not in allowed:
            raise InvalidInputError(
                f"{path}: column {headers[index]!r}: unknown choice {value!r} "
                f"(one of {', '.join(allowed)})"
            )
    chosen: dict[str, int] = {}
    for index, value in sorted(choices.items()):
        if value in (ATTRIBUTE, SKIP):
            continue
        if value in chosen:
            raise InvalidInputError(
                f"{path}: columns {headers[chosen[value]]!r} and {headers[index]!r} are both "
                f"chosen for {value}; choose it for one column"
            )
        chosen[value] = index
    fields = {
        name: i for name, i in columns.fields.items() if i not in choices and name not in chosen
    }
    fields.update(chosen)
    if "email" not in fields:
        raise InvalidInputError(f"{path}: no column is chosen for email; choose one")
    taken = set(fields.values())
    guessed = dict(columns.attributes)
    left_out = set(range(len(headers))) - set(guessed) - set(columns.fields.values())
    attributes: list[tuple[int, str]] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for i, header in enumerate(headers):
        if i in taken:
            continue
        choice = choices.get(i)
        if choice == SKIP or (choice is None and i in left_out):
            ignored.append(header)
            continue
        name = guessed.get(i) or header.removeprefix(columns_mod.ATTRIBUTE_PREFIX)
        name = name or f"column {i + 1}"
        base, n = name, 2
        while name in seen:
            name, n = f"{base} ({n})", n + 1
        seen.add(name)
        attributes.append((i, name))
    return replace(columns, fields=fields, attributes=attributes, ignored=ignored)


def guess_columns(
    path: Path, headers: list[str], line: int, *, sheet: str | None = None
) -> tuple[Columns, str | None]:
    """The import's own guess (`map_columns`), and None; for a file it finds no email column
    in, every column as an attribute and the reason, so that one can be chosen."""
    try:
        return columns_mod.map_columns(path, headers, line, sheet=sheet), None
    except ImportFileError as err:
        attributes = [(i, header or f"column {i + 1}") for i, header in enumerate(headers)]
        return Columns({}, attributes, [], list(headers)), str(err)
