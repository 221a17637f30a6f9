"""Running `mailer` on a pseudo-terminal, to answer its y/N questions as a person would."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Sequence


def answer_in_terminal(args: Sequence[str], answer: str, *, wait: float = 120.0) -> str:
    """Run `python -m mailer ARGS` with a terminal as stdin and stdout, type `answer` at the
    first y/N question, and return everything it wrote (the question included).

    `wait` only keeps a hung command from hanging the suite; nothing is measured."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )
    os.close(slave)
    out = b""
    answered = False
    give_up = time.monotonic() + wait
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the command ended and closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if not answered and b"[y/N]" in out:
                    os.write(master, answer.encode() + b"\n")
                    answered = True
            elif proc.poll() is not None:
                break
            if time.monotonic() > give_up:
                raise AssertionError(f"mailer {' '.join(args)} did not finish: {out.decode()}")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    return out.decode("utf-8", "replace").replace("\r\n", "\n")
