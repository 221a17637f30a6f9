"""send_release and resume_campaign as a library (the web console's way in), on the outbox: when
they ask for confirmation, what a declined or failed confirmation leaves, progress, resuming."""

from __future__ import annotations

import mailbox
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mailer.config import Settings
from mailer.delivery.planning import Plan
from mailer.delivery.progress import Progress
from mailer.delivery.send import check_for_lists, resume_campaign, send_release
from mailer.releases.source import load_release
from mailer.store.db import session_scope
from mailer.store.models import Campaign, CampaignStatus
from tests.support.cli import Cli
from tests.support.sending import populate

pytestmark = pytest.mark.db


def campaigns(settings: Settings) -> list[Campaign]:
    with session_scope(settings) as s:
        return list(s.scalars(select(Campaign)))


def outbox_count(settings: Settings) -> int:
    if not settings.outbox_dir.exists():
        return 0
    return len(list(mailbox.Maildir(settings.outbox_dir, create=False)))


class Recorder:
    """confirm / on_plan / on_progress callbacks that remember how they were called."""

    def __init__(self, answer: bool = True) -> None:
        self.answer = answer
        self.asked: list[Plan] = []
        self.shown: list[tuple[Plan, str]] = []
        self.due: list[int] = []
        self.done = 0

    def confirm(self, plan: Plan) -> bool:
        self.asked.append(plan)
        return self.answer

    def on_plan(self, plan: Plan, transport: str) -> None:
        self.shown.append((plan, transport))

    def on_progress(self, due: int) -> Callable[[Progress], None]:
        self.due.append(due)

        def seen(progress: Progress) -> None:
            self.done = max(self.done, progress.done)

        return seen


def test_declined_confirmation_stores_and_sends_nothing(settings: Settings, release: Path) -> None:
    populate(settings)
    rec = Recorder(answer=False)
    outcome = send_release(
        settings,
        release,
        ["press"],
        confirm=rec.confirm,
        on_plan=rec.on_plan,
        on_progress=rec.on_progress,
    )
    assert outcome.status == "declined"
    assert [p.due for p in rec.asked] == [6] and rec.asked[0].created
    assert len(rec.shown) == 1 and rec.shown[0][1].startswith("outbox")
    assert rec.due == []
    assert campaigns(settings) == [] and outbox_count(settings) == 0


def test_a_failing_confirmation_forgets_the_draft(settings: Settings, release: Path) -> None:
    populate(settings)

    def no_terminal(plan: Plan) -> bool:
        raise RuntimeError("nobody to ask")

    with pytest.raises(RuntimeError):
        send_release(settings, release, ["press"], confirm=no_terminal)
    assert campaigns(settings) == []


def test_send_reports_progress_then_finds_nothing_left(settings: Settings, release: Path) -> None:
    populate(settings)
    rec = Recorder()
    outcome = send_release(
        settings,
        release,
        ["press"],
        created_by="web",
        confirm=rec.confirm,
        on_plan=rec.on_plan,
        on_progress=rec.on_progress,
    )
    assert outcome.status == "sent" and outcome.result is not None and outcome.result.complete
    assert rec.due == [6] and rec.done == 6 and outbox_count(settings) == 6
    [campaign] = campaigns(settings)
    assert campaign.created_by == "web" and campaign.status == CampaignStatus.DONE
    again = Recorder()
    outcome = send_release(
        settings, release, ["press"], confirm=again.confirm, on_plan=again.on_plan
    )
    assert outcome.status == "nothing-left" and again.asked == [] and len(again.shown) == 1
    assert outbox_count(settings) == 6


def test_dry_run_asks_nothing_and_stores_nothing(settings: Settings, release: Path) -> None:
    populate(settings)
    rec = Recorder()
    outcome = send_release(
        settings,
        release,
        ["press"],
        dry_run=True,
        confirm=rec.confirm,
        on_plan=rec.on_plan,
        on_progress=rec.on_progress,
    )
    assert outcome.status == "dry-run" and rec.asked == [] and len(rec.shown) == 1
    assert outcome.built is not None and outcome.built.messages == 6
    assert outcome.built.by_language == {"en": 3, "ko": 3}
    assert outcome.built.sample is not None and b"Message-ID" in outcome.built.sample
    assert campaigns(settings) == [] and outbox_count(settings) == 0


def test_scheduled_send_asks_nothing(settings: Settings, release: Path) -> None:
    populate(settings)
    rec = Recorder()
    when = datetime.now(UTC) + timedelta(days=1)
    outcome = send_release(
        settings,
        release,
        ["press"],
        at=when,
        confirm=rec.confirm,
        on_plan=rec.on_plan,
        on_progress=rec.on_progress,
    )
    assert outcome.status == "scheduled" and rec.asked == []
    [campaign] = campaigns(settings)
    assert campaign.status == CampaignStatus.SCHEDULED and outbox_count(settings) == 0


def test_limit_then_resume_campaign(settings: Settings, release: Path) -> None:
    populate(settings)
    outcome = send_release(settings, release, ["press"], confirm=lambda plan: True, limit=2)
    assert outcome.result is not None and outcome.result.stopped_by == "limit"
    assert outbox_count(settings) == 2
    rec = Recorder()
    result = resume_campaign(settings, outcome.result.campaign_id, on_progress=rec.on_progress)
    assert result.complete and rec.due == [4] and outbox_count(settings) == 6


def test_test_send_touches_no_campaign(settings: Settings, release: Path) -> None:
    populate(settings)
    rec = Recorder()
    outcome = send_release(
        settings,
        release,
        ["press"],
        tests=["Me@Hanul.example.org"],
        confirm=rec.confirm,
        on_plan=rec.on_plan,
        on_progress=rec.on_progress,
    )
    assert outcome.status == "tested" and rec.asked == [] and rec.shown == []
    assert sorted((r.address, r.language) for r in outcome.tests) == [
        ("me@hanul.example.org", "en"),
        ("me@hanul.example.org", "ko"),
    ]
    assert campaigns(settings) == [] and outbox_count(settings) == 2


def test_unknown_list_is_a_check_error_but_left_to_the_plan_when_sending(
    settings: Settings, release: Path
) -> None:
    populate(settings)
    loaded = load_release(release)
    checked = check_for_lists(settings, loaded, ["press", "nosuch"])
    assert [f.message for f in checked.findings if "nosuch" in f.message]
    assert checked.audience == {"en": 2, "fr": 1, "ko": 2, "ko-kr": 1}
    sending = check_for_lists(settings, loaded, ["press", "nosuch"], sending=True)
    assert sending.audience is None and not [f for f in sending.findings if f.level == "error"]
    # The send's check renders only what the audience reads, for the footer of its one list.
    only_press = check_for_lists(settings, loaded, ["press"], sending=True)
    assert sorted(only_press.rendered) == ["en", "ko"]
    populate(settings, [("reader@example.org", "Reader", "en-GB")], slug="english")
    english = check_for_lists(settings, loaded, ["english"], sending=True)
    assert sorted(english.rendered) == ["en"]


def test_dry_run_after_a_finished_campaign_shows_its_plan(
    settings: Settings, release: Path, cli: Cli
) -> None:
    """A dry run of an audience already sent to resumes the stored campaign (nothing due): the
    plan it prints reads the campaign after the dry run's rollback (was DetachedInstanceError)."""
    populate(settings)
    send_release(settings, release, ["press"], confirm=lambda plan: True)
    outcome = send_release(settings, release, ["press"], dry_run=True, confirm=lambda plan: True)
    assert outcome.status == "dry-run" and outcome.plan is not None
    assert outcome.plan.campaign.audience["lists"] == ["press"]
    result = cli("send", str(release), "--list", "press", "--dry-run")
    assert "Resuming campaign 1" in result.output and "Dry run: built 0 messages" in result.output
