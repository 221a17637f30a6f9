"""The ledger's recovery rule on every engine: of the rows a gone sender still holds, only the
lowest `ledger_group_size` ids can have reached the server; they become in_doubt and the rest
go back to pending, untouched by anyone else's live claim."""

from __future__ import annotations

import socket
from collections import Counter
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.delivery import ledger
from mailer.delivery.lock import recover_orphans
from mailer.store.db import session_scope
from mailer.store.models import Campaign, Delivery, DeliveryStatus
from tests.test_send import PEOPLE, populate

DEAD_PID = 2**22 + 7  # above Linux's pid_max: no such process


def planned(settings: Settings, people: int) -> int:
    """A campaign with `people` pending rows; returns its id."""
    from mailer.delivery.planning import plan_campaign, store_release

    populate(settings, [(f"r{i:02d}@example.org", f"R {i}", "en") for i in range(people)])
    with session_scope(settings) as s:
        release = store_release(s, "r", "R", "en", {"en": "---\ntitle: R\n---\nBody"}, {}, "h")
        return plan_campaign(s, settings, release, ["press"]).campaign.id


def claim_as(s: Session, campaign_id: int, holder: str, n: int, lease: timedelta) -> list[int]:
    rows, _ = ledger.claim(s, campaign_id, list_ids(s, campaign_id), holder, n, clock.now(),
                           lease, skip_locked=False)
    return [r.id for r in rows]


def list_ids(s: Session, campaign_id: int) -> list[int]:
    campaign = s.get(Campaign, campaign_id)
    assert campaign is not None
    return list(campaign.audience["list_ids"])


def statuses(s: Session) -> dict[int, tuple[str, int, str | None]]:
    return {d.id: (d.status.value, d.attempts, d.claimed_by)
            for d in s.scalars(select(Delivery).order_by(Delivery.id))}


def test_a_dead_sender_leaves_only_its_group_in_doubt(settings: Settings) -> None:
    cid = planned(settings, 12)
    here = socket.gethostname()
    dead = ledger.holder_name(f"{here}:{DEAD_PID}", 1, 3)
    alive = ledger.holder_name(f"{here}:1", 2, 3)  # pid 1 is always running
    with session_scope(settings) as s:
        mine = claim_as(s, cid, dead, 5, timedelta(minutes=10))
        theirs = claim_as(s, cid, alive, 4, timedelta(minutes=10))
    with session_scope(settings) as s:
        assert recover_orphans(s, cid) == 3
    with session_scope(settings) as s:
        rows = statuses(s)
    assert [rows[i][0] for i in mine] == ["in_doubt"] * 3 + ["pending"] * 2
    # Given back as never attempted: no holder, the attempt that never happened not counted.
    assert [rows[i][1:] for i in mine[3:]] == [(0, None), (0, None)]
    assert all(rows[i] == ("claimed", 1, alive) for i in theirs)
    assert Counter(st for st, _, _ in rows.values()) == {"in_doubt": 3, "pending": 5,
                                                          "claimed": 4}


def test_an_expired_lease_on_another_machine_is_bounded_the_same_way(settings: Settings) -> None:
    cid = planned(settings, 8)
    holder = ledger.holder_name("elsewhere:4242", 9, 2)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 6, timedelta(seconds=60))
    with session_scope(settings) as s:
        assert recover_orphans(s, cid) == 0  # lease still running: it may be sending
    later = clock.now() + timedelta(seconds=61)
    with clock.pinned(later), session_scope(settings) as s:
        assert recover_orphans(s, cid) == 2
    with session_scope(settings) as s:
        rows = statuses(s)
    assert [rows[i][0] for i in ids] == ["in_doubt"] * 2 + ["pending"] * 4


def test_a_holder_that_did_not_say_its_group_leaves_all_in_doubt(settings: Settings) -> None:
    """Rows claimed by a sender that committed per batch (no `:gN`): any may have gone out."""
    cid = planned(settings, 5)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, f"{socket.gethostname()}:{DEAD_PID}:7", 4, timedelta(minutes=10))
    with session_scope(settings) as s:
        assert recover_orphans(s, cid) == 4
        assert {statuses(s)[i][0] for i in ids} == {"in_doubt"}


def test_recorded_results_shrink_what_recovery_can_blame(settings: Settings) -> None:
    """Replies committed in order: the group after them is what a crash can leave unknown."""
    cid = planned(settings, len(PEOPLE) + 4)
    holder = ledger.holder_name(f"{socket.gethostname()}:{DEAD_PID}", 3, 2)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 6, timedelta(minutes=10))
        now = clock.now()
        ledger.record(s, holder, [ledger.Result(i, DeliveryStatus.SENT, 250, "ok")
                                  for i in ids[:3]], now)
    with session_scope(settings) as s:
        recover_orphans(s, cid)
        rows = statuses(s)
    assert [rows[i][0] for i in ids] == ["sent"] * 3 + ["in_doubt"] * 2 + ["pending"]


def test_a_result_for_a_row_no_longer_held_changes_nothing(settings: Settings) -> None:
    cid = planned(settings, 3)
    holder = ledger.holder_name("h:1", 1, 10)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 3, timedelta(minutes=10))
        ledger.give_back(s, holder, ids[2:], clock.now(), cancelled=False)
        ledger.record(s, "someone-else:1:1:g10",
                      [ledger.Result(ids[0], DeliveryStatus.SENT, 250, "ok")], clock.now())
        ledger.record(s, holder, [ledger.Result(ids[2], DeliveryStatus.SENT, 250, "ok")],
                      clock.now())
    with session_scope(settings) as s:
        rows = statuses(s)
    assert rows[ids[0]][0] == "claimed" and rows[ids[2]][0] == "pending"
