"""Atom feeds (per language, and per language and list) and the sitemap, as XML text.

Built with ElementTree, so every value is escaped; characters XML cannot hold (C0 controls a
release file might carry) are dropped first. An entry's content is the release page's article
(full HTML, as type="html"); its id is its page URL, which never changes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup

from mailer.newsroom import catalog, links, state
from mailer.newsroom.pages import Newsroom
from mailer.newsroom.words import words_for
from mailer.store.models import MailingList, Publication

ATOM = "http://www.w3.org/2005/Atom"
SITEMAP = "http://www.sitemaps.org/schemas/sitemap/0.9"
XHTML = "http://www.w3.org/1999/xhtml"
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _sub(parent: ET.Element, tag: str, text: str = "", **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, attrs)
    if text:
        node.text = _clean(text)
    return node


def atom(
    newsroom: Newsroom,
    entries: Sequence[Publication],
    language: str,
    *,
    now: datetime,
    topic: MailingList | None = None,
) -> str:
    """The Atom feed of `entries` (newest first) for readers of `language`."""
    settings = newsroom.settings
    words = words_for(language)
    org = newsroom.org(language)["name"]
    if topic is None:
        title = words["feed_title"].format(org=org)
        self_path = links.feed_path(settings, language)
        home = links.index_path(settings, language)
    else:
        name = topic.local_name(settings.default_language).get(language)
        title = words["feed_title_list"].format(org=org, list=name)
        self_path = links.feed_path(settings, language, topic.slug)
        home = links.index_path(settings, language) + f"?list={topic.slug}"
    feed = ET.Element("feed", {"xmlns": ATOM, "xml:lang": language})
    _sub(feed, "id", links.absolute(settings, self_path))
    _sub(feed, "title", title)
    changes = [state.last_change(pub) for pub in entries]
    known = [moment for moment in changes if moment is not None]
    # An empty feed still needs an <updated>: the time it was asked for.
    _sub(feed, "updated", _stamp(max(known) if known else now))
    _sub(
        feed,
        "link",
        rel="self",
        type="application/atom+xml",
        href=links.absolute(settings, self_path),
    )
    _sub(feed, "link", rel="alternate", type="text/html", href=links.absolute(settings, home))
    author = _sub(feed, "author")
    _sub(author, "name", org)
    if org_url := settings.website:
        _sub(author, "uri", org_url)
    for pub, changed in zip(entries, changes, strict=True):
        since = state.visible_from(pub)
        assert since is not None and changed is not None  # public entries only
        entry = newsroom.entry(pub, language)
        url = links.absolute(settings, entry.url)
        node = _sub(feed, "entry")
        _sub(node, "id", url)
        _sub(node, "title", entry.title, type="text")
        _sub(node, "link", rel="alternate", type="text/html", href=url, hreflang=entry.lang)
        _sub(node, "published", _stamp(since))
        _sub(node, "updated", _stamp(changed))
        if entry.summary:
            _sub(node, "summary", entry.summary, type="text")
        html = _notes_html(newsroom, pub, entry.lang) + newsroom.article(pub.release, entry.lang)
        content = _sub(node, "content", str(html), type="html")
        content.set("xml:lang", entry.lang)
    body = ET.tostring(feed, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"


def _notes_html(newsroom: Newsroom, pub: Publication, language: str) -> Markup:
    """The page's correction notes, above the article, as the page shows them."""
    out = Markup("")
    for note in newsroom.notes(pub, language):
        if note["is_update"]:
            out += Markup("<p>{}</p>").format(note["text"])
        else:
            out += Markup("<p><strong>{}</strong> {}</p>").format(note["label"], note["text"])
    return out


def sitemap(newsroom: Newsroom, entries: Sequence[Publication]) -> str:
    """sitemap.xml: the index of each language and every language version of every public
    release, each with its other versions as xhtml:link alternates."""
    settings = newsroom.settings
    urlset = ET.Element("urlset", {"xmlns": SITEMAP, "xmlns:xhtml": XHTML})
    for code in newsroom.languages():
        node = _sub(urlset, "url")
        _sub(node, "loc", links.absolute(settings, links.index_path(settings, code)))
    for pub in entries:
        codes = catalog.languages(pub.release)
        changed = state.last_change(pub)
        for code in codes:
            node = _sub(urlset, "url")
            _sub(node, "loc", links.page_url(settings, pub, code))
            if changed is not None:
                _sub(node, "lastmod", _stamp(changed))
            if len(codes) > 1:
                for other in codes:
                    _sub(
                        node,
                        "xhtml:link",
                        rel="alternate",
                        hreflang=other,
                        href=links.page_url(settings, pub, other),
                    )
    body = ET.tostring(urlset, encoding="unicode")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n"
