"""Memory: peak RSS of `mailer send` to 100,000 recipients, and its growth up to 1,000,000.

    python bench/bench_memory.py [--sizes 100000,1000000] [--group N] [--url DATABASE_URL]
                                 [--json]

For each size, in fresh processes:
1. a helper fills a new SQLite database (or empties --url's tables and fills them) with that
   many subscribed contacts, with bulk INSERTs (not measured);
2. a child runs the real command, `mailer send RELEASE --list bench --yes` (click's main, in
   the child), against bench/sink.py over 4 connections: it checks the release, plans the
   campaign (the audience frozen into the ledger), renders, sends every message and records
   every result. It reports its peak RSS (getrusage ru_maxrss, the kernel's high-water mark of
   the whole process) and its RSS once the modules are imported, before the send starts, in
   MiB (2**20 bytes; the target's 100 MB is 95.4 MiB).
The baseline is the smallest size's peak: the growth column is each peak over it. 1,000,000
recipients takes a long time (minutes to an hour, at the machine's sending rate); the sizes are
a flag.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sink import SinkProcess
from bench.support import ROOT, load_note, table


def vm(field: str) -> float:
    """A /proc/self/status figure (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def child_fill(url: str, n: int) -> None:
    from bench.support import bench_settings, populate

    populate(bench_settings(url), n)


def child_send(config: str, release: str) -> None:
    import resource

    import click

    from mailer.cli import main

    imported = vm("VmRSS")
    start = time.perf_counter()
    try:
        main(
            ["--config", config, "send", release, "--list", "bench", "--yes"], standalone_mode=False
        )
    except click.ClickException as err:
        raise SystemExit(f"mailer send failed: {err.format_message()}") from None
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "RESULT "
        + json.dumps(
            {"imported_mb": imported, "peak_mb": peak, "hwm_mb": vm("VmHWM"), "seconds": elapsed}
        ),
        flush=True,
    )


def empty_database(url: str, folder: Path) -> str:
    if not url:
        db = folder / "memory.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{db}"
    from sqlalchemy import text

    from mailer.config import Settings
    from mailer.store.db import dispose_engines, get_engine
    from mailer.store.models import Base

    engine = get_engine(Settings(database_url=url, secret_key="x"))
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    dispose_engines()
    return url


def write_config(folder: Path, url: str, sink: SinkProcess, group: int | None) -> Path:
    from bench.support import bench_settings

    s = bench_settings(url)
    values = {
        "database_url": url,
        "transport": "smtp",
        "smtp_url": sink.url,
        "secret_key": s.secret_key,
        "from_address": s.from_address,
        "from_name": s.from_name,
        "base_url": s.base_url,
        "postal_address": s.postal_address,
        "organisation_name": s.organisation_name,
    }
    lines = [f'{k} = "{v}"' for k, v in values.items()] + ["concurrency = 4"]
    if group is not None:
        lines.append(f"ledger_group_size = {group}")
    path = folder / "mailer.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_child(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {proc.stderr[-3000:]}")
    return proc.stdout


def measure(sizes: list[int], url: str, group: int | None) -> list[dict[str, Any]]:
    out = []
    with tempfile.TemporaryDirectory(prefix="mailer-memory-") as tmp, SinkProcess() as sink:
        folder = Path(tmp)
        release_dir = folder / "release"
        release_dir.mkdir()
        for f in (ROOT / "mailer" / "samples").glob("election-night.*.md"):
            shutil.copy(f, release_dir / f.name)
        for n in sizes:
            db_url = empty_database(url, folder)
            run_child("--child-fill", db_url, str(n))
            config = write_config(folder, db_url, sink, group)
            sink.reset()
            stdout = run_child(
                "--child-send", str(config), str(release_dir / "election-night.en.md")
            )
            result = json.loads(stdout.split("RESULT ", 1)[1])
            got, ids, _ = sink.stats()
            if got != n or ids != n:
                raise RuntimeError(f"{n} recipients: the sink got {got} messages, {ids} ids")
            out.append({"recipients": n, **result, "per_s": n / result["seconds"]})
    base = out[0]["peak_mb"]
    for r in out:
        r["growth"] = r["peak_mb"] / base - 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-fill"]:
        child_fill(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["--child-send"]:
        child_send(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--group", type=int, default=None, help="ledger_group_size (default: the shipped setting)"
    )
    parser.add_argument("--url", default="", help="database URL (default: a new SQLite file)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = measure([int(x) for x in args.sizes.split(",")], args.url, args.group)
    if args.json:
        print(json.dumps({"memory": results, "load": load_note()}))
        return 0
    rows = [
        [
            f"{r['recipients']:,}",
            f"{r['imported_mb']:.0f} MiB",
            f"{r['peak_mb']:.1f} MiB ({r['peak_mb'] * 1.048576:.1f} MB)",
            f"{r['growth'] * 100:+.1f}%",
            f"{r['seconds']:.0f} s",
            f"{r['per_s']:,.0f}/s",
        ]
        for r in results
    ]
    print(f"peak RSS of `mailer send` (MiB; 100 MB = 95.4 MiB) ({load_note()})")
    print(table(rows, ["recipients", "after imports", "peak RSS", "growth", "send", "rate"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
