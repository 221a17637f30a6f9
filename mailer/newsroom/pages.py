"""The newsroom's HTML: release pages (public, preview, view-in-browser), the withdrawn page and
the index, from templates/newsroom/ (a file of the same name in templates/newsroom/ beside
mailer.toml wins).

A release is rendered with the email's own layout values (mailer.releases.render.layout_context:
the same Markdown, labels, dateline, contact block and About text) and never with anything
personal: the page template has no name, address, token or unsubscribe link to show. The
article of each release version and language is rendered once per process (`Newsroom` keeps
it), since a stored release never changes.

Over 400 lines on purpose: the page, the index, the preview and the withdrawn page share one
context (links, hreflang, cards) that must not drift apart between them.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)
from markupsafe import Markup

from mailer.config import Settings
from mailer.localtext import in_language
from mailer.newsroom import catalog, links, state
from mailer.newsroom.words import language_name, og_locale, words_for
from mailer.releases import embargo as embargo_words
from mailer.releases.markdown import preheader_text
from mailer.releases.render import format_date, layout_context
from mailer.store.models import MailingList, Publication, Release

# Markdown writes a table column's alignment as a style attribute, which the pages' CSP
# (no inline style) would block: the same alignment as a class of newsroom.css.
_ALIGN = re.compile(r' style="text-align:(left|right|center)"')


class _Shipped(BaseLoader):
    """templates/newsroom/ inside the installed package (mailer.templates)."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = importlib.resources.files("mailer.templates") / "newsroom"
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise TemplateNotFound(template)
            node = node / part
        if not node.is_file():
            raise TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), None, lambda: True


def environment(settings: Settings) -> Environment:
    """The newsroom's Jinja environment: the user's templates/newsroom/ first, then ours."""
    return Environment(
        loader=ChoiceLoader(
            [FileSystemLoader(str(Path(settings.templates_dir) / "newsroom")), _Shipped()]
        ),
        autoescape=select_autoescape(["html", "xml"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class Entry:
    """One release in an index or a feed, in the language version its readers get."""

    url: str
    lang: str
    title: str
    summary: str
    category: str
    date_text: str
    date_iso: str


class _Lru:
    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = make()
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


class Newsroom:
    """Renders one organisation's newsroom pages (one per web app: its settings never change)."""

    def __init__(self, settings: Settings, cache_size: int = 512) -> None:
        self.settings = settings
        self.env = environment(settings)
        self.cache = _Lru(cache_size)
        css = self.stylesheet()
        version = hashlib.sha256(css.encode("utf-8")).hexdigest()[:12]
        self.stylesheet_url = f"{links.stylesheet_path(settings)}?v={version}"

    # --- shared pieces --------------------------------------------------------------------------

    def stylesheet(self) -> str:
        loader = self.env.loader
        assert loader is not None
        source, _, _ = loader.get_source(self.env, "newsroom.css")
        return source

    def when(self, moment: datetime, language: str) -> str:
        """A time as readers of `language` write it, in the organisation's zone, zone named."""
        return embargo_words.when_text(moment, self.settings, language)

    def org(self, language: str) -> dict[str, Any]:
        s = self.settings
        website = s.website
        label = re.sub(r"^https?://(www\.)?", "", website).rstrip("/")
        return {
            "name": in_language(s.organisation_name, language, s.default_language),
            "postal_address": in_language(s.postal_address, language, s.default_language),
            "website": website,
            "website_label": label,
            "social": [{"label": k, "url": v} for k, v in s.social.items()],
        }

    def languages(self) -> list[str]:
        """The index languages: the languages the organisation writes in."""
        return list(dict.fromkeys([self.settings.default_language, *self.settings.languages]))

    def _base(self, language: str) -> dict[str, Any]:
        return {
            "lang": language,
            "words": words_for(language),
            "org": self.org(language),
            "stylesheet": self.stylesheet_url,
            "home": links.index_path(self.settings, language),
            "indexable": True,
            "canonical": "",
            "alternates": [],
            "feeds": [
                {
                    "title": words_for(language)["feed"],
                    "url": links.feed_path(self.settings, language),
                }
            ],
            "language_links": [],
        }

    def _render(self, template: str, context: Mapping[str, Any]) -> str:
        return self.env.get_template(template).render(context)

    # --- one release ----------------------------------------------------------------------------

    def _layout(self, release: Release, language: str) -> dict[str, Any]:
        """The email layout's values for one language of a stored release (cached)."""

        def make() -> dict[str, Any]:
            source = catalog.parsed(release)
            context = layout_context(source, language, self.settings)
            context["body"] = Markup(_ALIGN.sub(r' class="align-\1"', str(context["body"])))
            context["downloads"] = downloads(context.get("downloads"))
            context["words"] = words_for(language)
            meta = source.variants[language].meta
            context["summary_text"] = meta.summary or preheader_text(source.variants[language])
            return context

        value: dict[str, Any] = self.cache.get(
            ("layout", release.slug, release.content_hash, language), make
        )
        return value

    def article(self, release: Release, language: str) -> Markup:
        """The release as the page and the feeds show it (cached per version and language)."""

        def make() -> Markup:
            return Markup(self._render("article.html", self._layout(release, language)))

        value: Markup = self.cache.get(
            ("article", release.slug, release.content_hash, language), make
        )
        return value

    def entry(self, pub: Publication, wanted: str) -> Entry:
        """How an index or feed lists `pub` for readers of `wanted`."""
        language = catalog.variant_for(pub.release, wanted)
        layout = self._layout(pub.release, language)
        since = state.visible_from(pub)
        if layout["date_text"]:
            date_text, date_iso = layout["date_text"], layout["date_iso"]
        elif since is not None:
            local = since.astimezone(embargo_words.organisation_zone(self.settings)).date()
            date_text, date_iso = format_date(local, language), local.isoformat()
        else:
            date_text, date_iso = "", ""
        return Entry(
            url=links.page_path(self.settings, pub, language),
            lang=language,
            title=str(layout["title"]),
            summary=str(layout["summary_text"]),
            category=str(layout["category"]),
            date_text=date_text,
            date_iso=date_iso,
        )

    def release_page(
        self,
        pub: Publication,
        release: Release,
        language: str,
        *,
        now: datetime,
        preview_key: str | None = None,
        view_token: str | None = None,
    ) -> str:
        """A release page. Public (`pub` is public and shows `release`), a preview
        (`preview_key`: marked, not indexed) or a view-in-browser page (`view_token`)."""
        settings = self.settings
        layout = self._layout(release, language)
        variants = catalog.languages(release)
        public = preview_key is None and view_token is None

        def url_of(code: str) -> str:
            if preview_key is not None:
                return links.preview_path(settings, pub, code, preview_key)
            if view_token is not None:
                return links.view_path(settings, view_token, code)
            return links.page_path(settings, pub, code)

        context = self._base(language)
        words = context["words"]
        context["language_links"] = [
            {
                "code": code,
                "name": language_name(code),
                "url": url_of(code),
                "current": code == language,
            }
            for code in variants
        ]
        context["others"] = [
            {
                "code": code,
                "name": language_name(code),
                "url": url_of(code),
                "title": self._layout(release, code)["title"],
            }
            for code in variants
            if code != language
        ]
        since = state.visible_from(pub)
        image = layout["image"]
        if public:
            context["canonical"] = links.page_url(settings, pub, language)
            context["alternates"] = [
                {"hreflang": code, "url": links.page_url(settings, pub, code)} for code in variants
            ] + [{"hreflang": "x-default", "url": links.page_url(settings, pub, variants[0])}]
        else:
            context["indexable"] = False
        context["og"] = {
            "title": layout["title"],
            "description": layout["summary_text"],
            "image": image,
            "locale": og_locale(language),
            "locale_alternates": [og_locale(code) for code in variants if code != language],
            "published": since.isoformat() if public and since is not None else "",
            "modified": "",
        }
        context["banner"] = self._banner(pub, release, language, now, preview=preview_key)
        context["notes"] = (
            self.notes(pub, language) if public or pub.release_id == release.id else []
        )
        if public and context["notes"]:
            changed = state.last_change(pub)
            context["og"]["modified"] = changed.isoformat() if changed else ""
        context["published"] = (
            words["published"].format(when=self.when(since, language))
            if public and since is not None
            else ""
        )
        context["article"] = self.article(release, language)
        return self._render("release.html", context)

    def _banner(
        self, pub: Publication, release: Release, language: str, now: datetime, preview: str | None
    ) -> dict[str, str] | None:
        until = embargo_words.stored_embargo(release.front_matter)
        if embargo_words.is_ahead(until, now):
            assert until is not None
            return embargo_words.banner(until, self.settings, language).as_context()
        if preview is not None and not state.is_public(pub, now):
            words = words_for(language)
            return {"title": words["preview_title"], "note": words["preview_note"]}
        return None

    def notes(self, pub: Publication, language: str) -> list[dict[str, Any]]:
        """The page's correction and update notes, oldest first, in `language`."""
        words = words_for(language)
        out = []
        for note in state.corrections(pub):
            when = self.when(note.at, language)
            if note.update:
                out.append(
                    {"is_update": True, "label": "", "text": words["update"].format(when=when)}
                )
            else:
                label = words["correction"].format(when=when)
                out.append({"is_update": False, "label": label, "text": note.note})
        return out

    def withdrawn_page(self, pub: Publication, language: str) -> str:
        context = self._base(language)
        assert pub.withdrawn_at is not None
        context["indexable"] = False
        context["withdrawn_on"] = context["words"]["withdrawn_on"].format(
            when=self.when(pub.withdrawn_at, language)
        )
        context["note"] = pub.withdrawn_note
        return self._render("withdrawn.html", context)

    # --- the index ------------------------------------------------------------------------------

    def index_page(
        self,
        page: catalog.IndexPage,
        language: str,
        *,
        year: int | None,
        topic: MailingList | None,
    ) -> str:
        settings = self.settings
        context = self._base(language)
        words = context["words"]
        org = context["org"]["name"]
        topic_name = topic.local_name(settings.default_language).get(language) if topic else ""
        context["heading"] = (
            f"{words['newsroom_of'].format(org=org)}: {topic_name}"
            if topic is not None
            else words["newsroom_of"].format(org=org)
        )
        path = links.index_path(settings, language)
        context["action"] = path
        filters = {"year": year, "list": topic.slug if topic else None}

        def at(number: int, code: str = language) -> str:
            query = {k: v for k, v in {**filters, "page": number}.items() if v and v != 1}
            target = links.index_path(settings, code)
            return target + ("?" + urlencode(query) if query else "")

        first = page.page == 1 and year is None
        context["indexable"] = first
        context["canonical"] = links.absolute(settings, at(page.page)) if first else ""
        if first:
            context["alternates"] = [
                {"hreflang": code, "url": links.absolute(settings, at(1, code))}
                for code in self.languages()
            ]
        context["language_links"] = [
            {
                "code": code,
                "name": language_name(code),
                "url": at(1, code),
                "current": code == language,
            }
            for code in self.languages()
        ]
        if topic is not None:
            context["feeds"] = [
                *context["feeds"],
                {
                    "title": words["feed_of_list"].format(list=topic_name),
                    "url": links.feed_path(settings, language, topic.slug),
                },
            ]
        context.update(
            entries=[self.entry(pub, language) for pub in page.entries],
            years=page.years,
            year=year,
            topics=[
                {"slug": ml.slug, "name": ml.local_name(settings.default_language).get(language)}
                for ml in page.lists
            ],
            list_slug=topic.slug if topic else "",
            pages=page.pages,
            page_of=words["page_of"].format(page=page.page, pages=page.pages),
            newer=at(page.page - 1) if page.page > 1 else "",
            older=at(page.page + 1) if page.page < page.pages else "",
        )
        return self._render("index.html", context)


def downloads(items: Iterable[Any] | None) -> list[dict[str, str]]:
    """The release's Downloads (what mailer's press kit gives the layout: dicts or objects with
    `url`, `name` and maybe `note`), as the article shows them; none without a press kit."""
    out = []
    for item in items or []:

        def field(name: str, item: Any = item) -> str:
            value = item.get(name) if isinstance(item, Mapping) else getattr(item, name, "")
            return str(value or "")

        if field("url"):
            out.append(
                {"url": field("url"), "name": field("name") or field("url"), "note": field("note")}
            )
    return out
