"""The corpus: every message classified as expected, and precision and recall printed.

Run with -s to see the table; the figures are printed in any case through capsys.disabled().
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces.policy import RunReport, process_mailbox
from mailer.bounces.sources import open_source
from mailer.config import Settings, load_settings
from mailer.store.models import Bounce, Suppression
from tests.bounce_corpus import world
from tests.support.config import write_config


@pytest.fixture
def verp_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test settings with VERP on and a separate bounce address."""
    write_config(
        tmp_path,
        {
            "database_url": settings.database_url,
            "verp": True,
            "envelope_sender": "bounces@hanul.example.org",
        },
    )
    return load_settings(tmp_path / "mailer.toml", env={})


def run_corpus(session: Session, settings: Settings, tmp_path: Path) -> tuple[RunReport, list[str]]:
    """Every corpus message in one mbox, processed once; the file names in mbox order."""
    w = world.build(session)
    messages = world.corpus(session, settings, w.campaign.id)
    mbox = world.write_mbox(tmp_path / "bounces.mbox", [raw for _, raw in messages])
    with clock.pinned(world.PROCESSED_AT), open_source(str(mbox)) as box:
        report = process_mailbox(session, settings, box)
    return report, [name for name, _ in messages]


def test_corpus_outcomes_precision_and_recall(
    session: Session, verp_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, names = run_corpus(session, verp_settings, tmp_path)
    assert sorted(world.EXPECTED["messages"]) == names, "expected.json and the files differ"
    result = world.evaluate(session, report, names)
    with capsys.disabled():
        print("\n" + "\n".join(result.lines()))
    assert not result.wrong, "\n".join(result.wrong)
    # Precision is the promise: nothing suppressed or unsubscribed that should not be.
    assert result.suppressed <= result.truth_suppressed
    # An unsubscribe request with no token, only a From header (anyone can write one), is held
    # for a person (docs/bounces.md), never applied by itself.
    from_only = {"seo.hana@weekly.example.com", "jang.seoyeon@mail.example.kr"}
    held = {
        i.email
        for i in report.items
        if i.outcome == "unsubscribe" and i.action.startswith("held for review")
    }
    assert held == from_only
    assert result.unsubscribed == result.truth_unsubscribed - from_only
    # What a person would suppress and mailer only scores: replies whose code and words do not
    # say the address is gone (Office 365's 5.4.1 "Access denied", Outlook.com's 5.5.0
    # "mailbox unavailable"). Recall pays for precision here, on purpose.
    assert result.truth_suppressed - result.suppressed == {
        "ahn.yeji@o365.example.com",
        "do.yeon@hotmail.example",
    }


def test_second_run_counts_nothing_twice(
    session: Session, verp_settings: Settings, tmp_path: Path
) -> None:
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
