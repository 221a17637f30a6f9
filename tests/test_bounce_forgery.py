"""A stranger who mails the bounce address must not be able to suppress or unsubscribe anyone.

A campaign is really sent through the SMTP sink (VERP on); genuine reports are built from the
messages the sink received. Forged ones (a DSN, a qmail bounce, an ARF complaint, five "mailbox
full" reports, a hand-written VERP address, a guessed Message-ID, a mailed unsubscribe with a
forged From) change nothing, are held for review, and `bounces review --apply` applies them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailer.bounces.policy import Item, process_message, soft_score
from mailer.config import Settings
from mailer.contacts.addresses import verp_decode, verp_encode
from mailer.delivery.message import message_id
from mailer.delivery.message_ids import installation_part
from mailer.store.models import (
    Bounce,
    BounceReview,
    Campaign,
    Contact,
    Delivery,
    Event,
    SuppressionReason,
)
from tests.support.bounces import arf, dsn, mail
from tests.support.cli import Cli
from tests.support.forgery import BOUNCES, MALLORY, PEOPLE, VICTIM, Sent, suppressed


def run(session: Session, settings: Settings, raw: bytes) -> list[Item]:
    return process_message(session, settings, "1", raw)


def held(session: Session) -> dict[int, str]:
    return dict(
        session.execute(
            select(BounceReview.id, BounceReview.email).where(BounceReview.state == "pending")
        ).all()
    )


def qmail(recipient: str, to: str = BOUNCES) -> bytes:
    return f"""From: MAILER-DAEMON@mx.example.com
To: {to}
Subject: failure notice
Message-ID: <qmail.{abs(hash(recipient + to))}@mx.example.com>

Hi. This is the qmail-send program at mx.example.com.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

From: press@hanul.example.org
To: {recipient}
Subject: Hello

Hello.
""".encode()


def delivered_to(raw: bytes, address: str) -> bytes:
    return f"Delivered-To: {address}\n".encode() + raw


# -- forgeries: nothing happens, each is held, --apply applies it ------------------------------

FORGERIES = {
    "dsn": lambda: dsn(VICTIM),
    "qmail": lambda: qmail(VICTIM),
    "arf": lambda: arf(VICTIM),
    # A hand-written VERP address (the old unsigned form) naming the victim.
    "verp": lambda: delivered_to(
        dsn("old.address@elsewhere.example"), "bounces+victim=example.com@hanul.example.org"
    ),
}


@pytest.mark.parametrize("form", sorted(FORGERIES))
def test_forged_report_is_held_and_applied_only_by_a_person(
    sent: Sent, db: Session, cli: Cli, form: str
) -> None:
    [item] = run(db, sent.settings, FORGERIES[form]())
    assert item.email == VICTIM and item.processed
    assert item.outcome in ("hard", "complaint")
    assert item.action.startswith("held for review"), item
    assert "no proof" in item.detail
    assert suppressed(db, VICTIM) is None
    # Not attributed to the campaign: a forgery does not change its figures either.
    assert db.scalar(select(Bounce.campaign_id)) is None
    assert db.scalar(select(func.count()).select_from(Event).where(Event.kind == "bounce")) == 0
    [review_id] = held(db)
    db.commit()
    listing = cli("bounces", "review").output
    assert VICTIM in listing and "why: no proof" in listing
    out = cli("bounces", "review", "--apply", str(review_id), "--by", "editor").output
    assert f"{review_id}: applied" in out and "suppressed" in out
    db.rollback()
    expected = SuppressionReason.COMPLAINT if form == "arf" else SuppressionReason.HARD_BOUNCE
    assert suppressed(db, VICTIM) == expected
    assert held(db) == {}
    # Decided once: a second decision is a clear error, not a traceback.
    db.rollback()
    again = cli("bounces", "review", "--dismiss", str(review_id), expect=1).output
    assert f"held report {review_id} was already applied" in again and "editor" in again


def test_five_forged_mailbox_full_reports_count_nothing(sent: Sent, db: Session) -> None:
    for _ in range(5):
        [item] = run(
            db, sent.settings, dsn(VICTIM, "4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full")
        )
        assert item.outcome == "soft" and item.action.startswith("held for review")
    assert soft_score(db, sent.settings, VICTIM) == (0, 0)
    assert suppressed(db, VICTIM) is None
    # A genuine one (about the real message) counts; the held ones still do not.
    real = sent.received[VICTIM]
    [item] = run(
        db,
        sent.settings,
        dsn(
            VICTIM,
            "4.2.2",
            to=real.mail_from,
            diagnostic="smtp; 452 4.2.2 Mailbox full",
            about=real.message_id,
        ),
    )
    assert item.action == "score 1/5" and item.matched_by == "verp"
    # A person applies the five held ones: with the genuine one, the fourth reaches 5.
    from mailer.bounces.review import decide

    outcomes = [
        decide(db, sent.settings, rid, apply=True, actor="editor").outcome
        for rid in sorted(held(db))
    ]
    assert outcomes[:4] == ["score 2/5", "score 3/5", "score 4/5", "suppressed (score 5/5)"]
    assert suppressed(db, VICTIM) == SuppressionReason.HARD_BOUNCE


def test_forged_delay_does_not_mark_the_real_delivery(sent: Sent, db: Session) -> None:
    """A delivery named by a delay or failure report never resets the soft score: a forged one
    must not name the victim's real delivery (it would keep genuine soft bounces counting)."""
    [item] = run(db, sent.settings, dsn(VICTIM, "4.4.1", action="delayed"))
    assert item.outcome == "delayed" and item.processed
    assert db.execute(select(Bounce.delivery_id, Bounce.campaign_id)).one() == (None, None)
    # The same notice about the real message is attributed to it.
    real = sent.received[VICTIM]
    [item] = run(db, sent.settings, dsn(VICTIM, "4.4.1", action="delayed", to=real.mail_from))
    assert item.campaign_id == sent.campaign_id


def test_guessed_message_id_proves_nothing(sent: Sent, db: Session) -> None:
    victim_id = db.scalar(select(Contact.id).where(Contact.email == VICTIM))
    campaign = db.get(Campaign, sent.campaign_id)
    assert campaign is not None
    # The old pattern: Mallory reads <cC.rM.NONCE@...> in her own copy and writes the victim's.
    nonce = campaign.plan["nonce"]
    guessed = f"<c{sent.campaign_id}.r{victim_id}.{nonce}@hanul.example.org>"
    ids = set(db.scalars(select(Delivery.message_id)))
    assert guessed not in ids and not any(nonce in i for i in ids)
    [item] = run(db, sent.settings, dsn("old.address@elsewhere.example", about=guessed))
    assert item.outcome == "unknown-address" and not item.processed
    assert suppressed(db, VICTIM) is None
    # Mallory's own, genuine Message-ID does not prove a report naming someone else.
    own = sent.received[MALLORY].message_id
    [item] = run(db, sent.settings, dsn(VICTIM, about=own))
    assert item.action.startswith("held for review")
    assert "was sent to another address" in item.detail
    assert suppressed(db, VICTIM) is None and suppressed(db, MALLORY) is None


def test_forged_from_mailed_unsubscribe_is_held(sent: Sent, db: Session, cli: Cli) -> None:
    [item] = run(db, sent.settings, mail("unsubscribe", sender=f"Victim <{VICTIM}>"))
    assert item.outcome == "unsubscribe" and item.action.startswith("held for review")
    assert suppressed(db, VICTIM) is None
    [review_id] = held(db)
    db.commit()
    data = json.loads(cli("bounces", "review", "--json").output)
    assert [(r["id"], r["email"], r["action"], r["state"]) for r in data] == [
        (review_id, VICTIM, "unsubscribe", "pending")
    ]
    assert "From address proves nothing" in data[0]["why"]
    out = json.loads(cli("bounces", "review", "--apply", str(review_id), "--json").output)
    assert out["state"] == "applied" and out["outcome"].startswith("unsubscribed")
    db.rollback()
    assert suppressed(db, VICTIM) == SuppressionReason.UNSUBSCRIBE_ALL


def test_dismissed_report_changes_nothing(sent: Sent, db: Session, cli: Cli) -> None:
    run(db, sent.settings, dsn(VICTIM))
    [review_id] = held(db)
    db.commit()
    out = cli("bounces", "review", "--dismiss", str(review_id)).output
    assert f"{review_id}: dismissed" in out
    assert "no held reports pending review" in cli("bounces", "review").output
    assert "dismissed" in cli("bounces", "review", "--all").output
    assert (
        "no held report with id 999" in cli("bounces", "review", "--apply", "999", expect=1).output
    )
    db.rollback()
    assert suppressed(db, VICTIM) is None


# -- genuine reports, built from what mailer really sent, still act -------------------------


def test_genuine_dsn_with_signed_verp_suppresses(sent: Sent, db: Session) -> None:
    real = sent.received[VICTIM]
    decoded = verp_decode(BOUNCES, real.mail_from, secret_key=sent.settings.secret_key)
    assert decoded is not None and decoded.signed and decoded.email == VICTIM
    assert decoded.campaign_id == sent.campaign_id
    # The report names a forwarding address; the VERP address says whom it is about.
    [item] = run(db, sent.settings, dsn("forwarded@elsewhere.example", to=real.mail_from))
    assert (item.email, item.matched_by, item.action) == (VICTIM, "verp", "suppressed")
    assert item.campaign_id == sent.campaign_id
    assert suppressed(db, VICTIM) == SuppressionReason.HARD_BOUNCE


def test_genuine_reports_by_message_id_act_without_verp(
    sent: Sent, db: Session, tmp_path: Path
) -> None:
    no_verp = Settings(**{**sent.settings.__dict__, "verp": False})
    real = sent.received[VICTIM]
    [item] = run(db, no_verp, dsn(VICTIM, about=real.message_id))
    assert (item.matched_by, item.action) == ("message-id", "suppressed")
    # A complaint about Kim's real message, attached whole (the feedback loop redacts the
    # recipient): its Message-ID is in the ledger, sent to Kim.
    kim = sent.received["kim@news.example.kr"]
    raw = arf("redacted@isp.example", about=kim.message_id)
    [item] = run(db, no_verp, raw)
    assert (item.outcome, item.email, item.action) == (
        "complaint",
        "kim@news.example.kr",
        "suppressed",
    )


def test_genuine_mailed_unsubscribe_uses_the_token_of_the_real_message(
    sent: Sent, db: Session
) -> None:
    real = sent.received[MALLORY]
    mailto = re.search(
        r"<mailto:[^?>]+\?subject=unsubscribe%20([^>]+)>",
        str(real.message["List-Unsubscribe"]).replace("\n", ""),
    )
    assert mailto is not None
    # Sent from another address (a forward): the token is the proof, not the From.
    [item] = run(
        db, sent.settings, mail(f"unsubscribe {mailto.group(1)}", sender="assistant@evil.example")
    )
    assert (item.email, item.matched_by) == (MALLORY, "token")
    assert item.action.startswith("unsubscribed")


def test_verp_tag_and_message_id_are_keyed(sent: Sent) -> None:
    key = sent.settings.secret_key
    address = verp_encode(BOUNCES, VICTIM, secret_key=key, campaign_id=7)
    assert verp_decode(BOUNCES, address, secret_key=key) is not None
    other = verp_decode(BOUNCES, address, secret_key=key + "x")
    assert other is not None and not other.signed and other.campaign_id is None
    tampered = address.replace("=7.", "=8.")
    decoded = verp_decode(BOUNCES, tampered, secret_key=key)
    assert decoded is not None and not decoded.signed
    # Deterministic per (campaign, contact), different for another contact or key.
    assert message_id(1, 2, key, "x.org") == message_id(1, 2, key, "x.org")
    assert message_id(1, 2, key, "x.org") != message_id(1, 3, key, "x.org")
    assert message_id(1, 2, key, "x.org") != message_id(1, 2, key + "x", "x.org")


def test_the_database_computes_the_same_message_ids(sent: Sent, db: Session) -> None:
    """Planning computes the ids in SQL (a function on SQLite, sha256() on PostgreSQL)."""
    rows = db.execute(
        select(Delivery.campaign_id, Delivery.contact_id, Delivery.email, Delivery.message_id)
    ).all()
    assert len(rows) == len(PEOPLE)
    for campaign_id, contact_id, email, mid in rows:
        assert contact_id is not None
        assert mid == message_id(
            campaign_id,
            contact_id,
            sent.settings.secret_key,
            "hanul.example.org",
            installation_part(db),  # this database's own part (migration 0010)
        )
        assert sent.received[email].message_id == mid
