"""Is a report provably about a message mailer sent to this recipient?

Anyone can mail the bounce address, so what a report *says* (Final-Recipient, Original-Rcpt-To,
the From of a mailed unsubscribe, a hand-written VERP address) proves nothing. Two things do:

- a signed VERP address (contacts/addresses.py): the envelope sender mailer used for exactly
  this recipient and campaign, with an HMAC only the holder of secret_key can write;
- a Message-ID quoted from the original that is in the ledger (delivery.message_id, an HMAC of
  campaign and contact), on a delivery that was actually attempted, and whose recipient is the
  address the report names (or the report names no address of ours: a forwarding address).

Anything else is recorded and held for review (bounces/review.py), never applied.
Contacts and deliveries are read from the batch (bounces/batch.py), loaded beforehand by
`addresses` and `message_ids` below.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from mailer.bounces.batch import Batch, DRow
from mailer.bounces.parse import Recipient, Report
from mailer.config import Settings
from mailer.contacts.addresses import Verp, verp_decode
from mailer.store.models import DeliveryStatus

# A delivery some server received or refused: a report about it can be genuine.
ATTEMPTED = (
    DeliveryStatus.SENT,
    DeliveryStatus.IN_DOUBT,
    DeliveryStatus.DEFERRED,
    DeliveryStatus.FAILED,
)


@dataclass
class Match:
    """Whom a report is about, how that was found, and whether it is proven."""

    email: str | None
    matched_by: str | None
    delivery: DRow | None = None
    campaign_id: int | None = None
    proven: bool = False
    why: str = ""  # when not proven: why not, for the person reviewing it


def addresses(settings: Settings, parsed: Report) -> set[str]:
    """Every address `match` may look up for `parsed`, as written: named, in a VERP address,
    the sender (Batch.load_people loads them)."""
    found = {a for r in parsed.recipients for a in (r.original, r.final) if a}
    found.add(parsed.sender or "")
    if settings.verp:
        for addr in parsed.envelope_to:
            v = _verp(settings.bounce_address, addr, settings.secret_key)
            if v is not None:
                found.add(v.email)
    return {a for a in found if a}


def message_ids(parsed: Report) -> list[str]:
    """The Message-IDs `match` looks up in the ledger."""
    return [i for i in parsed.original_ids if i][:10]


def match(
    batch: Batch, settings: Settings, parsed: Report, r: Recipient, *, many: bool = False
) -> Match:
    """The recipient `r` of `parsed`: proven by signed VERP or a ledger Message-ID, else named."""
    named = [k for k in (batch.key(a) for a in (r.original, r.final) if a) if k]
    unsigned_verp: str | None = None
    if settings.verp:
        for addr in parsed.envelope_to:
            v = _verp(settings.bounce_address, addr, settings.secret_key)
            if v is None:
                continue
            email = batch.key(v.email)
            if not v.signed:
                unsigned_verp = unsigned_verp or email
                continue
            # One VERP address proves one recipient: in a report about several, only theirs.
            if email is None or (many and named and email not in named):
                continue
            if batch.known(email):
                delivery = batch.campaign_delivery(v.campaign_id, email)
                return Match(email, "verp", delivery, v.campaign_id, proven=True)
    by_id = batch.deliveries(parsed.original_ids)
    sent = [d for d in by_id if d.status in ATTEMPTED]
    for d in sent:
        if d.email in named:
            return Match(d.email, "message-id", d, d.campaign_id, proven=True)
    if sent and not many and not any(batch.known(n) for n in named):
        # The report names no address of ours (a forwarding address, or none at all): the
        # message it quotes says whom it is about.
        d = sent[0]
        return Match(d.email, "message-id", d, d.campaign_id, proven=True)
    candidates = ([(unsigned_verp, "verp")] if unsigned_verp else []) + [
        (a, how)
        for a, how in ((r.original, "original-recipient"), (r.final, "final-recipient"))
        if a
    ]
    for value, how in candidates:
        email = batch.key(value or "")
        if email is not None and batch.known(email):
            return Match(email, how, why=_why_not(parsed, email, by_id, unsigned_verp))
    return Match(None, None)


def _why_not(parsed: Report, email: str, by_id: list[DRow], unsigned_verp: str | None) -> str:
    reasons = []
    if unsigned_verp:
        reasons.append(f"its VERP address names {unsigned_verp} but carries no valid signature")
    ids = [i for i in parsed.original_ids if i][:3]
    if not ids:
        reasons.append("it quotes no Message-ID of the original")
    elif not by_id:
        reasons.append(f"the Message-ID it quotes ({ids[0]}) is not one mailer sent")
    else:
        d = by_id[0]
        if d.email != email:
            reasons.append(f"the message it quotes ({d.message_id}) was sent to another address")
        else:
            reasons.append(
                f"the message it quotes ({d.message_id}) was never sent "
                f"(status {DeliveryStatus(d.status).value})"
            )
    return "no proof it is about a message mailer sent to " + email + ": " + "; ".join(reasons)


@lru_cache(maxsize=4096)
def _verp(bounce_address: str, envelope_to: str, secret_key: str) -> Verp | None:
    # Cached: each report's envelope is decoded twice (Batch.load_people, then match), and
    # checking the HMAC tag costs more than the lookups.
    return verp_decode(bounce_address, envelope_to, secret_key=secret_key)
