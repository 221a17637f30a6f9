"""Answers read straight from a SQLite database with the standard library, for the commands
that must start fast.

`mailer lists ls` is what a person types to see where they are; importing SQLAlchemy alone
costs more CPU on a small machine than the whole command may take (bench/bench_startup.py). On
a SQLite database already at this code's schema revision, its rows come from here, with the
same SQL the ORM would make; anything else (PostgreSQL, a missing file, an older schema that
must be upgraded first) answers None and the command takes the usual way.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from mailer.store.revision import HEAD_REVISION


@dataclass(frozen=True)
class ListRow:
    slug: str
    name: str
    public: bool
    press: bool
    archive: bool
    subscribed: int
    pending: int
    unsubscribed: int


def sqlite_path(database_url: str) -> Path | None:
    """The file of a `sqlite:///PATH` URL (the form mailer.config writes), else None."""
    prefix = "sqlite:///"
    if not database_url.startswith(prefix) or "?" in database_url:
        return None
    path = Path(database_url[len(prefix) :])
    return path if path.is_file() else None


def list_rows(database_url: str) -> list[ListRow] | None:
    """Every list with its subscriptions counted by status, by slug; None when this module
    cannot answer (see the module's docstring)."""
    path = sqlite_path(database_url)
    if path is None:
        return None
    try:
        # Read-only: this path never creates, upgrades or locks anything for writing.
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            revision = db.execute("SELECT version_num FROM alembic_version").fetchall()
            if revision != [(HEAD_REVISION,)]:
                return None
            rows = db.execute(
                "SELECT l.slug, l.name, l.public, l.press, l.archive,"
                " COUNT(CASE WHEN s.status = 'subscribed' THEN 1 END),"
                " COUNT(CASE WHEN s.status = 'pending' THEN 1 END),"
                " COUNT(CASE WHEN s.status = 'unsubscribed' THEN 1 END)"
                " FROM mailing_list AS l LEFT JOIN subscription AS s ON s.list_id = l.id"
                " GROUP BY l.id ORDER BY l.slug"
            ).fetchall()
    except sqlite3.Error:
        return None  # locked, damaged, not mailer's: the usual way says what is wrong
    return [
        ListRow(slug, name, bool(public), bool(press), bool(archive), sub, pend, unsub)
        for slug, name, public, press, archive, sub, pend, unsub in rows
    ]
