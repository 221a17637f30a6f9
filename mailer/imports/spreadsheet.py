"""Reading the spreadsheets admins have: CSV in any encoding Excel writes, and XLSX.

`open_table(path)` gives a Table: the header cells, then the data rows, each with the line (CSV) or
row (XLSX) number where it starts, so every message can point at the place in the file. Blank rows
are skipped. Every cell is a str, NFC-normalised (macOS writes Hangul decomposed) and stripped.

Encodings, in the order they are recognised:
  a byte-order mark (UTF-8, UTF-16, UTF-32); UTF-16 without a mark (NUL bytes between ASCII);
  strict UTF-8; CP949 (Korean Excel, a superset of EUC-KR) when its Korean pairs outnumber the
  rarer extension pairs; cp1252 (Western Excel). A file that is mostly UTF-8 with a damaged
  byte, or that none of these decode, is refused with the line to fix rather than guessed
  (a wrong guess turns every Korean name into mojibake); `--encoding` settles any doubt.
Delimiters: `sep=X` on the first line (Excel's hint), else whichever of , ; tab | splits the first
lines into the most consistent number of columns.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailer.csvsafe import FORMULA_START, neutralise, restore, write_csv
from mailer.errors import ImportFileError

# The CSV writer and its formula guard live in mailer.csvsafe; imported here for the importer.
__all__ = ["FORMULA_START", "Row", "Table", "neutralise", "open_table", "restore", "write_csv"]

CHUNK = 1 << 20
SAMPLE = 64 * 1024
DELIMITERS = (",", ";", "\t", "|")
MAX_COLUMNS = 1000  # a value further right than this is refused (CSV and XLSX)
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}

_ZIP = b"PK\x03\x04"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Two bytes of the KS X 1001 (EUC-KR) range: the common Hangul and Hanja of Korean text.
_KS_PAIR = re.compile(rb"[\xb0-\xc8][\xa1-\xfe]")
# CP949's extension pairs (rare syllables); also what "Är", "Ån" in cp1252 look like.
_UHC_PAIR = re.compile(rb"[\x81-\xc6][\x41-\x5a\x61-\x7a\x81-\xa0]")
_UTF8_SEQ = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_HIGH = re.compile(rb"[\x80-\xff]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Row:
    """One data row: where it starts in the file and its cells."""

    line: int
    cells: list[str]


@dataclass
class Table:
    """A spreadsheet opened for reading; iterate `rows()` once."""

    path: Path
    format: str  # "csv" or "xlsx"
    headers: list[str]
    header_line: int
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    _rows: Iterator[Row] = field(default_factory=lambda: iter(()), repr=False)
    _progress: Callable[[], tuple[int, int]] = field(default=lambda: (0, 0), repr=False)
    _close: Callable[[], None] = field(default=lambda: None, repr=False)

    def rows(self) -> Iterator[Row]:
        """The data rows below the header, blank rows skipped."""
        return self._rows

    def progress(self) -> tuple[int, int]:
        """(done, total) in bytes for CSV, rows for XLSX: enough for a progress bar."""
        return self._progress()

    def close(self) -> None:
        self._close()

    def __enter__(self) -> Table:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clean(value: str) -> str:
    """A cell as the importer wants it: NFC, no surrounding whitespace."""
    value = value.strip()
    if not value.isascii():
        value = unicodedata.normalize("NFC", value).strip()
    return value


def open_table(path: str | Path, *, sheet: str | None = None, encoding: str | None = None) -> Table:
    """Open a CSV or XLSX file; raise ImportFileError naming the file when it cannot be read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(SAMPLE)
    except OSError as err:
        raise ImportFileError(f"{path}: cannot read: {err.strerror}") from None
    if head.startswith(_ZIP) or path.suffix.lower() in (".xlsx", ".xlsm"):
        # Lazy: import cycle, imports.xlsx imports this module; openpyxl only for workbooks.
        from mailer.imports.xlsx import open_xlsx  # noqa: PLC0415

        return open_xlsx(path, sheet)
    if sheet is not None:
        raise ImportFileError(f"{path}: --sheet applies to XLSX workbooks; this is a CSV file")
    if head.startswith(_OLE):
        raise ImportFileError(
            f"{path}: an old Excel .xls workbook; open it in Excel and save it as .xlsx or CSV"
        )
    if not head.strip(b" \t\r\n" + codecs.BOM_UTF8):
        raise ImportFileError(f"{path}: the file is empty")
    enc = _check_encoding(path, encoding) if encoding else detect_encoding(path, head)
    return _open_csv(path, enc, size)


def detect_encoding(path: Path, head: bytes) -> str:
    """The encoding of a CSV file (see the module docstring for the order of guesses)."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if b"\x00" in head:
        even = head[0::2].count(0)
        odd = head[1::2].count(0)
        half = len(head) // 2
        if odd > half * 0.3 and even < odd / 10:
            return "utf-16-le"
        if even > half * 0.3 and odd < even / 10:
            return "utf-16-be"
        raise ImportFileError(
            f"{path}: binary data at byte {head.index(0)}; expected a CSV (text) or XLSX file"
        )
    alive = {
        "utf-8": codecs.getincrementaldecoder("utf-8")(),
        "cp949": codecs.getincrementaldecoder("cp949")(),
        "cp1252": codecs.getincrementaldecoder("cp1252")(),
    }
    ks = uhc = utf8_bytes = high_bytes = offset = 0
    bad_utf8_at: int | None = None
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(CHUNK)
            final = not chunk
            for name in list(alive):
                try:
                    alive[name].decode(chunk, final)
                except UnicodeDecodeError as err:
                    if name == "utf-8":
                        bad_utf8_at = offset + max(0, err.start)
                    del alive[name]
            ks += len(_KS_PAIR.findall(chunk))
            uhc += len(_UHC_PAIR.findall(chunk))
            utf8_bytes += sum(len(m) for m in _UTF8_SEQ.findall(chunk))
            high_bytes += len(_HIGH.findall(chunk))
            offset += len(chunk)
            if final or not alive:
                break
    if "utf-8" in alive:
        return "utf-8"
    if bad_utf8_at is not None and utf8_bytes > high_bytes / 2:
        # Mostly UTF-8 with a damaged byte (or two encodings pasted together): a guess would
        # turn every Korean name into mojibake, so stop and say where.
        raise ImportFileError(
            f"{path}:{_line_at(path, bad_utf8_at)}: not valid UTF-8 at byte {bad_utf8_at}, "
            "though most of the file is UTF-8; fix that line or name the encoding with "
            "--encoding"
        )
    if "cp949" in alive and (ks >= uhc or "cp1252" not in alive):
        return "cp949"
    if "cp1252" in alive:
        return "cp1252"
    raise ImportFileError(
        f"{path}: cannot tell the text encoding (not UTF-8, CP949 or cp1252); save it from "
        'Excel as "CSV UTF-8", or name the encoding with --encoding'
    )


def _line_at(path: Path, offset: int) -> int:
    """The line number of byte `offset` of a file."""
    with path.open("rb") as fh:
        return fh.read(offset).count(b"\n") + 1


def _check_encoding(path: Path, encoding: str) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ImportFileError(f"{path}: unknown encoding {encoding!r}") from None


def _open_csv(path: Path, encoding: str, size: int) -> Table:
    raw = path.open("rb")
    text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
    try:
        sample = text.read(SAMPLE)
    except UnicodeDecodeError as err:
        raw.close()
        # err.start counts from the decoder's last chunk: find the byte again from the start,
        # for the line to show (the usual cause: --encoding utf-8 for a CP949 file, or back).
        at = err.start
        with path.open("rb") as fh:
            try:
                codecs.getincrementaldecoder(encoding)().decode(fh.read(SAMPLE * 4))
            except UnicodeDecodeError as again:
                at = again.start
        raise ImportFileError(
            f"{path}: not valid {encoding} text on line {_line_at(path, at)} ({err.reason} at "
            f"byte {at}); is --encoding {encoding} right? Without --encoding the encoding is "
            "guessed (UTF-8, CP949/EUC-KR, cp1252)"
        ) from None
    # Text never holds NULs and hardly any other control characters; a binary file does.
    if "\x00" in sample or len(_CONTROL.findall(sample)) > max(3, len(sample) // 100):
        raw.close()
        raise ImportFileError(f"{path}: binary data; expected a CSV (text) or XLSX file")
    skip_first = 0
    first_line = sample.split("\n", 1)[0].lstrip("\ufeff").strip()
    if len(first_line) == 5 and first_line.lower().startswith("sep="):
        delimiter = first_line[4]
        skip_first = 1
    else:
        delimiter = sniff_delimiter(sample, truncated=len(sample) == SAMPLE)
    text.seek(0)
    reader = csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)

    def rows() -> Iterator[Row]:
        previous = 0
        try:
            for cells in reader:
                start = previous + 1
                previous = reader.line_num
                if start <= skip_first:
                    continue
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) > MAX_COLUMNS:
                    far = [i for i in range(MAX_COLUMNS, len(cells)) if cells[i].strip()]
                    if far:
                        raise ImportFileError(
                            f"{path}:{start}: a value in column {far[-1] + 1}; at most "
                            f"{MAX_COLUMNS} columns are read"
                        )
                    del cells[MAX_COLUMNS:]
                yield Row(start, [clean(c) for c in cells])
        except csv.Error as err:
            raise ImportFileError(f"{path}:{previous + 1}: cannot read the CSV: {err}") from None
        except UnicodeDecodeError as err:
            raise ImportFileError(
                f"{path}: not valid {encoding} text near line {previous + 1} ({err.reason})"
            ) from None

    it = rows()
    try:
        header = next(it)
    except StopIteration:
        raw.close()
        raise ImportFileError(f"{path}: the file is empty") from None
    except ImportFileError:
        raw.close()
        raise
    header.cells[0] = header.cells[0].lstrip("\ufeff").strip()

    def progress() -> tuple[int, int]:
        try:
            return min(raw.tell(), size), size
        except (OSError, ValueError):
            return size, size

    return Table(
        path=path,
        format="csv",
        headers=header.cells,
        header_line=header.line,
        encoding=encoding,
        delimiter=delimiter,
        _rows=it,
        _progress=progress,
        _close=raw.close,
    )


def sniff_delimiter(sample: str, *, truncated: bool = False) -> str:
    """The delimiter that splits the first lines into the most consistent number of columns."""
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        lines = list(csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter))
        if truncated and len(lines) > 1:
            lines = lines[:-1]  # the sample may end inside a row
        lines = [x for x in lines if any(c.strip() for c in x)][:50]
        if not lines or len(lines[0]) < 2:
            continue
        width = len(lines[0])
        consistency = sum(1 for x in lines if len(x) == width) / len(lines)
        score = (consistency, width)
        if score > best_score:
            best, best_score = delimiter, score
    return best
