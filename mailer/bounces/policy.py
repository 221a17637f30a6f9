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

Messages are handled in batches (bounces/batch.py): a few queries load what a batch names, each
message is decided in order as if alone, and the batch is written in bulk in one savepoint.
The batches of a large mailbox are classified in worker processes (bounces/pool.py); this
process alone decides and writes, in mailbox order.
(Over 400 lines on purpose: the run, its report and every kind's decision are read together.)
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from mailer import tokens
from mailer.bounces import pool, proof
from mailer.bounces.batch import Batch
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
from mailer.bounces.pool import Parsed
from mailer.bounces.proof import Match, match
from mailer.bounces.review import soft_score
from mailer.bounces.sources import MailboxError, Source, SourceMessage
from mailer.config import Settings
from mailer.contacts.contact import unsubscribe
from mailer.delivery.guards import check_complaints
from mailer.errors import MailerError, TokenError
from mailer.store.models import (
    Bounce,
    Contact,
    MailingList,
    Subscription,
    SubscriptionStatus,
    SuppressionReason,
)

__all__ = [
    "Item",
    "RunReport",
    "acknowledge",
    "bounce_counts",
    "process_mailbox",
    "process_message",
    "soft_score",
]

KINDS = (HARD, SOFT, BLOCK, DELAYED, COMPLAINT, UNSUBSCRIBE, AUTOREPLY, IGNORED)
# Outcomes of a message that is left in the mailbox for a person.
UNKNOWN_ADDRESS = "unknown-address"
UNPARSEABLE = "unparseable"
UNRECOGNISED = "unrecognised"
# A report recorded by an earlier run: processed, nothing done again.
DUPLICATE = "duplicate"
# Messages classified, looked up and written together (bounces/batch.py): large enough that
# the queries of a batch cost little per message, small enough for IN (...) lists.
BATCH_SIZE = 500


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
            "suppressed": sorted(
                {i.email for i in self.items if i.email and i.action.startswith("suppressed")}
            ),
            "unsubscribed": sorted(
                {i.email for i in self.items if i.email and i.action.startswith("unsubscribed")}
            ),
            # Recorded but not applied: nothing proves them (see `mailer bounces review`).
            "held": sorted(
                {i.email for i in self.items if i.email and i.action.startswith("held for review")}
            ),
            "left_in_place": len({i.message for i in self.items}) - len(self.acknowledge_keys),
            "acknowledged": self.acknowledged,
            "acknowledge_error": self.acknowledge_error,
            # Not dataclasses.asdict: it deep-copies every value, a tenth of a 10,000-message run.
            "items": [dict(i.__dict__) for i in self.items],
        }


def process_mailbox(
    session: Session,
    settings: Settings,
    source: Source,
    *,
    dry_run: bool = False,
    workers: int | None = None,
) -> RunReport:
    """Read every message of `source`, record and act on each; dry-run changes nothing.

    A mailbox of more than one batch is classified by `workers` processes (default: one per
    core, bounces/pool.py); this process alone records, batch by batch, in mailbox order."""
    report = RunReport(source=source.label, dry_run=dry_run)
    outer = session.begin_nested()
    try:
        with closing(pool.classified(source.messages(), BATCH_SIZE, workers)) as batches:
            for batch in batches:
                report.messages += len(batch)
                report.items.extend(_apply(session, settings, batch))
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
    return process_batch(session, settings, [SourceMessage(key, raw)])


def process_batch(
    session: Session, settings: Settings, messages: Sequence[SourceMessage]
) -> list[Item]:
    """Classify every message, then record and act on them (`_apply`)."""
    return _apply(
        session,
        settings,
        [(m, None if m.raw is None else pool.read(m.raw)) for m in messages],
    )


def _apply(
    session: Session, settings: Settings, messages: Sequence[tuple[SourceMessage, Parsed | None]]
) -> list[Item]:
    """Load what the classified messages name in a few queries, decide each in order, write
    in bulk, all in one savepoint. If that fails (another run recorded the same report
    meanwhile, or a message cannot be applied), the batch is undone and redone one message
    at a time, so the failure costs only its own message."""
    results: list[list[Item]] = []
    reports: list[tuple[int, str, Report]] = []
    for message, read in messages:
        if read is None:
            results.append([Item(message.key, UNPARSEABLE, detail=message.problem or "unreadable")])
            continue
        parsed = _parsed(message.key, read)
        if isinstance(parsed, Report):
            reports.append((len(results), message.key, parsed))
        results.append([] if isinstance(parsed, Report) else parsed)
    if not reports:
        return [item for items in results for item in items]
    savepoint = session.begin_nested()
    try:
        batch = Batch(session, settings)
        batch.load_people(
            (a for _, _, p in reports for a in proof.addresses(settings, p)),
            (i for _, _, p in reports for i in proof.message_ids(p)),
        )
        plans = [_plan(batch, settings, p) for _, _, p in reports]
        emails = {m.email for plan in plans for m in plan if m.email}
        source_ids = {p.source_id for _, _, p in reports} | {
            _source_id(p, m.email)
            for (_, _, p), plan in zip(reports, plans, strict=True)
            for m in plan
            if m.email and len(p.recipients) > 1
        }
        batch.load_state(
            emails, source_ids, {m.campaign_id for plan in plans for m in plan if m.campaign_id}
        )
        for (n, key, parsed), plan in zip(reports, plans, strict=True):
            batch.raw = messages[n][0].raw  # kept with its bounce rows (bounce_source)
            kept = len(batch.sources)
            results[n] = _decide(batch, settings, key, parsed, plan)
            if not any(_kept_report(item) for item in results[n]):
                # A report that changed nothing (a soft bounce under the threshold, a delay,
                # an auto-reply): its rows say all there is; the message is not kept.
                del batch.sources[kept:]
        batch.write()
        _guard_complaints(session, settings, results)
        savepoint.commit()
    except (MailerError, IntegrityError, DataError) as err:
        savepoint.rollback()
        if len(messages) > 1:
            return [item for m in messages for item in _apply(session, settings, [m])]
        _, key, parsed = reports[0]
        base = _base(key, parsed)
        if isinstance(err, MailerError):
            return [_copy(base, outcome=UNRECOGNISED, detail=f"not processed: {err}")]
        if isinstance(err, DataError):
            # PostgreSQL refuses some text SQLite keeps (a NUL byte): left for a person.
            return [
                _copy(
                    base,
                    outcome=UNRECOGNISED,
                    detail=f"not processed: the database refused it ({err.orig})",
                )
            ]
        # Another run recorded the same report between our check and our insert.
        return [
            _copy(
                base,
                outcome=DUPLICATE,
                processed=True,
                detail="recorded by another run at the same time",
            )
        ]
    return [item for items in results for item in items]


# What a report did that a person may later ask about ("why was she suppressed?"): its message
# is kept (bounce_source) for these, and only these.
_KEEP_FOR = ("suppressed", "already suppressed", "unsubscribed", "held for review")


def _kept_report(item: Item) -> bool:
    return item.outcome == COMPLAINT or item.action.startswith(_KEEP_FOR)


def _guard_complaints(session: Session, settings: Settings, results: list[list[Item]]) -> None:
    """A sending campaign whose proven complaints now cross the line pauses itself, with its
    reason (delivery/guards.py; the sender looks too, whichever sees it first)."""
    campaigns = {
        i.campaign_id
        for items in results
        for i in items
        if i.outcome == COMPLAINT and i.campaign_id and not i.action.startswith("held")
    }
    for campaign_id in sorted(campaigns):
        check_complaints(session, settings, campaign_id, actor="bounces")


def _parsed(key: str, parsed: Parsed) -> Report | list[Item]:
    """A Report to act on, or the items of a message that is left in the mailbox."""
    if isinstance(parsed, str):  # why the message cannot be read
        return [Item(key, UNPARSEABLE, detail=parsed)]
    if parsed.form == "unrecognised":
        base = _base(key, parsed)
        base.detail = parsed.note
        return [base]
    return parsed


def _base(key: str, parsed: Report) -> Item:
    return Item(key, UNRECOGNISED, source_message_id=parsed.source_id, subject=parsed.subject[:200])


def _plan(batch: Batch, settings: Settings, parsed: Report) -> list[Match]:
    """Whom each recipient of `parsed` is (an auto-reply: who is away); none for unsubscribes."""
    if parsed.form == UNSUBSCRIBE:
        return []
    if parsed.form == AUTOREPLY:
        # Who is away: VERP or the Message-ID replied to, else the sender if it is a contact.
        return [
            match(
                batch, settings, parsed, Recipient(None, parsed.sender, AUTOREPLY, None, None, "")
            )
        ]
    many = len(parsed.recipients) > 1
    return [match(batch, settings, parsed, r, many=many) for r in parsed.recipients]


def _decide(
    batch: Batch, settings: Settings, key: str, parsed: Report, plan: list[Match]
) -> list[Item]:
    base = _base(key, parsed)
    if parsed.form == UNSUBSCRIBE:
        return [_unsubscribe(batch, settings, parsed, base)]
    if parsed.form == AUTOREPLY:
        return [_autoreply(batch, parsed, base, plan[0])]
    many = len(parsed.recipients) > 1
    return [
        _recipient(batch, settings, parsed, r, found, base, many)
        for r, found in zip(parsed.recipients, plan, strict=True)
    ]


def _copy(base: Item, **changes: Any) -> Item:
    # Every field is a str, int, bool or None, and Item has no __post_init__: a shallow copy is
    # dataclasses.replace without its per-field checks (a tenth of the recording time).
    item = copy.copy(base)
    for name, value in changes.items():
        setattr(item, name, value)
    return item


def _source_id(parsed: Report, email: str) -> str:
    return f"{parsed.source_id} {email}"[:500]


def _recipient(
    batch: Batch,
    settings: Settings,
    parsed: Report,
    r: Recipient,
    found: Match,
    base: Item,
    many: bool,
) -> Item:
    item = _copy(base, status=r.status, diagnostic=(r.diagnostic or "")[:500] or None, detail=r.why)
    email = found.email
    if email is None:
        named = [a for a in (r.original, r.final) if a] + [
            f"Message-ID {m}" for m in parsed.original_ids[:1]
        ]
        item.outcome = UNKNOWN_ADDRESS
        item.detail = (
            "no known contact or delivery for "
            + (", ".join(named) or "this report")
            + f" ({r.why}); left in place"
        )
        return item
    source_id = _source_id(parsed, email) if many else parsed.source_id[:500]
    item.email, item.matched_by, item.source_message_id = email, found.matched_by, source_id
    if batch.already(source_id):
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
        delivery = batch.latest_delivery(email)
    item.campaign_id = batch.campaign(
        delivery.campaign_id if delivery else found.campaign_id if found.proven else None
    )
    bounce = batch.record(
        source_id=source_id,
        email=email,
        kind=r.kind,
        status=r.status,
        diagnostic=(r.diagnostic or r.why)[:2000],
        delivery=delivery,
        campaign_id=item.campaign_id,
        proven=found.proven,
    )
    item.outcome, item.processed = r.kind, True
    if not needs_proof:
        return item
    if not found.proven:
        batch.hold(bounce, email, found.why, item)
        item.action = "held for review"  # and its id, once written (Batch.write)
        item.detail = f"{found.why} ({r.why}); `mailer bounces review` to apply or dismiss it"
        return item
    batch.audit(
        "bounce",
        contact_id=batch.contacts.get(email),
        campaign_id=item.campaign_id,
        bounce_kind=r.kind,
        status=r.status,
        source=source_id,
    )
    what = f"{parsed.feedback_type} {parsed.source_id}" if r.kind == COMPLAINT else parsed.source_id
    item.action = _act(batch, settings, r.kind, email, what, r.status)
    return item


def _act(
    batch: Batch, settings: Settings, kind: str, email: str, source: str, status: str | None
) -> str:
    """bounces/review.act on the batch: what a proven failure or complaint does."""
    if kind == HARD:
        return _suppress(
            batch, email, SuppressionReason.HARD_BOUNCE, f"bounce {status or ''} {source}"
        )
    if kind == COMPLAINT:
        return _suppress(batch, email, SuppressionReason.COMPLAINT, f"complaint {source}")
    score, soft = batch.soft_score(email)
    threshold = settings.soft_bounce_threshold
    done = f"score {score}/{threshold or 'off'}"
    if threshold and score >= threshold and soft:
        return (
            _suppress(
                batch,
                email,
                SuppressionReason.HARD_BOUNCE,
                f"{score} soft bounces in {settings.soft_bounce_window_days} days",
            )
            + f" (score {score}/{threshold})"
        )
    if threshold and score >= threshold:
        done += " (blocks only: not suppressed)"
    return done


def _suppress(batch: Batch, email: str, reason: SuppressionReason, source: str) -> str:
    already = batch.suppress(email, reason, source[:200], actor="bounces")
    return "already suppressed" if already else "suppressed"


def _autoreply(batch: Batch, parsed: Report, base: Item, found: Match) -> Item:
    item = _copy(
        base,
        outcome=AUTOREPLY,
        processed=True,
        detail="an auto-reply or vacation notice: ignored, never a bounce",
    )
    email, how, delivery = found.email, found.matched_by, found.delivery
    item.email, item.matched_by = email, "from" if how == "final-recipient" else how
    if batch.already(parsed.source_id):
        return _copy(item, outcome=DUPLICATE, detail="already processed in an earlier run")
    if delivery is None and email is not None:
        delivery = batch.latest_delivery(email)
    item.campaign_id = delivery.campaign_id if delivery else None
    batch.record(
        source_id=parsed.source_id,
        email=email,
        kind=AUTOREPLY,
        delivery=delivery,
        campaign_id=item.campaign_id,
    )
    return item


def _unsubscribe(batch: Batch, settings: Settings, parsed: Report, base: Item) -> Item:
    """A valid token unsubscribes its contact; else a From that is a contact is held."""
    item = _copy(base, outcome=UNSUBSCRIBE)
    if batch.already(parsed.source_id):
        return _copy(
            item, outcome=DUPLICATE, processed=True, detail="already processed in an earlier run"
        )
    session = batch.session
    for token in parsed.tokens:
        try:
            data = tokens.read_unsubscribe(settings, token)
        except TokenError:
            continue
        # Rare: done through contacts/contact.py on the database, so what the batch has
        # pending is written first, and the suppressions it changes are read again after.
        batch.write()
        contact = session.get(Contact, data.contact_id)
        if contact is None:
            item.outcome = IGNORED
            item.detail = "a valid token for a contact that no longer exists: nothing to do"
            _record(batch, parsed, item, None)
            return item
        item.email, item.matched_by, item.campaign_id = contact.email, "token", data.campaign_id
        ml = session.get(MailingList, data.list_id) if data.list_id is not None else None
        if data.list_id is not None and ml is None:
            item.outcome = IGNORED
            item.detail = "a valid token for a list that no longer exists: nothing to do"
            _record(batch, parsed, item, contact.email)
            return item
        if ml is not None and not _subscribed_to(session, contact.id, ml.id):
            item.action = f"not subscribed to {ml.slug!r} (any more)"
        else:
            changed = unsubscribe(
                session, contact.email, ml.slug if ml else None, via="mailto", actor="bounces"
            )
            where = ml.slug if ml else "every list (suppressed)"
            item.action = (
                f"unsubscribed from {where}"
                if changed or ml is None
                else f"already unsubscribed from {where}"
            )
            batch.reload_suppressions(contact.email)
        item.detail = "a signed unsubscribe token"
        _record(batch, parsed, item, contact.email)
        return item
    sender = batch.key(parsed.sender or "")
    if sender is None or sender not in batch.contacts or not parsed.intent:
        reason = "its token is not valid" if parsed.tokens else "it carries no token"
        item.outcome = UNRECOGNISED
        item.detail = (
            f"an unsubscribe request, but {reason} and its sender "
            f"{parsed.sender or '(none)'} is not a contact; left for a person"
        )
        return item
    # A From header is anyone's to write: without a valid token the request waits for a person.
    item.email, item.matched_by = sender, "from"
    why = (
        f"an unsubscribe request from {sender} "
        + ("whose token is not valid" if parsed.tokens else "without the signed token")
        + " of the List-Unsubscribe address: the From address proves nothing"
    )
    bounce = _record(batch, parsed, item, sender)
    batch.hold(bounce, sender, why, item)
    item.action = "held for review"  # and its id, once written (Batch.write)
    item.detail = why + "; `mailer bounces review` to apply or dismiss it"
    return item


def _subscribed_to(session: Session, contact_id: int, list_id: int) -> bool:
    return (
        session.scalar(
            select(Subscription.id).where(
                Subscription.contact_id == contact_id,
                Subscription.list_id == list_id,
                Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
            )
        )
        is not None
    )


def _record(batch: Batch, parsed: Report, item: Item, email: str | None) -> dict[str, Any]:
    item.campaign_id = batch.campaign(item.campaign_id)
    bounce = batch.record(
        source_id=parsed.source_id,
        email=email,
        kind=item.outcome,
        diagnostic=item.detail,
        campaign_id=item.campaign_id,
    )
    item.processed = True
    return bounce


def bounce_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Reports recorded for one campaign, by kind (every kind present, zero when none)."""
    counts = {k: 0 for k in KINDS}
    rows = session.execute(
        select(Bounce.kind, func.count())
        .where(Bounce.campaign_id == campaign_id)
        .group_by(Bounce.kind)
    )
    for kind, n in rows:
        counts[kind] = n
    return counts
