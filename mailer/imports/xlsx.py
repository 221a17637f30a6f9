"""Reading an XLSX workbook for the importer, with limits a hostile file cannot get past.

`open_xlsx` is what `spreadsheet.open_table` calls for a workbook; it gives the same Table (rows
with their sheet row numbers, cells as text). See the limits below for what is refused.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from mailer.errors import ImportFileError
from mailer.imports.spreadsheet import MAX_COLUMNS, Row, Table, clean

# Limits on what a workbook may make us read. An XLSX is a ZIP: a 1.7 MB file can hold 800 MB
# of shared strings, which openpyxl reads into memory whole, and a sheet can declare any size
# (A1:XFD1048576) while holding one row. The ZIP directory's sizes are checked before anything is
# opened (Python's zipfile never inflates more than the size an entry declares), and the rows are
# read as they come, never padded to the declared dimensions.
MAX_XLSX_TOTAL = 512 << 20  # every part, uncompressed
MAX_XLSX_PART = 64 << 20  # any part but a worksheet: openpyxl reads those whole
MAX_XLSX_SHEET = 256 << 20  # a worksheet, streamed
MAX_RATIO = 100  # uncompressed / compressed, for parts over 1 MiB; real workbooks are near 10
MAX_CELLS = 10_000_000  # cells (empty ones included) read from a whole sheet


def _check_zip(path: Path) -> None:
    """Refuse a workbook whose parts would inflate beyond the limits above (a ZIP bomb)."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ImportFileError(f"{path}: not a readable XLSX workbook ({err})") from None
    total = 0
    for info in infos:
        size = info.file_size
        total += size
        sheet = info.filename.startswith("xl/worksheets/")
        limit = MAX_XLSX_SHEET if sheet else MAX_XLSX_PART
        if size > limit:
            raise ImportFileError(
                f"{path}: the workbook part {info.filename} expands to {_mb(size)}, more than "
                f"the {_mb(limit)} read; split the sheet, or save it as CSV"
            )
        if size > 1 << 20 and size > MAX_RATIO * max(info.compress_size, 1):
            raise ImportFileError(
                f"{path}: the workbook part {info.filename} expands "
                f"{size // max(info.compress_size, 1)} times ({_mb(info.compress_size)} to "
                f"{_mb(size)}): not a spreadsheet Excel writes (a ZIP bomb?); refused"
            )
    if total > MAX_XLSX_TOTAL:
        raise ImportFileError(
            f"{path}: the workbook expands to {_mb(total)}, more than the {_mb(MAX_XLSX_TOTAL)} "
            "read; split it, or save the sheet as CSV"
        )


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def column_name(number: int) -> str:
    """Excel's name of a 1-based column number: 1 is A, 27 is AA, 16384 is XFD."""
    name = ""
    while number:
        number, rest = divmod(number - 1, 26)
        name = chr(65 + rest) + name
    return name


def open_xlsx(path: Path, sheet: str | None) -> Table:
    """Open the first (or the named) sheet of a workbook; ImportFileError naming the file."""
    # Lazy: openpyxl costs ~0.2 s (~220 modules); only sheet reading needs it.
    from openpyxl import load_workbook  # noqa: PLC0415

    _check_zip(path)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as err:
        raise ImportFileError(f"{path}: not a readable XLSX workbook ({err})") from None
    except Exception as err:  # openpyxl raises its own InvalidFileException and others
        raise ImportFileError(f"{path}: not a readable XLSX workbook ({err})") from None
    if sheet is None:
        if not wb.worksheets:
            wb.close()
            raise ImportFileError(f"{path}: the workbook has no sheets")
        ws = wb.worksheets[0]
    elif sheet in wb.sheetnames:
        ws = wb[sheet]
    else:
        names = ", ".join(repr(n) for n in wb.sheetnames)
        wb.close()
        raise ImportFileError(f"{path}: no sheet named {sheet!r} (the sheets are {names})")
    # The declared size only sizes the progress bar; rows are read as they come.
    declared = getattr(ws, "max_row", None) or 0
    if hasattr(ws, "reset_dimensions"):
        ws.reset_dimensions()
    done = 0

    def rows() -> Iterator[Row]:
        nonlocal done
        cells_read = 0
        for number, values in enumerate(ws.iter_rows(values_only=True), start=1):
            done = number
            width = len(values)
            cells_read += width
            if cells_read > MAX_CELLS:
                raise ImportFileError(
                    f"{path}:{number}: more than {MAX_CELLS:,} cells in the sheet "
                    f"{ws.title!r}; split it, or save it as CSV"
                )
            last = width
            while last and values[last - 1] is None:
                last -= 1
            if last > MAX_COLUMNS:
                raise ImportFileError(
                    f"{path}:{number}: a value in column {column_name(last)} (column {last}); "
                    f"at most {MAX_COLUMNS} columns are read"
                )
            cells = [clean(cell_text(v)) for v in values[:last]]
            while cells and not cells[-1]:
                cells.pop()
            if cells:
                yield Row(number, cells)

    it = rows()
    try:
        header = next(it, None)
    except ImportFileError:
        wb.close()
        raise
    if header is None:
        wb.close()
        raise ImportFileError(f"{path}: the sheet {ws.title!r} is empty")
    total = min(declared, 1 << 20)
    return Table(
        path=path,
        format="xlsx",
        headers=header.cells,
        header_line=header.line,
        sheet=ws.title,
        _rows=it,
        _progress=lambda: (done, max(total, done)),
        _close=wb.close,
    )


def sheet_headers(path: Path, rows: int = 30) -> list[tuple[str, list[str]]]:
    """Every sheet's name with its first non-blank row among the first `rows` ([] if none).

    For the message that tells which sheet to import when the one read has no email column."""
    # Lazy: openpyxl costs ~0.2 s (~220 modules); only sheet reading needs it.
    from openpyxl import load_workbook  # noqa: PLC0415

    _check_zip(path)
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception:  # the caller only adds a hint; the workbook opened once already
        return []
    out: list[tuple[str, list[str]]] = []
    try:
        for ws in wb.worksheets:
            first: list[str] = []
            for values in ws.iter_rows(max_row=rows, max_col=MAX_COLUMNS, values_only=True):
                cells = [clean(cell_text(v)) for v in values]
                if any(cells):
                    first = cells
                    break
            out.append((ws.title, first))
    finally:
        wb.close()
    return out


def cell_text(value: Any) -> str:
    """An XLSX cell value as the text a user sees in Excel (dates as ISO 8601)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    return str(value)
