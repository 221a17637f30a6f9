"""Hostile inputs and secrets (issue 12): file modes, masking, bombs, header injection, CSV
formulas, terminal escapes, erasure, and one spreadsheet reader for every import.

Longer than most test modules on purpose: one file holds every finding of the review, each in
its own section, so the findings and their tests are read together."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from openpyxl import Workbook
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mailer.cli import main
from mailer.config import load_settings
from mailer.contacts.contact import add_contact, erase
from mailer.contacts.lists import create_list, edit_list
from mailer.contacts.suppressions import import_suppressions
from mailer.csvsafe import neutralise, restore
from mailer.delivery.campaigns import write_report
from mailer.delivery.message import (
    HeaderValueError,
    Sender,
    _address_header,
    fold_header,
    list_id_header,
    to_header,
)
from mailer.errors import ConfigError, ImportFileError, InvalidInputError, ReleaseError
from mailer.imports.importer import import_contacts
from mailer.imports.spreadsheet import open_table
from mailer.masking import mask_url
from mailer.releases.source import load_release
from mailer.store import audit
from mailer.store.folder import init
from mailer.store.models import (
    Base,
    Bounce,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Release,
)
from tests.support.cli import Cli
from tests.support.config import CONFIG_EXTRA, write_config
from tests.support.files import mode
from tests.support.sending import campaign_with

# --- files holding secrets are created 0600 -------------------------------------------------


def test_init_creates_config_database_and_wal_owner_only(tmp_path: Path, umask_022: None) -> None:
    from mailer.store.db import dispose_engines, get_engine

    config = tmp_path / "org" / "mailer.toml"
    init(config)
    settings = load_settings(config, env={})
    with get_engine(settings).begin() as conn:  # a write: the WAL and shared memory files exist
        conn.execute(
            text(
                "INSERT INTO mailing_list (slug, name, description, public, "
                "created_at) VALUES ('x', 'X', '', false, CURRENT_TIMESTAMP)"
            )
        )
    try:
        files = {p.name: mode(p) for p in config.parent.iterdir() if p.is_file()}
        assert {"mailer.toml", "mailer.db", "mailer.db-wal", "mailer.db-shm"} <= set(files)
        assert files == dict.fromkeys(files, 0o600), files
    finally:
        dispose_engines()


def test_init_never_overwrites(tmp_path: Path, umask_022: None) -> None:
    config = tmp_path / "mailer.toml"
    config.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(Exception, match="already exists"):
        init(config)
    assert config.read_text(encoding="utf-8") == "# mine\n"


def test_demo_folder_is_owner_only(tmp_path: Path, umask_022: None) -> None:
    from mailer.demo import run_demo
    from mailer.store.db import dispose_engines

    folder = tmp_path / "demo"
    try:
        run_demo(folder)
    finally:
        dispose_engines()
    assert mode(folder / "mailer.toml") == 0o600
    assert mode(folder / "mailer.db") == 0o600


def test_dkim_keygen_key_is_owner_only(tmp_path: Path, umask_022: None) -> None:
    from mailer.delivery.dkim import generate_dkim_key

    key = tmp_path / "dkim.pem"
    generate_dkim_key(key, "s1", "example.org", bits=1024)
    assert mode(key) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


# --- every form of URL secret is masked -----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "smtp://u:hunter2@mail.example.org:587?tls=starttls",
            "smtp://u:****@mail.example.org:587?tls=starttls",
        ),
        (
            "smtp://mail.example.org:587?user=u&password=hunter2&tls=starttls",
            "smtp://mail.example.org:587?user=u&password=****&tls=starttls",
        ),
        (
            "postgresql+psycopg://pg@db/mailer?sslmode=require&PGPASSWORD=hunter2",
            "postgresql+psycopg://pg@db/mailer?sslmode=require&PGPASSWORD=****",
        ),
        (
            "imaps://me@example.org:hun?ter2@imap.example.org/INBOX",
            "imaps://me@example.org:****@imap.example.org/INBOX",
        ),
        # '#' in a raw password: a parser would read the rest as a fragment, so it is hidden too.
        ("imaps://me@example.org:hun#ter2@imap.example.org/INBOX", "imaps://me@example.org:****"),
        ("smtp://mail.example.org:25?password=a@b", "smtp://mail.example.org:****"),
        (
            "https://hooks.example.org/x?api_key=hunter2#hunter2",
            "https://hooks.example.org/x?api_key=****#****",
        ),
        ("sqlite:////var/lib/mailer.db", "sqlite:////var/lib/mailer.db"),
    ],
)
def test_mask_url_forms(url: str, shown: str) -> None:
    assert mask_url(url) == shown


MARK = "Ω"  # in every secret and nowhere else: any leaked part of a secret shows it
_text = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=12)
_secret = st.builds(lambda a, b: a + MARK + b, st.text(max_size=10), st.text(max_size=10))


@hsettings(max_examples=300, deadline=None)
@given(
    scheme=st.sampled_from(["smtp", "smtps", "imaps", "postgresql+psycopg", "https"]),
    user=st.text(alphabet="abcxyz.-_@", max_size=8),
    secret=_secret,
    form=st.sampled_from(["userinfo", "query", "query-raw", "fragment"]),
    name=st.sampled_from(
        ["password", "pass", "PGPASSWORD", "secret", "token", "api_key", "access_token", "auth"]
    ),
    path=st.sampled_from(["", "/", "/INBOX", "/db"]),
    other=_text,
)
def test_the_secret_never_appears(
    scheme: str, user: str, secret: str, form: str, name: str, path: str, other: str
) -> None:
    host = "host.example.org:25"
    if form == "userinfo":
        url = f"{scheme}://{user or 'u'}:{secret}@{host}{path}?x={quote(other)}"
    elif form == "query":
        url = f"{scheme}://{host}{path}?a={quote(other)}&{name}={quote(secret, safe='')}&b=1"
    elif form == "query-raw":
        # Unencoded, except '&': in a query that ends the value for every reader alike.
        url = f"{scheme}://{host}{path}?{name}={secret.replace('&', '%26')}"
    else:
        url = f"{scheme}://{host}{path}#{secret}"
    shown = mask_url(url)
    assert MARK not in shown and quote(MARK) not in shown.upper(), (url, shown)


def test_config_show_masks_a_password_in_the_query(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        {
            "database_url": f"sqlite:///{tmp_path / 'm.db'}?password=hunter2",
            "smtp_url": "smtp://mail.example.org:587?password=swordfish&tls=starttls",
        },
    )
    for args in (["config", "show"], ["config", "show", "--json"]):
        out = CliRunner().invoke(main, ["--config", str(config), *args]).output
        assert "hunter2" not in out and "swordfish" not in out
        assert "password=****" in out


def test_imap_password_with_a_question_mark_is_not_shown_in_part() -> None:
    from mailer.bounces.sources import MailboxError, parse_imap_url

    with pytest.raises(MailboxError) as caught:
        parse_imap_url("imaps://bob:Zq9?xY@imap.example.org/INBOX", env={})
    assert "Zq9" not in str(caught.value) and "xY" not in str(caught.value)


# --- XLSX and YAML bombs --------------------------------------------------------------------


def _workbook(path: Path, rows: list[list[str]]) -> Path:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def _replace_part(path: Path, name: str, data: bytes) -> Path:
    """Rewrite the workbook with one part replaced (written as openpyxl would not)."""
    with zipfile.ZipFile(path) as src:
        parts = {i.filename: src.read(i.filename) for i in src.infolist()}
    parts[name] = data
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as out:
        for part, content in parts.items():
            out.writestr(part, content)
    return path


def _with_shared_strings(path: Path, data: bytes) -> Path:
    """The workbook with `data` as its shared strings, declared so openpyxl reads them."""
    with zipfile.ZipFile(path) as src:
        types = src.read("[Content_Types].xml")
    if b"sharedStrings" not in types:
        types = types.replace(
            b"</Types>",
            b'<Override PartName="/xl/sharedStrings.xml" '
            b'ContentType="application/vnd.openxmlformats-officedocument.'
            b'spreadsheetml.sharedStrings+xml"/></Types>',
        )
        _replace_part(path, "[Content_Types].xml", types)
    return _replace_part(path, "xl/sharedStrings.xml", data)


def _shared_strings(n_bytes: int) -> bytes:
    item = b"<si><t>" + b"A" * 1000 + b"</t></si>"
    count = n_bytes // len(item) + 1
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/'
        b'spreadsheetml/2006/main" count="%d" uniqueCount="%d">'
        % (count, count)
        + item * count
        + b"</sst>"
    )


def test_xlsx_shared_strings_bomb_is_refused_before_opening(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "bomb.xlsx", [["email"], ["a@example.org"]])
    _with_shared_strings(path, _shared_strings(4 << 20))
    assert path.stat().st_size < 200_000
    with pytest.raises(
        ImportFileError,
        match=r"bomb\.xlsx: the workbook part "
        r"xl/sharedStrings\.xml expands \d+ times",
    ):
        open_table(path)


def test_xlsx_part_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = _workbook(tmp_path / "big.xlsx", [["email"], ["a@example.org"]])
    _with_shared_strings(path, _shared_strings(65 << 20))
    with pytest.raises(
        ImportFileError,
        match=r"big\.xlsx: the workbook part "
        r"xl/sharedStrings\.xml expands to 65\.\d MB, more than the 64\.0 MB",
    ):
        open_table(path)


SHEET_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.'
    b'openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/>'
    b"<sheetData>"
)


def _inline(ref: str, value: str) -> bytes:
    return f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>'.encode()


def test_xlsx_declared_dimensions_are_not_trusted(tmp_path: Path) -> None:
    # The last row is the sheet's last (1,048,576) and reaches its last column (XFD): padded to
    # the declared size, the rows between would be 17 billion empty cells.
    sheet = (
        SHEET_HEAD
        + b'<row r="1">'
        + _inline("A1", "email")
        + _inline("B1", "name")
        + b'</row><row r="2">'
        + _inline("A2", "kim@example.org")
        + _inline("B2", "Kim")
        + b'</row><row r="1048576"><c r="XFD1048576"/></row></sheetData></worksheet>'
    )
    path = _replace_part(
        _workbook(tmp_path / "dim.xlsx", [["x"]]), "xl/worksheets/sheet1.xml", sheet
    )
    assert path.stat().st_size < 10_000
    with open_table(path) as table:
        assert table.headers == ["email", "name"]
        assert [(r.line, r.cells) for r in table.rows()] == [(2, ["kim@example.org", "Kim"])]


def test_xlsx_value_beyond_the_column_limit_names_file_row_and_column(tmp_path: Path) -> None:
    sheet = (
        SHEET_HEAD
        + b'<row r="1">'
        + _inline("A1", "email")
        + b'</row><row r="2">'
        + _inline("A2", "kim@example.org")
        + _inline("XFD2", "far away")
        + b"</row></sheetData></worksheet>"
    )
    path = _replace_part(
        _workbook(tmp_path / "wide.xlsx", [["x"]]), "xl/worksheets/sheet1.xml", sheet
    )
    with (
        open_table(path) as table,
        pytest.raises(
            ImportFileError,
            match=r"wide\.xlsx:2: a value in column XFD \(column 16384\); "
            r"at most 1000 columns",
        ),
    ):
        list(table.rows())


def test_xlsx_total_cells_are_capped(tmp_path: Path) -> None:
    # Every row reaches column XFD with an empty cell: 16,384 cells a row once padded.
    rows = b"".join(
        b'<row r="%d"><c r="A%d" t="inlineStr"><is><t>a%d@example.org</t></is></c>'
        b'<c r="XFD%d"/></row>' % (n, n, n, n)
        for n in range(2, 1000)
    )
    sheet = (
        SHEET_HEAD
        + b'<row r="1">'
        + _inline("A1", "email")
        + b"</row>"
        + rows
        + b"</sheetData></worksheet>"
    )
    path = _replace_part(
        _workbook(tmp_path / "cells.xlsx", [["x"]]), "xl/worksheets/sheet1.xml", sheet
    )
    with (
        open_table(path) as table,
        pytest.raises(
            ImportFileError, match=r"cells\.xlsx:\d+: more than 10,000,000 cells in the sheet"
        ),
    ):
        list(table.rows())


def test_csv_value_beyond_the_column_limit(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("email,name\nkim@example.org,Kim" + "," * 1500 + "x\n", encoding="utf-8")
    with (
        open_table(path) as table,
        pytest.raises(ImportFileError, match=r"wide\.csv:2: a value in column 1502; at most 1000"),
    ):
        list(table.rows())


@pytest.mark.parametrize(
    "front",
    [
        'title: Laughs\na: &a ["lol", "lol", "lol"]\nb: [*a, *a, *a]\n',
        "title: Laughs\nsummary: *nothing\n",
        "title: &t Laughs\n",
    ],
)
def test_yaml_anchors_and_aliases_are_refused(tmp_path: Path, front: str) -> None:
    path = tmp_path / "laughs.md"
    path.write_text(f"---\n{front}---\nBody.\n", encoding="utf-8")
    line = next(i for i, x in enumerate(front.splitlines(), start=2) if "&" in x or "*" in x)
    with pytest.raises(
        ReleaseError,
        match=rf"laughs\.md:{line}: YAML anchors and aliases "
        r"\([&*]\w+\) are not allowed",
    ):
        load_release(path)


# --- header injection ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "base_url",
        "unsubscribe_mailto",
        "from_name",
        "reply_to",
        "organisation_name",
        "from_address",
    ],
)
def test_settings_with_a_line_break_are_refused(tmp_path: Path, key: str) -> None:
    good = {
        "base_url": "https://example.org",
        "unsubscribe_mailto": "u@example.org",
        "from_name": "Press",
        "reply_to": "r@example.org",
        "organisation_name": "Org",
        "from_address": "press@example.org",
    }[key]
    config = tmp_path / "mailer.toml"
    lines = [f'{k} = "{v}"' for k, v in CONFIG_EXTRA.items() if k != key]
    lines.append(f'{key} = "{good}\\r\\nBcc: victim@example.net"')
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(
        ConfigError,
        match=rf"mailer\.toml: {key}: must be one line without "
        r"control characters; found '\\r'",
    ):
        load_settings(config, env={})
    env_var = f"MAILER_{key.upper()}"
    (tmp_path / "ok").mkdir()
    valid = write_config(tmp_path / "ok", {})
    with pytest.raises(ConfigError, match=rf"environment variable {env_var}: must be one line"):
        load_settings(valid, env={env_var: good + "\nBcc: v@example.net"})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("reply_to", "a@example.org, victim@example.net"),
        ("unsubscribe_mailto", "u@example.org?bcc=victim@example.net"),
        ("base_url", "https://example.org/> <mailto:x@example.net"),
    ],
)
def test_settings_that_would_break_a_header_structure(tmp_path: Path, key: str, value: str) -> None:
    valid = write_config(tmp_path, {})
    # The error names the variable that set the value, not the file, which does not hold it.
    with pytest.raises(ConfigError, match=rf"environment variable MAILER_{key.upper()}: expected"):
        load_settings(valid, env={f"MAILER_{key.upper()}": value})


def test_list_names_with_line_breaks_are_refused(session: Session) -> None:
    with pytest.raises(
        InvalidInputError,
        match=r"list name 'Press\\r\\nBcc: x@y': must be one "
        r"line without control characters",
    ):
        create_list(session, "press", "Press\r\nBcc: x@y")
    create_list(session, "press", "Press")
    with pytest.raises(InvalidInputError, match="must be one line"):
        edit_list(session, "press", name="Press\nBcc: x@y")
    assert edit_list(session, "press", name="Press room").name == "Press room"


@pytest.mark.parametrize("brk", ["\r", "\n", "\r\n", "\x0b", "\x0c", "\x85", "\u2028", "\u2029"])
def test_header_folding_refuses_any_line_break(brk: str) -> None:
    for value in (f"Press{brk}Bcc: victim@example.net", f"보도{brk}Bcc: v@example.net"):
        with pytest.raises(HeaderValueError, match="holds a line break"):
            fold_header("Subject", value)
    sender = Sender(
        "press@example.org", "Press", "", f"Press{brk}Bcc: v@example.net", "press", "example.org"
    )
    with pytest.raises(HeaderValueError):
        list_id_header(sender)


def test_to_header_shows_a_line_break_in_a_name_as_a_space() -> None:
    header = to_header("Kim\r\nBcc: victim@example.net", "kim@example.org")
    assert header.count(b"\n") == 1 and header.endswith(b"\n")
    assert b"Bcc" not in header.split(b"\n")[0][:5]


def test_folding_still_folds() -> None:
    folded = fold_header("Subject", "word " * 40)
    assert folded.count(b"\n ") >= 2 and all(len(x) <= 78 for x in folded.split(b"\n"))
    # A long Korean name is encoded words already folded by email.header: that fold is kept.
    name = "한울 커뮤니티 센터 보도자료 담당 " * 3
    for header in (
        to_header(name, "kim@example.org"),
        fold_header("From", _address_header(name, "press@example.org", "From")),
        list_id_header(Sender("p@example.org", "", "", name, "press", "example.org")),
    ):
        lines = header.split(b"\n")
        assert len(lines) > 2 and all(x.startswith(b" ") for x in lines[1:-1]), header


def test_a_bare_fold_in_a_value_is_refused_too() -> None:
    with pytest.raises(HeaderValueError):
        fold_header("Subject", "Press\n Bcc: victim@example.net")
    with pytest.raises(HeaderValueError):
        fold_header("Subject", "Press\n \n")


# --- CSV cells --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+2@x", "'=1+2@x"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@mention", "'@mention"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=x", "''=x"),
        ("+1 215-555-0101", "+1 215-555-0101"),
        ("-12.50", "-12.50"),
        ("(02) 123-4567", "(02) 123-4567"),
        ("-", "'-"),
        ("+", "'+"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_csv_guard(value: str, written: str) -> None:
    assert neutralise(value) == written
    assert restore(written) == value


@given(st.text())
def test_csv_guard_round_trips_and_never_leaves_a_formula(value: str) -> None:
    written = neutralise(value)
    assert restore(written) == value
    if written[:1] in ("=", "@", "\t", "\r"):
        raise AssertionError(written)
    if written[:1] in ("+", "-"):
        assert set(written) <= set("0123456789 ()+-.")


def test_campaign_report_guards_every_cell(session: Session, tmp_path: Path) -> None:
    campaign = campaign_with(
        session,
        [
            ("=1+2@example.org", "250 ok"),
            ("@a@example.org", '-ERR =HYPERLINK("x")'),
            ("kim@example.org", "+1 215-555-0101"),
        ],
    )
    out = tmp_path / "report.csv"
    assert write_report(session, campaign.id, out) == 3
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    cells = [c for row in rows for c in row]
    assert "'=1+2@example.org" in cells and "'@a@example.org" in cells
    assert '\'-ERR =HYPERLINK("x")' in cells and "+1 215-555-0101" in cells
    for c in cells:
        assert not c.startswith(("=", "@", "\t", "\r", "+", "-")) or c == "+1 215-555-0101"


# --- terminal escapes ---------------------------------------------------------------------------


def test_campaigns_show_escapes_a_servers_reply(session: Session, cli: Cli) -> None:
    campaign_with(session, [("kim@example.org", "550 \x1b]0;owned\x07 no such user\x1b[2J")])
    session.commit()
    out = cli("campaigns", "show", "1").output
    assert "no such user" in out and "\x1b" not in out and "\\x1b]0;owned" in out


EVIL = "\x1b]0;owned\x07Kim\x1b[2J\u202e"


def test_cli_escapes_control_characters_in_stored_data(session: Session, cli: Cli) -> None:
    create_list(session, "press", "Press")
    add_contact(session, "kim@example.org", "press", name=EVIL, organisation="Org\x1b[31m")
    session.commit()
    cli("suppressions", "add", "park@example.org", "--source", "form\x1b[2J")
    for args in (
        ["contacts", "ls"],
        ["contacts", "show", "kim@example.org"],
        ["contacts", "ls", "--json"],
        ["contacts", "show", "kim@example.org", "--json"],
        ["suppressions", "ls"],
        ["suppressions", "ls", "--json"],
    ):
        out = cli(*args).output
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, args
    shown = cli("contacts", "show", "kim@example.org").output
    assert "\\x1b]0;owned\\x07Kim\\x1b[2J\\u202e" in shown


# --- erase leaves the address nowhere but its suppression -----------------------------------------


def test_erase_scrubs_bounces_events_and_deliveries(session: Session) -> None:
    key = "kim.erased@example.org"
    ml = create_list(session, "press", "Press")
    contact, _ = add_contact(session, "Kim.Erased@Example.org", "press", name="Kim")
    release = Release(slug="r", title="R", default_language="en", content_hash="0" * 64)
    session.add(release)
    session.flush()
    campaign = Campaign(release_id=release.id, audience_key="press", status=CampaignStatus("done"))
    session.add(campaign)
    session.flush()
    delivery = Delivery(
        campaign_id=campaign.id,
        contact_id=contact.id,
        list_id=ml.id,
        email=key,
        language="en",
        status=DeliveryStatus("failed"),
        message_id="<m@x>",
        smtp_reply=f"550 5.1.1 <{key}>: user unknown",
    )
    session.add(delivery)
    session.flush()
    # One report about two recipients: each bounce row's source id names its recipient.
    session.add(
        Bounce(
            source_message_id=f"<report@mx.example.net> {key}",
            email=key,
            kind="hard",
            diagnostic=f"{key} unknown",
            delivery_id=delivery.id,
        )
    )
    session.add(
        Bounce(
            source_message_id="<other@mx.example.net> KIM.ERASED@example.org",
            email=None,
            kind="unknown",
        )
    )
    audit.record(
        session,
        "suppress",
        reason="hard-bounce",
        source=f"bounce 5.1.1 <report@mx.example.net> {key}",
    )
    audit.record(session, "bounce", detail={"recipients": [key, "other@example.org"]})
    session.commit()

    erase(session, key)
    session.commit()

    leftovers = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)).mappings():
            for column, value in row.items():
                kept = table.name == "suppression" and column in ("email", "mailbox")
                if key in str(value).lower() and not kept:
                    leftovers.append((table.name, column, value))
    assert leftovers == []
    suppressed = session.execute(text("SELECT email FROM suppression")).scalars().all()
    assert suppressed == [key]
    other = session.scalars(select(Bounce).where(Bounce.kind == "unknown")).one()
    assert other.source_message_id.startswith("<other@mx.example.net> erased-")


# --- one reader for every import ---------------------------------------------------------------


def test_suppressions_import_reads_files_as_contacts_import_does(
    session: Session, tmp_path: Path
) -> None:
    create_list(session, "press", "Press")
    wide = tmp_path / "wide.csv"
    wide.write_text(
        "Courriel,Nom\nkim@example.org,Kim\npark@example.org,Park,extra\n", encoding="utf-8"
    )
    contacts = import_contacts(session, wide, "press", mapping={"email": "Courriel"}, dry_run=True)
    sups = import_suppressions(session, wide, mapping={"email": "Courriel"}, dry_run=True)
    assert sups.counts["added"] == 1 and sups.counts["invalid"] == 1
    assert [(e["line"], e["reason"]) for e in sups.errors] == [
        (r.line, r.reason) for r in contacts.rejected
    ]
    # A file `contacts export` wrote: its formula guard is taken off, as the importer does.
    exported = tmp_path / "export.csv"
    exported.write_text(
        "email,name,mailer:subscriptions\n'-dash@example.org,Dash,press:subscribed\n",
        encoding="utf-8",
    )
    assert import_suppressions(session, exported, dry_run=True).counts["added"] == 1
    # The same limits and messages for a hostile workbook.
    bomb = _with_shared_strings(
        _workbook(tmp_path / "bomb.xlsx", [["email"], ["a@x.org"]]), _shared_strings(4 << 20)
    )
    with pytest.raises(ImportFileError) as from_contacts:
        import_contacts(session, bomb, "press", dry_run=True)
    with pytest.raises(ImportFileError) as from_suppressions:
        import_suppressions(session, bomb, dry_run=True)
    assert str(from_contacts.value) == str(from_suppressions.value)


def test_suppressions_import_cli_map_option(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "unsubs.csv"
    path.write_text("Name,Courriel\nKim,kim@example.org\n", encoding="utf-8")
    out = cli("suppressions", "import", str(path), "--map", "email=Courriel").output
    assert "1 address(es) suppressed" in out


def test_lists_cli_refuses_a_line_break_and_edits(cli: Cli) -> None:
    bad = cli("lists", "create", "press", "--name", "Press\r\nBcc: victim@example.net", expect=1)
    assert "must be one line without control characters" in bad.output
    assert "Traceback" not in bad.output
    cli("lists", "create", "press", "--name", "Press")
    assert "Press room" in cli("lists", "edit", "press", "--name", "Press room").output
    bad = cli("lists", "edit", "press", "--name", "Room\nBcc: x@example.net", expect=1)
    assert "must be one line" in bad.output
    assert "Press room" in cli("lists", "show", "press").output
