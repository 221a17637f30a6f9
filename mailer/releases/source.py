"""Release files: NAME.md, or NAME.en.md + NAME.ko.md, each YAML front matter and a Markdown body.

The front matter is validated strictly (a misspelt key is an error; free keys go under `extra:`)
and every error names the file and the line. The full text of each file is kept in `sources`, so a
campaign stored in the database re-renders exactly what was planned (`release_from_sources`).

Longer than 400 lines: the validator of each front matter key sits beside the loader whose
file and line numbers its errors name.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from mailer.contacts.addresses import normalise as normalise_address
from mailer.contacts.slugs import SLUG_RE
from mailer.errors import InvalidInputError, ReleaseError
from mailer.releases.languages import choose, from_name
from mailer.releases.languages import normalise as normalise_language
from mailer.releases.yamlhints import check_values, explain

if TYPE_CHECKING:
    from mailer.media.refs import MediaRef

# A language suffix: NAME.en.md, NAME.ko.md, NAME.pt-br.md; also as people write them:
# NAME.ko_KR.md, NAME.KR.md, NAME.kor.md (normalise reads them: mailer.releases.languages).
_LANG_SUFFIX_RE = re.compile(
    r"^(?P<slug>.+)\.(?P<lang>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)\.md$"
)
# Any NAME.SOMETHING.md: a language written as a name (NAME.korean.md, NAME.한국어.md) is refused
# with the file name to use instead of being silently left out.
_ANY_SUFFIX_RE = re.compile(r"^(?P<slug>.+)\.(?P<word>[^.]+)\.md$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{1,8})*$")
_FENCE = "---"
# Keys that belong to the release, not to one language: a second variant may omit them (it
# inherits the default variant's value) but may not contradict them.
SHARED_KEYS = ("date", "lists", "embargo", "expires", "publish")
# The one key a variant gives in its own language yet may leave (partly) out is `contact`: what
# it leaves out it inherits from the default language's variant, field by field (the Korean file
# may name a Korean-speaking contact and keep the office's phone; _inherit_contact), and
# `release check` warns about each field so completed.
CONTACT_FIELDS = ("name", "role", "email", "phone")


@dataclass(frozen=True)
class MediaContact:
    """The media contact printed under the release."""

    name: str = ""  # required once inherited (a variant may take the default's)
    email: str = ""
    phone: str = ""
    role: str = ""
    # The fields the file wrote, empty ones too: `phone: ""` means no phone, not "inherit it".
    given: tuple[str, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Image:
    """The header image: an absolute URL and its alt text."""

    url: str
    alt: str = ""


@dataclass(frozen=True)
class FrontMatter:
    """The validated front matter of one language variant."""

    title: str
    subject: str | None = None
    subtitle: str | None = None
    date: date | None = None
    dateline: str | None = None
    category: str | None = None
    summary: str | None = None
    contact: MediaContact | None = None
    lists: tuple[str, ...] = ()
    embargo: datetime | None = None
    expires: datetime | None = None
    language: str | None = None
    image: Image | None = None
    # `publish: false` keeps the release off the public newsroom (mailer.newsroom); None: on it.
    publish: bool | None = None
    # Files of the release folder sent as real attachments (`attach: [guide-ko.pdf]`).
    attach: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    # 1-based line of the first body line in the file, so body findings can name their line.
    body_line: int = 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (stored with the release, printed by tools)."""
        out: dict[str, Any] = {}
        for key in FIELDS:
            value = getattr(self, key)
            if value is None or value == () or value == {}:
                continue
            if isinstance(value, date | datetime):
                value = value.isoformat()
            elif isinstance(value, MediaContact | Image):
                value = {k: v for k, v in value.__dict__.items() if v and k != "given"}
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[key] = value
        return out


@dataclass(frozen=True)
class ReleaseVariant:
    """One language of a release."""

    language: str
    path: Path | None
    meta: FrontMatter
    body: str  # the Markdown body, as written
    # What this variant took from the default language's: ("contact",) for the whole contact,
    # ("contact.email", ...) for some of its fields.
    inherited: tuple[str, ...] = ()
    # The local files it names, once stored (mailer.media.refs.with_media); () until then.
    media: tuple[MediaRef, ...] = ()

    @property
    def where(self) -> str:
        """How messages name this variant: its file, or the language for stored text."""
        return str(self.path) if self.path is not None else f"<{self.language}>"


@dataclass(frozen=True)
class Release:
    """A release in one or more languages."""

    slug: str
    variants: dict[str, ReleaseVariant]
    default_language: str
    sources: dict[str, str]
    content_hash: str

    @property
    def default(self) -> ReleaseVariant:
        return self.variants[self.default_language]

    @property
    def title(self) -> str:
        return self.default.meta.title

    @property
    def lists(self) -> tuple[str, ...]:
        return self.default.meta.lists

    @property
    def embargo(self) -> datetime | None:
        return self.default.meta.embargo

    @property
    def expires(self) -> datetime | None:
        return self.default.meta.expires

    @property
    def languages(self) -> tuple[str, ...]:
        """The variant languages, the default first."""
        others = sorted(lang for lang in self.variants if lang != self.default_language)
        return (self.default_language, *others)

    def pick_language(self, wanted: str | None) -> str:
        """The variant for readers of `wanted` (the one rule: mailer.releases.languages)."""
        return choose(wanted, self.variants, self.default_language)


# --- loading ------------------------------------------------------------------------------------


def find_release_files(path: str | Path) -> tuple[str, dict[str | None, Path]]:
    """The slug and files of the release at `path` (NAME.md, NAME.LANG.md or NAME).

    The key None is NAME.md (its language comes from its front matter); other keys are languages.
    """
    p = Path(path)
    folder = p.parent
    name = p.name
    match = _LANG_SUFFIX_RE.match(name)
    named = _ANY_SUFFIX_RE.match(name)
    if not match and named and from_name(named["word"]):
        raise ReleaseError(
            f"{p}: {named['word']!r} is a language name, not a code: name the "
            f"file {named['slug']}.{from_name(named['word'])}.md"
        )
    if match:
        slug = match["slug"]
    elif name.endswith(".md"):
        slug = name[:-3]
    else:
        slug = name
    if not slug:
        raise ReleaseError(f"{p}: not a release file name (expected NAME.md or NAME.LANG.md)")
    files: dict[str | None, Path] = {}
    plain = folder / f"{slug}.md"
    if plain.is_file():
        files[None] = plain
    if folder.is_dir():
        for candidate in sorted(folder.glob(f"{glob_escape(slug)}.*.md")):
            if not candidate.is_file():
                continue
            m = _LANG_SUFFIX_RE.match(candidate.name)
            if m and m["slug"] == slug:
                language = normalise_language(m["lang"])
                if language in files:
                    first = files[language]
                    raise ReleaseError(
                        f"{candidate}: a second {language!r} file (the first is {first.name}); "
                        f"keep one {slug}.{language}.md"
                    )
                files[language] = candidate
                continue
            named = _ANY_SUFFIX_RE.match(candidate.name)
            if named and named["slug"] == slug and from_name(named["word"]):
                right = from_name(named["word"])
                raise ReleaseError(
                    f"{candidate}: {named['word']!r} is a language name, not a code: name the "
                    f"file {slug}.{right}.md"
                )
    if not files:
        raise ReleaseError(
            f"{p}: no release found (looked for {slug}.md and {slug}.LANG.md in {folder})"
        )
    if p.suffix == ".md" and not p.is_file():
        raise ReleaseError(f"{p}: no such file")
    return slug, files


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def load_release(path: str | Path, default_language: str = "en") -> Release:
    """Read the release at `path` and its sibling language files; errors name the file and line."""
    slug, files = find_release_files(path)
    texts: dict[str | None, str] = {}
    for key, file in files.items():
        try:
            raw = file.read_bytes()
        except OSError as err:
            raise ReleaseError(f"{file}: cannot read: {err.strerror}") from None
        try:
            texts[key] = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ReleaseError(
                f"{file}: not UTF-8 text (byte {err.start}); save the file as UTF-8"
            ) from None
    return _build(slug, texts, files, default_language)


def release_from_sources(slug: str, sources: Mapping[str, str], default_language: str) -> Release:
    """The release from stored file texts ({language: text}), as load_release built it."""
    if default_language not in sources:
        raise ReleaseError(
            f"release {slug!r}: default language {default_language!r} has no source "
            f"(have {', '.join(sorted(sources)) or 'none'})"
        )
    texts: dict[str | None, str] = {lang: text for lang, text in sources.items()}
    return _build(slug, texts, {}, default_language, explicit_default=True)


def _build(
    slug: str,
    texts: Mapping[str | None, str],
    files: Mapping[str | None, Path],
    default_language: str,
    explicit_default: bool = False,
) -> Release:
    parsed: dict[str, ReleaseVariant] = {}
    sources: dict[str, str] = {}
    plain_language: str | None = None
    for key, text in texts.items():
        path = files.get(key)
        where = str(path) if path is not None else f"release {slug!r} <{key}>"
        meta, body = parse_release_text(text, where)
        if key is None:
            language = meta.language or default_language
            plain_language = language
        else:
            language = key
            if meta.language is not None and meta.language != language:
                raise ReleaseError(
                    f"{where}:{_key_line(text, 'language')}: language: {meta.language!r} "
                    f"contradicts the file name (.{language}.md)"
                )
        if language in parsed:
            other = parsed[language].where
            raise ReleaseError(f"{where}: a second {language!r} variant (the first is {other})")
        parsed[language] = ReleaseVariant(language, path, replace(meta, language=language), body)
        sources[language] = text
    if plain_language is not None and not explicit_default:
        default = plain_language
    elif default_language in parsed:
        default = default_language
    else:
        default = sorted(parsed)[0]
    variants = _inherit_contact(_share_keys(parsed, default, sources), default, sources)
    return Release(
        slug=slug,
        variants=variants,
        default_language=default,
        sources=sources,
        content_hash=content_hash(sources, default),
    )


def _share_keys(
    variants: dict[str, ReleaseVariant], default: str, sources: Mapping[str, str]
) -> dict[str, ReleaseVariant]:
    """The release-wide keys, given in any variant, agree and are set on every variant."""
    order = [default, *sorted(lang for lang in variants if lang != default)]
    shared: dict[str, Any] = {}
    for key in SHARED_KEYS:
        first: str | None = None
        for lang in order:
            value = getattr(variants[lang].meta, key)
            if value in (None, ()):
                continue
            if first is None:
                first, shared[key] = lang, value
            elif value != shared[key]:
                line = _key_line(sources[lang], key)
                raise ReleaseError(
                    f"{variants[lang].where}:{line}: {key}: {_show(value)} differs from "
                    f"{_show(shared[key])} in {variants[first].where} (a release has one "
                    f"{key}; give it in one file)"
                )
    return {
        lang: replace(variants[lang], meta=replace(variants[lang].meta, **shared)) for lang in order
    }


def _inherit_contact(
    variants: dict[str, ReleaseVariant], default: str, sources: Mapping[str, str]
) -> dict[str, ReleaseVariant]:
    """Each variant's contact completed field by field from the default variant's; a contact
    that still has no name is an error (every variant's readers must know whom to call)."""
    base = variants[default].meta.contact
    out: dict[str, ReleaseVariant] = {}
    for lang, variant in variants.items():
        contact = variant.meta.contact
        inherited: tuple[str, ...] = ()
        if lang != default and base is not None:
            if contact is None:
                contact, inherited = base, ("contact",)
            else:
                missing = [
                    name
                    for name in CONTACT_FIELDS
                    if name not in contact.given and getattr(base, name)
                ]
                contact = replace(contact, **{name: getattr(base, name) for name in missing})
                inherited = tuple(f"contact.{name}" for name in missing)
        if contact is not None and not contact.name:
            line = _key_line(sources[lang], "contact")
            raise ReleaseError(
                f"{variant.where}:{line}: contact: name: missing (the media contact's name)"
            )
        out[lang] = replace(
            variant, meta=replace(variant.meta, contact=contact), inherited=inherited
        )
    return out


def _show(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return repr(list(value))
    return repr(value)


def content_hash(sources: Mapping[str, str], default_language: str) -> str:
    """sha256 over the languages, their file texts and the default language."""
    blob = json.dumps(
        {"default": default_language, "sources": dict(sorted(sources.items()))},
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --- front matter -------------------------------------------------------------------------------


def split_front_matter(text: str, where: str) -> tuple[str, str, int]:
    """The YAML text, the body, and the 1-based file line where the body starts."""
    text = text.lstrip("\ufeff")
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n").rstrip() != _FENCE:
        raise ReleaseError(
            f"{where}:1: a release starts with YAML front matter between '---' lines "
            "(title: ... at least)"
        )
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n").rstrip() in (_FENCE, "..."):
            yaml_text = "".join(lines[1:i])
            body = "".join(lines[i + 1 :])
            return yaml_text, body, i + 2
    raise ReleaseError(f"{where}:1: the front matter is not closed (no second '---' line)")


def parse_release_text(text: str, where: str) -> tuple[FrontMatter, str]:
    """Split and validate one release file's text; `where` names it in errors."""
    yaml_text, body, body_line = split_front_matter(text, where)
    node = _compose(yaml_text, where)
    if node is None:
        raise ReleaseError(f"{where}:2: the front matter is empty (title: ... at least)")
    if not isinstance(node, yaml.MappingNode):
        raise ReleaseError(
            f"{where}:{node.start_mark.line + 2}: the front matter must be 'key: value' lines"
        )
    slip = check_values(node, yaml_text, where)
    if slip is not None:
        raise ReleaseError(slip)
    lines: dict[str, int] = {}
    for key_node, _value in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
        line = key_node.start_mark.line + 2
        if key in lines:
            raise ReleaseError(f"{where}:{line}: {key}: given twice (first on line {lines[key]})")
        lines[key] = line
    try:
        data = yaml.load(yaml_text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        raise ReleaseError(_yaml_message(err, where, yaml_text)) from None
    except ValueError as err:  # a number beyond Python's limit of 4300 digits
        raise ReleaseError(f"{where}: bad value in the front matter: {err}") from None
    meta = _validate(data, lines, where)
    return replace(meta, body_line=body_line), body


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as text: the validators parse them and say what is
    wrong (PyYAML itself fails on 2024-13-45 with a bare ValueError)."""


def _timestamp_as_text(loader: _Loader, node: yaml.Node) -> str:
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


# A front matter is a few lines of keys. Far larger or deeper ones are refused before PyYAML
# builds anything: its scanner takes quadratic time in nested flow brackets (20,000 '[' run for
# minutes) and its composer recurses once per level (RecursionError, a traceback).
_MAX_FRONT_MATTER = 64 * 1024
_MAX_DEPTH = 16


def _refuse_aliases(yaml_text: str, where: str) -> None:
    """ReleaseError at the first anchor (&name) or alias (*name) of the front matter, or at a
    value nested more than _MAX_DEPTH deep.

    A few lines of nested aliases (a "billion laughs") expand to more values than memory
    holds, and a press release has no use for them; the event stream is read before anything
    is built from it, so refusing costs one pass over the text (and stops at the offence: the
    events are scanned lazily)."""
    depth = 0
    try:
        for event in yaml.parse(yaml_text, Loader=_Loader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > _MAX_DEPTH:
                    line = event.start_mark.line + 2 if event.start_mark is not None else 2
                    raise ReleaseError(
                        f"{where}:{line}: the front matter nests values more than {_MAX_DEPTH} deep"
                    )
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
            name = getattr(event, "anchor", None)
            if name is not None:
                sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
                line = event.start_mark.line + 2 if event.start_mark is not None else 2
                raise ReleaseError(
                    f"{where}:{line}: YAML anchors and aliases "
                    f"({sign}{name}) are not allowed in the front matter; write the value out"
                )
    except yaml.YAMLError:
        return  # malformed YAML: _compose reports it with its line


def _compose(yaml_text: str, where: str) -> yaml.Node | None:
    if len(yaml_text) > _MAX_FRONT_MATTER:
        raise ReleaseError(
            f"{where}:2: the front matter is {len(yaml_text) // 1024} KB long; "
            f"at most {_MAX_FRONT_MATTER // 1024} KB"
        )
    _refuse_aliases(yaml_text, where)
    try:
        return yaml.compose(yaml_text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        raise ReleaseError(_yaml_message(err, where, yaml_text)) from None
    except yaml.YAMLError as err:
        raise ReleaseError(f"{where}: bad YAML in the front matter: {err}") from None


def _yaml_message(err: yaml.MarkedYAMLError, where: str, yaml_text: str) -> str:
    """'FILE:LINE: KEY: the slip; the fix' for the usual slips (mailer.releases.yamlhints), else
    'FILE:LINE: bad YAML ...', with where the broken construct began when that differs."""
    hint = explain(err, yaml_text, where)
    if hint is not None:
        return hint
    mark = err.problem_mark or err.context_mark
    line = mark.line + 2 if mark is not None else 2  # +1 for 1-based, +1 for the --- line
    message = f"{where}:{line}: bad YAML in the front matter: {err.problem or err.context}"
    if err.context and err.context_mark is not None and err.context_mark.line + 2 != line:
        message += f" ({err.context} that starts on line {err.context_mark.line + 2})"
    return message


def _key_line(text: str, key: str) -> int:
    """The file line of a top-level front matter key (1 when it cannot be found)."""
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if line.startswith(f"{key}:"):
            return number
    return 1


def _validate(data: dict[Any, Any], lines: Mapping[str, int], where: str) -> FrontMatter:
    values: dict[str, Any] = {}
    for key, raw in data.items():
        line = lines.get(str(key), 2)
        at = f"{where}:{line}: {key}"
        if not isinstance(key, str) or key not in _VALIDATORS:
            hint = _suggest(str(key))
            raise ReleaseError(
                f"{where}:{line}: unknown front matter key {key!r}"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + "; free keys go under 'extra:'"
            )
        if raw is None:
            continue  # `subtitle:` with nothing after it means no subtitle
        values[key] = _VALIDATORS[key](raw, at)
    if "title" not in values:
        raise ReleaseError(f"{where}:2: title: missing (every release needs a title)")
    return FrontMatter(**values)


def _suggest(key: str) -> str | None:
    close = difflib.get_close_matches(key.lower(), list(_VALIDATORS), n=1, cutoff=0.6)
    return close[0] if close else None


def _text(raw: Any, at: str, *, required: bool = False) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        hint = " (put quotes around it)" if isinstance(raw, bool | date) else ""
        raise ReleaseError(f"{at}: expected text, got {raw!r}{hint}")
    value = str(raw).strip()
    if required and not value:
        raise ReleaseError(f"{at}: must not be empty")
    return value


def _title(raw: Any, at: str) -> str:
    value = _text(raw, at, required=True)
    if "\n" in value:
        raise ReleaseError(f"{at}: must be one line")
    return value


def _date(raw: Any, at: str) -> date:
    if isinstance(raw, datetime):
        return raw.date()
    if isinstance(raw, date):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise ReleaseError(f"{at}: expected a date like 2020-11-07, got {raw!r}")


def _datetime(raw: Any, at: str) -> datetime:
    """An aware date-time: ISO with an offset, or ISO followed by an IANA zone name."""
    value: datetime | None = None
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, date):
        value = datetime.combine(raw, time())
    elif isinstance(raw, str):
        text = raw.strip()
        zone_name = None
        if (" " in text and "/" in text.rsplit(" ", 1)[1]) or text.endswith((" UTC", " Z")):
            text, zone_name = text.rsplit(" ", 1)
        try:
            value = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            value = None
        if value is not None and zone_name is not None:
            if value.tzinfo is not None:
                raise ReleaseError(f"{at}: give either an offset or a zone name, not both")
            try:
                zone = ZoneInfo("UTC" if zone_name in ("UTC", "Z") else zone_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ReleaseError(f"{at}: unknown time zone {zone_name!r}") from None
            value = value.replace(tzinfo=zone)
    if value is None:
        raise ReleaseError(
            f"{at}: expected a date-time with a zone, e.g. 2020-11-07T09:00:00-05:00 "
            f"or '2020-11-07 09:00 America/New_York', got {raw!r}"
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise ReleaseError(
            f"{at}: {raw!s} has no time zone; write e.g. 2020-11-07T09:00:00-05:00 "
            "or '2020-11-07 09:00 America/New_York'"
        )
    return value


def _mapping(raw: Any, at: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ReleaseError(f"{at}: expected keys {', '.join(allowed)} (one per line), got {raw!r}")
    for key in raw:
        if key not in allowed:
            raise ReleaseError(f"{at}: unknown key {key!r} (allowed: {', '.join(allowed)})")
    return raw


def _contact(raw: Any, at: str) -> MediaContact:
    data = _mapping(raw, at, CONTACT_FIELDS)
    # No name is no error yet: the default variant's contact may complete it (_inherit_contact).
    given = {k: _text(v, f"{at}.{k}") for k, v in data.items() if v is not None}
    contact = MediaContact(**given, given=tuple(given))
    if contact.email:
        try:
            normalise_address(contact.email)
        except InvalidInputError as err:
            raise ReleaseError(f"{at}.email: {err}") from None
    return contact


def _image(raw: Any, at: str) -> Image:
    if isinstance(raw, str):
        return Image(url=_text(raw, at, required=True))
    data = _mapping(raw, at, ("url", "alt"))
    if data.get("url") is None:
        raise ReleaseError(f"{at}: url: missing")
    return Image(
        url=_text(data["url"], f"{at}.url", required=True),
        alt=_text(data.get("alt") or "", f"{at}.alt"),
    )


def _lists(raw: Any, at: str) -> tuple[str, ...]:
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ReleaseError(f"{at}: expected a list of list names, got {raw!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not SLUG_RE.match(item):
            raise ReleaseError(f"{at}: not a list name: {item!r} (see `mailer lists ls`)")
        if item not in out:
            out.append(item)
    return tuple(out)


def _flag(raw: Any, at: str) -> bool:
    if not isinstance(raw, bool):
        raise ReleaseError(f"{at}: expected true or false, got {raw!r}")
    return raw


def _attach(raw: Any, at: str) -> tuple[str, ...]:
    """File names in the release folder (checked, like every local file, by mailer.media)."""
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ReleaseError(f"{at}: expected a list of file names, e.g. [guide-ko.pdf], got {raw!r}")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise ReleaseError(f"{at}: not a file name: {item!r}")
        if item.strip() not in out:
            out.append(item.strip())
    return tuple(out)


def _language(raw: Any, at: str) -> str:
    text = _text(raw, at, required=True)
    value = normalise_language(from_name(text) or text)
    if not _LANG_RE.match(value):
        raise ReleaseError(f"{at}: not a language code: {raw!r} (expected e.g. en or ko)")
    return value


def _extra(raw: Any, at: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ReleaseError(f"{at}: expected 'key: value' lines, got {raw!r}")
    # Round-trip through JSON so the stored front matter stays JSON (dates become text).
    return dict(json.loads(json.dumps(raw, default=str)))


_VALIDATORS: dict[str, Callable[[Any, str], Any]] = {
    "title": _title,
    "subject": _title,
    "subtitle": _text,
    "date": _date,
    "dateline": _text,
    "category": _text,
    "summary": _text,
    "contact": _contact,
    "lists": _lists,
    "embargo": _datetime,
    "expires": _datetime,
    "language": _language,
    "image": _image,
    "publish": _flag,
    "attach": _attach,
    "extra": _extra,
}
FIELDS = tuple(_VALIDATORS)
