"""Email-width copies of a release's photos (Pillow): 1x and 2x, never upscaled, turned upright,
without EXIF.

A phone photo is 4000 pixels wide and several megabytes; an email shows it 520 pixels wide.
Each photo gets a copy EMAIL_WIDTH pixels wide and one twice that (for sharp screens), each no
wider than the original. The copies carry no EXIF: a phone writes where the photo was taken
(GPS) and with which device; the copies are turned as the EXIF orientation says first, since
without it they would show sideways. WebP and GIF copies are written as JPEG or PNG, which every
mail program shows (Outlook on Windows shows no WebP). An animated GIF is left as it is.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from mailer.errors import InvalidInputError
from mailer.media.sniff import GIF, JPEG, PNG, Kind

EMAIL_WIDTH = 600
# A 61-megapixel camera's photo fits; beyond this decoding one would take gigabytes.
MAX_PIXELS = 64_000_000
_GPS_IFD = 0x8825
_ORIENTATION = 0x0112
_JPEG_QUALITY = 82


@dataclass(frozen=True)
class Copy:
    """One email-width copy of a photo, encoded."""

    scale: int  # 1 or 2
    width: int
    height: int
    data: bytes
    kind: Kind


@dataclass(frozen=True)
class Picture:
    """What a photo is, as shown (orientation applied), and its email-width copies."""

    width: int
    height: int
    animated: bool
    has_gps: bool
    copies: tuple[Copy, ...]


def examine(path: Path, kind: Kind, email_width: int = EMAIL_WIDTH) -> Picture:
    """The photo at `path` (of an image `kind`) and its copies; InvalidInputError when it
    cannot be read as an image or is too large to decode."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its two limits; past MAX_PIXELS it is refused anyway.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return _examine(im, kind, email_width)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInputError(_too_large()) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise InvalidInputError(f"cannot be read as an image: {err}") from None


def _too_large() -> str:
    return f"has more than {MAX_PIXELS // 1_000_000} megapixels; make it smaller"


def _examine(im: Image.Image, kind: Kind, email_width: int) -> Picture:
    raw_w, raw_h = im.size
    if raw_w * raw_h > MAX_PIXELS:
        raise InvalidInputError(_too_large())
    exif = im.getexif()
    has_gps = bool(exif.get_ifd(_GPS_IFD))
    turned = exif.get(_ORIENTATION) in (5, 6, 7, 8)
    width, height = (raw_h, raw_w) if turned else (raw_w, raw_h)
    animated = bool(getattr(im, "is_animated", False))
    if animated:
        return Picture(width, height, True, has_gps, ())
    widest = min(2 * email_width, width)
    if kind == JPEG and widest < width:
        # Decode at a fraction of the size (JPEG's DCT scaling): ten times faster for a phone
        # photo, still at least as large as the widest copy.
        factor = widest / width
        im.draft(im.mode, (int(raw_w * factor) + 1, int(raw_h * factor) + 1))
    im.load()
    upright = ImageOps.exif_transpose(im)
    # The colour profile travels (it says how to show the colours) unless the colours change.
    icc = im.info.get("icc_profile")
    if upright.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        upright = upright.convert("RGB")  # CMYK photos show wrong or not at all in browsers
        icc = None
    widths: list[int] = []
    for scale in (1, 2):
        target = min(scale * email_width, width)
        if widths and target <= widths[-1]:
            break  # never upscaled: a photo narrower than 2x gets no second copy
        widths.append(target)
    # The widest copy is made from the photo, the narrower one from it (a quarter of the work).
    copies: list[Copy] = []
    source = upright
    for scale in range(len(widths), 0, -1):
        target = widths[scale - 1]
        source = _resized(source, target, round(height * target / width) or 1)
        copies.insert(0, _encode(source, scale, kind, icc))
    return Picture(width, height, False, has_gps, tuple(copies))


def _resized(image: Image.Image, width: int, height: int) -> Image.Image:
    if image.size == (width, height):
        return image.copy()
    if image.mode == "P":
        image = image.convert("RGBA")
    return image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def _encode(image: Image.Image, scale: int, kind: Kind, icc: bytes | None) -> Copy:
    width, height = image.size
    # Nothing of the original's metadata travels: no EXIF (GPS, device), no XMP, no comments;
    # only the colour profile, which says how to show the colours.
    image.info = {}
    extra = {"icc_profile": icc} if icc else {}
    out = io.BytesIO()
    alpha = image.mode in ("RGBA", "LA", "P") and kind != JPEG
    if kind == JPEG or (kind != PNG and kind != GIF and not alpha):
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        image.save(
            out, "JPEG", quality=_JPEG_QUALITY, optimize=True, progressive=True, exif=b"", **extra
        )
        made = JPEG
    else:
        image.save(out, "PNG", optimize=True, **extra)
        made = PNG
    return Copy(scale, width, height, out.getvalue(), made)
