"""The common YAML slips of a release's front matter, each told with its line, key and fix.

PyYAML's own words ("mapping values are not allowed here") name neither the key nor what to
type instead, and two slips are no YAML error at all, only a wrong value: a `- ` list under a
key that already has a value on its line is folded into that value, and ` #` in an unquoted
text starts a comment that cuts it short. `explain` turns a PyYAML error into a message with
the fix; `check_values` finds the silent slips in front matter that did parse.

Lines: `yaml_text` is the front matter without its opening '---' line, so its 0-based line i is
line i + 2 of the file.
"""

from __future__ import annotations

import json
import re

import yaml

# `key: value` (the key may be a list item: `- name: Kim`).
_KEY_LINE_RE = re.compile(
    r"^(?P<indent>[ \t]*)(?:- +)?(?P<key>[^\s:#'\"][^:#]*?):"
    r"(?:[ \t]+(?P<value>.*))?$"
)
# A plain (unquoted) value cannot start with these: YAML reads them as syntax.
_INDICATORS = "@`{[*&!|>%"
# The keys whose values are one line of text: a comment after them is a slip, not a note.
LIST_KEYS = ("lists",)
TEXT_KEYS = (
    "title",
    "subject",
    "subtitle",
    "dateline",
    "category",
    "summary",
    "name",
    "role",
    "alt",
)


def quoted(value: str) -> str:
    """`value` as a YAML string a user can paste: "double quotes" unless it holds some."""
    if '"' not in value and "\\" not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    return json.dumps(value, ensure_ascii=False)  # JSON strings are YAML double-quoted strings


def _file_line(index: int) -> int:
    return index + 2


def _key_at(lines: list[str], index: int) -> tuple[str, str] | None:
    """The key and the value written on line `index`, if it is a `key: value` line."""
    if not 0 <= index < len(lines):
        return None
    match = _KEY_LINE_RE.match(lines[index].rstrip("\r\n"))
    if match is None:
        return None
    return match["key"].strip(), (match["value"] or "").strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _parent_key(lines: list[str], index: int) -> tuple[int, str, str] | None:
    """The nearest `key: value` line above `index` indented no deeper: the key a stray line
    (a list item, a continuation) belongs to."""
    depth = _indent(lines[index])
    for above in range(index - 1, -1, -1):
        text = lines[above]
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        found = _key_at(lines, above)
        if found is not None and _indent(text) <= depth:
            return above, found[0], found[1]
        if _indent(text) < depth:
            return None
    return None


def _list_fix(key: str, value: str) -> str:
    if key not in LIST_KEYS:
        return (
            f"{key}: a '- ' line under a {key} that has a value on its own line; YAML "
            f"folds it into the text, and a {key} takes no list: write the {key} on one "
            f"line, in quotes: {key}: {quoted(value or '...')}"
        )
    return (
        f"{key}: a list under a key that has a value on its own line; write the key alone "
        f"and one item per line, indented by two spaces ({key}:\\n  - {value or 'first'}"
        f"\\n  - ...), or the whole list on one line: {key}: [{value or 'first'}, ...]"
    )


def explain(err: yaml.MarkedYAMLError, yaml_text: str, where: str) -> str | None:
    """'FILE:LINE: KEY: what is wrong; the fix', for the usual slips; None for any other."""
    lines = yaml_text.splitlines()
    problem = f"{err.problem or ''} {err.context or ''}"
    mark = err.problem_mark or err.context_mark
    index = mark.line if mark is not None else 0
    # An unclosed quote is found at the end of the text; it was opened where the context began.
    if "quoted scalar" in problem and err.context_mark is not None:
        start = err.context_mark.line
        found = _key_at(lines, start)
        if found is not None and found[1][:1] in ('"', "'"):
            key, value = found
            inner = value[1:].strip()
            fix = f"{value[0]}{inner}{value[0]}" if value[0] not in inner else quoted(inner)
            return (
                f"{where}:{_file_line(start)}: {key}: the quote {value[0]} is not closed "
                f"on its line; close it: {key}: {fix}"
            )
    # So is an unclosed [ or {: YAML reads on, to the next line's colon or the end.
    if "flow" in problem and err.context_mark is not None:
        start = err.context_mark.line
        found = _key_at(lines, start)
        if found is not None and found[1][:1] in ("[", "{"):
            key, value = found
            close = "]" if value[0] == "[" else "}"
            if close not in value:
                return (
                    f"{where}:{_file_line(start)}: {key}: the {value[0]} that starts the "
                    f"value is not closed on its line; close it ({key}: {value}{close}) "
                    f"or, for a text, put it in quotes: {key}: {quoted(value)}"
                )
    text = lines[index] if 0 <= index < len(lines) else ""
    tab_indent = "\t" in text[: _indent(text) + 1]
    if tab_indent or "'\\t'" in problem:
        found = _key_at(lines, index)
        named = f" {found[0]}:" if found is not None else ""
        if tab_indent:
            return (
                f"{where}:{_file_line(index)}:{named} a tab indents this line; YAML "
                f"indents with spaces only: replace each tab with two spaces"
            )
        return (
            f"{where}:{_file_line(index)}:{named} a tab on this line; YAML separates with "
            f"spaces only: replace the tab with a space (or quote the text that holds it)"
        )
    found = _key_at(lines, index)
    if "mapping values are not allowed" in problem and found is not None:
        key, value = found
        if ": " in value or value.endswith(":"):
            return (
                f"{where}:{_file_line(index)}: {key}: a colon followed by a space ends a key "
                f"in YAML, so a text with one must be quoted: put the {key} in quotes: "
                f"{key}: {quoted(value)}"
            )
        return (
            f"{where}:{_file_line(index)}: {key}: this line is indented differently from "
            f"the one above it; the keys of one block start in the same column"
        )
    if "found '-'" in problem or (
        0 <= index < len(lines) and lines[index].lstrip().startswith("- ")
    ):
        parent = _parent_key(lines, index)
        if parent is not None:
            above, key, value = parent
            return (
                f"{where}:{_file_line(index)}: {_list_fix(key, value)} (the key is on "
                f"line {_file_line(above)})"
            )
    if found is not None:
        key, value = found
        if len(value) > 1 and value[0] in ('"', "'") and value.endswith(value[0]):
            inner = value[1:-1]
            return (
                f"{where}:{_file_line(index)}: {key}: the quote {value[0]} inside the "
                f"{key} ends it early; put the {key} in quotes of the other kind: "
                f"{key}: {quoted(inner)}"
            )
        if value[:1] in ('"', "'"):
            return (
                f"{where}:{_file_line(index)}: {key}: the value starts with a quote, so it "
                f"ends at the next {value[0]}; put the whole {key} in quotes of the other "
                f"kind: {key}: {quoted(value)}"
            )
        if (value and value[0] in _INDICATORS) or value.startswith(("- ", "? ")):
            return (
                f"{where}:{_file_line(index)}: {key}: a value that starts with "
                f"{value[0]!r} must be quoted: {key}: {quoted(value)}"
            )
    return None


def check_values(node: yaml.MappingNode, yaml_text: str, where: str) -> str | None:
    """The first silent slip in front matter that parsed: a list folded into a text, or a text
    cut short by ' #'. None when there is none."""
    lines = yaml_text.splitlines()
    for key_node, value in node.value:
        key = str(key_node.value)
        if isinstance(value, yaml.MappingNode):
            found = check_values(value, yaml_text, where)
            if found is not None:
                return found
            continue
        if not isinstance(value, yaml.ScalarNode) or value.style is not None:
            continue  # only plain (unquoted) text is folded or cut by YAML
        first, last = value.start_mark.line, value.end_mark.line
        for index in range(first + 1, min(last, len(lines) - 1) + 1):
            item = lines[index].strip()
            if item == "-" or item.startswith("- "):
                written = lines[first][value.start_mark.column :].strip()
                return f"{where}:{_file_line(index)}: {_list_fix(key, written)}"
        if key in TEXT_KEYS and last < len(lines):
            rest = lines[last][value.end_mark.column :]
            if rest.strip().startswith("#"):
                whole = (value.value + rest.rstrip()).strip() if first == last else value.value
                return (
                    f"{where}:{_file_line(last)}: {key}: ' #' starts a comment in YAML, so "
                    f"the {key} would end at {value.value!r}; put the {key} in quotes: "
                    f"{key}: {quoted(whole)}"
                )
    return None
