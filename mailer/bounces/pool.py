"""Classifying a mailbox's messages, in worker processes when there are cores to spare.

Reading a report (bounces/parse.py) is pure Python and costs about three times what recording
it does, so a large mailbox is classified by a pool of worker processes while the parent
records the batch before: the parent stays the only process that touches the database, and
it takes the batches in mailbox order, so every decision is the one a single process makes.
One core, or a mailbox of one batch, is classified in the parent, as before. A pool that
cannot start or breaks leaves the rest of the run to the parent.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from mailer.bounces import parse as bounce_parse
from mailer.bounces.report import Report
from mailer.bounces.sources import SourceMessage

__all__ = ["Parsed", "classified", "default_workers", "read"]

# What parse made of a message: its Report, or why it cannot be read (the `unparseable` item's
# text); None for a message the source could not read at all.
Parsed = Report | str
# Beyond this many workers the parent, recording, is what the run waits for.
MAX_WORKERS = 4
# Batches handed to the pool before the parent waits for the oldest: while it records one,
# the workers have the next to do.
AHEAD = 2


def read(raw: bytes) -> Parsed:
    """parse(raw), or why the message cannot be read."""
    try:
        return bounce_parse.parse(raw)
    except bounce_parse.Unparseable as err:
        return str(err)
    except Exception as err:  # the email package on hostile input: report, never a traceback
        return f"{type(err).__name__}: {err}"


def _read_all(raws: list[bytes | None]) -> list[Parsed | None]:
    return [None if raw is None else read(raw) for raw in raws]


def _ignore_interrupt() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool, workers wait for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers() -> int:
    """Worker processes for a large mailbox: one per core this process may run on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def classified(
    messages: Iterable[SourceMessage], size: int, workers: int | None = None
) -> Generator[list[tuple[SourceMessage, Parsed | None]], None, None]:
    """`messages` in batches of `size`, in order, each message with what parse made of it.

    `workers` (default: default_workers()) above 1 classifies in that many processes once the
    mailbox proves larger than one batch; messages are read ahead by up to AHEAD batches."""
    count = default_workers() if workers is None else max(1, workers)
    pool: ProcessPoolExecutor | None = None
    started = False
    pending: deque[tuple[list[SourceMessage], list[Future[list[Parsed | None]]] | None]]
    pending = deque()
    try:
        for batch, more in _batches(messages, size):
            if pool is None and count > 1 and (more or pending):
                pool = _start(count)
                count = count if pool is not None else 1
            futures = None
            if pool is not None:
                step = -(-len(batch) // (2 * count))  # two chunks a worker: even shares
                raws = [m.raw for m in batch]
                # The first submit forks the workers. The parent's objects are frozen meanwhile,
                # so that a worker's garbage collector never walks them (which would copy every
                # page of the parent's memory into the worker).
                frozen = not started
                if frozen:
                    gc.freeze()
                try:
                    futures = [
                        pool.submit(_read_all, raws[at : at + step])
                        for at in range(0, len(batch), step)
                    ]
                except (BrokenProcessPool, OSError):  # no worker: the parent reads from here on
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = None
                finally:
                    if frozen:
                        gc.unfreeze()
                started = True
            pending.append((batch, futures))
            while len(pending) > (AHEAD if pool is not None else 0):
                done, pool = _collect(*pending.popleft(), pool)
                yield done
        while pending:
            done, pool = _collect(*pending.popleft(), pool)
            yield done
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _batches(
    messages: Iterable[SourceMessage], size: int
) -> Iterator[tuple[list[SourceMessage], bool]]:
    """(batch, whether more messages follow): a full batch waits for the next message, so a
    mailbox of one batch never starts a pool."""
    batch: list[SourceMessage] = []
    for message in messages:
        if len(batch) >= size:
            yield batch, True
            batch = []
        batch.append(message)
    if batch:
        yield batch, False


def _start(workers: int) -> ProcessPoolExecutor | None:
    try:
        # Forked: a worker starts in milliseconds with the parser loaded, and never runs the
        # main module again (a fork server or spawn would, which an unguarded script cannot
        # take). It only parses bytes: the database connection it inherits is never used, and
        # it leaves with os._exit, so nothing of the parent's is closed or flushed twice.
        context = multiprocessing.get_context("fork")
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_interrupt)
    except (ValueError, OSError, ImportError):  # no fork here, or no semaphores
        return None


def _collect(
    batch: list[SourceMessage],
    futures: list[Future[list[Parsed | None]]] | None,
    pool: ProcessPoolExecutor | None,
) -> tuple[list[tuple[SourceMessage, Parsed | None]], ProcessPoolExecutor | None]:
    """The batch with its results; a pool that broke is shut down and the parent reads."""
    results: list[Parsed | None] = []
    if futures is not None and pool is not None:
        try:
            for future in futures:
                results.extend(future.result())
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this batch and the rest are read here.
            pool.shutdown(wait=True, cancel_futures=True)
            pool, results = None, []
    if len(results) != len(batch):
        results = _read_all([m.raw for m in batch])
    return list(zip(batch, results, strict=True)), pool
