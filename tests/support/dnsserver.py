"""A real DNS server on 127.0.0.1 (dnslib, UDP and TCP on one free port) serving a zone that
each test builds: `mailer doctor` asks it through the dns_resolver setting."""

from __future__ import annotations

import socket
import threading
from collections import defaultdict
from typing import Any

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A
from dnslib.server import DNSLogger, DNSServer

Records = dict[tuple[str, str], list[Any]]


class Zone:
    """Records by (name, type); a name without any record answers NXDOMAIN."""

    def __init__(self) -> None:
        self.records: Records = defaultdict(list)
        self.lock = threading.Lock()
        self.asked: list[tuple[str, str]] = []

    def txt(self, name: str, *strings: str) -> Zone:
        """One TXT record; several strings make one record split the way long ones are."""
        self.records[(name.lower(), "TXT")].append(TXT([s.encode() for s in strings]))
        return self

    def a(self, name: str, *addresses: str) -> Zone:
        for address in addresses:
            rd = AAAA(address) if ":" in address else A(address)
            self.records[(name.lower(), "AAAA" if ":" in address else "A")].append(rd)
        return self

    def mx(self, name: str, host: str, preference: int = 10) -> Zone:
        self.records[(name.lower(), "MX")].append(MX(host, preference))
        return self

    def drop(self, name: str, rtype: str) -> Zone:
        self.records.pop((name.lower(), rtype), None)
        return self

    def replace_txt(self, name: str, *strings: str) -> Zone:
        return self.drop(name, "TXT").txt(name, *strings)

    # dnslib's resolver interface
    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            self.asked.append((qname, qtype))
            found = list(self.records.get((qname, qtype), []))
            known = any(name == qname and rds for (name, _), rds in self.records.items())
        for rd in found:
            reply.add_answer(RR(qname, getattr(QTYPE, qtype), rdata=rd, ttl=60))
        if not found and not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-data,-recv,-send", prefix=False)


class DnsServer:
    """The zone served on 127.0.0.1:port over UDP and TCP (long answers are truncated over
    UDP, and the resolver asks again over TCP)."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        for _ in range(20):
            port = _free_port()
            try:
                self.udp = DNSServer(zone, address="127.0.0.1", port=port, logger=QuietLogger())
                self.tcp = DNSServer(
                    zone, address="127.0.0.1", port=port, tcp=True, logger=QuietLogger()
                )
            except OSError:
                continue
            self.port = port
            break
        else:  # pragma: no cover
            raise RuntimeError("no free port for the DNS server")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsServer:
        self.udp.start_thread()
        self.tcp.start_thread()
        return self

    def stop(self) -> None:
        for server in (self.udp, self.tcp):
            server.stop()
            server.server.server_close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
