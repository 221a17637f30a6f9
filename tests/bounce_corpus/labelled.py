"""The shared labelled corpus (real bounces from many mail systems): scoring `bounces classify`.

Used by tests/test_bounce_classify.py and bench/bench_bounce_classify.py. The corpus lives
outside the repository: MAILER_BOUNCE_CORPUS, else ../shared/bounce-corpus beside the checkout.
Figures are per recipient, as the labels are:
- hard recall: labelled `hard` recipients that are suppressed with the labelled address;
- false suppression: messages whose labels hold no `hard` or `complaint` that suppress anyone;
- complaints: labelled complaints found as complaints, with the address where the label has one.
DISPUTED names labels the classifier deliberately disagrees with, each with the reason; the
figures are given both against the labels as they are and with those labels set aside.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailer.bounces.classify import MessageVerdict, classify_bytes

ROOT = Path(__file__).resolve().parents[2]

# Labels the classifier deliberately disagrees with, each where the message's own text
# contradicts the label (not merely where the classifier misses). None say soft any more:
# sisimai's `filtered` ("550 User unknown" with no x.1.x code and no refusal at RCPT TO, or
# after DATA) is followed, not disputed.
DISPUTED_SOFT: dict[str, str] = {}
# Labels that say hard where the text says something else.
DISPUTED_HARD: dict[str, str] = {
    "lhost-exim-37.eml": "'neko.example.com does not exist' after end of DATA names the "
    "sender's domain (the returned message's Return-path), not the "
    "recipient's",
    "lhost-opensmtpd-12.eml": "the report says Action: delayed, Status 4.0.0 (subject "
    "'Delivery status notification: delayed'): a delay never "
    "suppresses",
    "lhost-yahoo-07.eml": "Yahoo's '550: <addr>: User unknown' for an ezweb.ne.jp address, no "
    "code, no stage: the same words for the same address are labelled "
    "filtered in lhost-yahoo-06",
    "rhost-aol-06.eml": "'Name service error ... Malformed or unexpected name server reply' "
    "(5.4.4) is a DNS failure: the same text is labelled networkerror "
    "(soft) in lhost-postfix-17",
}


def corpus_dir() -> Path | None:
    """The shared corpus folder, or None when it is not there."""
    given = os.environ.get("MAILER_BOUNCE_CORPUS")
    path = Path(given) if given else ROOT.parent / "shared" / "bounce-corpus"
    return path if (path / "labels.json").is_file() else None


@dataclass
class Score:
    hard: int = 0
    hard_found: int = 0
    hard_disputed: int = 0
    hard_found_disputed: int = 0
    clean: int = 0  # messages whose labels hold no hard or complaint
    false_suppress: list[str] = field(default_factory=list)
    complaints: int = 0
    complaints_found: int = 0
    missed: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")
    unparseable: list[str] = field(default_factory=list)

    @property
    def false_undisputed(self) -> list[str]:
        return [f for f in self.false_suppress if f not in DISPUTED_SOFT]

    @property
    def clean_undisputed(self) -> int:
        return self.clean - sum(1 for f in self.false_suppress if f in DISPUTED_SOFT)

    def lines(self) -> list[str]:
        def pct(a: int, b: int) -> str:
            return f"{a}/{b} = {a / b:.3f}" if b else f"{a}/0"

        undisputed = self.hard - self.hard_disputed
        return [
            f"hard bounces suppressed with the right address: {pct(self.hard_found, self.hard)}"
            f" (labels as they are); {pct(self.hard_found - self.hard_found_disputed, undisputed)}"
            f" with {self.hard_disputed} disputed labels set aside",
            f"messages without hard/complaint labels that suppress anyone: "
            f"{pct(len(self.false_suppress), self.clean)} (labels as they are); "
            f"{pct(len(self.false_undisputed), self.clean_undisputed)} with the disputed set "
            "aside",
            f"complaints found: {pct(self.complaints_found, self.complaints)}",
            f"slowest message: {self.slowest[0] * 1000:.1f} ms ({self.slowest[1]})",
            f"unparseable: {len(self.unparseable)} {self.unparseable}",
        ]


def load() -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    folder = corpus_dir()
    assert folder is not None
    return folder, json.loads((folder / "labels.json").read_text(encoding="utf-8"))


def score() -> tuple[Score, dict[str, MessageVerdict]]:
    """Classify every labelled message and score it."""
    folder, labels = load()
    out = Score()
    verdicts: dict[str, MessageVerdict] = {}
    for name, expected in sorted(labels.items()):
        raw = (folder / "samples" / name).read_bytes()
        start = time.perf_counter()
        got = classify_bytes(raw, name)
        took = time.perf_counter() - start
        out.slowest = max(out.slowest, (took, name))
        verdicts[name] = got
        if got.form == "unparseable":
            out.unparseable.append(name)
        suppressed = {(r.address or "").lower() for r in got.recipients if r.suppress}
        complaints = {(r.address or "").lower() for r in got.recipients if r.kind == "complaint"}
        classes = {e["class"] for e in expected}
        if not classes & {"hard", "complaint"}:
            out.clean += 1
            if suppressed:
                out.false_suppress.append(name)
        for e in expected:
            address = (e["address"] or "").lower()
            if e["class"] == "hard":
                out.hard += 1
                found = address in suppressed
                out.hard_found += found
                if name in DISPUTED_HARD:
                    out.hard_disputed += 1
                    out.hard_found_disputed += found
                elif not found:
                    out.missed.append(f"{name} {address}")
            elif e["class"] == "complaint":
                out.complaints += 1
                out.complaints_found += bool(complaints) and (not address or address in complaints)
    return out, verdicts
