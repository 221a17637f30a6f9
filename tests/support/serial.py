"""The `serial` marker: a test marked so runs while no other test runs in any worker.

Every test holds a shared lock on one file for the whole run of all workers; a `serial` test
holds it exclusively. The turnstile lock keeps a waiting serial test from being starved by the
shared holders of the other workers.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

import pytest


def _lock_dir(config: pytest.Config) -> Path:
    # Under xdist every worker's basetemp is a folder in the controller's: one place for all.
    # pytest keeps its TempPathFactory on the config privately (no public access from a hook).
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    folder = _lock_dir(item.config)
    serial = item.get_closest_marker("serial") is not None
    with (
        open(folder / "serial.turnstile", "a") as turnstile,
        open(folder / "serial.lock", "a") as lock,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
