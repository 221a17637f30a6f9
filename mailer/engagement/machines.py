"""The machine-click rule, as pure functions (docs/engagement.md, "Machine clicks").

Mail scanners follow the links of a message to check them, often before any person sees it.
A click is counted apart, as a machine's, when any of these holds (the reason is stored):
- "head": the request is HEAD (browsers follow a link with GET; link checkers ask HEAD);
- "agent": its User-Agent is missing or names a known robot, scanner or link previewer;
- "network": it comes from a network a mail-security vendor documents for its scanners;
- "early": it arrives within `click_machine_seconds` (default 10) of the message's delivery
  (sent_at): no person opens, reads and clicks that fast. Only for clicks that name a reader,
  since only they lead to a delivery; aggregate clicks name no message;
- "sweep": the same message has SWEEP_LINKS (3) or more of its different links followed within
  SWEEP_SECONDS (2) of each other, or every one of its links when it has two: a scanner
  walking the message. "The same message" is the reader named by the token, or, for a click
  naming nobody, the same client address and User-Agent (kept in memory only, as a hash).

The lists below are short on purpose: the networks and agents seen most in press mail, each
with the vendor's own documentation as its source. A click they miss still meets the other
rules (most scanners are early, HEAD, or sweep).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

HEAD, AGENT, NETWORK, EARLY, SWEEP = "head", "agent", "network", "early", "sweep"
SWEEP_SECONDS = 2.0
SWEEP_LINKS = 3

# User agents of robots, scanners and link previewers (case-insensitive, anywhere in the value).
# The generic words come from the issue; the names from the vendors' documentation:
# - GoogleImageProxy: Gmail's image proxy, which fetches every image (the open pixel) itself
#   (support.google.com/mail/answer/145919): an open through it is never a person's own;
# - BingPreview, Slackbot, facebookexternalhit, Twitterbot, WhatsApp, LinkedInBot: link
#   previews (each vendor's crawler page);
# - Barracuda, Mimecast, Proofpoint, Symantec, Trend Micro, SafeLinks: mail gateways' URL
#   scanners, which often announce themselves;
# - python-requests, curl, Wget, Go-http-client, okhttp, Java/, HeadlessChrome, PhantomJS:
#   scripts and headless browsers.
_AGENTS = re.compile(
    r"bot|crawler|spider|preview|scanner|python-requests|curl|wget|go-http-client|okhttp|"
    r"java/|headlesschrome|phantomjs|googleimageproxy|facebookexternalhit|whatsapp|"
    r"barracuda|mimecast|proofpoint|symantec|trend ?micro|safelinks|checker|validator",
    re.I,
)

# Networks mail-security services fetch links from (sources: each vendor's published ranges).
NETWORKS: dict[str, tuple[str, ...]] = {
    # Microsoft Exchange Online Protection / Defender for Office 365 (Safe Links):
    # learn.microsoft.com/microsoft-365/enterprise/urls-and-ip-address-ranges (Exchange, ID 10).
    "Microsoft": ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"),
    # Mimecast: community.mimecast.com, "Mimecast data centers and URLs" (US and EU ranges).
    "Mimecast": (
        "205.139.110.0/24",
        "205.139.111.0/24",
        "207.211.30.0/24",
        "207.211.31.0/25",
        "91.220.42.0/24",
        "146.101.78.0/24",
        "195.130.217.0/24",
    ),
    # Proofpoint (pphosted.com): help.proofpoint.com, "Proofpoint IP ranges".
    "Proofpoint": ("148.163.128.0/19", "67.231.144.0/20", "208.84.64.0/22"),
    # Barracuda Email Security Service: campus.barracuda.com, "Barracuda IP ranges".
    "Barracuda": ("64.235.144.0/20", "209.222.80.0/21"),
    # Google's fetchers (image proxy, link checks): developers.google.com/search/apis/ipranges.
    "Google": ("66.249.64.0/19", "66.102.0.0/20"),
}
_NETS = tuple(ipaddress.ip_network(n) for ranges in NETWORKS.values() for n in ranges)


def agent_is_machine(user_agent: str | None) -> bool:
    """A missing User-Agent, or one naming a robot, scanner or previewer."""
    return not (user_agent or "").strip() or _AGENTS.search(user_agent or "") is not None


@lru_cache(maxsize=4096)
def network_is_machine(address: str | None) -> bool:
    """The client address is in a scanner network (NETWORKS)."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in _NETS)


def request_reason(method: str, user_agent: str | None, address: str | None) -> str:
    """What the request alone says: HEAD, agent or network ("" when it looks like a person)."""
    if method.upper() == "HEAD":
        return HEAD
    if agent_is_machine(user_agent):
        return AGENT
    if network_is_machine(address):
        return NETWORK
    return ""


def is_early(at: datetime, sent_at: datetime | None, seconds: int) -> bool:
    """The click came within `seconds` of the delivery (0: the rule is off)."""
    if sent_at is None or seconds <= 0:
        return False
    return at - sent_at <= timedelta(seconds=seconds)


@dataclass(frozen=True)
class Seen:
    """One click as the sweep rule sees it."""

    key: str  # the message: "p:CAMPAIGN:CONTACT" or "a:CAMPAIGN:hash of address and agent"
    link_id: int
    at: float  # seconds (epoch)
    links_in_message: int = 0  # how many links the message has (0: unknown)


def sweeps(clicks: Sequence[Seen]) -> set[int]:
    """The indexes of `clicks` that are part of a sweep: within SWEEP_SECONDS of each other,
    the same message's clicks reach SWEEP_LINKS different links (or all of a message's links,
    when it has 2 or more)."""
    by_key: dict[str, list[int]] = {}
    for i, c in enumerate(clicks):
        by_key.setdefault(c.key, []).append(i)
    found: set[int] = set()
    for indexes in by_key.values():
        if len(indexes) < 2:
            continue
        indexes.sort(key=lambda i: clicks[i].at)
        total = clicks[indexes[0]].links_in_message
        need = min(SWEEP_LINKS, total) if total >= 2 else SWEEP_LINKS
        # A window sliding over the message's clicks in time order, counting its links.
        counts: dict[int, int] = {}
        start = 0
        for end, i in enumerate(indexes):
            counts[clicks[i].link_id] = counts.get(clicks[i].link_id, 0) + 1
            while clicks[i].at - clicks[indexes[start]].at > SWEEP_SECONDS:
                gone = clicks[indexes[start]].link_id
                counts[gone] -= 1
                if not counts[gone]:
                    del counts[gone]
                start += 1
            if len(counts) >= need:
                found.update(indexes[start : end + 1])
    return found
