"""A release file's text as the console's editor shows it, and back: the front matter as form
fields (title, dateline, date, summary, contact, lists, embargo, expiry, image) and the body.

Saving rebuilds the file text from the form and the body. Only the keys the form owns are
written, and only when their value changed: every other key (subject, category, extra...),
comments and the order of the lines stay exactly as they were, so a save that changes nothing
gives the very same text (a version's diff shows what the person changed, nothing else).
No validation here: the drafts library checks the rebuilt text as `release check` reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from mailer.contacts.slugs import SLUG_RE

FENCE = "---"
# Keys of the release as a whole (mailer.releases.source.SHARED_KEYS): edited once, in the
# default language's file; the others inherit them.
SHARED_FIELDS = ("date", "lists", "embargo", "expires")
CONTACT_KEYS = ("name", "role", "email", "phone")
LANGUAGE_FIELDS = (
    "title",
    "dateline",
    "summary",
    "contact_name",
    "contact_role",
    "contact_email",
    "contact_phone",
    "image_url",
    "image_alt",
)
# Form field -> the top-level front matter key it lives under.
_KEY_OF = {
    **{name: name for name in ("title", "dateline", "summary", *SHARED_FIELDS)},
    **{f"contact_{k}": "contact" for k in CONTACT_KEYS},
    "image_url": "image",
    "image_alt": "image",
}
_ORDER = ("title", "dateline", "date", "summary", "lists", "embargo", "expires", "contact", "image")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\s*:")


@dataclass(frozen=True)
class Parts:
    """A release file cut at its fences: text before the front matter, the YAML, the closing
    fence line, the body (the pieces join back into the very same text)."""

    opening: str
    yaml_text: str
    closing: str
    body: str

    @property
    def text(self) -> str:
        return self.opening + self.yaml_text + self.closing + self.body


def split(text: str) -> Parts:
    """The file's parts; a text without front matter is all body."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].lstrip("\ufeff").rstrip("\r\n").rstrip() != FENCE:
        return Parts("", "", "", text)
    for i in range(1, len(lines)):
        if lines[i].rstrip("\r\n").rstrip() in (FENCE, "..."):
            return Parts(lines[0], "".join(lines[1:i]), lines[i], "".join(lines[i + 1 :]))
    return Parts("", "", "", text)


class _Loader(yaml.SafeLoader):
    """Timestamps stay text, as mailer.releases.source reads them."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: str(node.value))


def _data(yaml_text: str) -> dict[str, Any]:
    try:
        data = yaml.load(yaml_text, Loader=_Loader)  # a SafeLoader subclass
    except (yaml.YAMLError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def form_values(text: str) -> dict[str, str]:
    """The form's fields as the file has them ("" when absent)."""
    data = _data(split(text).yaml_text)
    out = {name: "" for name in (*LANGUAGE_FIELDS, *SHARED_FIELDS)}
    for name in ("title", "dateline", "summary", *SHARED_FIELDS):
        out[name] = _show(data.get(name))
    contact = data.get("contact")
    if isinstance(contact, dict):
        for key in CONTACT_KEYS:
            out[f"contact_{key}"] = _show(contact.get(key))
    image = data.get("image")
    if isinstance(image, dict):
        out["image_url"], out["image_alt"] = _show(image.get("url")), _show(image.get("alt"))
    elif image is not None:
        out["image_url"] = _show(image)
    return out


def body_of(text: str) -> str:
    return split(text).body


def _dump(key: str, value: Any) -> str:
    return yaml.safe_dump(
        {key: value}, allow_unicode=True, sort_keys=False, width=1_000_000, default_flow_style=False
    )


def _block(key: str, values: Mapping[str, str]) -> str:
    """The YAML lines of one key from the form ("" to leave the key out)."""
    if key == "contact":
        contact = {k: values[f"contact_{k}"] for k in CONTACT_KEYS if values[f"contact_{k}"]}
        return _dump(key, contact) if contact else ""
    if key == "image":
        url, alt = values["image_url"], values["image_alt"]
        if not url and not alt:
            return ""
        return _dump(key, {"url": url, "alt": alt} if alt else url)
    value = values[key]
    if not value:
        return ""
    if key == "lists":
        items = [item for item in re.split(r"[\s,]+", value) if item]
        shown = [item if SLUG_RE.match(item) else json.dumps(item) for item in items]
        return f"lists: [{', '.join(shown)}]\n"
    if key == "date" and _ISO_DATE.match(value):
        return f"date: {value}\n"
    return _dump(key, value)


def _blocks(yaml_text: str) -> list[tuple[str | None, str]]:
    """The YAML cut into top-level blocks: (key, its lines) or (None, a comment or blank)."""
    out: list[tuple[str | None, str]] = []
    for line in yaml_text.splitlines(keepends=True):
        match = _TOP_KEY.match(line)
        if match:
            out.append((match[1], line))
        elif out and out[-1][0] is not None and (line[:1] in (" ", "\t", "-") or not line.strip()):
            key, lines = out[-1]
            out[-1] = (key, lines + line)
        else:
            out.append((None, line))
    return out


def rebuild(text: str, values: Mapping[str, str], body: str, *, shared: bool) -> str:
    """`text` with the form's `values` and `body`. `shared`: the form edited the release-wide
    keys too (the default language's file); otherwise they are left as the file has them."""
    parts = split(text) if text else Parts(FENCE + "\n", "", FENCE + "\n", "")
    if not parts.opening:
        parts = Parts(FENCE + "\n", "", FENCE + "\n", parts.body)
    before = form_values(parts.text)
    fields = (*LANGUAGE_FIELDS, *(SHARED_FIELDS if shared else ()))
    wanted = {name: " ".join(values.get(name, "").split()) for name in fields}
    if "summary" in wanted:  # a summary may be a paragraph: only its ends are trimmed
        wanted["summary"] = values.get("summary", "").replace("\r\n", "\n").strip()
    changed = {_KEY_OF[name] for name in fields if wanted[name] != before[name]}
    merged = {**before, **wanted}
    lines: list[str] = []
    for key, block in _blocks(parts.yaml_text):
        if key is None or key not in changed:
            lines.append(block)
            continue
        lines.append(_block(key, merged))
        changed.discard(key)
    for key in _ORDER:  # keys the file did not have yet
        if key in changed:
            lines.append(_block(key, merged))
    old_body = parts.body
    new_body = body.replace("\r\n", "\n")
    if new_body == old_body.replace("\r\n", "\n"):
        new_body = old_body
    return parts.opening + "".join(lines) + parts.closing + new_body


def key_at(text: str, line: int) -> str | None:
    """The top-level front matter key whose lines hold file line `line` (1-based)."""
    parts = split(text)
    if not parts.opening:
        return None
    number = 2  # line 1 is the opening ---
    for key, block in _blocks(parts.yaml_text):
        count = block.count("\n") or 1
        if number <= line < number + count:
            return key
        number += count
    return None


def body_line(text: str, line: int) -> int | None:
    """Line `line` of the file as a line of the body (1-based), None when it is not in it."""
    parts = split(text)
    first = (parts.opening + parts.yaml_text + parts.closing).count("\n") + 1
    return line - first + 1 if line >= first else None


def line_text(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1].strip()[:200] if 0 < line <= len(lines) else ""


def skeleton(title: str, language: str, *, with_language: bool = False) -> str:
    """A new language's file: its title, and the body to write."""
    head = _dump("title", title)
    if with_language:
        head += f"language: {language}\n"
    return f"{FENCE}\n{head}{FENCE}\n\n"
