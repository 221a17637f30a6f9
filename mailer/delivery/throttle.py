"""Send-rate limits shared by every sender on the database (fixed windows in `rate_limit`).

Several `mailer worker` processes on several machines send one campaign; the campaign's rate
(messages a second) and the provider's quota (messages an hour) hold for all of them together
because every message takes its token from the same database row. Used only when a limit is set.
The table itself is written only by mailer/store/ratelimit.py.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from mailer import clock
from mailer.store.ratelimit import purge_send, take, untake


class SharedRateLimiter:
    """Blocks until the campaign's per-second rate and the hourly quota allow one more message."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        campaign_id: int,
        per_second: float,
        per_hour: int,
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.factory = factory
        # The sender's write lock on SQLite (see Deliverer._transaction).
        self.lock = lock if lock is not None else nullcontext()
        self.campaign_id = campaign_id
        self.per_second = per_second
        self.per_hour = per_hour
        self.last_cleanup = 0.0

    @property
    def active(self) -> bool:
        return self.per_second > 0 or self.per_hour > 0

    def wait(self, stop: threading.Event, until: float | None = None) -> bool:
        """False when asked to stop, or when no token comes before `until` (monotonic)."""
        if not self.active:
            return not stop.is_set()
        while not stop.is_set():
            if until is not None and time.monotonic() >= until:
                return False
            now = clock.now()
            delay = 0.0
            with self.lock, self.factory() as s, s.begin():
                if self.per_hour:
                    delay = take(s, "hour", 3600, self.per_hour, now)
                if not delay and self.per_second:
                    window, allowance = _window(self.per_second)
                    delay = take(s, f"campaign:{self.campaign_id}", window, allowance, now)
                    if delay and self.per_hour:
                        # Give the hourly token back: this message is not going yet.
                        untake(s, "hour", 3600, now)
                self._cleanup(s, now)
            if not delay:
                return True
            stop.wait(min(delay, 1.0))
        return False

    def _cleanup(self, s: Session, now: datetime) -> None:
        if time.monotonic() - self.last_cleanup < 60:
            return
        self.last_cleanup = time.monotonic()
        purge_send(s, now)


def _window(per_second: float) -> tuple[int, int]:
    """A whole-second window and its allowance: 0.2/s is 1 per 5 s, 50/s is 50 per second."""
    if per_second >= 1:
        return 1, int(per_second)
    return max(1, math.ceil(1 / per_second)), 1
