"""Benchmark `contacts import`: 100,000 rows into an empty database, then the same file again.

Prints a table: the median of several runs of each case, in a fresh process each (so peak memory
is the case's own), with the rate of email-validator alone over the same addresses, measured in
the same run, as the baseline ("x validator" is the import's rate over that rate). The import
checks each distinct domain once (mailer.imports.importer.domain_cache); "no domain cache" shows the
import without it, for comparison. PostgreSQL figures too when --pg URL (or MAILER_BENCH_PG_URL)
is set.

    python bench/bench_import.py [--rows 100000] [--runs 3] [--pg postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAMILY = [
    "Kim",
    "Lee",
    "Park",
    "Choi",
    "Jung",
    "Kang",
    "Cho",
    "Yoon",
    "Jang",
    "Lim",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
]
GIVEN = [
    "Minji",
    "Jihoon",
    "Seoyeon",
    "Hyunwoo",
    "Jiwoo",
    "Sarah",
    "David",
    "Maria",
    "James",
    "Priya",
    "Tom",
    "Grace",
    "Daniel",
    "Sofia",
    "Yuna",
    "Eunji",
    "Joon",
    "Olivia",
]
KO_FAMILY = ["김", "이", "박", "최", "정", "강", "조", "윤", "장", "임"]
KO_GIVEN = ["민지", "지훈", "서연", "현우", "지우", "은지", "준호", "수빈", "예린", "도윤"]
OUTLETS = [
    "seouldaily",
    "hangang-times",
    "valleyherald",
    "dvledger",
    "koreanweekly",
    "northwalesnews",
    "kbn-radio",
    "hanul-ilbo",
    "montcotribune",
    "metrowire",
]
TLDS = ["example.com", "example.org", "example.net"]


def make_file(path: Path, rows: int, seed: int = 7) -> list[str]:
    """A realistic press list: names in English and Korean, 30 outlets, a beat attribute."""
    rnd = random.Random(seed)
    emails = []
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Email", "Name", "Outlet", "Language", "Beat"])
        for i in range(rows):
            korean = rnd.random() < 0.4
            g, f = rnd.choice(GIVEN), rnd.choice(FAMILY)
            name = rnd.choice(KO_FAMILY) + rnd.choice(KO_GIVEN) if korean else f"{g} {f}"
            outlet = rnd.choice(OUTLETS)
            email = f"{g}.{f}{i}@{outlet}{i % 3}.{rnd.choice(TLDS)}"
            emails.append(email)
            w.writerow(
                [
                    email,
                    name,
                    outlet.replace("-", " ").title(),
                    "ko" if korean else "en",
                    rnd.choice(["politics", "culture", "local", "business", ""]),
                ]
            )
    return emails


def child(args: argparse.Namespace) -> None:
    """One measured case in this process; prints JSON."""
    from mailer.config import Settings
    from mailer.store.db import get_engine, session_scope

    settings = Settings(database_url=args.url, secret_key="bench")
    if args.case == "validator":
        from email_validator import validate_email

        with open(args.file, encoding="utf-8", newline="") as fh:
            addresses = [row[0] for row in csv.reader(fh)][1:]
        start = time.perf_counter()
        for a in addresses:
            validate_email(a, check_deliverability=False)
        elapsed = time.perf_counter() - start
    else:
        from mailer.contacts.lists import create_list
        from mailer.imports import importer
        from mailer.imports.importer import import_contacts
        from mailer.store.models import MailingList

        if args.case == "import-uncached":
            # For comparison only: every address's domain checked again, as email-validator does.
            importer.domain_cache = contextlib.nullcontext  # type: ignore[assignment]

        get_engine(settings)
        with session_scope(settings) as s:
            if s.query(MailingList).filter_by(slug="bench").first() is None:
                create_list(s, "bench", "Bench")
        start = time.perf_counter()
        with session_scope(settings) as s:
            report = import_contacts(s, args.file, "bench")
        elapsed = time.perf_counter() - start
        assert report.counts["rows"] == args.rows, report.counts
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "peak_mb": peak_mb}))


def run(case: str, url: str, file: Path, rows: int) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            case,
            "--url",
            url,
            "--file",
            str(file),
            "--rows",
            str(rows),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def db_url(url: str, folder: Path) -> str:
    return f"sqlite:///{folder / 'bench.db'}" if url.startswith("sqlite") else url


def reset(url: str, folder: Path) -> str:
    """An empty database: a new SQLite file, or PostgreSQL's tables truncated."""
    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(str(folder / "bench.db") + suffix).unlink(missing_ok=True)
        return db_url(url, folder)
    from sqlalchemy import text

    from mailer.config import Settings
    from mailer.store.db import dispose_engines, get_engine
    from mailer.store.models import Base

    engine = get_engine(Settings(database_url=url, secret_key="bench"))
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    dispose_engines()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("MAILER_BENCH_PG_URL", ""))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--file", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.case = args.child
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        file = folder / "contacts.csv"
        make_file(file, args.rows)
        print(
            f"{args.rows:,} rows, {file.stat().st_size / 1e6:.1f} MB; median of {args.runs} "
            "rounds; each case in a fresh process; every round runs every case, so a busy "
            "machine slows a round's baseline as much as its imports",
            flush=True,
        )
        engines = [("sqlite", "sqlite:///")] + ([("postgresql", args.pg)] if args.pg else [])
        cases = [("email-validator alone", "-", "validator")]
        for name, _ in engines:
            cases += [
                ("import, empty database", name, "import"),
                ("re-import (all known)", name, "import"),
            ]
        cases.append(("import, no domain cache", "sqlite", "import-uncached"))
        measured: dict[tuple[str, str], list[dict[str, float]]] = {}
        ratios: dict[tuple[str, str], list[float]] = {}
        for _ in range(args.runs):
            base = run("validator", "sqlite://", file, args.rows)
            measured.setdefault(cases[0][:2], []).append(base)
            for label, engine, case in cases[1:]:
                url = dict(engines)[engine]
                db = db_url(url, folder) if label.startswith("re-import") else reset(url, folder)
                result = run(case, db, file, args.rows)
                measured.setdefault((label, engine), []).append(result)
                ratios.setdefault((label, engine), []).append(base["seconds"] / result["seconds"])
        print(
            f"{'case':<25} {'engine':<11} {'seconds':>8} {'rows/s':>9} {'x validator':>12} "
            f"{'peak MB':>8}"
        )
        for label, engine, _ in cases:
            runs = measured[(label, engine)]
            t = statistics.median(r["seconds"] for r in runs)
            ratio = statistics.median(ratios.get((label, engine), [1.0]))
            peak = max(r["peak_mb"] for r in runs)
            print(
                f"{label:<25} {engine:<11} {t:>8.2f} {args.rows / t:>9,.0f} {ratio:>12.2f} "
                f"{peak:>8.0f}"
            )


if __name__ == "__main__":
    main()
