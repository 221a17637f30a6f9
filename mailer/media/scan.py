"""The local files a release names: found, checked and prepared for storing (no database).

Every local reference of every variant (a body image or link, a local `image:`, each `attach:`
entry) must name a regular file inside the release's folder: not missing, not `..`, not an
absolute path, not a symbolic link that leads out of the folder; of an allowed type by its
content (mailer.media.sniff) and under `media_max_bytes`. What is wrong is a Problem naming the
release file, the line and the reference, for `release check` (mailer.releases.checks turns
them into findings). What is right becomes a MediaRef per reference and the files to store,
each once however often it is named (mailer.media.store writes them).
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

from mailer.config import Settings
from mailer.errors import InvalidInputError
from mailer.media.refs import (
    MediaFileInfo,
    MediaRef,
    is_local,
    media_url,
    ref_path,
    safe_name,
    size_text,
)
from mailer.media.sniff import Kind, sniff
from mailer.releases.markdown import body_links
from mailer.releases.source import Release, ReleaseVariant

if TYPE_CHECKING:
    from mailer.media import images

# A photo whose email copy is larger than this makes the message slow to open on a phone.
LARGE_IMAGE = 1024 * 1024
RefKind = Literal["image", "link", "header image", "attachment"]


@dataclass(frozen=True)
class Problem:
    """Something wrong with a local file: an error stops a send, a warning does not."""

    level: Literal["error", "warning"]
    message: str


@dataclass(frozen=True)
class Prepared:
    """A file to store: an original (read from `source`) or a copy (its bytes in `data`)."""

    info: MediaFileInfo
    source: Path | None = None
    data: bytes | None = None
    original_sha256: str | None = None


@dataclass
class Scan:
    """A release's local files: the problems, each variant's references, the files to store."""

    problems: list[Problem] = field(default_factory=list)
    refs: dict[str, list[MediaRef]] = field(default_factory=dict)
    files: dict[str, Prepared] = field(default_factory=dict)

    @property
    def has_errors(self) -> bool:
        return any(p.level == "error" for p in self.problems)


@dataclass(frozen=True)
class _Reference:
    kind: RefKind
    url: str
    text: str
    line: int


@dataclass
class _Examined:
    """One file on disk, read once however many references name it."""

    path: Path
    kind: Kind
    sha256: str
    size: int
    picture: images.Picture | None = None
    copies: tuple[MediaFileInfo, ...] = ()
    warned: set[str] = field(default_factory=set)


def scan_release(release: Release, settings: Settings) -> Scan:
    """Find, check and prepare every local file the release's variants name."""
    scan = Scan()
    seen: dict[Path, _Examined | str] = {}
    for lang in release.languages:
        variant = release.variants[lang]
        if variant.path is None:
            continue  # a stored release: its files were stored when it was planned
        folder = variant.path.parent
        refs: list[MediaRef] = []
        attached = 0
        for reference in _references(variant, release.sources.get(lang, "")):
            # The reference as the author wrote it (Markdown percent-encodes spaces and Hangul).
            shown_ref = unquote(reference.url)
            where = f"{variant.where}:{reference.line}: {reference.kind} {shown_ref!r}"
            shown = reference.kind in ("image", "header image")
            found = _examine(folder, reference.url, settings, seen)
            if isinstance(found, str):
                scan.problems.append(Problem("error", f"{where}: {found}"))
                continue
            if shown and not found.kind.image:
                scan.problems.append(
                    Problem(
                        "error",
                        f"{where}: is a {found.kind.label} file; an image must be JPEG, PNG, "
                        "GIF or WebP (link to the file instead: [what it is](file))",
                    )
                )
                continue
            scan.problems += _warnings(found, where, reference.kind)
            if reference.kind == "attachment":
                attached += found.size
            refs.append(_ref(reference, found, settings, scan, shown=shown))
        if attached:
            scan.problems += _attachment_problems(variant, attached, settings)
        if refs:
            scan.refs[lang] = refs
    return scan


def _references(variant: ReleaseVariant, source: str) -> Iterator[_Reference]:
    """The variant's local references in reading order: header image, body, attachments."""
    meta = variant.meta
    lines = source.lstrip("\ufeff").splitlines()
    if meta.image is not None and is_local(meta.image.url):
        yield _Reference("header image", meta.image.url, meta.image.alt, _line(lines, "image"))
    for link in body_links(variant):
        if is_local(link.url):
            yield _Reference(link.kind, link.url, link.text, link.line)
    for name in meta.attach:
        yield _Reference("attachment", name, "", _line(lines, "attach", name))


def _line(lines: list[str], key: str, value: str = "") -> int:
    """The file line of a front matter key (and of `value` in the lines from there on)."""
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{key}:")), 0)
    if value:
        for i in range(start, len(lines)):
            if value in lines[i]:
                return i + 1
    return start + 1


def resolve(folder: Path, url: str) -> Path:
    """The regular file inside `folder` that the local reference `url` names; InvalidInputError
    saying why not (missing, outside the folder, not a file)."""
    path, _fragment = ref_path(url)
    if "\x00" in path:
        raise InvalidInputError("holds a NUL character")
    if path.startswith(("/", "\\")) or PureWindowsPath(path).drive:
        raise InvalidInputError(
            "is an absolute path: name a file by its place in the release folder "
            "(photos/a.jpg), or a web page by its full address (https://...)"
        )
    if "\\" in path:
        raise InvalidInputError("separates folders with \\: write / (photos/a.jpg)")
    if ".." in PurePosixPath(path).parts:
        raise InvalidInputError(
            f"goes up a folder (..): a press-kit file must be inside the release folder {folder}"
        )
    candidate = folder / path
    base = folder.resolve()
    try:
        real = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise InvalidInputError(f"no such file (looked for {candidate})") from None
    except (OSError, RuntimeError) as err:  # a loop of symbolic links, a name too long
        raise InvalidInputError(f"cannot be opened: {err}") from None
    if not real.is_relative_to(base):
        raise InvalidInputError(
            f"is a symbolic link to {real}, outside the release folder {folder}; copy the "
            "file into the folder"
        )
    try:
        mode = real.stat().st_mode
    except OSError as err:
        raise InvalidInputError(f"cannot be read: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise InvalidInputError("is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise InvalidInputError("is not a regular file")
    return real


def _examine(
    folder: Path,
    url: str,
    settings: Settings,
    seen: dict[Path, _Examined | str],
) -> _Examined | str:
    """The file `url` names, examined once (the error text when it cannot be used)."""
    try:
        path = resolve(folder, url)
    except InvalidInputError as err:
        return str(err)
    found = seen.get(path)
    if found is None:
        try:
            found = _read(path, settings)
        except InvalidInputError as err:
            found = str(err)
        seen[path] = found
    if isinstance(found, _Examined) and found.kind.image and found.picture is None:
        # Also for a photo only linked to: the Downloads list gives its size in pixels.
        # Lazy: Pillow (~50 ms) only when a release has a photo.
        from mailer.media import images  # noqa: PLC0415

        try:
            found.picture = images.examine(path, found.kind)
        except InvalidInputError as err:
            seen[path] = str(err)
            return str(err)
    return found


def _read(path: Path, settings: Settings) -> _Examined:
    size = path.stat().st_size
    if size > settings.media_max_bytes:
        raise InvalidInputError(
            f"is {size_text(size)}; a press-kit file may have at most "
            f"{size_text(settings.media_max_bytes)} (media_max_bytes)"
        )
    kind = sniff(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as err:
        raise InvalidInputError(f"cannot be read: {err.strerror}") from None
    return _Examined(path, kind, digest.hexdigest(), size)


def _ref(
    reference: _Reference, found: _Examined, settings: Settings, scan: Scan, *, shown: bool
) -> MediaRef:
    """The reference's MediaRef; the files it needs joined to those to store."""
    picture = found.picture
    name = safe_name(found.path.name)
    original = MediaFileInfo(
        sha256=found.sha256,
        name=name,
        content_type=found.kind.content_type,
        size=found.size,
        url=media_url(settings.base_url, found.sha256, name),
        width=picture.width if picture else None,
        height=picture.height if picture else None,
    )
    scan.files.setdefault(found.sha256, Prepared(original, source=found.path))
    if shown and picture is not None and not found.copies:
        found.copies = tuple(_copy(original, copy, settings, scan) for copy in picture.copies)
    _path, fragment = ref_path(reference.url)
    return MediaRef(
        ref=reference.url,
        title=" ".join(reference.text.split()),
        original=original,
        copies=found.copies if shown else (),
        fragment=fragment if reference.kind == "link" else "",
    )


def _copy(
    original: MediaFileInfo, copy: images.Copy, settings: Settings, scan: Scan
) -> MediaFileInfo:
    sha = hashlib.sha256(copy.data).hexdigest()
    stem = original.name.rsplit(".", 1)[0]
    name = safe_name(f"{stem}-{copy.width}w{copy.kind.extensions[0]}")
    info = MediaFileInfo(
        sha256=sha,
        name=name,
        content_type=copy.kind.content_type,
        size=len(copy.data),
        url=media_url(settings.base_url, sha, name),
        width=copy.width,
        height=copy.height,
        scale=copy.scale,
    )
    scan.files.setdefault(sha, Prepared(info, data=copy.data, original_sha256=original.sha256))
    return info


def _warnings(found: _Examined, where: str, kind: RefKind) -> list[Problem]:
    """Warnings about a file, each told once (at its first reference)."""
    out: list[Problem] = []
    picture = found.picture

    def once(key: str, message: str) -> None:
        if key not in found.warned:
            found.warned.add(key)
            out.append(Problem("warning", f"{where}: {message}"))

    if picture is not None and picture.has_gps:
        once(
            "gps",
            "the photo records where it was taken (GPS in its EXIF data); the email's copies "
            "leave it out, but the original offered for download keeps it: remove it (e.g. "
            "exiftool -gps:all= FILE) if the place must stay private",
        )
    if kind in ("image", "header image") and picture is not None:
        heavy = [c for c in picture.copies if len(c.data) > LARGE_IMAGE]
        if picture.animated and found.size > LARGE_IMAGE:
            once(
                "large",
                f"an animated image of {size_text(found.size)} goes into the message as "
                "it is (over 1 MB: slow on a phone); make it smaller or a still photo",
            )
        elif heavy:
            sizes = ", ".join(f"{c.width} px: {size_text(len(c.data))}" for c in heavy)
            once(
                "large",
                f"even scaled to email width the image is over 1 MB ({sizes}): slow to load "
                "on a phone; use a photo with less detail or noise",
            )
    return out


def _attachment_problems(variant: ReleaseVariant, total: int, settings: Settings) -> list[Problem]:
    where = variant.where
    out = [
        Problem(
            "warning",
            f"{where}: attach: {len(variant.meta.attach)} file(s), {size_text(total)}, "
            "go with every message: attachments make a message larger and look like spam to "
            "many filters (fewer reach the inbox); the Downloads links give the same files "
            "without that",
        )
    ]
    if total > settings.attach_max_bytes:
        out.append(
            Problem(
                "error",
                f"{where}: attach: the attachments have {size_text(total)} together; at most "
                f"{size_text(settings.attach_max_bytes)} (attach_max_bytes): leave "
                "the large files to the Downloads links",
            )
        )
    return out
