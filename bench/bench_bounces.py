"""Bounce processing: precision and recall over the test corpus, and messages per second.

    python bench/bench_bounces.py [--runs 5] [--copies 10]

The corpus (tests/bounce_corpus, 44 messages) is scored once against its expected.json. Then
`copies` copies of it, each report with a Message-ID of its own, are timed three ways, median of
`runs`: the baseline (the email package and flufl.bounce alone), mailer's parser, and the whole
`process_mailbox` (parse, match, record, suppress) on a fresh SQLite database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import flufl.bounce

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.bounce_corpus

from mailer import clock
from mailer.bounces import parse as bounce_parse
from mailer.bounces.policy import process_mailbox
from mailer.bounces.sources import open_source
from mailer.config import Settings
from mailer.store.db import dispose_engines, session_factory
from tests.bounce_corpus import world


def median_seconds(func: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def settings_for(folder: Path) -> Settings:
    return Settings(
        base_dir=folder,
        database_url=f"sqlite:///{folder / 'bench.db'}",
        secret_key="bench",
        from_address="press@hanul.example.org",
        envelope_sender="bounces@hanul.example.org",
        verp=True,
    )


def process(folder: Path, messages: list[bytes]) -> float:
    """Seconds for process_mailbox over `messages`, on a fresh database with the corpus world."""
    settings = settings_for(folder)
    mbox = world.write_mbox(folder / "in.mbox", messages)
    with session_factory(settings)() as session:
        world.build(session)
        with clock.pinned(world.PROCESSED_AT), open_source(str(mbox)) as box:
            start = time.perf_counter()
            process_mailbox(session, settings, box)
            elapsed = time.perf_counter() - start
        session.rollback()
    dispose_engines()
    (folder / "bench.db").unlink()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--copies", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = settings_for(folder)
        with session_factory(settings)() as session:
            w = world.build(session)
            corpus = world.corpus(session, settings, w.campaign.id)
            names = [name for name, _ in corpus]
            mbox = world.write_mbox(folder / "corpus.mbox", [raw for _, raw in corpus])
            with clock.pinned(world.PROCESSED_AT), open_source(str(mbox)) as box:
                report = process_mailbox(session, settings, box)
            print("\n".join(world.evaluate(session, report, names).lines()))
            session.rollback()
        dispose_engines()
        (folder / "bench.db").unlink()

        # Each copy's reports get their own Message-ID (the first header wins), so none is a
        # duplicate of another.
        messages = [
            f"Message-ID: <bench.{n}.{i}@bench.example>\n".encode() + raw
            for n in range(args.copies)
            for i, (_, raw) in enumerate(corpus)
        ]
        count = len(messages)

        def baseline() -> None:
            for raw in messages:
                try:
                    flufl.bounce.all_failures(message_from_bytes(raw))
                except Exception:  # flufl.bounce fails on messages without a From header
                    pass

        def parse_only() -> None:
            for raw in messages:
                try:
                    bounce_parse.parse(raw)
                except bounce_parse.Unparseable:
                    pass

        t_base = median_seconds(baseline, args.runs)
        t_parse = median_seconds(parse_only, args.runs)
        t_full = statistics.median(process(folder, messages) for _ in range(args.runs))
    print(f"\n{count} messages ({args.copies} copies of the corpus), median of {args.runs} runs:")
    print(
        f"  baseline: email + flufl.bounce   {t_base * 1000:8.1f} ms  "
        f"{count / t_base:8.0f} msg/s  1.00x"
    )
    print(
        f"  bounce_parse.parse               {t_parse * 1000:8.1f} ms  "
        f"{count / t_parse:8.0f} msg/s  {t_parse / t_base:.2f}x"
    )
    print(
        f"  process_mailbox (SQLite)         {t_full * 1000:8.1f} ms  "
        f"{count / t_full:8.0f} msg/s  {t_full / t_base:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
