"""Segments: counting a 5-expression segment and planning a campaign from it, 100,000 contacts.

    python bench/bench_segments.py [--contacts 100000] [--runs 3]
                                   [--pg postgresql+psycopg://...] [--json]

Contacts carry press attributes as JSON (beat, region, media_type), an outlet, tags on a tenth
and a bounce on a twentieth. Figures: the median of --runs of
- count: `segments preview`'s count of the segment (SQL, one statement);
- plan (list): planning the sample release to the whole list (the planner's INSERT ... SELECT);
- plan (segment): planning it to the segment (the same INSERT ... SELECT with the condition).
SQLite always; PostgreSQL too with --pg (or MAILER_BENCH_PG_URL): that database's mailer tables
are dropped and created again, so give it a database of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import delete, insert

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
BEATS = ["politics", "elections", "business", "sports", "culture", "immigration"]
REGIONS = ["Philadelphia, PA", "Bergen, NJ", "Queens, NY", "Montgomery, PA", "Fairfax, VA"]
MEDIA = ["print", "TV", "radio", "online", "ethnic media"]


def fill(settings: Settings, n: int) -> None:
    """n subscribed contacts (bench.support.populate), then press details, tags and bounces."""
    from sqlalchemy import select, update

    from mailer.store.db import get_engine, session_scope
    from mailer.store.models import Bounce, Contact, ContactTag

    populate(settings, n)
    rnd = random.Random(13)
    engine = get_engine(settings)
    with session_scope(settings) as s:
        ids = list(s.scalars(select(Contact.id).order_by(Contact.id)))
        emails = dict(s.execute(select(Contact.id, Contact.email)).all())
    now = datetime.now(UTC)
    with engine.begin() as conn:
        rows = [
            {
                "b_id": cid,
                "attributes": {
                    "beat": rnd.choice(BEATS),
                    "region": rnd.choice(REGIONS),
                    "media_type": rnd.choice(MEDIA),
                },
                "organisation": f"Outlet {cid % 50}",
            }
            for cid in ids
        ]
        from sqlalchemy import bindparam

        stmt = (
            update(Contact)
            .where(Contact.id == bindparam("b_id"))
            .values(attributes=bindparam("attributes"), organisation=bindparam("organisation"))
        )
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
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def measure(settings: Settings, runs: int) -> dict[str, float | int]:
    from mailer.contacts.segments import count, resolve
    from mailer.delivery import send as dispatch
    from mailer.store.db import session_scope
    from mailer.store.models import Campaign, Delivery

    release = sample_release()

    def counted() -> int:
        with session_scope(settings) as s:
            return count(s, resolve(s, None, [SLUG], SEGMENT))

    def planned(where: list[str]) -> int:
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

    def forget() -> None:
        # Untimed: the next run plans again (a campaign found would be resumed instead).
        with session_scope(settings) as s:
            for campaign_id in done:
                s.execute(delete(Delivery).where(Delivery.campaign_id == campaign_id))
                s.execute(delete(Campaign).where(Campaign.id == campaign_id))
        done.clear()

    done: list[int] = []

    out: dict[str, Any] = {}
    for name, job in (
        ("count", counted),
        ("plan (list)", lambda: planned([])),
        ("plan (segment)", lambda: planned(SEGMENT)),
    ):
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            result = job()
            times.append(time.perf_counter() - start)
            forget()
        out[name] = median(times)
        out[f"{name} rows"] = result
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
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
                from mailer.store.db import get_engine
                from mailer.store.models import Base

                engine = get_engine(settings)
                with engine.begin() as conn:
                    conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
                Base.metadata.drop_all(engine)
            from mailer.store.db import get_engine
            from mailer.store.schema import ensure_schema

            ensure_schema(get_engine(settings))
            fill(settings, args.contacts)
            results[engine_name] = measure(settings, args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{args.contacts} contacts; segment of {len(SEGMENT)} expressions: " + " / ".join(SEGMENT)
    )
    rows = [
        [
            engine,
            f"{r['count']:.3f} s ({r['count rows']})",
            f"{r['plan (list)']:.3f} s ({r['plan (list) rows']})",
            f"{r['plan (segment)']:.3f} s ({r['plan (segment) rows']})",
        ]
        for engine, r in results.items()
    ]
    print(table(rows, ["ENGINE", "COUNT (ROWS)", "PLAN LIST (ROWS)", "PLAN SEGMENT (ROWS)"]))
    print(load_note())


if __name__ == "__main__":
    main()
