"""The mailer.toml every CLI test writes: the organisation's settings plus the test's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONFIG_EXTRA = {
    "secret_key": "test-secret-key-not-for-production",
    "organisation_name": "Hanul Community Center",
    "postal_address": "100 Main Street, North Wales, PA 19454, USA",
    "from_address": "press@hanul.example.org",
    "from_name": "Hanul Community Center",
    "base_url": "https://news.hanul.example.org",
    "website": "https://hanul.example.org",
}


def write_config(folder: Path, values: dict[str, Any]) -> Path:
    merged = {**CONFIG_EXTRA, **values}
    lines = []
    for key, value in merged.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, int | float):
            lines.append(f"{key} = {value}")
        elif isinstance(value, dict):
            inner = ", ".join(f'{k} = "{v}"' for k, v in value.items())
            lines.append(f"{key} = {{{inner}}}")
        else:
            lines.append(f'{key} = "{value}"')
    path = folder / "mailer.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
