"""The press-kit tests' parts: photos (with EXIF, GPS, orientation), documents of each allowed
type and of a few refused ones, release folders that name them, and reading the /media/ URLs
out of a message or a page."""

from __future__ import annotations

import io
import os
import random
import re
import zipfile
from pathlib import Path

from PIL import Image

from tests.support.newsroom import SAMPLES

# A phone's EXIF: the camera, and where the photo was taken (GPS, Seoul City Hall).
GPS_IFD = 0x8825
ORIENTATION = 0x0112
MAKE = 0x010F


def photo(
    path: Path,
    width: int,
    height: int,
    *,
    fmt: str = "JPEG",
    mode: str = "RGB",
    orientation: int | None = None,
    gps: bool = False,
    noise: bool = False,
    seed: int = 1,
) -> Path:
    """An image file; `noise`: random pixels (compresses badly, so the copies stay large)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if noise:
        rng = random.Random(seed)
        image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3)).convert(
            mode
        )
    else:
        # A gradient, so the copies are real pictures, not flat colour; `seed` marks it.
        image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        image.paste((seed * 37 % 256, 90, 40), (0, 0, max(1, width // 8), max(1, height // 8)))
        image = image.convert(mode)
        if mode == "RGBA":
            # Transparent to the left, opaque to the right: real transparency, kept by encoders.
            image.putalpha(Image.linear_gradient("L").rotate(90).resize((width, height)))
    exif = Image.Exif()
    exif[MAKE] = "PhoneMaker"
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if gps:
        exif[GPS_IFD] = {1: "N", 2: (37.0, 33.0, 58.0), 3: "E", 4: (126.0, 58.0, 41.0)}
    extra = {"exif": exif.tobytes()} if fmt in ("JPEG", "PNG", "WEBP") else {}
    image.save(path, fmt, **extra)
    return path


def animated_gif(path: Path, width: int = 200, height: int = 100) -> Path:
    frames = [Image.new("RGB", (width, height), (i * 80, 40, 200 - i * 60)) for i in range(3)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def pdf(path: Path, size: int = 4000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n"
    path.write_bytes(body + b"%" + b"x" * max(0, size - len(body) - 8) + b"\n%%EOF\n")
    return path


def docx(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return path


def xlsx(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return path


def hwpx(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(zipfile.ZipInfo("mimetype"), "application/hwp+zip")
        z.writestr("Contents/content.hpf", "<opf:package/>")
    return path


def _ole(path: Path, stream: bytes) -> Path:
    # An OLE compound file's header, then sectors; the FileHeader stream somewhere inside.
    header = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    path.write_bytes(header + b"\x00" * 1024 + stream + b"\x00" * 2048)
    return path


def hwp(path: Path) -> Path:
    """An HWP 5 document as far as its type goes: OLE, with the FileHeader signature."""
    return _ole(path, b"HWP Document File" + b"\x00" * 15 + b"\x00\x00\x05\x05")


def word97(path: Path) -> Path:
    return _ole(path, b"W\x00o\x00r\x00d\x00D\x00o\x00c\x00u\x00m\x00e\x00n\x00t")


def image_bytes(width: int = 40, height: int = 30, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, fmt)
    return out.getvalue()


def zip_of(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(zipfile.ZipInfo(name), data)
    return path


def write_release(
    folder: Path,
    *,
    slug: str = "election-night",
    front: dict[str, str] | None = None,
    body: dict[str, str] | None = None,
) -> Path:
    """The bilingual sample release in `folder` as SLUG.en.md + SLUG.ko.md, with front matter
    lines and body paragraphs added per language ({"en": ..., "ko": ...}). Returns the .en.md."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(SAMPLES.glob("election-night.*.md")):
        lang = source.name.split(".")[1]
        text = source.read_text(encoding="utf-8")
        lines = (front or {}).get(lang, "")
        if lines:
            text = text.replace("---\n", f"---\n{lines.strip()}\n", 1)
        extra = (body or {}).get(lang, "")
        if extra:
            text = text.rstrip("\n") + f"\n\n{extra.strip()}\n"
        (folder / source.name.replace("election-night", slug)).write_text(text, encoding="utf-8")
    return folder / f"{slug}.en.md"


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of `path` that holds `needle`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} is not in {path}")


def media_urls(text: str, base_url: str) -> list[str]:
    """Every URL of ours under /media/ in a message or a page (src, srcset, href, text)."""
    base = re.escape(base_url.rstrip("/"))
    return re.findall(rf"{base}/media/[0-9a-f]{{64}}/[^\s\"'<>)]+", text.replace("&amp;", "&"))


def local_path(url: str, base_url: str) -> str:
    """The path and query of one of our URLs, for the Flask test client."""
    assert url.startswith(base_url.rstrip("/") + "/"), url
    return url[len(base_url.rstrip("/")) :]


def files_in(folder: Path) -> dict[str, int]:
    """The stored files of media_dir: name -> mode (temporary files included, if any)."""
    if not folder.exists():
        return {}
    return {entry.name: entry.stat().st_mode & 0o777 for entry in os.scandir(folder)}
