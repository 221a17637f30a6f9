"""Classifying a large mailbox in worker processes (bounces/pool.py): the same items and the same
rows as one process, a pool only for more than one batch, and a worker that dies costs nothing."""

from __future__ import annotations

import email
import json
import multiprocessing
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from mailer import clock
from mailer.bounces import policy, pool
from mailer.bounces.mime import ReadMessage
from mailer.bounces.policy import process_mailbox
from mailer.bounces.sources import SourceMessage, open_source
from mailer.config import Settings
from tests.bounce_corpus import world
from tests.support.cli import Cli

# Messages that cannot be read, each in its own way: the worker must say what the parent says.
HOSTILE = [
    b"",
    b"no headers at all, only words\n",
    b"From: a@example.com\nSubject: cut\nContent-Type: multipart/report; "
    b'report-type=delivery-status; boundary="b"\n\n--b\nContent-Type: text/plain\n\nhalf',
    b"From: a@example.com\nContent-Type: multipart/mixed; boundary=x\n\n" + b"--x\n" * 300,
]
# The columns a run writes, but not the ids it makes (PostgreSQL's sequences are not rolled back).
TABLES = {
    "bounce": "source_message_id, email, kind, status_code, diagnostic, delivery_id, "
    "campaign_id, created_at",
    "bounce_review": "email, action, why, state, created_at",
    "suppression": "email, mailbox, reason, source, created_at",
    "event": "at, kind, contact_id, list_id, campaign_id, actor, data",
    "subscription": "contact_id, list_id, status, unsubscribed_at, unsubscribed_via",
}


def _messages(session: Session, settings: Settings) -> list[bytes]:
    """The corpus twice over (the second time, every report is a duplicate) and the hostile."""
    w = world.build(session)
    corpus = [raw for _, raw in world.corpus(session, settings, w.campaign.id)]
    return corpus + HOSTILE + corpus


def _run(session: Session, settings: Settings, mbox: Path, workers: int) -> dict[str, Any]:
    """One run in a transaction rolled back afterwards: its report and the rows it wrote."""
    undo = session.begin_nested()
    with clock.pinned(world.PROCESSED_AT), open_source(str(mbox)) as box:
        report = process_mailbox(session, settings, box, workers=workers).as_dict()
    rows = {
        table: [
            tuple(str(v) for v in row)
            for row in session.execute(text(f"SELECT {columns} FROM {table} ORDER BY id"))
        ]
        for table, columns in TABLES.items()
    }
    undo.rollback()
    for item in report["items"]:
        # The review's id, which a sequence gives.
        item["action"] = re.sub(r"^held for review \d+$", "held for review N", item["action"])
    return {"report": report, "rows": rows}


def test_workers_decide_exactly_what_one_process_decides(
    session: Session, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 7, so that 92 messages make 14 batches: classified by two worker processes,
    the report and every row written are those of the same run in one process."""
    monkeypatch.setattr(policy, "BATCH_SIZE", 7)
    mbox = world.write_mbox(tmp_path / "bounces.mbox", _messages(session, settings))
    alone = _run(session, settings, mbox, workers=1)
    shared = _run(session, settings, mbox, workers=2)
    assert shared == alone
    outcomes = {i["outcome"] for i in alone["report"]["items"]}
    assert {"hard", "complaint", "duplicate", "unparseable", "unsubscribe"} <= outcomes
    assert alone["report"]["messages"] == 92
    assert alone["rows"]["bounce"], "the run recorded nothing: the comparison proves nothing"


def _source(raws: list[bytes]) -> list[SourceMessage]:
    return [SourceMessage(str(n), raw) for n, raw in enumerate(raws, 1)] + [
        SourceMessage("unreadable", None, "the source could not read it")
    ]


def _expected(messages: list[SourceMessage]) -> list[tuple[str, pool.Parsed | None]]:
    return [(m.key, None if m.raw is None else pool.read(m.raw)) for m in messages]


def _corpus_raws() -> list[bytes]:
    return [p.read_bytes() for p in sorted(world.HERE.glob("*.eml"))] + HOSTILE


def test_a_pool_runs_only_for_more_than_one_batch() -> None:
    """Worker processes exist while a mailbox of several batches is read, never for one batch
    (a pool costs more to start than one batch costs to read)."""
    raws = _corpus_raws()
    messages = _source(raws)
    one = pool.classified(messages, len(messages), workers=2)
    got = []
    for batch in one:
        assert multiprocessing.active_children() == []
        got += [(m.key, parsed) for m, parsed in batch]
    assert got == _expected(messages)
    several = pool.classified(messages, 10, workers=2)
    got, seen_workers = [], 0
    for batch in several:
        seen_workers = max(seen_workers, len(multiprocessing.active_children()))
        got += [(m.key, parsed) for m, parsed in batch]
    assert seen_workers == 2
    assert got == _expected(messages)
    assert multiprocessing.active_children() == [], "the pool was not shut down"


def test_a_worker_that_dies_leaves_the_rest_to_the_parent() -> None:
    """Workers killed after the first batch (out of memory, say): the pool breaks, the parent
    reads what was left, and every message is classified exactly once, in order."""
    messages = _source(_corpus_raws() * 3)
    batches = pool.classified(messages, 10, workers=2)
    got = []
    for n, batch in enumerate(batches):
        if n == 0:
            for child in multiprocessing.active_children():
                os.kill(child.pid or 0, signal.SIGKILL)
        got += [(m.key, parsed) for m, parsed in batch]
    assert got == _expected(messages)
    assert multiprocessing.active_children() == []


def test_one_core_means_one_process() -> None:
    """default_workers counts the cores this process may run on: pinned to one, the mailbox is
    read in the process itself."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this system")
    cores = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cores)})
        assert pool.default_workers() == 1
        messages = _source(_corpus_raws())
        for _ in pool.classified(messages, 10):
            assert multiprocessing.active_children() == []
    finally:
        os.sched_setaffinity(0, cores)
    assert 1 <= pool.default_workers() <= min(len(cores), pool.MAX_WORKERS)


def test_the_workers_option_changes_where_not_what(
    session: Session, settings: Settings, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bounces process --workers N`: one process or two, the same report (a dry run, so both
    runs see the same database); a count that is no count is refused before anything is read."""
    monkeypatch.setattr(policy, "BATCH_SIZE", 7)
    mbox = world.write_mbox(tmp_path / "bounces.mbox", _messages(session, settings))
    session.commit()
    reports = []
    for workers in ("1", "2"):
        with clock.pinned(world.PROCESSED_AT):
            out = cli("bounces", "process", str(mbox), "--dry-run", "--json", "--workers", workers)
        report = json.loads(out.stdout)
        for item in report["items"]:
            # A held report's id: PostgreSQL's sequences move on although the dry run rolls back.
            item["action"] = re.sub(r"^held for review \d+$", "held for review N", item["action"])
        reports.append(report)
    assert reports[0] == reports[1]
    assert reports[0]["messages"] == 92
    refused = cli("bounces", "process", str(mbox), "--workers", "0", expect=2)
    assert "--workers" in refused.output and "0" in refused.output


def test_indexed_headers_answer_as_the_stdlib_message_does() -> None:
    """mime.ReadMessage keeps its answers; over every corpus message and part, each answer is
    the one a plain compat32 Message gives (headers present, absent and repeated, parameters,
    content types, default types of digest parts)."""
    names = ("content-type", "CONTENT-TYPE", "from", "to", "x-missing", "received", "subject")
    checked = 0
    for raw in _corpus_raws()[: -len(HOSTILE)]:
        fast = email.message_from_bytes(raw, _class=ReadMessage)
        plain = email.message_from_bytes(raw)
        for mine, theirs in zip(fast.walk(), plain.walk(), strict=True):
            for name in names:
                assert mine.get(name) == theirs.get(name)
                assert mine.get(name, "none") == theirs.get(name, "none")
            assert mine.get_content_type() == theirs.get_content_type()
            assert mine.get_params() == theirs.get_params()
            assert mine.get_param("boundary") == theirs.get_param("boundary")
            assert mine.get_param("charset", header="content-type") == theirs.get_param(
                "charset", header="content-type"
            )
            checked += 1
    assert checked > 100
    # An answer is not kept past a change to the headers.
    msg = email.message_from_string("Subject: one\n\nbody\n", _class=ReadMessage)
    assert msg.get("subject") == "one" and msg.get("x-new") is None
    msg["X-New"] = "two"
    assert msg.get("x-new") == "two"
