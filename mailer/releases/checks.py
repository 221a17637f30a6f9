"""`release check`: what would go wrong if this release were sent now, as errors and warnings.

Errors stop a send (the CLI exits 1): a footer without a postal address, a message Gmail would
clip, a link that cannot work in email, an expiry already past. Warnings are worth a look: a
language its readers would not get, an image without alt text, a plain-http link, an embargo
already past, a subject longer than an inbox shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from mailer import clock
from mailer.config import Settings
from mailer.contacts.lists import get_list
from mailer.errors import MailerError, NotFoundError
from mailer.releases import textpart
from mailer.releases.render import (
    BodyLink,
    RenderedVariant,
    body_links,
    format_date,
    render_variant,
    sample_values,
)
from mailer.releases.source import Release, ReleaseVariant
from mailer.store.models import Contact, Subscription, SubscriptionStatus, Suppression

GMAIL_CLIP_BYTES = 102 * 1024
# Inboxes show roughly 60-70 columns of a subject on a desktop and fewer on a phone; beyond 78
# (a Hangul syllable counts two) the end of the subject is lost nearly everywhere.
SUBJECT_COLUMNS = 78
_PLAIN_SCHEMES = ("mailto", "tel", "sms")


@dataclass(frozen=True)
class Finding:
    """One problem found in a release: an error stops a send, a warning does not."""

    level: Literal["error", "warning"]
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "message": self.message}


def has_errors(findings: Sequence[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def audience_languages(session: Session, list_slugs: Sequence[str],
                       default_language: str) -> dict[str, int]:
    """Subscribed, unsuppressed contacts on any of these lists, counted once, per language."""
    list_ids = [get_list(session, slug).id for slug in list_slugs]
    if not list_ids:
        return {}
    suppressed = exists(select(Suppression.id).where(Suppression.email == Contact.email))
    # Counted by the database, one row per language: the audience may be a million contacts.
    rows = session.execute(
        select(Contact.language, func.count(func.distinct(Contact.id)))
        .join(Subscription, Subscription.contact_id == Contact.id)
        .where(Subscription.list_id.in_(list_ids),
               Subscription.status == SubscriptionStatus.SUBSCRIBED,
               ~suppressed)
        .group_by(Contact.language)
    )
    counts: Counter[str] = Counter()
    for language, n in rows:
        counts[(language or "").strip().lower() or default_language] += n
    return dict(sorted(counts.items()))


def check_release_for_lists(session: Session, release: Release, settings: Settings,
                            list_slugs: Sequence[str]) -> tuple[list[Finding], dict[str, int]]:
    """check_release with the audience of these lists; an unknown list is an error finding."""
    known: list[str] = []
    missing: list[Finding] = []
    for slug in list_slugs:
        try:
            get_list(session, slug)
            known.append(slug)
        except NotFoundError as err:
            missing.append(Finding("error", f"{release.default.where}: {err}"))
    audience = audience_languages(session, known, settings.default_language)
    findings = check_release(release, settings, audience_languages=audience)
    return sorted(missing + findings, key=lambda f: f.level != "error"), audience


def check_release(release: Release, settings: Settings, *,
                  audience_languages: Mapping[str, int] | None = None,
                  render_languages: Collection[str] | None = None,
                  list_name: str | None = None,
                  rendered_out: dict[str, RenderedVariant] | None = None) -> list[Finding]:
    """Every finding for this release with these settings (and audience, when given).

    `render_languages` limits the rendering checks to the variants that will be sent (every
    variant by default); `rendered_out` receives each variant rendered, so a send can use them
    instead of rendering (and inlining) again.
    """
    out: list[Finding] = []
    out += _settings_findings(settings, release)
    out += _date_findings(release)
    if audience_languages is not None:
        out += _language_findings(release, audience_languages)
    for lang in release.languages:
        variant = release.variants[lang]
        out += _variant_findings(variant, settings)
        if render_languages is not None and lang not in render_languages:
            continue
        try:
            rendered = render_variant(release, lang, settings, list_name=list_name)
        except MailerError as err:
            out.append(Finding("error", f"{variant.where}: cannot be rendered: {err}"))
            continue
        out += _rendered_findings(variant, rendered, settings)
        if rendered_out is not None:
            rendered_out[lang] = rendered
    return sorted(out, key=lambda f: f.level != "error")


def variant_for(language: str | None, variants: Collection[str], default: str) -> str:
    """The variant a reader of `language` gets: the same tag, else its primary language
    ("ko-KR" reads "ko"), else the release's default (the planner's rule, in SQL there)."""
    tag = (language or "").strip()
    if tag in variants:
        return tag
    if tag[:2] in variants:
        return tag[:2]
    return default


def _settings_findings(settings: Settings, release: Release) -> list[Finding]:
    out: list[Finding] = []
    where = settings.source if settings.source != "defaults" else "settings"
    if not settings.postal_address.strip():
        out.append(Finding("error", f"{where}: postal_address is empty; the footer must show "
                                    "the organisation's postal address (CAN-SPAM, and Gmail "
                                    "and Yahoo bulk-sender rules)"))
    for lang in release.languages:
        if lang not in settings.languages:
            out.append(Finding("warning", f"{release.variants[lang].where}: {lang!r} is not in "
                                          f"the settings' languages {settings.languages}"))
        if not (settings.about.get(lang) or settings.about.get(lang.split("-")[0])):
            out.append(Finding("warning", f"{where}: about has no {lang!r} text; the {lang} "
                                          "release goes out without its 'About' boilerplate"))
    checked = [("website", settings.website)] + [
        (f"social.{label}", url) for label, url in settings.social.items()]
    for key, url in checked:
        if url:
            out += _url_findings(url, f"{where}: {key}", "link")
    unsubscribe = sample_values(settings, release.default_language)["unsubscribe_url"]
    if urlsplit(unsubscribe).scheme != "https":
        out.append(Finding("warning", f"{where}: base_url {settings.base_url!r} is not https; "
                                      "unsubscribe and preferences links should be"))
    return out


def _date_findings(release: Release) -> list[Finding]:
    out: list[Finding] = []
    now = clock.now()
    where = release.default.where
    embargo, expires = release.embargo, release.expires
    if embargo is not None and embargo <= now:
        out.append(Finding("warning", f"{where}: embargo {embargo.isoformat()} is already past "
                                      "(the release says it is embargoed; update or remove it)"))
    if expires is not None and expires <= now:
        out.append(Finding("error", f"{where}: expires {expires.isoformat()} is already past; "
                                    "the release would not be sent"))
    if embargo is not None and expires is not None and expires <= embargo:
        out.append(Finding("error", f"{where}: expires {expires.isoformat()} is not after the "
                                    f"embargo {embargo.isoformat()}"))
    if release.default.meta.date is None:
        out.append(Finding("warning", f"{where}: no date; the release shows none"))
    return out


def _language_findings(release: Release, audience: Mapping[str, int]) -> list[Finding]:
    out: list[Finding] = []
    for lang, count in sorted(audience.items()):
        if count <= 0:
            continue
        chosen = release.pick_language(lang)
        if chosen.split("-")[0] != lang.split("-")[0]:
            out.append(Finding("warning", f"{count} subscriber(s) read {lang!r} but the release "
                                          f"has no {lang} variant ({release.slug}.{lang}.md); "
                                          f"they would get the {chosen} one"))
    return out


def _variant_findings(variant: ReleaseVariant, settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    meta = variant.meta
    where = variant.where
    subject = meta.subject or meta.title
    columns = textpart.display_width(subject)
    if columns > SUBJECT_COLUMNS:
        out.append(Finding("warning", f"{where}: the subject is {columns} columns long; inboxes "
                                      f"show about 60 (fewer on phones): {subject!r}"))
    if not variant.body.strip():
        out.append(Finding("error", f"{where}: the body is empty"))
    if not meta.summary:
        out.append(Finding("warning", f"{where}: no summary; the inbox preview shows the start "
                                      "of the body instead"))
    if meta.image is not None:
        out += _url_findings(meta.image.url, f"{where}: image", "image")
        if not meta.image.alt.strip():
            out.append(Finding("warning", f"{where}: image has no alt text (image.alt); readers "
                                          "with images off or a screen reader get nothing"))
    for link in body_links(variant):
        out += _body_link_findings(variant, link)
    return out


def _body_link_findings(variant: ReleaseVariant, link: BodyLink) -> list[Finding]:
    where = f"{variant.where}:{link.line}"
    out = _url_findings(link.url, f"{where}: {link.kind}", link.kind)
    if link.kind == "image" and not link.text:
        out.append(Finding("warning", f"{where}: image {link.url!r} has no alt text "
                                      "(write ![what it shows](url))"))
    return out


def _url_findings(url: str, where: str, kind: str) -> list[Finding]:
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "https" and parts.netloc:
        return []
    if kind == "link" and scheme in _PLAIN_SCHEMES:
        return []
    if scheme == "http" and parts.netloc:
        return [Finding("warning", f"{where} {url!r} is not https (use https://)")]
    if not scheme:
        return [Finding("error", f"{where} {url!r} is not an absolute URL; it cannot work in an "
                                 "email (write https://...)")]
    return [Finding("warning", f"{where} {url!r} is not an https link")]


def _rendered_findings(variant: ReleaseVariant, rendered: RenderedVariant,
                       settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    where = variant.where
    values = sample_values(settings, variant.language)
    size = len(rendered.html.fill(values).encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        out.append(Finding("error", f"{where}: the HTML is {size / 1024:.0f} KB; Gmail clips "
                                    f"messages over {GMAIL_CLIP_BYTES // 1024} KB and hides the "
                                    "rest, footer and unsubscribe link included"))
    for part, template in (("HTML", rendered.html), ("text", rendered.text)):
        if "unsubscribe_url" not in template.names:
            out.append(Finding("error", f"{where}: the {part} layout has no unsubscribe link "
                                        "(personal.unsubscribe_url)"))
    return out


def summary_line(findings: Sequence[Finding], release: Release) -> str:
    """'2 error(s), 1 warning(s) in election-night (en, ko, dated November 6, 2024)'."""
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    date = release.default.meta.date
    when = f", dated {format_date(date, 'en')}" if date else ""
    return (f"{errors} error(s), {warnings} warning(s) in {release.slug} "
            f"({', '.join(release.languages)}{when})")
