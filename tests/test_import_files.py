"""Reading spreadsheets: every encoding and delimiter Excel writes, XLSX, headers (no database)."""

from __future__ import annotations

import codecs
import re
import sys
from pathlib import Path

import pytest
from openpyxl import Workbook

from mailer.contacts.addresses import normalise
from mailer.errors import ImportFileError, InvalidInputError
from mailer.imports.columns import map_columns, parse_map
from mailer.imports.importer import domain_cache, join_name
from mailer.imports.spreadsheet import neutralise, open_table, restore, sniff_delimiter

ROWS = [
    ["이메일", "이름", "언론사", "언어"],
    ["minji.kim@example.com", "김민지", "서울데일리", "ko"],
    ["Jose.Garcia@Example.org", "José García", "Diário de Notícias", "en"],
    ["mueller@example.net", "Jürgen Müller", "Süddeutsche Beispiel", "en"],
]


def write(
    path: Path, rows: list[list[str]], encoding: str, delimiter: str = ",", newline: str = "\r\n"
) -> Path:
    text = newline.join(delimiter.join(_quote(c, delimiter) for c in row) for row in rows)
    path.write_bytes((text + newline).encode(encoding))
    return path


def _quote(cell: str, delimiter: str) -> str:
    if any(ch in cell for ch in (delimiter, '"', "\n", "\r")):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def read_all(path: Path, **kwargs: str) -> tuple[list[str], list[tuple[int, list[str]]], str]:
    with open_table(path, **kwargs) as table:
        rows = [(r.line, r.cells) for r in table.rows()]
        return table.headers, rows, f"{table.encoding}|{table.delimiter}"


@pytest.mark.parametrize(
    "encoding, delimiter, expect",
    [
        ("utf-8", ",", "utf-8|,"),
        ("utf-8-sig", ",", "utf-8-sig|,"),
        ("utf-8-sig", ";", "utf-8-sig|;"),
        ("utf-16", "\t", "utf-16|\t"),  # Excel "Unicode text": BOM, tab-separated
        ("utf-16-le", "\t", "utf-16-le|\t"),  # the same without a byte-order mark
        ("cp949", ",", "cp949|,"),  # Korean Excel's default "CSV"
        ("euc-kr", ";", "cp949|;"),
        ("utf-8", "\t", "utf-8|\t"),
    ],
)
def test_korean_file_in_every_encoding_and_delimiter(
    tmp_path: Path, encoding: str, delimiter: str, expect: str
) -> None:
    rows = [*ROWS[:2], ["park@example.com", "박준혁", "한강; 타임스, 문화부", "ko"]]
    path = write(tmp_path / "list.csv", rows, encoding, delimiter)
    headers, data, found = read_all(path)
    assert found == expect
    assert headers == ROWS[0]
    assert data == [(2, rows[1]), (3, rows[2])]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_western_excel_cp1252(tmp_path: Path, delimiter: str) -> None:
    rows = (
        [["Email", "Name", "Outlet"]]
        + [r[:3] for r in ROWS[2:]]
        + [["a@example.com", "Ärger Ånström", "Ölz"]]
    )
    path = write(tmp_path / "list.csv", rows, "cp1252", delimiter)
    _, data, found = read_all(path)
    assert found == f"cp1252|{delimiter}"
    assert [cells for _, cells in data] == rows[1:]


def test_cp949_with_rare_syllables_is_still_korean(tmp_path: Path) -> None:
    # 똠 and 햏 are outside EUC-KR: only CP949's extension encodes them.
    rows = [
        ["이메일", "이름"],
        ["a@example.com", "김똠양"],
        ["b@example.com", "이햏"],
        ["c@example.com", "박서연"],
        ["d@example.com", "최민준"],
    ]
    path = write(tmp_path / "list.csv", rows, "cp949")
    _, data, found = read_all(path)
    assert found == "cp949|,"
    assert [cells for _, cells in data] == rows[1:]


def test_embedded_newlines_keep_the_line_of_the_row_start(tmp_path: Path) -> None:
    rows = [
        ["email", "name", "note"],
        ["a@example.com", "Kim", "line one\nline two\nline three"],
        ["b@example.com", "Lee", "x"],
    ]
    path = write(tmp_path / "list.csv", rows, "utf-8")
    _, data, _ = read_all(path)
    assert data == [(2, rows[1]), (5, rows[2])]


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("\n\nemail,name\n\na@example.com,A\n,\nb@example.com,B\n", encoding="utf-8")
    headers, data, _ = read_all(path)
    assert headers == ["email", "name"]
    assert data == [(5, ["a@example.com", "A"]), (7, ["b@example.com", "B"])]


def test_excel_sep_hint_line(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("sep=;\nemail;name\na@example.com;Kim, Minji\n", encoding="utf-8")
    _, data, found = read_all(path)
    assert found == "utf-8|;"
    assert data == [(3, ["a@example.com", "Kim, Minji"])]


def test_cells_are_nfc_and_stripped(tmp_path: Path) -> None:
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "김민지")  # as macOS writes Hangul
    assert decomposed != "김민지"
    path = tmp_path / "list.csv"
    path.write_text(f"email,name\n  a@example.com , {decomposed} \n", encoding="utf-8")
    _, data, _ = read_all(path)
    assert data == [(2, ["a@example.com", "김민지"])]


def test_xlsx_first_sheet_and_named_sheet(tmp_path: Path) -> None:
    from datetime import datetime

    wb = Workbook()
    ws = wb.active
    ws.title = "Press"
    ws.append(["Email", "이름", "Joined", "Count"])
    ws.append(["a@example.com", "김민지", datetime(2024, 3, 1), 3])
    ws.append([None, None, None, None])
    ws.append(["b@example.com", "multi\nline", datetime(2024, 3, 1, 9, 30), 2.5])
    other = wb.create_sheet("회원")
    other.append(["이메일"])
    other.append(["c@example.com"])
    path = tmp_path / "list.xlsx"
    wb.save(path)
    with open_table(path) as table:
        assert (table.format, table.sheet, table.headers) == (
            "xlsx",
            "Press",
            ["Email", "이름", "Joined", "Count"],
        )
        assert [(r.line, r.cells) for r in table.rows()] == [
            (2, ["a@example.com", "김민지", "2024-03-01", "3"]),
            (4, ["b@example.com", "multi\nline", "2024-03-01 09:30:00", "2.5"]),
        ]
    headers, data, _ = read_all(path, sheet="회원")
    assert headers == ["이메일"] and data == [(2, ["c@example.com"])]
    with pytest.raises(
        ImportFileError,
        match=r"list\.xlsx: no sheet named 'Nope' \(the sheets "
        r"are 'Press', '회원'\)",
    ):
        open_table(path, sheet="Nope")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf\r\n\r\n", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary data"),
        (bytes(range(1, 32)) * 40, "binary data"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Excel .xls workbook"),
        (b"PK\x03\x04not really a zip", "not a readable XLSX workbook"),
    ],
)
def test_unreadable_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError) as err:
        open_table(path)
    assert str(err.value).startswith(str(path) + ": ")
    assert message in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match=r"nope\.csv: cannot read: No such file"):
        open_table(tmp_path / "nope.csv")


def test_invalid_utf8_with_explicit_encoding_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"email,name\na@example.com,ok\nb@example.com,\xff\xfe bad\n")
    with pytest.raises(ImportFileError, match=r"list\.csv: not valid utf-8"):
        read_all(path, encoding="utf-8")


def test_mostly_utf8_with_a_damaged_byte_is_refused_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    good = "".join(f"k{i}@example.com,김민지{i},서울데일리\n" for i in range(20)).encode()
    path.write_bytes(b"email,name,outlet\n" + good + b"bad@example.com,\xb1\xe8\n" + good)
    with pytest.raises(ImportFileError, match=r"list\.csv:22: not valid UTF-8 at byte \d+"):
        open_table(path)
    # The user can still say what it is.
    with open_table(path, encoding="latin-1") as table:
        assert table.encoding == "iso8859-1"


def test_undecodable_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"email,name\na@example.com,\x81\xff\n")
    with pytest.raises(ImportFileError, match="cannot tell the text encoding"):
        open_table(path)


def test_sniffer_prefers_the_consistent_delimiter() -> None:
    sample = "email;name;city\na@example.com;Kim;Seoul, Korea\nb@example.com;Lee;Busan\n"
    assert sniff_delimiter(sample) == ";"
    assert sniff_delimiter("email\na@example.com\n") == ","
    assert sniff_delimiter("email\tname\na@example.com\tKim, M\n") == "\t"


@pytest.mark.parametrize(
    "header, field",
    [
        ("E-mail Address", "email"),
        ("Email", "email"),
        ("EMAIL_ADDRESS", "email"),
        ("이메일", "email"),
        ("메일", "email"),
        ("이메일 주소(필수)", "email"),
        ("Full Name", "name"),
        ("성명", "name"),
        ("이름", "name"),
        ("First Name", "first_name"),
        ("Last name", "last_name"),
        ("성", "last_name"),
        ("Organization", "organisation"),
        ("Outlet", "organisation"),
        ("언론사", "organisation"),
        ("소속", "organisation"),
        ("Company", "organisation"),
        ("Lang", "language"),
        ("언어", "language"),
        ("Tags", "tags"),
    ],
)
def test_header_aliases_english_and_korean(header: str, field: str) -> None:
    other = "mail address" if field != "email" else "Notes"
    cols = map_columns(Path("f.csv"), [other, header], 1)
    assert cols.fields[field] == 1


def test_korean_surname_and_given_name_columns() -> None:
    cols = map_columns(Path("f.csv"), ["이메일", "성", "이름"], 1)
    assert cols.fields == {"email": 0, "last_name": 1, "first_name": 2}
    assert join_name("민지", "김") == "김민지"
    assert join_name("Minji", "Kim") == "Minji Kim"
    assert join_name("", "Kim") == "Kim"


def test_unknown_columns_are_attributes_and_duplicates_get_suffixes() -> None:
    cols = map_columns(Path("f.csv"), ["email", "Beat", "", "Beat", "Email"], 1)
    # Beat is a press field: its first column is the field, a second one an attribute.
    assert cols.fields == {"email": 0, "beat": 1}
    assert cols.attributes == [(2, "column 3"), (3, "Beat"), (4, "Email")]
    # An exported attribute (written attribute:NAME) is an attribute, never the field.
    cols = map_columns(Path("f.csv"), ["email", "attribute:분야", "전화"], 1)
    assert (cols.fields, cols.attributes) == ({"email": 0, "phone": 2}, [(1, "분야")])


def test_map_overrides_and_errors() -> None:
    headers = ["Contact", "Who", "email"]
    cols = map_columns(Path("f.csv"), headers, 1, {"email": "contact", "name": "Who"})
    assert cols.fields == {"email": 0, "name": 1}
    assert cols.attributes == [(2, "email")]
    with pytest.raises(ImportFileError, match=r"f\.csv: unknown --map field 'fax' \(fields: "):
        map_columns(Path("f.csv"), headers, 1, {"fax": "Who"})
    cols = map_columns(Path("f.csv"), headers, 1, {"email": "email", "beat": "Who"})
    assert cols.fields == {"email": 2, "beat": 1}
    with pytest.raises(ImportFileError, match=r"f\.csv:1: --map name=Nobody: no column 'Nobody'"):
        map_columns(Path("f.csv"), headers, 1, {"name": "Nobody"})
    assert parse_map(
        ["organization=Outlet", " email = E-mail ", "media-type=매체", "outlet=X"]
    ) == {
        "organisation": "X",
        "email": "E-mail",
        "media_type": "매체",
    }
    with pytest.raises(InvalidInputError, match="expected FIELD=COLUMN"):
        parse_map(["email"])


def test_no_email_column_is_a_clear_error() -> None:
    with pytest.raises(
        ImportFileError,
        match=r"f\.csv:3: no email column in the header row "
        r"\(found 'Name', 'Outlet'\)",
    ):
        map_columns(Path("f.csv"), ["Name", "Outlet"], 3)


def test_a_bare_list_of_addresses_has_no_header() -> None:
    cols = map_columns(Path("f.csv"), ["Kim", "kim@example.com"], 1)
    assert cols.headerless and cols.fields == {"email": 1}
    assert cols.headers == ["column 1", "column 2"]


@pytest.mark.parametrize(
    "value",
    [
        "=SUM(A1:A2)",
        "+82 10 1234 5678",
        "-1",
        "@cmd",
        "\tx",
        "\rx",
        "'=already",
        "''+x",
        "plain",
        "'quoted but harmless",
        "",
        "김민지",
        "a=b",
    ],
)
def test_neutralise_and_restore_round_trip(value: str) -> None:
    written = neutralise(value)
    plain_number = re.fullmatch(r"[0-9 ()+\-.]+", value)
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r")) or plain_number
    assert restore(written) == value


def test_domain_cache_changes_no_result() -> None:
    samples = [
        "Kim@Example.COM",
        "kim@example.com",
        "user@müller.example",
        "사용자@한국.example.org",
        "a@xn--mller-kva.example",
        "bad@-example.com",
        "bad@exa_mple.com",
        "x@localhost",
        "x@example.invalid",
        "no-at-sign",
        "a@b",
        "a@example..com",
        "POSTMASTER@example.org",
        '"quoted"@example.com',
        "a@[127.0.0.1]",
        "ok@sub.domain.example.net",
        "a@" + "x" * 64 + ".com",
    ] * 2

    def outcomes() -> list[object]:
        out: list[object] = []
        for value in samples:
            try:
                out.append(normalise(value))
            except InvalidInputError as err:
                out.append(str(err))
        return out

    plain = outcomes()
    with domain_cache():
        cached = outcomes()
        module = sys.modules["email_validator.validate_email"]
        assert hasattr(module.validate_email_domain_name, "cache_info")  # the cache is real
    assert cached == plain
    assert not hasattr(
        sys.modules["email_validator.validate_email"].validate_email_domain_name, "cache_info"
    )


def test_bom_constants_are_what_excel_writes() -> None:
    # Guards the detection order: UTF-32 LE's BOM starts with UTF-16 LE's.
    assert codecs.BOM_UTF32_LE.startswith(codecs.BOM_UTF16_LE)
