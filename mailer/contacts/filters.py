"""The contact filter language of `--where` (docs/segments.md): parsed here, compiled to SQL.

(Over 400 lines on purpose: the reader, the checks and the compiler share one small tree and
one set of field names; split apart, each half would need the other to be understood.)

One expression, e.g. `beat in (politics, elections) and not bounced_since 90d`, parses into a
small tree (Term, Not, BoolOp); `compile_where` turns the tree into one SQLAlchemy condition on
Contact, with every value a bound parameter (never text pasted into SQL). Nothing here loads
contacts into Python: a segment of a million contacts is counted and planned by the database.

A field's value is read as text; a missing attribute or NULL column reads as "". `=`, `!=`,
`in` and `~` ignore the case of A-Z on both engines (PostgreSQL also folds other scripts).
`< > <= >=` compare numbers when the value is a number (rows whose text is not a number never
match) and dates when it is an ISO date (rows whose text does not start with one never match).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from mailer import clock
from mailer.contacts.press import media_type
from mailer.errors import InvalidInputError
from mailer.store.models import (
    Bounce,
    Campaign,
    Click,
    Contact,
    ContactTag,
    Delivery,
    DeliveryStatus,
    MailingList,
    Subscription,
    SubscriptionStatus,
)

# Contact columns by their name in expressions; the press fields are columns too
# (mailer.contacts.press). Every one but language is NOT NULL ("" when unknown).
COLUMNS: dict[str, QueryableAttribute[Any]] = {
    "email": Contact.email,
    "name": Contact.name,
    "language": Contact.language,
    "outlet": Contact.organisation,
    "role": Contact.role,
    "beat": Contact.beat,
    "media_type": Contact.media_type,
    "region": Contact.region,
    "phone": Contact.phone,
}
NULLABLE = ("language",)
FIELD_ALIASES = {
    "organisation": "outlet",
    "organization": "outlet",
    "org": "outlet",
    "title": "role",
    "media": "media_type",
    "lang": "language",
    "telephone": "phone",
}
HISTORY = ("bounced_since", "sent_since", "subscribed_since")
DATES = ("created",)
SPECIAL = ("tag", "list")
# `clicked 12`: followed a link of campaign 12 themselves (human clicks, per-person lists only).
ENGAGEMENT = ("clicked",)
KNOWN = (*COLUMNS, *SPECIAL, *DATES, *HISTORY, *ENGAGEMENT)
ORDER_OPS = ("<", ">", "<=", ">=")
OPERATORS = ("=", "!=", "~", "in", *ORDER_OPS)
KEYWORDS = ("and", "or", "not", "in", "has")
# Bounce kinds that count as a bounce for `bounced_since` (mailer.bounces.parse).
BOUNCE_KINDS = ("hard", "soft", "block")

NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
DATE_PREFIX = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DURATION = re.compile(r"([0-9]{1,5})([hdw])")
_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


class FilterError(InvalidInputError):
    """A bad expression: the message shows it with a caret under the position."""

    def __init__(self, text: str, pos: int, message: str) -> None:
        self.text, self.pos, self.reason = text, pos, message
        shown = text.replace("\n", " ").replace("\t", " ")
        super().__init__(
            f"--where {text!r}: {message} (at character {pos + 1})\n  {shown}\n  {' ' * pos}^"
        )


# --- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A field as written: `kind` is column, attribute, tag, list, date, history or clicked."""

    kind: str
    name: str  # the canonical name (column or history name) or the attribute key
    pos: int


@dataclass(frozen=True)
class Term:
    field: Field
    op: str  # one of OPERATORS, or "has"
    values: tuple[str, ...]
    pos: int  # of the operator, for errors found when compiling


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" / "or"
    items: tuple[Node, ...]


Node = Term | Not | BoolOp


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # word, string, op, lparen, rparen, comma, end
    text: str
    pos: int


_STOP = set(" \t\r\n()=!<>~,\"'")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append(Token({"(": "lparen", ")": "rparen", ",": "comma"}[ch], ch, i))
            i += 1
        elif text.startswith(("!=", "<=", ">="), i):
            tokens.append(Token("op", text[i : i + 2], i))
            i += 2
        elif ch in "=<>~":
            tokens.append(Token("op", ch, i))
            i += 1
        elif ch in "\"'":
            start, i, chars = i, i + 1, []
            while i < n and text[i] != ch:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise FilterError(text, start, "unterminated quoted value")
            tokens.append(Token("string", "".join(chars), start))
            i += 1
        elif ch == "!":
            raise FilterError(text, i, "unknown operator '!' (use != or not)")
        else:
            start = i
            while i < n and text[i] not in _STOP and not text[i].isspace():
                i += 1
            tokens.append(Token("word", text[start:i], start))
    tokens.append(Token("end", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def error(self, token: Token, message: str) -> FilterError:
        return FilterError(self.text, token.pos, message)

    def keyword(self, word: str) -> bool:
        token = self.peek()
        return token.kind == "word" and token.text.lower() == word

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error(self.peek(), "empty expression")
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise self.error(token, f"unexpected {_shown(token)} (expected and, or, or the end)")
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while self.keyword("or"):
            self.take()
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else BoolOp("or", tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while self.keyword("and"):
            self.take()
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else BoolOp("and", tuple(items))

    def parse_not(self) -> Node:
        if self.keyword("not"):
            self.take()
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.peek()
        if token.kind == "lparen":
            self.take()
            node = self.parse_or()
            close = self.take()
            if close.kind != "rparen":
                raise self.error(
                    close,
                    f"expected ')' to close the '(' at character "
                    f"{token.pos + 1}, found {_shown(close)}",
                )
            return node
        if self.keyword("has"):
            self.take()
            field = self.parse_field()
            if field.kind in ("date", "history", "list", "clicked"):
                raise self.error(self.tokens[self.i - 1], f"`has` does not apply to {field.name}")
            return Term(field, "has", (), token.pos)
        field = self.parse_field()
        op = self.peek()
        if (
            field.kind in ("history", "clicked")
            and op.kind in ("word", "string")
            and op.text.lower() not in KEYWORDS
        ):
            # `bounced_since 90d`: the event happened since then; `clicked 12`: in campaign 12.
            return Term(
                field, "=" if field.kind == "clicked" else ">=", (self.take().text,), op.pos
            )
        if op.kind == "word" and op.text.lower() == "in":
            self.take()
            return Term(field, "in", self.parse_list(), op.pos)
        if op.kind != "op":
            want = {
                "history": "a date or duration, or < > <= >=",
                "clicked": "a campaign number (clicked 12)",
            }.get(field.kind, "an operator (= != in ~ < > <= >=)")
            raise self.error(op, f"expected {want} after {field.name!r}, found {_shown(op)}")
        self.take()
        value = self.take()
        if value.kind not in ("word", "string"):
            raise self.error(value, f"expected a value after {op.text}, found {_shown(value)}")
        return Term(field, op.text, (value.text,), op.pos)

    def parse_list(self) -> tuple[str, ...]:
        open_ = self.take()
        if open_.kind != "lparen":
            raise self.error(open_, f"expected '(' after in, found {_shown(open_)}")
        values: list[str] = []
        while True:
            value = self.take()
            if value.kind not in ("word", "string"):
                raise self.error(value, f"expected a value, found {_shown(value)}")
            values.append(value.text)
            sep = self.take()
            if sep.kind == "rparen":
                return tuple(values)
            if sep.kind != "comma":
                raise self.error(sep, f"expected ',' or ')', found {_shown(sep)}")

    def parse_field(self) -> Field:
        token = self.take()
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise self.error(token, f"expected a field name, found {_shown(token)}")
        word = token.text
        lower = word.lower()
        if lower.startswith(("attr.", "attribute.")):
            key = word.split(".", 1)[1]
            if not key:
                quoted = self.peek()
                if quoted.kind != "string" or quoted.pos != token.pos + len(word):
                    raise self.error(quoted, "expected an attribute name after " + word)
                key = self.take().text
            if not key or '"' in key:
                raise self.error(token, 'an attribute name must not be empty or contain "')
            return Field("attribute", key, token.pos)
        name = FIELD_ALIASES.get(lower, lower)
        if name in COLUMNS:
            return Field("column", name, token.pos)
        if name in SPECIAL:
            return Field(name, name, token.pos)
        if name in DATES:
            return Field("date", name, token.pos)
        if name in HISTORY:
            return Field("history", name, token.pos)
        if name in ENGAGEMENT:
            return Field("clicked", name, token.pos)
        raise self.error(
            token,
            f"unknown field {word!r} (fields: {', '.join(KNOWN)}; any other attribute: attr.NAME)",
        )


def _shown(token: Token) -> str:
    return "the end" if token.kind == "end" else repr(token.text)


def parse(text: str) -> Node:
    """The tree of one expression; FilterError (with a caret) when it is not one."""
    if len(text) > 2000:
        raise FilterError(text[:60], 0, "expression longer than 2000 characters")
    node = _Parser(text).parse()
    _check(text, node)
    return node


def _check(text: str, node: Node) -> None:
    """Operators and values each field accepts (so errors come before any SQL)."""
    if isinstance(node, Not):
        _check(text, node.item)
        return
    if isinstance(node, BoolOp):
        for item in node.items:
            _check(text, item)
        return
    kind, op = node.field.kind, node.op
    if kind in ("date", "history"):
        if op not in ORDER_OPS:
            raise FilterError(
                text,
                node.pos,
                f"{node.field.name} takes < > <= >= and a date or duration, not {op}",
            )
        parse_when(node.values[0], text, node.pos)
    elif kind == "clicked":
        if op not in ("=", "!=", "in"):
            raise FilterError(text, node.pos, f"clicked takes a campaign number, not {op}")
        for value in node.values:
            if not value.isascii() or not value.isdigit() or len(value) > 18:
                raise FilterError(
                    text,
                    node.pos,
                    f"clicked takes a campaign number (see `mailer campaigns ls`), not {value!r}",
                )
    elif kind in ("tag", "list") and op in ORDER_OPS:
        raise FilterError(text, node.pos, f"{kind} takes = != in ~, not {op}")
    elif kind == "list" and op == "~":
        raise FilterError(text, node.pos, "list takes = != in (a list's slug), not ~")
    elif op in ORDER_OPS and ordering(node.values[0]) is None:
        raise FilterError(
            text,
            node.pos,
            f"{op} compares numbers or dates: {node.values[0]!r} is neither (e.g. 10, 2026-01-31)",
        )


def parse_when(
    value: str, text: str = "", pos: int = 0, *, now: datetime | None = None
) -> datetime:
    """A duration back from now (90d, 12h, 4w) or an ISO date/time (UTC unless it says)."""
    match = DURATION.fullmatch(value.strip().lower())
    if match:
        return (now or clock.now()) - int(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise FilterError(
            text or value,
            pos,
            f"{value!r} is neither a duration (90d, 12h, 4w) nor a date (2026-01-31)",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def ordering(value: str) -> tuple[str, Any] | None:
    """("number", float) or ("date", 'YYYY-MM-DD...') for an ordering comparison, else None."""
    if NUMBER.fullmatch(value):
        return ("number", float(value))
    if DATE_PREFIX.match(value):
        return ("date", value)
    return None


# --- compiling ---------------------------------------------------------------------------------


@dataclass
class Context:
    """What compiling needs besides the tree: the engine, the time, the segment's lists."""

    session: Session
    now: datetime
    list_ids: Sequence[int] = ()

    @property
    def postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"


def compile_where(
    session: Session,
    expressions: Sequence[str],
    *,
    list_ids: Sequence[int] = (),
    now: datetime | None = None,
) -> ColumnElement[bool]:
    """One condition on Contact: every expression holds (several --where are ANDed)."""
    ctx = Context(session, now or clock.now(), list_ids)
    parts = [(text, parse(text)) for text in expressions]
    return and_(true(), *(_compile(ctx, text, node) for text, node in parts))


def _compile(ctx: Context, text: str, node: Node, nested: bool = False) -> ColumnElement[bool]:
    """`nested`: the node is inside an `or` (see _related)."""
    if isinstance(node, Not):
        return not_(_compile(ctx, text, node.item, nested))
    if isinstance(node, BoolOp):
        inside = nested or node.op == "or"
        items = [_compile(ctx, text, item, inside) for item in node.items]
        return and_(*items) if node.op == "and" else or_(*items)
    kind = node.field.kind
    if kind == "tag":
        return _tag(ctx, node, nested)
    if kind == "list":
        return _list(ctx, text, node, nested)
    if kind == "clicked":
        return _clicked(ctx, text, node, nested)
    if kind in ("date", "history"):
        return _when(ctx, node, nested)
    return _text(ctx, node, _value_of(node.field))


def _related(
    nested: bool,
    key: QueryableAttribute[Any],
    column: QueryableAttribute[Any],
    *where: ColumnElement[bool],
) -> ColumnElement[bool]:
    """A row of another table (tags, subscriptions, bounces, deliveries) is the contact's.

    Standing alone, EXISTS: PostgreSQL turns it (or NOT EXISTS) into a semi- or anti-join,
    costed from statistics. Inside an `or` no join can express it; EXISTS would then be a
    subquery per contact, which PostgreSQL prices as one index probe per row of the table, and
    a price that high switches on JIT compilation (0.3-0.7 s more for a 0.1 s count). So there
    it is `key IN (SELECT ...)`: one hashed subquery, run once and priced once. NULLs are left
    out of it, so NOT IN means what NOT EXISTS means."""
    if nested:
        return key.in_(select(column).where(column.is_not(None), *where))
    return exists().where(column == key, *where)


def _value_of(field: Field) -> ColumnElement[Any]:
    if field.kind == "column":
        column = COLUMNS[field.name]
        # lower() of exactly this expression is indexed (store.models.Contact), so `=` and
        # `in` use the index and PostgreSQL estimates from that index's statistics.
        return func.coalesce(column, "") if field.name in NULLABLE else column.expression
    return func.coalesce(Contact.attributes[field.name].as_string(), "")


def _wanted(field: Field, value: str) -> str:
    """A value as compared: a media type written as the importer stores it (신문 -> print)."""
    if field.kind == "column" and field.name == "media_type":
        return media_type(value) or value
    return value


def _lower(value: Any) -> ColumnElement[Any]:
    # Both sides lowered by the database, so one engine never disagrees with itself.
    return func.lower(literal(value, String) if isinstance(value, str) else value)


def _contains(ctx: Context, haystack: Any, needle: str) -> ColumnElement[bool]:
    # instr/strpos, not LIKE: a value's % and _ are then plain characters.
    find = func.strpos if ctx.postgres else func.instr
    return find(_lower(haystack), _lower(needle)) > 0


def _equals(field: Field, value: ColumnElement[Any], wanted: Sequence[str]) -> ColumnElement[bool]:
    """The field equals one of `wanted` (one IN, so PostgreSQL estimates it as one condition)."""
    lowered = _lower(value)
    same = (
        lowered == _lower(wanted[0])
        if len(wanted) == 1
        else lowered.in_([_lower(w) for w in wanted])
    )
    if field.kind == "column" and field.name == "language":
        # `language = ko` also takes ko-KR: a region does not change the language read.
        prefixes = [func.substr(lowered, 1, len(w) + 1) == _lower(w + "-") for w in wanted if w]
        return or_(same, *prefixes)
    return same


def _text(ctx: Context, node: Term, value: ColumnElement[Any]) -> ColumnElement[bool]:
    op = node.op
    wanted = [_wanted(node.field, v) for v in node.values]
    if op == "has":
        return value != ""
    if op in ("=", "in"):
        return _equals(node.field, value, wanted)
    if op == "!=":
        return not_(_equals(node.field, value, wanted))
    if op == "~":
        return _contains(ctx, value, wanted[0])
    kind, bound = ordering(node.values[0]) or ("", None)
    if kind == "number":
        pattern = _number_test(ctx, value)
        number = case((pattern, cast(value, Float)), else_=None)
        return and_(pattern, _order(op, number, literal(bound, Float)))
    pattern = _date_test(ctx, value)
    return and_(pattern, _order(op, func.substr(value, 1, len(str(bound))), literal(bound, String)))


def _number_test(ctx: Context, value: ColumnElement[Any]) -> ColumnElement[bool]:
    """The text is -?[0-9]+(.[0-9]+)? (NUMBER): SQLite has no regular expressions, so GLOBs."""
    if ctx.postgres:
        return value.op("~", is_comparison=True)(literal(r"^-?[0-9]+(\.[0-9]+)?$"))
    glob = value.op("GLOB", is_comparison=True)
    return and_(
        or_(glob(literal("[0-9]*")), glob(literal("-[0-9]*"))),
        not_(glob(literal("*[^0-9.-]*"))),  # only digits, dots and minus signs
        not_(glob(literal("?*-*"))),  # a minus sign only first
        not_(glob(literal("*.*.*"))),  # at most one dot
        not_(glob(literal("*."))),  # not ending in a dot
        not_(glob(literal("*-.*"))),
    )


def _date_test(ctx: Context, value: ColumnElement[Any]) -> ColumnElement[bool]:
    if ctx.postgres:
        return value.op("~", is_comparison=True)(literal("^[0-9]{4}-[0-9]{2}-[0-9]{2}"))
    date = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*"
    return value.op("GLOB", is_comparison=True)(literal(date))


def _order(
    op: str,
    left: ColumnElement[Any] | QueryableAttribute[Any],
    right: ColumnElement[Any] | datetime,
) -> ColumnElement[bool]:
    # Typed operands, not Any: a comparison with an Any operand is Any to mypy.
    if op == "<":
        return left < right
    if op == ">":
        return left > right
    if op == "<=":
        return left <= right
    return left >= right


# Subscriptions asked about by `list` and `subscribed_since`, under a name of their own: the
# planner's query is itself about one subscription per row (delivery.planning), and the
# unaliased table would be taken for that one.
_SUB = aliased(Subscription, name="sub_where")


def _tag(ctx: Context, node: Term, nested: bool) -> ColumnElement[bool]:
    if node.op == "has":
        return _related(nested, Contact.id, ContactTag.contact_id)
    if node.op == "~":
        found = _contains(ctx, ContactTag.tag, node.values[0])
        return _related(nested, Contact.id, ContactTag.contact_id, found)
    match = or_(*(_lower(ContactTag.tag) == _lower(v) for v in node.values))
    found = _related(nested, Contact.id, ContactTag.contact_id, match)
    return not_(found) if node.op == "!=" else found


def _list(ctx: Context, text: str, node: Term, nested: bool) -> ColumnElement[bool]:
    ids = dict(
        ctx.session.execute(
            select(MailingList.slug, MailingList.id).where(
                MailingList.slug.in_([v.lower() for v in node.values])
            )
        ).all()
    )
    for value in node.values:
        if value.lower() not in ids:
            raise FilterError(text, node.pos, f"no list {value!r} (see `mailer lists ls`)")
    found = _related(
        nested,
        Contact.id,
        _SUB.contact_id,
        _SUB.status == SubscriptionStatus.SUBSCRIBED,
        _SUB.list_id.in_(sorted(ids.values())),
    )
    return not_(found) if node.op == "!=" else found


def _clicked(ctx: Context, text: str, node: Term, nested: bool) -> ColumnElement[bool]:
    """Followed a link of one of these campaigns themselves: machine clicks (scanners opening
    every link) and opens never count; only per-person rows name anyone, so a campaign to an
    aggregate list (or a reader who switched tracking off) matches nobody."""
    wanted = sorted({int(v) for v in node.values})
    found_ids = set(ctx.session.scalars(select(Campaign.id).where(Campaign.id.in_(wanted))))
    for value in node.values:
        if int(value) not in found_ids:
            raise FilterError(text, node.pos, f"no campaign {value} (see `mailer campaigns ls`)")
    found = _related(
        nested,
        Contact.id,
        Click.contact_id,
        Click.campaign_id.in_(wanted),
        Click.kind == "click",
        Click.machine.is_(False),
    )
    return not_(found) if node.op == "!=" else found


def _when(ctx: Context, node: Term, nested: bool) -> ColumnElement[bool]:
    when = parse_when(node.values[0], now=ctx.now)
    name = node.field.name
    if name == "created":
        return _order(node.op, Contact.created_at, when)
    if name == "bounced_since":
        return _related(
            nested,
            Contact.email,
            Bounce.email,
            Bounce.kind.in_(BOUNCE_KINDS),
            _order(node.op, Bounce.created_at, when),
        )
    if name == "sent_since":
        return _related(
            nested,
            Contact.id,
            Delivery.contact_id,
            Delivery.status == DeliveryStatus.SENT,
            _order(node.op, Delivery.sent_at, when),
        )
    # subscribed_since: when the subscription (to one of the segment's lists) began.
    began = func.coalesce(_SUB.confirmed_at, _SUB.created_at)
    scope = [_SUB.list_id.in_(list(ctx.list_ids))] if ctx.list_ids else []
    return _related(
        nested,
        Contact.id,
        _SUB.contact_id,
        _SUB.status == SubscriptionStatus.SUBSCRIBED,
        _order(node.op, began, when),
        *scope,
    )


def describe(expressions: Sequence[str]) -> str:
    """Several --where as one line (for plans and reports)."""
    return " and ".join(f"({e})" if len(expressions) > 1 else e for e in expressions)
