"""`mailer worker`: send every due campaign, forever (or once), from any number of processes.

On PostgreSQL any number of workers on any number of machines share the ledger: each claims its
batches with SELECT ... FOR UPDATE SKIP LOCKED and a lease. On SQLite one sender runs at a time.
A worker also starts scheduled campaigns when their time comes, and retries deferred messages.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.delivery.engine import Deliverer
from mailer.delivery.lock import this_process
from mailer.delivery.progress import RunResult
from mailer.delivery.transport import Transport
from mailer.delivery.worker_thread import beat
from mailer.errors import SendError
from mailer.store.db import session_factory
from mailer.store.models import Campaign, CampaignStatus, Delivery, DeliveryStatus


def due_campaigns(session: Session) -> list[int]:
    """Campaigns with work now: scheduled and due, or sending with due or orphaned rows."""
    now = clock.now()
    # Leases are set by the database's clock on PostgreSQL (delivery/ledger.py).
    lease_now: Any = (
        func.clock_timestamp() if session.get_bind().dialect.name == "postgresql" else now
    )
    has_work = exists().where(
        Delivery.campaign_id == Campaign.id,
        or_(
            Delivery.status == DeliveryStatus.PENDING,
            and_(Delivery.status == DeliveryStatus.DEFERRED, Delivery.next_attempt_at <= now),
            and_(Delivery.status == DeliveryStatus.CLAIMED, Delivery.lease_expires_at < lease_now),
        ),
    )
    stmt = (
        select(Campaign.id)
        .where(
            or_(
                and_(
                    Campaign.status == CampaignStatus.SCHEDULED,
                    or_(Campaign.not_before.is_(None), Campaign.not_before <= now),
                ),
                and_(Campaign.status == CampaignStatus.SENDING, has_work),
            )
        )
        .order_by(Campaign.id)
    )
    return list(session.scalars(stmt))


@dataclass
class Worker:
    settings: Settings
    transport: Transport
    concurrency: int | None = None
    poll_seconds: float = 5.0
    on_result: Callable[[RunResult], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, *, once: bool = False) -> int:
        """Send until stopped (or, with once, until nothing is due); returns campaigns served."""
        factory = session_factory(self.settings)
        name = this_process()
        served = 0
        while not self.stop.is_set():
            with factory() as s:
                ids = due_campaigns(s)
                # The console says when a separate worker was last seen (worker_thread.py).
                beat(s, name)
                s.commit()
            worked = False
            for campaign_id in ids:
                if self.stop.is_set():
                    break
                deliverer = Deliverer(
                    self.settings,
                    factory,
                    campaign_id,
                    self.transport,
                    concurrency=self.concurrency,
                    worker=name,
                    resume_paused=False,
                )
                deliverer.stop = self.stop
                try:
                    result = deliverer.run()
                except SendError:
                    continue  # cancelled or not yet startable in the meantime
                served += 1
                worked = worked or result.progress.done > 0
                if self.on_result:
                    self.on_result(result)
            if once and not worked:
                break
            if not worked:
                self.stop.wait(self.poll_seconds)
        return served
