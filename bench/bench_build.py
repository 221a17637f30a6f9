"""Message building: CompiledVariant.build against a straightforward EmailMessage build.

    python bench/bench_build.py [--recipients 5000] [--baseline-recipients 300] [--runs 5] [--json]

Both paths start from the same rendered (and CSS-inlined) variant of the sample release and the
same personal values (name, e-mail, signed unsubscribe and preferences links), so the only
difference measured is how the message is put together:
- compiled: delivery.message.CompiledVariant, prepared once per variant, `build()` per recipient;
- baseline: per recipient an email.message.EmailMessage, headers set one by one,
  set_content(text) + add_alternative(html), as_bytes() (tests/test_message_equivalence.py proves
  the two produce the same headers and decoded parts).
Figures: complete messages per second, median of --runs runs, wall clock; the CPU-time rate as
well, because other work on a shared machine slows the wall clock of both paths alike.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import (
    KO_NAMES,
    bench_settings,
    load_note,
    median,
    sample_release,
    table,
)
from mailer import clock
from mailer.contacts.addresses import smtp_form
from mailer.delivery.message import CompiledVariant, Recipient, Sender, sender_for

NAMES = {
    "en": ["Jane O'Neil", "José García", "Dr. Ann Smith, PhD", 'Jürgen "JJ" Müller'],
    "ko": KO_NAMES,
}


def straightforward_build(compiled: CompiledVariant, sender: Sender, r: Recipient) -> bytes:
    """The baseline: the message built per recipient with the email package, nothing reused."""
    values = compiled.personal_values(r)
    rendered = compiled.rendered
    msg = EmailMessage()
    msg["From"] = email.utils.formataddr((sender.from_name, sender.from_address))
    msg["To"] = email.utils.formataddr((r.name, smtp_form(r.email)[0]))
    msg["Subject"] = compiled.subject
    msg["Date"] = email.utils.format_datetime(clock.now())
    msg["Message-ID"] = r.message_id
    msg["List-Id"] = sender.list_id_header
    msg["List-Unsubscribe"] = (
        f"<{values['unsubscribe_url']}>, <mailto:{compiled.unsubscribe_address}"
        f"?subject=unsubscribe%20{values['_unsubscribe_token']}>"
    )
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    sender_id = compiled.settings.feedback_id_sender or sender.domain.split(".")[0]
    msg["Feedback-ID"] = f"{compiled.campaign_id or 'test'}:{sender.list_slug}:{sender_id}:mailer"
    if sender.reply_to:
        msg["Reply-To"] = sender.reply_to
    msg.set_content(rendered.text.fill(values))
    msg.add_alternative(rendered.html.fill(values), subtype="html")
    # After the parts: set_content and add_alternative move or drop Content-* headers.
    msg["Content-Language"] = rendered.language
    return msg.as_bytes()


def recipients(language: str, n: int) -> list[Recipient]:
    names = NAMES[language]
    return [
        Recipient(
            i,
            f"reader{i}@example.org",
            names[i % len(names)],
            1,
            f"<c1.r{i}.0123456789@hanul.example.org>",
        )
        for i in range(1, n + 1)
    ]


def rate(func: Any, people: list[Recipient]) -> tuple[float, float]:
    """(messages per wall-clock second, messages per CPU second) of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    for r in people:
        func(r)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return len(people) / wall, len(people) / max(cpu, 1e-9)


def measure(n: int, n_baseline: int, runs: int) -> dict[str, Any]:
    from mailer.releases.render import render_release

    settings = bench_settings("sqlite://", reply_to="desk@hanul.example.org")
    rendered = render_release(sample_release(), settings)
    sender = sender_for(settings, "Press 기자단", "press")
    results: dict[str, Any] = {}
    for language in sorted(rendered):
        compiled = CompiledVariant(rendered[language], sender, settings, campaign_id=1)
        people = recipients(language, n)
        few = people[:n_baseline]
        fast: list[tuple[float, float]] = []
        slow: list[tuple[float, float]] = []
        for _ in range(runs):  # interleaved, so a burst of load hits both paths
            fast.append(rate(compiled.build, people))
            slow.append(rate(lambda r, c=compiled: straightforward_build(c, sender, r), few))
        size = len(compiled.build(people[0]))
        results[language] = {
            "compiled_per_s": median([w for w, _ in fast]),
            "baseline_per_s": median([w for w, _ in slow]),
            "compiled_per_cpu_s": median([c for _, c in fast]),
            "baseline_per_cpu_s": median([c for _, c in slow]),
            "message_kb": size / 1024,
        }
        r = results[language]
        r["ratio"] = r["compiled_per_s"] / r["baseline_per_s"]
        r["ratio_cpu"] = r["compiled_per_cpu_s"] / r["baseline_per_cpu_s"]
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--baseline-recipients", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = measure(args.recipients, args.baseline_recipients, args.runs)
    if args.json:
        print(json.dumps({"build": results, "load": load_note()}))
        return 0
    rows = [
        [
            lang,
            f"{r['compiled_per_s']:,.0f}",
            f"{r['baseline_per_s']:,.0f}",
            f"{r['ratio']:.0f}x",
            f"{r['compiled_per_cpu_s']:,.0f}",
            f"{r['baseline_per_cpu_s']:,.0f}",
            f"{r['ratio_cpu']:.0f}x",
            f"{r['message_kb']:.1f}",
        ]
        for lang, r in results.items()
    ]
    print(f"message building, median of {args.runs} runs ({load_note()})")
    print(
        table(
            rows,
            [
                "variant",
                "compiled/s",
                "EmailMessage/s",
                "ratio",
                "compiled/cpu-s",
                "EmailMessage/cpu-s",
                "ratio",
                "KiB",
            ],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
