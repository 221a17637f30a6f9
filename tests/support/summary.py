"""The end-of-run summary: one line per database engine, one line per skip reason."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.support.database import ENGINE_PROPERTY


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per database engine and one line per skip reason (not one line per test)."""
    engines: Counter[str] = Counter()
    for status in ("passed", "failed"):
        for report in terminalreporter.stats.get(status, []):
            if getattr(report, "when", "") != "call":
                continue
            for key, value in getattr(report, "user_properties", []):
                if key == ENGINE_PROPERTY:
                    engines[value] += 1
    if engines:
        runs = ", ".join(f"{n} on {name}" for name, n in sorted(engines.items()))
        terminalreporter.write_line(f"database tests: {runs}")
    reasons: Counter[str] = Counter(
        _skip_reason(report) for report in terminalreporter.stats.get("skipped", [])
    )
    for reason, n in reasons.most_common():
        terminalreporter.write_line(f"skipped {n}: {reason}")
