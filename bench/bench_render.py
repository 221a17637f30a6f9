"""Render + inline time per language variant of the sample release, and what a recipient costs.

    python bench/bench_render.py [--runs 9] [--recipients 10000]

For each variant: the median time of render_variant (Markdown, layouts, premailer: done once per
variant per campaign), the Markdown alone as the baseline, and the per-recipient fill (the only
per-recipient work), with the ratios between them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from mailer.config import Settings
from mailer.releases.markdown import body_html
from mailer.releases.render import layout_environment, render_variant, sample_values
from mailer.releases.source import load_release
from mailer.samples import SAMPLE_ORGANISATION, sample_path


def median_seconds(func: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--recipients", type=int, default=10_000)
    args = parser.parse_args(argv)
    settings = Settings(
        **SAMPLE_ORGANISATION, base_url="https://news.hanul.example.org", secret_key="bench"
    )
    release = load_release(sample_path())
    layout_environment.cache_clear()
    start = time.perf_counter()
    render_variant(release, release.default_language, settings)
    cold = time.perf_counter() - start
    print(
        f"sample release {release.slug!r}, {args.runs} runs each, median; "
        f"first render (templates compiled) {cold * 1000:.1f} ms"
    )
    print(
        f"{'variant':<8}{'markdown':>11}{'render+inline':>15}{'x markdown':>12}"
        f"{'fill/recipient':>16}{'render/fill':>13}{'HTML KB':>9}"
    )
    for lang in release.languages:
        variant = release.variants[lang]
        md = median_seconds(lambda v=variant: body_html(v), args.runs)
        full = median_seconds(lambda lang=lang: render_variant(release, lang, settings), args.runs)
        rendered = render_variant(release, lang, settings)
        values = sample_values(settings, lang)
        n = args.recipients
        start = time.perf_counter()
        for _ in range(n):
            rendered.html.fill(values)
            rendered.text.fill(values)
        fill = (time.perf_counter() - start) / n
        size = len(rendered.html.fill(values).encode("utf-8")) / 1024
        print(
            f"{lang:<8}{md * 1000:>9.2f}ms{full * 1000:>13.1f}ms{full / md:>11.0f}x"
            f"{fill * 1e6:>14.1f}us{full / fill:>12.0f}x{size:>9.1f}"
        )
    total = sum(
        median_seconds(lambda lang=lang: render_variant(release, lang, settings), 3)
        for lang in release.languages
    )
    print(
        f"a campaign to {args.recipients} recipients inlines {len(release.languages)} times "
        f"({total * 1000:.0f} ms); inlining per recipient would take about "
        f"{total / len(release.languages) * args.recipients:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
