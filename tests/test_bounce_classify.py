"""`bounces classify`: the classifier on real mail from many servers, and the command.

The shared corpus (400 labelled real messages, see tests/bounce_corpus/labelled.py for where it
is looked for) is scored per recipient; labels the code deliberately disagrees with are named,
with the reason, in labelled.DISPUTED_SOFT and labelled.DISPUTED_HARD, and checked below to
still be disagreements (a list of excuses that cannot grow stale).
"""

from __future__ import annotations

import json
import mailbox
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailer.bounces.classify import MessageVerdict, classify_bytes
from mailer.cli import main
from tests.bounce_corpus import labelled, world
from tests.support.bounces import FLUFL_TEMPORARY, cut_in_copy

HERE = Path(__file__).parent
FORMS = {"dsn", "arf", "autoreply", "unsubscribe", "unrecognised", "unparseable"}
KINDS = {"hard", "soft", "block", "delayed", "complaint", "unsubscribe", "autoreply", "ignored"}

needs_corpus = pytest.mark.skipif(
    labelled.corpus_dir() is None,
    reason="the shared bounce corpus is not here: set MAILER_BOUNCE_CORPUS or put it at "
    "../shared/bounce-corpus beside the checkout (CI has it)",
)


@pytest.fixture(scope="module")
def scored() -> tuple[labelled.Score, dict[str, MessageVerdict]]:
    score, verdicts = labelled.score()
    return score, verdicts


@needs_corpus
def test_shared_corpus_meets_the_targets(
    scored: tuple[labelled.Score, dict[str, MessageVerdict]], capsys: pytest.CaptureFixture[str]
) -> None:
    score, _ = scored
    with capsys.disabled():
        print("\n" + "\n".join(score.lines()))
    undisputed_hard = score.hard - score.hard_disputed
    found = score.hard_found - score.hard_found_disputed
    # With only the justified disputes (labelled.DISPUTED_*) set aside...
    assert found / undisputed_hard >= 0.95, score.missed
    assert len(score.false_undisputed) / score.clean_undisputed <= 0.01, score.false_undisputed
    # ...and on the labels as they are: the targets hold without the disputes too.
    assert score.hard_found / score.hard >= 0.95, score.missed
    assert len(score.false_suppress) / score.clean <= 0.01, score.false_suppress
    assert len(labelled.DISPUTED_SOFT) + len(labelled.DISPUTED_HARD) <= 4
    assert score.complaints_found / score.complaints >= 0.9
    assert not score.unparseable, score.unparseable


@needs_corpus
def test_every_message_gets_a_verdict_in_the_documented_shape(
    scored: tuple[labelled.Score, dict[str, MessageVerdict]],
) -> None:
    _, verdicts = scored
    for name, v in verdicts.items():
        data = v.as_dict()
        assert data["form"] in FORMS, name
        for r in data["recipients"]:
            assert set(r) == {"address", "kind", "suppress", "status", "why"}, name
            assert r["kind"] in KINDS and r["why"], name
            assert r["suppress"] == (r["kind"] in ("hard", "complaint")), name


@needs_corpus
def test_disputed_labels_are_still_disagreements(
    scored: tuple[labelled.Score, dict[str, MessageVerdict]],
) -> None:
    """Each named dispute is a real, current disagreement; none hides a fixed or unknown file."""
    score, verdicts = scored
    _, labels = labelled.load()
    for name in labelled.DISPUTED_SOFT:
        assert name in labels
        classes = {e["class"] for e in labels[name]}
        if not classes & {"hard", "complaint"}:
            assert name in score.false_suppress, f"{name}: no longer disputed, remove it"
    for name in labelled.DISPUTED_HARD:
        hard = [e["address"].lower() for e in labels[name] if e["class"] == "hard"]
        suppressed = {(r.address or "").lower() for r in verdicts[name].recipients if r.suppress}
        assert hard and not set(hard) & suppressed, f"{name}: no longer disputed, remove it"


@needs_corpus
def test_messages_cut_off_in_their_copy_are_read_from_the_whole_parts() -> None:
    folder, labels = labelled.load()
    tried = same = 0
    changed: list[str] = []
    for name in sorted(labels):
        raw = (folder / "samples" / name).read_bytes()
        cut = cut_in_copy(raw)
        if cut is None:
            continue
        tried += 1
        whole, part = classify_bytes(raw, name), classify_bytes(cut, name)
        assert part.form != "unparseable" or whole.form == "unparseable", (name, part.note)
        if [(r.address, r.kind) for r in whole.recipients] == [
            (r.address, r.kind) for r in part.recipients
        ]:
            same += 1
        else:
            changed.append(name)
        # Never more suppression from less text (a complaint whose copy lost its To header
        # still complains, about an address the run finds by VERP or Message-ID).
        assert {r.address for r in part.recipients if r.suppress and r.address} <= {
            r.address for r in whole.recipients if r.suppress
        }, name
    assert tried >= 100
    assert same / tried >= 0.95, changed


def _flufl_temporary_files() -> Iterator[Path]:
    yield from sorted(FLUFL_TEMPORARY.glob("*.txt"))


def test_flufl_bounce_temporary_failures_are_never_hard() -> None:
    """flufl.bounce's own test messages for temporary failures (vendored, Apache-2.0)."""
    files = list(_flufl_temporary_files())
    assert len(files) == 11
    for path in files:
        v = classify_bytes(path.read_bytes(), path.name)
        assert v.recipients, path.name
        assert not any(r.suppress for r in v.recipients), (path.name, v.as_dict())
        assert all(r.kind in ("delayed", "soft") for r in v.recipients), (path.name, v.as_dict())


def test_project_corpus_kinds_are_what_process_records() -> None:
    """classify says, message by message, the kind `process` records (tests/bounce_corpus)."""
    for name, expected in world.EXPECTED["messages"].items():
        v = classify_bytes((HERE / "bounce_corpus" / name).read_bytes(), name)
        outcome = expected["outcome"]
        if outcome in KINDS - {"unsubscribe"}:
            assert outcome in {r.kind for r in v.recipients}, (name, v.as_dict())
        elif outcome == "unparseable":
            assert v.form == "unparseable", name
        if not expected["suppress"] or outcome not in KINDS:
            continue
        assert any(r.suppress for r in v.recipients) == (outcome in ("hard", "complaint")), name


# -- the command ---------------------------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The command in a folder without mailer.toml: classify needs no configuration."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MAILER_CONFIG", raising=False)
    yield CliRunner()


def corpus_file(name: str) -> bytes:
    return (HERE / "bounce_corpus" / name).read_bytes()


def test_cli_text_and_json_for_files_and_a_folder(run: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.eml").write_bytes(corpus_file("01-postfix-user-unknown.eml"))
    (folder / "sub" / "b.eml").write_bytes(corpus_file("06-gmail-spam-block.eml"))
    (folder / ".hidden").write_bytes(b"ignored")
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(corpus_file("25-garbage-binary.eml"))
    result = run.invoke(main, ["bounces", "classify", str(folder), str(garbage)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{folder / 'a.eml'}: dsn"
    assert re.match(r"  kim\.minji@news\.example\.kr +hard +suppress +5\.1\.1 +\S", lines[1])
    assert f"{folder / 'sub' / 'b.eml'}: dsn" in lines
    assert any(re.match(r"  han\.sora@gmail\.example +block +keep +5\.7\.1", x) for x in lines)
    assert any(x.startswith(f"{garbage}: unparseable (") for x in lines)
    assert lines[-1] == "3 message(s): 2 dsn, 1 unparseable; 1 recipient(s) to suppress"
    data = json.loads(
        run.invoke(main, ["bounces", "classify", "--json", str(folder), str(garbage)]).output
    )
    assert [d["file"] for d in data] == [
        str(folder / "a.eml"),
        str(folder / "sub" / "b.eml"),
        str(garbage),
    ]
    assert data[0]["form"] == "dsn" and data[2]["form"] == "unparseable" and data[2]["note"]
    [hard] = data[0]["recipients"]
    assert set(hard) == {"address", "kind", "suppress", "status", "why"}
    assert (hard["address"], hard["kind"], hard["suppress"], hard["status"]) == (
        "kim.minji@news.example.kr",
        "hard",
        True,
        "5.1.1",
    )
    assert data[2]["recipients"] == []


def test_cli_mbox_and_maildir(run: CliRunner, tmp_path: Path) -> None:
    mbox = world.write_mbox(
        tmp_path / "b.mbox",
        [
            corpus_file("09-arf-aol-abuse.eml"),
            corpus_file("07-postfix-delayed.eml"),
            corpus_file("11-vacation-korean.eml"),
        ],
    )
    data = json.loads(run.invoke(main, ["bounces", "classify", "--json", str(mbox)]).output)
    assert [d["file"] for d in data] == [
        f"{mbox}:1 (line 1)",
        f"{mbox}:2 (line {_line(mbox, 2)})",
        f"{mbox}:3 (line {_line(mbox, 3)})",
    ]
    assert [d["form"] for d in data] == ["arf", "dsn", "autoreply"]
    assert [(r["kind"], r["suppress"]) for r in data[0]["recipients"]] == [("complaint", True)]
    assert data[0]["recipients"][0]["address"] == "lim.taeyang@aol.example"
    assert [r["kind"] for r in data[1]["recipients"]] == ["delayed"]
    assert data[2]["recipients"][0]["address"] == "oh.jinwoo@mail.example.kr"
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    box.add(corpus_file("17-qmail-no-mailbox.eml"))
    box.add(corpus_file("26-garbage-not-mail.eml"))
    out = run.invoke(main, ["bounces", "classify", str(tmp_path / "Maildir")])
    assert out.exit_code == 0, out.output
    assert "ryu.jin@old.example.org" in out.output and "hard" in out.output
    assert (
        out.output.splitlines()[-1]
        == "2 message(s): 1 dsn, 1 unparseable; 1 recipient(s) to suppress"
    )
    assert len(box) == 2


def _line(mbox: Path, n: int) -> int:
    starts = [
        i + 1 for i, line in enumerate(mbox.read_bytes().splitlines()) if line.startswith(b"From ")
    ]
    return starts[n - 1]


def test_cli_missing_path_is_a_clear_error(run: CliRunner, tmp_path: Path) -> None:
    result = run.invoke(main, ["bounces", "classify", str(tmp_path / "nope.eml")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope.eml'}: no such file or folder" in result.output
    assert "Traceback" not in result.output
    assert run.invoke(main, ["bounces", "classify"]).exit_code == 2  # PATH is required
