"""Named crash points for the crash tests: MAILER_FAILPOINTS=after_claim:3 kills the process
with SIGKILL the third time it passes `after_claim`. Inert unless the variable is set."""

from __future__ import annotations

import os
import signal
import threading

_counts: dict[str, int] = {}
_lock = threading.Lock()
_spec: dict[str, int] | None = None


def _load() -> dict[str, int]:
    spec: dict[str, int] = {}
    for item in os.environ.get("MAILER_FAILPOINTS", "").split(","):
        name, _, n = item.strip().partition(":")
        if name:
            spec[name] = int(n or "1")
    return spec


def hit(name: str) -> None:
    """Die here (SIGKILL, no cleanup at all) if the failpoint `name` is armed and due."""
    global _spec
    if _spec is None:
        _spec = _load()
    if not _spec or name not in _spec:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        due = _counts[name] >= _spec[name]
    if due:
        os.kill(os.getpid(), signal.SIGKILL)
