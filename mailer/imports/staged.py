"""Imports staged for the console: an uploaded file kept between the steps of an import (column
mapping, dry run, import), and the step running in the background with its progress.

Each upload gets a folder of its own, named by a random id, inside a private folder
(`base_dir/.mailer-imports`, or the system's temporary folder when base_dir cannot be written):
folders 0700, files 0600. The folder holds the file as uploaded, `meta.json` (who uploaded it,
its name, the options chosen), `state.json` (the step, its progress, the report) and the rejected
rows as CSV. Only the user who uploaded it may use an upload. The uploaded file is deleted as
soon as it is imported; everything else after KEEP_HOURS.

The dry run and the import are `read_import` and `write_import` of mailer.imports.importer, the
two halves of `contacts import`: same rules, same report. They run in a thread of the server
process, which writes its progress to `state.json` for the page to poll. The rows read by a dry
run are kept in memory for the import that follows, so an import through the console reads its
file once, as the command line does; planning (which the database may have changed under) is
done again inside the import's own transaction.

Over 400 lines on purpose: the staged file's life (keep, step, progress, clean-up) is one state
machine across requests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.contact import check_tag
from mailer.errors import InvalidInputError, MailerError, NotFoundError
from mailer.imports.choices import apply_choices, choices_of, guess_columns
from mailer.imports.columns import Columns
from mailer.imports.importer import (
    FileRead,
    ImportReport,
    file_rows,
    read_import,
    write_import,
)
from mailer.imports.spreadsheet import open_table
from mailer.private import PRIVATE_MODE
from mailer.store.db import session_factory, session_scope
from mailer.store.models import ContactImport

log = logging.getLogger("mailer.imports")

KEEP_HOURS = 6
FOLDER = ".mailer-imports"
SAMPLE_ROWS = 3  # data rows shown under each column on the mapping page
PROGRESS_EVERY = 0.5  # seconds between two progress writes
_ID = re.compile(r"[A-Za-z0-9_-]{24}")
_SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xlsm", ".xls")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The steps of an upload, in order; FAILED and INTERRUPTED come back to UPLOADED's form.
UPLOADED, CHECKING, CHECKED, APPLYING, APPLIED = (
    "uploaded",
    "checking",
    "checked",
    "applying",
    "applied",
)
FAILED, INTERRUPTED = "failed", "interrupted"
RUNNING = (CHECKING, APPLYING)
READING, DATABASE = "reading", "database"  # the phases of a running step

_lock = threading.RLock()  # state() is read under it, and inside steps that hold it
_running: dict[str, threading.Thread] = {}
_reads: OrderedDict[str, tuple[str, FileRead]] = OrderedDict()
KEEP_READS = 2  # dry runs whose rows stay in memory for the import that follows


@dataclass
class Options:
    """What the import is told besides the file: the CLI's options, and the column choices."""

    list_slug: str = ""
    consent_source: str = ""
    tags: list[str] = field(default_factory=list)
    update_attributes: bool = False
    encoding: str | None = None
    sheet: str | None = None
    choices: dict[int, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.choices is not None:
            data["choices"] = {str(k): v for k, v in self.choices.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Options:
        choices = data.get("choices")
        return cls(
            list_slug=str(data.get("list_slug", "")),
            consent_source=str(data.get("consent_source", "")),
            tags=[str(t) for t in data.get("tags", [])],
            update_attributes=bool(data.get("update_attributes", False)),
            encoding=data.get("encoding"),
            sheet=data.get("sheet"),
            choices={int(k): str(v) for k, v in choices.items()} if choices else None,
        )

    def read_key(self) -> str:
        """What the rows read depend on: a dry run's rows serve an import with the same key."""
        return json.dumps([self.encoding, self.sheet, self.tags, self.as_dict()["choices"]])


@dataclass
class State:
    """Where an upload is: its step, the running step's progress, the last report or error."""

    status: str = UPLOADED
    phase: str = ""
    done: int = 0
    total: int = 0
    started: str = ""
    pid: int = 0
    error: str = ""
    step: str = ""  # the step that failed or was interrupted: "check" or "apply"
    report: dict[str, Any] | None = None

    @property
    def percent(self) -> int:
        return min(100, self.done * 100 // self.total) if self.total else 0


@dataclass
class Column:
    """One column on the mapping page: header, a few values, the choice guessed or made."""

    index: int
    header: str
    samples: list[str]
    choice: str


@dataclass
class Preview:
    """What the mapping page shows of a file before it is read in full."""

    format: str
    encoding: str | None
    delimiter: str | None
    sheet: str | None
    sheets: list[str]
    headerless: bool
    columns: list[Column]
    problem: str | None  # why no column was guessed for email, if none was
    guess: Columns  # the import's guess (mailer.imports.choices.guess_columns)


@dataclass
class Staged:
    """An upload and what has been chosen for it."""

    id: str
    folder: Path
    user_id: int
    filename: str
    size: int
    sha256: str
    created: datetime
    options: Options
    suffix: str = ""
    detected: str | None = None  # the CSV encoding found by the first look at the file

    @property
    def upload(self) -> Path:
        return self.folder / f"upload{self.suffix}"

    @property
    def rejected(self) -> Path:
        return self.folder / "rejected.csv"

    def named(self, message: str) -> str:
        """A library message about the file, with the file named as its user knows it."""
        return message.replace(str(self.upload), self.filename)

    def state(self) -> State:
        """The state as last written; a running step no thread runs any more is INTERRUPTED."""
        try:
            data = json.loads((self.folder / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return State()
        state = State(**data)
        if state.status in RUNNING:
            with _lock:
                if not _alive(self.id, state.pid):
                    # Read again under the lock: the step may have just ended and said so.
                    again = State(**json.loads((self.folder / "state.json").read_text("utf-8")))
                    if again.status not in RUNNING:
                        return again
                    again.step = "check" if again.status == CHECKING else "apply"
                    again.status = INTERRUPTED
                    return again
        return state

    def save_state(self, state: State) -> None:
        _write_json(self.folder / "state.json", asdict(state))

    def save_options(self, options: Options) -> None:
        """New options: the last dry run no longer holds, so the upload is back to its start."""
        with _lock:
            status = self.state().status
            if status in RUNNING or status == APPLIED:
                raise InvalidInputError(f"{self.filename}: {_busy(status)}")
            self.options = options
            self._save_meta()
            self.save_state(State())
            # Rows read under other options are not used again: `_rows` compares read_key.

    def _save_meta(self) -> None:
        _write_json(
            self.folder / "meta.json",
            {
                "user_id": self.user_id,
                "filename": self.filename,
                "size": self.size,
                "sha256": self.sha256,
                "created": self.created.isoformat(),
                "suffix": self.suffix,
                "detected": self.detected,
                "options": self.options.as_dict(),
            },
        )

    def preview(self) -> Preview:
        """The columns as the import would guess them (or as chosen), with a few values each."""
        opts = self.options
        try:
            # The encoding found once is named again: finding it reads the whole file.
            encoding = opts.encoding or self.detected
            with open_table(self.upload, sheet=opts.sheet, encoding=encoding) as table:
                guess, problem = guess_columns(
                    self.upload, table.headers, table.header_line, sheet=table.sheet
                )
                samples = [cells for _, cells, _ in islice(file_rows(table, guess), SAMPLE_ROWS)]
                sheets = _sheet_names(self.upload) if table.format == "xlsx" else []
                fmt, enc, delim, sheet = table.format, table.encoding, table.delimiter, table.sheet
        except MailerError as err:
            raise InvalidInputError(self.named(str(err))) from None
        if fmt == "csv" and opts.encoding is None and self.detected != enc:
            self.detected = enc
            self._save_meta()
        chosen = choices_of(guess)
        if opts.choices is not None:
            chosen.update({i: v for i, v in opts.choices.items() if i in chosen})
            problem = None
        columns = [
            Column(i, header, [row[i] for row in samples if i < len(row)], chosen[i])
            for i, header in enumerate(guess.headers)
        ]
        return Preview(
            fmt,
            enc,
            delim,
            sheet,
            sheets,
            guess.headerless,
            columns,
            self.named(problem) if problem else None,
            guess,
        )

    def check_choices(self, preview: Preview, choices: dict[int, str]) -> None:
        """InvalidInputError, naming the column, unless the import can use `choices`."""
        try:
            apply_choices(self.upload, preview.guess, choices)
        except MailerError as err:
            raise InvalidInputError(self.named(str(err))) from None

    def discard(self) -> None:
        """Remove the upload and everything kept for it (not while a step runs)."""
        with _lock:
            if self.state().status in RUNNING:
                raise InvalidInputError(f"{self.filename}: {_busy(CHECKING)}")
            _reads.pop(self.id, None)
            shutil.rmtree(self.folder, ignore_errors=True)


# --- the private folder ---------------------------------------------------------------------


def root(settings: Settings) -> Path:
    """The private folder uploads are kept in (made 0700, and checked to be ours, when used)."""
    for folder in (settings.base_dir / FOLDER, Path(tempfile.gettempdir()) / _temp_name()):
        try:
            return _private_dir(folder)
        except OSError as err:
            last = f"{folder}: {err.strerror or err}"
    raise MailerError(f"cannot keep uploaded files: {last}")


def _temp_name() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return f"mailer-imports-{uid}"


def _private_dir(folder: Path) -> Path:
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    # In a shared temporary folder someone else could have made it first, or left a symlink.
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
        raise PermissionError(1, "exists and is not a folder of this user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(folder, 0o700)
    return folder


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write beside, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False)
    os.replace(tmp, path)


def clean_filename(name: str | None) -> str:
    """The uploaded file's name as shown and recorded: its last part, no control characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _CONTROL.sub("", base).strip()
    return base[:200] or "upload.csv"


def stage(
    settings: Settings, user_id: int, filename: str | None, source: IO[bytes], options: Options
) -> Staged:
    """Keep an uploaded file for `user_id`; returns its upload (open it with `load`)."""
    sweep(settings)
    name = clean_filename(filename)
    suffix = Path(name).suffix.lower()
    upload_id = secrets.token_urlsafe(18)
    folder = root(settings) / upload_id
    os.mkdir(folder, 0o700)
    staged = Staged(
        upload_id,
        folder,
        user_id,
        name,
        0,
        "",
        clock.now(),
        options,
        suffix if suffix in _SUFFIXES else "",
    )
    digest = hashlib.sha256()
    try:
        fd = os.open(staged.upload, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
                staged.size += len(block)
        staged.sha256 = digest.hexdigest()
        staged._save_meta()
        staged.save_state(State())
    except OSError as err:
        shutil.rmtree(folder, ignore_errors=True)
        raise MailerError(f"cannot keep the uploaded file {name}: {err.strerror or err}") from None
    return staged


def load(settings: Settings, upload_id: str, user_id: int) -> Staged:
    """The upload `upload_id` of `user_id`; NotFoundError for any other id, whoever owns it."""
    missing = NotFoundError("no such upload (it may have expired)")
    if not _ID.fullmatch(upload_id):
        raise missing
    folder = root(settings) / upload_id
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise missing from None
    if meta.get("user_id") != user_id:
        raise missing
    return Staged(
        upload_id,
        folder,
        int(meta["user_id"]),
        str(meta["filename"]),
        int(meta["size"]),
        str(meta["sha256"]),
        datetime.fromisoformat(meta["created"]),
        Options.from_dict(meta.get("options", {})),
        str(meta.get("suffix", "")),
        meta.get("detected"),
    )


def sweep(settings: Settings, *, hours: float = KEEP_HOURS) -> int:
    """Remove uploads older than `hours` (none whose step is running); returns how many."""
    folder = root(settings)
    limit = clock.now() - timedelta(hours=hours)
    removed = 0
    for entry in folder.iterdir():
        if not _ID.fullmatch(entry.name) or entry.name in _running:
            continue
        try:
            meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
            created = datetime.fromisoformat(meta["created"])
        except (OSError, ValueError, KeyError):
            # Half made (a failed upload): judged by the folder's own time.
            created = datetime.fromtimestamp(entry.stat().st_mtime, tz=limit.tzinfo)
        if created < limit:
            with _lock:
                _reads.pop(entry.name, None)
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def _sheet_names(path: Path) -> list[str]:
    # Lazy: imports.xlsx loads zipfile and openpyxl's parts; only workbooks need it.
    from mailer.imports.xlsx import sheet_headers  # noqa: PLC0415

    return [name for name, _ in sheet_headers(path, rows=1)]


# --- the steps ------------------------------------------------------------------------------


def _alive(upload_id: str, pid: int) -> bool:
    if pid == os.getpid():
        return upload_id in _running
    try:
        os.kill(pid, 0)  # a step started by another server process that is still running
    except (OSError, ValueError):
        return False
    return pid > 0


def _busy(status: str) -> str:
    if status == APPLIED:
        return "this file has been imported already; upload it again to import it again"
    return "a step of this import is running; wait for it to finish"


def start_check(settings: Settings, staged: Staged) -> None:
    """Start the dry run in the background (read the file, plan against the list)."""
    _start(settings, staged, "check", "")


def start_apply(settings: Settings, staged: Staged, *, actor: str) -> None:
    """Start the import in the background; only after a dry run with the same options."""
    _start(settings, staged, "apply", actor)


def _start(settings: Settings, staged: Staged, step: str, actor: str) -> None:
    with _lock:
        state = staged.state()
        if state.status in RUNNING or state.status == APPLIED:
            raise InvalidInputError(f"{staged.filename}: {_busy(state.status)}")
        if step == "apply" and state.status != CHECKED:
            raise InvalidInputError(
                f"{staged.filename}: run the dry run first; the import writes what it showed"
            )
        staged.save_state(
            State(
                status=CHECKING if step == "check" else APPLYING,
                phase=READING,
                started=clock.now().isoformat(),
                pid=os.getpid(),
                report=state.report if step == "apply" else None,
            )
        )
        thread = threading.Thread(
            target=_run,
            args=(settings, staged, step, actor),
            name=f"import-{step}-{staged.id[:6]}",
            # A server that stops mid-import rolls the transaction back: all or nothing.
            daemon=True,
        )
        _running[staged.id] = thread
        thread.start()


def wait(upload_id: str, timeout: float | None = None) -> None:
    """Wait for the running step of an upload to end (scripts and tests; pages poll instead)."""
    with _lock:
        thread = _running.get(upload_id)
    if thread is not None:
        thread.join(timeout)


def _run(settings: Settings, staged: Staged, step: str, actor: str) -> None:
    started = staged.state()
    try:
        read = _rows(settings, staged, started)
        staged.save_state(_phase(started, DATABASE))
        if step == "check":
            session = session_factory(settings)()
            try:
                report = _write(session, staged, read, dry_run=True, actor=actor)
            finally:
                session.rollback()  # a dry run writes nothing
                session.close()
        else:
            with session_scope(settings) as session:
                report = _write(session, staged, read, dry_run=False, actor=actor)
            staged.upload.unlink(missing_ok=True)  # imported: the file is no longer needed
            with _lock:
                _reads.pop(staged.id, None)
        done = State(
            status=CHECKED if step == "check" else APPLIED,
            started=started.started,
            report=report_data(report, read),
        )
    except MailerError as err:
        done = State(status=FAILED, step=step, error=staged.named(str(err)), report=None)
    except Exception:
        log.exception("the %s of upload %s failed", step, staged.id)
        done = State(
            status=FAILED,
            step=step,
            error="an unexpected error stopped this step; nothing was imported. "
            "The server's log has the details",
        )
    with _lock:
        staged.save_state(done)
        _running.pop(staged.id, None)


def _phase(state: State, phase: str, done: int = 0, total: int = 0) -> State:
    return State(
        status=state.status,
        phase=phase,
        done=done,
        total=total,
        started=state.started,
        pid=state.pid,
        report=state.report,
    )


def _rows(settings: Settings, staged: Staged, state: State) -> FileRead:
    """The file's rows: kept from the dry run with the same options, else read now."""
    opts = staged.options
    key = opts.read_key() + staged.sha256
    with _lock:
        kept = _reads.get(staged.id)
    if kept is not None and kept[0] == key:
        return kept[1]
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            staged.save_state(_phase(state, READING, done, total))

    read = read_import(
        staged.upload,
        tags=opts.tags,
        choices=opts.choices,
        sheet=opts.sheet,
        # The encoding the upload's first look found: detection decoded the whole file with it,
        # so naming it reads the same text, without reading the file once more to find it.
        encoding=opts.encoding or staged.detected,
        progress=progress,
        default_language=settings.default_language,
    )
    read.report.file = staged.filename  # recorded with the import, as its user knows it
    with _lock:
        _reads[staged.id] = (key, read)
        _reads.move_to_end(staged.id)
        while len(_reads) > KEEP_READS:
            _reads.popitem(last=False)
    return read


def _write(
    session: Session, staged: Staged, read: FileRead, *, dry_run: bool, actor: str
) -> ImportReport:
    opts = staged.options
    staged.rejected.unlink(missing_ok=True)
    return write_import(
        session,
        read,
        opts.list_slug,
        dry_run=dry_run,
        update_attributes=opts.update_attributes,
        consent_source=opts.consent_source or None,
        errors_path=staged.rejected if read.report.rejected else None,
        actor=actor,
    )


def report_data(report: ImportReport, read: FileRead) -> dict[str, Any]:
    """The report as kept in state.json: the CLI's JSON shape, plus examples of each outcome."""
    data = report.as_dict()
    examples: dict[str, list[dict[str, Any]]] = {}
    for outcome, records in report.examples.items():
        examples[outcome] = [
            {
                "line": r.line,
                "email": r.original,
                "name": r.name,
                # A duplicate: the row it was merged into.
                "first_line": read.records[r.key].line if outcome == "duplicates" else None,
            }
            for r in records
        ]
    data["examples"] = examples
    return data


def settle(session: Session, staged: Staged) -> State:
    """The state; an import interrupted after it committed (found in the database) is APPLIED.

    The import is one transaction, so either its `contact_import` row exists or nothing of it
    was written; only the moment between its commit and the state's write is in doubt."""
    state = staged.state()
    if state.status != INTERRUPTED or state.step != "apply" or not state.started:
        return state
    found = session.scalar(
        select(ContactImport)
        .where(
            ContactImport.sha256 == staged.sha256,
            ContactImport.filename == staged.filename,
            ContactImport.created_at >= datetime.fromisoformat(state.started),
        )
        .order_by(ContactImport.id.desc())
        .limit(1)
    )
    if found is not None:
        state = State(status=APPLIED, started=state.started, report=dict(found.report or {}))
        state.report = {**(state.report or {}), "import_id": found.id}
        staged.save_state(state)
        staged.upload.unlink(missing_ok=True)
    return state


def check_tags(text: str) -> list[str]:
    """Tags typed as one text (commas between them), each checked as `--tag` checks it."""
    return list(dict.fromkeys(check_tag(t.strip()) for t in text.split(",") if t.strip()))


def iter_examples(report: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The examples of a kept report, outcome by outcome, in the order the report lists them."""
    examples = report.get("examples") or {}
    for outcome in (
        "contacts_added",
        "contacts_updated",
        "subscribed",
        "pending_confirmed",
        "already_subscribed",
        "kept_unsubscribed",
        "duplicates",
    ):
        if examples.get(outcome):
            yield outcome, examples[outcome]
