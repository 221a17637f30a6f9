"""Release -> email: the Markdown body as HTML and text, the sandboxed Jinja2 layouts, inlined CSS.

Per language variant: Markdown (markdown-it-py, CommonMark + tables, raw HTML off) -> body HTML
and body text -> the layouts templates/email/release.html and release.txt -> premailer, once.
What stays personal (name, email, unsubscribe and preferences URLs) is left as placeholders that
only the layouts write; everything the release author wrote goes through personalise.neutralise().

Over 400 lines on purpose: the HTML and text bodies, the layouts' context and the inlining are
rendered together once per language; their values must match.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.localtext import in_language
from mailer.media import refs as media_refs
from mailer.media.refs import MediaFileInfo
from mailer.releases import embargo, inline, textpart
from mailer.releases.dates import format_date as format_date  # re-exported: checks, tests
from mailer.releases.dates import format_when as format_when
from mailer.releases.markdown import (
    body_html,
    body_text,
    markdown_html,
    markdown_text,
    preheader_text,
)
from mailer.releases.personalise import PersonalTemplate, neutralise, placeholder
from mailer.releases.source import Release

HTML_LAYOUT = "email/release.html"
TEXT_LAYOUT = "email/release.txt"
# The "view in browser" row is rendered and inlined once with this stand-in address, between
# <!--mailer:view--> comments (which CSS inlining keeps): a variant without the link drops the
# row, a campaign's puts its own address in its place.
VIEW_STAND_IN = "https://view-in-browser.invalid/"
_VIEW_ROW = re.compile(r"<!--mailer:view-->.*?<!--/mailer:view-->\n?", re.S)
# The footer's word on per-person click tracking (lists with `track_people`), between these
# comments in both parts: every variant is rendered with it once, and a list that does not track
# people gets the variant without it (RenderedVariant.with_tracking), so the words are true of
# every reader's list and each language is still inlined once.
TRACKING_START, TRACKING_END = "<!--mailer:tracking-->", "<!--/mailer:tracking-->"
_TRACKING = re.compile(
    re.escape(TRACKING_START) + r"\n?(.*?)" + re.escape(TRACKING_END) + r"\n?", re.S
)


def tracking_block(text: str, *, keep: bool) -> str:
    """`text` with the tracking words kept (their markers gone) or taken out whole."""
    return _TRACKING.sub(lambda m: m.group(1) if keep else "", text)


@dataclass(frozen=True)
class RenderedVariant:
    """One language, inlined once, ready for cheap per-recipient filling."""

    language: str
    subject: str
    preheader: str
    html: PersonalTemplate
    text: PersonalTemplate
    # The embargo its banner announces (a copy sent before the lift), None without a banner.
    marked_until: datetime | None = None
    # The "view in browser" link it carries (mailer.newsroom.links), None without one.
    view_url: str | None = None
    # The inlined HTML and the text with the link's row at VIEW_STAND_IN ("" when the layout
    # has no marked row): a campaign puts its own link in (`with_view`) without inlining again.
    viewable_html: str = ""
    viewable_text: str = ""
    # The final HTML and text (placeholders in) with the tracking words still marked; `tracking`:
    # whether html and text show them (with_tracking).
    marked_html: str = ""
    marked_text: str = ""
    tracking: bool = False

    def with_view(self, url: str) -> RenderedVariant:
        """This variant with the "view in browser" link `url`: the stand-in address replaced,
        no CSS inlining (the row was inlined with the rest)."""
        if not self.viewable_html:
            raise ValueError("this variant was rendered without its view-in-browser row")
        return _marked(
            self,
            self.viewable_html.replace(VIEW_STAND_IN, str(escape(url))),
            self.viewable_text.replace(VIEW_STAND_IN, url),
            view_url=url,
        )

    def with_tracking(self) -> RenderedVariant:
        """This variant with the footer's word on per-person tracking (a list whose
        `track_people` is on); ConfigError when a layout of one's own does not say it."""
        if self.tracking:
            return self
        for name, part in ((HTML_LAYOUT, self.marked_html), (TEXT_LAYOUT, self.marked_text)):
            if TRACKING_START not in part:
                raise ConfigError(
                    f"{name}: the layout does not say that the list records which links each "
                    "reader follows, which a list with track_people must: add the "
                    "{% if tracking %} block of the shipped footer (templates/email/footer.html "
                    "and release.txt), or switch it off with `mailer lists edit SLUG "
                    "--no-track-people`"
                )
        return replace(
            self,
            html=PersonalTemplate.compile(
                tracking_block(self.marked_html, keep=True), escape_html=True
            ),
            text=PersonalTemplate.compile(
                _tidy_text(tracking_block(self.marked_text, keep=True)), escape_html=False
            ),
            tracking=True,
        )

    # The files sent with it as real attachments (`attach:`; mailer.media).
    attachments: tuple[MediaFileInfo, ...] = ()


# --- per-language wording -----------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "category": "Press Release",
        "immediate": "For immediate release",
        "embargo": "Embargoed until {when}",
        "media_contact": "Media contact",
        "about": "About {org}",
        "why_list": "You are receiving this because you are on the {list} list of {org}.",
        "why_default": "You are receiving this because you subscribed to news from {org}.",
        "unsubscribe": "Unsubscribe",
        "preferences": "Manage preferences",
        "sent_to": "This email was sent to {email}.",
        "end_mark": "###",
        "website": "Website",
        "phone": "Tel.",
        "email": "Email",
        "view_online": "View this release in your browser",
        "downloads": "Downloads",
        "attached": "attached",
        "tracking": (
            "This list records which links you follow, to tell the press office which stories "
            "interest reporters."
        ),
        "tracking_off": "Switch it off",
    },
    "ko": {
        "category": "보도자료",
        "immediate": "즉시 보도 가능",
        "embargo": "엠바고: {when} 이후 보도",
        "media_contact": "언론 문의",
        "about": "{org} 소개",
        "why_list": "{org}의 {list} 수신 목록에 등록되어 있어 이 메일을 받으셨습니다.",
        "why_default": "{org} 소식 받기를 신청하셔서 이 메일을 받으셨습니다.",
        "unsubscribe": "수신 거부",
        "preferences": "구독 설정 변경",
        "sent_to": "이 메일은 {email} 주소로 발송되었습니다.",
        "end_mark": "<끝>",
        "website": "웹사이트",
        "phone": "전화",
        "email": "이메일",
        "view_online": "웹 브라우저에서 보기",
        "downloads": "자료 내려받기",
        "attached": "첨부",
        "tracking": (
            "이 수신 목록은 기자분들이 어떤 소식에 관심을 두시는지 홍보실이 알 수 있도록, "
            "메일 속 어떤 링크를 누르셨는지 기록합니다."
        ),
        "tracking_off": "기록 끄기",
    },
}
# Korean fonts lead in the Korean variant (Outlook on Windows does no per-glyph fallback); the
# English variant lists them too, for Korean names quoted in English text.
_LATIN_FONTS = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial'
_KOREAN_FONTS = (
    '"Apple SD Gothic Neo", "Malgun Gothic", "맑은 고딕", "Noto Sans KR", "Noto Sans CJK KR"'
)


def labels_for(language: str) -> dict[str, str]:
    """The layout's fixed wording in `language` (English for languages without a translation)."""
    return dict(LABELS.get(language.split("-")[0], LABELS["en"]))


def font_stack(language: str) -> str:
    if language.split("-")[0] == "ko":
        return (
            f'-apple-system, BlinkMacSystemFont, {_KOREAN_FONTS}, "Segoe UI", Roboto, '
            "Arial, sans-serif"
        )
    return f"{_LATIN_FONTS}, {_KOREAN_FONTS}, sans-serif"


# --- layouts ------------------------------------------------------------------------------------


class _ShippedLoader(BaseLoader):
    """The layouts shipped inside the package (templates/ in the source tree).

    A shipped template stays cached until the user puts a file of the same name in their
    templates/ folder, so an override takes effect without restarting.
    """

    def __init__(self, override_dir: Path) -> None:
        self.override_dir = override_dir

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        parts = split_template_path(template)
        node = importlib.resources.files("mailer.templates")
        for part in parts:
            node = node.joinpath(part)
        if not node.is_file():
            raise TemplateNotFound(template)
        override = self.override_dir.joinpath(*parts)
        return node.read_text(encoding="utf-8"), str(node), lambda: not override.exists()


def _center(text: str, width: int = textpart.WIDTH) -> str:
    pad = max(0, (width - textpart.display_width(text)) // 2)
    return " " * pad + text


def _wrap(text: str, width: int = textpart.WIDTH, indent: str = "") -> str:
    return "\n".join(textpart.wrap(" ".join(str(text).split()), width, indent, indent))


def _underline(text: str, char: str = "=") -> str:
    widest = max((textpart.display_width(x) for x in str(text).split("\n")), default=0)
    return char * min(widest, textpart.WIDTH)


@lru_cache(maxsize=16)
def layout_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    """The sandboxed layout environment: the user's templates/ first, then the shipped ones."""
    env = ImmutableSandboxedEnvironment(
        loader=ChoiceLoader([FileSystemLoader(str(templates_dir)), _ShippedLoader(templates_dir)]),
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml"), default_for_string=True, default=False
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(wrap=_wrap, center=_center, underline=_underline)
    return env


def render_template(settings: Settings, name: str, context: Mapping[str, Any]) -> str:
    """Render one layout; any template failure becomes a ConfigError naming the file and line."""
    env = layout_environment(settings.templates_dir)
    template: Template | None = None
    try:
        template = env.get_template(name)
        return template.render(context)
    except TemplateSyntaxError as err:
        raise ConfigError(
            f"{err.filename or name}:{err.lineno}: template syntax error: {err.message}"
        ) from None
    except TemplateNotFound as err:
        raise ConfigError(
            f"template {err.name!r} not found in {settings.templates_dir} or the shipped layouts"
        ) from None
    except SecurityError as err:
        where = _template_where(err, template, name)
        raise ConfigError(
            f"{where}: the layout tried an unsafe operation and was stopped: {err}"
        ) from None
    except UndefinedError as err:
        where = _template_where(err, template, name)
        raise ConfigError(
            f"{where}: {err.message} (see the README for the layout variables)"
        ) from None
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as err:
        where = _template_where(err, template, name)
        raise ConfigError(f"{where}: the layout failed: {err}") from None


def _template_where(err: BaseException, template: Template | None, name: str) -> str:
    """'file:line' of the innermost template frame of the error's traceback."""
    filename = template.filename if template is not None else None
    line = None
    tb = err.__traceback__
    while tb is not None:
        code_file = tb.tb_frame.f_code.co_filename
        if (filename and code_file == filename) or code_file.endswith((".html", ".txt", ".css")):
            filename, line = code_file, tb.tb_lineno
        tb = tb.tb_next
    where = filename or name
    return f"{where}:{line}" if line else where


def _website_label(url: str) -> str:
    host = urlsplit(url).netloc
    return host[4:] if host.startswith("www.") else host or url


def layout_context(
    release: Release,
    language: str,
    settings: Settings,
    list_name: str | None = None,
    text: bool = False,
    *,
    marked_until: datetime | None = None,
    view_url: str | None = None,
    tracking: bool = False,
) -> dict[str, Any]:
    """Every variable the layouts see (documented in the README); user text neutralised.

    `marked_until`: the message goes out before this embargo: the layouts show the EMBARGOED
    banner at the top (`embargo_banner`, None otherwise). `tracking`: the footer's word on
    per-person click tracking, between its markers (`tracking`, None otherwise)."""
    variant = release.variants[language]
    meta = variant.meta
    labels = labels_for(language)
    n = neutralise
    # Each text setting and the list name in the reader's language, else the default's.
    org = n(in_language(settings.organisation_name, language, settings.default_language))
    about_source = in_language(settings.about, language, settings.default_language)
    list_name = in_language(list_name, language, settings.default_language) or None
    about: str | Markup = (
        markdown_text(about_source) if text else Markup(markdown_html(about_source))
    )
    if meta.embargo is not None:
        # In the organisation's zone when it has one, as the EMBARGOED banner above it says;
        # else in the zone the release was written in.
        when = (
            meta.embargo.astimezone(embargo.organisation_zone(settings))
            if settings.timezone
            else meta.embargo
        )
        release_line = labels["embargo"].format(when=format_when(when, language))
    else:
        release_line = labels["immediate"]
    why = (
        labels["why_list"].format(org=org, list=_quoted(n(list_name), language))
        if list_name
        else labels["why_default"].format(org=org)
    )
    personal = {
        name: placeholder(name) for name in ("name", "email", "unsubscribe_url", "preferences_url")
    }
    contact = None
    if meta.contact is not None:
        c = meta.contact
        contact = {
            "name": n(c.name),
            "role": n(c.role),
            "email": n(c.email),
            "phone": n(c.phone),
            "phone_href": "".join(ch for ch in c.phone if ch.isdigit() or ch == "+"),
        }
    body: str | Markup = body_text(variant) if text else Markup(body_html(variant))
    return {
        "lang": language,
        "dir": "ltr",
        "text_part": text,
        "slug": release.slug,
        "subject": n(meta.subject or meta.title),
        "title": n(meta.title),
        "subtitle": n(meta.subtitle or ""),
        "category": n(meta.category or labels["category"]),
        "date_text": format_date(meta.date, language) if meta.date else "",
        "date_iso": meta.date.isoformat() if meta.date else "",
        "dateline": n(meta.dateline or ""),
        "release_line": release_line,
        "preheader": preheader_text(variant),
        # A local photo shows its email-width copy (mailer.media.refs).
        "image": (
            {
                k: n(v) if isinstance(v, str) else v
                for k, v in media_refs.hero(meta.image.url, meta.image.alt, variant.media).items()
            }
            if meta.image
            else None
        ),
        # The press kit: each local file the variant names, with its type and size.
        "downloads": [
            {k: n(v) if isinstance(v, str) else v for k, v in item.items()}
            for item in media_refs.downloads(variant.media, meta.attach)
        ],
        "body": body,
        "end_mark": labels["end_mark"],
        "about_title": labels["about"].format(org=org),
        "about": about,
        "contact": contact,
        "org": {
            "name": org,
            "postal_address": n(
                in_language(settings.postal_address, language, settings.default_language)
            ),
            "website": n(settings.website),
            "website_label": n(_website_label(settings.website)) if settings.website else "",
            "social": [{"label": n(k), "url": n(v)} for k, v in settings.social.items()],
        },
        "why": why,
        "list_name": n(list_name or ""),
        "labels": labels,
        "sent_to": labels["sent_to"].format(email=personal["email"]),
        "personal": personal,
        "extra": dict(meta.extra),
        "fonts": font_stack(language),
        "view_url": view_url,
        "embargo_banner": (
            embargo.banner(marked_until, settings, language).as_context()
            if marked_until is not None
            else None
        ),
        "tracking": (
            {
                "start": Markup(TRACKING_START),
                "end": Markup(TRACKING_END),
                "note": labels["tracking"],
                "switch_off": labels["tracking_off"],
            }
            if tracking
            else None
        ),
    }


def _quoted(name: str, language: str) -> str:
    return f"‘{name}’" if language.split("-")[0] == "ko" else f"“{name}”"


def render_layouts(
    release: Release,
    language: str,
    settings: Settings,
    list_name: str | None = None,
    *,
    marked_until: datetime | None = None,
    view_url: str | None = None,
    tracking: bool = False,
) -> tuple[str, str]:
    """The whole HTML document (not yet inlined) and the text part of one variant."""
    html = render_template(
        settings,
        HTML_LAYOUT,
        layout_context(
            release,
            language,
            settings,
            list_name,
            marked_until=marked_until,
            view_url=view_url,
            tracking=tracking,
        ),
    )
    text = render_template(
        settings,
        TEXT_LAYOUT,
        layout_context(
            release,
            language,
            settings,
            list_name,
            text=True,
            marked_until=marked_until,
            view_url=view_url,
            tracking=tracking,
        ),
    )
    if marked_until is not None:
        _check_banner(embargo.banner(marked_until, settings, language), html, text)
    return html, _tidy_text(text)


def _check_banner(banner: embargo.Banner, html: str, text: str) -> None:
    """A layout of the user's own (templates/ beside mailer.toml) may predate the banner: a copy
    sent before the embargo without it would rest on the subject alone, so it is refused.

    The note is looked for, not the title: in Korean the title reads like the release line."""
    note = " ".join(banner.note.split())
    for name, part, wanted in (
        (HTML_LAYOUT, html, str(escape(note))),
        (TEXT_LAYOUT, text, note),
    ):
        if wanted not in " ".join(part.split()):
            raise ConfigError(
                f"{name}: the layout does not show the embargo banner, which a release sent "
                "before its embargo must carry: add {{ embargo_banner.title }} and "
                "{{ embargo_banner.note }} at the top (see the shipped layout)"
            )


def check_marked_layouts(release: Release, settings: Settings, marked_until: datetime) -> None:
    """ConfigError unless every language's layouts show the EMBARGOED banner; called before a
    send to press lists ahead of the embargo, so a layout without it stops the send before the
    first message, not in the middle (no CSS inlining here: a few milliseconds)."""
    for language in release.languages:
        render_layouts(release, language, settings, marked_until=marked_until)


def _tidy_text(text: str) -> str:
    """No trailing spaces, at most one blank line in a row, one final newline."""
    out: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip()
        if not line and out and not out[-1]:
            continue
        out.append(line)
    return "\n".join(out).strip("\n") + "\n"


def render_variant(
    release: Release,
    language: str,
    settings: Settings,
    *,
    list_name: str | None = None,
    marked_until: datetime | None = None,
    view_url: str | None = None,
) -> RenderedVariant:
    """Render and inline one language variant (premailer runs once here).

    `marked_until`: an embargo still ahead when the message goes out: the EMBARGOED banner at
    the top (mailer.releases.embargo; the compilers add the subject prefix). `view_url`: the
    campaign's "view in browser" link in this language (the same for every reader)."""
    if language not in release.variants:
        raise ConfigError(
            f"release {release.slug!r} has no {language!r} variant "
            f"(it has {', '.join(release.languages)})"
        )
    html, text = render_layouts(
        release,
        language,
        settings,
        list_name,
        marked_until=marked_until,
        view_url=VIEW_STAND_IN,
        tracking=True,
    )
    before = PersonalTemplate.compile(html, escape_html=True)
    inlined = inline.inline_css(html, where=HTML_LAYOUT)
    after = PersonalTemplate.compile(inlined, escape_html=True)
    if sorted(before.parts[1::2]) != sorted(after.parts[1::2]):
        raise ConfigError(
            f"{HTML_LAYOUT}: CSS inlining changed the personal placeholders "
            f"({sorted(before.parts[1::2])} -> {sorted(after.parts[1::2])})"
        )
    meta = release.variants[language].meta
    viewable = RenderedVariant(
        language=language,
        subject=" ".join(neutralise(meta.subject or meta.title).split()),
        preheader=preheader_text(release.variants[language]),
        html=after,
        text=PersonalTemplate.compile(text, escape_html=False),
        marked_until=marked_until,
        view_url=VIEW_STAND_IN,
        attachments=media_refs.attachments(release.variants[language]),
        viewable_html=inlined,
        viewable_text=text,
        marked_html=inlined,
        marked_text=text,
    )
    if view_url:
        return viewable.with_view(view_url)
    html_plain = _VIEW_ROW.sub("", inlined)
    if VIEW_STAND_IN in html_plain:
        # A layout of one's own that shows `view_url` outside the marked row: inline it again.
        html, _ = render_layouts(
            release, language, settings, list_name, marked_until=marked_until, tracking=True
        )
        html_plain = inline.inline_css(html, where=HTML_LAYOUT)
    text_plain = "\n".join(line for line in text.split("\n") if VIEW_STAND_IN not in line)
    return _marked(viewable, html_plain, text_plain, view_url=None)


def _marked(
    variant: RenderedVariant, html: str, text: str, *, view_url: str | None
) -> RenderedVariant:
    """`variant` with this final HTML and text (tracking words marked): shown or taken out as
    the variant has them."""
    keep = variant.tracking
    return replace(
        variant,
        html=PersonalTemplate.compile(tracking_block(html, keep=keep), escape_html=True),
        text=PersonalTemplate.compile(
            _tidy_text(tracking_block(text, keep=keep)), escape_html=False
        ),
        view_url=view_url,
        marked_html=html,
        marked_text=text,
    )


def render_release(
    release: Release,
    settings: Settings,
    *,
    list_name: str | None = None,
    marked_until: datetime | None = None,
) -> dict[str, RenderedVariant]:
    """Every language variant, rendered and inlined once each."""
    return {
        lang: render_variant(
            release, lang, settings, list_name=list_name, marked_until=marked_until
        )
        for lang in release.languages
    }


def sample_values(settings: Settings, language: str) -> dict[str, str]:
    """Personal values for previews and checks (no real contact behind them)."""
    base = settings.base_url.rstrip("/")
    name = "김하늘" if language.split("-")[0] == "ko" else "Alex Kim"
    return {
        "name": name,
        "email": "reader@example.org",
        "unsubscribe_url": f"{base}/u/SAMPLE-TOKEN",
        "preferences_url": f"{base}/preferences/SAMPLE-TOKEN",
    }


def preview(
    release: Release,
    language: str,
    settings: Settings,
    *,
    text: bool = False,
    list_name: str | None = None,
) -> str:
    """One variant as a subscriber would get it, with sample personal values."""
    rendered = render_variant(release, language, settings, list_name=list_name)
    part = rendered.text if text else rendered.html
    return part.fill(sample_values(settings, language))
