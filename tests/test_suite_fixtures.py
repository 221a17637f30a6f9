"""The test suite's own machinery (tests/conftest.py, tests/support/): the SQLite template copy,
one PostgreSQL database per xdist worker, the `serial` marker, the skip summary grouped by reason,
and the rule that no module imports a test module."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.contacts.lists import create_list
from mailer.store.db import make_engine
from mailer.store.models import Base, MailingList
from mailer.store.schema import HEAD_REVISION, current_revision
from tests.support.database import truncate_all, worker_pg_url

ROOT = Path(__file__).resolve().parents[1]


def test_each_test_starts_on_an_empty_database_at_head(db_url: str) -> None:
    # The SQLite file is a copy of the template: already at head, before mailer ever opens it.
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == HEAD_REVISION
        with engine.connect() as conn:
            for table in Base.metadata.sorted_tables:
                rows = conn.execute(select(func.count()).select_from(table)).scalar()
                # The installation's random part is made with the schema (one row, never more);
                # where tables are emptied between tests (PostgreSQL) it is made again on use.
                assert rows == 0 or (table.name == "installation" and rows == 1), table.name
    finally:
        engine.dispose()


def test_worker_database_is_named_after_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    base = "postgresql+psycopg://postgres:pw@127.0.0.1:5432/test_c"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert worker_pg_url(base) == "postgresql+psycopg://postgres:pw@127.0.0.1:5432/test_c_gw3"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert worker_pg_url(base).endswith("/test_c_gw0")


def test_truncate_all_empties_the_tables_and_restarts_ids(
    engine_name: str, settings: Settings, session: Session
) -> None:
    if engine_name == "sqlite":
        pytest.skip("truncate_all is PostgreSQL's reset (SQLite tests get a fresh copy)")
    first = create_list(session, "press", "Press", "")
    session.commit()
    create_list(session, "news", "News", "")
    session.commit()
    assert first.id is not None
    session.close()
    truncate_all(settings.database_url)
    assert session.scalar(select(func.count()).select_from(MailingList)) == 0
    again = create_list(session, "press", "Press", "")
    session.commit()
    assert again.id == 1


INNER_CONFTEST = """
pytest_plugins = ["tests.support.serial", "tests.support.summary"]
"""

INNER_HEAD = '''
import time
from pathlib import Path

import pytest

SHARED = Path(__file__).parent / "shared"


def overlapped(mine: str, other: str) -> bool:
    """Run until `other` has started too (five seconds at most): was it running meanwhile?

    Without the serial lock the two tests, one per worker, wait for each other and overlap;
    with it, the first one waits in vain and the second one starts after it.
    """
    (SHARED / f"running-{mine}").write_text("")
    (SHARED / f"started-{mine}").write_text("")
    try:
        for _ in range(100):
            if (SHARED / f"started-{other}").exists():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        return (SHARED / f"running-{other}").exists()
    finally:
        (SHARED / f"running-{mine}").unlink()
'''

INNER_SERIAL = """
@pytest.mark.serial
def test_alone():
    assert not overlapped("serial", "other")
"""

INNER_OTHERS = """
def test_other():
    assert not overlapped("other", "serial")


@pytest.mark.parametrize("n", range(3))
def test_needs_a(n):
    pytest.skip("needs part A")


@pytest.mark.parametrize("n", range(2))
def test_needs_b(n):
    pytest.skip("needs part B")
"""


def test_serial_runs_alone_and_skips_are_grouped(tmp_path: Path) -> None:
    # Two workers, one file each (--dist loadfile): test_alone and test_other start together
    # unless the lock holds one of them back.
    (tmp_path / "conftest.py").write_text(INNER_CONFTEST)
    (tmp_path / "test_a.py").write_text(INNER_HEAD + INNER_SERIAL)
    (tmp_path / "test_b.py").write_text(INNER_HEAD + INNER_OTHERS)
    (tmp_path / "shared").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    serial: alone\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "2",
            "--dist",
            "loadfile",
            "-q",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "2 passed, 5 skipped" in proc.stdout
    assert "skipped 3: needs part A" in proc.stdout
    assert "skipped 2: needs part B" in proc.stdout
    assert "SKIPPED [" not in proc.stdout


# `from tests.test_x import ...`, `import tests.test_x`, `from tests import test_x`.
TEST_MODULE_IMPORT = re.compile(
    r"^\s*(from\s+tests\.test_\w*\s+import|import\s+tests\.test_|"
    r"from\s+tests\s+import\s+(\([^)]*)?\btest_)",
    re.MULTILINE,
)


def test_no_module_imports_a_test_module() -> None:
    """Shared helpers and fixtures live in tests/support/ (fixtures registered in conftest.py):
    a test module imported by another would run its tests' module code twice and hide what is
    shared. Test modules, tests/support/ and bench/ never import a test module."""
    offenders = [
        f"{path.relative_to(ROOT)}: {found.group(0).strip()}"
        for folder in ("tests", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for found in TEST_MODULE_IMPORT.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_check_for_test_module_imports_finds_one() -> None:
    """The pattern of the test above matches each form of import it must refuse."""
    for line in (
        "from tests.test_send import populate",
        "import tests.test_send",
        "    from tests.test_web import Web",
        "from tests import test_bounce_forgery",
    ):
        assert TEST_MODULE_IMPORT.search(line), line
    assert not TEST_MODULE_IMPORT.search("from tests.support.sending import populate")
