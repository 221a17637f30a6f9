"""The append-only event log."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mailer.store.models import Event


def record(
    session: Session,
    kind: str,
    *,
    contact_id: int | None = None,
    list_id: int | None = None,
    campaign_id: int | None = None,
    actor: str = "",
    **data: Any,
) -> Event:
    """Append one event to the log (flushed with the caller's unit of work)."""
    ev = Event(
        kind=kind,
        contact_id=contact_id,
        list_id=list_id,
        campaign_id=campaign_id,
        actor=actor,
        data=data,
    )
    session.add(ev)
    return ev
