"""The global suppression list: addresses that are never mailed and never re-subscribed.

Every check matches the MAILBOX (addresses.mailbox_key, stored in suppression.mailbox with an
index): suppressing `kim@gmail.com` covers `k.i.m+news@googlemail.com` too, in one query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mailer import clock
from mailer.contacts.addresses import mailbox_key, normalise
from mailer.errors import ImportFileError, InvalidInputError, MailerError, NotFoundError
from mailer.store import audit
from mailer.store.models import (
    Contact,
    Subscription,
    SubscriptionStatus,
    Suppression,
    SuppressionReason,
)

# The domain (after addresses.mailbox_key) whose spellings are documented to reach one mailbox.
KNOWN_ONE_MAILBOX = "gmail.com"


def covers_mailbox() -> ColumnElement[bool]:
    """Whether a suppression covers every spelling of its mailbox (+tag, Gmail dots), not only
    the address it was made for.

    An opt-out or a complaint is the person's: it holds for each way their address is written.
    A hard bounce is the receiving server's word about one spelling: on most domains the +tag
    rule is our guess, and a stranger who types `victim+x@` on a provider without subaddresses
    gets a real bounce of that spelling, which must not stop mail to `victim@`. Only where the
    spellings are known to be one mailbox (Gmail: dots and +tags) does its bounce cover them."""
    return or_(
        Suppression.reason != SuppressionReason.HARD_BOUNCE,
        Suppression.mailbox.endswith(f"@{KNOWN_ONE_MAILBOX}"),
    )


def _of_mailbox(key: str) -> Select[Suppression]:
    return select(Suppression).where(
        or_(
            Suppression.email == key,
            and_(Suppression.mailbox == mailbox_key(key), covers_mailbox()),
        )
    )


def is_suppressed(session: Session, key: str) -> bool:
    return get_suppression(session, key) is not None


def get_suppression(session: Session, key: str) -> Suppression | None:
    """The suppression covering `key`'s mailbox; of several, one the person cannot lift wins."""
    liftable = case((Suppression.reason == SuppressionReason.UNSUBSCRIBE_ALL, 1), else_=0)
    return session.scalar(_of_mailbox(key).order_by(liftable, Suppression.id).limit(1))


def mailbox_suppressions(session: Session, key: str) -> list[Suppression]:
    """Every suppression row of `key`'s mailbox (dot and +tag variants stored separately)."""
    return list(session.scalars(_of_mailbox(key).order_by(Suppression.id)))


def suppress(
    session: Session,
    key: str,
    reason: SuppressionReason,
    source: str = "",
    *,
    actor: str = "",
) -> tuple[Suppression, bool]:
    """Suppress `key` (already normalised); every subscription of its contact ends too.

    Returns the suppression and whether it is new. An existing suppression keeps its first
    reason, except that a stronger one (complaint, hard bounce) replaces a weaker one.
    """
    existing = get_suppression(session, key)
    now = clock.now()
    contact = session.scalar(select(Contact).where(Contact.email == key))
    if contact is not None:
        subs = session.scalars(
            select(Subscription).where(
                Subscription.contact_id == contact.id,
                Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
            )
        ).all()
        for sub in subs:
            sub.status = SubscriptionStatus.UNSUBSCRIBED
            sub.unsubscribed_at = now
            sub.unsubscribed_via = reason.value
    if existing is not None:
        if reason in (
            SuppressionReason.COMPLAINT,
            SuppressionReason.HARD_BOUNCE,
        ) and existing.reason not in (SuppressionReason.COMPLAINT, SuppressionReason.ERASED):
            existing.reason = reason
            existing.source = source
        return existing, False
    sup = Suppression(email=key, reason=reason, source=source, created_at=now)
    session.add(sup)
    session.flush()
    audit.record(
        session,
        "suppress",
        contact_id=contact.id if contact else None,
        actor=actor,
        reason=reason.value,
        source=source,
    )
    return sup, True


# --- Managing the list: `mailer suppressions ls | add | rm | import` ---------------------------

REASON_STRENGTH_KEEP = (SuppressionReason.COMPLAINT, SuppressionReason.ERASED)
STRONG_REASONS = (SuppressionReason.COMPLAINT, SuppressionReason.HARD_BOUNCE)


def check_reason(value: str) -> SuppressionReason:
    """A reason given by a user, or InvalidInputError listing the accepted ones."""
    try:
        return SuppressionReason(value)
    except ValueError:
        choices = ", ".join(r.value for r in SuppressionReason)
        raise InvalidInputError(f"unknown suppression reason {value!r} ({choices})") from None


def list_suppressions(session: Session, reason: str | None = None) -> list[Suppression]:
    """Every suppression (newest first), optionally of one reason."""
    stmt = select(Suppression).order_by(Suppression.created_at.desc(), Suppression.email)
    if reason is not None:
        stmt = stmt.where(Suppression.reason == check_reason(reason))
    return list(session.scalars(stmt))


def suppression_as_dict(sup: Suppression) -> dict[str, Any]:
    """The documented JSON shape of a suppression."""
    return {
        "email": sup.email,
        "reason": SuppressionReason(sup.reason).value,
        "source": sup.source,
        "created_at": sup.created_at.isoformat(),
    }


def add_suppression(
    session: Session, email: str, reason: str = "manual", source: str = "cli", *, actor: str = ""
) -> tuple[Suppression, bool]:
    """Suppress an address as typed (validated and normalised first); see suppress()."""
    return suppress(session, normalise(email).key, check_reason(reason), source, actor=actor)


def remove_suppression(session: Session, email: str, *, actor: str = "") -> Suppression:
    """Lift a suppression. Subscriptions it ended stay unsubscribed: only the person opts in."""
    key = normalise(email).key
    sup = get_suppression(session, key)
    if sup is None:
        raise NotFoundError(f"{key} is not on the suppression list")
    audit.record(
        session,
        "unsuppress",
        actor=actor,
        reason=SuppressionReason(sup.reason).value,
        source=sup.source,
    )
    # The whole mailbox: a variant left behind would keep the address suppressed.
    for row in mailbox_suppressions(session, key):
        session.delete(row)
    session.flush()
    return sup


@dataclass
class SuppressionImportReport:
    """What `suppressions import` did; see README for the JSON shape."""

    file: str
    reason: str
    source: str
    dry_run: bool
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            (
                "rows",
                "added",
                "already_suppressed",
                "reason_upgraded",
                "subscriptions_ended",
                "invalid",
                "duplicates",
            ),
            0,
        )
    )
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "reason": self.reason,
            "source": self.source,
            "dry_run": self.dry_run,
            "counts": dict(self.counts),
            "errors": self.errors[:100],
        }


def import_suppressions(
    session: Session,
    path: str | Path,
    reason: str = "unsubscribe-all",
    source: str | None = None,
    *,
    dry_run: bool = False,
    encoding: str | None = None,
    sheet: str | None = None,
    mapping: dict[str, str] | None = None,
    actor: str = "",
) -> SuppressionImportReport:
    """Suppress every address of a CSV/XLSX file (e.g. another tool's unsubscribes), all or none.

    The file is read exactly as `contacts import` reads it (imports.spreadsheet, columns and
    importer.file_rows: same formats, limits, column matching, --map and messages), or as a
    bare list of addresses. An existing suppression keeps its reason unless the new one is
    stronger, as in suppress().
    """
    # Lazy: `lists ls` loads this module but no mailer.imports; and importer imports it (cycle).
    from mailer.imports.columns import map_columns  # noqa: PLC0415
    from mailer.imports.importer import file_rows, read_address  # noqa: PLC0415
    from mailer.imports.plan import chunks  # noqa: PLC0415
    from mailer.imports.spreadsheet import open_table  # noqa: PLC0415

    path = Path(path)
    why = check_reason(reason)
    source = (source or f"import {path.name}")[:200]
    report = SuppressionImportReport(str(path), why.value, source, dry_run)
    counts = report.counts
    keys: dict[str, int] = {}
    with open_table(path, sheet=sheet, encoding=encoding) as table:
        columns = map_columns(path, table.headers, table.header_line, mapping)
        email_i = columns.fields["email"]
        for row, cells, problem in file_rows(table, columns):
            counts["rows"] += 1
            raw = cells[email_i] if problem is None else ""
            try:
                if problem is not None:
                    raise InvalidInputError(problem)
                key = read_address(raw).key
            except InvalidInputError as err:
                counts["invalid"] += 1
                report.errors.append({"line": row.line, "reason": str(err), "email": raw})
                continue
            if key in keys:
                counts["duplicates"] += 1
            else:
                keys[key] = row.line
    if not counts["rows"]:
        raise ImportFileError(f"{path}: no data rows below the header (line {table.header_line})")
    existing: dict[str, Suppression] = {}
    for part in chunks(list(keys)):
        existing.update(
            (s.email, s)
            for s in session.scalars(select(Suppression).where(Suppression.email.in_(part)))
        )
    new = [k for k in keys if k not in existing]
    upgrade = [
        s
        for s in existing.values()
        if why in STRONG_REASONS
        and SuppressionReason(s.reason) not in REASON_STRENGTH_KEEP
        and s.reason != why
    ]
    counts["added"] = len(new)
    counts["already_suppressed"] = len(existing)
    counts["reason_upgraded"] = len(upgrade)
    ending = select(Contact.id).where(Contact.email.in_(bindparam("keys", expanding=True)))
    live = select(Subscription.id).where(
        Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
        Subscription.contact_id.in_(ending.scalar_subquery()),
    )
    sub_ids: list[int] = []
    for some_keys in chunks(list(keys)):
        sub_ids.extend(session.scalars(live, {"keys": list(some_keys)}))
    counts["subscriptions_ended"] = len(sub_ids)
    if dry_run:
        return report
    now = clock.now()
    try:
        with session.begin_nested():
            for part in chunks(new):
                # A Core insert on the table (not the ORM's bulk path); mapped classes'
                # __table__ is typed as FromClause, which has no insert().
                session.execute(
                    Suppression.__table__.insert(),  # type: ignore[attr-defined]
                    [
                        {"email": k, "reason": why, "source": source, "created_at": now}
                        for k in part
                    ],
                )
            for sup in upgrade:
                sup.reason, sup.source = why, source
            for some_ids in chunks(sub_ids):
                session.execute(
                    update(Subscription)
                    .where(Subscription.id.in_(some_ids))
                    .values(
                        status=SubscriptionStatus.UNSUBSCRIBED,
                        unsubscribed_at=now,
                        unsubscribed_via=why.value,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
            audit.record(
                session,
                "suppressions.import",
                actor=actor,
                file=str(path),
                reason=why.value,
                source=source,
                counts=dict(counts),
            )
            session.flush()
    except DBAPIError as err:
        raise MailerError(
            f"{path}: the database refused the import, nothing was imported: "
            f"{str(err.orig).strip().splitlines()[0]}"
        ) from None
    return report
