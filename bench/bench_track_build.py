"""The cost of click tracking on the build path: CompiledVariant.build with and without /l/.

    python bench/bench_track_build.py [--recipients 5000] [--runs 5] [--json]

The sample release (about ten links per language with the organisation's footer) compiled
three ways from the same rendered variant, measured interleaved so load hits all alike:
- plain: no tracking (what bench/bench_build.py measures);
- aggregate: links through /l/ naming nobody, written into the variant once (no cost per
  recipient beyond the longer body);
- per-person: one placeholder per link, filled per recipient with a token naming the reader
  (mailer.engagement.tokens: one keyed BLAKE2b per 7 links).
Figures: messages per CPU second (median of --runs), and each tracked way against plain.
No database: the tracked links' ids are given to the registry as if read from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_build import rate, recipients
from bench.support import bench_settings, load_note, median, sample_release, table
from mailer.delivery.message import CompiledVariant, sender_for
from mailer.engagement.links import LinkRegistry, find_urls


def measure(n: int, runs: int) -> dict[str, Any]:
    from mailer.releases.render import render_release

    settings = bench_settings("sqlite://", reply_to="desk@hanul.example.org")
    rendered = render_release(sample_release(), settings)
    sender = sender_for(settings, "Press 기자단", "press")
    results: dict[str, Any] = {}
    for language in sorted(rendered):
        variant = rendered[language]
        registry = LinkRegistry(settings, 1)
        urls = find_urls(variant, registry.skip)
        registry.rows[language] = {u: (100 + i, i) for i, u in enumerate(urls)}
        registry._opted_out = frozenset()
        ways: dict[str, CompiledVariant] = {
            "plain": CompiledVariant(variant, sender, settings, campaign_id=1)
        }
        for way, per_person in (("aggregate", False), ("per-person", True)):
            wrapped, tracking = registry.wrap(variant, per_person=per_person, opens=False)
            ways[way] = CompiledVariant(wrapped, sender, settings, campaign_id=1, tracking=tracking)
        people = recipients(language, n)
        rates: dict[str, list[float]] = {w: [] for w in ways}
        for _ in range(runs):
            for way, compiled in ways.items():
                rates[way].append(rate(compiled.build, people)[1])
        plain = median(rates["plain"])
        results[language] = {
            "links": len(urls),
            **{f"{w}_per_cpu_s": median(r) for w, r in rates.items()},
            **{f"{w}_vs_plain": median(rates[w]) / plain for w in ("aggregate", "per-person")},
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    results = measure(args.recipients, args.runs)
    if args.json:
        print(json.dumps({"track_build": results, "load": load_note()}))
        return 0
    rows = [
        [
            lang,
            str(r["links"]),
            f"{r['plain_per_cpu_s']:,.0f}",
            f"{r['aggregate_per_cpu_s']:,.0f}",
            f"{r['per-person_per_cpu_s']:,.0f}",
            f"{(r['aggregate_vs_plain'] - 1) * 100:+.1f}%",
            f"{(r['per-person_vs_plain'] - 1) * 100:+.1f}%",
        ]
        for lang, r in results.items()
    ]
    print(f"Message building with click tracking, median of {args.runs} runs ({load_note()})")
    header = ["variant", "links", "plain/cpu-s", "aggregate", "per-person", "agg.", "p.p."]
    print(table(rows, header))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
