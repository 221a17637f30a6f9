"""The corpus: every message classified as expected, and precision and recall printed.

Run with -s to see the table; the figures are printed in any case through capsys.disabled().
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces import RunReport, process_mailbox
from mailer.config import Settings, load_settings
from mailer.mailboxes import open_source
from mailer.models import (
    Bounce,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)
from tests.bounce_corpus import world
from tests.conftest import write_config


@pytest.fixture
def verp_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test settings with VERP on and a separate bounce address."""
    write_config(tmp_path, {"database_url": settings.database_url, "verp": True,
                            "envelope_sender": "bounces@hanul.example.org"})
    return load_settings(tmp_path / "mailer.toml", env={})


def run_corpus(session: Session, settings: Settings, tmp_path: Path) -> tuple[RunReport,
                                                                               list[str]]:
    w = world.build(session)
    messages = world.corpus(session, settings, w.campaign.id)
    mbox = world.write_mbox(tmp_path / "bounces.mbox", [raw for _, raw in messages])
    with clock.pinned(world.PROCESSED_AT), open_source(str(mbox)) as box:
        report = process_mailbox(session, settings, box)
    return report, [name for name, _ in messages]


def by_file(report: RunReport, names: list[str]) -> dict[str, list]:
    out: dict[str, list] = {name: [] for name in names}
    for item in report.items:
        n = int(re.match(r"\d+", item.message).group(0))  # "12 (line 340)"
        out[names[n - 1]].append(item)
    return out


def suppressed(session: Session, *reasons: SuppressionReason) -> set[str]:
    return set(session.scalars(select(Suppression.email).where(Suppression.reason.in_(reasons))))


def unsubscribed(session: Session) -> set[str]:
    from mailer.models import Contact

    via_mailto = set(session.scalars(
        select(Contact.email).join(Subscription, Subscription.contact_id == Contact.id)
        .where(Subscription.status == SubscriptionStatus.UNSUBSCRIBED,
               Subscription.unsubscribed_via.in_(["mailto", "unsubscribe-all"]))
    ))
    return via_mailto | suppressed(session, SuppressionReason.UNSUBSCRIBE_ALL)


def ratio(a: int, b: int) -> str:
    return f"{a}/{b} = {a / b:.2f}" if b else "n/a"


def test_corpus_outcomes_precision_and_recall(session: Session, verp_settings: Settings,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    report, names = run_corpus(session, verp_settings, tmp_path)
    expected = world.EXPECTED["messages"]
    assert sorted(expected) == names, "expected.json and the corpus files differ"
    items = by_file(report, names)
    rows, wrong = [], []
    for name in names:
        exp, got = expected[name], items[name]
        outcome = got[0].outcome if got else "(none)"
        email = got[0].email if got else None
        ok = len(got) == 1 and outcome == exp["outcome"] and email == exp["email"]
        rows.append(f"  {'ok ' if ok else 'BAD'} {name:<42} {outcome:<16} {email or '-'}")
        if not ok:
            wrong.append(f"{name}: expected {exp['outcome']} {exp['email']}, "
                         f"got {[(i.outcome, i.email, i.detail) for i in got]}")
    truth_sup = {e["email"] for e in expected.values() if e["suppress"] and not e["unsubscribe"]}
    got_sup = suppressed(session, SuppressionReason.HARD_BOUNCE, SuppressionReason.COMPLAINT)
    truth_uns = {e["email"] for e in expected.values() if e["unsubscribe"]}
    got_uns = unsubscribed(session)
    kinds_ok = sum(1 for r in rows if r.startswith("  ok"))
    lines = [
        "", "bounce corpus: " + f"{len(names)} messages", *rows,
        f"classification (outcome and address right): {ratio(kinds_ok, len(names))}",
        "suppression (hard bounces and complaints):",
        f"  precision {ratio(len(got_sup & truth_sup), len(got_sup))}",
        f"  recall    {ratio(len(got_sup & truth_sup), len(truth_sup))}"
        + (f"  missed: {', '.join(sorted(truth_sup - got_sup))}" if truth_sup - got_sup else ""),
        "mailed unsubscribes:",
        f"  precision {ratio(len(got_uns & truth_uns), len(got_uns))}",
        f"  recall    {ratio(len(got_uns & truth_uns), len(truth_uns))}",
    ]
    with capsys.disabled():
        print("\n".join(lines))
    assert not wrong, "\n".join(wrong)
    # Precision is the promise: nothing suppressed or unsubscribed that should not be.
    assert got_sup <= truth_sup, got_sup - truth_sup
    assert got_uns <= truth_uns, got_uns - truth_uns
    # The one address a person would suppress that mailer does not: 5.4.1 "Access denied".
    assert truth_sup - got_sup == {"ahn.yeji@o365.example.com"}
    assert got_uns == truth_uns


def test_second_run_counts_nothing_twice(session: Session, verp_settings: Settings,
                                         tmp_path: Path) -> None:
    first, _ = run_corpus(session, verp_settings, tmp_path)
    recorded = session.scalar(select(func.count()).select_from(Bounce))
    suppressions = session.scalar(select(func.count()).select_from(Suppression))
    with clock.pinned(world.PROCESSED_AT), open_source(str(tmp_path / "bounces.mbox")) as box:
        second = process_mailbox(session, verp_settings, box)
    assert session.scalar(select(func.count()).select_from(Bounce)) == recorded
    assert session.scalar(select(func.count()).select_from(Suppression)) == suppressions
    for a, b in zip(first.items, second.items, strict=True):
        if a.processed:
            assert b.outcome == "duplicate", (a, b)
        else:
            assert b.outcome == a.outcome and not b.processed
    assert second.acknowledge_keys == first.acknowledge_keys
