"""Press-kit files without a database: types told by content, email-width copies (sizes, never
upscaled, upright, no EXIF), names made safe, and references that try to leave the release
folder."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from mailer.errors import InvalidInputError
from mailer.media import images, sniff
from mailer.media.refs import MediaFileInfo, MediaRef, is_local, safe_name, size_text
from mailer.media.scan import resolve
from tests.support.media import (
    GPS_IFD,
    animated_gif,
    docx,
    hwp,
    hwpx,
    image_bytes,
    pdf,
    photo,
    word97,
    xlsx,
    zip_of,
)

# --- types by content ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "make", "label"),
    [
        ("a.jpg", lambda p: photo(p, 20, 10), "JPEG"),
        ("a.jpeg", lambda p: photo(p, 20, 10), "JPEG"),
        ("a.png", lambda p: photo(p, 20, 10, fmt="PNG"), "PNG"),
        ("a.gif", lambda p: photo(p, 20, 10, fmt="GIF"), "GIF"),
        ("a.webp", lambda p: photo(p, 20, 10, fmt="WEBP"), "WebP"),
        ("guide.pdf", pdf, "PDF"),
        ("statement.docx", docx, "DOCX"),
        ("보도자료.hwp", hwp, "HWP"),
        ("보도자료.hwpx", hwpx, "HWPX"),
        (
            "photos.zip",
            lambda p: zip_of(p, {"a.png": image_bytes(), "b/c.jpg": image_bytes(fmt="JPEG")}),
            "ZIP",
        ),
        # What macOS adds to an archive is not held against it.
        (
            "mac.zip",
            lambda p: zip_of(
                p, {"a.png": image_bytes(), "__MACOSX/._a.png": b"\x00\x05", ".DS_Store": b"x"}
            ),
            "ZIP",
        ),
    ],
)
def test_allowed_types(tmp_path: Path, name: str, make: object, label: str) -> None:
    path = tmp_path / name
    make(path)  # type: ignore[operator]
    assert sniff.sniff(path).label == label


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        # The extension says one thing, the content another.
        (
            "photo.jpg",
            b"%PDF-1.4\n%%EOF\n",
            "is a PDF file by its content, but its name ends in .jpg",
        ),
        ("guide.pdf", image_bytes(), "is a PNG file by its content, but its name ends in .pdf"),
        ("photo.png", image_bytes(fmt="JPEG"), "is a JPEG file by its content"),
        # Content outside the allowlist, whatever the name.
        ("photo.jpg", b"<!DOCTYPE html><html><script>alert(1)</script>", "HTML (a web page)"),
        ("logo.png", b'<?xml version="1.0"?><svg onload="alert(1)"/>', "an SVG drawing"),
        ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "an SVG drawing"),
        ("setup.pdf", b"MZ\x90\x00" + b"\x00" * 60, "a program"),
        ("notes.txt", b"just some text", "of unknown content"),
        ("empty.pdf", b"", "empty"),
    ],
)
def test_refused_by_content(tmp_path: Path, name: str, content: bytes, says: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidInputError) as err:
        sniff.sniff(path)
    assert says in str(err.value)


def test_refused_documents_and_archives(tmp_path: Path) -> None:
    cases = {
        word97(tmp_path / "old.doc"): "Office 97-2003",
        xlsx(tmp_path / "budget.docx"): "other than a Word document",
        zip_of(tmp_path / "kit.zip", {"a.png": image_bytes(), "notes.txt": b"hi"}): "'notes.txt'",
        zip_of(tmp_path / "slip.zip", {"../../evil.png": image_bytes()}): "outside its folder",
        zip_of(tmp_path / "abs.zip", {"/etc/evil.png": image_bytes()}): "outside its folder",
        zip_of(tmp_path / "fake.zip", {"a.png": b"<html>"}): "'a.png'",
        zip_of(tmp_path / "none.zip", {"dir/": b""}): "without any image",
    }
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    cases[damaged] = "damaged ZIP"
    for path, says in cases.items():
        with pytest.raises(InvalidInputError) as err:
            sniff.sniff(path)
        assert says in str(err.value), (path.name, str(err.value))


# --- email-width copies -------------------------------------------------------------------------


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "widths"),
    [
        ((4000, 3000), [600, 1200]),  # a phone photo: both copies
        ((900, 300), [600, 900]),  # narrower than 2x: the second copy is the original's width
        ((400, 300), [400]),  # narrower than 1x: one copy, never upscaled
        ((600, 600), [600]),
    ],
)
def test_copies_are_email_width_and_never_upscaled(
    tmp_path: Path, size: tuple[int, int], widths: list[int]
) -> None:
    path = photo(tmp_path / "a.jpg", *size)
    picture = images.examine(path, sniff.JPEG)
    assert [c.width for c in picture.copies] == widths
    assert [c.scale for c in picture.copies] == [1, 2][: len(widths)]
    for copy in picture.copies:
        shown = _open(copy.data)
        assert shown.size == (copy.width, copy.height)
        # The proportions are kept (to the pixel).
        assert abs(copy.height - size[1] * copy.width / size[0]) <= 1


def test_srcset_says_each_copys_density() -> None:
    def info(width: int, scale: int) -> MediaFileInfo:
        return MediaFileInfo(
            "0" * 64, f"a-{width}w.jpg", "image/jpeg", 1, f"u{width}", width, 1, scale
        )

    original = MediaFileInfo("1" * 64, "a.jpg", "image/jpeg", 1, "orig", 4000, 3000)
    assert (
        MediaRef("a.jpg", "", original, (info(600, 1), info(1200, 2))).srcset == "u600 1x, u1200 2x"
    )
    assert (
        MediaRef("a.jpg", "", original, (info(600, 1), info(900, 2))).srcset == "u600 1x, u900 1.5x"
    )
    single = MediaRef("a.jpg", "", original, (info(400, 1),))
    assert single.srcset == "" and single.display_width == 400
    assert MediaRef("a.jpg", "", original, (info(600, 1),)).display_width == 520


def test_exif_gone_and_orientation_applied(tmp_path: Path) -> None:
    # Stored 4000x3000 sideways, EXIF orientation 6 (turn 90 degrees), with GPS.
    path = photo(tmp_path / "phone.jpg", 4000, 3000, orientation=6, gps=True)
    raw = path.read_bytes()
    assert b"Exif" in raw and b"PhoneMaker" in raw
    picture = images.examine(path, sniff.JPEG)
    assert picture.has_gps
    assert (picture.width, picture.height) == (3000, 4000)
    assert [(c.width, c.height) for c in picture.copies] == [(600, 800), (1200, 1600)]
    for copy in picture.copies:
        assert b"Exif" not in copy.data and b"PhoneMaker" not in copy.data
        shown = _open(copy.data)
        exif = shown.getexif()
        assert len(exif) == 0 and not exif.get_ifd(GPS_IFD)
        assert "exif" not in shown.info


def test_formats_mail_programs_show(tmp_path: Path) -> None:
    # WebP (Outlook on Windows shows none) becomes JPEG; with transparency, PNG.
    webp = images.examine(photo(tmp_path / "a.webp", 1000, 500, fmt="WEBP"), sniff.WEBP)
    assert {c.kind.label for c in webp.copies} == {"JPEG"}
    clear = images.examine(
        photo(tmp_path / "b.webp", 1000, 500, fmt="WEBP", mode="RGBA"), sniff.WEBP
    )
    assert {c.kind.label for c in clear.copies} == {"PNG"}
    png = images.examine(photo(tmp_path / "c.png", 1000, 500, fmt="PNG", mode="RGBA"), sniff.PNG)
    assert {c.kind.label for c in png.copies} == {"PNG"} and _open(
        png.copies[0].data
    ).mode == "RGBA"
    # CMYK (print photos) shows wrong in browsers: the copies are RGB.
    cmyk = images.examine(photo(tmp_path / "d.jpg", 1000, 500, mode="CMYK"), sniff.JPEG)
    assert {_open(c.data).mode for c in cmyk.copies} == {"RGB"}
    # An animated GIF is left as it is (a copy would keep one frame).
    gif = images.examine(animated_gif(tmp_path / "e.gif"), sniff.GIF)
    assert gif.animated and gif.copies == ()


def test_unreadable_and_huge_images(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photo(tmp_path / "ok.jpg", 400, 300).read_bytes()[:300])
    with pytest.raises(InvalidInputError, match="cannot be read as an image"):
        images.examine(broken, sniff.JPEG)
    # A small file that claims 100,000 x 100,000 pixels is refused before it is decoded.
    huge = tmp_path / "huge.png"
    Image.new("1", (10000, 10000)).save(huge)
    with pytest.raises(InvalidInputError, match="megapixels"):
        images.examine(huge, sniff.PNG)


# --- names and references -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "served"),
    [
        ("phonebank.jpg", "phonebank.jpg"),
        ("Phone Bank 2024.JPG", "Phone-Bank-2024.jpg"),
        ("투표 안내서.pdf", "투표-안내서.pdf"),
        ("../../etc/passwd", "passwd"),
        ("a\\b\\c.png", "c.png"),
        ('x"<script>.pdf', "x-script.pdf"),
        ("__MAILER_EMAIL__.pdf", "MAILER_EMAIL.pdf"),
        ("...", "file"),
        ("a" * 300 + ".pdf", "a" * 116 + ".pdf"),
    ],
)
def test_safe_names(given: str, served: str) -> None:
    assert safe_name(given) == served


def test_local_references() -> None:
    for url in (
        "photos/a.jpg",
        "guide.pdf#page=2",
        "./a.png",
        "../x.pdf",
        "%2Fetc/passwd",
        "%2e%2e/x",
    ):
        assert is_local(url), url
    # A path from the root is a web page written without its address (an error of its own).
    for url in ("https://x.org/a.jpg", "mailto:a@b.org", "#top", "?q=1", "/news/1", "//x.org/a"):
        assert not is_local(url), url
    assert size_text(2_500_000) == "2.4\u00a0MB" and size_text(100) == "1\u00a0KB"


def test_references_cannot_leave_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "releases"
    (folder / "photos").mkdir(parents=True)
    pdf(folder / "guide.pdf")
    secret = pdf(tmp_path / "secret.pdf")
    os.symlink(secret, folder / "linked.pdf")
    os.symlink(folder / "guide.pdf", folder / "photos" / "inside.pdf")
    assert resolve(folder, "guide.pdf") == (folder / "guide.pdf").resolve()
    assert resolve(folder, "./guide.pdf#page=2") == (folder / "guide.pdf").resolve()
    # A link that stays inside the folder is followed.
    assert resolve(folder, "photos/inside.pdf") == (folder / "guide.pdf").resolve()
    refused = {
        "../secret.pdf": "goes up a folder",
        "%2e%2e/secret.pdf": "goes up a folder",
        "photos/../../secret.pdf": "goes up a folder",
        "photos/%2E%2E/%2e%2e/secret.pdf": "goes up a folder",
        str(secret): "absolute path",
        "%2Fetc%2Fpasswd": "absolute path",
        "C:/Windows/win.ini": "absolute path",
        "photos\\..\\..\\secret.pdf": "write /",
        "linked.pdf": "symbolic link to",
        "missing.pdf": "no such file",
        "photos": "is a folder",
        "guide.pdf%00.jpg": "NUL",
    }
    for url, says in refused.items():
        with pytest.raises(InvalidInputError) as err:
            resolve(folder, url)
        assert says in str(err.value), (url, str(err.value))
