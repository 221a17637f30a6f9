"""`mailer bounces process` on an mbox of 10,000 bounces for one sent campaign: messages/second.

    python bench/bench_bounce_process.py [--messages 10000] [--runs 3] [--corpus FOLDER]
    MAILER_BENCH_DATABASE_URL=postgresql+psycopg://... python bench/bench_bounce_process.py

The campaign: 10,000 contacts on one list, each sent one message. The mbox: one report per
contact, shaped like real ones, round robin over
- the labelled single-recipient samples of a labelled corpus of real bounces (--corpus, or
  MAILER_BOUNCE_CORPUS: a folder with labels.json and samples/*.eml; its hard, soft,
  complaint and vacation messages from many mail systems), and
- the project's corpus (tests/bounce_corpus: hard, soft, block, complaint, delayed, auto-reply),
each rewritten to be about its contact: the address replaced, a Delivered-To naming the signed
VERP address mailer used for that contact, the quoted Message-ID that of the contact's delivery,
and a Message-ID of its own. Every 20th is forged (no VERP, a Message-ID mailer never sent): it
is held for review. No network: nothing is sent, the mbox is a local file.

Timed, median of `runs`:
- the classifier alone (bounces/parse.py over the same bytes, in one process): the baseline;
- on SQLite, `mailer bounces process MBOX --json` itself, run in this process through click's
  CliRunner on a new database file: reading mailer.toml, the mbox, classifying (in worker
  processes, one per core, bounces/pool.py), matching, every write, the COMMIT and the printed
  report. Then the same with this process allowed on one CPU only (what a 1-core machine does:
  everything in one process), whose report must be the same item for item;
- on PostgreSQL (MAILER_BENCH_DATABASE_URL), `process_mailbox` in a transaction rolled back
  afterwards (the COMMIT and the printing not timed), so the database is left as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from mailer import clock  # noqa: E402
from mailer.bounces import parse as bounce_parse  # noqa: E402
from mailer.bounces.policy import process_mailbox  # noqa: E402
from mailer.bounces.pool import default_workers  # noqa: E402
from mailer.bounces.sources import open_source  # noqa: E402
from mailer.cli import main as cli_main  # noqa: E402
from mailer.config import Settings  # noqa: E402
from mailer.contacts.addresses import verp_encode  # noqa: E402
from mailer.contacts.lists import create_list  # noqa: E402
from mailer.store.db import dispose_engines, session_factory  # noqa: E402
from mailer.store.models import (  # noqa: E402
    Contact,
    Delivery,
    DeliveryStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.bounce_corpus import world  # noqa: E402
from tests.support.config import write_config  # noqa: E402

BOUNCE_ADDRESS = "bounces@hanul.example.org"
SENT_AT = datetime(2025, 3, 3, 9, 2, 9, tzinfo=UTC)
PROCESSED_AT = datetime(2025, 3, 6, 12, 0, tzinfo=UTC)
# What each template is, for the summary (the shared corpus's class or the project's outcome).
SHARED_CLASSES = {"hard", "soft", "complaint", "vacation"}
PROJECT_OUTCOMES = {"hard", "soft", "block", "complaint", "delayed", "autoreply"}


def settings_for(url: str, folder: Path) -> Settings:
    return Settings(
        base_dir=folder,
        database_url=url,
        secret_key="bench",
        from_address="press@hanul.example.org",
        envelope_sender=BOUNCE_ADDRESS,
        verp=True,
    )


def templates(corpus: Path | None) -> list[tuple[str, str, bytes]]:
    """(kind, the address it is about, bytes) of every single-recipient sample."""
    out: list[tuple[str, str, bytes]] = []
    if corpus is not None:
        labels = json.loads((corpus / "labels.json").read_text(encoding="utf-8"))
        for name, rows in sorted(labels.items()):
            if len(rows) == 1 and rows[0]["address"] and rows[0]["class"] in SHARED_CLASSES:
                out.append(
                    (rows[0]["class"], rows[0]["address"], (corpus / "samples" / name).read_bytes())
                )
    for name, info in sorted(world.EXPECTED["messages"].items()):
        if info["outcome"] in PROJECT_OUTCOMES and info["email"]:
            raw = (world.HERE / name).read_bytes()
            if b"@@TOKEN" not in raw:
                out.append((info["outcome"], info["email"], raw))
    return out


def message(
    n: int, kind: str, address: str, raw: bytes, email: str, mid: str, verp: str, forged: bool
) -> bytes:
    """`raw` rewritten to be about `email` (its delivery `mid`, its VERP address)."""
    local = address.partition("@")[0]
    raw = re.sub(re.escape(address).encode(), email.encode(), raw, flags=re.IGNORECASE)
    raw = re.sub(
        rf"bounces\+{re.escape(local)}=[^@\s<>]+@hanul\.example\.org".encode(),
        verp.encode(),
        raw,
        flags=re.IGNORECASE,
    )
    raw = re.sub(
        rb"<c1\.r\d+\.a1b2c3d4e5@hanul\.example\.org>",
        (f"<forged.{n}@elsewhere.example>" if forged else mid).encode(),
        raw,
    )
    # The first Message-ID and Delivered-To win (bounces/parse.py reads the first header).
    head = f"Message-ID: <bench.{n}@bench.example>\n"
    head += f"Delivered-To: {BOUNCE_ADDRESS if forged else verp}\n"
    if not forged:
        head += f"References: {mid}\n"
    return head.encode() + raw.replace(b"\r\n", b"\n")


def build(
    session: Session, settings: Settings, count: int, shapes: list[tuple[str, str, bytes]]
) -> tuple[list[bytes], Counter[str]]:
    """The sent campaign (bulk inserts) and the `count` reports about it."""
    ml = create_list(session, "bench-bounces", "Bench")
    campaign = world.make_campaign(session, "bench-bounces")
    emails = [f"reader{n:05d}@news{n % 97}.example.com" for n in range(count)]
    session.execute(
        insert(Contact),
        [
            {"email": e, "email_original": e, "name": "", "language": "en", "attributes": {}}
            for e in emails
        ],
    )
    ids = {e: i for e, i in session.execute(select(Contact.email, Contact.id))}
    session.execute(
        insert(Subscription),
        [
            {
                "contact_id": ids[e],
                "list_id": ml.id,
                "status": SubscriptionStatus.SUBSCRIBED,
                "source": "bench",
            }
            for e in emails
        ],
    )
    mids = [f"<c{campaign.id}.r{ids[e]}.bench@hanul.example.org>" for e in emails]
    session.execute(
        insert(Delivery),
        [
            {
                "campaign_id": campaign.id,
                "contact_id": ids[e],
                "list_id": ml.id,
                "email": e,
                "language": "en",
                "status": DeliveryStatus.SENT,
                "attempts": 1,
                "message_id": mid,
                "sent_at": SENT_AT,
            }
            for e, mid in zip(emails, mids, strict=True)
        ],
    )
    session.flush()
    messages, kinds = [], Counter[str]()
    for n, (email, mid) in enumerate(zip(emails, mids, strict=True)):
        kind, address, raw = shapes[n % len(shapes)]
        forged = n % 20 == 19
        verp = verp_encode(
            BOUNCE_ADDRESS, email, secret_key=settings.secret_key, campaign_id=campaign.id
        )
        messages.append(message(n, kind, address, raw, email, mid, verp, forged))
        kinds["forged " + kind if forged else kind] += 1
    return messages, kinds


def run_once(
    url: str, folder: Path, count: int, shapes: list[tuple[str, str, bytes]], *, baseline: bool
) -> tuple[float | None, float, dict[str, Any], Counter[str]]:
    """(seconds classifying, seconds of `mailer bounces process`, its JSON report, template
    kinds) on a new campaign, in a new SQLite database.

    Timed: the command itself, in this process (click's CliRunner), from reading mailer.toml to
    the COMMIT and the printed report: the classifier, the matching and every database write."""
    settings = settings_for(url, folder)
    with session_factory(settings)() as session:
        messages, kinds = build(session, settings, count, shapes)
        session.commit()
    dispose_engines()
    mbox = world.write_mbox(folder / "bounces.mbox", messages)
    toml = write_config(
        folder,
        {
            "database_url": url,
            "secret_key": settings.secret_key,
            "envelope_sender": BOUNCE_ADDRESS,
            "verp": True,
        },
    )
    t_parse = None
    if baseline:
        start = time.perf_counter()
        for raw in messages:
            try:
                bounce_parse.parse(raw)
            except bounce_parse.Unparseable:
                pass
        t_parse = time.perf_counter() - start
    args = ["--config", str(toml), "bounces", "process", str(mbox), "--json"]
    with clock.pinned(PROCESSED_AT):
        start = time.perf_counter()
        result = CliRunner().invoke(cli_main, args, catch_exceptions=False)
        t_full = time.perf_counter() - start
    dispose_engines()
    if result.exit_code != 0:
        raise SystemExit(f"bounces process failed ({result.exit_code}): {result.output[-2000:]}")
    return t_parse, t_full, json.loads(result.stdout), kinds


def run_once_rolled_back(
    url: str, folder: Path, count: int, shapes: list[tuple[str, str, bytes]]
) -> tuple[float, float, dict[str, Any], Counter[str]]:
    """PostgreSQL: the same, but `process_mailbox` in a transaction rolled back afterwards (the
    COMMIT and the printing are not timed), so the database is left as it was."""
    settings = settings_for(url, folder)
    with session_factory(settings)() as session:
        messages, kinds = build(session, settings, count, shapes)
        mbox = world.write_mbox(folder / "bounces.mbox", messages)
        start = time.perf_counter()
        for raw in messages:
            try:
                bounce_parse.parse(raw)
            except bounce_parse.Unparseable:
                pass
        t_parse = time.perf_counter() - start
        with clock.pinned(PROCESSED_AT), open_source(str(mbox)) as box:
            start = time.perf_counter()
            report = process_mailbox(session, settings, box)
            t_full = time.perf_counter() - start
        session.rollback()
    dispose_engines()
    return t_parse, t_full, report.as_dict(), kinds


@contextmanager
def one_core() -> Iterator[None]:
    """This process (and so the command) allowed on one CPU only: the run a 1-core machine
    makes (bounces/pool.py then classifies in the process itself)."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def bench(
    label: str, url: str, folder: Path, count: int, runs: int, shapes: list[tuple[str, str, bytes]]
) -> None:
    sqlite = url.startswith("sqlite:///")
    parse_times, full_times, single_times = [], [], []
    data: dict[str, Any] = {}
    kinds = Counter[str]()
    for _ in range(runs):
        if sqlite:
            t_parse, t_full, data, kinds = run_once(url, folder, count, shapes, baseline=True)
            Path(url.removeprefix("sqlite:///")).unlink()
            if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
                with one_core():
                    _, t_single, single, _ = run_once(url, folder, count, shapes, baseline=False)
                Path(url.removeprefix("sqlite:///")).unlink()
                # The pool changes where reports are read, never what is decided.
                assert single["items"] == data["items"], "one core and several disagree"
                single_times.append(t_single)
        else:
            t_parse, t_full, data, kinds = run_once_rolled_back(url, folder, count, shapes)
        assert t_parse is not None
        parse_times.append(t_parse)
        full_times.append(t_full)
    t_parse, t_full = statistics.median(parse_times), statistics.median(full_times)
    what = "mailer bounces process" if sqlite else "process_mailbox (rolled back)"
    print(f"\n{label}: {count} messages, median of {runs} runs, {default_workers()} worker(s)")
    print(f"  reports by shape:  {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}")
    counts = data["counts"]
    print(f"  outcomes:          {', '.join(f'{n} {k}' for k, n in counts.items() if n)}")
    print(f"  suppressed {len(data['suppressed'])}, held for review {len(data['held'])}")
    print(f"  classifier alone, one process  {t_parse:7.2f} s  {count / t_parse:7.0f} msg/s")
    print(
        f"  {what:<30} {t_full:7.2f} s  {count / t_full:7.0f} msg/s  "
        f"(runs: {', '.join(f'{count / t:.0f}' for t in full_times)})"
    )
    if single_times:
        t_single = statistics.median(single_times)
        print(
            f"  {'the same on one core':<30} {t_single:7.2f} s  {count / t_single:7.0f} msg/s  "
            f"(runs: {', '.join(f'{count / t:.0f}' for t in single_times)})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=os.environ.get("MAILER_BOUNCE_CORPUS"),
        help="a labelled corpus: labels.json and samples/*.eml",
    )
    args = parser.parse_args(argv)
    if args.corpus is not None and not (args.corpus / "labels.json").is_file():
        parser.error(f"--corpus {args.corpus}: no labels.json in that folder")
    shapes = templates(args.corpus)
    print(
        f"{len(shapes)} report shapes"
        + ("" if args.corpus else " (no --corpus: the project corpus only)")
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bench(
            "SQLite", f"sqlite:///{folder / 'bench.db'}", folder, args.messages, args.runs, shapes
        )
        pg = os.environ.get("MAILER_BENCH_DATABASE_URL")
        if pg:
            bench("PostgreSQL", pg, folder, args.messages, args.runs, shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
