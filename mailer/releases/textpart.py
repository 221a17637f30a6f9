"""The text part: Markdown tokens rendered as plain text wrapped at 72 columns.

Written from the same token stream as the HTML (not by stripping the HTML), so lists keep their
markers, quotes their '>', tables their columns and links their addresses. Widths are display
columns: a Hangul syllable takes two, so Korean lines wrap where a reader's terminal would.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from markdown_it.tree import SyntaxTreeNode

WIDTH = 72


def display_width(text: str) -> int:
    """Columns `text` takes in a monospace font (East Asian wide and full-width count two)."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch) or ch in "\u200b\u200c\u200d\ufeff":
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def wrap(text: str, width: int = WIDTH, first: str = "", rest: str | None = None) -> list[str]:
    """Greedy word wrap by display width; words longer than a line (URLs) are never broken."""
    rest = first if rest is None else rest
    lines: list[str] = []
    for segment in text.split("\n"):
        words = segment.split()
        prefix = first if not lines else rest
        if not words:
            lines.append(prefix.rstrip())
            continue
        line = prefix + words[0]
        used = display_width(line)
        for word in words[1:]:
            w = display_width(word)
            if used + 1 + w <= width:
                line += " " + word
                used += 1 + w
            else:
                lines.append(line)
                line = rest + word
                used = display_width(line)
        lines.append(line)
    return lines


def inline_text(node: SyntaxTreeNode) -> str:
    """The readable text of an inline node: links keep their address, breaks become newlines."""
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline", "html_inline"):
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "link":
            label = inline_text(child)
            href = str(child.attrs.get("href", ""))
            out.append(link_text(label, href))
        elif kind == "image":
            alt = inline_text(child).strip()
            out.append(f"[{alt}]" if alt else "")
        else:  # em, strong, s: their text, without markup
            out.append(inline_text(child))
    return "".join(out)


def link_text(label: str, href: str) -> str:
    """'label <href>', or just the address when the label already says it."""
    shown = href[len("mailto:") :] if href.startswith("mailto:") else href
    label = label.strip()
    if not label or label in (shown, href):
        return shown
    return f"{label} <{shown}>"


def render_blocks(
    nodes: Iterable[SyntaxTreeNode], width: int = WIDTH, tight: bool = False
) -> list[str]:
    """Block nodes to lines, one blank line between blocks (none inside tight list items)."""
    lines: list[str] = []
    for node in nodes:
        block = render_block(node, width)
        if not block:
            continue
        if lines and not tight:
            lines.append("")
        lines.extend(block)
    return lines


def render_block(node: SyntaxTreeNode, width: int) -> list[str]:
    kind = node.type
    if kind == "paragraph":
        return wrap(inline_text(node.children[0]), width)
    if kind == "heading":
        text = " ".join(inline_text(node.children[0]).split())
        lines = wrap(text, width)
        if node.tag in ("h1", "h2"):
            rule = "=" if node.tag == "h1" else "-"
            lines.append(rule * min(width, max(display_width(x) for x in lines)))
        return lines
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, width)
    if kind == "blockquote":
        inner = render_blocks(node.children, width - 2)
        return [("> " + x).rstrip() for x in inner]
    if kind in ("fence", "code_block"):
        return ["    " + x for x in node.content.rstrip("\n").split("\n")]
    if kind == "hr":
        return ["* * *"]
    if kind == "table":
        return _table(node, width)
    if kind == "html_block":  # only when raw HTML is enabled; keep it as text
        return node.content.rstrip("\n").split("\n")
    return render_blocks(node.children, width)


def _list(node: SyntaxTreeNode, width: int) -> list[str]:
    lines: list[str] = []
    start = int(node.attrs.get("start", 1)) if node.type == "ordered_list" else 1
    for i, item in enumerate(node.children):
        marker = f"{start + i}. " if node.type == "ordered_list" else "- "
        pad = " " * len(marker)
        loose = any(c.type == "paragraph" and not c.hidden for c in item.children)
        inner = render_blocks(item.children, width - len(marker), tight=not loose) or [""]
        if lines and loose:
            lines.append("")
        lines.append(marker + inner[0])
        lines.extend((pad + x) if x else "" for x in inner[1:])
    return lines


def _table(node: SyntaxTreeNode, width: int) -> list[str]:
    rows: list[list[str]] = []
    aligns: list[str] = []
    for section in node.children:  # thead, tbody
        for tr in section.children:
            cells = []
            for cell in tr.children:
                text = " ".join(inline_text(cell.children[0]).split()) if cell.children else ""
                cells.append(text)
                if not rows:
                    style = str(cell.attrs.get("style", ""))
                    aligns.append("right" if "right" in style else "left")
            rows.append(cells)
    if not rows:
        return []
    columns = max(len(r) for r in rows)
    rows = [r + [""] * (columns - len(r)) for r in rows]
    aligns += ["left"] * (columns - len(aligns))
    widths = [max(display_width(r[c]) for r in rows) for c in range(columns)]
    if sum(widths) + 2 * (columns - 1) <= width:

        def fmt(cells: list[str]) -> str:
            out = []
            for c, text in enumerate(cells):
                gap = " " * (widths[c] - display_width(text))
                out.append(gap + text if aligns[c] == "right" else text + gap)
            return "  ".join(out).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return [fmt(rows[0]), rule, *(fmt(r) for r in rows[1:])]
    # Too wide for a line: one record per row, "Header: value", so nothing is cut.
    lines: list[str] = []
    for row in rows[1:]:
        if lines:
            lines.append("")
        for head, value in zip(rows[0], row, strict=True):
            lines.extend(wrap(f"{head}: {value}", width, "", "  "))
    return lines
