"""Outside review of release front matter, on cases the issue 12 tests did not cover: YAML that
is not an alias bomb but still hangs PyYAML's scanner, blows its composer's recursion, or makes
a number Python refuses to read. Each is a clear error naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.cli import main
from mailer.errors import ReleaseError
from mailer.releases.source import load_release

DEEP_FLOW = "summary: " + "[" * 20000 + "]" * 20000 + "\n"  # minutes in PyYAML's scanner
DEEP_BLOCK = "summary:\n" + "".join(" " * i + "-\n" for i in range(350))  # deep block nesting
BIG_NUMBER = "date: " + "9" * 5000 + "\n"  # ValueError: over 4300 digits
HUGE = "summary: " + "x" * (200 * 1024) + "\n"


@pytest.mark.parametrize(
    ("front", "message"),
    [
        (DEEP_FLOW, r"big\.md:3: the front matter nests values more than 16 deep"),
        (DEEP_BLOCK, r"big\.md:\d+: the front matter nests values more than 16 deep"),
        (BIG_NUMBER, r"big\.md: bad value in the front matter: .*4300"),
        (HUGE, r"big\.md:2: the front matter is 200 KB long; at most 64 KB"),
    ],
)
def test_hostile_front_matter_is_a_clear_error(tmp_path: Path, front: str, message: str) -> None:
    path = tmp_path / "big.md"
    path.write_text(f"---\ntitle: Big\n{front}---\nBody.\n", encoding="utf-8")
    with pytest.raises(ReleaseError, match=message):
        load_release(path)
    result = CliRunner().invoke(main, ["release", "check", str(path)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not isinstance(result.exception, (RecursionError, ValueError)), result.exception


def test_ordinary_nesting_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.md"
    path.write_text("---\ntitle: Fine\nlists: [press]\n---\nBody.\n", encoding="utf-8")
    assert load_release(path).slug == "ok"
