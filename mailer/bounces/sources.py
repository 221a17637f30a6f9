"""Where bounce reports are read from: an mbox file, a maildir folder, or an IMAP mailbox.

Local files are only read, never changed: the Bounce table remembers what was processed, so a
second run skips it. An IMAP mailbox is read with BODY.PEEK (nothing marked \\Seen) and, after
the caller has committed, processed messages are moved to a folder (created if missing) or
flagged with the keyword $MailerProcessed, which later runs leave out.
"""

from __future__ import annotations

import base64
import imaplib
import mailbox
import os
import re
import ssl
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import parse_qs, unquote, urlsplit

from mailer.errors import MailerError
from mailer.masking import mask_url

PROCESSED_KEYWORD = "$MailerProcessed"
DEFAULT_PROCESSED_FOLDER = "mailer-processed"
IMAP_TIMEOUT = 60.0
# A line starts at the beginning of the file or after \n or \r (bytes.splitlines' breaks).
_FROM_QUOTED = re.compile(rb"(?:\A|(?<=[\r\n]))>(>*From )")


class MailboxError(MailerError):
    """A bounce source cannot be opened or read (missing file, refused login, ...)."""


@dataclass(frozen=True)
class SourceMessage:
    """One message of a source: its bytes, or the reason it cannot be read."""

    key: str  # mbox "3 (line 120)", maildir file key, IMAP UID
    raw: bytes | None
    problem: str | None = None


class Source(Protocol):
    label: str

    def messages(self) -> Iterator[SourceMessage]: ...

    def acknowledge(self, keys: Sequence[str]) -> str: ...

    def close(self) -> None: ...


class _Closing:
    """Context-manager support shared by the sources."""

    def close(self) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_source(spec: str, *, readonly: bool = False) -> MboxSource | MaildirSource | ImapSource:
    """The source named by `spec`: an imap(s):// URL, a maildir folder, or an mbox file."""
    if spec.startswith(("imap://", "imaps://")):
        return ImapSource(spec, readonly=readonly)
    path = Path(spec)
    if path.is_dir():
        if not ((path / "cur").is_dir() and (path / "new").is_dir()):
            raise MailboxError(f"{spec}: a folder but not a maildir (no cur/ and new/ inside)")
        return MaildirSource(path)
    if path.is_file():
        return MboxSource(path)
    if "://" in spec:
        raise MailboxError(f"{mask_url(spec)}: unsupported source (use imap:// or imaps://)")
    raise MailboxError(f"{spec}: no such file or folder")


class MboxSource(_Closing):
    """An mbox file, split on `From ` lines; cut-off or stray data is reported, not guessed at."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)

    def messages(self) -> Iterator[SourceMessage]:
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise MailboxError(f"{self.path}: cannot read: {err.strerror}") from None
        if not data.strip():
            return
        lines = data.splitlines(keepends=True)
        # Where each line starts; "From " lines are found by searching the whole file (a Python
        # loop over every line was most of the time of a large mbox).
        offsets = list(accumulate(map(len, lines), initial=0))
        starts = [
            i
            for i in (bisect_left(offsets, at) for at in _line_starts(data, b"From "))
            if i == 0 or not lines[i - 1].strip()
        ]
        if not starts:
            yield SourceMessage(
                "1 (line 1)",
                None,
                f"{self.path}: not an mbox file (no 'From ' line starts a message)",
            )
            return
        if starts[0] > 0 and any(line.strip() for line in lines[: starts[0]]):
            yield SourceMessage(
                "0 (line 1)",
                None,
                f"lines 1-{starts[0]} come before the first 'From ' line: skipped",
            )
        for n, start in enumerate(starts, 1):
            end = starts[n] if n < len(starts) else len(lines)
            # mboxrd: ">From " and ">>From " at the start of a line lose one '>'.
            body = data[offsets[start + 1] : offsets[end]]
            if b">From " in body:
                body = _FROM_QUOTED.sub(rb"\1", body)
            key = f"{n} (line {start + 1})"
            if n == len(starts) and not data.endswith(b"\n"):
                yield SourceMessage(
                    key, None, "truncated: the file ends in the middle of this message"
                )
                continue
            yield SourceMessage(key, body)

    def acknowledge(self, keys: Sequence[str]) -> str:
        return "mbox left unchanged (processed messages are remembered in the database)"


def _line_starts(data: bytes, word: bytes) -> Iterator[int]:
    """Offsets of the lines of `data` that start with `word` (the \n of \r\n starts none)."""
    at = data.find(word)
    while at != -1:
        if at == 0 or data[at - 1] in b"\r\n":
            yield at
        at = data.find(word, at + 1)


class MaildirSource(_Closing):
    """A maildir folder (cur/ and new/), read in file-name order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        self.box = mailbox.Maildir(path, factory=None, create=False)

    def messages(self) -> Iterator[SourceMessage]:
        for key in sorted(self.box.keys()):
            try:
                raw = self.box.get_bytes(key)
            except (OSError, KeyError) as err:
                yield SourceMessage(key, None, f"cannot read {key}: {err}")
                continue
            yield SourceMessage(key, raw)

    def acknowledge(self, keys: Sequence[str]) -> str:
        return "maildir left unchanged (processed messages are remembered in the database)"


@dataclass(frozen=True)
class ImapUrl:
    """imaps://user:pass@host:port/FOLDER?processed=NAME&after=move|flag&ca_file=PATH&tls=..."""

    tls: str  # "ssl" (imaps), "starttls" (imap, default) or "none" (imap, ?tls=none)
    host: str
    port: int
    user: str
    password: str
    folder: str
    processed_folder: str
    after: str  # "move" or "flag"
    ca_file: str | None
    label: str


def parse_imap_url(url: str, env: dict[str, str] | None = None) -> ImapUrl:
    """Read an IMAP URL; the password may come from MAILER_IMAP_PASSWORD instead of the URL."""
    env = dict(os.environ) if env is None else env
    parts = urlsplit(url)
    # Masked whole: cut at the first '?' first, a password holding '?' would show its start.
    label = mask_url(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"processed", "after", "ca_file", "tls"}
    if unknown:
        raise MailboxError(
            f"{label}: unknown option {sorted(unknown)[0]!r} "
            "(known: processed, after, ca_file, tls)"
        )
    if not parts.hostname or not parts.username:
        raise MailboxError(f"{label}: expected imaps://USER:PASSWORD@HOST/FOLDER")
    password = (
        unquote(parts.password)
        if parts.password is not None
        else env.get("MAILER_IMAP_PASSWORD", "")
    )
    if not password:
        raise MailboxError(f"{label}: no password (put it in the URL or MAILER_IMAP_PASSWORD)")
    if parts.scheme == "imaps":
        tls = "ssl"
    else:
        tls = query.get("tls", "starttls")
        if tls not in ("starttls", "none"):
            raise MailboxError(f"{label}: tls: expected starttls or none, got {tls!r}")
    after = query.get("after", "move")
    if after not in ("move", "flag"):
        raise MailboxError(f"{label}: after: expected move or flag, got {after!r}")
    try:
        port = parts.port or (993 if tls == "ssl" else 143)
    except ValueError:
        raise MailboxError(f"{label}: not a valid port") from None
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapUrl(
        tls=tls,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        password=password,
        folder=folder,
        processed_folder=query.get("processed", DEFAULT_PROCESSED_FOLDER),
        after=after,
        ca_file=query.get("ca_file"),
        label=label,
    )


class ImapSource(_Closing):
    """An IMAP folder. Opening it logs in; a refused login is a MailboxError."""

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = parse_imap_url(url)
        self.label = self.url.label
        self.readonly = readonly
        self.conn = self._connect()

    def _connect(self) -> imaplib.IMAP4:
        u = self.url
        where = self.label
        try:
            context = ssl.create_default_context(cafile=u.ca_file) if u.tls != "none" else None
        except (OSError, ssl.SSLError) as err:
            raise MailboxError(f"{self.label}: ca_file {u.ca_file!r}: {err}") from None
        try:
            if u.tls == "ssl":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    u.host, u.port, ssl_context=context, timeout=IMAP_TIMEOUT
                )
            else:
                conn = imaplib.IMAP4(u.host, u.port, timeout=IMAP_TIMEOUT)
                if u.tls == "starttls":
                    conn.starttls(ssl_context=context)
        except (OSError, ssl.SSLError, imaplib.IMAP4.error) as err:
            raise MailboxError(f"{where}: cannot connect: {err}") from None
        try:
            conn.login(u.user, u.password)
        except imaplib.IMAP4.error as err:
            _quietly_close(conn)
            raise MailboxError(
                f"{where}: the server refused the login for {u.user!r}: {_text(err)}"
            ) from None
        except OSError as err:
            raise MailboxError(f"{where}: connection lost during login: {err}") from None
        typ, data = conn.select(_quote(u.folder), readonly=self.readonly)
        if typ != "OK":
            _quietly_close(conn)
            raise MailboxError(f"{self.label}: cannot open the folder {u.folder!r}: {_text(data)}")
        return conn

    def messages(self) -> Iterator[SourceMessage]:
        typ, data = self.conn.uid("SEARCH", "UNKEYWORD", PROCESSED_KEYWORD)
        if typ != "OK":
            raise MailboxError(f"{self.label}: search failed: {_text(data)}")
        uids = data[0].split() if data and data[0] else []
        for uid in (u.decode() for u in uids):
            try:
                typ, fetched = self.conn.uid("FETCH", uid, "(BODY.PEEK[])")
            except (imaplib.IMAP4.error, OSError) as err:
                raise MailboxError(f"{self.label}: fetching UID {uid} failed: {err}") from None
            raw = next(
                (item[1] for item in fetched or [] if isinstance(item, tuple) and len(item) == 2),
                None,
            )
            if typ != "OK" or not isinstance(raw, bytes):
                yield SourceMessage(f"uid {uid}", None, f"UID {uid} could not be fetched")
                continue
            yield SourceMessage(f"uid {uid}", raw)

    def acknowledge(self, keys: Sequence[str]) -> str:
        """Move (or flag) the processed messages; raise MailboxError if the server refuses."""
        uids = [k.removeprefix("uid ") for k in keys]
        if not uids:
            return "nothing to move"
        uid_set = ",".join(uids)
        u = self.url
        try:
            if u.after == "flag":
                self._ok(
                    self.conn.uid("STORE", uid_set, "+FLAGS", f"({PROCESSED_KEYWORD})"), "flag"
                )
                return f"flagged {len(uids)} message(s) {PROCESSED_KEYWORD}"
            folder = _quote(u.processed_folder)
            typ, data = self.conn.list('""', folder)
            if typ != "OK" or not data or data[0] is None:
                self._ok(self.conn.create(folder), f"create the folder {u.processed_folder!r}")
            caps = self._capabilities()
            if "MOVE" in caps:
                self._ok(self.conn.uid("MOVE", uid_set, folder), "move")
            else:
                self._ok(self.conn.uid("COPY", uid_set, folder), "copy")
                self._ok(self.conn.uid("STORE", uid_set, "+FLAGS", "(\\Deleted)"), "delete")
                if "UIDPLUS" in caps:
                    self._ok(self.conn.uid("EXPUNGE", uid_set), "expunge")
                else:
                    self._ok(self.conn.expunge(), "expunge")
        except (imaplib.IMAP4.error, OSError) as err:
            raise MailboxError(f"{self.label}: {err}") from None
        return f"moved {len(uids)} message(s) to {u.processed_folder!r}"

    def _capabilities(self) -> set[str]:
        typ, data = self.conn.capability()
        words = b" ".join(d for d in data if isinstance(d, bytes)).decode().upper().split()
        return set(words) if typ == "OK" else set()

    def _ok(self, result: tuple[str, list[object]], what: str) -> None:
        typ, data = result
        if typ != "OK":
            raise imaplib.IMAP4.error(f"the server would not {what}: {_text(data)}")

    def close(self) -> None:
        _quietly_close(self.conn)


def _quietly_close(conn: imaplib.IMAP4) -> None:
    try:
        if conn.state == "SELECTED":
            conn.close()
        conn.logout()
    except (imaplib.IMAP4.error, OSError):
        pass


def _text(value: object) -> str:
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value if v is not None)
    if isinstance(value, bytes):
        # Dovecot appends its timing, "(0.001 + 0.000 secs).": not for people.
        text = value.decode("utf-8", "replace")
        return re.sub(r"\s*\([\d.+ ]+secs\)\.?$", "", text).rstrip(".")
    if isinstance(value, BaseException) and value.args:
        return _text(value.args[0])
    return str(value)


def _quote(name: str) -> str:
    """A mailbox name as an IMAP quoted string, in modified UTF-7 (RFC 3501 5.1.3)."""
    encoded = encode_mutf7(name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_mutf7(name: str) -> str:
    """IMAP's modified UTF-7: '&' -> '&-', non-ASCII runs -> &base64(UTF-16BE)- with ',' for '/'."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            b64 = base64.b64encode("".join(run).encode("utf-16-be")).decode().rstrip("=")
            out.append("&" + b64.replace("/", ",") + "-")
            run.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            run.append(ch)
    flush()
    return "".join(out)
