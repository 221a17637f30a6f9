"""An SMTP sink in its own process for the stall tests: writes a line for every RCPT TO it
receives (before any reply) and answers every final dot after a delay, so a campaign lasts
long enough for a test to stall its senders in the middle.

    python tests/support/rcpt_sink.py LOG_FILE DELAY_SECONDS

prints "PORT <n>", then serves until killed.

Each RCPT is recorded, whether or not its message is completed: a second RCPT for an address
is a second attempt to deliver to it, which is what the tests forbid.
"""

from __future__ import annotations

import asyncio
import sys
from typing import IO


class Session(asyncio.Protocol):
    def __init__(self, out: IO[bytes], delay: float) -> None:
        self.out = out
        self.delay = delay
        self.buffer = b""
        self.in_data = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 rcpt-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    return
                self.buffer = self.buffer[end + 5 :]
                self.in_data = False
                asyncio.get_running_loop().call_later(self.delay, self._accept)
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                self.transport.write(b"250-rcpt-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
            elif verb == b"RCPT":
                address = line.split(b":", 1)[1].strip().strip(b"<>").lower()
                self.out.write(address + b"\n")
                self.out.flush()
                self.transport.write(b"250 Ok\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                self.transport.write(b"250 Ok\r\n")

    def _accept(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"250 2.0.0 Ok\r\n")


async def serve(path: str, delay: float) -> None:
    with open(path, "ab") as out:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: Session(out, delay), "127.0.0.1", 0)
        print("PORT", server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], float(sys.argv[2])))
