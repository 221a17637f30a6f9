"""How a release links to its stored files: what each reference became, their URLs, the
Downloads list. Plain data, no I/O.

A release variant's `media` holds one MediaRef per local reference it makes (`![alt](photos/
a.jpg)`, `[guide](guide-ko.pdf)`, a local `image:`, each `attach:` entry), in the order they
appear: the file it named (stored as media_dir/SHA256, served at /media/SHA256/NAME) and, for a
photo shown in the message, its email-width copies. The same list is kept with the stored
release (`Release.variants[LANG]["media"]`), so a campaign and a newsroom page render exactly
the URLs that were planned.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from markdown_it.token import Token

from mailer.media.sniff import BY_TYPE
from mailer.releases.source import Release, ReleaseVariant

MEDIA_PATH = "/media"
# The email's text column (templates/email/release.css: 600 less the card's padding): an <img>
# says its width, since Outlook on Windows ignores CSS max-width.
BODY_WIDTH = 520
_NAME_MAX = 120
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\:*?"<>|#%&{}$!`\'=@+,;\[\]^~\s]+')


@dataclass(frozen=True)
class MediaFileInfo:
    """One stored file: an original, or an email-width copy of one (`scale` 1 or 2)."""

    sha256: str
    name: str
    content_type: str
    size: int
    url: str
    width: int | None = None
    height: int | None = None
    scale: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MediaFileInfo:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class MediaRef:
    """One local reference of a variant, as written, and the stored file it names."""

    ref: str  # as the Markdown or front matter wrote it (Markdown's normalised form)
    title: str  # the link text or alt text that named it ("" when none)
    original: MediaFileInfo
    copies: tuple[MediaFileInfo, ...] = ()  # email-width copies, 1x first (photos shown only)
    fragment: str = ""  # "#page=2" of guide.pdf#page=2

    @property
    def src(self) -> str:
        """What an <img> shows: the 1x copy, else the original (an animated GIF)."""
        return self.copies[0].url if self.copies else self.original.url

    @property
    def srcset(self) -> str:
        """'1x-url 1x, 2x-url 2x' ('' without a second copy); a 2x copy of a photo narrower
        than twice the email width says its own density (900 px: 1.5x)."""
        if len(self.copies) < 2:
            return ""
        base = self.copies[0].width or 1
        out = []
        for copy in self.copies:
            density = f"{(copy.width or base) / base:.2f}".rstrip("0").rstrip(".")
            out.append(f"{copy.url} {density}x")
        return ", ".join(out)

    @property
    def display_width(self) -> int:
        """The width an <img> of it says: its own, at most the email's text column."""
        shown = self.copies[0] if self.copies else self.original
        return min(shown.width or BODY_WIDTH, BODY_WIDTH)

    @property
    def href(self) -> str:
        return self.original.url + self.fragment

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": self.ref,
            "title": self.title,
            "original": self.original.as_json(),
        }
        if self.copies:
            out["copies"] = [c.as_json() for c in self.copies]
        if self.fragment:
            out["fragment"] = self.fragment
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MediaRef:
        return cls(
            ref=str(data["ref"]),
            title=str(data.get("title", "")),
            original=MediaFileInfo.from_json(data["original"]),
            copies=tuple(MediaFileInfo.from_json(c) for c in data.get("copies", [])),
            fragment=str(data.get("fragment", "")),
        )


# --- references -----------------------------------------------------------------------------


def is_local(url: str) -> bool:
    """Does `url` name a file beside the release (no scheme, no host, a relative path)?

    `/news/1` is a page of a website written without its address, not a file: `release check`
    says it is not an absolute URL."""
    text = url.strip()
    parts = urlsplit(text)
    return not parts.scheme and not parts.netloc and bool(parts.path) and not text.startswith("/")


def ref_path(url: str) -> tuple[str, str]:
    """The file path a local reference names (percent-decoded: Markdown encodes spaces and
    Hangul) and its '#fragment' ('' when none)."""
    parts = urlsplit(url.strip())
    return unquote(parts.path), (f"#{parts.fragment}" if parts.fragment else "")


def safe_name(file_name: str) -> str:
    """The name a file is served under: its own, without folders, control characters or
    characters that mean something in a URL or a shell; Hangul and accents stay."""
    name = unicodedata.normalize("NFC", PurePosixPath(file_name.replace("\\", "/")).name)
    name = _UNSAFE.sub("-", name)
    # "__" could spell a layout's personal placeholder (mailer.releases.personalise).
    name = re.sub(r"_{2,}", "_", name).strip(".-_ ")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    ext = ext.lower()[:10]
    stem = stem[: _NAME_MAX - len(ext) - 1].rstrip(".-_ ") or "file"
    return f"{stem}.{ext}" if ext else stem


def media_url(base_url: str, sha256: str, name: str) -> str:
    """The absolute URL mailer serve answers for a stored file."""
    return f"{base_url.rstrip('/')}{MEDIA_PATH}/{sha256}/{quote(name)}"


# --- releases with their files --------------------------------------------------------------


def with_media(release: Release, media: Mapping[str, Sequence[MediaRef]]) -> Release:
    """`release` with each variant's local files (by language); a release with files gets a
    content hash over them too, so a new photo under an old name is a new version."""
    found = {lang: tuple(media.get(lang, ())) for lang in release.variants}
    if not any(found.values()):
        return release
    variants = {
        lang: replace(variant, media=found[lang]) for lang, variant in release.variants.items()
    }
    blob = json.dumps(
        {lang: [ref.as_json() for ref in refs] for lang, refs in found.items()},
        sort_keys=True,
        ensure_ascii=False,
    )
    digest = hashlib.sha256(f"{release.content_hash}\n{blob}".encode()).hexdigest()
    return replace(release, variants=variants, content_hash=digest)


def media_json(release: Release) -> dict[str, list[dict[str, Any]]]:
    """Each variant's files as stored with the release (languages without any left out)."""
    return {
        lang: [ref.as_json() for ref in variant.media]
        for lang, variant in release.variants.items()
        if variant.media
    }


def from_json(stored: Mapping[str, Any]) -> dict[str, tuple[MediaRef, ...]]:
    """The files of a stored release's variants ({language: {"source", "media"}})."""
    return {
        lang: tuple(MediaRef.from_json(item) for item in value.get("media", []))
        for lang, value in stored.items()
        if isinstance(value, Mapping)
    }


def files_of(release: Release) -> list[MediaFileInfo]:
    """Every stored file the release uses (originals and copies), each once."""
    seen: dict[str, MediaFileInfo] = {}
    for variant in release.variants.values():
        for ref in variant.media:
            for info in (ref.original, *ref.copies):
                seen.setdefault(info.sha256, info)
    return list(seen.values())


def with_query(release: Release, query: str) -> Release:
    """The same release with `?query` on every media URL (a grant: mailer.media.access)."""

    def add(info: MediaFileInfo) -> MediaFileInfo:
        return replace(info, url=f"{info.url.split('?', 1)[0]}?{query}")

    variants = {
        lang: replace(
            variant,
            media=tuple(
                replace(ref, original=add(ref.original), copies=tuple(add(c) for c in ref.copies))
                for ref in variant.media
            ),
        )
        for lang, variant in release.variants.items()
    }
    return replace(release, variants=variants)


# --- what the message and the page show -----------------------------------------------------


def by_ref(media: Iterable[MediaRef]) -> dict[str, MediaRef]:
    return {ref.ref: ref for ref in media}


def localise(tokens: Sequence[Token], media: Sequence[MediaRef]) -> None:
    """Point the body's local images and links at their stored files (in place): an image
    shows its 1x copy with the 2x one in srcset and its width; a link leads to the original."""
    if not media:
        return
    found = by_ref(media)
    for block in tokens:
        for tok in block.children or ():
            if tok.type == "image":
                ref = found.get(str(tok.attrGet("src") or ""))
                if ref is not None:
                    tok.attrSet("src", ref.src)
                    if ref.srcset:
                        tok.attrSet("srcset", ref.srcset)
                    tok.attrSet("width", str(ref.display_width))
            elif tok.type == "link_open":
                ref = found.get(str(tok.attrGet("href") or ""))
                if ref is not None:
                    tok.attrSet("href", ref.href)


def hero(url: str, alt: str, media: Sequence[MediaRef]) -> dict[str, Any]:
    """The header image as the layouts see it: url, alt, srcset ('' unless a local photo) and
    the width its <img> says."""
    ref = by_ref(media).get(url)
    if ref is None:
        return {"url": url, "alt": alt, "srcset": "", "width": BODY_WIDTH}
    return {"url": ref.src, "alt": alt, "srcset": ref.srcset, "width": ref.display_width}


def attachments(variant: ReleaseVariant) -> tuple[MediaFileInfo, ...]:
    """The files the variant sends as real attachments (`attach:`), each once."""
    found = by_ref(variant.media)
    out: dict[str, MediaFileInfo] = {}
    for name in variant.meta.attach:
        ref = found.get(name)
        if ref is not None:
            out.setdefault(ref.original.sha256, ref.original)
    return tuple(out.values())


def size_text(size: int) -> str:
    """'850 KB', '3.2 MB', '24 MB' (as a file manager shows it; a no-break space, so a
    wrapped line never leaves the unit alone)."""
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))}\u00a0KB"
    mb = size / (1024 * 1024)
    return f"{mb:.1f}\u00a0MB" if mb < 10 else f"{round(mb)}\u00a0MB"


def downloads(media: Sequence[MediaRef], attached: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The press kit of one variant: each file it names once, in order, as the Downloads
    section lists it (`name` is what the link says, `note` its file name, type and size)."""
    attach = set(attached)
    out: list[dict[str, Any]] = []
    index: dict[str, dict[str, Any]] = {}
    for ref in media:
        original = ref.original
        item = index.get(original.sha256)
        if item is not None:
            item["attached"] = item["attached"] or ref.ref in attach
            if not item["title"] and ref.title:
                item["title"] = item["name"] = ref.title
                item["note"] = _note(original, with_name=True)
            continue
        label = BY_TYPE[original.content_type].label if original.content_type in BY_TYPE else ""
        item = {
            "url": original.url,
            "name": ref.title or original.name,
            "title": ref.title,
            "file_name": original.name,
            "type": label,
            "size": size_text(original.size),
            "bytes": original.size,
            "dimensions": _dimensions(original),
            "note": _note(original, with_name=bool(ref.title)),
            "attached": ref.ref in attach,
        }
        index[original.sha256] = item
        out.append(item)
    return out


def _dimensions(info: MediaFileInfo) -> str:
    return f"{info.width}\u00a0×\u00a0{info.height}" if info.width and info.height else ""


def _note(info: MediaFileInfo, *, with_name: bool) -> str:
    label = BY_TYPE[info.content_type].label if info.content_type in BY_TYPE else ""
    parts = [info.name if with_name else "", label, _dimensions(info), size_text(info.size)]
    return ", ".join(part for part in parts if part)
