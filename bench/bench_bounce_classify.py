"""The bounce classifier against its targets, and `bounces process` throughput.

    python bench/bench_bounce_classify.py [--messages 10000] [--corpus PATH]

1. The shared labelled corpus (MAILER_BOUNCE_CORPUS, else ../shared/bounce-corpus), per
   recipient: hard bounces suppressed with the right address (target >= 0.95), messages whose
   labels hold no hard or complaint that suppress anyone (target <= 1%), complaints found
   (target >= 0.9); both against the labels as they are and with the disputed labels
   (tests/bounce_corpus/labelled.py, each with its reason) set aside.
2. Every corpus message cut off half-way through its returned copy: still classified, the
   slowest message's time (target: each under 50 ms).
3. flufl.bounce's temporary-failure messages: none may be hard.
4. `process_mailbox` on an mbox of N bounces (the project corpus's 44 messages repeated, each
   with a Message-ID of its own) on a fresh SQLite database: messages per second (target
   >= 1,000/s).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.bounce_corpus

from mailer import clock
from mailer.bounces.classify import classify_bytes
from mailer.bounces.policy import process_mailbox
from mailer.bounces.sources import open_source
from mailer.config import Settings
from mailer.store.db import dispose_engines, session_factory
from tests.bounce_corpus import labelled, world
from tests.support.bounces import FLUFL_TEMPORARY, cut_in_copy


def corpus_figures() -> None:
    if labelled.corpus_dir() is None:
        print("shared corpus: not found (set MAILER_BOUNCE_CORPUS)")
        return
    score, _ = labelled.score()
    print("shared corpus (per recipient):")
    for line in score.lines():
        print("  " + line)
    if score.missed:
        print("  hard bounces missed (undisputed): " + ", ".join(score.missed))
    folder, labels = labelled.load()
    slowest, slowest_cut, cut_count, cut_unparseable = (0.0, ""), (0.0, ""), 0, 0
    for name in sorted(labels):
        raw = (folder / "samples" / name).read_bytes()
        slowest = max(slowest, (seconds(raw, name), name))
        cut = cut_in_copy(raw)
        if cut is None:
            continue
        cut_count += 1
        cut_unparseable += classify_bytes(cut, name).form == "unparseable"
        slowest_cut = max(slowest_cut, (seconds(cut, name), name))
    print(
        f"  slowest message (best of {RUNS} runs each): {slowest[0] * 1000:.1f} ms ({slowest[1]})"
    )
    print(
        f"  cut off in their copy: {cut_count} messages, {cut_unparseable} unparseable, "
        f"slowest {slowest_cut[0] * 1000:.1f} ms ({slowest_cut[1]})"
    )


RUNS = 3


def seconds(raw: bytes, name: str) -> float:
    """One message's classification time: the best of a few runs (a shared machine's other
    work only ever adds time)."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        classify_bytes(raw, name)
        times.append(time.perf_counter() - start)
    return min(times)


def flufl_figures() -> None:
    hard = []
    files = sorted(FLUFL_TEMPORARY.glob("*.txt"))
    for path in files:
        verdict = classify_bytes(path.read_bytes(), path.name)
        if any(r.suppress for r in verdict.recipients):
            hard.append(path.name)
    print(
        f"flufl.bounce temporary failures: {len(files)} messages, {len(hard)} marked hard "
        f"{hard or ''}"
    )


def throughput(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings(
            base_dir=folder,
            database_url=f"sqlite:///{folder / 'bench.db'}",
            secret_key="bench",
            from_address="press@hanul.example.org",
            envelope_sender="bounces@hanul.example.org",
            verp=True,
        )
        with session_factory(settings)() as session:
            w = world.build(session)
            corpus = [raw for _, raw in world.corpus(session, settings, w.campaign.id)]
            session.commit()
            # The first Message-ID header wins: every copy is a report of its own.
            messages = [
                f"Message-ID: <bench.{n}@bench.example>\n".encode() + corpus[n % len(corpus)]
                for n in range(count)
            ]
            mbox = world.write_mbox(folder / "in.mbox", messages)
            start = time.perf_counter()
            for n, raw in enumerate(messages):
                classify_bytes(raw, str(n))
            parsing = time.perf_counter() - start
            with clock.pinned(world.PROCESSED_AT), open_source(str(mbox)) as box:
                start = time.perf_counter()
                report = process_mailbox(session, settings, box)
                session.commit()
                elapsed = time.perf_counter() - start
        dispose_engines()
    print(
        f"classify alone, the same {count} messages: {parsing:.1f} s, "
        f"{count / parsing:.0f} messages/s"
    )
    print(
        f"bounces process, {count} messages on SQLite: {elapsed:.1f} s, "
        f"{count / elapsed:.0f} messages/s ({report.messages} read, "
        f"{len(report.items)} items)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--corpus", help="the shared corpus folder (else MAILER_BOUNCE_CORPUS)")
    args = parser.parse_args(argv)
    if args.corpus:
        os.environ["MAILER_BOUNCE_CORPUS"] = args.corpus
    corpus_figures()
    flufl_figures()
    if args.messages:
        throughput(args.messages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
