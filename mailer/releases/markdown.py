"""Markdown -> body HTML and body text: one token stream for both, the dateline leading.

markdown-it-py, CommonMark plus tables, raw HTML off. The text part is written from the same tokens
(releases/textpart.py), never by stripping the HTML. Everything the author wrote is neutralised
(releases/personalise.py) so it cannot fake a personal placeholder.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

from mailer.media.refs import MediaRef, localise
from mailer.releases import textpart
from mailer.releases.personalise import neutralise
from mailer.releases.source import ReleaseVariant

PREHEADER_CHARS = 140

# Raw HTML in a release is shown as text: the body is data, and a stray <style> or <script> must
# not reach the reader.
# Typographer: dashes and ellipses, as a printed release would have them; curly quotes come from
# _pair_quotes below, not from markdown-it's smartquotes, which decides by the characters on
# both sides as for English: in `그는 '...아니다'라는` the opening quote stands before
# punctuation and the closing one before a Hangul syllable, and it left the first straight
# while curling the second.
_MD = MarkdownIt("commonmark", {"html": False, "typographer": True}).enable(
    ["table", "strikethrough", "replacements"]
)
_MD.disable("smartquotes")
# A quote opens at the start of a paragraph or after a space or an opening bracket, dash or
# quote, and closes before a space or punctuation. Between two other characters a ' is an
# apostrophe (the same ’ as a closing quote: "don't") and a " closes the one left open, else
# opens (Korean puts particles right after a closing quote: "했다"고, '아니다'라는).
_OPEN_AFTER = frozenset(" \t\n\u00a0\u3000([{<‘“«—–-/")
_CLOSE_BEFORE = frozenset(" \t\n\u00a0\u3000)]}>.,;:!?…*_—–-")
_CURLY = {'"': ("“", "”"), "'": ("‘", "’")}


def _curl(text: str, before: str, open_doubles: int) -> tuple[str, str, int]:
    """`text` with its straight quotes curled, given the character before it and how many
    double quotes are open; with its last character and the double quotes then open."""
    out: list[str] = []
    for i, ch in enumerate(text):
        pair = _CURLY.get(ch)
        if pair is not None:
            after = text[i + 1] if i + 1 < len(text) else ""
            if before in _OPEN_AFTER:
                opening = True
            elif after == "" or after in _CLOSE_BEFORE or ch == "'":
                opening = False
            else:
                opening = open_doubles == 0
            if ch == '"':
                open_doubles = open_doubles + 1 if opening else max(0, open_doubles - 1)
            ch = pair[0] if opening else pair[1]
        out.append(ch)
        before = ch
    return "".join(out), before, open_doubles


def _pair_quotes(state: StateCore) -> None:
    """Curl the quotes of every text run, carrying what came before across emphasis and links
    (code spans are left as written)."""
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        before, open_doubles = " ", 0
        for tok in block.children:
            if tok.type == "text":
                tok.content, before, open_doubles = _curl(tok.content, before, open_doubles)
            elif tok.type in ("softbreak", "hardbreak"):
                before = " "
            elif tok.type == "code_inline" and tok.content:
                before = tok.content[-1]


_MD.core.ruler.push("pair_quotes", _pair_quotes)


@dataclass(frozen=True)
class BodyLink:
    """A link or image in a release body, with the file line it is written on."""

    kind: Literal["link", "image"]
    url: str
    text: str  # link text or image alt text
    line: int


def _tokens(
    markdown: str, lead: str | None, lead_html: str | None, media: Sequence[MediaRef] = ()
) -> list[Token]:
    """The body's tokens; `lead` (the dateline) starts the first paragraph, as in print; local
    images and links lead to their stored files (`media`)."""
    tokens = _MD.parse(markdown)
    localise(tokens, media)
    if lead is None:
        return tokens
    for i, tok in enumerate(tokens):
        if tok.type == "paragraph_open" and tok.level == 0 and i + 1 < len(tokens):
            inline_tok = tokens[i + 1]
            lead_tok = Token("html_inline", "", 0, content=lead_html or "")
            text_tok = Token("text", "", 0, content=lead)
            inline_tok.children = [
                lead_tok if lead_html is not None else text_tok,
                *(inline_tok.children or []),
            ]
            return tokens
    # No paragraph to lead (a body of headings or lists): the dateline gets its own.
    extra = _MD.parse("x")
    extra[1].children = [
        Token("html_inline", "", 0, content=lead_html or "")
        if lead_html is not None
        else Token("text", "", 0, content=lead)
    ]
    return extra + tokens


def body_html(variant: ReleaseVariant) -> str:
    """The body as HTML, the dateline leading the first paragraph; placeholders neutralised."""
    dateline = variant.meta.dateline
    lead_html = (
        f'<strong class="dateline">{html_lib.escape(dateline)}</strong> – ' if dateline else None
    )
    tokens = _tokens(variant.body, f"{dateline} – " if dateline else None, lead_html, variant.media)
    return neutralise(_MD.renderer.render(tokens, _MD.options, {}))


def body_text(variant: ReleaseVariant, width: int = textpart.WIDTH) -> str:
    """The body as plain text wrapped at `width` columns; placeholders neutralised."""
    dateline = variant.meta.dateline
    tokens = _tokens(variant.body, f"{dateline} – " if dateline else None, None, variant.media)
    return neutralise("\n".join(textpart.render_blocks(SyntaxTreeNode(tokens).children, width)))


def markdown_html(text: str) -> str:
    """Settings text (the boilerplate) as HTML."""
    return neutralise(_MD.render(text))


def markdown_text(text: str, width: int = textpart.WIDTH) -> str:
    tokens = _MD.parse(text)
    return neutralise("\n".join(textpart.render_blocks(SyntaxTreeNode(tokens).children, width)))


def body_links(variant: ReleaseVariant) -> list[BodyLink]:
    """Every link and image of the body, with the file line each is on."""
    root = SyntaxTreeNode(_MD.parse(variant.body))
    offset = variant.meta.body_line
    return list(_walk_links(root, offset, offset))


def _walk_links(node: SyntaxTreeNode, offset: int, line: int) -> Iterator[BodyLink]:
    if not node.is_root and node.map:
        line = offset + node.map[0]
    if node.type == "link":
        yield BodyLink("link", str(node.attrs.get("href", "")), textpart.inline_text(node), line)
    elif node.type == "image":
        yield BodyLink(
            "image", str(node.attrs.get("src", "")), textpart.inline_text(node).strip(), line
        )
    for child in node.children:
        yield from _walk_links(child, offset, line)


def preheader_text(variant: ReleaseVariant) -> str:
    """The hidden preview line: `summary`, else the start of the body."""
    if variant.meta.summary:
        return neutralise(" ".join(variant.meta.summary.split()))
    text = " ".join(body_text(variant, width=10_000).split())
    if len(text) <= PREHEADER_CHARS:
        return text
    cut = text[:PREHEADER_CHARS].rsplit(" ", 1)[0]
    return cut + "…"
