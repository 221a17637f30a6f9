"""Which links of a rendered variant go through /l/, and the rewrite (once per variant).

Wrapped: every http(s) link of the HTML part (`href` of <a> and <area>; never an image's src)
and every http(s) URL written in the text part. Never wrapped (docs/engagement.md):
- the unsubscribe and preference links, and anything else filled per recipient (placeholders
  are not literal text, so a link built from one is never seen here);
- mailer's own personal pages under base_url (/u/, /preferences/, /confirm/) and /l/, /o/;
- mailto:, tel: and every other scheme.
The view-in-browser link, the newsroom's pages and the press-kit downloads (/media/) are links
of the release like any other and are wrapped: which reporters fetched the photos is the
engagement a press office asks about most (docs/engagement.md).

Each distinct URL of a (campaign, language) is one tracked_link row, found by URL, numbered in
the order first met (HTML, then text): a variant rendered again (a run after the embargo
lifted) finds its rows again, and the redirect only ever goes to a row's URL. Rows are written
when the first sender run (or dry run) compiles the language; two processes racing retry.

A list with `track_people` gets one placeholder per link, filled per recipient with a token
naming the reader (one keyed hash per 7 links: mailer.engagement.tokens); other lists, and
readers who switched it off, get the same links for everyone, written into the variant once.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailer.config import Settings
from mailer.engagement.tokens import ClickSigner
from mailer.releases.personalise import PersonalTemplate
from mailer.store.models import Contact, Delivery, TrackedLink

# href="..." (or '...') of an <a> or <area>: premailer and lxml write double quotes.
_HREF = re.compile(
    r"""(<(?:a|area)\b[^>]*?\bhref\s*=\s*)(?:"(https?://[^"]*)"|'(https?://[^']*)')""", re.I
)
# A URL in plain text ends at white space or a bracket; trailing punctuation is the sentence's.
_TEXT_URL = re.compile(r"https?://[^\s<>\"'\[\]()]+", re.I)
_TRAILING = ".,;:!?"
LINK_NAME = "_l"  # placeholder names: _l<position>
OPEN_NAME = "_open"


def own_prefixes(settings: Settings) -> tuple[str, ...]:
    """URL beginnings never wrapped: mailer's pages that a token makes personal."""
    base = settings.base_url.rstrip("/")
    return tuple(base + p for p in ("/u/", "/preferences/", "/confirm/", "/l/", "/o/"))


def wrappable(url: str, skip: tuple[str, ...]) -> bool:
    """True for an http(s) URL that is not one of mailer's own pages."""
    low = url.lower()
    return low.startswith(("http://", "https://")) and not url.startswith(skip)


def _text_urls(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _TEXT_URL.finditer(text):
        url = m.group(0).rstrip(_TRAILING)
        yield m.start(), m.start() + len(url), url


def _html_urls(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _HREF.finditer(text):
        group = 2 if m.group(2) is not None else 3
        yield m.start(group), m.end(group), html.unescape(m.group(group))


def find_urls(rendered: Any, skip: tuple[str, ...]) -> list[str]:
    """The variant's wrappable URLs, distinct, in the order first met (HTML, then text)."""
    seen: dict[str, None] = {}
    for template, finder in ((rendered.html, _html_urls), (rendered.text, _text_urls)):
        for literal in template.parts[0::2]:
            for _, _, url in finder(literal):
                if wrappable(url, skip):
                    seen.setdefault(url, None)
    return list(seen)


class TrackedTemplate(PersonalTemplate):
    """A PersonalTemplate with link placeholders (`_l<position>`, `_open`) besides the layout's."""

    @property
    def source(self) -> str:
        out = list(self.parts)
        for i in range(1, len(out), 2):
            if not out[i].startswith("_"):
                out[i] = f"__MAILER_{out[i].upper()}__"
        return "".join(out)


def _rewrite(
    template: PersonalTemplate,
    finder: Callable[[str], Iterable[tuple[int, int, str]]],
    replacement: Callable[[str], str | None],
    pixel: str | None = None,
) -> PersonalTemplate:
    """`template` with each wrappable URL replaced: by fixed text (str) or by a placeholder
    (a name starting with "_"). `pixel`: text or placeholder put before </body>."""
    parts: list[str] = []
    for i, piece in enumerate(template.parts):
        if i % 2:
            parts.append(piece)
            continue
        literal, at = [], 0
        for start, end, url in finder(piece):
            new = replacement(url)
            if new is None:
                continue
            literal.append(piece[at:start])
            if new.startswith("_"):
                parts.append("".join(literal))
                parts.append(new)
                literal = []
            else:
                literal.append(new)
            at = end
        literal.append(piece[at:])
        parts.append("".join(literal))
    if pixel is not None:
        # Before the last </body> (else at the very end); that literal is split there.
        found = [i for i in range(0, len(parts), 2) if "</body>" in parts[i].lower()]
        i = found[-1] if found else len(parts) - 1
        cut = parts[i].lower().rfind("</body>")
        cut = cut if cut >= 0 else len(parts[i])
        head, tail = parts[i][:cut], parts[i][cut:]
        if pixel.startswith("_"):  # the image's URL is the placeholder (values are escaped)
            before, after = _PIXEL.split("{}")
            parts[i : i + 1] = [head + before, pixel, after + tail]
        else:
            parts[i] = head + pixel + tail
    return TrackedTemplate(tuple(parts), template.escape_html)


_PIXEL = (
    '<img src="{}" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px;overflow:hidden">'
)


@dataclass
class Tracking:
    """What one compiled variant fills per recipient: its link placeholders' values."""

    signer: ClickSigner
    campaign_id: int
    language: str
    heads: list[tuple[str, str]]  # (placeholder name, "BASE/l/CAMPAIGN.LINK.") by position
    aggregate: dict[str, str]  # the values naming nobody
    opted_out: frozenset[int]
    open_head: str | None  # "BASE/o/CAMPAIGN.LANGUAGE." when opens are tracked

    def fill(self, values: dict[str, str], contact_id: int) -> None:
        """Put this reader's link values into `values` (the aggregate ones when the reader
        switched per-person tracking off, or is nobody: a test send)."""
        if contact_id <= 0 or contact_id in self.opted_out:
            values.update(self.aggregate)
            return
        contact = str(contact_id)
        sigs = self.signer.signatures(self.campaign_id, self.language, contact, len(self.heads))
        for (name, head), sig in zip(self.heads, sigs, strict=True):
            values[name] = head + contact + "." + sig
        if self.open_head is not None:
            sig = self.signer.open_signature(self.campaign_id, self.language, contact)
            values[OPEN_NAME] = self.open_head + contact + "." + sig


Opener = Callable[[], AbstractContextManager[Session]]


class LinkRegistry:
    """A campaign's tracked_link rows, per language, written once (see the module's text).

    `open_session`: a context manager giving a session that commits on success (a sender run:
    `factory.begin()`), or None to use `session` as it is (a dry run, rolled back after)."""

    def __init__(
        self,
        settings: Settings,
        campaign_id: int,
        *,
        open_session: Opener | None = None,
        session: Session | None = None,
    ) -> None:
        self.settings = settings
        self.campaign_id = campaign_id
        self.open_session = open_session
        self.session = session
        self.signer = ClickSigner(settings.secret_key)
        self.skip = own_prefixes(settings)
        self.base = settings.base_url.rstrip("/")
        self.rows: dict[str, dict[str, tuple[int, int]]] = {}  # language -> url -> (id, pos)
        self._opted_out: frozenset[int] | None = None

    def _with_session(self, work: Callable[[Session], Any]) -> Any:
        if self.open_session is None:
            assert self.session is not None
            return work(self.session)
        with self.open_session() as s:
            return work(s)

    def links(self, language: str, urls: list[str]) -> dict[str, tuple[int, int]]:
        """url -> (link id, position) for these URLs, rows written where missing."""
        known = self.rows.get(language)
        if known is not None and all(u in known for u in urls):
            return known
        for attempt in range(5):
            try:
                known = self._with_session(lambda s: self._register(s, language, urls))
                break
            except IntegrityError:  # another process numbered the same position first
                if attempt == 4:
                    raise
        assert known is not None
        self.rows[language] = known
        return known

    def _register(self, s: Session, language: str, urls: list[str]) -> dict[str, tuple[int, int]]:
        query = (
            select(TrackedLink)
            .where(TrackedLink.campaign_id == self.campaign_id, TrackedLink.language == language)
            .order_by(TrackedLink.position)
        )
        rows = list(s.scalars(query))
        by_url: dict[str, tuple[int, int]] = {}
        for row in rows:
            by_url.setdefault(row.url, (row.id, row.position))
        position = rows[-1].position + 1 if rows else 0
        new = []
        for url in urls:
            if url not in by_url:
                link = TrackedLink(
                    campaign_id=self.campaign_id, language=language, position=position, url=url
                )
                s.add(link)
                new.append(link)
                position += 1
        if new:
            s.flush()
            for link in new:
                by_url[link.url] = (link.id, link.position)
        return by_url

    def opted_out(self) -> frozenset[int]:
        """This campaign's readers who switched per-person tracking off (read once a run; the
        recorder checks again when it writes, so a switch made during a run still holds)."""
        if self._opted_out is None:
            query = (
                select(Delivery.contact_id)
                .join(Contact, Contact.id == Delivery.contact_id)
                .where(Delivery.campaign_id == self.campaign_id, Contact.track_people_off)
            )
            ids = self._with_session(lambda s: [i for i in s.scalars(query) if i is not None])
            self._opted_out = frozenset(ids)
        return self._opted_out

    def wrap(self, rendered: Any, *, per_person: bool, opens: bool) -> tuple[Any, Tracking | None]:
        """The variant with its links through /l/ (and the open pixel when `opens`), and what
        CompiledVariant fills per recipient (None when nothing is personal)."""
        language = rendered.language
        urls = find_urls(rendered, self.skip)
        rows = self.links(language, urls) if urls else {}
        count = max((pos for _, pos in rows.values()), default=-1) + 1
        aggregate_sigs = self.signer.signatures(self.campaign_id, language, "0", count)
        heads = [("", "")] * count
        aggregate: dict[str, str] = {}
        for link_id, pos in rows.values():
            head = f"{self.base}/l/{self.campaign_id}.{link_id}."
            heads[pos] = (f"{LINK_NAME}{pos}", head)
            aggregate[heads[pos][0]] = head + "0." + aggregate_sigs[pos]
        used = {f"{LINK_NAME}{rows[u][1]}" for u in urls}
        heads_used = [h for h in heads if h[0] in used]
        open_head = f"{self.base}/o/{self.campaign_id}.{language}." if opens else None
        open_fixed = None
        if open_head is not None:
            aggregate[OPEN_NAME] = (
                open_head + "0." + self.signer.open_signature(self.campaign_id, language, "0")
            )
            open_fixed = _PIXEL.format(aggregate[OPEN_NAME])

        def name_of(url: str) -> str | None:
            return f"{LINK_NAME}{rows[url][1]}" if url in rows else None

        if per_person:
            html_t = _rewrite(rendered.html, _html_urls, name_of, OPEN_NAME if opens else None)
            text_t = _rewrite(rendered.text, _text_urls, name_of)
            tracking = Tracking(
                self.signer,
                self.campaign_id,
                language,
                heads_used,
                {k: v for k, v in aggregate.items() if k in used or k == OPEN_NAME},
                self.opted_out(),
                open_head,
            )
            return replace(rendered, html=html_t, text=text_t), tracking

        def fixed(url: str) -> str | None:
            name = name_of(url)
            return None if name is None else html.escape(aggregate[name], quote=True)

        def fixed_text(url: str) -> str | None:
            name = name_of(url)
            return None if name is None else aggregate[name]

        html_t = _rewrite(rendered.html, _html_urls, fixed, open_fixed)
        text_t = _rewrite(rendered.text, _text_urls, fixed_text)
        return replace(rendered, html=html_t, text=text_t), None
