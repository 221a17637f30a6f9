"""The console's contacts pages over 100,000 contacts: server time per request, p50 and p95.

    python bench/bench_console_contacts.py [--contacts 100000] [--runs 40]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/bench_contacts | --no-pg] [--json]

Builds the contacts on SQLite (a temporary file) and on PostgreSQL (the --pg database is dropped
and created again: give it one of its own), through the real schema, so the search line's
triggers write every row as an import would. The contacts look like a Korean-American press
list: Korean and English names, Korean and English outlets, press fields, attributes (some in
Korean), three lists with every subscription status, tags on a third, a saved segment, five
campaigns' deliveries (a quarter of a million rows) and some bounces.

Each case is one kind of request made through the Flask test client as a signed-in editor, so
a figure is the server's whole time (session check, access table, query, template), without a
network. The search cases are what htmx asks for as someone types (the results table only);
each case cycles through several queries and is run --runs times after a warm-up. The
baseline, measured in the same run and taking turns with the cases, is `SELECT count(*) FROM
contact` on the same engine: on a busy machine both grow.
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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from bench.support import bench_settings, load_note, table
from mailer.config import Settings

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_contacts"
TARGET_MS = 100.0


def _words(line: str) -> list[str]:
    return line.split()


# Name pools, one line each (Korean surnames and syllables; romanised; English).
SURNAMES = _words("김 이 박 최 정 강 조 윤 장 임 한 오 서 신 권 황 안 송 류 홍")
SYLLABLES = _words(
    "민 서 지 현 수 영 준 하 윤 은 도 예 진 우 성 유 채 다 연 호 재 승 태 희 나 경 원 혜"
)
ROMAN = _words("kim lee park choi jung kang cho yoon jang lim han")
FIRST = _words(
    "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth Sarah Daniel "
    "Grace Hannah Kevin Laura Brian Emily Andrew Rachel Minji Jihoon Seoyeon"
)
LAST = _words(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Kim Lee Park "
    "Nguyen Chen O'Neil Müller Thompson White Harris"
)
OUTLETS = [
    "한겨레",
    "조선일보",
    "중앙일보",
    "동아일보",
    "연합뉴스",
    "KBS",
    "MBC",
    "SBS",
    "Korea Herald",
    "Korea Times",
    "Philadelphia Inquirer",
    "The New York Times",
    "Associated Press",
    "Reuters",
    "Bloomberg",
    "NPR",
    "WHYY",
    "미주한국일보",
    "Korea Daily",
    "The Korea Daily Philadelphia",
]
ROLES = ["reporter", "editor", "producer", "기자", "데스크", "columnist", "photographer"]
BEATS = ["politics", "elections", "business", "immigration", "culture", "정치", "경제", "사회"]
MEDIA = ["print", "tv", "radio", "online", "ethnic"]
REGIONS = ["Philadelphia, PA", "Bergen, NJ", "Queens, NY", "Fairfax, VA", "서울", "LA"]
DESKS = ["night", "day", "web", "weekend", "국제부", "사회부"]
TAGS = ["vip", "expo-2024", "tv-panel", "정치부", "holiday-card"]
SEGMENT = ("ko-politics", "language = ko and beat in (politics, 정치)")

# The search cases: what someone types (each case cycles through its queries).
SEARCHES = {
    "search 1 char": ["k", "김", "p", "q", "박", "z"],
    "search 2 chars": ["ki", "박서", "he", "zq", "re", "이은"],
    "search 3 chars": ["kim", "her", "김민서", "xyz", "rod", "npr"],
    "search 4 chars": ["park", "연합뉴스", "jane", "qzxw", "news", "desk"],
    "search words": ["jane kim", "korea herald", "politics", "reporter@", "김 정치", "국제부"],
    "search, no match": ["zzqqxx", "없는이름", "qq zz", "no-such-reporter"],
}


@dataclass
class Built:
    list_slugs: list[str]
    contact_ids: list[int]
    rich_ids: list[int]  # contacts with deliveries and bounces


def korean_name(rnd: random.Random) -> str:
    return rnd.choice(SURNAMES) + rnd.choice(SYLLABLES) + rnd.choice(SYLLABLES)


def fill(settings: Settings, n: int, seed: int = 14) -> Built:
    """n contacts with lists, tags, a segment, campaigns' deliveries and bounces."""
    from mailer.contacts.lists import create_list
    from mailer.contacts.segments import create_segment
    from mailer.store.db import get_engine, session_scope
    from mailer.store.models import (
        Bounce,
        Campaign,
        CampaignStatus,
        Contact,
        ContactTag,
        Delivery,
        DeliveryStatus,
        Release,
        Subscription,
        SubscriptionStatus,
    )

    rnd = random.Random(seed)
    engine = get_engine(settings)
    slugs = ["press", "press-ko", "newsletter"]
    share = {"press": 0.85, "press-ko": 0.35, "newsletter": 0.1}
    with session_scope(settings) as s:
        list_ids = {
            slug: create_list(s, slug, name, names={"ko": ko}).id
            for slug, name, ko in (
                ("press", "Press list", "보도자료"),
                ("press-ko", "Korean press", "한국어 언론"),
                ("newsletter", "Newsletter", "소식지"),
            )
        }
    now = datetime.now(UTC)
    statuses = [SubscriptionStatus.SUBSCRIBED] * 8 + [
        SubscriptionStatus.UNSUBSCRIBED,
        SubscriptionStatus.PENDING,
    ]
    chunk = 10_000
    with engine.begin() as conn:
        for start in range(1, n + 1, chunk):
            contacts: list[dict[str, Any]] = []
            subs: list[dict[str, Any]] = []
            tags: list[dict[str, Any]] = []
            for i in range(start, min(n, start + chunk - 1) + 1):
                if rnd.random() < 0.45:
                    name, language = korean_name(rnd), "ko"
                    local = f"{rnd.choice(ROMAN)}.{rnd.choice(ROMAN)}{i}"
                else:
                    first, last = rnd.choice(FIRST), rnd.choice(LAST)
                    name, language = f"{first} {last}", "en"
                    local = f"{first}.{last}{i}".lower().replace("'", "").replace("ü", "u")
                outlet = rnd.choice(OUTLETS)
                email = f"{local}@outlet{i % 400}.example.com"
                attributes: dict[str, Any] = {"desk": rnd.choice(DESKS)}
                if rnd.random() < 0.3:
                    attributes["twitter"] = f"@{local.split('.')[0]}{i}"
                if rnd.random() < 0.2:
                    attributes["notes"] = rnd.choice(["prefers email", "전화 선호", "no embargo"])
                contacts.append(
                    {
                        "id": i,
                        "email": email,
                        "email_original": email,
                        "name": name,
                        "language": language,
                        "organisation": outlet,
                        "role": rnd.choice(ROLES),
                        "beat": rnd.choice(BEATS),
                        "media_type": rnd.choice(MEDIA),
                        "region": rnd.choice(REGIONS),
                        "phone": f"010-{rnd.randint(1000, 9999)}-{rnd.randint(1000, 9999)}",
                        "attributes": attributes,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                for slug in slugs:
                    if rnd.random() < share[slug]:
                        subs.append(
                            {
                                "contact_id": i,
                                "list_id": list_ids[slug],
                                "status": rnd.choice(statuses),
                                "source": "import",
                                "consent_at": now,
                                "consent_form": "bench.csv",
                                "created_at": now,
                                "updated_at": now,
                            }
                        )
                if rnd.random() < 0.3:
                    tags.append({"contact_id": i, "tag": rnd.choice(TAGS)})
                if i % 997 == 0:
                    tags.append({"contact_id": i, "tag": "rare"})
            conn.execute(insert(Contact), contacts)
            conn.execute(insert(Subscription), subs)
            conn.execute(insert(ContactTag), tags)
        release_id = conn.execute(
            insert(Release).returning(Release.id),
            {
                "slug": "bench",
                "title": "Election night 선거의 밤",
                "default_language": "en",
                "front_matter": {},
                "variants": {},
                "content_hash": "0" * 64,
                "created_at": now,
            },
        ).scalar_one()
        ids = list(range(1, n + 1))
        for k in range(5):
            campaign_id = conn.execute(
                insert(Campaign).returning(Campaign.id),
                {
                    "release_id": release_id,
                    "audience_key": f"bench-{k}",
                    "audience": {},
                    "status": CampaignStatus.DONE,
                    "plan": {},
                    "created_at": now,
                },
            ).scalar_one()
            chosen = ids[k::2] if k % 2 == 0 else ids[1::2]
            rows = [
                {
                    "campaign_id": campaign_id,
                    "contact_id": cid,
                    "email": f"c{cid}@x",
                    "language": "en",
                    "status": DeliveryStatus.SENT,
                    "smtp_code": 250,
                    "smtp_reply": "2.0.0 Ok: queued as 4Z1",
                    "message_id": f"<{k}.{cid}@bench>",
                    "sent_at": now - timedelta(days=5 * k),
                    "updated_at": now,
                }
                for cid in chosen
            ]
            for part in range(0, len(rows), chunk):
                conn.execute(insert(Delivery), rows[part : part + chunk])
        bounces = [
            {
                "source_message_id": f"<bounce-{cid}@bench>",
                "email": None,
                "kind": "soft",
                "status_code": "4.2.2",
                "diagnostic": "452 mailbox full",
                "created_at": now,
            }
            for cid in ids[::50]
        ]
        conn.execute(insert(Bounce), bounces)
    with session_scope(settings) as s:
        create_segment(s, SEGMENT[0], ["press"], [SEGMENT[1]])
        # Bounces name the address they were about: copy each contact's.
        s.execute(
            text(
                "UPDATE bounce SET email = (SELECT email FROM contact WHERE contact.id = "
                "CAST(substr(bounce.source_message_id, 9, "
                "length(bounce.source_message_id) - 15) AS INTEGER))"
            )
        )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return Built(slugs, ids, ids[::50])


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
    """A Flask test client signed in as an editor (the least role that sees contacts)."""
    from mailer.staff import accounts
    from mailer.store.db import session_scope
    from mailer.web import create_app

    app = create_app(settings)
    password = "bench horse battery staple"
    with session_scope(settings) as s:
        _user, token = accounts.add(s, "editor@bench.example.org", "editor")
        accounts.accept_invitation(s, token, password)
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "bench"
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, "no sign-in form"
    answer = client.post(
        "/admin/login",
        data={"email": "editor@bench.example.org", "password": password, "csrf": csrf.group(1)},
    )
    assert answer.status_code == 303, answer.text
    return client


def cases(built: Built, client: Any) -> dict[str, list[Callable[[], None]]]:
    """Each case: the requests it cycles through (each checks its answer)."""
    htmx = {"HX-Request": "true"}

    def get(path: str, headers: dict[str, str] | None = None) -> Callable[[], None]:
        def run() -> None:
            answer = client.get(path, headers=headers or {})
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:500])

        return run

    def q(value: str, **more: str) -> str:
        from urllib.parse import urlencode

        return "/admin/contacts?" + urlencode({"q": value, **more})

    out: dict[str, list[Callable[[], None]]] = {
        "contacts page (full page)": [get("/admin/contacts")],
        "search page (full page, kim)": [get(q("kim"))],
    }
    for name, queries in SEARCHES.items():
        out[name] = [get(q(v), htmx) for v in queries]
    # Pages far down the newest-first listing: after an old contact's id.
    n = len(built.contact_ids)
    deep_ids = [built.contact_ids[int(n * share)] for share in (0.001, 0.005, 0.02, 0.05, 0.2)]
    deep = [get(f"/admin/contacts?after={a}", htmx) for a in deep_ids]
    deep += [get(q("kim", after=str(a)), htmx) for a in deep_ids]
    deep += [get(q("김", after=str(a)), htmx) for a in deep_ids]
    out["deep pages (after an old id)"] = deep
    out["filter: list"] = [get(f"/admin/contacts?list={slug}", htmx) for slug in built.list_slugs]
    out["filter: status"] = [
        get(f"/admin/contacts?status={s}", htmx) for s in ("pending", "unsubscribed")
    ] + [
        get(f"/admin/contacts?list=newsletter&status={s}", htmx) for s in ("pending", "subscribed")
    ]
    out["filter: tag"] = [get(f"/admin/contacts?tag={t}", htmx) for t in ("vip", "rare", "정치부")]
    out["filter: segment"] = [get(f"/admin/contacts?segment={SEGMENT[0]}", htmx)]
    wheres = [
        "beat = politics",
        "language = ko and media_type = tv",
        "outlet ~ herald or region ~ NJ",
        "attr.desk = 국제부",
        "tag = rare",
    ]
    out["filter: where"] = [get("/admin/contacts?" + _qs(where=w), htmx) for w in wheres]
    out["search + filters"] = [
        get(q("kim", list="press", status="subscribed"), htmx),
        get(q("김", tag="vip"), htmx),
        get(q("herald", where="beat = politics"), htmx),
        get(q("park", segment=SEGMENT[0]), htmx),
    ]
    rnd = random.Random(5)
    pages = rnd.sample(built.rich_ids, 10) + rnd.sample(built.contact_ids, 10)
    out["contact page"] = [get(f"/admin/contacts/{cid}") for cid in pages]
    return out


def _qs(**values: str) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def measure(settings: Settings, built: Built, runs: int) -> dict[str, dict[str, float]]:
    from mailer.store.db import session_scope
    from mailer.store.models import Contact

    client = signed_in_client(settings)
    jobs = cases(built, client)

    def baseline() -> None:
        with session_scope(settings) as s:
            s.scalar(select(func.count()).select_from(Contact))

    jobs["baseline: SELECT count(*) FROM contact"] = [baseline]
    for requests in jobs.values():  # warm-up: caches, compiled SQL, templates
        for request in requests:
            request()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(runs):
        for name, requests in jobs.items():  # taking turns: load hits every case alike
            for request in requests:
                start = time.perf_counter()
                request()
                times[name].append((time.perf_counter() - start) * 1000)
    return {
        name: {
            "p50": statistics.median(values),
            "p95": percentile(values, 0.95),
            "n": len(values),
        }
        for name, values in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--pg", default=os.environ.get("MAILER_BENCH_CONTACTS_PG_URL", PG_DEFAULT))
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float]]] = {}
    build_seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        urls = [("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        if not args.no_pg:
            urls.append(("PostgreSQL", args.pg))
        for engine_name, url in urls:
            if engine_name == "PostgreSQL":
                fresh_database(url)
            settings = bench_settings(url, base_dir=Path(tmp))
            start = time.perf_counter()
            built = fill(settings, args.contacts)
            build_seconds[engine_name] = time.perf_counter() - start
            results[engine_name] = measure(settings, built, args.runs)
            from mailer.store.db import dispose_engines

            dispose_engines()
    if args.json:
        print(json.dumps({"results": results, "build_seconds": build_seconds}, indent=2))
        return
    engines = list(results)
    names = list(results[engines[0]])
    rows = []
    for name in names:
        row = [name]
        for engine in engines:
            r = results[engine][name]
            flag = "" if r["p95"] <= TARGET_MS or name.startswith("baseline") else " !"
            row += [f"{r['p50']:.1f}", f"{r['p95']:.1f}{flag}"]
        rows.append(row)
    header = ["CASE (ms, server time)"]
    for engine in engines:
        header += [f"{engine} p50", f"{engine} p95"]
    print(
        f"{args.contacts:,} contacts, {args.runs} runs of each request after a warm-up; "
        f"target p95 <= {TARGET_MS:.0f} ms ('!' marks a case over it)"
    )
    print(table(rows, header))
    built_note = ", ".join(f"{e} built in {s:.0f} s" for e, s in build_seconds.items())
    print(f"{built_note}; {load_note()}")


if __name__ == "__main__":
    main()
