"""A real SMTP server on 127.0.0.1 (aiosmtpd) that tests can tell to refuse, defer and drop."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class Sink:
    """The handler: records what it accepts; scripted replies per recipient.

    script[address] is a queue of actions used one per attempt: an SMTP reply such as
    "450 4.2.0 Try again later" (given at RCPT), "data:554 5.7.1 Rejected" (given after DATA),
    "drop-after-data" (the whole message arrives, the connection closes with no reply),
    or "ok". `on_message` runs after each accepted message (the crash tests kill the sender).
    """

    received: list[Received] = field(default_factory=list)
    script: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))
    attempts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    on_message: Callable[[Received], None] | None = None
    refuse_sender: str | None = None  # a reply to MAIL FROM, e.g. "553 5.1.8 rejected"
    # Offer PIPELINING (RFC 2920) in the EHLO reply: the sender then writes MAIL, RCPT and DATA
    # at once. aiosmtpd reads commands one line at a time, so it serves pipelined clients.
    pipelining: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # this hook must set it (aiosmtpd's documentation)
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    def plan(self, address: str, *actions: str) -> None:
        self.script[address.lower()].extend(actions)

    def _next(self, address: str) -> str:
        queue = self.script.get(address.lower())
        return queue.popleft() if queue else "ok"

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.refuse_sender:
            return self.refuse_sender
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            self.attempts[address.lower()] += 1
            action = self._next(address)
        if action[:1] in ("4", "5"):
            return action
        envelope.rcpt_tos.append(address)
        envelope.pending_action = action
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        action = getattr(envelope, "pending_action", "ok")
        if action == "drop-after-data":
            # The message arrived whole; the sender never learns whether it was accepted.
            server.transport.close()
            return "250 2.0.0 never seen"
        if action.startswith("data:"):
            return action[5:]
        got = Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content))
        with self.lock:
            self.received.append(got)
        if self.on_message is not None:
            self.on_message(got)
        return "250 2.0.0 Queued"

    # helpers for assertions
    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address.lower() in (a.lower() for a in r.rcpt_tos)]

    def message_ids(self) -> list[str]:
        return [r.message_id for r in self.received]


class SmtpServer:
    """A running aiosmtpd server; `url` is ready for the smtp_url setting."""

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        smtputf8: bool = True,
    ) -> None:
        self.sink = Sink()
        self.port = free_port()
        self.auth = auth
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_require_tls"] = False
        if tls_cert is not None and tls_key is not None:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls_cert), str(tls_key))
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = True
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port, **kwargs)
        self.tls = tls_cert is not None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.auth is not None
        if (
            isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self.auth
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        cred = f"{user}:{password}@" if user else ""
        tls = "starttls" if self.tls else "none"
        return f"smtp://{cred}127.0.0.1:{self.port}?tls={tls}"

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
