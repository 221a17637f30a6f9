"""Delivery: the real send path against plain smtplib, and against the `mailmerge` command.

    python bench/bench_delivery.py [--recipients 10000] [--runs 3] [--connections 4]
                                   [--mailmerge 1000] [--group N] [--json]

1. --recipients (10,000; 40% Korean) to a local sink (bench/sink.py, its own process) over
   --connections (4):
   - mailer: delivery.engine.deliver on a planned campaign with a SQLite ledger: claims, suppression
     checks, per-recipient build, SMTP, results recorded (ledger_group_size from --group, default
     the shipped setting). Timed from the call to its return (rendering the release included).
   - baseline: plain smtplib, one SMTP connection per thread, `sendmail` of messages built
     beforehand (not timed), the same number of threads. No database, no personalisation.
   Both are checked at the sink: every message arrived, each Message-ID once.
2. --mailmerge (1,000, English) recipients, the same job as commands: `mailer send` (a fresh
   process: start-up, render, plan, send) against `mailmerge --no-dry-run --no-limit` with a
   template made from the same rendered variant and a CSV of the same recipients and links.
   mailmerge is installed with pip into its own venv (--mailmerge-venv, default
   /tmp/mailmerge-venv) on first use; pass --mailmerge 0 to skip.
Figures are medians of --runs runs; the two sides of each pair run one after the other, and the
ratio is the median of the pairs' ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sink import SinkProcess
from bench.support import (
    ROOT,
    bench_settings,
    load_note,
    median,
    plan,
    populate,
    sample_release,
    table,
)
from mailer.config import Settings


def fresh_database(
    folder: Path, sink: SinkProcess, n: int, korean_share: float, **extra: Any
) -> Settings:
    """A new SQLite database with n subscribed contacts."""
    from mailer.store.db import dispose_engines

    dispose_engines()
    db = folder / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    settings = bench_settings(f"sqlite:///{db}", transport="smtp", smtp_url=sink.url, **extra)
    populate(settings, n, korean_share=korean_share)
    dispose_engines()
    return settings


def fresh_campaign(
    folder: Path, sink: SinkProcess, n: int, korean_share: float, **extra: Any
) -> tuple[Settings, int]:
    """A new SQLite database with n subscribed contacts and a planned campaign."""
    settings = fresh_database(folder, sink, n, korean_share, **extra)
    return settings, plan(settings)


def run_mailer(settings: Settings, campaign_id: int) -> float:
    from mailer.delivery.engine import deliver
    from mailer.delivery.transport import SmtpTransport

    start = time.perf_counter()
    result = deliver(settings, campaign_id, SmtpTransport(settings))
    elapsed = time.perf_counter() - start
    if not result.complete:
        raise RuntimeError(f"the campaign did not finish: {result.counts}")
    return elapsed


def prebuilt_messages(settings: Settings, campaign_id: int) -> list[tuple[str, bytes]]:
    """(recipient, message) for every row of the campaign, built with the compiled path."""
    from sqlalchemy import select

    from mailer.delivery.message import CompiledVariant, Recipient, sender_for
    from mailer.releases.render import render_release
    from mailer.store.db import session_scope
    from mailer.store.models import Contact, Delivery

    rendered = render_release(sample_release(), settings)
    sender = sender_for(settings, "Press 기자단", "bench")
    compiled = {
        lang: CompiledVariant(v, sender, settings, campaign_id=campaign_id)
        for lang, v in rendered.items()
    }
    out = []
    with session_scope(settings) as s:
        for d, name in s.execute(
            select(Delivery, Contact.name)
            .join(Contact, Contact.id == Delivery.contact_id)
            .where(Delivery.campaign_id == campaign_id)
        ):
            r = Recipient(d.contact_id or 0, d.email, name, d.list_id, d.message_id)
            out.append((d.email, compiled[d.language].build(r).replace(b"\n", b"\r\n")))
    return out


def run_smtplib(
    port: int, messages: list[tuple[str, bytes]], connections: int, envelope_from: str
) -> float:
    shares = [messages[i::connections] for i in range(connections)]
    errors: list[BaseException] = []

    def worker(share: list[tuple[str, bytes]]) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
                for to, message in share:
                    smtp.sendmail(envelope_from, [to], message)
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def check_sink(sink: SinkProcess, n: int, what: str) -> None:
    messages, ids, _ = sink.stats()
    if messages != n or ids != n:
        raise RuntimeError(
            f"{what}: the sink got {messages} messages with {ids} distinct "
            f"Message-IDs, expected {n}"
        )
    sink.reset()


def delivery(
    sink: SinkProcess, folder: Path, n: int, runs: int, connections: int, group: int | None
) -> dict[str, Any]:
    extra: dict[str, Any] = {"concurrency": connections}
    if group is not None:
        extra["ledger_group_size"] = group
    ours, plain = [], []
    for _ in range(runs):
        settings, campaign_id = fresh_campaign(folder, sink, n, 0.4, **extra)
        messages = prebuilt_messages(settings, campaign_id)
        sink.reset()
        plain.append(n / run_smtplib(sink.port, messages, connections, settings.bounce_address))
        check_sink(sink, n, "smtplib")
        del messages
        ours.append(n / run_mailer(settings, campaign_id))
        check_sink(sink, n, "mailer")
    group_size = group if group is not None else settings.ledger_group_size
    return {
        "recipients": n,
        "connections": connections,
        "ledger_group_size": group_size,
        "mailer_per_s": median(ours),
        "smtplib_per_s": median(plain),
        # Each run's pair ran back to back: the ratio is the median of the pairs' ratios.
        "ratio": median([a / b for a, b in zip(ours, plain, strict=True)]),
        "mailer_runs": ours,
        "smtplib_runs": plain,
    }


# --- mailmerge --------------------------------------------------------------------------------


def mailmerge_bin(venv: Path) -> Path:
    exe = venv / "bin" / "mailmerge"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mailmerge"], check=True)
    return exe


def jinja_part(template: Any, escape: bool) -> str:
    """A PersonalTemplate as Jinja: literals raw, placeholders as variables."""
    out = []
    for i, piece in enumerate(template.parts):
        if i % 2:
            out.append("{{ " + piece + ("|e" if escape else "") + " }}")
        elif piece:
            out.append("{% raw %}" + piece + "{% endraw %}")
    return "".join(out)


def mailmerge_job(folder: Path, settings: Settings, campaign_id: int, sink: SinkProcess) -> Path:
    """mailmerge's template, database and server config for the campaign's recipients."""
    import csv

    from sqlalchemy import select

    from mailer.delivery.message import CompiledVariant, Recipient, sender_for
    from mailer.releases.render import render_release
    from mailer.store.db import session_scope
    from mailer.store.models import Contact, Delivery

    rendered = render_release(sample_release(), settings)["en"]
    sender = sender_for(settings, "Press 기자단", "bench")
    compiled = CompiledVariant(rendered, sender, settings, campaign_id=campaign_id)
    job = folder / "mailmerge"
    job.mkdir(exist_ok=True)
    with (job / "database.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["email", "name", "unsubscribe_url", "preferences_url", "token", "message_id"])
        with session_scope(settings) as s:
            for d, name in s.execute(
                select(Delivery, Contact.name)
                .join(Contact, Contact.id == Delivery.contact_id)
                .where(Delivery.campaign_id == campaign_id)
            ):
                v = compiled.personal_values(
                    Recipient(d.contact_id or 0, d.email, name, d.list_id, d.message_id)
                )
                w.writerow(
                    [
                        d.email,
                        name,
                        v["unsubscribe_url"],
                        v["preferences_url"],
                        v["_unsubscribe_token"],
                        d.message_id,
                    ]
                )
    boundary = "=_mailmerge_bench"
    template = (
        "TO: {{ name }} <{{ email }}>\n"
        f"FROM: {settings.from_name} <{settings.from_address}>\n"
        f"SUBJECT: {rendered.subject}\n"
        "Message-ID: {{ message_id }}\n"
        "MIME-Version: 1.0\n"
        "Content-Language: en\n"
        f"List-Id: {sender.list_id_header}\n"
        "List-Unsubscribe: <{{ unsubscribe_url }}>, "
        f"<mailto:{settings.unsubscribe_address}?subject=unsubscribe%20{{{{ token }}}}>\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\n"
        f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n"
        + jinja_part(rendered.text, False)
        + f"\n--{boundary}\nContent-Type: text/html; charset=utf-8\n\n"
        + jinja_part(rendered.html, True)
        + f"\n--{boundary}--\n"
    )
    (job / "template.txt").write_text(template, encoding="utf-8")
    (job / "server.conf").write_text(
        f"[smtp_server]\nhost = 127.0.0.1\nport = {sink.port}\nsecurity = Never\nratelimit = 0\n",
        encoding="utf-8",
    )
    return job


def mailer_command(folder: Path, settings: Settings) -> list[str]:
    """`mailer send` on the sample release, as a user types it (config in mailer.toml)."""
    (folder / "mailer.toml").write_text(
        "\n".join(
            f'{k} = "{v}"'
            for k, v in {
                "database_url": settings.database_url,
                "transport": "smtp",
                "smtp_url": settings.smtp_url,
                "secret_key": settings.secret_key,
                "from_address": settings.from_address,
                "from_name": settings.from_name,
                "base_url": settings.base_url,
                "postal_address": settings.postal_address,
                "organisation_name": settings.organisation_name,
            }.items()
        )
        + f"\nconcurrency = {settings.concurrency}\n",
        encoding="utf-8",
    )
    release_dir = folder / "release"
    release_dir.mkdir(exist_ok=True)
    samples = ROOT / "mailer" / "samples"
    for f in samples.glob("election-night.*.md"):
        shutil.copy(f, release_dir / f.name)
    return [
        sys.executable,
        "-m",
        "mailer",
        "--config",
        str(folder / "mailer.toml"),
        "send",
        str(release_dir / "election-night.en.md"),
        "--list",
        "bench",
        "--yes",
    ]


def timed_command(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


def versus_mailmerge(
    sink: SinkProcess, folder: Path, n: int, runs: int, connections: int, venv: Path
) -> dict[str, Any]:
    exe = mailmerge_bin(venv)
    # Both commands run as installed programs do: byte-compiled (pip compiles at install; this
    # tree is an editable install, and PYTHONDONTWRITEBYTECODE, set on some machines, would
    # make every `mailer send` compile mailer's sources again).
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "mailer")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    ours, theirs = [], []
    for _ in range(runs):
        settings, campaign_id = fresh_campaign(folder, sink, n, 0.0, concurrency=connections)
        job = mailmerge_job(folder, settings, campaign_id, sink)
        sink.reset()
        theirs.append(
            timed_command(
                [
                    str(exe),
                    "--no-dry-run",
                    "--no-limit",
                    "--output-format",
                    "text",
                    "--template",
                    "template.txt",
                    "--database",
                    "database.csv",
                    "--config",
                    "server.conf",
                ],
                job,
            )
        )
        check_sink(sink, n, "mailmerge")
        # The same recipients, planned by the command itself: start from an empty ledger.
        settings = fresh_database(folder, sink, n, 0.0, concurrency=connections)
        ours.append(timed_command(mailer_command(folder, settings), folder))
        check_sink(sink, n, "mailer send")
    return {
        "recipients": n,
        "mailer_send_s": median(ours),
        "mailmerge_s": median(theirs),
        "mailer_per_s": n / median(ours),
        "mailmerge_per_s": n / median(theirs),
        "ratio": median([t / o for t, o in zip(theirs, ours, strict=True)]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--group", type=int, default=None, help="ledger_group_size (default: the shipped setting)"
    )
    parser.add_argument(
        "--mailmerge",
        type=int,
        default=1000,
        help="recipients of the mailmerge comparison (0: skip it)",
    )
    parser.add_argument("--mailmerge-venv", type=Path, default=Path("/tmp/mailmerge-venv"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp, SinkProcess() as sink:
        folder = Path(tmp)
        if args.recipients:
            results["delivery"] = delivery(
                sink, folder, args.recipients, args.runs, args.connections, args.group
            )
        if args.mailmerge:
            results["mailmerge"] = versus_mailmerge(
                sink, folder, args.mailmerge, args.runs, args.connections, args.mailmerge_venv
            )
    results["load"] = load_note()
    if args.json:
        print(json.dumps(results))
        return 0
    rows = []
    if "delivery" in results:
        d = results["delivery"]
        rows.append(
            [
                f"{d['recipients']:,} recipients, {d['connections']} connections "
                f"(group {d['ledger_group_size']})",
                f"{d['mailer_per_s']:,.0f}/s",
                f"smtplib {d['smtplib_per_s']:,.0f}/s",
                f"{d['ratio']:.2f}x",
            ]
        )
    if "mailmerge" in results:
        m = results["mailmerge"]
        rows.append(
            [
                f"{m['recipients']:,} recipients, `mailer send` vs `mailmerge`",
                f"{m['mailer_send_s']:.1f} s",
                f"mailmerge {m['mailmerge_s']:.1f} s",
                f"{m['ratio']:.1f}x",
            ]
        )
    print(f"delivery to a local sink, median of {args.runs} runs ({results['load']})")
    print(table(rows, ["job", "mailer", "baseline", "ratio"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
