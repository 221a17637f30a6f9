"""The --where language: generated expressions give the rows a Python reading of them gives.

Expressions are generated as trees (hypothesis), written out as text, parsed and compiled by
mailer.contacts.filters and run by the database (SQLite and PostgreSQL); the same tree is
evaluated here in Python over the same contacts, independently of the parser. Random text must
either parse and run or be a FilterError: never a database error or a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mailer.contacts.filters import BoolOp, FilterError, compile_where, parse
from mailer.contacts.press import media_type
from mailer.store.models import (
    Bounce,
    Campaign,
    CampaignStatus,
    Contact,
    ContactTag,
    Delivery,
    DeliveryStatus,
    MailingList,
    Release,
    Subscription,
    SubscriptionStatus,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WORDS = [
    "politics",
    "Politics",
    "elections",
    "PA",
    "pa",
    "Philadelphia",
    "ko",
    "KO",
    "en",
    "ko-KR",
    "10",
    "7",
    "-3",
    "2.5",
    "007",
    "2026-01-01",
    "2025-12-31",
    "정치",
    "경제",
    "신문",
    "50%",
    "a_b",
    "O'Brien",
    'x"y',
    "",
    "TV",
    "print",
    "2024-expo",
    "Expo",
]
ALPHABET = "abcAB01-.%_'\" 가나"


def _ascii_lower(value: str) -> str:
    # The engines' lower() agree on A-Z; the generated text has no other cased letters.
    return value.translate(
        str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
    )


# --- the data ----------------------------------------------------------------------------------


@dataclass
class Person:
    id: int
    email: str
    fields: dict[str, str | None]
    attributes: dict[str, str]
    tags: list[str]
    created: datetime
    subscribed: list[datetime]
    bounces: list[tuple[str, datetime]]
    sent: list[datetime]


def build_people(session: Session) -> list[Person]:
    ml = MailingList(slug="press", name="Press")
    session.add(ml)
    release = Release(
        slug="r",
        title="R",
        default_language="en",
        front_matter={},
        variants={},
        content_hash="0" * 64,
    )
    session.add(release)
    session.flush()
    campaign = Campaign(
        release_id=release.id, audience_key="k", audience={}, status=CampaignStatus.DONE, plan={}
    )
    session.add(campaign)
    session.flush()
    people: list[Person] = []
    values = WORDS[:-4]
    for i in range(24):
        created = NOW - timedelta(days=10 * i, seconds=i)
        attrs: dict[str, str] = {}
        if i % 4 == 0:
            attrs["Twitter handle"] = values[(i * 3) % len(values)]
        if i % 5 == 1:
            attrs["beat"] = values[(i * 3) % len(values)]  # an attribute named like a field
        fields = {
            "email": f"p{i}@example.org",
            "name": values[(i * 11) % len(values)],
            "language": [None, "ko", "en", "ko-KR", "KO", "pt-BR"][i % 6],
            "outlet": values[(i * 13) % len(values)],
            # The press fields are columns (mailer.contacts.press); "" when unknown.
            "beat": values[i % len(values)],
            "region": values[(i * 5) % len(values)],
            "phone": values[(i * 7) % len(values)] if i % 3 else "",
            "role": values[(i * 17) % len(values)] if i % 2 else "",
            "media_type": ["print", "TV", "radio", "", "podcast", "online"][i % 6],
        }
        c = Contact(
            email=fields["email"],
            email_original=fields["email"],
            name=fields["name"] or "",
            language=fields["language"],
            organisation=fields["outlet"] or "",
            beat=fields["beat"],
            region=fields["region"],
            phone=fields["phone"],
            role=fields["role"],
            media_type=fields["media_type"],
            attributes=attrs,
            created_at=created,
        )
        session.add(c)
        session.flush()
        tags = [t for t in ([WORDS[-1]] if i % 2 else []) + (["politics"] if i % 5 == 0 else [])]
        for t in tags:
            session.add(ContactTag(contact_id=c.id, tag=t))
        status = SubscriptionStatus.UNSUBSCRIBED if i % 7 == 3 else SubscriptionStatus.SUBSCRIBED
        began = NOW - timedelta(days=15 * i)
        session.add(
            Subscription(
                contact_id=c.id,
                list_id=ml.id,
                status=status,
                confirmed_at=began if i % 2 else None,
                created_at=began,
            )
        )
        bounces = []
        if i % 3 == 0:
            kind = ["hard", "soft", "autoreply"][i % 9 // 3]
            at = NOW - timedelta(days=20 * i + 1)
            session.add(
                Bounce(source_message_id=f"<b{i}@x>", email=c.email, kind=kind, created_at=at)
            )
            bounces.append((kind, at))
        sent = []
        if i % 4 != 1:
            at = NOW - timedelta(days=8 * i + 2)
            status_d = DeliveryStatus.SENT if i % 4 != 2 else DeliveryStatus.FAILED
            session.add(
                Delivery(
                    campaign_id=campaign.id,
                    contact_id=c.id,
                    list_id=ml.id,
                    email=c.email,
                    language="en",
                    status=status_d,
                    message_id=f"<m{i}@x>",
                    sent_at=at if status_d == DeliveryStatus.SENT else None,
                )
            )
            if status_d == DeliveryStatus.SENT:
                sent.append(at)
        people.append(
            Person(
                c.id,
                c.email,
                fields,
                attrs,
                tags,
                created,
                [began] if status == SubscriptionStatus.SUBSCRIBED else [],
                bounces,
                sent,
            )
        )
    session.commit()
    return people


@pytest.fixture
def people(session: Session) -> list[Person]:
    return build_people(session)


# --- generated expressions, and their meaning in Python -----------------------------------------


@dataclass(frozen=True)
class G:
    """A generated expression: its text and its meaning (a predicate over a Person)."""

    text: str
    holds: Any


SAFE = re.compile(r"[A-Za-z0-9가-힣.\-]+")


def write_value(value: str, quote: bool) -> str:
    if (
        not quote
        and SAFE.fullmatch(value)
        and value.lower() not in ("and", "or", "not", "in", "has")
    ):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_of(p: Person, field: str) -> str:
    if field in p.fields:
        return p.fields[field] or ""
    return p.attributes.get(field.removeprefix("attr.").strip('"'), "")


def equals(field: str, have: str, want: str) -> bool:
    if field == "media_type":
        want = media_type(want) or want  # 신문 is print: the word a sheet may have used
    have, want = _ascii_lower(have), _ascii_lower(want)
    if field == "language" and want:
        return have == want or have[: len(want) + 1] == want + "-"
    return have == want


NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
ORDER = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def compare(op: str, have: str, want: str) -> bool:
    if NUMBER.fullmatch(want):
        return bool(NUMBER.fullmatch(have)) and ORDER[op](float(have), float(want))
    return bool(DATE.match(have)) and ORDER[op](have[: len(want)], want)


# Whole stored values, pieces of them (for ~ and the language prefix) and random text.
PIECES = sorted(
    {w[i:j] for w in WORDS for i in range(len(w)) for j in (i + 1, i + 3) if w[i:j].strip()}
)
values = st.one_of(st.sampled_from(WORDS), st.sampled_from(PIECES), st.text(ALPHABET, max_size=6))
TEXT_FIELDS = [
    "email",
    "name",
    "language",
    "outlet",
    "beat",
    "region",
    "phone",
    "role",
    "media_type",
    "attr.beat",
    'attr."Twitter handle"',
    "organisation",
]


@st.composite
def text_terms(draw: Any) -> G:
    field = draw(st.sampled_from(TEXT_FIELDS))
    key = "outlet" if field == "organisation" else field
    quote = draw(st.booleans())
    op = draw(st.sampled_from(["=", "!=", "~", "in", "has", "<", ">=", "<=", ">"]))
    if op == "has":
        return G(f"has {field}", lambda p: text_of(p, key) != "")
    if op == "in":
        wanted = draw(st.lists(values, min_size=1, max_size=3))
        written = ", ".join(write_value(v, quote) for v in wanted)
        return G(
            f"{field} in ({written})",
            lambda p: any(equals(key, text_of(p, key), w) for w in wanted),
        )
    if op in ORDER:
        want = draw(st.sampled_from(["10", "7", "-3", "2.5", "0", "2026-01-01", "2025-12-31"]))
        return G(
            f"{field} {op} {write_value(want, quote)}", lambda p: compare(op, text_of(p, key), want)
        )
    want = draw(values)
    written = f"{field} {op} {write_value(want, quote)}"
    if op == "~":
        needle = (media_type(want) or want) if key == "media_type" else want
        return G(written, lambda p: _ascii_lower(needle) in _ascii_lower(text_of(p, key)))
    if op == "=":
        return G(written, lambda p: equals(key, text_of(p, key), want))
    return G(written, lambda p: not equals(key, text_of(p, key), want))


@st.composite
def tag_terms(draw: Any) -> G:
    op = draw(st.sampled_from(["=", "!=", "~", "in", "has"]))
    if op == "has":
        return G("has tag", lambda p: bool(p.tags))
    wanted = draw(st.lists(values, min_size=1, max_size=2)) if op == "in" else [draw(values)]
    quote = draw(st.booleans())
    written = ", ".join(write_value(v, quote) for v in wanted)
    if op == "in":
        return G(
            f"tag in ({written})",
            lambda p: any(_ascii_lower(t) == _ascii_lower(w) for t in p.tags for w in wanted),
        )
    if op == "~":
        return G(
            f"tag ~ {written}",
            lambda p: any(_ascii_lower(wanted[0]) in _ascii_lower(t) for t in p.tags),
        )

    def found(p: Person) -> bool:
        return any(_ascii_lower(t) == _ascii_lower(wanted[0]) for t in p.tags)

    return G(f"tag {op} {written}", found if op == "=" else (lambda p: not found(p)))


def when_of(value: str) -> datetime:
    if value[-1] in "dhw":
        unit = {"d": timedelta(days=1), "h": timedelta(hours=1), "w": timedelta(weeks=1)}
        return NOW - int(value[:-1]) * unit[value[-1]]
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


@st.composite
def history_terms(draw: Any) -> G:
    field = draw(st.sampled_from(["bounced_since", "sent_since", "subscribed_since", "created"]))
    value = draw(st.sampled_from(["90d", "30d", "1w", "48h", "400d", "2026-01-01", "2025-06-01"]))
    op = draw(st.sampled_from([">=", "<", ">", "<="] + ([""] if field != "created" else [])))
    written = f"{field} {op + ' ' if op else ''}{value}"
    op = op or ">="
    when = when_of(value)

    def times(p: Person) -> list[datetime]:
        if field == "bounced_since":
            return [at for kind, at in p.bounces if kind in ("hard", "soft", "block")]
        if field == "sent_since":
            return p.sent
        if field == "subscribed_since":
            return p.subscribed
        return [p.created]

    return G(written, lambda p: any(ORDER[op](t, when) for t in times(p)))


leaves = st.one_of(text_terms(), tag_terms(), history_terms())


def combine(children: Any) -> Any:
    def both(op: str) -> Any:
        def make(pair: tuple[G, G]) -> G:
            a, b = pair
            if op == "and":
                return G(f"({a.text}) and ({b.text})", lambda p: a.holds(p) and b.holds(p))
            return G(f"({a.text}) or ({b.text})", lambda p: a.holds(p) or b.holds(p))

        return st.tuples(children, children).map(make)

    negated = children.map(lambda g: G(f"not ({g.text})", lambda p: not g.holds(p)))
    # `not` binds tighter than and/or: a compound child needs its parentheses.
    plain_not = children.map(
        lambda g: G(
            f"not {g.text}" if not g.text.startswith("(") else f"not ({g.text})",
            lambda p: not g.holds(p),
        )
    )
    return st.one_of(both("and"), both("or"), negated, plain_not)


expressions = st.recursive(leaves, combine, max_leaves=6)


def rows(session: Session, where: list[str]) -> set[str]:
    cond = compile_where(session, where, now=NOW)
    return set(session.scalars(select(Contact.email).where(cond)))


HYPO = hsettings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@HYPO
@given(expressions)
def test_generated_expressions_match_python(session: Session, people: list[Person], g: G) -> None:
    expected = {p.email for p in people if g.holds(p)}
    assert rows(session, [g.text]) == expected, g.text


@HYPO
@given(st.lists(expressions, min_size=2, max_size=3))
def test_several_where_are_anded(session: Session, people: list[Person], gs: list[G]) -> None:
    expected = {p.email for p in people if all(g.holds(p) for g in gs)}
    assert rows(session, [g.text for g in gs]) == expected


@HYPO
@given(st.text("abn tgo=!~<>(),\"'\\ 0-9d가", max_size=30))
def test_any_text_parses_and_runs_or_is_a_clean_error(
    session: Session, people: list[Person], typed: str
) -> None:
    try:
        got = rows(session, [typed])
    except FilterError as err:
        # The caret sits under the position the message names.
        lines = str(err).splitlines()
        assert lines[-1].index("^") - 2 == err.pos
        assert 0 <= err.pos <= len(typed)
        session.rollback()
        return
    assert got <= {p.email for p in people}


# --- fixed cases: the examples users read, errors and injection -------------------------------


def test_documented_examples(session: Session, people: list[Person]) -> None:
    by_email = {p.email: p for p in people}
    got = rows(session, ["language = ko", "not bounced_since 90d"])
    assert got == {
        e
        for e, p in by_email.items()
        if (p.fields["language"] or "").lower().split("-")[0] == "ko"
        and not any(k in ("hard", "soft") and t >= NOW - timedelta(days=90) for k, t in p.bounces)
    }
    assert got  # the example selects someone: ko, ko-KR and KO all read as Korean
    assert rows(session, ["beat in (politics, elections)"]) == {
        p.email for p in people if (p.fields["beat"] or "").lower() in ("politics", "elections")
    }
    assert rows(session, ["tag = 2024-EXPO"]) == {
        p.email for p in people if p.tags[:1] == ["2024-expo"]
    }


@pytest.mark.parametrize(
    ("typed", "pos", "words"),
    [
        ("beet = politics", 0, "unknown field 'beet'"),
        ("beat == politics", 6, "expected a value after ="),
        ("beat ~~ x", 6, "expected a value after ~"),
        ("beat politics", 5, "expected an operator"),
        ("beat < politics", 5, "compares numbers or dates"),
        ("tag < 3", 4, "tag takes = != in ~"),
        ("bounced_since 90 days", 17, "unexpected 'days'"),
        ("sent_since yesterday", 11, "neither a duration"),
        ("(beat = x", 9, "expected ')'"),
        ("beat in (a, b", 13, "expected ',' or ')'"),
        ("beat = 'x", 7, "unterminated quoted value"),
        ("beat ! x", 5, "unknown operator '!'"),
        ("", 0, "empty expression"),
        ("has created", 4, "`has` does not apply"),
        ("list = nosuchlist", 5, "no list 'nosuchlist'"),
    ],
)
def test_errors_name_the_expression_and_the_position(
    session: Session, people: list[Person], typed: str, pos: int, words: str
) -> None:
    with pytest.raises(FilterError) as caught:
        rows(session, [typed])
    err = caught.value
    assert words in str(err)
    assert err.pos == pos, str(err)
    assert repr(typed) in str(err).splitlines()[0]
    assert str(err).splitlines()[-1] == "  " + " " * pos + "^"


@pytest.mark.parametrize(
    "typed",
    [
        "beat = \"x' OR '1'='1\"",
        'beat = "politics\'); DROP TABLE contact; --"',
        'attr."beat\') OR 1=1 --" = x',
        'attr."a\'b" ~ "%"',
        'name ~ "_%"',  # LIKE wildcards are plain characters
        "outlet in (\"') or ('1'='1\", \"\\\\\")",
        'tag = "\' UNION SELECT email FROM contact --"',
    ],
)
def test_injection_through_values_and_attribute_names_is_inert(
    session: Session, people: list[Person], typed: str
) -> None:
    got = rows(session, [typed])
    # Nothing matches those literal strings; the tables are intact.
    assert got == set()
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Contact)) == len(people)


@pytest.mark.parametrize(
    "typed",
    [
        "beat; DROP TABLE contact = x",
        "contact.email = x",
        "attributes = x",
        "1=1 = x",
        'email" = x',
    ],
)
def test_injection_through_field_names_is_an_error(
    session: Session, people: list[Person], typed: str
) -> None:
    with pytest.raises(FilterError):
        rows(session, [typed])
    session.rollback()
    assert session.execute(text("SELECT count(*) FROM contact")).scalar() == len(people)


def test_values_are_bound_parameters(session: Session, people: list[Person]) -> None:
    cond = compile_where(session, ['beat = "zz\' or 1=1 --"', "region ~ marker99"], now=NOW)
    sql = str(select(Contact.id).where(cond).compile(session.get_bind()))
    assert "marker99" not in sql and "zz'" not in sql


def test_parse_gives_precedence_to_and_over_or() -> None:
    tree = parse("beat = a or beat = b and region = c")
    assert isinstance(tree, BoolOp) and tree.op == "or"
