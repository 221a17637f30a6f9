"""The ledger's rules on every engine (docs/ledger.md): a claim is one batch with its own id; a
row is sent only after its proof is committed; recovery touches only rows whose lease has
expired, as checked in the statement that changes them; proven rows become in_doubt and the
rest go back to pending."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.contact import unsubscribe
from mailer.delivery import ledger
from mailer.delivery.ledger import Verdict
from mailer.delivery.lock import recover_orphans
from mailer.store.db import get_engine, session_scope
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.support.cli import Cli
from tests.support.sending import populate, use_smtp
from tests.support.smtp import Received, SmtpServer

DEAD_PID = 2**22 + 7  # above Linux's pid_max: no such process
HERE = socket.gethostname()
LONG = timedelta(minutes=10)
HALF = timedelta(minutes=5)


def planned(settings: Settings, people: int) -> int:
    """A campaign with `people` pending rows, sending; returns its id."""
    from mailer.delivery.planning import plan_campaign, store_release

    populate(settings, [(f"r{i:02d}@example.org", f"R {i}", "en") for i in range(people)])
    with session_scope(settings) as s:
        release = store_release(s, "r", "R", "en", {"en": "---\ntitle: R\n---\nBody"}, {}, "h")
        campaign = plan_campaign(s, settings, release, ["press"]).campaign
        campaign.status = CampaignStatus.SENDING
        return campaign.id


def claim_as(
    s: Session, campaign_id: int, holder: str, n: int, lease: timedelta = LONG
) -> list[int]:
    rows, _ = ledger.claim(
        s, campaign_id, list_ids(s, campaign_id), holder, n, clock.now(), lease, skip_locked=False
    )
    return [r.id for r in rows]


def prove(s: Session, holder: str, row_id: int, half: timedelta = HALF) -> Verdict:
    cid = s.get_one(Delivery, row_id).campaign_id
    return ledger.prove(s, holder, row_id, list_ids(s, cid), half, clock.now())[0]


def list_ids(s: Session, campaign_id: int) -> list[int]:
    campaign = s.get(Campaign, campaign_id)
    assert campaign is not None
    return list(campaign.audience["list_ids"])


def expire(s: Session, ids: list[int]) -> None:
    """Push leases into the past (by the database's own clock on PostgreSQL, which the
    ledger uses, so mailer's test clock cannot move them)."""
    s.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(lease_expires_at=clock.now() - timedelta(days=1))
    )


def statuses(s: Session) -> dict[int, tuple[str, int, str | None]]:
    return {
        d.id: (d.status.value, d.attempts, d.claimed_by)
        for d in s.scalars(select(Delivery).order_by(Delivery.id))
    }


def test_every_batch_has_its_own_claim_id() -> None:
    a, b = ledger.new_holder("h:1", 7), ledger.new_holder("h:1", 7)
    assert a != b and a.startswith("h:1:7:c") and ledger.is_claim(a)
    assert not ledger.is_claim("h:1:7:g10")


def test_a_dead_sender_leaves_only_its_proven_rows_in_doubt(settings: Settings) -> None:
    cid = planned(settings, 12)
    dead = ledger.new_holder(f"{HERE}:{DEAD_PID}", 1)
    alive = ledger.new_holder(f"{HERE}:1", 2)  # pid 1 is always running
    with session_scope(settings) as s:
        mine = claim_as(s, cid, dead, 5)
        theirs = claim_as(s, cid, alive, 4)
        assert prove(s, dead, mine[0]) == Verdict.GO
        assert prove(s, alive, theirs[0]) == Verdict.GO
    with session_scope(settings) as s:
        assert recover_orphans(s, cid) == 1
    with session_scope(settings) as s:
        rows = statuses(s)
    assert [rows[i][0] for i in mine] == ["in_doubt"] + ["pending"] * 4
    # Given back as never attempted: no holder, the attempt that never happened not counted.
    assert [rows[i][1:] for i in mine[1:]] == [(0, None)] * 4
    assert all(rows[i] == ("claimed", 1, alive) for i in theirs)
    assert Counter(st for st, _, _ in rows.values()) == {"in_doubt": 1, "pending": 7, "claimed": 4}


def test_an_expired_lease_is_checked_in_the_statement_and_spares_fresh_claims(
    settings: Settings,
) -> None:
    """One thread's old batch expired, its new batch (same worker, same thread) has a valid
    lease: recovery gives back the old one only."""
    cid = planned(settings, 8)
    old = ledger.new_holder("elsewhere:4242", 9)
    new = ledger.new_holder("elsewhere:4242", 9)
    with session_scope(settings) as s:
        first = claim_as(s, cid, old, 3)
        assert prove(s, old, first[0]) == Verdict.GO
    with session_scope(settings) as s:
        assert recover_orphans(s, cid) == 0  # lease still running: it may be sending
        expire(s, first)
        second = claim_as(s, cid, new, 3)
        assert prove(s, new, second[0]) == Verdict.GO
    with session_scope(settings) as s:
        assert recover_orphans(s, cid) == 1
    with session_scope(settings) as s:
        rows = statuses(s)
    assert [rows[i][0] for i in first] == ["in_doubt", "pending", "pending"]
    assert [rows[i][0] for i in second] == ["claimed"] * 3


def test_a_proof_fails_once_the_row_was_given_back(settings: Settings) -> None:
    """The stalled sender's side: recovery gave its unproven rows back, so it cannot prove
    (and therefore send) them, even after they were claimed again by someone else."""
    cid = planned(settings, 3)
    stalled = ledger.new_holder("h:1", 1)
    other = ledger.new_holder("h:2", 1)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, stalled, 3)
        expire(s, ids)
    with session_scope(settings) as s:
        recover_orphans(s, cid)
        assert claim_as(s, cid, other, 3) == ids
    with session_scope(settings) as s:
        assert [prove(s, stalled, i) for i in ids] == [Verdict.LOST] * 3
        assert prove(s, other, ids[0]) == Verdict.GO


def test_a_proof_needs_half_the_lease(settings: Settings) -> None:
    cid = planned(settings, 2)
    holder = ledger.new_holder("h:1", 1)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 2, lease=timedelta(seconds=60))
        assert prove(s, holder, ids[0], half=timedelta(seconds=61)) == Verdict.LOST
        assert prove(s, holder, ids[0], half=timedelta(seconds=30)) == Verdict.GO
        assert prove(s, holder, ids[0], half=timedelta(seconds=30)) == Verdict.LOST  # once


def test_a_proof_sees_an_unsubscribe_and_a_pause(settings: Settings) -> None:
    cid = planned(settings, 3)
    holder = ledger.new_holder("h:1", 1)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 3)
        contact = s.get_one(Delivery, ids[1]).contact_id
        s.execute(
            update(Subscription)
            .where(Subscription.contact_id == contact)
            .values(status=SubscriptionStatus.UNSUBSCRIBED)
        )
        assert prove(s, holder, ids[1]) == Verdict.OPTED_OUT
        s.get_one(Campaign, cid).status = CampaignStatus.PAUSED
        s.flush()
        assert prove(s, holder, ids[2]) == Verdict.STOPPED
    with session_scope(settings) as s:
        rows = statuses(s)
    assert [rows[i][0] for i in ids] == ["claimed", "skipped", "claimed"]


def test_a_proven_row_is_never_given_back_and_its_reply_wins_over_doubt(settings: Settings) -> None:
    cid = planned(settings, 3)
    holder = ledger.new_holder(f"{HERE}:{DEAD_PID}", 1)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 3)
        assert prove(s, holder, ids[0]) == Verdict.GO
        ledger.give_back(s, holder, ids, clock.now(), cancelled=False)
    with session_scope(settings) as s:
        assert [statuses(s)[i][0] for i in ids] == ["claimed", "pending", "pending"]
        assert recover_orphans(s, cid) == 1
    with session_scope(settings) as s:
        assert statuses(s)[ids[0]][0] == "in_doubt"
        # The sender was only stalled: it records what the server said, for its own claim only.
        ledger.record(
            s,
            ledger.new_holder("x:1", 1),
            [ledger.Result(ids[0], DeliveryStatus.FAILED, 550, "no")],
            clock.now(),
        )
        ledger.record(
            s, holder, [ledger.Result(ids[0], DeliveryStatus.SENT, 250, "ok")], clock.now()
        )
    with session_scope(settings) as s:
        assert statuses(s)[ids[0]] == ("sent", 1, None)


def test_a_holder_of_an_earlier_version_keeps_its_old_bound(settings: Settings) -> None:
    """Rows claimed before the upgrade (`host:pid:thread:gN`, no proofs): only the lowest N can
    have gone out; without `:gN`, any of them."""
    cid = planned(settings, 9)
    with session_scope(settings) as s:
        grouped = claim_as(s, cid, f"{HERE}:{DEAD_PID}:3:g2", 5)
        ungrouped = claim_as(s, cid, f"{HERE}:{DEAD_PID}:7", 3)
    with session_scope(settings) as s:
        assert recover_orphans(s, cid) == 5
        rows = statuses(s)
    assert [rows[i][0] for i in grouped] == ["in_doubt"] * 2 + ["pending"] * 3
    assert {rows[i][0] for i in ungrouped} == {"in_doubt"}


@pytest.mark.parametrize("proof_first", [True, False])
def test_recovery_and_a_proof_are_ordered_by_the_database(
    settings: Settings, proof_first: bool
) -> None:
    """A sender's proof and recovery race for one row: whichever commits first, the row ends
    either proven and in doubt, or given back and not provable; never given back and sent.
    (The sleeps only make the interleaving likely; the outcome must hold in any order.)"""
    cid = planned(settings, 1)
    holder = ledger.new_holder("elsewhere:1", 1)
    with session_scope(settings) as s:
        (row,) = claim_as(s, cid, holder, 1, lease=timedelta(seconds=1))
    engine = get_engine(settings)
    verdict: list[Verdict] = []

    def recovery() -> None:
        with session_scope(settings) as s:
            recover_orphans(s, cid)

    with Session(engine) as sender:
        if proof_first:
            # Proven with the lease fresh, then a stall before the commit, past the lease:
            # recovery finds the expired row and waits on the sender's row lock.
            verdict.append(prove(sender, holder, row, half=timedelta(seconds=0.5)))
            time.sleep(1.2)
            t = threading.Thread(target=recovery)
            t.start()
            time.sleep(0.5)
            sender.commit()
            t.join()
            recovery()  # a later pass finds the proven row
        else:
            time.sleep(1.2)
            recovery()
            verdict.append(prove(sender, holder, row, half=timedelta(seconds=0.5)))
            sender.commit()
    with session_scope(settings) as s:
        status = statuses(s)[row][0]
    if proof_first:
        assert (verdict, status) == ([Verdict.GO], "in_doubt")
    else:
        assert (verdict, status) == ([Verdict.LOST], "pending")


def test_an_unsubscribe_stops_the_very_next_message_at_a_low_rate(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    """At 3 messages a second the wait for a rate token is longer than the re-check interval
    ever was. The proof comes after that wait, immediately before the SMTP transaction: an
    unsubscribe committed while the previous message is being accepted stops the next one."""
    settings = use_smtp(settings, tmp_path, smtp, concurrency=1, batch_size=10, rate_per_second=3)
    people = [(f"reader{i}@example.org", f"Reader {i}", "en") for i in range(8)]
    populate(settings, people)
    cli("send", str(release), "--list", "press", "--yes", "--limit", "0")
    with session_scope(settings) as s:
        order = list(s.scalars(select(Delivery.email).order_by(Delivery.id)))

    def unsubscribe_the_next(got: Received) -> None:
        i = order.index(got.rcpt_tos[0])
        if i % 2 == 0 and i + 1 < len(order):
            with session_scope(settings) as s:
                unsubscribe(s, order[i + 1], "press")

    smtp.sink.on_message = unsubscribe_the_next
    cli("campaigns", "resume", "1")
    assert sorted(a for r in smtp.sink.received for a in r.rcpt_tos) == sorted(order[::2])
    with session_scope(settings) as s:
        rows = {e: st for e, st in s.execute(select(Delivery.email, Delivery.status))}
    assert [rows[e].value for e in order] == ["sent", "skipped"] * 4


def sent_at_set(s: Session, ids: list[int]) -> list[bool]:
    return [s.get_one(Delivery, i).sent_at is not None for i in ids]


def test_a_group_is_proven_in_one_statement_all_or_nothing(settings: Settings) -> None:
    """ledger_group_size > 1: the next rows are proven together; an opted-out row is skipped
    and the rest go; a lost row or a paused campaign leaves none of the group proven."""
    cid = planned(settings, 9)
    holder = ledger.new_holder("h:1", 1)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 9)
        lists = list_ids(s, cid)
        contact = s.get_one(Delivery, ids[2]).contact_id
        s.execute(
            update(Subscription)
            .where(Subscription.contact_id == contact)
            .values(status=SubscriptionStatus.UNSUBSCRIBED)
        )
        proof = ledger.prove_group(s, holder, ids[:4], lists, HALF, clock.now())
        assert (proof.go, proof.skipped, proof.stop) == ([ids[0], ids[1], ids[3]], [ids[2]], None)
        assert sent_at_set(s, ids[:4]) == [True, True, False, True]
        # Another batch took one row of the next group (its lease ran out, it was recovered and
        # claimed again): nothing of the group may go, and none of it stays proven.
        s.execute(
            update(Delivery)
            .where(Delivery.id == ids[5])
            .values(claimed_by=ledger.new_holder("h:2", 1))
        )
        proof = ledger.prove_group(s, holder, ids[4:7], lists, HALF, clock.now())
        assert (proof.go, proof.stop) == ([], Verdict.LOST)
        assert sent_at_set(s, ids[4:7]) == [False] * 3
        s.get_one(Campaign, cid).status = CampaignStatus.PAUSED
        s.flush()
        proof = ledger.prove_group(s, holder, ids[6:9], lists, HALF, clock.now())
        assert (proof.go, proof.stop, proof.campaign_status) == (
            [],
            Verdict.STOPPED,
            CampaignStatus.PAUSED,
        )
        assert sent_at_set(s, ids[6:9]) == [False] * 3
    with session_scope(settings) as s:
        rows = statuses(s)
    assert [rows[i][0] for i in ids[:4]] == ["claimed", "claimed", "skipped", "claimed"]


def test_a_recheck_skips_opted_out_proven_rows_and_drops_resolved_ones(settings: Settings) -> None:
    """A proven group older than the opt-out bound is looked at again before its next message:
    an unsubscribe since the proof skips the row, a row the operator took back (resolved) is
    no longer this sender's to send, an in-doubt row of this claim still is, and a paused
    campaign stops the rest."""
    cid = planned(settings, 5)
    holder = ledger.new_holder("h:1", 1)
    with session_scope(settings) as s:
        ids = claim_as(s, cid, holder, 5)
        lists = list_ids(s, cid)
        assert ledger.prove_group(s, holder, ids, lists, HALF, clock.now()).go == ids
        contact = s.get_one(Delivery, ids[1]).contact_id
        s.execute(
            update(Subscription)
            .where(Subscription.contact_id == contact)
            .values(status=SubscriptionStatus.UNSUBSCRIBED)
        )
        s.execute(
            update(Delivery)
            .where(Delivery.id == ids[2])
            .values(status=DeliveryStatus.PENDING, claimed_by=None)
        )  # resolved: resend
        s.execute(
            update(Delivery).where(Delivery.id == ids[3]).values(status=DeliveryStatus.IN_DOUBT)
        )  # recovery passed by; the holder stays
        check = ledger.recheck(s, holder, ids, lists, clock.now())
        assert (check.keep, check.skipped) == ([ids[0], ids[3], ids[4]], [ids[1]])
        rows = statuses(s)
        assert [rows[i][0] for i in ids] == ["claimed", "skipped", "pending", "in_doubt", "claimed"]
        s.get_one(Campaign, cid).status = CampaignStatus.PAUSED
        s.flush()
        check = ledger.recheck(s, holder, [ids[0], ids[4]], lists, clock.now())
        assert (check.keep, check.campaign_status) == ([], CampaignStatus.PAUSED)


def test_an_unsubscribe_older_than_the_bound_stops_a_proven_group_message(
    settings: Settings, tmp_path: Path, smtp: SmtpServer, release: Path, cli: Cli
) -> None:
    """ledger_group_size 10: the whole batch is proven before its first message. An
    unsubscribe committed while a message is being accepted, with more than RECHECK_SECONDS
    before the next message starts, still stops the next one: the proven row is looked at
    again before it is sent. (The sink holds its reply past the bound; a group proven once and
    never looked at again would send every row.)"""
    from mailer.delivery.engine import RECHECK_SECONDS

    settings = use_smtp(
        settings, tmp_path, smtp, concurrency=1, batch_size=10, ledger_group_size=10
    )
    people = [(f"reader{i}@example.org", f"Reader {i}", "en") for i in range(8)]
    populate(settings, people)
    cli("send", str(release), "--list", "press", "--yes", "--limit", "0")
    with session_scope(settings) as s:
        order = list(s.scalars(select(Delivery.email).order_by(Delivery.id)))

    def unsubscribe_the_next(got: Received) -> None:
        i = order.index(got.rcpt_tos[0])
        if i % 2 == 0 and i + 1 < len(order):
            with session_scope(settings) as s:
                unsubscribe(s, order[i + 1], "press")
            time.sleep(RECHECK_SECONDS + 0.1)

    smtp.sink.on_message = unsubscribe_the_next
    cli("campaigns", "resume", "1")
    assert sorted(a for r in smtp.sink.received for a in r.rcpt_tos) == sorted(order[::2])
    with session_scope(settings) as s:
        rows = {e: st for e, st in s.execute(select(Delivery.email, Delivery.status))}
        campaign = s.scalars(select(Campaign)).one()
    assert [rows[e].value for e in order] == ["sent", "skipped"] * 4
    assert campaign.status == CampaignStatus.DONE
