"""Release drafts: releases written in the console, kept in the database with every version.

A version holds each language's whole file text (exactly what NAME.LANG.md holds) and its
press-kit files (relative path -> SHA-256 in the media store). `materialise` writes the current
version as a release folder under `<folder of mailer.toml>/drafts/<id>/`, so every library
function that takes a release path (check, render, test send, plan, send) is used unchanged;
`export` writes the same folder anywhere, and `import_release` reads one back: the console and
`mailer release export / import` share one format, and a round trip gives the same bytes.

Saves are optimistic: each names the version it was based on, and the draft's number moves
from that one to the next in one UPDATE, so of two people saving at once the second is told,
never silently overwritten.

Longer than 400 lines: versions, folders and uploads are one format; parting them would spread
the rules of a release folder (names, paths, languages) over several modules.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.errors import InvalidInputError, MailerError, NotFoundError, ReleaseError
from mailer.media import store as media_store
from mailer.media.refs import MediaFileInfo, ref_path, safe_name, size_text
from mailer.media.scan import Prepared, Scan
from mailer.media.sniff import sniff
from mailer.releases import draft_text
from mailer.releases.languages import normalise as normalise_language
from mailer.releases.source import Release, load_release, release_from_sources
from mailer.store import audit
from mailer.store.models import Campaign, ReleaseDraft, ReleaseVersion
from mailer.store.models import Release as StoredRelease

# A draft's NAME: what a release file is named by, kept to what every file system and URL takes
# (no dots: NAME.ko.md must not read as another NAME).
SLUG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
DRAFTS_FOLDER = "drafts"
FOLDER_MODE = 0o700
MAX_SOURCE_CHARS = 1_000_000  # one language's file: far beyond any release (2,000 words ~ 15 KB)
MAX_FILES = 200


class StaleVersionError(MailerError):
    """A save based on a version that is no longer the newest."""


@dataclass(frozen=True)
class DraftSummary:
    """A draft as the list shows it."""

    draft: ReleaseDraft
    title: str
    languages: tuple[str, ...]
    author: str
    campaigns: tuple[Campaign, ...]


@dataclass(frozen=True)
class DiffPart:
    """What changed in one part (a language's front matter or body, the files)."""

    label: str
    lines: tuple[str, ...]


# --- names and paths ---------------------------------------------------------------------------


def check_slug(slug: str) -> str:
    value = slug.strip()
    if not SLUG_RE.match(value):
        raise InvalidInputError(
            f"release name {slug[:120]!r}: use letters, digits, - and _ (at most 100, no dots "
            "or spaces), e.g. election-night"
        )
    return value


def check_relative(path: str) -> str:
    """A press-kit file's place in the release folder: relative, inside it, no hidden parts."""
    if "\x00" in path or "\\" in path or not path or len(path) > 300:
        raise InvalidInputError(f"file {path[:120]!r}: not a file name inside the release folder")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("", ".", "..") or part[0] == "." for part in pure.parts):
        raise InvalidInputError(
            f"file {path[:120]!r}: must be inside the release folder (no /, .. or hidden names)"
        )
    return str(pure)


def file_name(slug: str, language: str, plain_language: str | None) -> str:
    return f"{slug}.md" if language == plain_language else f"{slug}.{language}.md"


def drafts_folder(settings: Settings) -> Path:
    return Path(settings.base_dir) / DRAFTS_FOLDER


# --- reading -----------------------------------------------------------------------------------


def get_draft(session: Session, draft_id: int) -> ReleaseDraft:
    draft = session.get(ReleaseDraft, draft_id)
    if draft is None:
        raise NotFoundError(f"no release draft {draft_id} (see `mailer release drafts`)")
    return draft


def get_version(session: Session, draft_id: int, number: int | None = None) -> ReleaseVersion:
    """A version of a draft (its current one by default)."""
    draft = get_draft(session, draft_id)
    wanted = draft.current_version if number is None else number
    version = session.scalar(
        select(ReleaseVersion).where(
            ReleaseVersion.draft_id == draft_id, ReleaseVersion.number == wanted
        )
    )
    if version is None:
        raise NotFoundError(f"release draft {draft.slug!r} has no version {wanted}")
    return version


def versions(session: Session, draft_id: int) -> list[ReleaseVersion]:
    """Every version of a draft, newest first."""
    return list(
        session.scalars(
            select(ReleaseVersion)
            .where(ReleaseVersion.draft_id == draft_id)
            .order_by(ReleaseVersion.number.desc())
        )
    )


def default_language(sources: Mapping[str, str], plain: str | None, settings: Settings) -> str:
    """The version's default language, as load_release picks it from its files."""
    if plain is not None and plain in sources:
        return plain
    if settings.default_language in sources:
        return settings.default_language
    return sorted(sources)[0]


def release_of(version: ReleaseVersion, slug: str, settings: Settings) -> Release:
    """The version as a Release (in memory: what the preview renders)."""
    sources = dict(version.sources)
    return release_from_sources(
        slug, sources, default_language(sources, version.plain_language, settings)
    )


def title_of(version: ReleaseVersion, settings: Settings) -> str:
    sources = dict(version.sources)
    if not sources:
        return ""
    lang = default_language(sources, version.plain_language, settings)
    return draft_text.form_values(sources[lang])["title"]


def list_drafts(session: Session, settings: Settings) -> list[DraftSummary]:
    """Every draft, last changed first, with the campaigns sent from it (by release slug)."""
    drafts = list(session.scalars(select(ReleaseDraft).order_by(ReleaseDraft.updated_at.desc())))
    if not drafts:
        return []
    current = {
        v.draft_id: v
        for v in session.scalars(
            select(ReleaseVersion).join(
                ReleaseDraft,
                (ReleaseDraft.id == ReleaseVersion.draft_id)
                & (ReleaseDraft.current_version == ReleaseVersion.number),
            )
        )
    }
    campaigns: dict[str, list[Campaign]] = {}
    for campaign, slug in session.execute(
        select(Campaign, StoredRelease.slug)
        .join(StoredRelease, StoredRelease.id == Campaign.release_id)
        .where(StoredRelease.slug.in_([d.slug for d in drafts]))
        .order_by(Campaign.created_at.desc())
    ):
        campaigns.setdefault(slug, []).append(campaign)
    out = []
    for draft in drafts:
        version = current.get(draft.id)
        out.append(
            DraftSummary(
                draft=draft,
                title=title_of(version, settings) if version else "",
                languages=tuple(sorted(version.sources)) if version else (),
                author=version.author if version else "",
                campaigns=tuple(campaigns.get(draft.slug, ())),
            )
        )
    return out


# --- writing -----------------------------------------------------------------------------------


def _checked_sources(
    slug: str, sources: Mapping[str, str], plain: str | None, settings: Settings
) -> dict[str, str]:
    """The sources, each language normalised and the whole read as `release check` reads it;
    errors name the file and line (NAME.LANG.md, as the folder will hold it)."""
    if not sources:
        raise InvalidInputError(f"release {slug!r}: it needs at least one language")
    out: dict[str, str] = {}
    for raw, text in sources.items():
        lang = normalise_language(raw)
        if not re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{1,8})*", lang):
            raise InvalidInputError(f"release {slug!r}: {raw[:40]!r} is not a language code")
        if len(text) > MAX_SOURCE_CHARS:
            raise InvalidInputError(
                f"{file_name(slug, lang, plain)}: {len(text):,} characters; at most "
                f"{MAX_SOURCE_CHARS:,}"
            )
        out[lang] = text
    try:
        release_from_sources(slug, out, default_language(out, plain, settings))
    except ReleaseError as err:
        raise ReleaseError(_with_file_names(str(err), slug, plain)) from None
    return out


def _with_file_names(message: str, slug: str, plain: str | None) -> str:
    """ "release 'x' <ko>:12: ..." as the file the line is in: "x.ko.md:12: ..."."""
    return re.sub(
        r"release '([^']*)' <([^>]+)>",
        lambda m: file_name(slug, m[2], plain),
        message,
    )


def create_draft(
    session: Session,
    settings: Settings,
    slug: str,
    sources: Mapping[str, str],
    *,
    author: str,
    files: Mapping[str, str] | None = None,
    plain_language: str | None = None,
) -> ReleaseDraft:
    """A new draft and its version 1; the name must be free."""
    slug = check_slug(slug)
    if session.scalar(select(ReleaseDraft.id).where(ReleaseDraft.slug == slug)) is not None:
        raise InvalidInputError(f"a release draft named {slug!r} exists already")
    checked = _checked_sources(slug, sources, plain_language, settings)
    now = clock.now()
    draft = ReleaseDraft(
        slug=slug, created_by=author, created_at=now, updated_at=now, current_version=1
    )
    session.add(draft)
    session.flush()
    session.add(
        ReleaseVersion(
            draft_id=draft.id,
            number=1,
            sources=checked,
            files=_checked_files(files or {}),
            plain_language=plain_language,
            author=author,
            created_at=now,
        )
    )
    audit.record(session, "release.draft_created", actor=author, draft=draft.id, slug=slug)
    session.flush()
    return draft


def _checked_files(files: Mapping[str, str]) -> dict[str, str]:
    if len(files) > MAX_FILES:
        raise InvalidInputError(f"a release may hold at most {MAX_FILES} press-kit files")
    out = {}
    for path, sha in files.items():
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise InvalidInputError(f"file {path[:120]!r}: not a stored file")
        out[check_relative(path)] = sha
    return out


def save_version(
    session: Session,
    settings: Settings,
    draft_id: int,
    sources: Mapping[str, str],
    *,
    based_on: int,
    author: str,
    files: Mapping[str, str] | None = None,
) -> ReleaseVersion:
    """A new version from `sources` (and `files`, default: the current version's), based on
    version `based_on`: refused when another save came first. Saving what the current version
    already holds makes no new version (it is returned)."""
    draft = get_draft(session, draft_id)
    current = get_version(session, draft_id)
    if based_on != draft.current_version:
        _stale(session, draft, based_on)
    checked = _checked_sources(draft.slug, sources, current.plain_language, settings)
    new_files = _checked_files(dict(current.files) if files is None else files)
    if checked == dict(current.sources) and new_files == dict(current.files):
        return current
    number = based_on + 1
    now = clock.now()
    # Compare and set in one statement: two saves based on the same version cannot both win.
    moved = session.execute(
        update(ReleaseDraft)
        .where(ReleaseDraft.id == draft_id, ReleaseDraft.current_version == based_on)
        .values(current_version=number, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        session.expire(draft)
        _stale(session, draft, based_on)
    version = ReleaseVersion(
        draft_id=draft_id,
        number=number,
        sources=checked,
        files=new_files,
        plain_language=current.plain_language if current.plain_language in checked else None,
        author=author,
        created_at=now,
    )
    session.add(version)
    audit.record(
        session,
        "release.draft_saved",
        actor=author,
        draft=draft_id,
        slug=draft.slug,
        version=number,
    )
    session.flush()
    session.expire(draft)
    return version


def _stale(session: Session, draft: ReleaseDraft, based_on: int) -> None:
    newest = get_version(session, draft.id)
    if based_on < 1:
        raise StaleVersionError(
            f"release {draft.slug!r}: the form did not say which version it was based on "
            f"(the newest is version {newest.number}); your changes were not saved. Copy them, "
            "open the release again and make them again"
        )
    raise StaleVersionError(
        f"release {draft.slug!r}: your changes are based on version {based_on}, but version "
        f"{newest.number} was saved since by {newest.author or 'someone'} at "
        f"{newest.created_at:%Y-%m-%d %H:%M} UTC; your changes were not saved. Copy them, open "
        "the newest version and make them again"
    )


# --- diff --------------------------------------------------------------------------------------


def diff(session: Session, draft_id: int, old: int, new: int) -> list[DiffPart]:
    """Unified diffs from version `old` to `new`: per language, its front matter and its body,
    then the press-kit files; parts without a change are left out."""
    draft = get_draft(session, draft_id)
    a, b = get_version(session, draft_id, old), get_version(session, draft_id, new)
    out: list[DiffPart] = []
    for lang in sorted(set(a.sources) | set(b.sources)):
        before = draft_text.split(a.sources.get(lang, ""))
        after = draft_text.split(b.sources.get(lang, ""))
        name = file_name(draft.slug, lang, b.plain_language or a.plain_language)
        for label, x, y in (
            ("front matter", before.opening + before.yaml_text, after.opening + after.yaml_text),
            ("body", before.body, after.body),
        ):
            lines = _unified(x, y, f"{name} ({label}) v{old}", f"{name} ({label}) v{new}")
            if lines:
                out.append(DiffPart(f"{name}: {label}", lines))
    files = _unified(
        "".join(f"{p} {s}\n" for p, s in sorted(a.files.items())),
        "".join(f"{p} {s}\n" for p, s in sorted(b.files.items())),
        f"files v{old}",
        f"files v{new}",
    )
    if files:
        out.append(DiffPart("files", files))
    return out


def _unified(a: str, b: str, name_a: str, name_b: str) -> tuple[str, ...]:
    return tuple(
        line.rstrip("\r\n")
        for line in difflib.unified_diff(
            a.splitlines(keepends=True), b.splitlines(keepends=True), name_a, name_b, n=2
        )
    )


# --- folders -----------------------------------------------------------------------------------


def export(
    session: Session,
    settings: Settings,
    draft_id: int,
    folder: Path,
    *,
    version: int | None = None,
) -> Path:
    """Write the version (the current one by default) as a release folder into `folder` and
    return the default language's file. Files of the release are replaced; another
    NAME*.md of the same release already there is an error (it would be read as a language)."""
    draft = get_draft(session, draft_id)
    chosen = get_version(session, draft_id, version)
    names = {lang: file_name(draft.slug, lang, chosen.plain_language) for lang in chosen.sources}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MailerError(f"{folder}: cannot create the folder: {err.strerror}") from None
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: not a folder")
    for other in folder.glob(f"{draft.slug}*.md"):
        if other.name not in names.values() and (
            other.name == f"{draft.slug}.md" or other.name.startswith(f"{draft.slug}.")
        ):
            raise InvalidInputError(
                f"{other}: another file of release {draft.slug!r} is in the way (it would be "
                "read as one of its languages); move it, or export into an empty folder"
            )
    for lang, text in chosen.sources.items():
        _write_file(folder, names[lang], text.encode("utf-8"))
    for rel, sha in sorted(chosen.files.items()):
        _write_file(folder, check_relative(rel), _stored_bytes(settings, sha, rel))
    lang = default_language(dict(chosen.sources), chosen.plain_language, settings)
    return folder / names[lang]


def _stored_bytes(settings: Settings, sha: str, rel: str) -> bytes:
    path = media_store.path_of(settings, sha)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MailerError(
            f"{rel}: the stored file {sha[:12]} is missing from media_dir ({err.strerror}); "
            "upload it again"
        ) from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise MailerError(f"{rel}: the stored file {path} changed since it was uploaded")
    return data


def _write_file(folder: Path, rel: str, data: bytes) -> None:
    """folder/rel, never through a symbolic link and never outside `folder`."""
    target = folder / rel
    base = folder.resolve()
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not parent.resolve().is_relative_to(base):
        raise InvalidInputError(f"{target}: outside the release folder {folder}")
    try:
        if stat.S_ISLNK(target.lstat().st_mode):
            raise InvalidInputError(f"{target}: is a symbolic link; not written through")
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def materialise(
    session: Session, settings: Settings, draft_id: int, *, version: int | None = None
) -> Path:
    """The version as a release folder under drafts/<id>/ (0700); returns the default
    language's file. A folder that already holds this very version is left alone (a check or a
    send may be reading it); otherwise a fresh one replaces it whole, so files of an older
    version never linger."""
    draft = get_draft(session, draft_id)
    chosen = get_version(session, draft_id, version)
    lang = default_language(dict(chosen.sources), chosen.plain_language, settings)
    root = drafts_folder(settings)
    root.mkdir(parents=True, exist_ok=True, mode=FOLDER_MODE)
    os.chmod(root, FOLDER_MODE)
    target = root / str(draft_id)
    path = target / file_name(draft.slug, lang, chosen.plain_language)
    mark = _mark(draft.slug, chosen)
    with _MATERIALISING:
        if _marked(target) == mark and path.is_file():
            return path
        fresh = Path(tempfile.mkdtemp(prefix=f".{draft_id}-", dir=root))
        try:
            os.chmod(fresh, FOLDER_MODE)
            export(session, settings, draft_id, fresh, version=version)
            (fresh / MARK_FILE).write_text(mark, encoding="utf-8")
            for attempt in range(5):  # another process may swap the folder at the same time
                if target.exists():
                    os.replace(target, root / f".{draft_id}-old-{os.getpid()}-{attempt}")
                try:
                    os.replace(fresh, target)
                    break
                except OSError:
                    if attempt == 4:
                        raise
        finally:
            shutil.rmtree(fresh, ignore_errors=True)
            for stale in root.glob(f".{draft_id}-old-{os.getpid()}-*"):
                shutil.rmtree(stale, ignore_errors=True)
    return path


# Which version a materialised folder holds (a hidden file: no release command reads it).
MARK_FILE = ".version"
# Threads of one process (the console's requests) materialise one at a time.
_MATERIALISING = threading.Lock()


def _mark(slug: str, version: ReleaseVersion) -> str:
    blob = json.dumps(
        [slug, version.sources, version.files, version.plain_language],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _marked(folder: Path) -> str:
    try:
        return (folder / MARK_FILE).read_text(encoding="utf-8")
    except OSError:
        return ""


def import_release(
    session: Session, settings: Settings, path: Path, *, author: str
) -> tuple[ReleaseDraft, ReleaseVersion, bool]:
    """A release folder (or one of its files) into a draft: a new one, or a new version of the
    draft of that name. Returns the draft, the version and whether the draft is new."""
    release_path = _release_path(path)
    release = load_release(release_path, settings.default_language)
    slug = check_slug(release.slug) if SLUG_RE.match(release.slug) else None
    if slug is None:
        raise InvalidInputError(
            f"{release_path}: {release.slug!r} cannot name a draft; rename the files "
            "(letters, digits, - and _, no dots), e.g. election-night.en.md"
        )
    sources: dict[str, str] = {}
    plain: str | None = None
    inside = release_path.parent.resolve()
    for lang, variant in release.variants.items():
        assert variant.path is not None
        # A folder from elsewhere must not pull in a file of this server through a link.
        if not variant.path.resolve().is_relative_to(inside):
            raise InvalidInputError(
                f"{variant.path}: is a symbolic link to a file outside the release folder "
                f"{release_path.parent}; copy the file itself into the folder"
            )
        raw = variant.path.read_bytes()
        sources[lang] = raw.decode("utf-8")  # a BOM is kept (as \ufeff), so are the bytes
        if variant.path.name == f"{slug}.md":
            plain = lang
    files = _release_files(release, release_path.parent, settings, session)
    existing = session.scalar(select(ReleaseDraft).where(ReleaseDraft.slug == slug))
    if existing is None:
        draft = create_draft(
            session, settings, slug, sources, author=author, files=files, plain_language=plain
        )
        return draft, get_version(session, draft.id), True
    version = save_version(
        session,
        settings,
        existing.id,
        sources,
        based_on=existing.current_version,
        author=author,
        files=files,
    )
    version.plain_language = plain  # how the files are named is part of the round trip
    return existing, version, False


def _release_path(path: Path) -> Path:
    if not path.is_dir():
        return path
    slugs = sorted(
        {
            m["slug"]
            for p in path.glob("*.md")
            if (m := re.match(r"^(?P<slug>[^.]+)(\.[^.]+)?\.md$", p.name))
        }
    )
    if not slugs:
        raise InvalidInputError(f"{path}: no release in this folder (NAME.md or NAME.LANG.md)")
    if len(slugs) > 1:
        raise InvalidInputError(
            f"{path}: holds several releases ({', '.join(slugs)}); name one, e.g. "
            f"{path / (slugs[0] + '.md')}"
        )
    return path / slugs[0]


def _release_files(
    release: Release, folder: Path, settings: Settings, session: Session
) -> dict[str, str]:
    """The release's local files, checked as `release check` does and kept in the media store;
    a problem is an error naming the file, line and reference."""
    # Lazy: the scan loads Pillow for photos; a release without local files never needs it.
    from mailer.media.scan import scan_release  # noqa: PLC0415

    scan = scan_release(release, settings)
    errors = [p.message for p in scan.problems if p.level == "error"]
    if errors:
        raise InvalidInputError("; ".join(errors[:5]))
    files: dict[str, str] = {}
    for refs in scan.refs.values():
        for ref in refs:
            rel, _fragment = ref_path(ref.ref)
            files[check_relative(str(PurePosixPath(rel)))] = ref.original.sha256
    originals = Scan(files={sha: p for sha, p in scan.files.items() if p.original_sha256 is None})
    media_store.save(session, settings, originals)
    return files


# --- the live preview ------------------------------------------------------------------------


def preview_html(release: Release, language: str, settings: Settings) -> str:
    """One language as `release preview` shows it, for the editor's live preview, without its
    last step: inlining the CSS (premailer takes ~0.5 s a language on a 2,000-word release, the
    rest ~40 ms). The layouts carry the very same stylesheet in their <style> block, which the
    browser showing the preview applies alike; the sample personal values are filled in."""
    # Lazy: the render module loads the layouts' Jinja environment; the CLI commands skip it.
    from mailer.releases import render  # noqa: PLC0415
    from mailer.releases.personalise import PersonalTemplate  # noqa: PLC0415

    if language not in release.variants:
        raise ReleaseError(f"release {release.slug!r} has no {language!r} variant")
    html, _text = render.render_layouts(release, language, settings)
    return PersonalTemplate.compile(html, escape_html=True).fill(
        render.sample_values(settings, language)
    )


# --- release check ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A `release check` finding, placed at the file and line it names (when it names one)."""

    level: str
    message: str
    language: str | None = None
    line: int | None = None


def check(session: Session, settings: Settings, draft_id: int) -> list[Placed]:
    """`release check` on the current version (its folder materialised), with the audience
    of its `lists`; each finding placed at the language file and line it names."""
    # Lazy: checks load premailer and lxml (~0.4 s); only the editor's check needs them.
    from mailer.contacts.lists import get_list  # noqa: PLC0415
    from mailer.delivery.planning import audience_languages  # noqa: PLC0415
    from mailer.media.refs import with_media  # noqa: PLC0415
    from mailer.media.scan import scan_release  # noqa: PLC0415
    from mailer.releases.checks import Finding, check_release  # noqa: PLC0415

    path = materialise(session, settings, draft_id)
    try:
        release = load_release(path, settings.default_language)
    except ReleaseError as err:
        findings = [Finding("error", str(err))]
    else:
        scan = scan_release(release, settings)
        release = with_media(release, scan.refs)
        findings, known = [], []
        for slug in release.lists:
            try:
                known.append(get_list(session, slug).slug)
            except NotFoundError as err:
                findings.append(Finding("error", f"{release.default.where}: {err}"))
        audience = audience_languages(session, known, release.default_language) if known else None
        findings += check_release(release, settings, audience_languages=audience, local_files=scan)
    draft = get_draft(session, draft_id)
    version = get_version(session, draft_id)
    by_name = {
        file_name(draft.slug, lang, version.plain_language): lang for lang in version.sources
    }
    out = []
    for finding in findings:
        # Server paths are nobody's business in the console: the file's name says enough.
        message = finding.message.replace(f"{path.parent}{os.sep}", "").replace(
            f"{settings.base_dir}{os.sep}", ""
        )
        found = re.match(r"^(?P<name>[^\s:]+\.md):(?P<line>\d+):", message)
        if found and found["name"] in by_name:
            out.append(Placed(finding.level, message, by_name[found["name"]], int(found["line"])))
        else:
            lang = next((by_name[n] for n in by_name if message.startswith(f"{n}:")), None)
            out.append(Placed(finding.level, message, lang))
    return out


# --- uploads -----------------------------------------------------------------------------------


def upload(
    session: Session,
    settings: Settings,
    draft_id: int,
    name: str,
    stream: IO[bytes],
    *,
    based_on: int,
    author: str,
    folder: str = "",
) -> tuple[ReleaseVersion, str]:
    """A press-kit file into the media store and a new version naming it (at `folder/NAME`,
    NAME made safe). Its type is told by its content; at most `media_max_bytes`. Returns the
    version and the file's place in the release folder."""
    clean = safe_name(name or "")
    if not clean or clean == "file" or clean.startswith("."):
        raise InvalidInputError(f"upload {name[:120]!r}: give the file a name")
    rel = check_relative(f"{folder.strip('/')}/{clean}" if folder.strip("/") else clean)
    if rel.endswith(".md"):
        raise InvalidInputError(f"upload {clean!r}: a release text is written in the editor")
    limit = settings.media_max_bytes
    with tempfile.TemporaryDirectory(prefix="upload-") as temp:
        path = Path(temp) / clean
        digest = hashlib.sha256()
        size = 0
        with path.open("wb") as out:
            while chunk := stream.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise InvalidInputError(
                        f"upload {clean!r}: larger than {size_text(limit)} (media_max_bytes)"
                    )
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise InvalidInputError(f"upload {clean!r}: the file is empty")
        try:
            kind = sniff(path)
        except InvalidInputError as err:
            raise InvalidInputError(f"upload {clean!r}: {err}") from None
        info = _examined(path, kind, digest.hexdigest(), size, clean, settings)
        media_store.save(session, settings, Scan(files={info.sha256: Prepared(info, path)}))
    current = get_version(session, draft_id)
    files = {**current.files, rel: info.sha256}
    version = save_version(
        session,
        settings,
        draft_id,
        dict(current.sources),
        based_on=based_on,
        author=author,
        files=files,
    )
    audit.record(session, "release.file_uploaded", actor=author, draft=draft_id, file=rel)
    return version, rel


def _examined(
    path: Path, kind: Any, sha: str, size: int, name: str, settings: Settings
) -> MediaFileInfo:
    width = height = None
    if kind.image:
        # Lazy: Pillow (~50 ms) only for photos. A broken or oversized picture is refused now.
        from mailer.media import images  # noqa: PLC0415

        try:
            picture = images.examine(path, kind)
        except InvalidInputError as err:
            raise InvalidInputError(f"upload {name!r}: {err}") from None
        width, height = picture.width, picture.height
    return MediaFileInfo(
        sha256=sha,
        name=name,
        content_type=kind.content_type,
        size=size,
        url="",
        width=width,
        height=height,
    )


def remove_file(
    session: Session, settings: Settings, draft_id: int, rel: str, *, based_on: int, author: str
) -> ReleaseVersion:
    """A new version without the press-kit file at `rel` (the stored file stays)."""
    current = get_version(session, draft_id)
    if rel not in current.files:
        raise NotFoundError(f"the release has no file {rel[:120]!r}")
    files = {k: v for k, v in current.files.items() if k != rel}
    return save_version(
        session,
        settings,
        draft_id,
        dict(current.sources),
        based_on=based_on,
        author=author,
        files=files,
    )


def version_count(session: Session, draft_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(ReleaseVersion)
            .where(ReleaseVersion.draft_id == draft_id)
        )
        or 0
    )


def when(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC"


def languages_text(languages: Sequence[str]) -> str:
    return ", ".join(languages)
