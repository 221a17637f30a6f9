"""Segments: counting a 5-expression segment and planning a campaign from it, 100,000 contacts.

    python bench/bench_segments.py [--contacts 100000] [--runs 5]
                                   [--pg postgresql+psycopg://...] [--json]

Contacts carry the press fields (beat, region, media type) as columns, the same values again as
free attributes in the JSON column ("desk", "county", "format"), an outlet, a tag on a tenth
and a bounce on a twentieth; about 1,700 of them are suppressed (one address in 100, another
spelling of one in 150) among 3,400 suppressions. Figures, each the median of --runs, the jobs
taking turns in every run so a burst of load hits them all:
- count (fields): `segments preview`'s count of the 5-expression segment over the press fields;
- count (JSON): the same segment written over the JSON attributes (`attr.desk ...`), same rows;
- count (list): the baseline: the same count with no expression, the whole list;
- plan (list): the baseline: planning the sample release to the whole list;
- plan (segment) and plan (JSON): planning it to each segment (the same INSERT ... SELECT).
SQLite always; PostgreSQL too with --pg (or MAILER_BENCH_PG_URL): that database's mailer tables
are dropped and created again, so give it a database of its own. Targets (issue 13): a count
within 0.5 s on both engines; a segment planned no slower than the whole list.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, delete, insert, select, update

from bench.support import (
    SLUG,
    bench_settings,
    load_note,
    median,
    populate,
    sample_release,
    table,
)
from mailer.config import Settings

SEGMENT = [
    "language = ko",
    "beat in (politics, elections)",
    "region ~ PA",
    "not bounced_since 90d",
    "media_type != radio or tag = 2024-expo",
]
# The same choice over free attributes: what a column of the sheet no field matches gets.
SEGMENT_JSON = [
    "language = ko",
    "attr.desk in (politics, elections)",
    "attr.county ~ PA",
    "not bounced_since 90d",
    "attr.format != radio or tag = 2024-expo",
]
BEATS = ["politics", "elections", "business", "sports", "culture", "immigration"]
REGIONS = ["Philadelphia, PA", "Bergen, NJ", "Queens, NY", "Montgomery, PA", "Fairfax, VA"]
MEDIA = ["print", "tv", "radio", "online", "ethnic"]


def fill(settings: Settings, n: int) -> None:
    """n subscribed contacts (bench.support.populate), then press details, tags and bounces."""
    from mailer.store.db import get_engine, session_scope
    from mailer.store.models import Bounce, Contact, ContactTag, Suppression

    populate(settings, n)
    rnd = random.Random(13)
    engine = get_engine(settings)
    with session_scope(settings) as s:
        ids = list(s.scalars(select(Contact.id).order_by(Contact.id)))
        emails = dict(s.execute(select(Contact.id, Contact.email)).all())
    now = datetime.now(UTC)
    rows = []
    for cid in ids:
        beat, region, media = rnd.choice(BEATS), rnd.choice(REGIONS), rnd.choice(MEDIA)
        rows.append(
            {
                "b_id": cid,
                "beat": beat,
                "region": region,
                "media_type": media,
                "attributes": {"desk": beat, "county": region, "format": media},
                "organisation": f"Outlet {cid % 50}",
            }
        )
    stmt = (
        update(Contact)
        .where(Contact.id == bindparam("b_id"))
        .values(
            beat=bindparam("beat"),
            region=bindparam("region"),
            media_type=bindparam("media_type"),
            attributes=bindparam("attributes"),
            organisation=bindparam("organisation"),
        )
    )
    with engine.begin() as conn:
        for start in range(0, len(rows), 10_000):
            conn.execute(
                stmt.execution_options(synchronize_session=False), rows[start : start + 10_000]
            )
        conn.execute(
            insert(ContactTag), [{"contact_id": cid, "tag": "2024-expo"} for cid in ids[::10]]
        )
        conn.execute(
            insert(Bounce),
            [
                {
                    "source_message_id": f"<bench-{cid}@x>",
                    "email": emails[cid],
                    "kind": "hard",
                    "created_at": now - timedelta(days=rnd.randint(1, 200)),
                }
                for cid in ids[::20]
            ],
        )
        # Suppressions as a press office has them: one in a hundred of its contacts
        # unsubscribed everywhere, another spelling (+tag) of one in 150 complained, and as
        # many addresses again that are no contact (erased people, bounces from old lists).
        suppressions = [
            {"email": emails[cid], "reason": "unsubscribe-all", "source": "bench"}
            for cid in ids[::100]
        ]
        suppressions += [
            {"email": emails[cid].replace("@", "+news@"), "reason": "complaint", "source": "x"}
            for cid in ids[1::150]
        ]
        suppressions += [
            {"email": f"gone{i}@old.example.net", "reason": "hard-bounce", "source": "bench"}
            for i in range(len(suppressions))
        ]
        conn.execute(insert(Suppression), suppressions)
    if engine.dialect.name == "postgresql":
        # What `contacts import` does after a bulk load (mailer.imports.plan.ANALYZE_AFTER).
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def measure(settings: Settings, runs: int) -> dict[str, float | int]:
    from mailer.contacts.segments import count, resolve
    from mailer.delivery import send as dispatch
    from mailer.store.db import session_scope
    from mailer.store.models import Campaign, Delivery

    release = sample_release()
    done: list[int] = []

    def counted(where: list[str]) -> Callable[[], int]:
        def job() -> int:
            with session_scope(settings) as s:
                return count(s, resolve(s, None, [SLUG], where))

        return job

    def planned(where: list[str]) -> Callable[[], int]:
        def job() -> int:
            p = dispatch.plan(
                settings,
                release,
                [SLUG],
                [],
                smtputf8=True,
                transport="bench",
                created_by="bench",
                where=where,
            )
            done.append(p.campaign.id)
            return p.total

        return job

    def forget() -> None:
        # Untimed: the next run plans again (a campaign found would be resumed instead).
        with session_scope(settings) as s:
            for campaign_id in done:
                s.execute(delete(Delivery).where(Delivery.campaign_id == campaign_id))
                s.execute(delete(Campaign).where(Campaign.id == campaign_id))
        done.clear()

    jobs = {
        "count (list)": counted([]),
        "count (fields)": counted(SEGMENT),
        "count (JSON)": counted(SEGMENT_JSON),
        "plan (list)": planned([]),
        "plan (segment)": planned(SEGMENT),
        "plan (JSON)": planned(SEGMENT_JSON),
    }
    times: dict[str, list[float]] = {name: [] for name in jobs}
    cpu: dict[str, list[float]] = {name: [] for name in jobs}
    out: dict[str, Any] = {}
    for _ in range(runs):
        for name, job in jobs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            out[f"{name} rows"] = job()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            forget()
    for name, taken in times.items():
        out[name] = median(taken)
        # This process's CPU: all of SQLite's work (it runs in-process), so a figure that a
        # busy machine inflates much less than the wall clock; on PostgreSQL, the client's part.
        out[f"{name} cpu"] = median(cpu[name])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", default=os.environ.get("MAILER_BENCH_PG_URL"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        if args.pg:
            urls.append(("postgresql", args.pg))
        for engine_name, url in urls:
            settings = bench_settings(url, base_dir=Path(tmp))
            if engine_name == "postgresql":
                from sqlalchemy import create_engine

                from mailer.store.models import Base

                # A plain engine: mailer's would first bring an old schema up to date.
                plain = create_engine(url)
                with plain.begin() as conn:
                    conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
                Base.metadata.drop_all(plain)
                plain.dispose()
            fill(settings, args.contacts)
            results[engine_name] = measure(settings, args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{args.contacts} contacts; segment of {len(SEGMENT)} expressions: " + " / ".join(SEGMENT)
    )
    print("JSON segment: " + " / ".join(SEGMENT_JSON))
    names = ["count (list)", "count (fields)", "count (JSON)"]
    names += ["plan (list)", "plan (segment)", "plan (JSON)"]
    rows = [
        [engine, *(f"{r[name]:.3f} s ({r[f'{name} rows']})" for name in names)]
        for engine, r in results.items()
    ]
    rows += [
        [f"{engine} cpu", *(f"{r[f'{name} cpu']:.3f} s" for name in names)]
        for engine, r in results.items()
    ]
    print(table(rows, ["ENGINE", *(name.upper() for name in names)]))
    print(
        f"median of {args.runs} runs, the jobs taking turns (wall clock; 'cpu': this process's "
        f"CPU time, all of the work on SQLite); {load_note()}"
    )


if __name__ == "__main__":
    main()
