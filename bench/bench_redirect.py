"""The /l/ redirect under load: wrk against `mailer serve` (waitress) on 127.0.0.1.

    python bench/bench_redirect.py [--readers 300] [--links 20] [--runs 3] [--seconds 10]
                                   [--connections 8] [--threads 4] [--database-url URL] [--json]

A folder of its own (SQLite unless --database-url names an empty PostgreSQL database): a
press list (clicks per person) of --readers readers, the sample release with --links more
links, sent to the outbox with `mailer send`; every /l/ URL of every message is collected
(readers x links tokens), and wrk (Debian's, /usr/bin/wrk) spreads its requests over all of
them with a Lua script, a browser's User-Agent, --connections connections, a 2 s warm-up (not
counted: each process reads a campaign language's links once) and --runs runs of --seconds
each. Then the server is stopped with SIGTERM (the recorder writes what it holds) and the click
rows are counted: every 302 wrk received must be there (a few more: requests whose answer was
in flight when wrk stopped are recorded, not counted by wrk).

Figures per run: redirects a second, p50 and p99 latency, any answer that was not a 302, and
the server's own CPU time (redirects per CPU second: what one free core gives, whatever else
the machine is doing; wrk shares the same cores).
The targets (issue 17): at least 1,000 redirects a second, p99 under 50 ms, none lost.
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
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import load_note, median
from mailer.samples import sample_path

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"

LUA = r"""
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
local counter = 0
found = 0
other = 0

function init(args)
  math.randomseed(os.time() + id * 7919)
  wrk.headers["User-Agent"] = "%(ua)s"
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end

function response(status, headers, body)
  if status == 302 then found = found + 1 else other = other + 1 end
end

local threads = {}
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local f, o = 0, 0
  for _, t in ipairs(threads) do
    f = f + t:get("found")
    o = o + t:get("other")
  end
  io.write(string.format("COUNTS %%d %%d\n", f, o))
  io.write(string.format("LATENCY %%d %%d %%d\n",
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def mailer(folder: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailer", "--config", str(folder / "mailer.toml"), *args],
        check=True,
        capture_output=True,
        text=True,
        env=_env(),
        **kw,
    )


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(folder: Path, port: int, readers: int, links: int, database_url: str) -> list[str]:
    """The folder, its readers, the release sent; every /l/ path of every message."""
    toml = {
        "database_url": database_url or f"sqlite:///{folder / 'mailer.db'}",
        "secret_key": "bench-redirect-secret",
        "base_url": f"http://127.0.0.1:{port}",
        "from_address": "press@hanul.example.org",
        "from_name": "Hanul Community Center",
        "organisation_name": "Hanul Community Center",
        "postal_address": "100 Main Street, North Wales, PA 19454, USA",
        "website": "https://hanul.example.org",
        "transport": "outbox",
        "serve_worker": False,
    }
    lines = [
        f"{k} = {json.dumps(v) if not isinstance(v, bool) else str(v).lower()}"
        for k, v in toml.items()
    ]
    (folder / "mailer.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    mailer(folder, "lists", "create", "press", "--name", "Press", "--press")
    rows = ["email,name,language"] + [
        f"reader{i}@example.org,Reader {i},{'ko' if i % 3 == 0 else 'en'}" for i in range(readers)
    ]
    (folder / "readers.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    mailer(folder, "contacts", "import", str(folder / "readers.csv"), "--list", "press",
           "--consent-source", "benchmark")  # fmt: skip
    release = folder / "release"
    release.mkdir()
    extra = "\n".join(f"- [Item {n}](https://example.org/item/{n}?ref=bench)" for n in range(links))
    for source in sorted(sample_path().parent.glob("election-night.*.md")):
        text = source.read_text(encoding="utf-8").rstrip("\n") + f"\n\n{extra}\n"
        (release / source.name).write_text(text, encoding="utf-8")
    mailer(folder, "send", str(release / "election-night.en.md"), "--list", "press", "--yes")
    paths: set[str] = set()
    base = f"http://127.0.0.1:{port}"
    for file in (folder / "outbox" / "new").iterdir():
        msg = message_from_bytes(file.read_bytes(), policy=policy.default)
        body = msg.get_body(("html",))
        assert body is not None
        for url in re.findall(r'href="([^"]+)"', str(body.get_content())):
            if url.startswith(f"{base}/l/"):
                paths.add(url[len(base) :])
    return sorted(paths)


def serve(folder: Path, port: int, threads: int) -> subprocess.Popen[str]:
    # Its log goes to a file: a pipe nobody reads would fill and stop the server (waitress
    # warns about its queue under load).
    log = open(folder / "serve.log", "w", encoding="utf-8")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "--config", str(folder / "mailer.toml"), "serve",
         "--port", str(port), "--threads", str(threads), "--no-worker", "--no-notices"],
        stdout=subprocess.DEVNULL, stderr=log, text=True, env=_env(),
    )  # fmt: skip
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                failed = (folder / "serve.log").read_text(encoding="utf-8")
                raise SystemExit(f"mailer serve failed: {failed}") from None
            time.sleep(0.1)
    raise SystemExit("mailer serve did not answer /healthz")


def wrk_run(port: int, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    found, other = map(int, re.search(r"COUNTS (\d+) (\d+)", out).groups())  # type: ignore[union-attr]
    p50, p99, worst = map(int, re.search(r"LATENCY (\d+) (\d+) (\d+)", out).groups())  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "redirects_per_s": rate,
        "p50_ms": p50 / 1000,
        "p99_ms": p99 / 1000,
        "max_ms": worst / 1000,
        "redirects": found,
        "other_answers": other,
        "socket_errors": errors.group(1) if errors else "",
    }


def cpu_seconds(pid: int) -> float:
    """The server's CPU time so far (user + system, all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count_clicks(folder: Path) -> tuple[int, int]:
    code = (
        "import sys; from sqlalchemy import func, select; from mailer.config import load_settings;"
        "from mailer.store.db import session_scope; from mailer.store.models import Click;"
        "s = load_settings(sys.argv[1]);"
        "ctx = session_scope(s); db = ctx.__enter__();"
        "print(db.scalar(select(func.count()).select_from(Click)),"
        " db.scalar(select(func.count()).select_from(Click).where(Click.machine)))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder / "mailer.toml")],
                         check=True, capture_output=True, text=True, env=_env()).stdout  # fmt: skip
    total, machine = out.split()
    return int(total), int(machine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=300)
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4, help="mailer serve --threads")
    parser.add_argument("--database-url", default="", help="an empty database (default: SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    folder = Path(tempfile.mkdtemp(prefix="mailer-bench-redirect-"))
    port = free_port()
    try:
        paths = prepare(folder, port, args.readers, args.links, args.database_url)
        (folder / "paths.txt").write_text("\n".join(paths) + "\n", encoding="utf-8")
        script = folder / "spread.lua"
        script.write_text(LUA % {"paths": folder / "paths.txt", "ua": UA}, encoding="utf-8")
        proc = serve(folder, port, args.threads)
        runs: list[dict[str, Any]] = []
        warm: dict[str, Any] = {"redirects": 0}
        try:
            # Warm-up, not counted: the process reads each campaign language's links once.
            warm = wrk_run(port, script, 2, args.connections)
            for _ in range(args.runs):
                before = cpu_seconds(proc.pid)
                runs.append(wrk_run(port, script, args.seconds, args.connections))
                used = cpu_seconds(proc.pid) - before
                runs[-1]["server_cpu_s"] = used
                runs[-1]["redirects_per_cpu_s"] = runs[-1]["redirects"] / max(used, 1e-9)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
        answered = sum(int(r["redirects"]) for r in [warm, *runs])
        logged = (folder / "serve.log").read_text(encoding="utf-8")
        tracebacks = logged.count("Traceback")
        rows, machine = count_clicks(folder)
        result: dict[str, Any] = {
            "tokens": len(paths),
            "runs": runs,
            "redirects_per_s": median([r["redirects_per_s"] for r in runs]),
            "redirects_per_cpu_s": median([r["redirects_per_cpu_s"] for r in runs]),
            "p99_ms": max(r["p99_ms"] for r in runs),
            "redirects_answered": answered,
            "click_rows": rows,
            "machine_rows": machine,
            "lost": max(0, answered - rows),
            "server_tracebacks": tracebacks,
            "load": load_note(),
        }
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"/l/ redirects: {len(paths)} tokens, {args.runs} x {args.seconds} s, "
        f"{args.connections} connections, mailer serve --threads {args.threads} ({load_note()})"
    )
    for n, r in enumerate(runs, 1):
        errors = f", socket errors {r['socket_errors']}" if r["socket_errors"] else ""
        print(
            f"  run {n}: {r['redirects_per_s']:,.0f} redirects/s, p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms, other answers "
            f"{r['other_answers']}{errors}; server CPU {r['server_cpu_s']:.1f} s "
            f"({r['redirects_per_cpu_s']:,.0f} redirects per CPU second)"
        )
    rate, p99 = float(result["redirects_per_s"]), float(result["p99_ms"])
    print(f"  median {rate:,.0f} redirects/s (target >= 1,000); worst p99 {p99:.1f} ms (< 50)")
    print(
        f"  clicks: {answered:,} redirects answered, {rows:,} rows after SIGTERM "
        f"({machine:,} counted as machines), lost: {result['lost']}; "
        f"tracebacks in the server's log: {result['server_tracebacks']}"
    )
    ok = rate >= 1000 and p99 < 50 and result["lost"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
