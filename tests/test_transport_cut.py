"""A connection cut in the middle of a message: `deferred` while the server cannot have the
whole message, `in_doubt` once the final dot has left this machine (docs/ledger.md).

The server is a real TCP server on 127.0.0.1 that speaks just enough SMTP and hangs up at a
scripted point, as a crashing or overloaded mail server does.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from mailer.config import Settings
from mailer.delivery.transport import Outcome, SmtpTransport

SMALL = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\nbody\n"
# Larger than every socket buffer between the two ends: the write itself must fail.
LARGE = SMALL + (b"y" * 76 + b"\n") * (16 * 1024 * 1024 // 77)


class CuttingServer:
    """Answers EHLO, MAIL and RCPT, then hangs up at `cut`:
    "rcpt" (instead of replying to RCPT), "data" (instead of replying to DATA),
    "body" (after 354 and the first bytes of the message, with a reset), or
    "dot" (after the whole message, before replying to it)."""

    def __init__(self, cut: str) -> None:
        self.cut = cut
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got_dot = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            reader = conn.makefile("rb")
            conn.sendall(b"220 cutting ESMTP\r\n")
            while line := reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-cutting\r\n250 8BITMIME\r\n")
                elif verb == b"RCPT" and self.cut == "rcpt":
                    return
                elif verb == b"DATA":
                    if self.cut == "data":
                        return
                    conn.sendall(b"354 go ahead\r\n")
                    if self.cut == "body":
                        reader.read1(1024)
                        # Reset rather than close: the sender's pending writes then fail.
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        return
                    while reader.readline() not in (b".\r\n", b""):
                        pass
                    self.got_dot = True
                    return  # "dot": the message is here, the reply never comes
                else:
                    conn.sendall(b"250 ok\r\n")

    def stop(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[CuttingServer]:
    srv = CuttingServer(request.param)
    yield srv
    srv.stop()


def send(server: CuttingServer, message: bytes) -> Outcome:
    settings = Settings(transport="smtp", smtp_url=f"smtp://127.0.0.1:{server.port}?tls=none")
    conn = SmtpTransport(settings).open()
    try:
        return conn.send("bounces@example.org", "b@example.org", message).outcome
    finally:
        conn.close()


@pytest.mark.parametrize("server", ["rcpt", "data"], indirect=True)
def test_a_cut_before_data_is_accepted_is_deferred(server: CuttingServer) -> None:
    assert send(server, SMALL) == Outcome.DEFERRED


@pytest.mark.parametrize("server", ["body"], indirect=True)
def test_a_cut_that_makes_the_write_fail_is_deferred(server: CuttingServer) -> None:
    """The final dot is the last thing written: a write that fails never sent it."""
    assert send(server, LARGE) == Outcome.DEFERRED


@pytest.mark.parametrize("server", ["body"], indirect=True)
def test_a_cut_after_the_body_was_handed_over_is_in_doubt(server: CuttingServer) -> None:
    """A small message fits in the socket buffers: the write succeeds, dot included, before
    the server hangs up. This machine cannot tell whether the dot arrived: in doubt."""
    assert send(server, SMALL) == Outcome.IN_DOUBT


@pytest.mark.parametrize("server", ["dot"], indirect=True)
def test_a_cut_after_the_dot_is_in_doubt(server: CuttingServer) -> None:
    assert send(server, SMALL) == Outcome.IN_DOUBT
    assert server.got_dot
