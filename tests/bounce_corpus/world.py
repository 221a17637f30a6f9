"""The world the bounce corpus is about: lists, contacts, one sent campaign, and the messages.

Used by tests/test_bounces*.py and bench/bench_bounces.py. expected.json beside this file is the
ground truth: every contact N was sent <c1.rN.a1b2c3d4e5@hanul.example.org> on 3 March 2025.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import tokens
from mailer.bounces.policy import Item, RunReport
from mailer.config import Settings
from mailer.contacts.addresses import verp_encode
from mailer.contacts.contact import add_contact
from mailer.contacts.lists import create_list
from mailer.store.models import (
    Campaign,
    CampaignStatus,
    Contact,
    Delivery,
    DeliveryStatus,
    MailingList,
    Release,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)

HERE = Path(__file__).parent
EXPECTED: dict[str, Any] = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
SENT_AT = datetime(2025, 3, 3, 9, 2, 9, tzinfo=UTC)
PROCESSED_AT = datetime(2025, 3, 6, 12, 0, tzinfo=UTC)
_TOKEN = re.compile(r"@@TOKEN (\S+) (\S+) (\S+)@@")
_VERP = re.compile(r"bounces\+([^=@\s<>]+)=([^=@\s<>]+)@hanul\.example\.org")


def message_id(n: int | str, campaign: int = 1) -> str:
    return f"<c{campaign}.r{n}.a1b2c3d4e5@hanul.example.org>"


@dataclass
class World:
    campaign: Campaign
    contacts: dict[str, Contact]  # by email
    deliveries: dict[str, Delivery]  # by email


def make_campaign(session: Session, slug: str = "lunar-new-year") -> Campaign:
    release = Release(
        slug=slug,
        title="Lunar New Year festival draws 4,000 visitors",
        default_language="en",
        front_matter={},
        variants={},
        content_hash=slug.ljust(64, "0")[:64],
    )
    session.add(release)
    session.flush()
    campaign = Campaign(
        release_id=release.id,
        audience_key=f"lists:{slug}",
        audience={},
        status=CampaignStatus.DONE,
        plan={},
    )
    session.add(campaign)
    session.flush()
    return campaign


def add_delivery(
    session: Session,
    campaign: Campaign,
    contact: Contact,
    mid: str,
    sent_at: datetime = SENT_AT,
    status: DeliveryStatus = DeliveryStatus.SENT,
) -> Delivery:
    delivery = Delivery(
        campaign_id=campaign.id,
        contact_id=contact.id,
        email=contact.email,
        language="en",
        status=status,
        attempts=1,
        message_id=mid,
        sent_at=sent_at if status == DeliveryStatus.SENT else None,
    )
    session.add(delivery)
    session.flush()
    return delivery


def build(session: Session) -> World:
    """Lists press-en and press-ko, every contact of expected.json, and campaign 1 sent to all."""
    for slug, name in (("press-en", "Press releases (English)"), ("press-ko", "보도자료 (한국어)")):
        if session.scalar(select(MailingList).where(MailingList.slug == slug)) is None:
            create_list(session, slug, name)
    campaign = make_campaign(session)
    contacts: dict[str, Contact] = {}
    deliveries: dict[str, Delivery] = {}
    for n, info in EXPECTED["contacts"].items():
        contact = None
        for slug in info["lists"]:
            contact, _ = add_contact(session, info["email"], slug)
        assert contact is not None
        contacts[contact.email] = contact
        deliveries[contact.email] = add_delivery(session, campaign, contact, message_id(n))
    session.flush()
    return World(campaign, contacts, deliveries)


def render(raw: bytes, session: Session, settings: Settings, campaign_id: int) -> bytes:
    """Replace @@TOKEN email list campaign@@ with the real signed unsubscribe token."""

    def token(m: re.Match[bytes]) -> bytes:
        email, slug, _campaign = (g.decode() for g in m.groups())
        contact = session.scalar(select(Contact).where(Contact.email == email))
        assert contact is not None, email
        list_id = None
        if slug != "-":
            list_id = session.scalar(select(MailingList.id).where(MailingList.slug == slug))
        return tokens.make_unsubscribe(settings, contact.id, list_id, campaign_id).encode()

    def verp(m: re.Match[bytes]) -> bytes:
        # The corpus was captured with unsigned VERP; mailer's envelope sender carries an HMAC
        # tag now, so a genuine bounce comes back to the signed address.
        recipient = f"{m.group(1).decode()}@{m.group(2).decode()}"
        return verp_encode(
            "bounces@hanul.example.org",
            recipient,
            secret_key=settings.secret_key,
            campaign_id=campaign_id,
        ).encode()

    raw = re.sub(_VERP.pattern.encode(), verp, raw)
    return re.sub(_TOKEN.pattern.encode(), token, raw)


def corpus(session: Session, settings: Settings, campaign_id: int) -> list[tuple[str, bytes]]:
    """(file name, message bytes with real tokens) for every message of the corpus, in order."""
    return [
        (p.name, render(p.read_bytes(), session, settings, campaign_id))
        for p in sorted(HERE.glob("*.eml"))
    ]


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    """An mbox file (mboxrd quoting) holding `messages`."""
    out = bytearray()
    for raw in messages:
        out += b"From MAILER-DAEMON Mon Mar  3 09:10:00 2025\n"
        for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
            out += (b">" + line if re.match(rb"^>*From ", line) else line) + b"\n"
        out += b"\n"
    path.write_bytes(bytes(out))
    return path


@dataclass
class Evaluation:
    """The corpus run scored against expected.json."""

    rows: list[str]
    wrong: list[str]
    truth_suppressed: set[str]
    suppressed: set[str]
    truth_unsubscribed: set[str]
    unsubscribed: set[str]

    def lines(self) -> list[str]:
        right = len(self.rows) - len(self.wrong)
        hit_s = len(self.suppressed & self.truth_suppressed)
        hit_u = len(self.unsubscribed & self.truth_unsubscribed)
        missed = sorted(self.truth_suppressed - self.suppressed)
        return [
            f"bounce corpus: {len(self.rows)} messages",
            *self.rows,
            f"classification (outcome and address right): {_ratio(right, len(self.rows))}",
            "suppression by hard bounces and complaints:",
            f"  precision {_ratio(hit_s, len(self.suppressed))}",
            f"  recall    {_ratio(hit_s, len(self.truth_suppressed))}"
            + (f"  (missed: {', '.join(missed)})" if missed else ""),
            "mailed unsubscribes:",
            f"  precision {_ratio(hit_u, len(self.unsubscribed))}",
            f"  recall    {_ratio(hit_u, len(self.truth_unsubscribed))}",
        ]


def _ratio(a: int, b: int) -> str:
    return f"{a}/{b} = {a / b:.2f}" if b else "n/a"


def evaluate(session: Session, report: RunReport, names: list[str]) -> Evaluation:
    """Compare a run over the corpus (an mbox in file order) with expected.json."""
    expected = EXPECTED["messages"]
    items: dict[str, list[Item]] = {name: [] for name in names}
    for item in report.items:
        items[names[int(item.message.split()[0]) - 1]].append(item)  # "12 (line 340)"
    rows, wrong = [], []
    for name in names:
        exp, got = expected[name], items[name]
        outcome = got[0].outcome if got else "(none)"
        email = got[0].email if got else None
        ok = len(got) == 1 and outcome == exp["outcome"] and email == exp["email"]
        rows.append(f"  {'ok ' if ok else 'BAD'} {name:<42} {outcome:<16} {email or '-'}")
        if not ok:
            wrong.append(
                f"{name}: expected {exp['outcome']} {exp['email']}, "
                f"got {[(i.outcome, i.email, i.detail) for i in got]}"
            )
    bounced = {SuppressionReason.HARD_BOUNCE, SuppressionReason.COMPLAINT}
    suppressed = set(
        session.scalars(select(Suppression.email).where(Suppression.reason.in_(bounced)))
    )
    unsubscribed = set(
        session.scalars(
            select(Contact.email)
            .join(Subscription, Subscription.contact_id == Contact.id)
            .where(
                Subscription.status == SubscriptionStatus.UNSUBSCRIBED,
                Subscription.unsubscribed_via.in_(["mailto", "unsubscribe-all"]),
            )
        )
    ) | set(
        session.scalars(
            select(Suppression.email).where(Suppression.reason == SuppressionReason.UNSUBSCRIBE_ALL)
        )
    )
    return Evaluation(
        rows,
        wrong,
        {e["email"] for e in expected.values() if e["suppress"] and not e["unsubscribe"]},
        suppressed,
        {e["email"] for e in expected.values() if e["unsubscribe"]},
        unsubscribed,
    )
