"""The README's first command: the demo, end to end, checked from the outbox."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mailer.cli import main

ROOT = Path(__file__).parents[1]


def test_demo_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILER_CONFIG", None)
    run = subprocess.run(
        [sys.executable, "-m", "mailer", "demo", "--dir", str(folder)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "12 messages" in run.stdout
    sample = (ROOT / "lists" / "sample-press.csv").read_text(encoding="utf-8").splitlines()[1:]
    expected = {line.split(",")[0].lower(): line.split(",")[3] for line in sample}
    box = mailbox.Maildir(folder / "outbox", create=False)
    messages = list(box)
    # Exactly one message per sample recipient, each in that recipient's language.
    delivered = [m["Delivered-To"] for m in messages]
    assert sorted(delivered) == sorted(expected)
    for m in messages:
        assert m["Content-Language"] == expected[m["Delivered-To"]]
        for header in (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
            "MIME-Version",
        ):
            assert m[header], header
    result = CliRunner().invoke(
        main, ["--config", str(folder / "mailer.toml"), "campaigns", "show", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["status"] == "done"
    assert data["counts"]["sent"] == len(messages) == 12
    langs = {lang: c.get("sent", 0) for lang, c in data["by_language"].items()}
    assert langs == {
        "en": list(expected.values()).count("en"),
        "ko": list(expected.values()).count("ko"),
    }
    again = subprocess.run(
        [sys.executable, "-m", "mailer", "demo", "--dir", str(folder)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 1 and "already holds a mailer.toml" in again.stderr
