"""Every message mailer writes scores at most 1.0 in SpamAssassin (local rules only).

The demo's messages, and those of a release with an image, a table and long Korean text (its
campaign and its test sends), are written to the outbox by the real commands, then scored in
one `spamassassin -L -t --mbox` run (one start-up: each costs seconds). Skipped with the reason
when SpamAssassin is not installed (Debian: spamassassin)."""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1.0

KOREAN_BODY = "\n\n".join(
    [
        "한울 커뮤니티 센터는 올해 지역 선거에서 한인 유권자의 투표 참여를 돕기 위해 "
        "자원봉사자 삼백 명과 함께 전화와 문자, 가정 방문으로 유권자를 만났습니다. "
        "투표소 안내와 통역 지원, 교통편 제공까지 모든 활동은 무료로 진행되었습니다."
    ]
    * 8
    + [
        "| 지역 | 전화 | 문자 |\n|---|---|---|\n| 몽고메리 | 92,000 | 41,000 |\n"
        "| 벅스 | 12,500 | 6,200 |",
        "자세한 내용은 [한울 웹사이트](https://hanul.example.org/vote)에서 볼 수 있습니다.",
    ]
)
RELEASE = f"""---
title: "한인 유권자 투표율 역대 최고: 자원봉사자 삼백 명이 함께했습니다"
subtitle: "몽고메리 카운티 전역에서 전화 9만 2천 통, 문자 4만 1천 건"
date: 2024-11-06
dateline: 펜실베이니아주 노스웨일스
lists: [press]
image: {{url: "https://hanul.example.org/images/volunteers.jpg", alt: "투표소 앞의 자원봉사자들"}}
contact:
  name: 서민지
  role: 홍보 담당
  email: press@hanul.example.org
---

{KOREAN_BODY}
"""


def _mailer(folder: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILER_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _scores(messages: list[Path], tmp_path: Path) -> list[tuple[str, float, str]]:
    """(file, score, rules) of each message, from one SpamAssassin run over an mbox."""
    box_path = tmp_path / "all.mbox"
    box = mailbox.mbox(box_path)
    for path in messages:
        box.add(mailbox.mboxMessage(path.read_bytes()))
    box.flush()
    box.close()
    proc = subprocess.run(
        ["spamassassin", "-L", "-t", "--mbox"],
        stdin=box_path.open("rb"),
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr.decode(errors="replace")
    out = proc.stdout.decode("utf-8", errors="replace")
    found = re.findall(
        r"^X-Spam-Status: \w+, score=(-?[0-9.]+) .*?tests=(.*?)autolearn", out, re.M | re.S
    )
    assert len(found) == len(messages), out[-3000:]
    return [
        (path.name, float(score), " ".join(rules.split()))
        for path, (score, rules) in zip(messages, found, strict=True)
    ]


@pytest.fixture
def spamassassin() -> None:
    if shutil.which("spamassassin") is None:
        pytest.skip("SpamAssassin is not installed (Debian package: spamassassin)")


def test_every_demo_and_release_message_scores_at_most_one(
    spamassassin: None, tmp_path: Path
) -> None:
    _mailer(tmp_path, "demo", "--dir", "demo")
    folder = tmp_path / "demo"
    outbox = folder / "outbox" / "new"
    demo_messages = sorted(outbox.iterdir())
    assert demo_messages, "the demo wrote no message"
    (folder / "releases" / "turnout.ko.md").write_text(RELEASE, encoding="utf-8")
    release = str(folder / "releases" / "turnout.ko.md")
    _mailer(folder, "send", release, "--test", "desk@hanul.example.org")
    _mailer(folder, "send", release, "--list", "press", "--yes")
    messages = sorted(outbox.iterdir())
    assert len(messages) > len(demo_messages) + 1
    subjects = [p.read_bytes().split(b"\n\n", 1)[0] for p in messages]
    assert any(b"Feedback-ID:" in head for head in subjects)
    scored = _scores(messages, tmp_path)
    over = [s for s in scored if s[1] > LIMIT]
    assert not over, "\n".join(f"{name}: {score} ({rules})" for name, score, rules in over)
