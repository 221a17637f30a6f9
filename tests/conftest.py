"""Fixtures: every database test runs on SQLite, and on PostgreSQL when MAILER_TEST_DATABASE_URL
is set. Each test gets empty tables of its own.

Speed (the whole suite runs under pytest-xdist, `pytest -n auto`):
- SQLite: the schema is built once per test process into a template file, and each test gets a
  copy of that file (a copy is ten times cheaper than create_all + alembic's stamp).
- PostgreSQL: each xdist worker has a database of its own, named after MAILER_TEST_DATABASE_URL's
  database plus the worker id (test_gw0, test_gw1, ...; made anew at the start of each run),
  emptied before each test with DELETE (on these small tables ten times faster than TRUNCATE,
  which makes new files for every table). Workers never share a database.
- A test marked `serial` runs while no other test runs in any worker (a file lock), for the few
  tests that cannot share the machine.

The fixtures and hooks live in tests/support/ and are registered here, once, for every test
module: test modules never import fixtures, nor anything from one another.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.support.database",  # sqlite_template, db_url, settings, session
    "tests.support.cli",  # cli
    "tests.support.sending",  # smtp, release
    "tests.support.forgery",  # sent, db
    "tests.support.web",  # web, lists
    "tests.support.console",  # console
    "tests.support.console_browser",  # chromium, console_live
    "tests.support.imap",  # imap_server
    "tests.support.files",  # umask_022
    "tests.support.serial",  # the `serial` marker's lock (pytest_runtest_protocol)
    "tests.support.summary",  # one line per engine and per skip reason (pytest_terminal_summary)
]

ENGINES = ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine_name" in metafunc.fixturenames:
        metafunc.parametrize("engine_name", ENGINES)
