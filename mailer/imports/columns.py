"""Which column is which: header rows in English and Korean matched to contact fields.

A header matches when it equals an alias below after dropping case, spaces, - _ . * and a
trailing "(note)": "E-mail Address", "email_address" and "이메일 주소(필수)" all mean email.
`--map FIELD=COLUMN` overrides the guess. The press fields (role, beat, media type, region,
phone) are fields like the others. Columns that match no field are kept as contact attributes
under their header. A file whose first row holds an address and no email header is
read as a bare list of addresses (no header row).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mailer.contacts.press import PRESS_FIELDS
from mailer.errors import ImportFileError, InvalidInputError
from mailer.imports.spreadsheet import restore

FIELDS = (
    "email",
    "name",
    "first_name",
    "last_name",
    "organisation",
    "language",
    "tags",
    *PRESS_FIELDS,
)
_ALIASES = {
    "email": "email e-mail emailaddress e-mailaddress mail mailaddress emailid "
    "이메일 메일 이메일주소 메일주소 전자우편 전자메일 전자우편주소",
    "name": "name fullname displayname contactname 이름 성명 성함 기자명 담당자 담당자명",
    "first_name": "firstname givenname forename first",
    "last_name": "lastname surname familyname last 성",
    "organisation": "organisation organization org outlet company media mediaoutlet publication "
    "newspaper affiliation employer 언론사 소속 회사 회사명 매체명 기관 "
    "소속기관 언론사명",
    "language": "language lang locale preferredlanguage 언어 사용언어",
    "tags": "tags tag 태그",
    # The press fields (mailer.contacts.press); the outlet is `organisation` above.
    "role": "role title jobtitle position 직함 직책 직위",
    "beat": "beat beats 분야 담당 담당분야 출입처",
    "media_type": "mediatype mediumtype typeofmedia medium 매체 매체유형 매체구분 매체종류",
    "region": "region area territory 지역 권역 지역구분",
    "phone": "phone telephone tel phonenumber mobile cellphone 전화 전화번호 휴대폰 핸드폰 연락처",
}
ALIASES: dict[str, str] = {
    alias: name for name, words in _ALIASES.items() for alias in words.split()
}
# --map names besides FIELDS: the words users say for a field.
MAP_ALIASES = {"organization": "organisation", "outlet": "organisation", "title": "role"}
EXPORT_MARKER = "mailer:subscriptions"  # a column only `contacts export` writes
ATTRIBUTE_PREFIX = "attribute:"


def header_key(header: str) -> str:
    """A header reduced for matching: case, spaces, - _ . * and a trailing (note) ignored."""
    text = re.sub(r"\(.*\)$", "", header.strip()).casefold()
    return re.sub(r"[\s\-_.*]", "", text)


@dataclass
class Columns:
    """Which column (index) feeds which field; the rest are attributes or ignored."""

    fields: dict[str, int]
    attributes: list[tuple[int, str]]
    ignored: list[str]
    headers: list[str]
    headerless: bool = False
    exported: bool = False  # the file was written by `contacts export`

    def as_names(self) -> dict[str, str]:
        return {f: self.headers[i] for f, i in self.fields.items()}


def map_columns(
    path: Path,
    headers: list[str],
    line: int,
    overrides: dict[str, str] | None = None,
    *,
    sheet: str | None = None,
) -> Columns:
    """Match the header row to fields; raise ImportFileError when there is no email column.

    `sheet` names the XLSX sheet read; without an email column, the error then says which
    sheets the workbook holds and which of them has one (`--sheet NAME` to pick it)."""
    overrides = overrides or {}
    for name in overrides:
        if name not in FIELDS:
            raise ImportFileError(
                f"{path}: unknown --map field {name!r} (fields: {', '.join(FIELDS)})"
            )
    exported = EXPORT_MARKER in headers
    if exported:
        headers = [restore(h) for h in headers]
    fields: dict[str, int] = {}
    for name, column in overrides.items():
        fields[name] = _find_column(path, headers, line, column, name)
    taken = set(fields.values())
    for i, header in enumerate(headers):
        if i in taken:
            continue
        field_name = ALIASES.get(header_key(header))
        if field_name is not None and field_name not in fields:
            fields[field_name] = i
            taken.add(i)
    # Korean sheets with 성 and 이름 side by side: 이름 is then the given name.
    if (
        "last_name" in fields
        and "first_name" not in fields
        and "name" in fields
        and "name" not in overrides
        and header_key(headers[fields["name"]]) == "이름"
    ):
        fields["first_name"] = fields.pop("name")
    headerless = False
    if "email" not in fields:
        at = [i for i, h in enumerate(headers) if "@" in h and " " not in h.strip()]
        if not at:
            shown = ", ".join(repr(h) for h in headers if h) or "nothing"
            where = f" of the sheet {sheet!r}" if sheet else ""
            raise ImportFileError(
                f"{path}:{line}: no email column in the header row{where} (found {shown}); "
                f"name a column email or 이메일, or use --map email=COLUMN{_sheet_hint(path)}"
            )
        # No header at all: the first row is already data (a plain list of addresses).
        headerless = True
        fields = {"email": at[0]}
        taken = {at[0]}
        headers = [f"column {i + 1}" for i in range(len(headers))]
    # Every other column is an attribute under its header: a second column of a field ("Beat"
    # beside "Desk", both read as beat) too, so no value is lost or read twice.
    attributes: list[tuple[int, str]] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for i, header in enumerate(headers):
        if i in taken:
            continue
        if exported and header.startswith("mailer:"):
            ignored.append(header)
            continue
        name = header[len(ATTRIBUTE_PREFIX) :] if header.startswith(ATTRIBUTE_PREFIX) else header
        name = name or f"column {i + 1}"
        base, n = name, 2
        while name in seen:
            name, n = f"{base} ({n})", n + 1
        seen.add(name)
        attributes.append((i, name))
    return Columns(fields, attributes, ignored, headers, headerless, exported)


def email_column(headers: list[str]) -> str | None:
    """The header of the column `map_columns` would read addresses from, else None."""
    for header in headers:
        if ALIASES.get(header_key(header)) == "email":
            return header
    for header in headers:
        if "@" in header and " " not in header.strip():
            return header
    return None


def _sheet_hint(path: Path) -> str:
    """For a workbook: its sheets and which have an email column, as the end of a message."""
    try:
        with path.open("rb") as fh:
            workbook = fh.read(4) == b"PK\x03\x04"
    except OSError:
        return ""
    if not workbook:
        return ""
    # Lazy: imports.xlsx loads zipfile, bz2 and lzma (~7 ms); only a workbook's hint needs it.
    from mailer.imports.xlsx import sheet_headers  # noqa: PLC0415

    sheets = sheet_headers(path)
    if len(sheets) < 2:
        return ""
    names = ", ".join(repr(name) for name, _ in sheets)
    found = [
        (name, column) for name, headers in sheets if (column := email_column(headers)) is not None
    ]
    if not found:
        return f". The workbook's sheets are {names}; none has an email column in its first row"
    has = "; ".join(f"{name!r} has one ({column!r})" for name, column in found)
    return f". The workbook's sheets are {names}; {has}: use --sheet {_shell_word(found[0][0])}"


def _shell_word(text: str) -> str:
    """A sheet name as it may be typed after --sheet (quoted unless letters, digits, - . _)."""
    if re.fullmatch(r"[\w.\-]+", text):
        return text
    return shlex.quote(text)


def _find_column(path: Path, headers: list[str], line: int, column: str, name: str) -> int:
    wanted = column.strip()
    for i, header in enumerate(headers):
        if header == wanted:
            return i
    for i, header in enumerate(headers):
        if header.casefold() == wanted.casefold() or header_key(header) == header_key(wanted):
            return i
    shown = ", ".join(repr(h) for h in headers)
    raise ImportFileError(
        f"{path}:{line}: --map {name}={column}: no column {column!r} (found {shown})"
    )


def parse_map(values: Iterable[str]) -> dict[str, str]:
    """--map FIELD=COLUMN options into a dict; raise InvalidInputError on a malformed one."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, column = value.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise InvalidInputError(f"--map {value!r}: expected FIELD=COLUMN, e.g. email=E-mail")
        field = name.strip().lower().replace("-", "_")
        out[MAP_ALIASES.get(field, field)] = column.strip()
    return out
