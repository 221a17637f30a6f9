"""The public newsroom under load: 1,000 bilingual releases, `mailer serve`, wrk.

    python bench/bench_newsroom.py [--releases 1000] [--seconds 10] [--threads 4]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/bench_newsroom] [--json]

Fills a new database (SQLite in a temporary folder, or the --pg database, dropped and made
again: give it one of its own) with --releases public releases (the sample release, English and
Korean, one a day), starts `mailer serve` on a free port and runs wrk (Debian's `wrk`) against
it: first with one connection, whose median latency is the server's time per request plus
loopback (no queueing), then with 8 connections for requests per second. The baseline, run the
same way in the same run, is /healthz (one `SELECT 1`).

Cases: one release page (its article rendered once, then from the page cache), every release
page in turn (2 x --releases URLs, more than the cache holds: most are rendered), the index,
the index filtered by year on its third page, the English Atom feed (20 entries, full content),
and the sitemap. Also the weight of a release page: its HTML plus the stylesheet (target under
100 KB). Target: the release page and the index at most 20 ms at the median.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailer.config import load_settings
from mailer.samples import SAMPLE_ORGANISATION

TARGET_MS = 20.0
WEIGHT_LIMIT = 100_000


def write_config(folder: Path, database_url: str, port: int) -> Path:
    values: dict[str, Any] = {
        **SAMPLE_ORGANISATION,
        "database_url": database_url,
        "secret_key": "bench-secret-key",
        "base_url": f"http://127.0.0.1:{port}",
        "timezone": "Asia/Seoul",
        "console": False,
    }
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, dict):
            inner = ", ".join(
                f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in value.items()
            )
            lines.append(f"{key} = {{{inner}}}")
        else:
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    path = folder / "mailer.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fresh_pg(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def fill(config: Path, releases: int) -> list[str]:
    """The releases, public since yesterday; their page paths (both languages)."""
    from mailer.contacts.lists import create_list
    from mailer.store.db import session_scope
    from tests.support.newsroom import bulk_publications

    settings = load_settings(config, env={})
    with session_scope(settings) as s:
        create_list(s, "press", "Press", names={"ko": "언론"})
    made = bulk_publications(
        settings,
        releases,
        sent_at=datetime.now(UTC) - timedelta(days=1),
        start_day=datetime(2022, 1, 1).date(),
    )
    return [f"/news/{y}/{m:02d}/{slug}/{lang}" for y, m, slug in made for lang in ("en", "ko")]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(config: Path, port: int, threads: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    # Its log goes to a file: a pipe nobody reads would fill and stop the server.
    log = (config.parent / "serve.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer",
            "--config",
            str(config),
            "serve",
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--no-notices",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(
                    "mailer serve failed: " + (config.parent / "serve.log").read_text()
                ) from None
            time.sleep(0.1)
    raise SystemExit("mailer serve did not answer /healthz")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value.strip())
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict[str, float]:
    """Run wrk; its median and 90th percentile latency (ms), requests a second and non-2xx/3xx."""
    command = [
        "wrk",
        "-t1" if connections == 1 else "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
    ]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p90 = re.search(r"^\s+90%\s+(\S+)", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if not (p50 and p90 and rps):
        raise SystemExit(f"cannot read wrk's output:\n{out}")
    return {
        "p50_ms": _ms(p50.group(1)),
        "p90_ms": _ms(p90.group(1)),
        "rps": float(rps.group(1)),
        "errors": float(bad.group(1)) if bad else 0.0,
    }


def rotation_script(folder: Path, paths: list[str]) -> Path:
    """A wrk script that asks for each path in turn."""
    listed = ",\n".join(json.dumps(p) for p in paths)
    script = folder / "rotate.lua"
    script.write_text(
        "local paths = {\n" + listed + "\n}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\nend\n',
        encoding="utf-8",
    )
    return script


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return bytes(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4, help="mailer serve --threads")
    parser.add_argument("--pg", default="", help="a PostgreSQL URL of its own (dropped, made anew)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("needs wrk (Debian: apt-get install wrk)")
    folder = Path(tempfile.mkdtemp(prefix="bench-newsroom-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if args.pg:
        fresh_pg(args.pg)
        url = args.pg
    else:
        url = f"sqlite:///{folder / 'mailer.db'}"
    config = write_config(folder, url, port)
    started = time.perf_counter()
    pages = fill(config, args.releases)
    filled = time.perf_counter() - started
    one = pages[len(pages) // 2]
    proc = serve(config, port, args.threads)
    try:
        html = get(base + one)
        css_path = re.search(rb'<link rel="stylesheet" href="([^"]+)"', html)
        assert css_path is not None
        css = get(base + css_path.group(1).decode())
        # Warm: the imports, the first render of each template, the database's caches.
        for path in ("/news/en/", "/news/en/feed.atom", "/news/sitemap.xml", one):
            get(base + path)
        sitemap = get(base + "/news/sitemap.xml")
        cases = {
            "baseline: /healthz": (f"{base}/healthz", None),
            "release page (one)": (base + one, None),
            f"release pages (all {len(pages)} in turn)": (
                base + "/",
                rotation_script(folder, pages),
            ),
            "index, page 1": (f"{base}/news/en/", None),
            "index, year 2022, page 3": (f"{base}/news/en/?year=2022&page=3", None),
            "feed (20 entries)": (f"{base}/news/en/feed.atom", None),
            "sitemap": (f"{base}/news/sitemap.xml", None),
        }
        results: dict[str, dict[str, float]] = {}
        for name, (target, script) in cases.items():
            single = wrk(target, args.seconds, 1, script)
            many = wrk(target, args.seconds, 8, script)
            results[name] = {
                **single,
                "rps_8": many["rps"],
                "errors": single["errors"] + many["errors"],
            }
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(folder, ignore_errors=True)
    weight = len(html) + len(css)
    report = {
        "engine": "postgresql" if args.pg else "sqlite",
        "releases": args.releases,
        "fill_seconds": round(filled, 1),
        "load_average": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "page_bytes": len(html),
        "css_bytes": len(css),
        "sitemap_bytes": len(sitemap),
        "cases": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"newsroom: {args.releases} releases on {report['engine']} (filled in {filled:.1f} s), "
        f"mailer serve --threads {args.threads}, wrk {args.seconds} s per run; "
        f"load average {report['load_average']:.1f} on {report['cpus']} CPUs"
    )
    print(f"{'case':<34} {'p50 ms':>8} {'p90 ms':>8} {'req/s c1':>9} {'req/s c8':>9} {'errors':>7}")
    for name, r in results.items():
        print(
            f"{name:<34} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} {r['rps']:>9.0f} "
            f"{r['rps_8']:>9.0f} {r['errors']:>7.0f}"
        )
    page = results["release page (one)"]["p50_ms"]
    index = results["index, page 1"]["p50_ms"]
    print(
        f"release page {page:.1f} ms, index {index:.1f} ms at the median "
        f"(target <= {TARGET_MS:.0f} ms): {'met' if max(page, index) <= TARGET_MS else 'MISSED'}"
    )
    print(
        f"release page weight: {len(html):,} B HTML + {len(css):,} B CSS = {weight:,} B "
        f"(limit {WEIGHT_LIMIT:,}): {'met' if weight < WEIGHT_LIMIT else 'MISSED'}; "
        f"sitemap {len(sitemap):,} B"
    )


if __name__ == "__main__":
    main()
