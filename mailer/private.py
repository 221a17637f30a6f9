"""Files that hold secrets (mailer.toml, the SQLite database, a DKIM key) or people's addresses
(an export, a campaign report, an import's errors file) are created readable by their owner
only, whatever the umask: mode 0600 from the moment they exist, never chmod-ed after a window in
which another user could have opened them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

PRIVATE_MODE = 0o600


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 and write `data`; FileExistsError if it exists already."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        # The mode given to open() passes through the umask, which can only remove bits; set it
        # again in case an unusual umask removed the owner's own.
        os.fchmod(fd, PRIVATE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    finally:
        if fd != -1:
            os.close(fd)


def create_private(path: Path) -> bool:
    """Create an empty file with mode 0600 unless it exists; True when it was created.

    SQLite accepts an empty file as a new database and creates its -wal and -shm files with
    the database file's own mode, so this keeps all three private."""
    try:
        write_private(path, b"")
    except FileExistsError:
        return False
    return True


def open_private(path: Path, *, encoding: str = "utf-8-sig") -> IO[str]:
    """`path` opened for writing text (created or emptied) with mode 0600, for CSV files.

    A file that exists already is made 0600 too: it is about to hold addresses, and a umask of
    022 had left the last one readable by every user of the machine."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)
        return os.fdopen(fd, "w", encoding=encoding, newline="")
    except BaseException:
        os.close(fd)
        raise
