"""What one run of the sender reports: its counters and its result; a display name made safe."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


def clean_name(name: str) -> str:
    """A display name safe for a header: no line breaks or control characters (Excel's
    Alt+Enter, a pasted signature) and no runs of spaces."""
    if name.isprintable() and "  " not in name and name == name.strip():
        return name
    return " ".join("".join(ch if ch.isprintable() else " " for ch in name).split())


# --- progress -----------------------------------------------------------------------------


@dataclass
class Progress:
    """Counters of one run, shared by the connection threads."""

    total: int = 0
    sent: int = 0
    failed: int = 0
    deferred: int = 0
    skipped: int = 0
    in_doubt: int = 0
    cancelled: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + n)

    @property
    def done(self) -> int:
        return (
            self.sent + self.failed + self.deferred + self.skipped + self.in_doubt + self.cancelled
        )

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("sent", "failed", "deferred", "skipped", "in_doubt", "cancelled")
        }


# --- the engine -------------------------------------------------------------------------------


@dataclass
class RunResult:
    campaign_id: int
    progress: Progress
    complete: bool
    counts: dict[str, int]
    next_retry: datetime | None
    stopped_by: str = ""  # "", "paused", "cancelled", "limit", "interrupted"
