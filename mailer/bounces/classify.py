"""`bounces classify`: what each message says, per recipient, without a database.

Reads message files, folders (every file in them), mbox files and maildirs. The verdicts are
the parser's (parse.parse, whose kinds come from reasons.judge), so `bounces process` acts on
exactly what this shows; `suppress` is what the message calls for before `process` checks that
the report is about a message we sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailer.bounces import parse as bounce_parse
from mailer.bounces.reasons import AUTOREPLY, UNSUBSCRIBE, suppresses
from mailer.bounces.sources import MailboxError, MaildirSource, MboxSource
from mailer.errors import MailerError

UNPARSEABLE = "unparseable"
# Reports in a layout of their own (not RFC 3464) are still delivery reports: `form` says dsn,
# the note says how it was read.
_FORMS = {"bounce": "dsn"}


class ClassifyError(MailerError):
    """A path given to `bounces classify` cannot be read."""


@dataclass
class Verdict:
    address: str | None
    kind: str
    suppress: bool
    status: str | None
    why: str


@dataclass
class MessageVerdict:
    file: str
    form: str
    recipients: list[Verdict] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "form": self.form,
            "recipients": [vars(r).copy() for r in self.recipients],
            "note": self.note,
        }


def classify_bytes(raw: bytes, name: str) -> MessageVerdict:
    """One message's verdict; never raises (garbage is `unparseable`, with the reason)."""
    try:
        report = bounce_parse.parse(raw)
    except bounce_parse.Unparseable as err:
        return MessageVerdict(name, UNPARSEABLE, note=str(err))
    except Exception as err:  # the email package on hostile input: a verdict, not a traceback
        return MessageVerdict(name, UNPARSEABLE, note=f"{type(err).__name__}: {err}")
    return verdict(report, name)


def verdict(report: bounce_parse.Report, name: str) -> MessageVerdict:
    """A parsed report as `classify` shows it."""
    out = MessageVerdict(name, _FORMS.get(report.form, report.form), note=report.note)
    if report.form == "bounce":
        out.note = "; ".join(
            x for x in ("a bounce without an RFC 3464 part: read from its text", report.note) if x
        )
    if report.form == AUTOREPLY:
        out.recipients.append(
            Verdict(
                report.sender,
                AUTOREPLY,
                False,
                None,
                "an auto-reply or vacation notice: never a bounce",
            )
        )
    elif report.form == UNSUBSCRIBE:
        how = "with a token" if report.tokens else "without a token (its sender's own request)"
        out.recipients.append(
            Verdict(
                report.sender,
                UNSUBSCRIBE,
                False,
                None,
                f"an unsubscribe request {how}: `process` unsubscribes once it checks the token or "
                "the sender",
            )
        )
    for r in report.recipients:
        # A complaint's Original-Rcpt-To names the complainant; a DSN's Final-Recipient is
        # where the message failed.
        address = (r.original or r.final) if report.form == "arf" else r.address
        out.recipients.append(Verdict(address, r.kind, suppresses(r.kind), r.status, r.why))
    return out


def messages(paths: Iterable[str]) -> Iterator[tuple[str, bytes | None, str]]:
    """(name, bytes or None, problem) for every message under `paths`, in a stable order."""
    for spec in paths:
        path = Path(spec)
        if path.is_dir():
            if (path / "cur").is_dir() and (path / "new").is_dir():
                yield from _source(MaildirSource(path), f"{path}/")
                continue
            files = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and not any(x.startswith(".") for x in p.relative_to(path).parts)
            )
            for file in files:
                yield from _file(file)
        elif path.is_file():
            yield from _file(path)
        else:
            raise ClassifyError(f"{spec}: no such file or folder")


def _file(path: Path) -> Iterator[tuple[str, bytes | None, str]]:
    try:
        with path.open("rb") as handle:
            head = handle.read(5)
    except OSError as err:
        yield str(path), None, f"cannot read: {err.strerror}"
        return
    if head == b"From ":
        found = list(_source(MboxSource(path), f"{path}:"))
        if len(found) == 1:  # one message saved with its envelope line: name it by its file
            found = [(str(path), found[0][1], found[0][2])]
        yield from found
        return
    try:
        yield str(path), path.read_bytes(), ""
    except OSError as err:
        yield str(path), None, f"cannot read: {err.strerror}"


def _source(
    source: MboxSource | MaildirSource, prefix: str
) -> Iterator[tuple[str, bytes | None, str]]:
    try:
        for message in source.messages():
            yield f"{prefix}{message.key}", message.raw, message.problem or ""
    except MailboxError as err:
        yield prefix.rstrip(":/"), None, str(err)


def classify_paths(paths: Iterable[str]) -> Iterator[MessageVerdict]:
    for name, raw, problem in messages(paths):
        if raw is None:
            yield MessageVerdict(name, UNPARSEABLE, note=problem)
        else:
            yield classify_bytes(raw, name)
