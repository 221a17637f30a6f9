"""An import through the console against the same import on the command line: 100,000 rows.

    python bench/bench_console_import.py [--rows 100000] [--runs 5]
                                         [--pg postgresql+psycopg://...] [--json]

Both import the same generated press list (bench_import.make_file: English and Korean names,
outlets, languages, a beat) into a new, empty database each time:
- CLI: what `mailer contacts import FILE --list bench --consent-source ...` runs, in-process:
  `import_contacts` in one session, committed;
- console: the whole path through the Flask app (its test client, so no network): the upload
  (a multipart POST of the file), the column page, the mapping form posted, the dry run polled
  until its report, the report page, the import posted and polled until done, its page. The
  progress is polled every 0.1 s (a browser polls every second; the server's work is what is
  measured). Signing in is not timed.
Each run times both, taking turns (the first of the two alternates), so a burst of load on a
shared machine hits both; the figure is the median of --runs. The issue's target: the console
in no more than 1.2x the CLI's time. SQLite always; PostgreSQL too with --pg (or
MAILER_BENCH_PG_URL): that database's tables are emptied, so give it one of its own.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_import import make_file
from bench.support import bench_settings, load_note, median, table
from mailer.config import Settings

LIST = "bench"
CONSENT = "Reporters who asked for our releases (bench)"
ADMIN = "bench-admin@example.org"
PASSWORD = "bench password, long enough"
POLL = 0.1
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_UPLOAD = re.compile(r"/admin/import/([A-Za-z0-9_-]{24})$")
_CHOICE = re.compile(r'<select id="(col-\d+)" name="col-\d+">(.*?)</select>', re.S)
_SELECTED = re.compile(r'<option value="([^"]+)" selected>')
_COUNT = re.compile(r'<td class="num" id="count-(\w+)">([\d,]+)</td>')


def fresh_database(url: str, folder: Path, n: int) -> Settings:
    """Settings on an empty database (a new SQLite file, or PostgreSQL's tables emptied)."""
    from sqlalchemy import text

    from mailer.contacts.lists import create_list
    from mailer.store.db import dispose_engines, get_engine, session_scope
    from mailer.store.models import Base

    dispose_engines()
    if url.startswith("sqlite"):
        url = f"sqlite:///{folder / f'bench-{n}.db'}"
    settings = bench_settings(url, base_dir=folder)
    engine = get_engine(settings)
    if not url.startswith("sqlite"):
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    with session_scope(settings) as s:
        create_list(s, LIST, "Bench")
    return settings


def cli_import(settings: Settings, file: Path) -> tuple[float, dict[str, int]]:
    """The CLI's import: the library call `mailer contacts import` makes, in one session."""
    from mailer.imports.importer import import_contacts
    from mailer.store.db import session_scope

    start = time.perf_counter()
    with session_scope(settings) as s:
        report = import_contacts(
            s, file, LIST, consent_source=CONSENT, default_language=settings.default_language
        )
    return time.perf_counter() - start, dict(report.counts)


def signed_in(settings: Settings) -> Any:
    """A test client of a new app, signed in as an admin (not timed)."""
    from mailer.staff import accounts
    from mailer.store.db import session_scope
    from mailer.web import create_app

    with session_scope(settings) as s:
        _user, token = accounts.add(s, ADMIN, "admin")
        accounts.accept_invitation(s, token, PASSWORD)
    client = create_app(settings).test_client()
    page = client.get("/admin/login")
    done = client.post(
        "/admin/login", data={"email": ADMIN, "password": PASSWORD, "csrf": csrf(page.text)}
    )
    assert done.status_code == 303, done.text
    return client


def csrf(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no form on the page"
    return found.group(1)


def wait_for(client: Any, upload_id: str) -> None:
    """Poll the progress as htmx does, until the step is over (the fragment asks for a refresh)."""
    while True:
        part = client.get(f"/admin/import/{upload_id}/progress", headers={"HX-Request": "true"})
        assert part.status_code == 200, part.text
        if part.headers.get("HX-Refresh") == "true":
            return
        time.sleep(POLL)


def console_import(settings: Settings, file: Path) -> tuple[float, dict[str, int]]:
    """The console's import, from the upload to the page of the finished import."""
    client = signed_in(settings)
    data = file.read_bytes()
    form = client.get("/admin/import")
    start = time.perf_counter()
    uploaded = client.post(
        "/admin/import",
        data={
            "csrf": csrf(form.text),
            "list": LIST,
            "consent_source": CONSENT,
            "file": (io.BytesIO(data), file.name),
        },
        content_type="multipart/form-data",
    )
    found = _UPLOAD.search(uploaded.headers.get("Location", ""))
    assert uploaded.status_code == 303 and found, uploaded.text
    upload_id = found.group(1)
    page = client.get(f"/admin/import/{upload_id}").text
    choices = {name: _SELECTED.findall(body)[0] for name, body in _CHOICE.findall(page)}
    posted = client.post(
        f"/admin/import/{upload_id}/check",
        data={"csrf": csrf(page), "list": LIST, "consent_source": CONSENT, **choices},
    )
    assert posted.status_code == 303, posted.text
    wait_for(client, upload_id)
    report = client.get(f"/admin/import/{upload_id}").text
    applied = client.post(
        f"/admin/import/{upload_id}/apply", data={"csrf": csrf(report), "confirm": "1"}
    )
    assert applied.status_code == 303, applied.text
    wait_for(client, upload_id)
    done = client.get(f"/admin/import/{upload_id}").text
    elapsed = time.perf_counter() - start
    assert "Import done" in done, done[-2000:]
    counts = {k: int(v.replace(",", "")) for k, v in _COUNT.findall(done)}
    counts.setdefault("pending_confirmed", 0)
    return elapsed, counts


def measure(url: str, file: Path, rows: int, runs: int, folder: Path) -> dict[str, Any]:
    cases: dict[str, Callable[[Settings, Path], tuple[float, dict[str, int]]]] = {
        "cli": cli_import,
        "console": console_import,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    ratios: list[float] = []
    n = 0
    for run in range(runs):
        order = list(cases) if run % 2 == 0 else list(reversed(cases))
        this: dict[str, float] = {}
        counts: dict[str, dict[str, int]] = {}
        for name in order:
            n += 1
            settings = fresh_database(url, folder, n)
            gc.collect()
            this[name], counts[name] = cases[name](settings, file)
            times[name].append(this[name])
        assert counts["cli"] == counts["console"], counts
        assert counts["cli"]["rows"] == rows, counts["cli"]
        ratios.append(this["console"] / this["cli"])
        print(
            f"  run {run + 1}: CLI {this['cli']:.2f} s, console {this['console']:.2f} s, "
            f"ratio {ratios[-1]:.2f}",
            flush=True,
        )
    return {
        "cli_seconds": median(times["cli"]),
        "console_seconds": median(times["console"]),
        "ratio": median(ratios),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg", default=os.environ.get("MAILER_BENCH_PG_URL", ""))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        file = folder / "press-list.csv"
        make_file(file, args.rows)
        if not args.json:
            print(
                f"{args.rows:,} rows, {file.stat().st_size / 1e6:.1f} MB; median of {args.runs} "
                f"runs, CLI and console taking turns; {load_note()}",
                flush=True,
            )
        engines = [("sqlite", "sqlite://")] + ([("postgresql", args.pg)] if args.pg else [])
        for engine, url in engines:
            if not args.json:
                print(engine, flush=True)
            results[engine] = measure(url, file, args.rows, args.runs, folder)
    if args.json:
        print(json.dumps({"rows": args.rows, **results}))
        return
    rows = [
        [
            engine,
            f"{r['cli_seconds']:.2f}",
            f"{r['console_seconds']:.2f}",
            f"{r['ratio']:.2f}",
            "yes" if r["ratio"] <= 1.2 else "NO",
        ]
        for engine, r in results.items()
    ]
    print(table(rows, ["engine", "CLI s", "console s", "console / CLI", "<= 1.2x"]))


if __name__ == "__main__":
    main()
