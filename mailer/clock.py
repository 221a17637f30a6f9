"""One clock for the whole program, so tests can pin "now"."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return _now()


def set_clock(func: Callable[[], datetime] | None) -> None:
    """Replace the clock (None restores the real one)."""
    global _now
    _now = func if func is not None else (lambda: datetime.now(UTC))


@contextmanager
def pinned(at: datetime) -> Iterator[None]:
    """Pin the clock to `at` inside the block."""
    previous = _now
    set_clock(lambda: at)
    try:
        yield
    finally:
        set_clock(previous)
