"""What the sending benchmarks share: settings, the sample release, a fast-filled database.

Not a benchmark itself. The database is filled with bulk INSERTs (executemany, 10,000 rows at a
time), not through `contacts import`: the benchmarks measure sending, and a million contacts
through the importer would take longer than the send.
"""

from __future__ import annotations

import os
import random
import resource
import statistics
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select  # noqa: E402

from mailer.config import Settings  # noqa: E402
from mailer.samples import SAMPLE_ORGANISATION, sample_path  # noqa: E402

SLUG = "bench"
FAMILY = ["Kim", "Lee", "Park", "O'Neil", "Smith", "García", "Nguyen", "Müller", "Brown"]
GIVEN = ["Minji", "Jane", "David", "Seoyeon", "Ann", "José", "Linh", "Jürgen", "Grace"]
KO_NAMES = ["김민수", "박서연", "최지훈", "이은지", "정하늘", "강도윤", "조수빈", "윤예린"]


def bench_settings(database_url: str, **extra: Any) -> Settings:
    """The sample organisation's settings on this database (no mailer.toml needed)."""
    values: dict[str, Any] = {
        **SAMPLE_ORGANISATION,
        "database_url": database_url,
        "secret_key": "bench-secret-key",
        "from_address": "press@hanul.example.org",
        "base_url": "https://news.hanul.example.org",
        "postal_address": "100 Main Street, Suite 2, North Wales, PA 19454, USA",
        **extra,
    }
    return Settings(**values)


def sample_release() -> Any:
    from mailer.releases.source import load_release

    return load_release(sample_path())


def person(i: int, rnd: random.Random, korean_share: float) -> tuple[str, str, str]:
    """(email, name, language) of bench contact i; names with non-ASCII and with specials."""
    if rnd.random() < korean_share:
        return f"reader{i}@ko{i % 7}.example.org", rnd.choice(KO_NAMES), "ko"
    return (f"reader{i}@en{i % 7}.example.com", f"{rnd.choice(GIVEN)} {rnd.choice(FAMILY)}", "en")


def populate(
    settings: Settings, n: int, *, korean_share: float = 0.4, seed: int = 8, slug: str = SLUG
) -> int:
    """Create the list `slug` and n subscribed contacts on it; returns the list id."""
    from mailer.contacts.lists import create_list
    from mailer.store.db import get_engine, session_scope
    from mailer.store.models import Contact, MailingList, Subscription, SubscriptionStatus

    engine = get_engine(settings)
    with session_scope(settings) as s:
        ml = s.scalar(select(MailingList).where(MailingList.slug == slug))
        if ml is None:
            ml = create_list(s, slug, "Press 기자단")
            s.flush()
        list_id = ml.id
        first = (s.scalar(select(func.max(Contact.id))) or 0) + 1
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    chunk = 10_000
    with engine.begin() as conn:
        for start in range(0, n, chunk):
            contacts: list[dict[str, Any]] = []
            subs = []
            for i in range(start, min(n, start + chunk)):
                email, name, lang = person(first + i, rnd, korean_share)
                cid = first + i
                contacts.append(
                    {
                        "id": cid,
                        "email": email,
                        "email_original": email,
                        "name": name,
                        "language": lang,
                        "organisation": "",
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                subs.append(
                    {
                        "contact_id": cid,
                        "list_id": list_id,
                        "status": SubscriptionStatus.SUBSCRIBED,
                        "source": "bench",
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            conn.execute(insert(Contact), contacts)
            conn.execute(insert(Subscription), subs)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('contact', 'id'), "
                "(SELECT max(id) FROM contact))"
            )
            conn.exec_driver_sql("ANALYZE")
    return list_id


def plan(settings: Settings, slug: str = SLUG) -> int:
    """Plan a campaign of the sample release to the list (the real planner); its id."""
    from mailer.delivery import send as dispatch

    p = dispatch.plan(
        settings, sample_release(), [slug], [], smtputf8=True, transport="bench", created_by="bench"
    )
    return int(p.campaign.id)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(func: Callable[[], object]) -> float:
    import time

    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_note() -> str:
    """The 1-minute load average over the cores: other work on the machine skews wall clocks."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return ""
    return f"load average {load:.1f} on {os.cpu_count()} cores"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
