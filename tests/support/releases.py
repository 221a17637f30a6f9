"""Helpers shared by the release tests: organisation settings, release files, an offline CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mailer.config import Settings, load_settings
from mailer.samples import SAMPLE_ORGANISATION
from tests.support.cli import Cli
from tests.support.config import write_config

BASE_URL = "https://news.hanul.example.org"


def org_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of the sample organisation, with templates/ looked up in tmp_path."""
    values: dict[str, Any] = {
        **SAMPLE_ORGANISATION,
        "base_url": BASE_URL,
        "from_address": "press@hanul.example.org",
        "secret_key": "test-secret",
        "base_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'mailer.db'}",
    }
    values.update(overrides)
    return Settings(**values)


def write_release(folder: Path, filename: str, front: str, body: str = "Body text.\n") -> Path:
    """Write a release file: `front` is the YAML between the --- lines."""
    path = folder / filename
    path.write_text(f"---\n{front.strip()}\n---\n{body}", encoding="utf-8")
    return path


def offline_cli(tmp_path: Path, **values: Any) -> Cli:
    """`mailer` on a mailer.toml with the sample organisation and an SQLite file."""
    merged: dict[str, Any] = {k: v for k, v in SAMPLE_ORGANISATION.items()}
    merged.update({"base_url": BASE_URL, "database_url": f"sqlite:///{tmp_path / 'mailer.db'}"})
    merged.update(values)
    write_config(tmp_path, merged)
    load_settings(tmp_path / "mailer.toml", env={})  # fail here, not in the command
    return Cli(tmp_path / "mailer.toml")
