"""Where messages go: SMTP (TLS, AUTH, reused connections), the outbox maildir, or nowhere.

A connection's `send` never raises for what happens to one message: refusals, temporary failures
and lost connections come back as a `Reply` whose `outcome` the ledger records. It raises
TransportError only for what stops the whole run (login refused, TLS handshake failed).

Over 400 lines on purpose: the three transports share the Reply/Outcome contract, and the SMTP
one's outcome table (docs/ledger.md) is easier to check against the code in one place.
"""

from __future__ import annotations

import base64
import enum
import mailbox
import re
import smtplib
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from mailer.config import Settings
from mailer.errors import ConfigError, TransportError
from mailer.masking import mask_url

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")
# What must never appear inside MAIL FROM:<...> or RCPT TO:<...>.
_UNSAFE_ADDRESS = re.compile(r"[\r\n<>\x00]")


# RFC 3463 X.1.Y codes that say the recipient's address is bad: 1 bad mailbox, 2 bad system,
# 3 bad mailbox syntax, 6 mailbox moved, 10 null MX. (5.1.7 and 5.1.8 are about the sender.)
RECIPIENT_GONE = frozenset({"1", "2", "3", "6", "10"})
FINAL_REPLY_TIMEOUT = 600.0  # RFC 5321 4.5.3.2.6: ten minutes for the reply to the final dot


class Outcome(enum.StrEnum):
    SENT = "sent"
    # 4xx; or the connection failed while the server could not have the whole message: before
    # its 354 reply to DATA, or a write of the message (which ends with the final dot) failed.
    DEFERRED = "deferred"
    FAILED = "failed"  # 5xx
    BAD_ADDRESS = "bad_address"  # 5.1.x: failed, and the address is suppressed as a hard bounce
    # The final dot was handed to the network and no reply came back: the connection was cut
    # after the body started, or the reply was lost. Whether the server kept the message,
    # this machine cannot tell (the bytes may still be in flight when the server hangs up).
    IN_DOUBT = "in_doubt"


class Reply(NamedTuple):
    """What the server said about one message (code 0: no SMTP reply, e.g. a lost connection)."""

    code: int
    text: str
    outcome: Outcome

    @property
    def enhanced(self) -> str | None:
        m = _ENHANCED.match(self.text)
        return ".".join(m.groups()) if m else None


def classify(code: int, text: str) -> Reply:
    """The ledger outcome of an SMTP reply."""
    if 200 <= code < 300:
        return Reply(code, text, Outcome.SENT)
    if 400 <= code < 500:
        return Reply(code, text, Outcome.DEFERRED)
    m = _ENHANCED.match(text)
    if m and m.group(1) == "5" and m.group(2) == "1" and m.group(3) in RECIPIENT_GONE:
        return Reply(code, text, Outcome.BAD_ADDRESS)
    if (
        m is None
        and code in (550, 553)
        and re.search(
            r"(no such|unknown|does not exist|user unknown|mailbox unavailable)", text, re.I
        )
    ):
        # Old servers without enhanced codes: only the unambiguous "no such user" replies count.
        return Reply(code, text, Outcome.BAD_ADDRESS)
    return Reply(code, text, Outcome.FAILED)


class Connection(Protocol):
    def send(
        self, envelope_from: str, recipient: str, message: bytes, *, smtputf8: bool = False
    ) -> Reply: ...

    def close(self) -> None: ...


class Transport(Protocol):
    name: str

    def open(self) -> Connection: ...

    def check(self) -> None:
        """Raise TransportError now if sending cannot work (login, TLS, folder)."""

    def supports_smtputf8(self) -> bool: ...

    def describe(self) -> str: ...


# --- SMTP -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    tls: str  # "starttls", "implicit" or "none"
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ConfigError(
                f"smtp_url: expected smtp://host or smtps://host, got {mask_url(url)!r}"
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.scheme == "smtps":
            tls = "implicit"
        else:
            tls = query.get("tls", "starttls")
            if tls not in ("starttls", "none"):
                raise ConfigError(f"smtp_url: tls must be starttls or none, got {tls!r}")
        try:
            port = parts.port or (465 if tls == "implicit" else 587)
        except ValueError:
            raise ConfigError(f"smtp_url: bad port in {mask_url(url)!r}") from None
        if tls == "none" and parts.password and parts.hostname not in LOOPBACK:
            raise ConfigError(
                f"smtp_url: ?tls=none would send the password in clear text to "
                f"{parts.hostname}; use STARTTLS (the default) or smtps://"
            )
        return cls(
            parts.hostname,
            port,
            tls,
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
        )


class SmtpConnection:
    """One SMTP session reused for many messages; reopened after any error."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self.smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        t = self.transport
        target = t.target
        where = f"{target.host}:{target.port}"
        smtp: smtplib.SMTP
        try:
            if target.tls == "implicit":
                smtp = smtplib.SMTP_SSL(
                    target.host, target.port, timeout=t.timeout, context=t.ssl_context()
                )
            else:
                smtp = smtplib.SMTP(target.host, target.port, timeout=t.timeout)
            smtp.ehlo()
            if target.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    smtp.close()
                    raise TransportError(
                        f"{where} does not offer STARTTLS (use ?tls=none "
                        "only for a server on this machine)"
                    )
                smtp.starttls(context=t.ssl_context())
                smtp.ehlo()
        except ssl.SSLError as err:
            raise TransportError(f"{where}: TLS handshake failed: {err.reason or err}") from None
        except (OSError, smtplib.SMTPException) as err:
            raise ConnectionError(f"{where}: {err}") from err
        if target.username:
            try:
                _login(smtp, target.username, target.password or "")
            except smtplib.SMTPAuthenticationError as err:
                smtp.close()
                raise TransportError(
                    f"{where} refused the login for {target.username!r}: "
                    f"{err.smtp_code} {_text(err.smtp_error)}"
                ) from None
            except smtplib.SMTPNotSupportedError:
                smtp.close()
                raise TransportError(f"{where} does not offer AUTH") from None
            except TransportError as err:
                smtp.close()
                raise TransportError(f"{where}: {err}") from None
            except (OSError, smtplib.SMTPException) as err:
                raise ConnectionError(f"{where}: {err}") from err
        t.learn_capabilities(smtp)
        return smtp

    def send(
        self, envelope_from: str, recipient: str, message: bytes, *, smtputf8: bool = False
    ) -> Reply:
        """Send one message; the Reply says what became of it.

        MAIL, RCPT and DATA go out in one write when the server offers PIPELINING (RFC 2920),
        then their three replies are read in order: one round trip instead of three. The
        addresses are already in SMTP form (contacts.addresses.smtp_form), so the commands are
        written directly rather than through smtplib's parser of display names.
        """
        if _UNSAFE_ADDRESS.search(envelope_from):
            raise TransportError(
                f"the envelope sender {envelope_from!r} cannot be written in an SMTP command"
            )
        if _UNSAFE_ADDRESS.search(recipient) or not (smtputf8 or recipient.isascii()):
            # Never reached with addresses from the ledger (normalised, SMTPUTF8 flagged); a
            # line break here would otherwise smuggle a command into the session.
            return Reply(0, f"cannot be written in an SMTP command: {recipient!r}", Outcome.FAILED)
        try:
            if self.smtp is None:
                self.smtp = self._connect()
            smtp = self.smtp
            params = " SMTPUTF8" if smtputf8 else ""
            if smtp.has_extn("8bitmime"):
                params += " BODY=8BITMIME"
            commands = (
                f"MAIL FROM:<{envelope_from}>{params}\r\n",
                f"RCPT TO:<{recipient}>\r\n",
                "DATA\r\n",
            )
            encoding = "utf-8" if smtputf8 else "ascii"
            pipelined = smtp.has_extn("pipelining")
            if pipelined:
                smtp.send("".join(commands).encode(encoding))
            expected = ((250,), (250, 251), (354,))
            for i, command in enumerate(commands):
                if not pipelined:
                    smtp.send(command.encode(encoding))
                code, resp = smtp.getreply()
                if code in expected[i]:
                    continue
                # The replies to the commands already sent are still on their way.
                owed = len(commands) - 1 - i if pipelined else 0
                if i == 0 and code >= 500:
                    # The sender is refused, not this recipient: blaming (or suppressing)
                    # every recipient in turn would be wrong. Stop the run; the rows go back.
                    self._refused(code, resp, owed)
                    t = self.transport.target
                    raise TransportError(
                        f"{t.host}:{t.port} refused the sender {envelope_from}: {code} "
                        f"{_text(resp)}"
                    )
                return self._refused(code, resp, owed)
        except (OSError, smtplib.SMTPException, UnicodeEncodeError) as err:
            self.close()
            return Reply(
                0, f"connection failed before the message was sent: {err}", Outcome.DEFERRED
            )
        try:
            smtp.send(_dot_stuff(message) + b".\r\n")
        except (OSError, smtplib.SMTPException) as err:
            # The final dot never left this machine: the server cannot have accepted it.
            self.close()
            return Reply(0, f"connection lost while sending the message: {err}", Outcome.DEFERRED)
        try:
            if smtp.sock is not None:
                smtp.sock.settimeout(max(self.transport.timeout, FINAL_REPLY_TIMEOUT))
            code, resp = smtp.getreply()
            if smtp.sock is not None:
                smtp.sock.settimeout(self.transport.timeout)
        except (OSError, smtplib.SMTPException) as err:
            self.close()
            return Reply(
                0,
                f"connection lost after the message was sent, before the server replied: {err}",
                Outcome.IN_DOUBT,
            )
        if code < 200:
            # A garbled reply to the final dot: the server may well have the message.
            self.close()
            return Reply(
                0, f"unreadable reply after the message was sent: {_text(resp)}", Outcome.IN_DOUBT
            )
        reply = classify(code, _text(resp))
        if code == 421:
            self.close()
        return reply

    def _refused(self, code: int, resp: bytes, owed: int = 0) -> Reply:
        """The server refused a command: read the replies still owed (pipelining), end the
        transaction with RSET, and say what the refusal means for this recipient."""
        reply = classify(code, _text(resp))
        if code == 421 or code < 200:
            self.close()
            return reply
        try:
            assert self.smtp is not None
            last = 0
            for _ in range(owed):
                last, _resp = self.smtp.getreply()
            if owed and last == 354:
                # DATA was accepted although an earlier command failed (RFC 2920 3.1): an
                # empty message ends it; the server has no recipient to deliver it to.
                self.smtp.send(b".\r\n")
                self.smtp.getreply()
            self.smtp.rset()
        except (OSError, smtplib.SMTPException):
            self.close()
        return reply

    def close(self) -> None:
        if self.smtp is None:
            return
        smtp, self.smtp = self.smtp, None
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


class SmtpTransport:
    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        self.url = settings.smtp_url
        self.target = SmtpTarget.parse(settings.smtp_url)
        self.timeout = settings.smtp_timeout
        self.ca_file = settings.smtp_ca_file
        self._lock = threading.Lock()
        self._smtputf8: bool | None = None

    def ssl_context(self) -> ssl.SSLContext:
        try:
            return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as err:
            raise ConfigError(f"smtp_ca_file {self.ca_file}: cannot load: {err}") from None

    def learn_capabilities(self, smtp: smtplib.SMTP) -> None:
        with self._lock:
            self._smtputf8 = bool(smtp.has_extn("smtputf8"))

    def open(self) -> SmtpConnection:
        return SmtpConnection(self)

    def check(self) -> None:
        conn = SmtpConnection(self)
        try:
            conn.smtp = conn._connect()
        except ConnectionError as err:
            raise TransportError(f"cannot reach the SMTP server {err}") from None
        finally:
            conn.close()

    def supports_smtputf8(self) -> bool:
        if self._smtputf8 is None:
            self.check()
        return bool(self._smtputf8)

    def describe(self) -> str:
        return f"SMTP {mask_url(self.url)}"


# --- outbox and dry run ---------------------------------------------------------------------


class OutboxConnection:
    def __init__(self, box: mailbox.Maildir) -> None:
        self.box = box

    def send(
        self, envelope_from: str, recipient: str, message: bytes, *, smtputf8: bool = False
    ) -> Reply:
        # The envelope goes into the file the way a local MTA records it, so the outbox shows it.
        envelope = f"Return-Path: <{envelope_from}>\nDelivered-To: {recipient}\n".encode()
        try:
            key = self.box.add(envelope + message)
        except OSError as err:
            return Reply(0, f"cannot write to the outbox: {err}", Outcome.DEFERRED)
        return Reply(250, f"2.0.0 written to the outbox as {key}", Outcome.SENT)

    def close(self) -> None:
        pass


class OutboxTransport:
    """A maildir folder: every message lands in a file, nothing leaves the machine."""

    name = "outbox"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _box(self) -> mailbox.Maildir:
        try:
            return mailbox.Maildir(self.folder, create=True)
        except OSError as err:
            raise TransportError(f"cannot create the outbox {self.folder}: {err}") from None

    def open(self) -> OutboxConnection:
        return OutboxConnection(self._box())

    def check(self) -> None:
        self._box()

    def supports_smtputf8(self) -> bool:
        return True

    def describe(self) -> str:
        return f"outbox {self.folder} (nothing leaves this machine)"


class DryRunConnection:
    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    def send(
        self, envelope_from: str, recipient: str, message: bytes, *, smtputf8: bool = False
    ) -> Reply:
        self.count += 1
        self.bytes += len(message)
        return Reply(250, "dry run: not sent", Outcome.SENT)

    def close(self) -> None:
        pass


def open_transport(settings: Settings) -> SmtpTransport | OutboxTransport:
    """The transport the settings name."""
    if settings.transport == "smtp":
        return SmtpTransport(settings)
    return OutboxTransport(settings.outbox_dir)


def _text(resp: bytes | str) -> str:
    if isinstance(resp, bytes):
        return resp.decode("utf-8", "replace")
    return resp


def _dot_stuff(message: bytes) -> bytes:
    """CRLF line ends and leading dots doubled (RFC 5321 4.5.2), ending with CRLF."""
    # The messages built here have LF line ends only: a plain replace does in one C pass what the
    # general regular expressions do several times slower (they stay for anything else).
    if b"\r" in message:
        data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", message)
    else:
        data = message.replace(b"\n", b"\r\n")
    # Every line now ends in CRLF, so a line starts at the beginning or right after a LF.
    data = data.replace(b"\n.", b"\n..")
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH: smtplib's for ASCII credentials; PLAIN in UTF-8 (RFC 4616) for others, which
    smtplib cannot send (it encodes them as ASCII and raises UnicodeEncodeError)."""
    if username.isascii() and password.isascii():
        smtp.login(username, password)
        return
    smtp.ehlo_or_helo_if_needed()
    offered = str(smtp.esmtp_features.get("auth", "")).upper().split()
    if "PLAIN" not in offered:
        raise TransportError(
            "the SMTP user name or password has characters outside ASCII, which only AUTH "
            f"PLAIN carries (in UTF-8), and the server offers {' '.join(offered) or 'no AUTH'}"
        )
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
    code, reply = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)
