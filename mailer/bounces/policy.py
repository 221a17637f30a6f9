"""Bounces, complaints and mailed unsubscribes -> the suppression list and the campaign report.

Policy (documented in the README, "Bounces"):
- Hard bounce (5.1.x, or a permanent failure saying the address does not exist): suppressed at once.
- Complaint (ARF Feedback-Type abuse or fraud): suppressed at once.
- Soft bounce (4.x.x given up, mailbox full, other failures) and block (x.7.x, content refusals):
  one point each. A bounce's time is the sending time of the delivery it names (else when it was
  recorded). The score counts those within `soft_bounce_window_days` of now and after the last
  successful delivery; reaching `soft_bounce_threshold` (0 turns this off) suppresses, but only if
  at least one of them is a soft bounce, so blocks alone never suppress.
- A successful delivery: `sent`, and no hard/soft/block/delay report names it.
- Delay notices, auto-replies and other reports are recorded, never counted.
Every report is recorded once in the Bounce table, keyed by its Message-ID.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
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
from mailer.bounces.sources import MailboxError, Source
from mailer.config import Settings
from mailer.contacts.addresses import normalise, verp_decode
from mailer.contacts.contact import unsubscribe
from mailer.contacts.suppressions import get_suppression, suppress
from mailer.errors import InvalidInputError, MailerError, TokenError
from mailer.store import audit
from mailer.store.models import (
    Bounce,
    Campaign,
    Contact,
    Delivery,
    DeliveryStatus,
    MailingList,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)

KINDS = (HARD, SOFT, BLOCK, DELAYED, COMPLAINT, UNSUBSCRIBE, AUTOREPLY, IGNORED)
# Outcomes of a message that is left in the mailbox for a person.
UNKNOWN_ADDRESS = "unknown-address"
UNPARSEABLE = "unparseable"
UNRECOGNISED = "unrecognised"
# A report recorded by an earlier run: processed, nothing done again.
DUPLICATE = "duplicate"
# Reports that say a delivery did not (yet) arrive: such a delivery never resets the score.
NOT_DELIVERED = (HARD, SOFT, BLOCK, DELAYED)


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
    email, matched_by, delivery = _match(session, settings, parsed, r)
    if email is None:
        named = [a for a in (r.original, r.final) if a] + \
            [f"Message-ID {m}" for m in parsed.original_ids[:1]]
        item.outcome = UNKNOWN_ADDRESS
        item.detail = ("no known contact or delivery for " + (", ".join(named) or "this report")
                       + f" ({r.why}); left in place")
        return item
    source_id = (f"{parsed.source_id} {email}" if many else parsed.source_id)[:500]
    item.email, item.matched_by, item.source_message_id = email, matched_by, source_id
    if _already(session, source_id):
        item.outcome, item.processed = DUPLICATE, True
        item.detail = "already processed in an earlier run"
        return item
    if delivery is None:
        delivery = _latest_delivery(session, email)
    item.campaign_id = delivery.campaign_id if delivery else None
    bounce = Bounce(source_message_id=source_id, email=email, kind=r.kind,
                    status_code=r.status, diagnostic=(r.diagnostic or r.why)[:2000],
                    delivery_id=delivery.id if delivery else None,
                    campaign_id=item.campaign_id, created_at=clock.now())
    session.add(bounce)
    session.flush()
    item.outcome, item.processed = r.kind, True
    contact_id = session.scalar(select(Contact.id).where(Contact.email == email))
    if r.kind in (HARD, SOFT, BLOCK, COMPLAINT):
        audit.record(session, "bounce", contact_id=contact_id, campaign_id=item.campaign_id,
                     bounce_kind=r.kind, status=r.status, source=source_id)
    if r.kind == HARD:
        item.action = _suppress(session, email, SuppressionReason.HARD_BOUNCE,
                                f"bounce {r.status or ''} {parsed.source_id}")
    elif r.kind == COMPLAINT:
        item.action = _suppress(session, email, SuppressionReason.COMPLAINT,
                                f"complaint {parsed.feedback_type} {parsed.source_id}")
    elif r.kind in (SOFT, BLOCK):
        score, soft = soft_score(session, settings, email)
        threshold = settings.soft_bounce_threshold
        item.action = f"score {score}/{threshold or 'off'}"
        if threshold and score >= threshold and soft:
            item.action = _suppress(
                session, email, SuppressionReason.HARD_BOUNCE,
                f"{score} soft bounces in {settings.soft_bounce_window_days} days",
            ) + f" (score {score}/{threshold})"
        elif threshold and score >= threshold:
            item.action += " (blocks only: not suppressed)"
    return item


def _suppress(session: Session, email: str, reason: SuppressionReason, source: str) -> str:
    existing = get_suppression(session, email)
    suppress(session, email, reason, source=source[:200], actor="bounces")
    return "already suppressed" if existing is not None else "suppressed"


def _match(session: Session, settings: Settings, parsed: Report,
           r: Recipient) -> tuple[str | None, str | None, Delivery | None]:
    """(address, how it was matched, the delivery named by Message-ID if any)."""
    by_id = _deliveries_by_message_id(session, parsed.original_ids)
    candidates: list[tuple[str, str]] = []
    if settings.verp:
        for addr in parsed.envelope_to:
            decoded = verp_decode(settings.bounce_address, addr)
            if decoded:
                candidates.append((decoded, "verp"))
    candidates += [(a, how) for a, how in ((r.original, "original-recipient"),
                                           (r.final, "final-recipient")) if a]
    candidates += [(d.email, "message-id") for d in by_id]
    for value, how in candidates:
        email = _key(value)
        if email is None or not _known(session, email):
            continue
        delivery = next((d for d in by_id if d.email == email), None)
        return email, how, delivery
    return None, None, None


def _key(value: str) -> str | None:
    try:
        return normalise(value).key
    except InvalidInputError:
        return None


def _known(session: Session, email: str) -> bool:
    if session.scalar(select(Contact.id).where(Contact.email == email)) is not None:
        return True
    return session.scalar(select(Delivery.id).where(Delivery.email == email).limit(1)) is not None


def _deliveries_by_message_id(session: Session, ids: Iterable[str]) -> list[Delivery]:
    ids = [i for i in ids if i][:10]
    if not ids:
        return []
    return list(session.scalars(select(Delivery).where(Delivery.message_id.in_(ids))))


def _latest_delivery(session: Session, email: str) -> Delivery | None:
    """For the campaign report only: the most recent message sent to this address."""
    return session.scalar(
        select(Delivery).where(Delivery.email == email, Delivery.sent_at.is_not(None),
                               Delivery.sent_at <= clock.now())
        .order_by(Delivery.sent_at.desc()).limit(1)
    )


def soft_score(session: Session, settings: Settings, email: str) -> tuple[int, int]:
    """(soft and block bounces that count now, how many of them are soft) for one address."""
    now = clock.now()
    since = now - timedelta(days=settings.soft_bounce_window_days)
    rows = session.execute(
        select(Bounce.kind, Bounce.created_at, Delivery.sent_at)
        .outerjoin(Delivery, Delivery.id == Bounce.delivery_id)
        .where(Bounce.email == email, Bounce.kind.in_((SOFT, BLOCK)))
    ).all()
    reset = _last_success(session, email)
    counted = []
    for kind, created_at, sent_at in rows:
        at: datetime = sent_at or created_at
        if at >= since and (reset is None or at > reset):
            counted.append(kind)
    return len(counted), sum(1 for k in counted if k == SOFT)


def _last_success(session: Session, email: str) -> datetime | None:
    """The sending time of the last delivery that no bounce or delay report names."""
    not_delivered = select(Bounce.delivery_id).where(
        Bounce.delivery_id.is_not(None), Bounce.kind.in_(NOT_DELIVERED)
    )
    return session.scalar(
        select(func.max(Delivery.sent_at)).where(
            Delivery.email == email, Delivery.status == DeliveryStatus.SENT,
            Delivery.sent_at.is_not(None), Delivery.id.not_in(not_delivered),
        )
    )


def _autoreply(session: Session, settings: Settings, parsed: Report, base: Item) -> Item:
    item = _copy(base, outcome=AUTOREPLY, processed=True,
                 detail="an auto-reply or vacation notice: ignored, never a bounce")
    # Who is away: VERP or the Message-ID replied to, else the sender if it is a contact.
    email, how, delivery = _match(session, settings, parsed,
                                  Recipient(None, parsed.sender, AUTOREPLY, None, None, ""))
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
            return _record(session, parsed, item, None)
        item.email, item.matched_by, item.campaign_id = contact.email, "token", data.campaign_id
        ml = session.get(MailingList, data.list_id) if data.list_id is not None else None
        if data.list_id is not None and ml is None:
            item.outcome = IGNORED
            item.detail = "a valid token for a list that no longer exists: nothing to do"
            return _record(session, parsed, item, contact.email)
        if ml is not None and not _subscribed_to(session, contact.id, ml.id):
            item.action = f"not subscribed to {ml.slug!r} (any more)"
        else:
            changed = unsubscribe(session, contact.email, ml.slug if ml else None, via="mailto",
                                  actor="bounces")
            where = ml.slug if ml else "every list (suppressed)"
            item.action = f"unsubscribed from {where}" if changed or ml is None else \
                f"already unsubscribed from {where}"
        item.detail = "a signed unsubscribe token"
        return _record(session, parsed, item, contact.email)
    sender = _key(parsed.sender or "")
    contact = session.scalar(select(Contact).where(Contact.email == sender)) if sender else None
    if contact is None or not parsed.intent:
        reason = "its token is not valid" if parsed.tokens else "it carries no token"
        item.outcome = UNRECOGNISED
        item.detail = (f"an unsubscribe request, but {reason} and its sender "
                       f"{parsed.sender or '(none)'} is not a contact; left for a person")
        return item
    changed = unsubscribe(session, contact.email, None, via="mailto", actor="bounces")
    item.email, item.matched_by = contact.email, "from"
    item.action = "unsubscribed from every list (suppressed)" + \
        (f": {', '.join(changed)}" if changed else "")
    item.detail = "a request from the contact's own address without a valid token"
    return _record(session, parsed, item, contact.email)


def _subscribed_to(session: Session, contact_id: int, list_id: int) -> bool:
    return session.scalar(select(Subscription.id).where(
        Subscription.contact_id == contact_id, Subscription.list_id == list_id,
        Subscription.status != SubscriptionStatus.UNSUBSCRIBED)) is not None


def _record(session: Session, parsed: Report, item: Item, email: str | None) -> Item:
    item.campaign_id = _campaign(session, item.campaign_id)
    session.add(Bounce(source_message_id=parsed.source_id, email=email, kind=item.outcome,
                       diagnostic=item.detail, campaign_id=item.campaign_id,
                       created_at=clock.now()))
    session.flush()
    item.processed = True
    return item


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
