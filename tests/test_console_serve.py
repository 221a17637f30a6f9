"""Where the console is served: with the subscriber pages, on an address of its own
(`console_listen`), or not at all (`console = false`); and upload limits per route."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mailer.config import Settings
from mailer.web import create_app
from tests.support.config import write_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(150):
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            assert proc.poll() is None, proc.stderr and proc.stderr.read().decode()
            time.sleep(0.1)
    raise AssertionError(f"nothing answers at {url}")


@pytest.mark.db
@pytest.mark.slow
def test_console_listen_serves_the_console_apart(settings: Settings, tmp_path: Path) -> None:
    public, private = _free_port(), _free_port()
    write_config(
        tmp_path,
        {"database_url": settings.database_url, "console_listen": f"127.0.0.1:{private}"},
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer",
            "--config",
            str(tmp_path / "mailer.toml"),
            "serve",
            "--port",
            str(public),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(f"http://127.0.0.1:{public}/healthz", proc)
        _wait(f"http://127.0.0.1:{private}/admin/login", proc)
        # The public address has the subscriber pages and no console.
        assert _status(f"http://127.0.0.1:{public}/subscribe") == 200
        assert _status(f"http://127.0.0.1:{public}/admin/login") == 404
        # The console's address has the console and no subscriber pages.
        assert _status(f"http://127.0.0.1:{private}/admin/login") == 200
        assert _status(f"http://127.0.0.1:{private}/subscribe") == 404
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.db
def test_console_false_turns_it_off(settings: Settings) -> None:
    off = create_app(dataclasses.replace(settings, console=False)).test_client()
    assert off.get("/admin/login").status_code == 404
    assert off.get("/subscribe").status_code == 200
    on = create_app(settings).test_client()
    assert on.get("/admin/login").status_code == 200


@pytest.mark.db
def test_only_the_upload_route_takes_big_bodies(settings: Settings) -> None:
    small = dataclasses.replace(settings, web_max_body_bytes=1000, console_max_upload_bytes=100_000)
    client = create_app(small).test_client()
    big = {"email": "a@example.org", "password": "x" * 5000}
    # The sign-in form is public: it keeps the subscriber pages' limit.
    assert client.post("/admin/login", data=big).status_code == 413
    page = client.post("/admin/login", data=big)
    assert "text/html" in page.headers["Content-Type"]
