"""Sample content shipped with the package: the bilingual demo release and its organisation."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

SAMPLE_RELEASE = "election-night"

# The fictional organisation the sample release speaks for: settings for mailer.toml.
SAMPLE_ORGANISATION: dict[str, Any] = {
    "organisation_name": "Hanul Community Center",
    "from_name": "Hanul Community Center",
    "postal_address": "100 Main Street, Suite 2, North Wales, PA 19454, USA",
    "website": "https://hanul.example.org",
    "social": {
        "Facebook": "https://www.facebook.com/hanul.example",
        "Instagram": "https://www.instagram.com/hanul.example",
        "YouTube": "https://www.youtube.com/@hanul.example",
    },
    "about": {
        "en": (
            "Founded in 1998, Hanul Community Center organizes Korean and Asian American "
            "families in southeastern Pennsylvania for social, economic and racial justice. "
            "We run citizenship and language classes, a tenants' rights clinic and a "
            "year-round civic participation program. Learn more at "
            "[hanul.example.org](https://hanul.example.org)."
        ),
        "ko": (
            "1998년에 설립된 한울커뮤니티센터는 펜실베이니아주 남동부의 한인 및 아시아계 "
            "가정과 함께 사회적·경제적·인종적 정의를 위해 활동하는 비영리 단체입니다. "
            "시민권·영어 교실, 세입자 권리 상담, 연중 시민 참여 프로그램을 운영합니다. "
            "자세한 내용은 [hanul.example.org](https://hanul.example.org)에서 "
            "확인하실 수 있습니다."
        ),
    },
}


def sample_path(name: str = SAMPLE_RELEASE) -> Path:
    """The path of a shipped sample release (give it to load_release)."""
    return Path(str(importlib.resources.files("mailer.samples").joinpath(f"{name}.en.md")))
