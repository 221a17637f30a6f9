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

Every link's part that is the same for all readers (`BASE/l/CAMPAIGN.LINK.LINKSIG`) is written
into the variant once. A list with `track_people` follows each with one placeholder, the reader
part (`.CONTACT.READERSIG`: one keyed hash per message, mailer.engagement.tokens), the same
value after every link, so mailer.delivery.message encodes it once per message; a reader who
switched it off gets the part naming nobody. Other lists get no placeholder at all: their
messages cost what untracked ones do.
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
READER_NAME = "_reader"  # placeholders: the reader part of link tokens, the open pixel's URL
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
    replacement: Callable[[str], list[str] | None],
    pixel: str | None = None,
) -> PersonalTemplate:
    """`template` with each wrappable URL replaced by its pieces: fixed text, or a placeholder
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
            for item in new:
                if item.startswith("_"):
                    parts.append("".join(literal))
                    parts.append(item)
                    literal = []
                else:
                    literal.append(item)
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
    """What one compiled variant fills per recipient: the reader part of every link's token
    (one value, the same after every link: mailer.engagement.tokens) and the open pixel's."""

    signer: ClickSigner
    campaign_id: int
    language: str
    opted_out: frozenset[int]
    open_head: str | None  # "BASE/o/CAMPAIGN.LANGUAGE." when opens are tracked
    open_nobody: str = ""
    nobody: str = ""  # the reader part naming nobody (contact 0)

    def fill(self, values: dict[str, str], contact_id: int) -> None:
        """Put this reader's values into `values`: nothing personal when the reader switched
        per-person tracking off, or is nobody (a test send)."""
        if contact_id <= 0 or contact_id in self.opted_out:
            values[READER_NAME] = self.nobody
            if self.open_head is not None:
                values[OPEN_NAME] = self.open_nobody
            return
        values[READER_NAME] = self.signer.reader_part(self.campaign_id, self.language, contact_id)
        if self.open_head is not None:
            contact = str(contact_id)
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
        parts = {
            url: self.base
            + "/l/"
            + self.signer.link_part(self.campaign_id, link_id, personal=per_person)
            for url, (link_id, _) in rows.items()
        }
        open_head = f"{self.base}/o/{self.campaign_id}.{language}." if opens else None
        nobody = ""
        if open_head is not None:
            nobody = open_head + "0." + self.signer.open_signature(self.campaign_id, language, "0")

        def in_html(url: str) -> list[str] | None:
            found = parts.get(url)
            if found is None:
                return None
            # The link part is the same for everyone; the reader part follows it.
            return [html.escape(found, quote=True), READER_NAME] if per_person else [found]

        def in_text(url: str) -> list[str] | None:
            found = parts.get(url)
            if found is None:
                return None
            return [found, READER_NAME] if per_person else [found]

        if per_person:
            html_t = _rewrite(rendered.html, _html_urls, in_html, OPEN_NAME if opens else None)
            text_t = _rewrite(rendered.text, _text_urls, in_text)
            tracking = Tracking(
                self.signer,
                self.campaign_id,
                language,
                self.opted_out(),
                open_head,
                nobody,
                self.signer.reader_part(self.campaign_id, language, 0),
            )
            return replace(rendered, html=html_t, text=text_t), tracking
        pixel = _PIXEL.format(html.escape(nobody, quote=True)) if open_head else None
        html_t = _rewrite(rendered.html, _html_urls, in_html, pixel)
        text_t = _rewrite(rendered.text, _text_urls, in_text)
        return replace(rendered, html=html_t, text=text_t), None
