"""Keeping press-kit files: media_dir/SHA256 on disk, a media_file row each, release_media links.

Files are named by their SHA-256, so a photo named by two releases, or twice by one, is stored
once; each is written whole or not at all (a temporary file renamed into place) with mode 0644,
since it is public once its release is. Rows are inserted "if absent", so two `mailer send` at
once store a file once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.errors import InvalidInputError, MailerError
from mailer.media.refs import MediaFileInfo, files_of, from_json, with_media
from mailer.media.scan import Prepared, Scan, scan_release
from mailer.releases.source import Release, release_from_sources
from mailer.store.models import MediaFile, ReleaseMedia
from mailer.store.models import Release as StoredRelease

PUBLIC_MODE = 0o644


def path_of(settings: Settings, sha256: str) -> Path:
    """Where a stored file is kept (the name is its SHA-256, never anything a user wrote)."""
    return Path(settings.media_dir) / sha256


def save(session: Session, settings: Settings, scan: Scan) -> None:
    """Write every file the scan prepared (originals before their copies) and its row."""
    if not scan.files:
        return
    folder = Path(settings.media_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MailerError(f"media_dir {folder}: cannot create it: {err.strerror}") from None
    ordered = sorted(scan.files.values(), key=lambda p: p.original_sha256 is not None)
    for prepared in ordered:
        _write(folder, prepared)
    now = clock.now()
    _insert_absent(
        session,
        MediaFile.__table__,  # type: ignore[arg-type]
        [_row(p, now) for p in ordered],
        ["sha256"],
    )


def _row(prepared: Prepared, now: Any) -> dict[str, Any]:
    info = prepared.info
    return {
        "sha256": info.sha256,
        "name": info.name,
        "content_type": info.content_type,
        "size": info.size,
        "width": info.width,
        "height": info.height,
        "original_sha256": prepared.original_sha256,
        "scale": info.scale,
        "created_at": now,
    }


def _write(folder: Path, prepared: Prepared) -> None:
    """media_dir/SHA256, unless it is there already (same name, same content)."""
    info = prepared.info
    target = folder / info.sha256
    try:
        if target.stat().st_size == info.size:
            return
    except FileNotFoundError:
        pass
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".incoming-")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(prepared):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != info.sha256:
            where = prepared.source or info.name
            raise InvalidInputError(f"{where}: changed while it was being stored; run it again")
        # Public content, whatever the umask (mkstemp makes it 0600).
        os.chmod(temp, PUBLIC_MODE)
        os.replace(temp, target)
    except OSError as err:
        raise MailerError(f"media_dir {folder}: cannot write {info.sha256}: {err}") from None
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _chunks(prepared: Prepared) -> Iterable[bytes]:
    if prepared.data is not None:
        yield prepared.data
        return
    assert prepared.source is not None
    with prepared.source.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


def _insert_absent(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]], keys: list[str]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, on either engine."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: PLC0415

        session.execute(
            pg_insert(table).values(list(rows)).on_conflict_do_nothing(index_elements=keys)
        )
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert  # noqa: PLC0415

        session.execute(
            sqlite_insert(table).values(list(rows)).on_conflict_do_nothing(index_elements=keys)
        )


def link(session: Session, release: Release) -> None:
    """Record that `release` uses its files (originals and copies): /media/ serves a file only
    while one of the releases using it is public (mailer.media.access)."""
    rows = [{"release_slug": release.slug, "sha256": f.sha256} for f in files_of(release)]
    _insert_absent(
        session,
        ReleaseMedia.__table__,  # type: ignore[arg-type]
        rows,
        ["release_slug", "sha256"],
    )


def prepare(session: Session, settings: Settings, release: Release) -> tuple[Release, Scan]:
    """Scan the release's local files, store those that can be used, and return the release
    with them attached (its content hash covers them) and the scan (its problems are
    `release check` findings)."""
    scan = scan_release(release, settings)
    save(session, settings, scan)
    return with_media(release, scan.refs), scan


def stored_release(row: StoredRelease) -> Release:
    """A stored release as mailer.releases.source reads it, with the files planned with it."""
    release = release_from_sources(
        row.slug,
        {lang: v["source"] for lang, v in row.variants.items()},
        row.default_language,
    )
    return with_media(release, from_json(row.variants))


def read(settings: Settings, info: MediaFileInfo) -> bytes:
    """A stored file's bytes (an attachment), checked against its SHA-256."""
    path = path_of(settings, info.sha256)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MailerError(
            f"media_dir: {info.name} ({info.sha256[:12]}) is missing from {path.parent}: "
            f"{err.strerror}; check the release again to store it"
        ) from None
    if hashlib.sha256(data).hexdigest() != info.sha256:
        raise MailerError(f"media_dir: {path} does not hold {info.name} any more (it changed)")
    return data
