"""`release check`: what would go wrong if this release were sent now, as errors and warnings.

Errors stop a send (the CLI exits 1): a footer without a postal address, settings still at their
placeholder (the example From...) when the transport reaches readers, a message Gmail would
clip, a link that cannot work in email, a press-kit file that cannot be sent (missing, outside
the release folder, of a type or size not allowed: mailer.media.scan finds those), an expiry
already past. Warnings are worth a look: a
language its readers would not get, an image without alt text, a plain-http link, an embargo
already past, a subject longer than an inbox shows, a media contact completed from (or missing
beside) the default language's.

Over 400 lines on purpose: every check reads the same rendered variants and speaks in the same
finding form; they are listed together so none is forgotten by `send`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from mailer import clock
from mailer.config import Settings, placeholder_message, placeholder_settings
from mailer.errors import MailerError
from mailer.localtext import LocalText, has_language, in_language
from mailer.media.refs import is_local
from mailer.releases import textpart
from mailer.releases.languages import choose, normalise, primary
from mailer.releases.markdown import BodyLink, body_links
from mailer.releases.render import (
    RenderedVariant,
    format_date,
    render_variant,
    sample_values,
)
from mailer.releases.source import Release, ReleaseVariant

if TYPE_CHECKING:
    from mailer.media.scan import Scan

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


@dataclass(frozen=True)
class ReaderVariant:
    """Which variant the readers of one language get: `fallback` when it is another language's
    (the plan of a send shows one line per language, the check warns about the fallbacks)."""

    language: str  # as the readers' contacts say it, normalised ('' when they do not say)
    readers: int
    variant: str
    fallback: bool


def reader_variants(release: Release, audience: Mapping[str, int]) -> list[ReaderVariant]:
    """Per reader language (most readers first), the variant they get by the one language
    rule (mailer.releases.languages.choose)."""
    counts: dict[str, int] = {}
    for raw, count in audience.items():
        if count > 0:
            counts[normalise(raw)] = counts.get(normalise(raw), 0) + count
    out = []
    for lang, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        chosen = choose(lang, release.variants, release.default_language)
        # A reader without a language gets the default: that is no fallback.
        out.append(
            ReaderVariant(lang, count, chosen, bool(lang) and primary(chosen) != primary(lang))
        )
    return out


def check_release(
    release: Release,
    settings: Settings,
    *,
    audience_languages: Mapping[str, int] | None = None,
    render_languages: Collection[str] | None = None,
    list_name: str | None = None,
    rendered_out: dict[str, RenderedVariant] | None = None,
    test_send: bool = False,
    local_files: Scan | None = None,
) -> list[Finding]:
    """Every finding for this release with these settings (and audience, when given).

    Settings still at their placeholder (the example From, organisation name...) are an error
    when the transport reaches real readers, a warning for the outbox and for a `test_send`
    (`mailer send --test`); an empty postal address is an error everywhere.

    A pure function of its arguments (no database): `audience_languages` counts the readers per
    language tag; the planning layer (mailer.delivery.planning.audience_languages) computes it.

    `render_languages` limits the rendering checks to the variants that will be sent (every
    variant by default); `rendered_out` receives each variant rendered, so a send can use them
    instead of rendering (and inlining) again.

    `local_files`: the release's local files, found and checked (mailer.media.scan, which
    reads the release folder): their problems are findings, and a local reference is no longer
    "not an absolute URL". Without it every local reference is that error.
    """
    out: list[Finding] = []
    out += _settings_findings(settings, release, test_send=test_send)
    where = settings.source if settings.source != "defaults" else "settings"
    # Texts missing in a language matter only to the variants that will be sent.
    sent = [
        lang for lang in release.languages if render_languages is None or lang in render_languages
    ]
    out += _local_text_findings(settings, release, where, list_name, sent)
    out += _date_findings(release)
    out += _contact_findings(release)
    if audience_languages is not None:
        out += _language_findings(release, audience_languages)
    if local_files is not None:
        out += [Finding(p.level, p.message) for p in local_files.problems]
    for lang in release.languages:
        variant = release.variants[lang]
        out += _variant_findings(variant, settings, local=local_files is not None)
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


def _settings_findings(
    settings: Settings, release: Release, *, test_send: bool = False
) -> list[Finding]:
    out: list[Finding] = []
    where = settings.source if settings.source != "defaults" else "settings"
    found = placeholder_settings(settings)
    if found:
        # One finding for them all, so the operator fixes them in one go.
        real = settings.transport != "outbox" and not test_send
        legal = any(s.name == "postal_address" for s in found)
        out.append(
            Finding("error" if real or legal else "warning", placeholder_message(settings, found))
        )
    for lang in release.languages:
        if lang not in settings.languages:
            out.append(
                Finding(
                    "warning",
                    f"{release.variants[lang].where}: {lang!r} is not in "
                    f"the settings' languages {settings.languages}",
                )
            )
        if not has_language(settings.about, lang, settings.default_language):
            shown = in_language(settings.about, lang, settings.default_language)
            fate = (
                "shows the About text of another language"
                if shown
                else "goes out without its 'About' boilerplate"
            )
            out.append(
                Finding(
                    "warning", f"{where}: about has no {lang!r} text; the {lang} release {fate}"
                )
            )
    checked = [("website", settings.website)] + [
        (f"social.{label}", url) for label, url in settings.social.items()
    ]
    for key, url in checked:
        if url:
            out += _url_findings(url, f"{where}: {key}", "link")
    unsubscribe = sample_values(settings, release.default_language)["unsubscribe_url"]
    if urlsplit(unsubscribe).scheme != "https":
        out.append(
            Finding(
                "warning",
                f"{where}: base_url {settings.base_url!r} is not https; "
                "unsubscribe and preferences links should be",
            )
        )
    return out


def _date_findings(release: Release) -> list[Finding]:
    out: list[Finding] = []
    now = clock.now()
    where = release.default.where
    embargo, expires = release.embargo, release.expires
    if embargo is not None and embargo <= now:
        out.append(
            Finding(
                "warning",
                f"{where}: embargo {embargo.isoformat()} is already past "
                "(the release says it is embargoed; update or remove it)",
            )
        )
    if expires is not None and expires <= now:
        out.append(
            Finding(
                "error",
                f"{where}: expires {expires.isoformat()} is already past; "
                "the release would not be sent",
            )
        )
    if embargo is not None and expires is not None and expires <= embargo:
        out.append(
            Finding(
                "error",
                f"{where}: expires {expires.isoformat()} is not after the "
                f"embargo {embargo.isoformat()}",
            )
        )
    if release.default.meta.date is None:
        out.append(Finding("warning", f"{where}: no date; the release shows none"))
    return out


def _language_findings(release: Release, audience: Mapping[str, int]) -> list[Finding]:
    out: list[Finding] = []
    for rv in sorted(reader_variants(release, audience), key=lambda r: r.language):
        if rv.fallback:
            out.append(
                Finding(
                    "warning",
                    f"{rv.readers} subscriber(s) read {rv.language!r} but "
                    f"the release has no {rv.language} variant "
                    f"({release.slug}.{rv.language}.md); they would get "
                    f"the {rv.variant} one",
                )
            )
    return out


def _contact_findings(release: Release) -> list[Finding]:
    """The media contact of each variant, against the default's: completed from it (the rule
    of mailer.releases.source._inherit_contact, told so that a wrong phone is seen), or missing
    while another variant has one."""
    out: list[Finding] = []
    default = release.default
    for lang in release.languages:
        variant = release.variants[lang]
        contact = variant.meta.contact
        if contact is None:
            others = [
                release.variants[o].where
                for o in release.languages
                if release.variants[o].meta.contact is not None
            ]
            if others:
                out.append(
                    Finding(
                        "warning",
                        f"{variant.where}: no contact, but {others[0]} has "
                        f"one; the {lang} readers get no media contact "
                        f"(a contact is completed only from the "
                        f"{default.language} file)",
                    )
                )
        elif "contact" in variant.inherited:
            out.append(
                Finding(
                    "warning",
                    f"{variant.where}: no contact; the {lang} release "
                    f"shows the one of {default.where} ({contact.name}); "
                    f"give a contact: here to name another",
                )
            )
        elif variant.inherited:
            fields = [name.split(".", 1)[1] for name in variant.inherited]
            shown = ", ".join(f"{name} {getattr(contact, name)!r}" for name in fields)
            out.append(
                Finding(
                    "warning",
                    f"{variant.where}: contact has no "
                    f"{', '.join(fields)}; the {lang} release shows those "
                    f'of {default.where} ({shown}); give them here ("" '
                    f"for none) if they differ",
                )
            )
    return out


def _local_text_findings(
    settings: Settings,
    release: Release,
    where: str,
    list_name: str | None,
    languages: Sequence[str],
) -> list[Finding]:
    """A text given per language (organisation_name = {en = ..., ko = ...}, a list's names)
    that lacks one of `languages`: those readers get the default language's."""
    out: list[Finding] = []
    texts = [
        (name, getattr(settings, name))
        for name in ("organisation_name", "from_name", "postal_address")
    ]
    for lang in languages:
        for name, value in texts:
            if isinstance(value, LocalText) and value.values and not value.has(lang):
                out.append(
                    Finding(
                        "warning",
                        f"{where}: {name} has no {lang!r} text; the {lang} "
                        f"release shows the {value.default_language} one "
                        f"({value!s})",
                    )
                )
        if isinstance(list_name, LocalText) and not list_name.has(lang):
            out.append(
                Finding(
                    "warning",
                    f"the list {list_name!s} has no {lang!r} name; the "
                    f"{lang} release names it as it is (set one: mailer "
                    f"lists edit SLUG --local-name {lang}=NAME)",
                )
            )
    return out


def _variant_findings(
    variant: ReleaseVariant, settings: Settings, *, local: bool = False
) -> list[Finding]:
    """`local`: local references were checked as files (mailer.media.scan), not as URLs."""
    out: list[Finding] = []
    meta = variant.meta
    where = variant.where
    subject = meta.subject or meta.title
    columns = textpart.display_width(subject)
    if columns > SUBJECT_COLUMNS:
        out.append(
            Finding(
                "warning",
                f"{where}: the subject is {columns} columns long; inboxes "
                f"show about 60 (fewer on phones): {subject!r}",
            )
        )
    if not variant.body.strip():
        out.append(Finding("error", f"{where}: the body is empty"))
    if not meta.summary:
        out.append(
            Finding(
                "warning",
                f"{where}: no summary; the inbox preview shows the start of the body instead",
            )
        )
    if meta.image is not None:
        if not (local and is_local(meta.image.url)):
            out += _url_findings(meta.image.url, f"{where}: image", "image")
        if not meta.image.alt.strip():
            out.append(
                Finding(
                    "warning",
                    f"{where}: image has no alt text (image.alt); readers "
                    "with images off or a screen reader get nothing",
                )
            )
    for link in body_links(variant):
        out += _body_link_findings(variant, link, local=local)
    return out


def _body_link_findings(
    variant: ReleaseVariant, link: BodyLink, *, local: bool = False
) -> list[Finding]:
    where = f"{variant.where}:{link.line}"
    out = (
        []
        if local and is_local(link.url)
        else _url_findings(link.url, f"{where}: {link.kind}", link.kind)
    )
    if link.kind == "image" and not link.text:
        out.append(
            Finding(
                "warning",
                f"{where}: image {link.url!r} has no alt text (write ![what it shows](url))",
            )
        )
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
        return [
            Finding(
                "error",
                f"{where} {url!r} is not an absolute URL; it cannot work in an "
                "email (write https://...)",
            )
        ]
    return [Finding("warning", f"{where} {url!r} is not an https link")]


def _rendered_findings(
    variant: ReleaseVariant, rendered: RenderedVariant, settings: Settings
) -> list[Finding]:
    out: list[Finding] = []
    where = variant.where
    values = sample_values(settings, variant.language)
    size = len(rendered.html.fill(values).encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        out.append(
            Finding(
                "error",
                f"{where}: the HTML is {size / 1024:.0f} KB; Gmail clips "
                f"messages over {GMAIL_CLIP_BYTES // 1024} KB and hides the "
                "rest, footer and unsubscribe link included",
            )
        )
    for part, template in (("HTML", rendered.html), ("text", rendered.text)):
        if "unsubscribe_url" not in template.names:
            out.append(
                Finding(
                    "error",
                    f"{where}: the {part} layout has no unsubscribe link "
                    "(personal.unsubscribe_url)",
                )
            )
    return out


def summary_line(findings: Sequence[Finding], release: Release) -> str:
    """'2 error(s), 1 warning(s) in election-night (en, ko, dated November 6, 2024)'."""
    errors = sum(f.level == "error" for f in findings)
    warnings = len(findings) - errors
    date = release.default.meta.date
    when = f", dated {format_date(date, 'en')}" if date else ""
    return (
        f"{errors} error(s), {warnings} warning(s) in {release.slug} "
        f"({', '.join(release.languages)}{when})"
    )
