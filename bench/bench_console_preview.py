"""The release editor's live preview: server time of one preview request for a 2,000-word
release in English and Korean (the target: a median of at most 300 ms).

    python bench/bench_console_preview.py [--words 2000] [--runs 20] [--json]

A draft is made through the library (mailer.releases.drafts) on a temporary SQLite database;
each run posts the editor's whole form, as htmx does after a pause in typing, to
/admin/releases/ID/preview through the Flask test client as a signed-in editor, with one word
of the Korean text changed each time (so nothing could be served from a cache). The figure is
the server's whole time for the request: the session check, the form rebuilt into both files,
both languages parsed, rendered and CSS-inlined (what `mailer release preview` runs) and the
fragment (mailer.releases.drafts.preview_html: `release preview`'s layouts, the CSS left in
their <style> block). Two baselines take turns with it: `preview_html` of both languages called
directly (what the request adds to the rendering) and `render.preview`, which also inlines the
CSS as a sent message is (premailer: what the preview leaves out to keep within the target).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.support import bench_settings, load_note, table

TARGET_MS = 300.0
EN_WORDS = [
    "the",
    "council",
    "voters",
    "turnout",
    "budget",
    "community",
    "center",
    "volunteers",
    "election",
    "county",
    "families",
    "language",
    "classes",
    "clinic",
    "program",
    "neighbours",
    "school",
    "health",
    "housing",
    "transit",
    "funding",
    "report",
]
KO_WORDS = [
    "의회",
    "유권자",
    "투표율",
    "예산",
    "지역",
    "센터",
    "자원봉사자",
    "선거",
    "카운티",
    "가족",
    "언어",
    "수업",
    "진료소",
    "프로그램",
    "이웃",
    "학교",
    "건강",
    "주거",
    "교통",
    "재원",
    "보고서",
]


def body(words: list[str], count: int, seed: int) -> str:
    """`count` words in paragraphs of about 80, with a heading and a list now and then."""
    rng = random.Random(seed)
    paragraphs, left = [], count
    while left > 0:
        n = min(left, 80)
        text = " ".join(rng.choice(words) for _ in range(n))
        paragraphs.append(text[:1].upper() + text[1:] + ".")
        if len(paragraphs) % 6 == 0:
            paragraphs.append(f"## {rng.choice(words).title()}")
            paragraphs.append("\n".join(f"- {rng.choice(words)}" for _ in range(4)))
        left -= n
    return "\n\n".join(paragraphs) + "\n"


def sources(words: int) -> dict[str, str]:
    en = (
        "---\ntitle: Record turnout in our neighbourhoods\ndateline: NORTH WALES, PA\n"
        "date: 2026-12-01\nsummary: What our volunteers did, and what comes next.\n"
        "contact:\n  name: Minji Seo\n  email: press@hanul.example.org\n---\n\n"
    )
    ko = (
        "---\ntitle: 우리 동네 투표율 기록\ndateline: 펜실베이니아 노스웨일스\n"
        "summary: 자원봉사자들이 한 일과 앞으로의 계획.\ncontact:\n  name: 서민지\n---\n\n"
    )
    return {"en": en + body(EN_WORDS, words, 1), "ko": ko + body(KO_WORDS, words, 2)}


def signed_in_client(settings: Any) -> Any:
    from mailer.staff import accounts
    from mailer.store.db import session_scope
    from mailer.web import create_app

    app = create_app(settings)
    password = "bench horse battery staple"
    with session_scope(settings) as s:
        _user, token = accounts.add(s, "editor@bench.example.org", "editor")
        accounts.accept_invitation(s, token, password)
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = "bench"
    page = client.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, "no sign-in form"
    answer = client.post(
        "/admin/login",
        data={"email": "editor@bench.example.org", "password": password, "csrf": csrf.group(1)},
    )
    assert answer.status_code == 303, answer.text
    return client


def measure(words: int, runs: int) -> dict[str, Any]:
    import lxml.html

    from mailer.releases import drafts, render
    from mailer.releases.source import release_from_sources
    from mailer.store.db import dispose_engines, session_scope

    texts = sources(words)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(f"sqlite:///{Path(tmp) / 'bench.db'}", base_dir=Path(tmp))
        client = signed_in_client(settings)
        with session_scope(settings) as s:
            draft_id = drafts.create_draft(s, settings, "turnout", texts, author="bench").id
        page = client.get(f"/admin/releases/{draft_id}")
        tree = lxml.html.fromstring(page.text)
        form = tree.get_element_by_id("rel-form")
        data: dict[str, str] = {}
        for el in form.xpath(".//input|.//textarea"):
            name, kind = el.get("name"), el.get("type")
            if not name or (kind in ("radio", "checkbox") and el.get("checked") is None):
                continue
            data[name] = (el.text or "") if el.tag == "textarea" else el.get("value", "")
        size = len("&".join(f"{k}={v}" for k, v in data.items()).encode("utf-8"))
        release = release_from_sources("turnout", texts, "en")
        headers = {"HX-Request": "true"}
        path = f"/admin/releases/{draft_id}/preview"

        def request(i: int) -> None:
            data["ko-body"] = data["ko-body"].replace("의회", f"의회{i % 10}", 1)
            answer = client.post(path, data=data, headers=headers)
            assert answer.status_code == 200 and answer.text.count("<iframe") == 2, answer.text

        def direct(_i: int) -> None:
            for lang in ("en", "ko"):
                drafts.preview_html(release, lang, settings)

        def inlined(_i: int) -> None:
            for lang in ("en", "ko"):
                render.preview(release, lang, settings)

        cases = {
            "preview request (both languages)": request,
            "baseline: drafts.preview_html x2": direct,
            "baseline: render.preview x2 (CSS inlined)": inlined,
        }
        for job in cases.values():  # warm-up: templates, premailer, compiled SQL
            job(0)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for i in range(1, runs + 1):
            for name, job in cases.items():  # taking turns: load hits both alike
                start = time.perf_counter()
                job(i)
                times[name].append((time.perf_counter() - start) * 1000)
        dispose_engines()
    return {
        "words": words,
        "form_bytes": size,
        "runs": runs,
        "results": {
            name: {"median": statistics.median(v), "max": max(v), "min": min(v)}
            for name, v in times.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=2000, help="words per language")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found = measure(args.words, args.runs)
    if args.json:
        print(json.dumps(found, indent=2))
        return
    rows = []
    for name, r in found["results"].items():
        flag = "" if r["median"] <= TARGET_MS or name.startswith("baseline") else " !"
        rows.append([name, f"{r['median']:.1f}{flag}", f"{r['min']:.1f}", f"{r['max']:.1f}"])
    print(
        f"a {found['words']:,}-word release in English and Korean (a form of "
        f"{found['form_bytes'] / 1024:.0f} KB), {found['runs']} runs after a warm-up; "
        f"target median <= {TARGET_MS:.0f} ms ('!' marks a case over it)"
    )
    print(table(rows, ["CASE (ms, server time)", "median", "min", "max"]))
    print(load_note())


if __name__ == "__main__":
    main()
