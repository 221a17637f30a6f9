"""Ledger proofs: messages per second with ledger_group_size 1, 10 and 50.

    python bench/bench_ledger.py [--recipients 5000] [--runs 3] [--groups 1,10,50]
                                 [--pg postgresql+psycopg://...] [--json]

ledger_group_size is how many rows a connection proves in one committed UPDATE ... RETURNING
before sending them (docs/ledger.md); 1, the default, is a commit immediately before every
message. Two figures per group size, both through mailer.delivery.engine.deliver on a planned
campaign:
- "no SMTP": a transport whose connections accept every message at once (nothing leaves the
  process), one connection. What is left is the ledger: claims, proofs, building, and
  recording replies. The baseline, measured in the same run, is the first group size given.
- "sink": the real SMTP transport to bench/sink.py over 4 connections.
SQLite always; PostgreSQL too with --pg, or when MAILER_BENCH_DATABASE_URL or
MAILER_TEST_DATABASE_URL is set: that database's mailer tables are emptied first, so give it a
database of its own.

What each group size allows in doubt after a crash is in bench/README.md section 4.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sink import SinkProcess
from bench.support import bench_settings, load_note, median, plan, populate, table
from mailer.config import Settings
from mailer.delivery.transport import DryRunConnection


class AcceptAll:
    """A transport whose connections accept every message without sending it."""

    name = "accept-all"

    def open(self) -> DryRunConnection:
        return DryRunConnection()

    def check(self) -> None:
        pass

    def supports_smtputf8(self) -> bool:
        return True

    def describe(self) -> str:
        return "accept-all (nothing is sent)"


def empty_database(url: str, folder: Path) -> str:
    """A database with no mailer rows: a new SQLite file, or the PostgreSQL tables emptied."""
    from sqlalchemy import text

    from mailer.store.db import dispose_engines, get_engine
    from mailer.store.models import Base

    dispose_engines()
    if url.startswith("sqlite"):
        db = folder / "ledger.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{db}"
    engine = get_engine(Settings(database_url=url, secret_key="x"))
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    dispose_engines()
    return url


def one_send(
    url: str, folder: Path, n: int, group: int, transport: str, sink: SinkProcess
) -> float:
    """Messages per second of one send of a fresh n-recipient campaign."""
    from mailer.delivery.engine import deliver
    from mailer.delivery.transport import SmtpTransport
    from mailer.store.db import dispose_engines

    db_url = empty_database(url, folder)
    connections = 1 if transport == "none" else 4
    settings = bench_settings(
        db_url,
        transport="smtp",
        smtp_url=sink.url,
        concurrency=connections,
        ledger_group_size=group,
    )
    populate(settings, n)
    campaign_id = plan(settings)
    chosen: Any = AcceptAll() if transport == "none" else SmtpTransport(settings)
    start = time.perf_counter()
    result = deliver(settings, campaign_id, chosen)
    elapsed = time.perf_counter() - start
    if result.counts.get("sent") != n:
        raise RuntimeError(f"group {group}: expected {n} sent, got {result.counts}")
    if transport == "sink":
        got, ids, _ = sink.stats()
        sink.reset()
        if got != n or ids != n:
            raise RuntimeError(f"group {group}: the sink got {got} messages, {ids} ids")
    dispose_engines()
    return n / elapsed


def measure(urls: dict[str, str], n: int, runs: int, groups: list[int]) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="mailer-ledger-") as tmp, SinkProcess() as sink:
        folder = Path(tmp)
        for engine, url in urls.items():
            for transport in ("none", "sink"):
                rates: dict[int, list[float]] = {g: [] for g in groups}
                for _ in range(runs):  # the group sizes take turns within each run
                    for g in groups:
                        rates[g].append(one_send(url, folder, n, g, transport, sink))
                base = median(rates[groups[0]])
                for g in groups:
                    out.append(
                        {
                            "engine": engine,
                            "transport": transport,
                            "group": g,
                            "per_s": median(rates[g]),
                            "ratio": median(rates[g]) / base,
                            "runs": rates[g],
                        }
                    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--groups", default="1,10,50")
    parser.add_argument(
        "--pg",
        default=os.environ.get("MAILER_BENCH_DATABASE_URL")
        or os.environ.get("MAILER_TEST_DATABASE_URL", ""),
        help="a PostgreSQL URL (its mailer tables are emptied)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    groups = [int(g) for g in args.groups.split(",")]
    urls = {"sqlite": "sqlite://"}
    if args.pg:
        urls["postgresql"] = args.pg
    results = measure(urls, args.recipients, args.runs, groups)
    if args.json:
        print(json.dumps({"ledger": results, "load": load_note()}))
        return 0
    how = {"none": "no SMTP, 1 connection", "sink": "sink, 4 connections"}
    rows = [
        [
            f"{r['engine']}, {how[r['transport']]}",
            str(r["group"]),
            f"{r['per_s']:,.0f}/s",
            f"{r['ratio']:.2f}x",
        ]
        for r in results
    ]
    print(
        f"ledger proofs, {args.recipients:,} recipients, median of {args.runs} runs ({load_note()})"
    )
    print(table(rows, ["send", "ledger_group_size", "messages", f"vs group {groups[0]}"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
