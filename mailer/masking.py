"""Hiding credentials in anything shown or logged: settings, URLs in messages and labels.

One function, `mask_url`, for every URL mailer prints (config show, errors, the bounce
mailbox's label, the SMTP transport's name); `mask_secret` for a secret setting; `scrub` for a
message someone else wrote about the URL (a database driver's error), which may quote the part
of a password that its own parser took for the host.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote


def mask_secret(name: str, value: str) -> str:
    """Hide a secret; for URLs keep everything but the secrets so the value stays useful."""
    if name.endswith("_url") and "://" in value:
        return mask_url(value)
    return "********"


MASK = "****"
# Query parameters whose value is a credential: password, pass, passwd, pwd, secret, token,
# key (api_key, sslkey...), auth, credential(s), sig(nature). Matched anywhere in the name.
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|credential|sig", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with every credential replaced by ****: what any message or log may show.

    Masked: the password of the userinfo (user:PASSWORD@host), the value of every query
    parameter named like a credential (?password=, &api_key=, ...) and the whole fragment.
    Done on the text, not with urlsplit, because a password holding '#', '/', '?' or '@' can be
    read two ways: with the userinfo running to the LAST '@' (what the author meant), and with
    the host ending at the first '/', '?' or '#' (what URL parsers do, so a '?' starts a query).
    Whatever either reading would hide is hidden: an odd URL loses more than its password (its
    host, when the password holds '#'), never less."""
    scheme, sep, rest = url.partition("://")
    start = len(scheme) + len(sep) if sep else 0
    hidden = [False] * len(url)

    def hide(begin: int, end: int) -> None:
        for i in range(start + begin, start + end):
            hidden[i] = True

    if not sep:
        rest = url
    # The author's reading: the userinfo runs to the last '@'.
    at = rest.rfind("@")
    colon = rest.find(":", 0, at) if at > 0 else -1
    if colon >= 0:
        hide(colon + 1, at)
    _hide_query(rest, at + 1, hide)
    # The parser's reading: the host ends at the first '/', '?' or '#'.
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, end)
    colon = rest.find(":", 0, at) if at > 0 else -1
    if colon >= 0:
        hide(colon + 1, at)
    _hide_query(rest, end, hide)
    out: list[str] = []
    for i, char in enumerate(url):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append(MASK)
    return "".join(out)


def _hide_query(text: str, begin: int, hide: Callable[[int, int], None]) -> None:
    """Hide the credential-like query values and the fragment of text[begin:]."""
    fragment = text.find("#", begin)
    if fragment >= 0:
        hide(fragment + 1, len(text))
    else:
        fragment = len(text)
    question = text.find("?", begin, fragment)
    if question < 0:
        return
    pos = question + 1
    for param in text[question + 1 : fragment].split("&"):
        name, eq, value = param.partition("=")
        if eq and value and _SECRET_PARAM.search(unquote(name)):
            hide(pos + len(name) + 1, pos + len(param))
        pos += len(param) + 1


def _credentials(url: str) -> list[str]:
    """Every text in `url` that is (part of) a credential, longest first, decoded and not."""
    _, sep, rest = url.partition("://")
    if not sep:
        rest = url
    found: set[str] = set()
    at = rest.rfind("@")
    colon = rest.find(":", 0, at) if at > 0 else -1
    if colon >= 0:
        password = rest[colon + 1 : at]
        # A parser that ends the userinfo at the FIRST '@' reads the rest as the host, and its
        # errors quote that host: each '@'-separated piece is a secret of its own.
        found.update([password, *password.split("@")])
    query = rest.partition("?")[2].partition("#")[0]
    for param in query.split("&"):
        name, eq, value = param.partition("=")
        if eq and value and _SECRET_PARAM.search(unquote(name)):
            found.add(value)
    found.update([unquote(f) for f in found])
    # Three characters at least: masking "a" would garble the message, not protect anything.
    return sorted((f for f in found if len(f) >= 3), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` (an error a library wrote about `url`) with every credential of `url` hidden."""
    for secret in _credentials(url):
        text = text.replace(secret, MASK)
    return text
