"""`mailer demo`: the whole job in a new folder, on SQLite and the outbox; nothing leaves."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mailer.config import load_settings
from mailer.contacts.lists import create_list
from mailer.delivery.campaigns import status_counts
from mailer.errors import MailerError
from mailer.imports.importer import import_contacts
from mailer.store.db import session_scope
from mailer.store.folder import init

DEMO_SETTINGS = {
    "organisation_name": "Hanul Community Center",
    "from_name": "Hanul Community Center",
    "from_address": "press@hanul.example.org",
    "reply_to": "media@hanul.example.org",
    "postal_address": "412 Welsh Road, North Wales, PA 19454, USA",
    "website": "https://hanul.example.org",
    "base_url": "https://news.hanul.example.org",
}
DEMO_ABOUT = {
    "en": "Founded in 1994, Hanul Community Center organizes Korean and Asian Americans in "
    "southeastern Pennsylvania for social, economic and racial justice.",
    "ko": "1994년에 설립된 한울 커뮤니티 센터는 펜실베이니아 남동부의 한인 및 아시아계 "
    "미국인이 사회적·경제적·인종적 정의를 이루도록 함께 조직하는 비영리 단체입니다.",
}
DEMO_SOCIAL = {
    "Facebook": "https://facebook.com/hanul.example",
    "Instagram": "https://instagram.com/hanul.example",
}


@dataclass(frozen=True)
class DemoResult:
    folder: Path
    config: Path
    imported: dict[str, int]
    campaign_id: int
    counts: dict[str, int]
    outbox: Path
    release: Path


def sample_release_files() -> list[Path]:
    folder = resources.files("mailer.samples")
    return [Path(str(folder / name)) for name in ("election-night.en.md", "election-night.ko.md")]


def sample_list() -> Path:
    return Path(str(resources.files("mailer.sample_lists") / "sample-press.csv"))


def _toml(key: str, value: object) -> str:
    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(k)} = {json.dumps(v, ensure_ascii=False)}" for k, v in value.items()
        )
        return f"{key} = {{{inner}}}"
    return f"{key} = {json.dumps(value, ensure_ascii=False)}"


def run_demo(folder: Path) -> DemoResult:
    """Init a folder, import the sample press list, send the sample release to the outbox."""
    # The send use-case loads the whole delivery stack: only `mailer demo` needs it here.
    from mailer.delivery.send import send_release  # noqa: PLC0415

    config = folder / "mailer.toml"
    if config.exists():
        raise MailerError(f"{folder} already holds a mailer.toml; choose a new folder with --dir")
    extra = (
        "\n# Settings of the demo organisation (fictional).\n"
        + "\n".join(
            [_toml(k, v) for k, v in DEMO_SETTINGS.items()]
            + [_toml("about", DEMO_ABOUT), _toml("social", DEMO_SOCIAL)]
        )
        + "\n"
    )
    init(config, extra=extra)
    settings = load_settings(config, env={})
    releases = folder / "releases"
    releases.mkdir(exist_ok=True)
    for source in sample_release_files():
        shutil.copy(source, releases / source.name)
    csv_copy = folder / "sample-press.csv"
    shutil.copy(sample_list(), csv_copy)
    with session_scope(settings) as s:
        # The sample release is bilingual: the Korean readers' footer names the list in Korean.
        create_list(
            s,
            "press",
            "Press",
            "Reporters and editors who cover our community",
            names={"ko": "보도자료"},
        )
        report = import_contacts(
            s, csv_copy, "press", consent_source="demo: sample press list shipped with mailer"
        )
    release_path = releases / "election-night.en.md"
    # Nobody to ask: the demo's audience is the sample list it just imported, sent to the outbox.
    outcome = send_release(
        settings, release_path, ["press"], confirm=lambda plan: True, created_by="demo"
    )
    if outcome.plan is None or outcome.result is None:
        raise MailerError(f"the demo campaign was not sent ({outcome.status})")
    campaign_id = outcome.plan.campaign.id
    with session_scope(settings) as s:
        counts = status_counts(s, campaign_id)
    if not outcome.result.complete:
        raise MailerError(f"the demo campaign did not finish: {counts}")
    return DemoResult(
        folder, config, dict(report.counts), campaign_id, counts, settings.outbox_dir, release_path
    )
