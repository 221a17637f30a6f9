"""A press-kit file's type, told by its content (magic bytes), never by its name alone.

The allowlist: images (JPEG, PNG, GIF, WebP), PDF, DOCX, HWP and HWPX (Hangul word processor
documents, what Korean offices send), and ZIP archives holding only images. A name whose
extension says another type than the content is refused too: a `.jpg` that is really a PDF or
an HTML page would be served under a type it is not.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mailer.errors import InvalidInputError


@dataclass(frozen=True)
class Kind:
    """One allowed type: how it is served, shown and named."""

    content_type: str
    label: str  # as the Downloads list shows it: "JPEG", "PDF", "HWP"
    extensions: tuple[str, ...]  # the first is the one to suggest
    image: bool = False


JPEG = Kind("image/jpeg", "JPEG", (".jpg", ".jpeg"), image=True)
PNG = Kind("image/png", "PNG", (".png",), image=True)
GIF = Kind("image/gif", "GIF", (".gif",), image=True)
WEBP = Kind("image/webp", "WebP", (".webp",), image=True)
PDF = Kind("application/pdf", "PDF", (".pdf",))
DOCX = Kind(
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "DOCX", (".docx",)
)
HWP = Kind("application/x-hwp", "HWP", (".hwp",))
HWPX = Kind("application/hwp+zip", "HWPX", (".hwpx",))
ZIP = Kind("application/zip", "ZIP", (".zip",))
KINDS = (JPEG, PNG, GIF, WEBP, PDF, DOCX, HWP, HWPX, ZIP)
BY_TYPE = {kind.content_type: kind for kind in KINDS}
ALLOWED = "JPEG, PNG, GIF or WebP images, PDF, DOCX, HWP, HWPX, or a ZIP of images"

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# The first bytes of an HWP 5 document's FileHeader stream (HWP 5.0 file format, 3.2.1).
_HWP_SIGNATURE = b"HWP Document File"
_HWPX_MIMETYPE = b"application/hwp+zip"
# Files an archiver adds beside the photos (macOS, Windows Explorer): harmless, not refused.
_ARCHIVE_LITTER = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")
MAX_ARCHIVE_ENTRIES = 2000


def _image_kind(head: bytes) -> Kind | None:
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def sniff(path: Path) -> Kind:
    """The allowed type of the file at `path` by its content; InvalidInputError saying what it
    is instead (or that its name says another type)."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    kind = _image_kind(head)
    if kind is None and head.startswith(b"%PDF-"):
        kind = PDF
    elif kind is None and head.startswith(_OLE):
        kind = _ole_kind(path)
    elif kind is None and head.startswith(b"PK\x03\x04"):
        kind = _zip_kind(path)
    if kind is None:
        raise InvalidInputError(f"{_what(head)}, not a type a press kit may hold ({ALLOWED})")
    suffix = path.suffix.lower()
    if suffix not in kind.extensions:
        named = _named_as(suffix)
        raise InvalidInputError(
            f"is a {kind.label} file by its content, but its name ends in {suffix or 'nothing'}"
            + (f" (a {named} name)" if named else "")
            + f": name it {kind.extensions[0]}, or check that it is the file you meant"
        )
    return kind


def _named_as(suffix: str) -> str:
    return next((k.label for k in KINDS if suffix in k.extensions), "")


def _what(head: bytes) -> str:
    """A word on what an unknown file looks like, for the error."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script")):
        return "HTML (a web page)"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "an SVG drawing (it can hold scripts)"
    if text.startswith(b"<"):
        return "XML or HTML text"
    if head.startswith((b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"#!")):
        return "a program"
    if not head:
        return "empty"
    return "of unknown content"


def _ole_kind(path: Path) -> Kind:
    """An OLE compound file: an HWP 5 document, or an Office 97-2003 one (refused)."""
    # The FileHeader stream is small, so it sits in the mini stream wherever the writer put it;
    # its signature is looked for in the whole file (at most media_max_bytes, read in chunks).
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            if _HWP_SIGNATURE in tail + chunk:
                return HWP
            tail = chunk[-len(_HWP_SIGNATURE) :]
    raise InvalidInputError(
        "is an Office 97-2003 file (.doc, .xls, .ppt), not a type a press kit may hold: "
        "save it as PDF or DOCX"
    )


def _zip_kind(path: Path) -> Kind:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = {info.filename for info in infos}
            if "mimetype" in names:
                with archive.open("mimetype") as fh:
                    if fh.read(64).strip() == _HWPX_MIMETYPE:
                        return HWPX
            if "[Content_Types].xml" in names:
                if "word/document.xml" in names:
                    return DOCX
                raise InvalidInputError(
                    "is an Office file other than a Word document (a spreadsheet or slides?), "
                    f"not a type a press kit may hold ({ALLOWED}): save it as PDF"
                )
            _check_image_archive(archive, infos)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
    ) as err:
        # NotImplementedError: a compression method zipfile lacks; RuntimeError: a password.
        raise InvalidInputError(f"is a damaged ZIP archive ({err})") from None
    return ZIP


def _check_image_archive(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """A ZIP may hold images only, under names that stay inside the folder it is unpacked in."""
    if len(infos) > MAX_ARCHIVE_ENTRIES:
        raise InvalidInputError(
            f"is a ZIP of {len(infos)} entries; at most {MAX_ARCHIVE_ENTRIES} in a press kit"
        )
    images = 0
    for info in infos:
        name = info.filename
        if info.is_dir() or name.startswith(_ARCHIVE_LITTER[0]):
            continue
        parts = PurePosixPath(name).parts
        if name.startswith("/") or "\\" in name or ".." in parts or ":" in name:
            # Some unpackers write such an entry outside the folder chosen ("zip slip").
            raise InvalidInputError(
                f"is a ZIP whose entry {name!r} would be unpacked outside its folder"
            )
        if parts and parts[-1] in _ARCHIVE_LITTER:
            continue
        if info.flag_bits & 0x1:
            raise InvalidInputError(f"is a ZIP whose entry {name!r} is encrypted")
        with archive.open(info) as fh:
            head = fh.read(16)
        kind = _image_kind(head)
        if kind is None or PurePosixPath(name).suffix.lower() not in kind.extensions:
            raise InvalidInputError(
                f"is a ZIP holding {name!r}, which is not a JPEG, PNG, GIF or WebP image "
                "(a ZIP in a press kit holds images only: send other files as they are)"
            )
        images += 1
    if images == 0:
        raise InvalidInputError("is a ZIP without any image")
