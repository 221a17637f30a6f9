"""A campaign's report page in the console for 100,000 recipients: server time, median of 20.

    python bench/bench_console_report.py [--recipients 100000] [--runs 20] [--json]
    MAILER_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/bench_report \\
        python bench/bench_console_report.py        # PostgreSQL too (the database is dropped
                                                    # and made again: give it one of its own)

The campaign is written with bulk INSERTs (the benchmark measures the report, not planning):
100,000 contacts in 20 outlets and 8 beats, English and Korean, one ledger row each, sent over
three hours with every status (sent, failed with a handful of server replies, deferred, in
doubt, pending, skipped) and 2,000 bounce reports of every kind. Each run is a GET of
/admin/campaigns/ID/report through the Flask test client as a signed-in viewer: the whole
server time (session check, access table, six grouped queries, the SVG chart, the template),
without a network. The progress fragment (what the live page polls) and `SELECT count(*)` of
the ledger (the baseline, on a busy machine both grow) are measured the same way.
Target: the report's median <= 200 ms on each engine. Measured three ways: a finished campaign
(its ledger figures kept in campaign_figures, as the sender keeps them when it finishes:
mailer/delivery/reports.py), the same with no figures kept (they are read from the ledger and
kept), and the campaign while it is still sending (read from the ledger on every view).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from bench.support import bench_settings, load_note, table
from mailer import clock
from mailer.config import Settings

TARGET_MS = 200.0
OUTLETS = ["한겨레", "조선일보", "연합뉴스", "KBS", "Korea Herald", "Reuters", "NPR", "WHYY"]
OUTLETS += [f"Local paper {i}" for i in range(12)]
BEATS = ["politics", "business", "culture", "정치", "경제", "사회", "sports", ""]
FAILURES = [
    (550, "550 5.1.1 <{a}>: Recipient address rejected: User unknown"),
    (552, "552 5.2.2 Mailbox full"),
    (554, "554 5.7.1 Message rejected as spam"),
    (550, "550 5.7.26 Unauthenticated email is not accepted"),
]
KINDS = [("hard", "5.1.1"), ("soft", "4.2.2"), ("block", "5.7.1"), ("complaint", None)]


def fill(settings: Settings, n: int, seed: int = 15) -> int:
    """The campaign of n recipients; returns its id."""
    from mailer.contacts.lists import create_list
    from mailer.store.db import get_engine, session_scope
    from mailer.store.models import (
        Bounce,
        Campaign,
        CampaignStatus,
        Contact,
        Delivery,
        Release,
    )

    rnd = random.Random(seed)
    engine = get_engine(settings)
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    with session_scope(settings) as s:
        list_id = create_list(s, "press", "Press").id
        release = Release(
            slug="bench",
            title="Bench",
            default_language="en",
            content_hash="0",
            variants={"en": {}, "ko": {}},
        )
        s.add(release)
        s.flush()
        campaign = Campaign(
            release_id=release.id,
            audience_key="press",
            audience={"lists": ["press"]},
            status=CampaignStatus.SENDING,
            started_at=now - timedelta(hours=3),
        )
        s.add(campaign)
        s.flush()
        cid = campaign.id
    step = 10_000
    with engine.begin() as conn:
        for start in range(0, n, step):
            conn.execute(
                insert(Contact),
                [
                    {
                        "email": f"r{i}@example.org",
                        "email_original": f"r{i}@example.org",
                        "name": f"Reader {i}",
                        "language": "ko" if i % 3 else "en",
                        "organisation": OUTLETS[i % len(OUTLETS)],
                        "beat": BEATS[i % len(BEATS)],
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(start + step, n))
                ],
            )
    with engine.connect() as conn:
        ids = list(conn.execute(select(Contact.id).order_by(Contact.id)).scalars())
    statuses = ["sent"] * 80 + ["failed"] * 4 + ["deferred"] * 3 + ["pending"] * 10
    statuses += ["in_doubt", "skipped", "cancelled"]
    span = 3 * 3600
    rows = []
    for i, contact_id in enumerate(ids):
        status = rnd.choice(statuses)
        code, reply = (None, None)
        if status == "failed":
            code, reply = rnd.choice(FAILURES)
            reply = reply.format(a=f"r{i}@example.org")
        elif status == "sent":
            code, reply = 250, f"250 2.0.0 Ok: queued as {i:X}"
        elif status == "deferred":
            code, reply = 451, "451 4.7.1 Try again later"
        sent = status in ("sent", "in_doubt")
        rows.append(
            {
                "campaign_id": cid,
                "contact_id": contact_id,
                "list_id": list_id,
                "email": f"r{i}@example.org",
                "language": "ko" if i % 3 else "en",
                "status": status,
                "attempts": 1,
                "smtp_code": code,
                "smtp_reply": reply,
                "message_id": f"<bench.{i}@hanul.example.org>",
                "sent_at": now - timedelta(seconds=rnd.uniform(0, span)) if sent else None,
                "updated_at": now,
            }
        )
    with engine.begin() as conn:
        for start in range(0, len(rows), step):
            conn.execute(insert(Delivery), rows[start : start + step])
    with engine.connect() as conn:
        delivery_ids = list(
            conn.execute(select(Delivery.id).where(Delivery.status == "sent")).scalars()
        )
    chosen = rnd.sample(delivery_ids, min(2000, len(delivery_ids)))
    with engine.begin() as conn:
        conn.execute(
            insert(Bounce),
            [
                {
                    "source_message_id": f"<report.{k}@mx.example>",
                    "email": None,
                    "kind": KINDS[k % len(KINDS)][0],
                    "status_code": KINDS[k % len(KINDS)][1],
                    "diagnostic": "smtp; 550 said so",
                    "delivery_id": did,
                    "campaign_id": cid,
                    "created_at": now,
                }
                for k, did in enumerate(chosen)
            ],
        )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return cid


def fresh_database(url: str) -> None:
    """Drop and create the PostgreSQL database of `url` (connecting to its `postgres`)."""
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def signed_in_client(settings: Settings) -> Any:
    """A Flask test client signed in as a viewer (the least role that reads reports)."""
    from mailer.staff import accounts
    from mailer.store.db import session_scope
    from mailer.web import create_app

    app = create_app(settings)
    password = "bench horse battery staple"
    with session_scope(settings) as s:
        _user, token = accounts.add(s, "viewer@bench.example.org", "viewer")
        accounts.accept_invitation(s, token, password)
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "bench"
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, "no sign-in form"
    answer = client.post(
        "/admin/login",
        data={"email": "viewer@bench.example.org", "password": password, "csrf": csrf.group(1)},
    )
    assert answer.status_code == 303, answer.text
    return client


def measure(settings: Settings, cid: int, runs: int) -> dict[str, float]:
    from mailer.store.db import session_scope
    from mailer.store.models import Delivery

    client = signed_in_client(settings)

    def get(path: str) -> Callable[[], None]:
        def run() -> None:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])

        return run

    def baseline() -> None:
        with session_scope(settings) as s:
            s.scalar(select(func.count()).select_from(Delivery))

    finished = clock.now()

    def status(value: str) -> None:
        from mailer.store.models import Campaign, CampaignStatus

        with session_scope(settings) as s:
            campaign = s.get(Campaign, cid)
            assert campaign is not None
            campaign.status = CampaignStatus(value)
            campaign.finished_at = finished if value == "done" else None

    def forget() -> None:
        from sqlalchemy import delete

        from mailer.store.models import CampaignFigures

        # A campaign finished before its figures were kept (the sender keeps them at the end).
        with session_scope(settings) as s:
            s.execute(delete(CampaignFigures).where(CampaignFigures.campaign_id == cid))

    # (case, what to do before it, untimed)
    cases: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
        "report page, finished campaign": (get(f"/admin/campaigns/{cid}/report"), lambda: None),
        "report page, finished, figures not kept": (get(f"/admin/campaigns/{cid}/report"), forget),
        "report page, while sending": (
            get(f"/admin/campaigns/{cid}/report"),
            lambda: status("sending"),
        ),
        "progress fragment": (get(f"/admin/campaigns/{cid}/progress"), lambda: None),
        "baseline: count(*) of the ledger": (baseline, lambda: None),
    }
    page = client.get(f"/admin/campaigns/{cid}/report").text
    assert page.count('<rect class="bar"') > 10, "the report has no timeline"
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # taking turns: a busy moment slows every case alike
        status("done")
        for name, (run, before) in cases.items():
            before()
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times[name].append((time.perf_counter() - start) * 1000)
            cpu[name].append((time.process_time() - start_cpu) * 1000)
    out = {name: statistics.median(values) for name, values in times.items()}
    # This process's CPU time: on a machine shared with other work it moves less than the
    # wall clock (SQLite runs in this process; PostgreSQL's share is in the server's).
    out.update({f"{name} (CPU)": statistics.median(values) for name, values in cpu.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    build: dict[str, float] = {}
    pg = os.environ.get("MAILER_BENCH_DATABASE_URL", "")
    with tempfile.TemporaryDirectory() as tmp:
        urls = [("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        if pg:
            urls.append(("PostgreSQL", pg))
        for engine_name, url in urls:
            if engine_name == "PostgreSQL":
                fresh_database(url)
            settings = bench_settings(url, base_dir=Path(tmp))
            start = time.perf_counter()
            cid = fill(settings, args.recipients)
            build[engine_name] = time.perf_counter() - start
            results[engine_name] = measure(settings, cid, args.runs)
            from mailer.store.db import dispose_engines

            dispose_engines()
    if args.json:
        print(json.dumps({"results_ms": results, "build_seconds": build}, indent=2))
        return
    engines = list(results)
    rows = []
    for name in results[engines[0]]:
        row = [name]
        for engine in engines:
            ms = results[engine][name]
            flag = " !" if name.startswith("report page") and ms > TARGET_MS else ""
            row.append(f"{ms:.1f}{flag}")
        rows.append(row)
    print(
        f"{args.recipients:,} recipients, median of {args.runs} runs (ms, server time); "
        f"target for the report page <= {TARGET_MS:.0f} ms ('!' marks a miss)"
    )
    print(table(rows, ["CASE", *engines]))
    note = ", ".join(f"{e} built in {s:.0f} s" for e, s in build.items())
    if not pg:
        note += "; PostgreSQL skipped (set MAILER_BENCH_DATABASE_URL)"
    print(f"{note}; {load_note()}")


if __name__ == "__main__":
    main()
