"""Guards during a send (docs/sending.md): a campaign whose recipients complain too much pauses
itself, and a mail provider that refuses the sender has its recipients wait with backoff.

- Complaints: when a sending campaign's spam complaints exceed `complaint_pause_rate` of its
  delivered messages (after `complaint_pause_min_delivered` deliveries), it is paused with a
  stored reason and an event. Bounce processing looks after recording complaints
  (bounces/policy.py), the sender every few seconds (delivery/engine.py); whichever sees it
  first pauses. A resume clears the reason and acknowledges the complaints so far: only new
  complaints over the line pause it again.
- Provider refusals: `provider_refusal_streak` recipients of one provider (their domains' MX
  host, else their domain) refusing the sender in a row (`refusal` below) hold that provider:
  its remaining recipients are deferred to the end of an exponential backoff instead of being
  refused one by one, and the refusals of the streak wait with them. The first message the
  provider accepts again lifts the hold. A refusal of the sender never suppresses the recipient.

The decisions are pure functions (refusal, backoff, complaint_verdict, Providers); SendGuard is
one sender run's memory of streaks and holds. Rows change only through delivery/ledger.py.
(Over 400 lines on purpose: each decision sits beside the writes it causes, which the sender's
hooks in delivery/engine.py call as one.)
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.delivery import ledger
from mailer.delivery.ledger import Claimed, Executor
from mailer.store.models import (
    Bounce,
    BounceReview,
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Event,
    ProviderHold,
)

if TYPE_CHECKING:
    from mailer.delivery.transport import Reply

# How often a sender looks at its campaign's complaint rate (two counts over indexed columns).
COMPLAINT_CHECK_SECONDS = 10.0
# bounces/parse.py's COMPLAINT and bounces/review.py's APPLIED, written out: those modules load
# the bounce parsers, which the sender never needs.
_COMPLAINT = "complaint"
_APPLIED = "applied"
DNS_LIFETIME = 3.0  # seconds for one MX lookup, every retry included

# --- is this reply a provider refusing us? -----------------------------------------------------

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# Refusals of the sender's authentication (Gmail, Outlook): never about the recipient.
_AUTH = {
    "5.7.26": "unauthenticated",
    "5.7.515": "authentication level not met",
    "5.7.27": "SPF failed",
    "5.7.25": "no reverse DNS",
}
_BLOCKED = re.compile(
    r"\b(block(ed|list(ed)?|ing)?|black ?list(ed)?|spam(haus)?|policy|banned|reputation)\b", re.I
)
_LATER = re.compile(r"try (again )?later|rate[- ]?limit|too many|throttl|unusual rate", re.I)
_GREYLIST = re.compile(r"grey ?list|gray ?list", re.I)


@dataclass(frozen=True)
class Refusal:
    """A server refusing the sender rather than one recipient."""

    kind: str  # authentication, blocked, rate-limited, throttled
    summary: str  # "5.7.26 unauthenticated"


def enhanced_code(text: str) -> str | None:
    m = _ENHANCED.match(text)
    return ".".join(m.groups()) if m else None


def refusal(code: int, text: str) -> Refusal | None:
    """Is this SMTP reply a mail provider refusing the sender? (Not one recipient's problem:
    an unknown mailbox, a full one, greylisting.)"""
    status = enhanced_code(text)
    if 500 <= code < 600:
        if status in _AUTH:
            return Refusal("authentication", f"{status} {_AUTH[status]}")
        if (status is None or status.startswith("5.7.")) and _BLOCKED.search(text):
            return Refusal("blocked", f"{status or code} blocked")
        return None
    if _GREYLIST.search(text):
        return None  # one recipient's server trying us once: retried like any 4xx
    later = (code == 421 and status in (None, "4.7.0")) or (code == 450 and status == "4.7.0")
    if later and _LATER.search(text):
        return Refusal(
            "throttled", " ".join(x for x in (str(code), status, "try again later") if x)
        )
    if code == 421 and status is not None and status.startswith("4.7."):
        return Refusal("rate-limited", f"{code} {status} rate limited")
    return None


def backoff(level: int, base_seconds: int, max_seconds: int) -> timedelta:
    """The wait after a provider's `level`-th hold in a row: base, twice, four times... capped."""
    seconds = base_seconds * 2 ** min(max(level, 1) - 1, 30)
    return timedelta(seconds=min(seconds, max_seconds))


# --- which provider? ---------------------------------------------------------------------------

MxLookup = Callable[[str], "str | None"]


def dns_mx(domain: str) -> str | None:
    """The most preferred MX host of `domain` (dnspython), or None: not installed, no MX, a
    failed lookup. Never raises."""
    try:
        import dns.resolver  # noqa: PLC0415  # optional: grouping by domain without it
    except ImportError:
        return None
    try:
        answer = dns.resolver.resolve(domain, "MX", lifetime=DNS_LIFETIME)
        best = min(answer, key=lambda r: r.preference)
    except Exception:  # any failure of DNS: group by domain
        return None
    host = str(best.exchange).rstrip(".").lower()
    return host or None  # "." is a null MX (RFC 7505)


@dataclass(frozen=True)
class Provider:
    key: str  # "mx:HOST" or "domain:DOMAIN"
    domain: str  # the recipient's domain that named it first
    mx: str | None

    @property
    def label(self) -> str:
        return f"{self.domain} (MX {self.mx})" if self.mx else self.domain


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class Providers:
    """Recipient domains to providers, each domain looked up once (per sender run)."""

    def __init__(self, lookup: MxLookup | None) -> None:
        self.lookup = lookup
        self._by_domain: dict[str, Provider] = {}
        self._domains: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def of(self, address: str) -> Provider:
        domain = domain_of(address)
        with self._lock:
            found = self._by_domain.get(domain)
        if found is not None:
            return found
        mx = self.lookup(domain) if self.lookup is not None else None
        with self._lock:
            if domain not in self._by_domain:
                key = f"mx:{mx}" if mx else f"domain:{domain}"
                first = next(iter(self._by_domain_of(key)), None)
                provider = Provider(key, first or domain, mx)
                self._by_domain[domain] = provider
                self._domains.setdefault(key, set()).add(domain)
            return self._by_domain[domain]

    def _by_domain_of(self, key: str) -> list[str]:
        return sorted(self._domains.get(key, ()))

    def domains(self, key: str) -> list[str]:
        """Every domain of this provider seen so far."""
        with self._lock:
            return self._by_domain_of(key)

    def add(self, key: str, domains: Sequence[str], mx: str | None) -> None:
        """Domains known (from a stored hold) to be this provider's."""
        with self._lock:
            for d in domains:
                d = d.lower()
                if d not in self._by_domain:
                    self._by_domain[d] = Provider(key, domains[0].lower(), mx)
                    self._domains.setdefault(key, set()).add(d)


# --- complaints --------------------------------------------------------------------------------


def complaint_verdict(
    delivered: int, complaints: int, acknowledged: int, rate: float, min_delivered: int
) -> str | None:
    """Why the campaign must pause, or None. Complaints acknowledged by a resume do not count
    again; the rate must be exceeded, not merely reached."""
    if rate <= 0 or delivered <= 0 or delivered < min_delivered:
        return None
    new = complaints - acknowledged
    if new <= 0 or new / delivered <= rate:
        return None
    since = f" since the last resume ({acknowledged} before)" if acknowledged else ""
    return (
        f"{new} spam complaint(s){since} for {delivered:,} delivered messages "
        f"({new / delivered:.2%}): over complaint_pause_rate {rate:.2%}"
    )


def complaint_figures(s: Executor, campaign_id: int) -> tuple[int, int]:
    """(messages delivered, recipients who complained) of one campaign. A complaint held for
    review counts once a person applies it, as in delivery/rates.py."""
    delivered = s.execute(
        select(func.count()).where(
            Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENT
        )
    ).scalar_one()
    held = (
        select(BounceReview.id)
        .where(BounceReview.bounce_id == Bounce.id, BounceReview.state != _APPLIED)
        .exists()
    )
    complaints = s.execute(
        select(func.count(func.distinct(Bounce.email))).where(
            Bounce.campaign_id == campaign_id, Bounce.kind == _COMPLAINT, ~held
        )
    ).scalar_one()
    return int(delivered), int(complaints)


def check_complaints(s: Executor, settings: Settings, campaign_id: int, actor: str) -> str | None:
    """Pause a sending campaign whose complaints are over the line; returns the reason when
    this call paused it. Inside the caller's transaction."""
    if settings.complaint_pause_rate <= 0:
        return None
    row = s.execute(
        select(Campaign.status, Campaign.complaints_acknowledged).where(Campaign.id == campaign_id)
    ).one_or_none()
    if row is None or row.status != CampaignStatus.SENDING:
        return None
    delivered, complaints = complaint_figures(s, campaign_id)
    reason = complaint_verdict(
        delivered,
        complaints,
        row.complaints_acknowledged or 0,
        settings.complaint_pause_rate,
        settings.complaint_pause_min_delivered,
    )
    if reason is None:
        return None
    paused = s.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.SENDING)
        .values(status=CampaignStatus.PAUSED, pause_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]  # a CursorResult, typed as Result
    if not paused:
        return None
    _event(
        s,
        "campaign.guard_pause",
        campaign_id,
        actor,
        reason=reason,
        delivered=delivered,
        complaints=complaints,
    )
    if isinstance(s, Session):
        campaign = s.get(Campaign, campaign_id)
        if campaign is not None:
            s.refresh(campaign)
    return reason


def acknowledge(s: Session, campaign: Campaign) -> None:
    """A resume of a paused campaign: the reason goes, the complaints so far are acknowledged."""
    if campaign.pause_reason is None:
        return
    campaign.pause_reason = None
    campaign.complaints_acknowledged = complaint_figures(s, campaign.id)[1]


def _event(s: Executor, kind: str, campaign_id: int, actor: str, **data: Any) -> None:
    # A Core insert: the sender's threads hold a connection, not an ORM session.
    s.execute(
        insert(Event).values(kind=kind, campaign_id=campaign_id, actor=actor[:200], data=data)
    )


# --- provider holds: the database side ---------------------------------------------------------


@dataclass
class Hold:
    provider: Provider
    summary: str
    level: int
    until: datetime
    code: int | None = None
    reply: str = ""
    streak: list[int] = field(default_factory=list)  # rows whose refusals made it

    @property
    def note(self) -> str:
        """The ledger's reply for a row that waits for this hold."""
        return (
            f"deferred: {self.provider.label} refused the sender ({self.summary}); "
            f"waiting until {self.until.isoformat(timespec='minutes')}"
        )


def holds(s: Executor, campaign_id: int) -> list[ProviderHold]:
    """The stored holds of a campaign, the longest waits first."""
    if isinstance(s, Session):
        return list(
            s.scalars(
                select(ProviderHold)
                .where(ProviderHold.campaign_id == campaign_id)
                .order_by(ProviderHold.held_until.desc(), ProviderHold.id)
            )
        )
    with Session(bind=s) as orm:
        found = holds(orm, campaign_id)
        orm.expunge_all()
        return found


def _upsert(s: Executor, campaign_id: int, hold: Hold, domains: list[str], now: datetime) -> None:
    values = {
        "campaign_id": campaign_id,
        "provider": hold.provider.key,
        "label": hold.provider.label[:400],
        "domains": domains,
        "summary": hold.summary[:200],
        "smtp_code": hold.code,
        "smtp_reply": hold.reply[:2000],
        "level": hold.level,
        "held_until": hold.until,
        "created_at": now,
        "updated_at": now,
    }
    dialect = (s.get_bind() if isinstance(s, Session) else s).dialect.name
    maker = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = maker(ProviderHold).values(**values)
    changed = {
        k: v for k, v in values.items() if k not in ("campaign_id", "provider", "created_at")
    }
    # Two senders may hold the same provider at once: the same row, never a second one.
    s.execute(stmt.on_conflict_do_update(index_elements=["campaign_id", "provider"], set_=changed))


def place(s: Executor, campaign_id: int, hold: Hold, domains: list[str], now: datetime) -> int:
    """Store the hold and make the provider's recipients wait: those nobody holds, and the
    streak's refused rows. Returns how many rows now wait."""
    _upsert(s, campaign_id, hold, domains, now)
    n = ledger.defer_waiting(s, campaign_id, domains, hold.until, hold.note, now)
    n += ledger.defer_refused(s, hold.streak, hold.until, now)
    _event(
        s,
        "campaign.provider_hold",
        campaign_id,
        "",
        provider=hold.provider.label,
        summary=hold.summary,
        level=hold.level,
        until=hold.until.isoformat(),
        deferred=n,
    )
    return n


def lift(s: Executor, campaign_id: int, key: str) -> None:
    s.execute(
        delete(ProviderHold).where(
            ProviderHold.campaign_id == campaign_id, ProviderHold.provider == key
        )
    )


def waiting(s: Session, campaign_id: int, hold: ProviderHold) -> int:
    """Rows of the campaign deferred at the hold's domains now."""
    at = [Delivery.email.endswith("@" + d, autoescape=True) for d in hold.domains]
    if not at:
        return 0
    return (
        s.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == DeliveryStatus.DEFERRED,
                or_(*at),
            )
        )
        or 0
    )


def hold_summaries(s: Session, campaign_id: int) -> list[dict[str, Any]]:
    """What `campaigns show` reports at its top, one entry per held provider."""
    return [
        {
            "provider": h.label,
            "summary": h.summary,
            "code": h.smtp_code,
            "reply": h.smtp_reply,
            "level": h.level,
            "until": h.held_until.isoformat(),
            "deferred": waiting(s, campaign_id, h),
            "domains": list(h.domains),
        }
        for h in holds(s, campaign_id)
    ]


# --- one sender run ----------------------------------------------------------------------------


class SendGuard:
    """One sender run's view of its campaign's guards, shared by its connection threads.

    `observe` is told every reply before it is written; `held` says which claimed rows must
    wait instead of being sent; `write` runs, inside the caller's next transaction, the writes
    the replies called for (a new hold, a lifted one)."""

    def __init__(self, settings: Settings, campaign_id: int, lookup: MxLookup | None = None):
        self.settings = settings
        self.campaign_id = campaign_id
        self.streak_needed = settings.provider_refusal_streak
        if lookup is None and settings.provider_group_by_mx:
            lookup = dns_mx
        self.providers = Providers(lookup)
        self._lock = threading.Lock()
        self._streaks: dict[str, list[int]] = {}
        self._holds: dict[str, Hold] = {}  # by provider key: stored or placed in this run
        self._todo: list[tuple[str, Hold]] = []  # ("place" | "lift", hold)
        self._next_check = 0.0  # monotonic: when to look at the complaint rate again

    # complaints
    def complaints_due(self) -> bool:
        """True every COMPLAINT_CHECK_SECONDS (the first call at once)."""
        with self._lock:
            now = time.monotonic()
            if now < self._next_check:
                return False
            self._next_check = now + COMPLAINT_CHECK_SECONDS
            return True

    # provider holds
    def load(self, s: Executor) -> None:
        """The campaign's stored holds (placed by an earlier run or another sender)."""
        for h in holds(s, self.campaign_id):
            mx = h.provider[3:] if h.provider.startswith("mx:") else None
            domains = list(h.domains) or [h.provider.partition(":")[2]]
            self.providers.add(h.provider, domains, mx)
            provider = Provider(h.provider, domains[0], mx)
            self._holds[h.provider] = Hold(
                provider, h.summary, h.level, h.held_until, h.smtp_code, h.smtp_reply
            )

    @property
    def active(self) -> bool:
        return bool(self._holds or self._streaks)

    def held(self, rows: Sequence[Claimed], now: datetime) -> list[tuple[Claimed, Hold]]:
        """The rows whose provider is held now: they wait, unsent."""
        if not self._holds:
            return []
        out = []
        for d in rows:
            hold = self._holds.get(self.providers.of(d.email).key)
            if hold is not None and hold.until > now:
                out.append((d, hold))
        return out

    def waits(self, d: Claimed, reply: Reply, now: datetime) -> Hold | None:
        """The hold a refused row waits for, or None (it is recorded as the server said)."""
        if not self._holds or reply.code == 0 or refusal(reply.code, reply.text) is None:
            return None
        hold = self._holds.get(self.providers.of(d.email).key)
        return hold if hold is not None and hold.until > now else None

    def observe(self, d: Claimed, reply: Reply, now: datetime) -> None:
        """Count a refusal towards its provider's streak; any other reply ends the streak, and
        a message accepted lifts a stored hold (the provider takes our mail again)."""
        if self.streak_needed <= 0 or reply.code == 0:
            return  # no reply from any provider: the connection failed
        refused = refusal(reply.code, reply.text)
        if refused is None and not self._streaks and not self._holds:
            return  # nothing to compare with: no lookup
        provider = self.providers.of(d.email)
        with self._lock:
            hold = self._holds.get(provider.key)
            if refused is None:
                self._streaks.pop(provider.key, None)
                if hold is not None and reply.outcome == "sent":
                    del self._holds[provider.key]
                    self._todo.append(("lift", hold))
                return
            if hold is not None and hold.until > now:
                return  # already held: this row waits too (see `waits`)
            streak = self._streaks.setdefault(provider.key, [])
            streak.append(d.id)
            if len(streak) < self.streak_needed:
                return
            del self._streaks[provider.key]
            level = hold.level + 1 if hold is not None else 1
            until = now + backoff(
                level,
                self.settings.provider_backoff_seconds,
                self.settings.provider_backoff_max_seconds,
            )
            new = Hold(provider, refused.summary, level, until, reply.code, reply.text, streak)
            self._holds[provider.key] = new
            self._todo.append(("place", new))

    def write(self, s: Executor, now: datetime) -> int:
        """The writes the replies so far called for; returns how many rows were deferred."""
        with self._lock:
            todo, self._todo = self._todo, []
        n = 0
        for what, hold in todo:
            if what == "lift":
                lift(s, self.campaign_id, hold.provider.key)
            else:
                domains = self.providers.domains(hold.provider.key) or [hold.provider.domain]
                n += place(s, self.campaign_id, hold, domains, now)
        return n
