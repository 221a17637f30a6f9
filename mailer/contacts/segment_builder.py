"""Building a segment in the console: each expression checked on its own line, an unsaved
segment resolved for a preview, and a saved segment changed under `create_segment`'s rules.

Counting and previewing stay `segments.resolve` + `segments.preview`/`count`, exactly what
`mailer segments preview` runs, so the console and the CLI give the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer.contacts.filters import FilterError, parse
from mailer.contacts.segments import Audience, check_name, resolve
from mailer.errors import InvalidInputError
from mailer.store import audit
from mailer.store.models import Segment

MAX_EXPRESSIONS = 50
MAX_DESCRIPTION = 2000


@dataclass(frozen=True)
class ExpressionError:
    """One expression that is not one: its line in the form, the text and where it went wrong."""

    line: int  # 1-based, among the non-empty lines
    text: str
    pos: int  # 0-based character
    reason: str


def expressions_of(text: str) -> list[str]:
    """The expressions of a form's box: one per line, blank lines skipped (ANDed, as --where)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def shown(expressions: Sequence[str]) -> str:
    """Saved expressions back in the box, one per line (a line break inside one reads as a
    space to the filter language, so joining them cannot change what they mean)."""
    return "\n".join(" ".join(e.splitlines()) for e in expressions)


def expression_errors(expressions: Sequence[str]) -> list[ExpressionError]:
    """Every expression that does not parse (not only the first), with its line."""
    if len(expressions) > MAX_EXPRESSIONS:
        return [
            ExpressionError(
                MAX_EXPRESSIONS + 1,
                expressions[MAX_EXPRESSIONS],
                0,
                f"at most {MAX_EXPRESSIONS} expressions",
            )
        ]
    errors = []
    for line, text in enumerate(expressions, 1):
        try:
            parse(text)
        except FilterError as err:
            errors.append(ExpressionError(line, err.text, err.pos, err.reason))
    return errors


def line_of(err: FilterError, expressions: Sequence[str]) -> ExpressionError:
    """A FilterError raised while compiling (an unknown list in `list = x`) placed on its line."""
    line = next((i for i, e in enumerate(expressions, 1) if e == err.text), 1)
    return ExpressionError(line, err.text, err.pos, err.reason)


def audience(session: Session, lists: Sequence[str], expressions: Sequence[str]) -> Audience:
    """An unsaved segment resolved as a saved one would be: lists exist, every expression
    compiles (FilterError, NotFoundError or InvalidInputError otherwise)."""
    if not lists:
        raise InvalidInputError("choose at least one list: a segment is always part of lists")
    found = resolve(session, None, lists, expressions)
    found.condition(session)
    return found


def check_description(value: str) -> str:
    text = value.strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidInputError(f"description: {len(text)} characters, at most {MAX_DESCRIPTION}")
    return text


def name_taken(session: Session, name: str, but: int | None = None) -> bool:
    stmt = select(Segment.id).where(Segment.name == name)
    if but is not None:
        stmt = stmt.where(Segment.id != but)
    return session.scalar(stmt) is not None


def update_segment(
    session: Session,
    seg: Segment,
    name: str,
    lists: Sequence[str],
    where: Sequence[str],
    *,
    description: str = "",
    actor: str = "",
) -> Segment:
    """Change a saved segment; every check of create_segment first, nothing changed on error.

    Campaigns already planned from it keep the expressions they copied."""
    name = check_name(name)
    if name_taken(session, name, but=seg.id):
        raise InvalidInputError(f"a segment {name!r} already exists")
    text = check_description(description)
    found = audience(session, lists, where)
    before = seg.name
    seg.name = name
    seg.description = text
    seg.lists = list(found.lists)
    seg.expressions = list(found.expressions)
    session.flush()
    data: dict[str, Any] = {"lists": seg.lists, "expressions": seg.expressions}
    if before != name:
        data["renamed_from"] = before
    audit.record(session, "segment.update", actor=actor, segment=name, **data)
    return seg
