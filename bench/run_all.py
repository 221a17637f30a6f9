"""Run every benchmark and print one table of figures against the targets of issue 8.

    python bench/run_all.py [--quick] [--memory-sizes 100000,1000000] [--only build,delivery]
                            [--pg postgresql+psycopg://...]

Each benchmark runs in its own process (bench_build, bench_delivery, bench_ledger, bench_memory,
bench_startup, and the other benchmarks in this folder when they are present: bench_import,
bench_render, bench_bounces, whose own output is printed as it is). Every figure is a median of
several runs with its baseline measured in the same run; see bench/README.md for what each one
means.
--quick uses smaller sizes (a few minutes in all; the targets are stated for the full sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OTHERS = ("bench_import.py", "bench_render.py", "bench_bounces.py")


def run_json(script: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / script), *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  {script} {' '.join(args)}: {time.perf_counter() - start:.0f} s", flush=True)
    return data


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def rows_build(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    for lang, r in d["build"].items():
        rows.append(
            [
                f"1. build, {lang}: messages/s (CPU-time rate)",
                f"{r['compiled_per_s']:,.0f} ({r['compiled_per_cpu_s']:,.0f})",
                ">= 5,000",
                verdict(r["compiled_per_s"] >= 5000),
            ]
        )
        rows.append(
            [
                f"1. build, {lang}: x EmailMessage per recipient",
                f"{r['ratio']:.0f}x (CPU {r['ratio_cpu']:.0f}x)",
                ">= 25x",
                verdict(r["ratio"] >= 25),
            ]
        )
    return rows


def rows_delivery(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    if "delivery" in d:
        r = d["delivery"]
        rows.append(
            [
                f"2. delivery, {r['recipients']:,} to the sink, {r['connections']} conns "
                f"(group {r['ledger_group_size']})",
                f"{r['mailer_per_s']:,.0f}/s vs smtplib {r['smtplib_per_s']:,.0f}/s = "
                f"{r['ratio']:.2f}x",
                ">= 0.7x",
                verdict(r["ratio"] >= 0.7),
            ]
        )
    if "mailmerge" in d:
        m = d["mailmerge"]
        rows.append(
            [
                f"2. `mailer send` vs `mailmerge`, {m['recipients']:,} recipients",
                f"{m['mailer_send_s']:.1f} s vs {m['mailmerge_s']:.1f} s = {m['ratio']:.1f}x",
                ">= 15x",
                verdict(m["ratio"] >= 15),
            ]
        )
    return rows


def rows_memory(d: dict[str, Any]) -> list[list[str]]:
    rows = []
    results = d["memory"]
    for r in results:
        mb = r["peak_mb"] * 1.048576  # the figure is MiB; the target is 100 MB
        rows.append(
            [
                f"3. memory, `mailer send` to {r['recipients']:,}: peak RSS",
                f"{mb:.1f} MB ({r['peak_mb']:.1f} MiB)",
                "<= 100 MB",
                verdict(mb <= 100),
            ]
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        rows.append(
            [
                f"3. memory growth {first['recipients']:,} -> {last['recipients']:,}",
                f"{last['growth'] * 100:+.1f}%",
                "<= +10%",
                verdict(last["growth"] <= 0.10),
            ]
        )
    return rows


def rows_ledger(d: dict[str, Any]) -> list[list[str]]:
    how = {"none": "no SMTP, 1 conn", "sink": "sink, 4 conns"}
    return [
        [
            f"4. ledger, {r['engine']}, {how[r['transport']]}, group {r['group']}",
            f"{r['per_s']:,.0f}/s ({r['ratio']:.2f}x group 1)",
            "figure",
            "",
        ]
        for r in d["ledger"]
    ]


def rows_startup(d: dict[str, Any]) -> list[list[str]]:
    """Issue 20: CPU time of starting the command line, against `python -c pass`."""
    r = d["startup"]
    rows = [
        [
            "20. start-up: `python -c pass` (baseline)",
            f"{r['python -c pass']:.3f} s CPU",
            "figure",
            "",
        ]
    ]
    for name, target in d["targets"].items():
        rows.append(
            [
                f"20. start-up: `mailer {name}`",
                f"{r[name]:.3f} s CPU",
                f"<= {target:.1f} s",
                verdict(r[name] <= target),
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--memory-sizes", default=None)
    parser.add_argument("--only", default="build,delivery,ledger,memory,startup,others")
    parser.add_argument("--pg", default=os.environ.get("MAILER_BENCH_PG_URL", ""))
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    quick = args.quick
    rows: list[list[str]] = []
    print("running the benchmarks (each in its own process)...", flush=True)
    if "build" in only:
        rows += rows_build(
            run_json(
                "bench_build.py",
                "--recipients",
                "2000" if quick else "5000",
                "--runs",
                "3" if quick else "5",
            )
        )
    if "delivery" in only:
        rows += rows_delivery(
            run_json(
                "bench_delivery.py",
                "--recipients",
                "2000" if quick else "10000",
                "--mailmerge",
                "200" if quick else "1000",
                "--runs",
                "1" if quick else "3",
            )
        )
    if "ledger" in only:
        extra = ["--pg", args.pg] if args.pg else []
        rows += rows_ledger(
            run_json(
                "bench_ledger.py",
                "--recipients",
                "1000" if quick else "5000",
                "--runs",
                "1" if quick else "3",
                *extra,
            )
        )
    if "memory" in only:
        sizes = args.memory_sizes or ("10000,50000" if quick else "100000,1000000")
        rows += rows_memory(run_json("bench_memory.py", "--sizes", sizes))
    if "startup" in only:
        rows += rows_startup(run_json("bench_startup.py", "--runs", "5" if quick else "10"))
    if "others" in only:
        for script in OTHERS:
            if (HERE / script).exists():
                print(f"\n== {script} ==", flush=True)
                proc = subprocess.run(
                    [sys.executable, str(HERE / script)],
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    capture_output=True,
                )
                print(proc.stdout.rstrip() or proc.stderr[-2000:])
    from bench.support import load_note, table

    print(f"\nissue 8 targets ({load_note()}){' -- quick sizes' if quick else ''}")
    print(table(rows, ["figure", "measured", "target", ""]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
