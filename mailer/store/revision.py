"""The schema revision this code expects, importable without SQLAlchemy (mailer/store/quick.py
reads a SQLite file with the standard library and must know whether it is at this revision)."""

from __future__ import annotations

# The newest migration in mailer/store/migrations/versions (tests/test_migrations.py checks that
# it is alembic's head): bump it with every new migration.
HEAD_REVISION = "0016"
