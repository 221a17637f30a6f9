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
        with Image.open(path) as im:
            return _examine(im, kind, email_width)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise InvalidInputError(f"cannot be read as an image: {err}") from None
    except Image.DecompressionBombError:
        raise InvalidInputError(_too_large()) from None


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
    copies: list[Copy] = []
    for scale in (1, 2):
        target = min(scale * email_width, width)
        if copies and target <= copies[-1].width:
            break  # never upscaled: a photo narrower than 2x gets no second copy
        copies.append(_copy(upright, scale, target, round(height * target / width) or 1, kind, icc))
    return Picture(width, height, False, has_gps, tuple(copies))


def _copy(
    upright: Image.Image, scale: int, width: int, height: int, kind: Kind, icc: bytes | None
) -> Copy:
    image = upright
    if image.size != (width, height):
        if image.mode == "P":
            image = image.convert("RGBA")
        image = image.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)
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
