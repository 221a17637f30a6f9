"""`contacts import`: a spreadsheet into a list, consent kept safe, all or nothing.

The pipeline: read and validate every row (no database yet), merge duplicates, look the addresses
up in bulk, plan, then write everything inside one SAVEPOINT. A failure anywhere leaves the
database as it was. The rules (README, "Importing contacts") are:

- an email cell may carry a name (`Name <addr>`, `addr (Name)`): the name fills an empty name;
- a language cell is a code or a name (mailer.releases.languages.from_name); one that is neither
  keeps the row, without a language, and adds a warning to the report;
- a media type cell is read as print, tv, radio, online or ethnic (English or Korean words,
  mailer.contacts.press); a word it does not know is kept as written, with a warning;
- a press field (role, beat, media type, region, phone) too long for its column, like a name
  or an outlet, rejects the row, naming the column;
- first + last name: "First Last", or "LastFirst" when both are Hangul (Korean order);
- duplicates in the file merge into the first row: its values win, later rows fill empty fields,
  tags are unioned; each merged row counts once under `duplicates`;
- an existing contact keeps its details unless --update-attributes (non-empty cells replace,
  attributes merge); tags from --tag or a tags column are always added;
- a suppressed address, or one unsubscribed from the list, is never subscribed ("kept
  unsubscribed"); a suppressed address that is not a contact yet is not created either;
- a pending subscription (double opt-in not confirmed) becomes subscribed with the import as
  its consent evidence: the organisation vouches for its own list;
- new subscriptions: source "import", consent_form "import:ID", consent_note the
  --consent-source text, consent_at the import time.

Over 400 lines on purpose: reading, matching columns and validating rows is one pass over the
file whose errors name the line.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mailer.contacts.addresses import Address, normalise
from mailer.contacts.contact import TAG_SPLIT, check_language, check_tag
from mailer.contacts.lists import get_list
from mailer.contacts.press import LABELS, LIMITS, PRESS_FIELDS, known_media_types, media_type
from mailer.errors import ImportFileError, InvalidInputError, MailerError
from mailer.imports.choices import apply_choices, guess_columns
from mailer.imports.columns import Columns, map_columns, parse_map
from mailer.imports.plan import Record, apply, keep_example, plan
from mailer.imports.spreadsheet import Row, Table, open_table, restore, write_csv
from mailer.private import open_private
from mailer.store import audit

__all__ = [
    "FileRead",
    "ImportReport",
    "check_tag",
    "file_rows",
    "import_contacts",
    "parse_map",
    "read_address",
    "read_import",
    "write_import",
]

# What Outlook and address books copy: `Name <addr>` ("Park, Minsu" quoted) or `addr (Name)`.
_ANGLE = re.compile(r"^(?P<name>[^<>]*?)\s*<(?P<addr>[^<>\s]+)>$")
_COMMENT = re.compile(r"^(?P<addr>[^\s()<>]+)\s*\((?P<name>[^()]*)\)$")
MAX_WARNINGS_SHOWN = 100
MAX_TEXT = 200  # Contact.name and Contact.organisation
MAX_ERRORS_SHOWN = 100
_HANGUL = re.compile(r"^[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f ]+$")

Progress = Callable[[int, int], None]


COUNTS = (
    "rows",
    "contacts_added",
    "contacts_updated",
    "subscribed",
    "pending_confirmed",
    "already_subscribed",
    "kept_unsubscribed",
    "invalid",
    "duplicates",
)


@dataclass
class Rejected:
    line: int
    reason: str
    cells: list[str]
    email: str


@dataclass
class RowWarning:
    """A row imported with something read in a way its author may not expect."""

    line: int
    message: str
    email: str


@dataclass
class ImportReport:
    """What an import did (or, with dry_run, would do). See README for the JSON shape."""

    file: str
    list_slug: str
    dry_run: bool
    format: str = "csv"
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    sha256: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    attribute_columns: list[str] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    consent_source: str | None = None
    import_id: int | None = None
    errors_file: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    rejected: list[Rejected] = field(default_factory=list)
    warnings: list[RowWarning] = field(default_factory=list)
    default_language: str | None = None
    # The first rows of each outcome (COUNTS names; "duplicates" are the later rows, merged
    # into an earlier one): what the console shows. Not part of the JSON shape.
    examples: dict[str, list[Record]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The stable JSON shape of the report."""
        return {
            "import_id": self.import_id,
            "dry_run": self.dry_run,
            "file": self.file,
            "sha256": self.sha256,
            "format": self.format,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "sheet": self.sheet,
            "list": self.list_slug,
            "tags": self.tags,
            "consent_source": self.consent_source,
            "columns": self.columns,
            "attribute_columns": self.attribute_columns,
            "ignored_columns": self.ignored_columns,
            "counts": dict(self.counts),
            "errors": [
                {"line": r.line, "reason": r.reason, "email": r.email}
                for r in self.rejected[:MAX_ERRORS_SHOWN]
            ],
            "errors_file": self.errors_file,
            "warnings": [
                {"line": w.line, "message": w.message, "email": w.email}
                for w in self.warnings[:MAX_WARNINGS_SHOWN]
            ],
            "warnings_total": len(self.warnings),
        }


def import_contacts(
    session: Session,
    path: str | Path,
    list_slug: str,
    *,
    tags: Sequence[str] = (),
    mapping: dict[str, str] | None = None,
    dry_run: bool = False,
    update_attributes: bool = False,
    consent_source: str | None = None,
    check_dns: bool = False,
    sheet: str | None = None,
    encoding: str | None = None,
    errors_path: str | Path | None = None,
    progress: Progress | None = None,
    actor: str = "",
    default_language: str | None = None,
) -> ImportReport:
    """Import a CSV/XLSX file into a list, all or nothing; see the module docstring for rules.

    `default_language` (the setting) is only named in the warning for a language cell that
    cannot be read: such a contact is stored without a language, so it gets the default.
    The two halves, `read_import` then `write_import`, are what the console calls."""
    read = read_import(
        path,
        tags=tags,
        mapping=mapping,
        check_dns=check_dns,
        sheet=sheet,
        encoding=encoding,
        progress=progress,
        default_language=default_language,
    )
    return write_import(
        session,
        read,
        list_slug,
        dry_run=dry_run,
        update_attributes=update_attributes,
        consent_source=consent_source,
        errors_path=errors_path,
        actor=actor,
    )


@dataclass
class FileRead:
    """The file half of an import: every row read, validated and merged; no database yet."""

    report: ImportReport
    records: dict[str, Record]


def read_import(
    path: str | Path,
    *,
    tags: Sequence[str] = (),
    mapping: dict[str, str] | None = None,
    choices: dict[int, str] | None = None,
    check_dns: bool = False,
    sheet: str | None = None,
    encoding: str | None = None,
    progress: Progress | None = None,
    default_language: str | None = None,
) -> FileRead:
    """Read a CSV/XLSX file for an import; raise ImportFileError when it cannot be used.

    `choices` (column index -> field, "attribute" or "skip": mailer.imports.choices) changes
    the columns' guess, as the console's mapping form does (`mapping`, the CLI's --map, is
    then not used)."""
    path = Path(path)
    extra_tags = [check_tag(t) for t in tags]
    report = ImportReport(
        file=str(path),
        list_slug="",
        dry_run=False,
        tags=list(dict.fromkeys(extra_tags)),
        default_language=default_language,
    )
    with open_table(path, sheet=sheet, encoding=encoding) as table:
        if choices:
            guess, _ = guess_columns(path, table.headers, table.header_line, sheet=table.sheet)
            columns = apply_choices(path, guess, choices)
        else:
            columns = map_columns(
                path, table.headers, table.header_line, mapping, sheet=table.sheet
            )
        report.format, report.encoding = table.format, table.encoding
        report.delimiter, report.sheet = table.delimiter, table.sheet
        report.columns = columns.as_names()
        report.attribute_columns = [name for _, name in columns.attributes]
        report.ignored_columns = columns.ignored
        report.headers = columns.headers
        with domain_cache():
            records = _read(table, columns, report, check_dns, progress)
    if not report.counts["rows"]:
        raise ImportFileError(f"{path}: no data rows below the header (line {table.header_line})")
    report.sha256 = file_sha256(path)
    return FileRead(report, records)


def write_import(
    session: Session,
    read: FileRead,
    list_slug: str,
    *,
    dry_run: bool = False,
    update_attributes: bool = False,
    consent_source: str | None = None,
    errors_path: str | Path | None = None,
    actor: str = "",
) -> ImportReport:
    """The database half: plan the rows of `read` against the list, then (unless dry_run)
    write them in one SAVEPOINT. Returns a report of its own, so one FileRead can be planned
    again (a dry run, then the import)."""
    report = replace(
        read.report,
        list_slug=list_slug,
        dry_run=dry_run,
        consent_source=consent_source,
        errors_file=str(errors_path) if errors_path is not None else None,
        counts=dict(read.report.counts),
        examples={k: list(v) for k, v in read.report.examples.items()},
    )
    path = Path(read.report.file)
    ml = get_list(session, list_slug)
    todo = plan(
        session, read.records, ml.id, update_attributes, report.counts, examples=report.examples
    )
    if not dry_run:
        try:
            with session.begin_nested():
                imp = apply(
                    session,
                    todo,
                    ml.id,
                    file=report.file,
                    sha256=report.sha256,
                    consent_source=consent_source,
                )
                report.import_id = imp.id
                imp.report = {k: v for k, v in report.as_dict().items() if k != "errors"}
                audit.record(
                    session,
                    "contact.import",
                    list_id=ml.id,
                    actor=actor,
                    import_id=imp.id,
                    file=report.file,
                    counts=dict(report.counts),
                )
                session.flush()
        except DBAPIError as err:
            raise MailerError(
                f"{path}: the database refused the import, nothing was imported: "
                f"{str(err.orig).strip().splitlines()[0]}"
            ) from None
    if errors_path is not None:
        write_errors(Path(errors_path), report)
    return report


def _read(
    table: Table, columns: Columns, report: ImportReport, check_dns: bool, progress: Progress | None
) -> dict[str, Record]:
    """Every row validated and merged by address (no database access)."""
    f = columns.fields
    email_i = f["email"]
    name_i, first_i, last_i = f.get("name"), f.get("first_name"), f.get("last_name")
    org_i, lang_i, tags_i = f.get("organisation"), f.get("language"), f.get("tags")
    press_i = [(name, f[name]) for name in PRESS_FIELDS if name in f]
    extra_tags = report.tags
    languages: dict[str, str | InvalidInputError | None] = {}
    records: dict[str, Record] = {}
    counts = report.counts
    for n, (row, cells, problem) in enumerate(file_rows(table, columns), start=1):
        counts["rows"] += 1
        if progress is not None and n % 1000 == 0:
            progress(*table.progress())
        if problem is not None:
            _reject(report, row, problem, "")
            continue
        raw = cells[email_i]
        written, display_name = split_mailbox(raw)
        try:
            address = read_address(written, check_dns=check_dns)
        except InvalidInputError as err:
            _reject(report, row, str(err), raw)
            continue
        key = address.key
        if name_i is not None and cells[name_i]:
            name = cells[name_i]
        else:
            name = (
                join_name(
                    cells[first_i] if first_i is not None else "",
                    cells[last_i] if last_i is not None else "",
                )
                or display_name
            )
        organisation = cells[org_i] if org_i is not None else ""
        problem = None
        if len(name) > MAX_TEXT:
            problem = f"name longer than {MAX_TEXT} characters"
        elif len(organisation) > MAX_TEXT:
            problem = f"organisation longer than {MAX_TEXT} characters"
        language = None
        if lang_i is not None and cells[lang_i]:
            value = cells[lang_i]
            if value not in languages:
                try:
                    languages[value] = check_language(value)
                except InvalidInputError as err:
                    languages[value] = err
            checked = languages[value]
            if isinstance(checked, InvalidInputError):
                # A language nobody can read is no reason to lose the reporter: the contact is
                # kept without a language (so gets the default) and the report says so.
                default = report.default_language or "the default language"
                report.warnings.append(
                    RowWarning(
                        row.line,
                        f"language {value!r} not recognised (use a code such as en or ko, "
                        f"or a name such as English or 한국어): imported with {default}",
                        raw,
                    )
                )
            else:
                language = checked
        press: dict[str, str] | None = None
        for field_name, i in press_i:
            value = cells[i]
            if not value:
                continue
            if len(value) > LIMITS[field_name]:
                problem = problem or (
                    f"{LABELS[field_name]} (column {columns.headers[i]!r}) longer than "
                    f"{LIMITS[field_name]} characters"
                )
                continue
            if field_name == "media_type":
                value = _media_type(report, row.line, columns.headers[i], value, raw)
            press = press or {}
            press[field_name] = value
        row_tags = list(extra_tags)
        if tags_i is not None and cells[tags_i]:
            for tag in TAG_SPLIT.split(cells[tags_i]):
                tag = tag.strip()
                if len(tag) > 100:
                    problem = f"tag {tag[:20]!r}...: longer than 100 characters"
                elif tag and tag not in row_tags:
                    row_tags.append(tag)
        if problem:
            _reject(report, row, problem, raw)
            continue
        attributes = {a: cells[i] for i, a in columns.attributes if cells[i]} or None
        # Most addresses are typed in lower case already: share the string.
        original = key if address.original == key else address.original
        record = Record(
            key,
            original,
            row.line,
            name,
            organisation,
            language,
            row_tags or None,
            attributes,
            press,
        )
        first = records.get(key)
        if first is None:
            records[key] = record
        else:
            first.merge(record)
            counts["duplicates"] += 1
            keep_example(report.examples, "duplicates", record)
    if progress is not None:
        progress(*table.progress())
    return records


def _media_type(report: ImportReport, line: int, header: str, value: str, email: str) -> str:
    """A media type cell as stored: the canonical word, or as written with a warning.

    An unknown word keeps the reporter and the text (like an unreadable language): a label is
    no reason to drop a row, and `--where "media_type = ..."` still finds it as written."""
    kind = media_type(value)
    if kind is not None:
        return kind
    report.warnings.append(
        RowWarning(
            line,
            f"column {header!r}: media type {value!r} not recognised (use "
            f"{known_media_types()}): imported as written",
            email,
        )
    )
    return value


def file_rows(table: Table, columns: Columns) -> Iterator[tuple[Row, list[str], str | None]]:
    """Every data row of an opened file as (row, cells, problem), the one way rows are read.

    Used by `contacts import` and `suppressions import`. The cells are as wide as the header
    (short rows padded), with mailer's own export guard taken off (columns.exported); `problem`
    says why a row cannot be read at all (more cells than the header has), else None. A
    headerless file (a bare list of addresses) starts with its first row."""
    width = len(table.headers)
    rows: Iterator[Row] = table.rows()
    if columns.headerless:
        rows = _chain([Row(table.header_line, table.headers)], rows)
    for row in rows:
        cells = row.cells
        if len(cells) > width and any(cells[width:]):
            yield (
                row,
                cells,
                (
                    f"{len(cells)} cells but the header has {width} (a delimiter "
                    "inside an unquoted cell?)"
                ),
            )
            continue
        if len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        elif len(cells) > width:
            cells = cells[:width]
        if columns.exported:
            cells = [restore(c) for c in cells]
        yield row, cells, None


def read_address(raw: str, *, check_dns: bool = False) -> Address:
    """The address of a cell, or InvalidInputError with the reason the row is rejected.

    A cell with a display name (`Name <addr>`, `addr (Name)`) gives its address."""
    address, _ = split_mailbox(raw)
    if not address:
        raise InvalidInputError("no email address")
    return normalise(address, check_dns=check_dns)


def split_mailbox(raw: str) -> tuple[str, str]:
    """(address, display name) of a cell: `박민수 <m@x.com>`, `"Park, Minsu" <m@x.com>` and
    `m@x.com (박민수)` give the name; a bare address gives ''. Anything else is returned as it
    is, for the address check to explain."""
    text = raw.strip()
    if not text.endswith((">", ")")):
        return text, ""
    match = _ANGLE.match(text) or _COMMENT.match(text)
    if match is None:
        return text, ""
    name = match.group("name").strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\").strip()
    elif len(name) >= 2 and name[0] == name[-1] == "'":
        name = name[1:-1].strip()  # Outlook quotes with ' when it copies some names
    return match.group("addr").strip(), name


def _reject(report: ImportReport, row: Row, reason: str, email: str) -> None:
    report.counts["invalid"] += 1
    report.rejected.append(Rejected(row.line, reason, row.cells, email))


def _chain(first: list[Row], rest: Iterator[Row]) -> Iterator[Row]:
    yield from first
    yield from rest


def join_name(first: str, last: str) -> str:
    """First and last name as one: Korean names family name first, without a space."""
    if first and last and _HANGUL.match(first) and _HANGUL.match(last):
        return last + first
    return " ".join(p for p in (first, last) if p)


_DOMAIN_CHECK = "validate_email_domain_name"
_patch_lock = threading.Lock()
_patch_depth = 0


@contextmanager
def domain_cache() -> Iterator[None]:
    """Inside the block, email-validator checks each distinct domain once.

    email-validator spends most of its time on the domain part (UTS-46 and IDNA checks), and a
    press list has a few hundred domains for thousands of addresses. That check is a pure
    function of (domain, options) whose result validate_email only reads, so caching it changes
    no outcome (tests/test_import_files.py compares). Should email-validator's internals change,
    the import simply runs uncached.
    """
    global _patch_depth
    module = sys.modules.get("email_validator.validate_email")
    original = getattr(module, _DOMAIN_CHECK, None)
    if module is None or not callable(original) or hasattr(original, "cache_info"):
        yield
        return
    with _patch_lock:
        _patch_depth += 1
        if _patch_depth == 1:
            setattr(module, _DOMAIN_CHECK, functools.lru_cache(maxsize=8192)(original))
    try:
        yield
    finally:
        with _patch_lock:
            _patch_depth -= 1
            if _patch_depth == 0:
                setattr(module, _DOMAIN_CHECK, original)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, recorded as evidence of exactly what was imported."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_errors(path: Path, report: ImportReport) -> None:
    """The rejected rows as CSV (UTF-8 with BOM): line, reason, then the original cells."""
    try:
        with open_private(path) as out:  # the rows hold addresses: owner only
            header = ["line", "reason", *report.headers]
            write_csv(out, _error_rows(header, report.rejected))
    except OSError as err:
        raise MailerError(f"{path}: cannot write the errors file: {err.strerror}") from None


def _error_rows(header: list[str], rejected: list[Rejected]) -> Iterator[list[str]]:
    yield header
    for r in rejected:
        yield [str(r.line), r.reason, *r.cells]
