"""A real IMAP server for the tests: Debian's dovecot on 127.0.0.1, configured in tmp_path.

Each server gets a throwaway folder (config, certificate, password file, mail), free ports for imap
(STARTTLS or plaintext) and imaps, a self-signed certificate for 127.0.0.1 (made with the openssl
command), and one user `press` with the password `secret`.
Tests that use it skip, saying why, only when dovecot is not installed
(`apt-get install -y dovecot-imapd`).
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or (
    "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
)
USER = "press"
PASSWORD = "secret"


@dataclass
class ImapServer:
    host: str
    port: int  # imap: STARTTLS offered, plaintext allowed
    ssl_port: int  # imaps
    ca_file: Path  # the self-signed certificate, to trust it
    log: Path

    def url(
        self,
        folder: str = "INBOX",
        *,
        password: str = PASSWORD,
        scheme: str = "imaps",
        **options: str,
    ) -> str:
        port = self.ssl_port if scheme == "imaps" else self.port
        query = "&".join(f"{k}={v}" for k, v in {"ca_file": str(self.ca_file), **options}.items())
        return f"{scheme}://{USER}:{password}@{self.host}:{port}/{folder}?{query}"

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL(self.host, self.ssl_port, ssl_context=context, timeout=30)
        conn.login(USER, PASSWORD)
        return conn

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            typ, data = conn.append(
                folder, None, None, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            )
            assert typ == "OK", data
        finally:
            conn.logout()

    def folder(self, name: str = "INBOX") -> list[tuple[bytes, bytes]]:
        """(flags, message bytes) of every message in `name`, or [] if it does not exist."""
        conn = self.client()
        try:
            typ, _ = conn.select(f'"{name}"', readonly=True)
            if typ != "OK":
                return []
            typ, data = conn.uid("SEARCH", "ALL")
            out = []
            for uid in data[0].split():
                typ, fetched = conn.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                for item in fetched:
                    if isinstance(item, tuple):
                        out.append((item[0], item[1]))
            return out
        finally:
            conn.logout()

    def folders(self) -> list[str]:
        conn = self.client()
        try:
            _, data = conn.list()
            return [
                d.decode().rsplit(' "." ', 1)[-1].strip('"') for d in data if isinstance(d, bytes)
            ]
        finally:
            conn.logout()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"dovecot did not listen on {port}: {log.read_text(errors='replace')}")


def _mail_owner() -> tuple[int, int]:
    """Dovecot refuses uid 0 for mail: as root the mail files belong to `nobody`."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _config(folder: Path, home: Path, port: int, ssl_port: int, uid: int, gid: int) -> str:
    me = pwd.getpwuid(os.getuid()).pw_name
    login_user = "dovenull" if os.getuid() == 0 else me
    internal_user = "dovecot" if os.getuid() == 0 else me
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{folder}/cert.pem
ssl_key = <{folder}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={home}/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = {min(uid, 1)}
first_valid_gid = {min(gid, 1)}
default_login_user = {login_user}
default_internal_user = {internal_user}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


@pytest.fixture
def imap_server() -> Iterator[ImapServer]:
    """A dovecot IMAP server of its own for one test, stopped afterwards."""
    if DOVECOT is None:
        pytest.skip("dovecot is not installed (apt-get install -y dovecot-imapd)")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (needed for the test certificate)")
    # Outside tmp_path, which is private to its owner: dovecot's auth process runs as the
    # `dovecot` user and must read the password file, and mail is stored as `nobody` (as root).
    folder = Path(tempfile.mkdtemp(prefix="mailer-imap-"))
    folder.chmod(0o755)
    (folder / "run").mkdir()
    (folder / "state").mkdir()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(folder / "key.pem"),
            "-out",
            str(folder / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    (folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    uid, gid = _mail_owner()
    home = folder / "home"
    home.mkdir()
    os.chown(home, uid, gid)
    port, ssl_port = _free_port(), _free_port()
    config = folder / "dovecot.conf"
    config.write_text(_config(folder, home, port, ssl_port, uid, gid))
    log = folder / "dovecot.log"
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(port, proc, log)
        _wait_for(ssl_port, proc, log)
        yield ImapServer("127.0.0.1", port, ssl_port, folder / "cert.pem", log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
