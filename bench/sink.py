"""A fast SMTP sink for benchmarks: accepts every message, keeps counts, stores nothing.

    python bench/sink.py [--port 0]        # prints "PORT <n>" on its first line, then serves

The test suite's aiosmtpd server parses every command and keeps every message; a benchmark wants
the sink not to be the bottleneck, so this one is a bare asyncio protocol in its own process
(its CPU is not the sender's). It answers EHLO with PIPELINING, 8BITMIME and SMTPUTF8, takes
MAIL, RCPT, DATA, RSET, NOOP and QUIT, and two commands of its own for the benchmark:
`XSTAT` answers "250 <messages> <distinct Message-IDs> <bytes>", `XRESET` zeroes the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import smtplib
import subprocess
import sys
from dataclasses import dataclass, field

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.I | re.M)


@dataclass
class Counts:
    messages: int = 0
    bytes: int = 0
    ids: set[bytes] = field(default_factory=set)


class SinkProtocol(asyncio.Protocol):
    """One SMTP session: a line-at-a-time command state machine, DATA read until CRLF.CRLF."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 bench-sink ESMTP ready\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies = []
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    break
                message, self.buffer = self.buffer[: end + 2], self.buffer[end + 5 :]
                self.in_data = False
                self._count(message)
                replies.append(b"250 2.0.0 queued\r\n")
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                break
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            reply = self._command(line)
            if reply is None:
                break
            replies.append(reply)
        if replies and self.transport is not None:
            self.transport.write(b"".join(replies))

    def _count(self, message: bytes) -> None:
        c = self.counts
        c.messages += 1
        c.bytes += len(message)
        head = message[: message.find(b"\r\n\r\n")]
        m = _MESSAGE_ID.search(head)
        if m:
            c.ids.add(m.group(1))

    def _command(self, line: bytes) -> bytes | None:
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            return (
                b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                b"250 SIZE 104857600\r\n"
            )
        if verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            return b"250 2.0.0 OK\r\n"
        if verb == b"DATA":
            self.in_data = True
            # A message ending in the same read as DATA is handled by the loop at once.
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"QUIT":
            assert self.transport is not None
            self.transport.write(b"221 2.0.0 bye\r\n")
            self.transport.close()
            return None
        if line.upper() == b"XSTAT":
            c = self.counts
            return f"250 {c.messages} {len(c.ids)} {c.bytes}\r\n".encode()
        if line.upper() == b"XRESET":
            self.counts.messages = self.counts.bytes = 0
            self.counts.ids.clear()
            return b"250 2.0.0 counts reset\r\n"
        return b"502 5.5.2 command not implemented\r\n"


async def serve(port: int) -> None:
    counts = Counts()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(counts), "127.0.0.1", port, backlog=512)
    bound = server.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


class SinkProcess:
    """The sink in a child process; `stats()` and `reset()` talk to it over SMTP."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--port", "0"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        if first[:1] != ["PORT"]:
            self.proc.kill()
            raise RuntimeError(f"the sink did not start: {first}")
        self.port = int(first[1])
        self.url = f"smtp://127.0.0.1:{self.port}?tls=none"

    def _ask(self, command: str) -> str:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as smtp:
            code, text = smtp.docmd(command)
            if code != 250:
                raise RuntimeError(f"sink: {command} -> {code} {text!r}")
            return text.decode()

    def stats(self) -> tuple[int, int, int]:
        """(messages, distinct Message-IDs, bytes) since the last reset."""
        messages, ids, size = (int(x) for x in self._ask("XSTAT").split())
        return messages, ids, size

    def reset(self) -> None:
        self._ask("XRESET")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
