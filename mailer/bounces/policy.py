"""Bounces, complaints and mailed unsubscribes -> the suppression list and the campaign report.

Policy (docs/bounces.md):
- Only a report provably about a message mailer sent to that recipient is applied by itself:
  a signed VERP address, or a Message-ID from the ledger on a delivery to that recipient that
  was attempted (bounces/proof.py); for a mailed unsubscribe, a valid signed token. Anything
  else naming a known address is recorded and held for review (bounces/review.py), never applied.
- Hard bounce (5.1.x, or a permanent failure saying the address does not exist): suppressed.
- Complaint (ARF Feedback-Type abuse or fraud): suppressed.
- Soft bounce (4.x.x given up, mailbox full, other failures) and block (x.7.x, content refusals):
  one point each. A bounce's time is the sending time of the delivery it names (else when it was
  recorded). The score counts proven ones within `soft_bounce_window_days` of now and after the
  last successful delivery; reaching `soft_bounce_threshold` (0 turns this off) suppresses, but
  only if at least one of them is a soft bounce, so blocks alone never suppress.
- A successful delivery: `sent`, and no hard/soft/block/delay report names it.
- Delay notices, auto-replies and other reports are recorded, never counted.
Every report is recorded once in the Bounce table, keyed by its Message-ID.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer import clock, tokens
from mailer.bounces import parse as bounce_parse
from mailer.bounces.parse import (
    AUTOREPLY,
    BLOCK,
    COMPLAINT,
    DELAYED,
    HARD,
    IGNORED,
    SOFT,
    UNSUBSCRIBE,
    Recipient,
    Report,
)
from mailer.bounces.proof import match
from mailer.bounces.review import act, hold, soft_score
from mailer.bounces.sources import MailboxError, Source
from mailer.config import Settings
from mailer.contacts.addresses import normalise
from mailer.contacts.contact import unsubscribe
from mailer.errors import InvalidInputError, MailerError, TokenError
from mailer.store import audit
from mailer.store.models import (
    Bounce,
    Campaign,
    Contact,
    Delivery,
    MailingList,
    Subscription,
    SubscriptionStatus,
)

__all__ = ["Item", "RunReport", "acknowledge", "bounce_counts", "process_mailbox",
           "process_message", "soft_score"]

KINDS = (HARD, SOFT, BLOCK, DELAYED, COMPLAINT, UNSUBSCRIBE, AUTOREPLY, IGNORED)
# Outcomes of a message that is left in the mailbox for a person.
UNKNOWN_ADDRESS = "unknown-address"
UNPARSEABLE = "unparseable"
UNRECOGNISED = "unrecognised"
# A report recorded by an earlier run: processed, nothing done again.
DUPLICATE = "duplicate"


@dataclass
class Item:
    """The outcome for one recipient of one message (see README, `bounces process --json`)."""

    message: str
    outcome: str
    source_message_id: str | None = None
    subject: str = ""
    email: str | None = None
    matched_by: str | None = None
    campaign_id: int | None = None
    status: str | None = None
    diagnostic: str | None = None
    action: str = "none"
    detail: str = ""
    processed: bool = False


@dataclass
class RunReport:
    source: str
    dry_run: bool
    messages: int = 0
    items: list[Item] = field(default_factory=list)
    acknowledged: str = ""
    acknowledge_error: str | None = None

    @property
    def acknowledge_keys(self) -> list[str]:
        """Messages every item of which was processed: these may leave the mailbox."""
        done: dict[str, bool] = {}
        for item in self.items:
            done[item.message] = done.get(item.message, True) and item.processed
        return [key for key, ok in done.items() if ok]

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in (*KINDS, DUPLICATE, UNKNOWN_ADDRESS, UNRECOGNISED, UNPARSEABLE)}
        for item in self.items:
            out[item.outcome] = out.get(item.outcome, 0) + 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "messages": self.messages,
            "counts": self.counts(),
            "suppressed": sorted({i.email for i in self.items
                                  if i.email and i.action.startswith("suppressed")}),
            "unsubscribed": sorted({i.email for i in self.items
                                    if i.email and i.action.startswith("unsubscribed")}),
            # Recorded but not applied: nothing proves them (see `mailer bounces review`).
            "held": sorted({i.email for i in self.items
                            if i.email and i.action.startswith("held for review")}),
            "left_in_place": len({i.message for i in self.items}) - len(self.acknowledge_keys),
            "acknowledged": self.acknowledged,
            "acknowledge_error": self.acknowledge_error,
            "items": [asdict(i) for i in self.items],
        }


def process_mailbox(session: Session, settings: Settings, source: Source, *,
                    dry_run: bool = False) -> RunReport:
    """Read every message of `source`, record and act on each; dry-run changes nothing."""
    report = RunReport(source=source.label, dry_run=dry_run)
    outer = session.begin_nested()
    try:
        for message in source.messages():
            report.messages += 1
            if message.raw is None:
                report.items.append(Item(message.key, UNPARSEABLE,
                                         detail=message.problem or "unreadable"))
                continue
            report.items.extend(process_message(session, settings, message.key, message.raw))
    except BaseException:
        # The source failed half-way (e.g. the IMAP connection dropped): nothing was moved,
        # so nothing is recorded either; the next run starts over.
        outer.rollback()
        raise
    if dry_run:
        outer.rollback()
    else:
        outer.commit()
    return report


def acknowledge(source: Source, report: RunReport) -> None:
    """After the commit: move or flag processed messages. Failures are noted, never raised."""
    if report.dry_run:
        report.acknowledged = "dry run: nothing moved"
        return
    try:
        report.acknowledged = source.acknowledge(report.acknowledge_keys)
    except MailboxError as err:
        report.acknowledge_error = (
            f"{err}; the messages are recorded, so the next run skips them as duplicates"
        )


def process_message(session: Session, settings: Settings, key: str, raw: bytes) -> list[Item]:
    """Parse one message and act on it inside a savepoint: an error undoes only this message."""
    try:
        parsed = bounce_parse.parse(raw)
    except bounce_parse.Unparseable as err:
        return [Item(key, UNPARSEABLE, detail=str(err))]
    except Exception as err:  # the email package on hostile input: report, never a traceback
        return [Item(key, UNPARSEABLE, detail=f"{type(err).__name__}: {err}")]
    base = Item(key, UNRECOGNISED, source_message_id=parsed.source_id,
                subject=parsed.subject[:200])
    if parsed.form == "unrecognised":
        base.detail = parsed.note
        return [base]
    savepoint = session.begin_nested()
    try:
        if parsed.form == UNSUBSCRIBE:
            items = [_unsubscribe(session, settings, parsed, base)]
        elif parsed.form == AUTOREPLY:
            items = [_autoreply(session, settings, parsed, base)]
        else:
            many = len(parsed.recipients) > 1
            items = [_recipient(session, settings, parsed, r, base, many)
                     for r in parsed.recipients]
        savepoint.commit()
        return items
    except MailerError as err:
        savepoint.rollback()
        return [_copy(base, outcome=UNRECOGNISED, detail=f"not processed: {err}")]
    except IntegrityError:
        # Another run recorded the same report between our check and our insert.
        savepoint.rollback()
        return [_copy(base, outcome=DUPLICATE, processed=True,
                      detail="recorded by another run at the same time")]


def _copy(base: Item, **changes: Any) -> Item:
    return Item(**{**asdict(base), **changes})


def _already(session: Session, source_id: str) -> bool:
    return session.scalar(select(Bounce.id).where(Bounce.source_message_id == source_id)) \
        is not None


def _recipient(session: Session, settings: Settings, parsed: Report, r: Recipient, base: Item,
               many: bool) -> Item:
    item = _copy(base, status=r.status, diagnostic=(r.diagnostic or "")[:500] or None,
                 detail=r.why)
    found = match(session, settings, parsed, r, many=many)
    email = found.email
    if email is None:
        named = [a for a in (r.original, r.final) if a] + \
            [f"Message-ID {m}" for m in parsed.original_ids[:1]]
        item.outcome = UNKNOWN_ADDRESS
        item.detail = ("no known contact or delivery for " + (", ".join(named) or "this report")
                       + f" ({r.why}); left in place")
        return item
    source_id = (f"{parsed.source_id} {email}" if many else parsed.source_id)[:500]
    item.email, item.matched_by, item.source_message_id = email, found.matched_by, source_id
    if _already(session, source_id):
        item.outcome, item.processed = DUPLICATE, True
        item.detail = "already processed in an earlier run"
        return item
    needs_proof = r.kind in (HARD, SOFT, BLOCK, COMPLAINT)
    # An unproven failure or delay is attributed to no delivery and no campaign: a forgery must
    # not mark a delivery as not delivered (that would stop it resetting the score) nor change
    # campaign figures.
    attributable = found.proven or (not needs_proof and r.kind != DELAYED)
    delivery = found.delivery if found.proven else None
    if delivery is None and attributable:
        delivery = _latest_delivery(session, email)
    item.campaign_id = _campaign(session, delivery.campaign_id if delivery else
                                 found.campaign_id if found.proven else None)
    bounce = Bounce(source_message_id=source_id, email=email, kind=r.kind,
                    status_code=r.status, diagnostic=(r.diagnostic or r.why)[:2000],
                    delivery_id=delivery.id if delivery else None,
                    campaign_id=item.campaign_id, created_at=clock.now())
    session.add(bounce)
    session.flush()
    item.outcome, item.processed = r.kind, True
    if not needs_proof:
        return item
    if not found.proven:
        review = hold(session, bounce, email, found.why)
        item.action = f"held for review {review.id}"
        item.detail = f"{found.why} ({r.why}); `mailer bounces review` to apply or dismiss it"
        return item
    contact_id = session.scalar(select(Contact.id).where(Contact.email == email))
    audit.record(session, "bounce", contact_id=contact_id, campaign_id=item.campaign_id,
                 bounce_kind=r.kind, status=r.status, source=source_id)
    what = f"{parsed.feedback_type} {parsed.source_id}" if r.kind == COMPLAINT \
        else parsed.source_id
    item.action = act(session, settings, r.kind, email, what, r.status)
    return item


def _latest_delivery(session: Session, email: str) -> Delivery | None:
    """For the campaign report only: the most recent message sent to this address."""
    return session.scalar(
        select(Delivery).where(Delivery.email == email, Delivery.sent_at.is_not(None),
                               Delivery.sent_at <= clock.now())
        .order_by(Delivery.sent_at.desc()).limit(1)
    )


def _autoreply(session: Session, settings: Settings, parsed: Report, base: Item) -> Item:
    item = _copy(base, outcome=AUTOREPLY, processed=True,
                 detail="an auto-reply or vacation notice: ignored, never a bounce")
    # Who is away: VERP or the Message-ID replied to, else the sender if it is a contact.
    found = match(session, settings, parsed,
                  Recipient(None, parsed.sender, AUTOREPLY, None, None, ""))
    email, how, delivery = found.email, found.matched_by, found.delivery
    item.email, item.matched_by = email, "from" if how == "final-recipient" else how
    if _already(session, parsed.source_id):
        return _copy(item, outcome=DUPLICATE, detail="already processed in an earlier run")
    if delivery is None and email is not None:
        delivery = _latest_delivery(session, email)
    item.campaign_id = delivery.campaign_id if delivery else None
    session.add(Bounce(source_message_id=parsed.source_id, email=email, kind=AUTOREPLY,
                       delivery_id=delivery.id if delivery else None,
                       campaign_id=item.campaign_id, created_at=clock.now()))
    session.flush()
    return item


def _unsubscribe(session: Session, settings: Settings, parsed: Report, base: Item) -> Item:
    """A valid token unsubscribes its contact; else a From that is a contact leaves every list."""
    item = _copy(base, outcome=UNSUBSCRIBE)
    if _already(session, parsed.source_id):
        return _copy(item, outcome=DUPLICATE, processed=True,
                     detail="already processed in an earlier run")
    for token in parsed.tokens:
        try:
            data = tokens.read_unsubscribe(settings, token)
        except TokenError:
            continue
        contact = session.get(Contact, data.contact_id)
        if contact is None:
            item.outcome = IGNORED
            item.detail = "a valid token for a contact that no longer exists: nothing to do"
            _record(session, parsed, item, None)
            return item
        item.email, item.matched_by, item.campaign_id = contact.email, "token", data.campaign_id
        ml = session.get(MailingList, data.list_id) if data.list_id is not None else None
        if data.list_id is not None and ml is None:
            item.outcome = IGNORED
            item.detail = "a valid token for a list that no longer exists: nothing to do"
            _record(session, parsed, item, contact.email)
            return item
        if ml is not None and not _subscribed_to(session, contact.id, ml.id):
            item.action = f"not subscribed to {ml.slug!r} (any more)"
        else:
            changed = unsubscribe(session, contact.email, ml.slug if ml else None, via="mailto",
                                  actor="bounces")
            where = ml.slug if ml else "every list (suppressed)"
            item.action = f"unsubscribed from {where}" if changed or ml is None else \
                f"already unsubscribed from {where}"
        item.detail = "a signed unsubscribe token"
        _record(session, parsed, item, contact.email)
        return item
    sender = _key(parsed.sender or "")
    contact = session.scalar(select(Contact).where(Contact.email == sender)) if sender else None
    if contact is None or not parsed.intent:
        reason = "its token is not valid" if parsed.tokens else "it carries no token"
        item.outcome = UNRECOGNISED
        item.detail = (f"an unsubscribe request, but {reason} and its sender "
                       f"{parsed.sender or '(none)'} is not a contact; left for a person")
        return item
    # A From header is anyone's to write: without a valid token the request waits for a person.
    item.email, item.matched_by = contact.email, "from"
    why = (f"an unsubscribe request from {contact.email} "
           + ("whose token is not valid" if parsed.tokens else "without the signed token")
           + " of the List-Unsubscribe address: the From address proves nothing")
    bounce = _record(session, parsed, item, contact.email)
    review = hold(session, bounce, contact.email, why)
    item.action = f"held for review {review.id}"
    item.detail = why + "; `mailer bounces review` to apply or dismiss it"
    return item


def _key(value: str) -> str | None:
    try:
        return normalise(value).key
    except InvalidInputError:
        return None


def _subscribed_to(session: Session, contact_id: int, list_id: int) -> bool:
    return session.scalar(select(Subscription.id).where(
        Subscription.contact_id == contact_id, Subscription.list_id == list_id,
        Subscription.status != SubscriptionStatus.UNSUBSCRIBED)) is not None


def _record(session: Session, parsed: Report, item: Item, email: str | None) -> Bounce:
    item.campaign_id = _campaign(session, item.campaign_id)
    bounce = Bounce(source_message_id=parsed.source_id, email=email, kind=item.outcome,
                    diagnostic=item.detail, campaign_id=item.campaign_id, created_at=clock.now())
    session.add(bounce)
    session.flush()
    item.processed = True
    return bounce


def _campaign(session: Session, campaign_id: int | None) -> int | None:
    if campaign_id is None or session.get(Campaign, campaign_id) is None:
        return None
    return campaign_id


def bounce_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Reports recorded for one campaign, by kind (every kind present, zero when none)."""
    counts = {k: 0 for k in KINDS}
    rows = session.execute(
        select(Bounce.kind, func.count()).where(Bounce.campaign_id == campaign_id)
        .group_by(Bounce.kind)
    )
    for kind, n in rows:
        counts[kind] = n
    return counts
