"""Running `mailer` in-process against the test's mailer.toml: the Cli helper and `cli` fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailer.cli import main
from mailer.config import Settings


class Cli:
    """Runs `mailer` in-process against the test's mailer.toml."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, expect: int | None = 0) -> Result:
        result = self.runner.invoke(
            main, ["--config", str(self.config), *args], input=input, catch_exceptions=True
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result


@pytest.fixture
def cli(settings: Settings, tmp_path: Path) -> Cli:
    return Cli(tmp_path / "mailer.toml")
