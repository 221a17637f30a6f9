"""Press fields in `--where`, and the SQL behind a segment: indexes, statistics, the planner.

Tests never assert on time: they check what the time rests on. A press field is compared through
the expression its index holds (so SQLite uses the index and PostgreSQL estimates from that
index's statistics), and planning a campaign never reads the rows it is writing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event, insert, select, text
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.contacts.contact import add_contact
from mailer.contacts.filters import compile_where
from mailer.contacts.lists import create_list
from mailer.contacts.segments import count, preview, resolve
from mailer.contacts.suppressions import suppress
from mailer.delivery import send as dispatch
from mailer.releases.source import load_release
from mailer.samples import sample_path
from mailer.store.db import get_engine, session_scope
from mailer.store.models import (
    Campaign,
    Contact,
    Delivery,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)


def emails(session: Session, where: list[str]) -> list[str]:
    cond = compile_where(session, where)
    return list(session.scalars(select(Contact.email).where(cond).order_by(Contact.email)))


def test_media_types_compare_as_the_importer_stores_them(session: Session) -> None:
    create_list(session, "press", "Press")
    for email, kind in (("a@x.org", "print"), ("b@x.org", "tv"), ("c@x.org", "팟캐스트")):
        add_contact(session, email, "press")
        session.scalars(select(Contact).where(Contact.email == email)).one().media_type = kind
    session.flush()
    assert emails(session, ["media_type = 신문"]) == ["a@x.org"]
    assert emails(session, ["media in (TV, 라디오)"]) == ["b@x.org"]
    assert emails(session, ["media_type != newspaper"]) == ["b@x.org", "c@x.org"]
    assert emails(session, ["media_type = 팟캐스트"]) == ["c@x.org"]  # kept as written
    assert emails(session, ["title = x or has media_type"]) == ["a@x.org", "b@x.org", "c@x.org"]


def fill(session: Session, n: int = 2000) -> None:
    """n subscribed contacts: beat politics on one in ten, media type tv on every other."""
    ml = create_list(session, "press", "Press")
    session.flush()
    session.execute(
        insert(Contact),
        [
            {
                "email": f"r{i}@example.org",
                "email_original": f"r{i}@example.org",
                "name": "",
                "organisation": "",
                "language": "ko" if i % 3 else "en",
                "beat": "Politics" if i % 10 == 0 else f"beat {i % 7}",
                "media_type": "tv" if i % 2 else "print",
                "attributes": {},
            }
            for i in range(n)
        ],
    )
    ids = session.scalars(select(Contact.id)).all()
    session.execute(
        insert(Subscription),
        [
            {"contact_id": cid, "list_id": ml.id, "status": SubscriptionStatus.SUBSCRIBED}
            for cid in ids
        ],
    )
    session.commit()


def test_sqlite_answers_a_press_field_from_its_index(engine_name: str, session: Session) -> None:
    if engine_name != "sqlite":
        pytest.skip("PostgreSQL chooses by its statistics: the next test checks those")
    fill(session, 50)
    sql = _literal_sql(session, ["beat in (politics, elections)"])
    plan = " ".join(str(row) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
    assert "USING INDEX ix_contact_beat" in plan, plan


def test_postgresql_estimates_a_segment_from_statistics(engine_name: str, session: Session) -> None:
    if engine_name != "postgresql":
        pytest.skip("SQLite keeps no statistics unless ANALYZE is run; it uses the index")
    fill(session)
    session.execute(text("ANALYZE contact"))  # what an import of this size does (plan.py)
    # 200 of 2,000 cover politics (any case); 1,000 are on TV. A guess would say 10 each
    # ("1 row" for both together), the guess that once made PostgreSQL loop over every
    # subscription for each contact.
    assert 100 <= _estimated_rows(session, ["beat = politics"]) <= 400
    assert 600 <= _estimated_rows(session, ["media_type = tv"]) <= 1500
    assert 50 <= _estimated_rows(session, ["beat = politics", "media_type = TV"]) <= 250


def _literal_sql(session: Session, where: list[str]) -> str:
    stmt = select(Contact.id).where(compile_where(session, where))
    dialect = session.get_bind().dialect
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _estimated_rows(session: Session, where: list[str]) -> float:
    plan = session.scalar(text("EXPLAIN (FORMAT JSON) " + _literal_sql(session, where)))
    if isinstance(plan, str):
        plan = json.loads(plan)
    node: dict[str, Any] = plan[0]["Plan"]
    while node.get("Relation Name") != "contact":
        node = node["Plans"][0]
    return float(node["Plan Rows"])


@contextmanager
def statements(settings: Settings) -> Iterator[list[str]]:
    """Every SQL statement run through this settings' engine inside the block."""
    seen: list[str] = []
    engine = get_engine(settings)

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_planning_never_reads_the_rows_it_writes(settings: Settings) -> None:
    with session_scope(settings) as s:
        fill(s, 30)
        create_list(s, "news", "News")
        for email in ("r1@example.org", "r2@example.org", "new@example.org"):
            add_contact(s, email, "news")
    release = load_release(sample_path())
    with statements(settings) as seen:
        p = dispatch.plan(
            settings,
            release,
            ["press", "news"],
            [],
            smtputf8=True,
            transport="test",
            where=["beat != sports or tag = x"],
        )
    inserts = [s for s in seen if s.lstrip().upper().startswith("INSERT INTO DELIVERY")]
    assert len(inserts) == 2  # one per list
    for statement in inserts:
        # The INSERT's own table only: an anti-join against it re-read the growing table for
        # every contact when its statistics said "empty" (a new database's first campaign).
        assert statement.lower().count("delivery") == 1, statement
    assert p.total == 31  # r1 and r2 once each, on the first list given
    with session_scope(settings) as s:
        lists = dict(
            s.execute(
                select(Delivery.email, Delivery.list_id).where(
                    Delivery.email.in_(["r1@example.org", "new@example.org"])
                )
            ).all()
        )
        press, news = lists["r1@example.org"], lists["new@example.org"]
        assert press != news


def test_preview_counts_the_suppressed_apart(session: Session, settings: Settings) -> None:
    create_list(session, "press", "Press")
    for email, beat in (("a@x.org", "politics"), ("b@x.org", "politics"), ("c@x.org", "sport")):
        add_contact(session, email, "press")
        session.scalars(select(Contact).where(Contact.email == email)).one().beat = beat
    suppress(session, "b+news@x.org", SuppressionReason.COMPLAINT, "test")  # b's mailbox
    session.flush()
    audience = resolve(session, None, ["press"], ["beat = politics"])
    shown = preview(session, audience, "en")
    assert (shown.total, shown.suppressed, [c.email for c in shown.rows]) == (1, 1, ["a@x.org"])
    assert count(session, audience) == 1


def test_a_send_can_ask_about_other_subscriptions(settings: Settings) -> None:
    # The planner's query is about one subscription per row: `list` and `subscribed_since`
    # ask about the contact's subscriptions, never that row (they failed to compile, or read
    # the planned list's row, before they had a table alias of their own).
    with session_scope(settings) as s:
        create_list(s, "press", "Press")
        create_list(s, "news", "News")
        for email in ("both@x.org", "press@x.org"):
            add_contact(s, email, "press")
        add_contact(s, "both@x.org", "news")
    release = load_release(sample_path())

    def plan(where: list[str]) -> tuple[int, dict[str, int]]:
        p = dispatch.plan(
            settings, release, ["press"], [], smtputf8=True, transport="test", where=where
        )
        with session_scope(settings) as s:
            s.execute(delete(Delivery).where(Delivery.campaign_id == p.campaign.id))
            s.execute(delete(Campaign).where(Campaign.id == p.campaign.id))
        return p.total, p.excluded

    assert plan(["list = news"]) == (1, {"outside the segment": 1})
    assert plan(["list != news or beat = x"]) == (1, {"outside the segment": 1})
    assert plan(["subscribed_since 30d"]) == (2, {})
    assert plan(["subscribed_since < 2000-01-01 or list = news"]) == (1, {"outside the segment": 1})
