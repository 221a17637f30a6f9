"""A fast SMTP sink in its own process for the many-worker tests: accepts every message and
appends its Message-ID to a file, so the test can count duplicates and missing messages.

    python tests/support/fast_sink.py IDS_FILE      # prints "PORT <n>", then serves until killed

aiosmtpd (tests/support/smtp.py) parses every line in Python and shares the test's interpreter;
20,000 messages through it take minutes. This one reads DATA in chunks.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import BinaryIO

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.I | re.M)


class Session(asyncio.Protocol):
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 fast-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                message, self.buffer = self.buffer[:end], self.buffer[end + 5 :]
                self.in_data = False
                m = _MESSAGE_ID.search(message)
                self.out.write((m.group(1) if m else b"-") + b"\n")
                self.out.flush()
                self.transport.write(b"250 2.0.0 Ok\r\n")
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-fast-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 Ok\r\n")


async def serve(path: str) -> None:
    with open(path, "ab") as out:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Session(out), "127.0.0.1", 0)
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
