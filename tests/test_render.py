"""Rendering: layouts, placeholders, escaping, the sandbox, inlining once, the text part."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import premailer
import pytest

from mailer.config import Settings
from mailer.errors import ConfigError
from mailer.releases import inline, render, textpart
from mailer.releases.personalise import PLACEHOLDERS, placeholder
from mailer.releases.source import Release, load_release
from mailer.samples import sample_path
from tests.support.releases import BASE_URL, offline_cli, org_settings, write_release

VALUES = {
    "name": "Dana O'Neil",
    "email": "dana+press@example.com",
    "unsubscribe_url": "https://news.hanul.example.org/u/abc.DEF-123?x=1&y=2",
    "preferences_url": "https://news.hanul.example.org/preferences/abc.DEF-123",
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # no database needed here
    return org_settings(tmp_path)


@pytest.fixture
def sample() -> Release:
    return load_release(sample_path())


def test_every_placeholder_is_filled(sample: Release, settings: Settings) -> None:
    for lang, rendered in render.render_release(sample, settings, list_name="Press").items():
        assert rendered.html.names == {"email", "unsubscribe_url", "preferences_url"}
        html = rendered.html.fill(VALUES)
        text = rendered.text.fill(VALUES)
        for part in (html, text):
            assert "__MAILER" not in part, lang
        assert 'href="https://news.hanul.example.org/u/abc.DEF-123?x=1&amp;y=2"' in html
        assert 'href="https://news.hanul.example.org/preferences/abc.DEF-123"' in html
        assert "dana+press@example.com" in html
        assert f"{render.labels_for(lang)['unsubscribe']}: {VALUES['unsubscribe_url']}" in text


def test_a_layout_may_use_every_placeholder(tmp_path: Path, sample: Release) -> None:
    (tmp_path / "templates" / "email").mkdir(parents=True)
    (tmp_path / "templates" / "email" / "footer.html").write_text(
        "<p>{{ personal.name }} {{ personal.email }} <a href='{{ personal.unsubscribe_url }}'>u"
        "</a> <a href='{{ personal.preferences_url }}'>p</a></p>",
        encoding="utf-8",
    )
    rendered = render.render_variant(sample, "en", org_settings(tmp_path))
    assert rendered.html.names == set(PLACEHOLDERS)
    html = rendered.html.fill(VALUES)
    assert "__MAILER" not in html
    assert "Dana O&#x27;Neil dana+press@example.com" in html


def test_title_with_script_is_text(tmp_path: Path, settings: Settings) -> None:
    path = write_release(
        tmp_path,
        "x.md",
        "title: \"<script>alert('t')</script> & co\"\nsubtitle: <b>bold</b>\n"
        "summary: <img src=x onerror=alert(1)>\ndateline: <i>Here</i>",
        "Body <script>alert('b')</script> and <a href='javascript:alert(1)'>x</a>.\n\n"
        "[click](javascript:alert(2))\n",
    )
    rendered = render.render_variant(load_release(path), "en", settings)
    html = rendered.html.fill(VALUES)
    assert "<script" not in html.lower()
    assert "<b>bold" not in html and "<i>Here" not in html and "<img src=x" not in html
    assert not re.search(r"href\s*=\s*[\"']?\s*javascript", html, re.IGNORECASE)
    assert "[click](javascript:alert(2))" in html  # markdown-it refuses the link: shown as text
    assert (
        "&lt;script&gt;alert(&#x27;t&#x27;)&lt;/script&gt; &amp; co" in html
        or "&lt;script&gt;alert('t')&lt;/script&gt; &amp; co" in html
    )
    assert rendered.subject == "<script>alert('t')</script> & co"
    assert "<script>alert('t')</script> & co" in rendered.text.fill(VALUES)


def test_user_content_cannot_place_personal_values(tmp_path: Path, settings: Settings) -> None:
    baseline = render.render_variant(
        load_release(write_release(tmp_path, "a.md", "title: T")), "en", settings
    )
    token = placeholder("unsubscribe_url")
    path = write_release(
        tmp_path,
        "b.md",
        f"title: {token}\nsummary: {placeholder('email')}\n"
        f"contact: {{name: {placeholder('name')}, email: a@b.org}}\n"
        f"image: {{url: 'https://x.org/{token}', alt: {token}}}",
        f"Hello {token} and `{token}` and [x]({token}) and __MAILER&#95;EMAIL__ and "
        f"\\_\\_MAILER\\_NAME\\_\\_ and <{token}>\n",
    )
    rendered = render.render_variant(load_release(path), "en", settings)
    assert rendered.html.parts[1::2] == baseline.html.parts[1::2]
    assert rendered.text.parts[1::2] == baseline.text.parts[1::2]
    filled = rendered.html.fill(VALUES)
    assert filled.count(VALUES["unsubscribe_url"].replace("&", "&amp;")) == baseline.html.fill(
        VALUES
    ).count(VALUES["unsubscribe_url"].replace("&", "&amp;"))
    assert "MAILER" in filled  # shown, harmlessly, as the author wrote it


def test_body_is_data_not_a_template(tmp_path: Path, settings: Settings) -> None:
    path = write_release(
        tmp_path,
        "t.md",
        'title: "{{ 7 * 7 }}"',
        "Total: {{ 6 * 7 }} {% for x in range(3) %}loop{% endfor %} {{ settings.secret_key }}\n",
    )
    rendered = render.render_variant(load_release(path), "en", settings)
    html = rendered.html.fill(VALUES)
    assert "Total: {{ 6 * 7 }} {% for x in range(3) %}loop{% endfor %}" in html
    assert "{{ 7 * 7 }}" in html
    assert "42" not in html and "49" not in html and "looploop" not in html


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ labels.__class__.__init__.__globals__ }}",
        "{{ range.__globals__['os'] }}",
        "{{ labels.update({'unsubscribe': 'x'}) }}",
        "{{ body.__html__.__func__.__globals__ }}",
        "{% set x = org.social.append(1) %}",
    ],
)
def test_layout_cannot_reach_python_internals(tmp_path: Path, sample: Release, attack: str) -> None:
    folder = tmp_path / "templates" / "email"
    folder.mkdir(parents=True)
    (folder / "release.html").write_text(
        f"<html><body>\n<p>ok</p>\n{attack}\n</body></html>", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as err:
        render.render_variant(sample, "en", org_settings(tmp_path))
    message = str(err.value)
    assert "release.html:3" in message
    assert "unsafe" in message or "undefined" in message


def test_layout_undefined_variable_and_syntax_errors_name_the_line(
    tmp_path: Path, sample: Release
) -> None:
    folder = tmp_path / "templates" / "email"
    folder.mkdir(parents=True)
    (folder / "release.html").write_text("<p>\n{{ titel }}\n</p>", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"release\.html:2: 'titel' is undefined"):
        render.render_variant(sample, "en", org_settings(tmp_path))
    (folder / "release.html").write_text("<p>\n\n{% if %}</p>", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"release\.html:3: template syntax error"):
        render.render_variant(sample, "en", org_settings(tmp_path))


def test_templates_beside_the_config_override_by_name(tmp_path: Path, sample: Release) -> None:
    shipped = render.render_variant(sample, "en", org_settings(tmp_path)).html.source
    assert "Manage preferences" in shipped
    folder = tmp_path / "templates" / "email"
    folder.mkdir(parents=True)
    (folder / "footer.html").write_text(
        "<p class='mine'>Our own footer for {{ org.name }} "
        "<a href='{{ personal.unsubscribe_url }}'>stop</a></p>",
        encoding="utf-8",
    )
    html = render.render_variant(sample, "en", org_settings(tmp_path)).html.source
    assert "Our own footer for Hanul Community Center" in html
    assert "Manage preferences" not in html
    assert "Record turnout" in html  # the rest is still the shipped layout


def test_media_rules_keep_important_and_styles_are_inlined(
    sample: Release, settings: Settings
) -> None:
    html = render.render_variant(sample, "ko", settings).html.source
    style = next(s for s in re.findall(r"<style>(.*?)</style>", html, re.DOTALL) if "@media" in s)
    assert "@media only screen and (max-width: 620px)" in style
    assert re.search(r"\.container\s*\{\s*width:\s*100%\s*!important", style)
    assert "@media (prefers-color-scheme: dark)" in style
    assert re.search(r"\.card\s*\{\s*background-color:\s*#161b22\s*!important", style)
    assert "margin: 0 0 18px" not in style and "#eef1f5" not in style  # plain rules inlined
    title = re.search(r"<h1 class=\"title\" style=([\"'])(.*?)\1", html)
    assert title is not None and "font-size:30px" in title.group(2)
    assert "Noto Sans KR" in title.group(2) and "word-break:keep-all" in title.group(2)


def test_premailer_defaults_would_strip_important() -> None:
    """Why inline.py sets strip_important=False: premailer's default loses the !important."""
    doc = (
        "<html><head><style>p { color: red } @media (max-width: 600px) "
        "{ p { color: blue !important } }</style></head><body><p>x</p></body></html>"
    )
    assert "!important" not in premailer.Premailer(doc, allow_network=False).transform()
    out = inline.inline_css(doc)
    assert "color: blue !important" in out
    assert '<p style="color:red">' in out


@pytest.fixture
def css_server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.end_headers()
            self.wfile.write(b"p { color: red }")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "head",
    [
        '<link rel="stylesheet" href="{url}/a.css">',
        "<link href='{url}/a.css' rel='alternate stylesheet'>",
        "<style>@import url({url}/a.css); p {{ color: blue }}</style>",
        '<style>@IMPORT "{url}/a.css";</style>',
    ],
)
def test_premailer_fetches_nothing(css_server: tuple[str, list[str]], head: str) -> None:
    url, hits = css_server
    doc = f"<html><head>{head.format(url=url)}</head><body><p>x</p></body></html>"
    with pytest.raises(ConfigError, match=r"layout: .*(external stylesheet|@import)"):
        inline.inline_css(doc)
    assert hits == []
    if "<link" in head:  # premailer as configured ignores <link> too (belt and braces);
        premailer.Premailer(doc, **inline.OPTIONS).transform()  # but cssutils would follow
        assert hits == []  # an @import whatever premailer is told, hence the refusal above


def test_premailer_runs_once_per_language_for_many_recipients(
    sample: Release, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = premailer.Premailer.transform

    def counting(self: premailer.Premailer, *args: object, **kwargs: object) -> str:
        calls.append(1)
        return str(real(self, *args, **kwargs))

    monkeypatch.setattr(premailer.Premailer, "transform", counting)
    rendered = render.render_release(sample, settings, list_name="Press")
    messages = []
    for i in range(2000):
        lang = "ko" if i % 3 == 0 else "en"
        values = {**VALUES, "email": f"reader{i}@example.org"}
        messages.append((rendered[lang].html.fill(values), rendered[lang].text.fill(values)))
    assert len(calls) == 2  # the real premailer ran, once for en and once for ko
    assert 'style="' in messages[0][0]  # ... and its inlined output is what recipients get
    assert "reader1999@example.org" in messages[1999][0]
    assert len({html for html, _ in messages}) == 2000


def test_press_release_parts_in_english(sample: Release, settings: Settings) -> None:
    rendered = render.render_variant(sample, "en", settings, list_name="Press")
    html = rendered.html.fill(VALUES)
    assert '<html lang="en"' in html
    assert "Hanul Community Center" in html and "PRESS RELEASE" not in html  # CSS upper-cases
    assert "Press Release" in html and "For immediate release" in html
    assert '<time datetime="2024-11-06">November 6, 2024</time>' in html
    assert '<strong class="dateline"' in html and "North Wales, PA</strong> – Korean" in html
    assert "Grace Park, Executive Director" in html and "<blockquote" in html
    assert "“Our community was told" in html  # typographic quotes
    assert "<table" in html and "92,000" in html
    assert ">###</td>" in html
    assert "About Hanul Community Center" in html and "Founded in 1998" in html
    assert "Media contact" in html and "Minji Seo" in html and "Communications Director" in html
    assert 'href="mailto:press@hanul.example.org"' in html and 'href="tel:+12155550142"' in html
    assert "100 Main Street, Suite 2, North Wales, PA 19454, USA" in html
    assert "You are receiving this because you are on the “Press” list of Hanul" in html
    assert re.search(r'href="https://www.facebook.com/hanul.example"[^>]*>Facebook</a>', html)
    assert re.search(r'href="https://hanul.example.org"[^>]*>hanul.example.org</a>', html)
    assert "Apple SD Gothic Neo" in html and "Malgun Gothic" in html and "Noto Sans KR" in html
    assert 'name="color-scheme" content="light dark"' in html
    assert 'class="container"' in html and 'width="600"' in html
    preheader = html.split('class="preheader"', 1)[1].split("</div>", 1)[0]
    summary = sample.default.meta.summary
    assert summary is not None
    assert "display:none" in preheader and summary in preheader
    assert rendered.preheader == sample.default.meta.summary


def test_press_release_parts_in_korean(sample: Release, settings: Settings) -> None:
    rendered = render.render_variant(sample, "ko", settings, list_name="보도자료 수신")
    html = rendered.html.fill(VALUES)
    assert '<html lang="ko"' in html and '<body class="email-bg" lang="ko"' in html
    assert '<time datetime="2024-11-06">2024년 11월 6일</time>' in html
    assert "즉시 보도 가능" in html and "언론 문의" in html and "서민지" in html
    assert "&lt;끝&gt;" in html
    assert "펜실베이니아주 노스웨일스</strong> – 올해 펜실베이니아주 남동부의 한인" in html
    assert "1998년에 설립된 한울커뮤니티센터" in html
    assert "‘보도자료 수신’ 수신 목록에 등록되어 있어" in html
    assert ">수신 거부</a>" in html and ">구독 설정 변경</a>" in html
    assert rendered.subject == "역대 최고 투표율: 한인 유권자들이 이번 선거의 향방을 바꿨다"
    assert "&amp;#" not in html  # Hangul is written as UTF-8, not double-escaped entities
    assert html.encode("utf-8").decode("utf-8") == html


def test_embargo_line_in_the_release_zone() -> None:
    when = datetime(2024, 3, 1, 9, 0, tzinfo=ZoneInfo("America/New_York"))
    assert render.format_when(when, "en") == "March 1, 2024, 9:00 AM EST"
    assert render.format_when(when, "ko") == "2024년 3월 1일 오전 9:00 (EST)"
    assert render.format_date(date(2020, 11, 7), "en") == "November 7, 2020"
    assert render.format_date(date(2020, 11, 7), "ko") == "2020년 11월 7일"
    assert render.format_date(date(2020, 11, 7), "fr") == "2020-11-07"


def test_embargo_shown_and_preheader_falls_back_to_body(tmp_path: Path, settings: Settings) -> None:
    path = write_release(
        tmp_path,
        "e.md",
        "title: T\nembargo: 2024-03-01 09:00 America/New_York",
        "First words of the release. " * 20,
    )
    rendered = render.render_variant(load_release(path), "en", settings)
    assert "Embargoed until March 1, 2024, 9:00 AM EST" in rendered.html.source
    assert "EMBARGOED UNTIL MARCH 1, 2024, 9:00 AM EST" in rendered.text.source
    assert rendered.preheader.startswith("First words of the release. First")
    assert rendered.preheader.endswith("…") and len(rendered.preheader) <= 141


def test_image_header_with_alt(tmp_path: Path, settings: Settings) -> None:
    path = write_release(
        tmp_path,
        "i.md",
        "title: T\nimage: {url: 'https://x.org/a.jpg', alt: Volunteers at the clinic}",
    )
    html = render.render_variant(load_release(path), "en", settings).html.source
    assert '<img src="https://x.org/a.jpg" alt="Volunteers at the clinic"' in html


# --- the text part -------------------------------------------------------------------------


def test_text_part_content(sample: Release, settings: Settings) -> None:
    text = render.render_variant(sample, "en", settings, list_name="Press").text.fill(VALUES)
    assert "<" not in text.replace("<https://", "").replace(f"<{VALUES['unsubscribe_url']}", "")
    for line in text.splitlines():
        assert textpart.display_width(line) <= 72 or " " not in line.split(": ", 1)[-1], line
    assert "FOR IMMEDIATE RELEASE\nNovember 6, 2024\n" in text
    assert (
        "Record turnout: Korean American voters helped decide this election\n"
        "==================================================================\n" in text
    )
    assert "\nNorth Wales, PA – Korean and Asian American voters in southeastern\n" in text
    assert (
        "Instagram\n<https://www.instagram.com/hanul.example>" in text
        or "Instagram <https://www.instagram.com/hanul.example>" in text
    )
    assert "> “Our community was told for years" in text
    assert "1. Language access at every county polling place and service counter.\n" in text
    assert (
        "2. Funding for affordable housing near transit, where our working\n"
        "   families live.\n" in text
    )
    assert "Phone calls in Korean and English  92,000" in text
    assert "\n" + " " * 34 + "###\n" in text
    assert "About Hanul Community Center\n\nFounded in 1998" in text
    assert "Media contact:\nMinji Seo, Communications Director\n" in text
    assert "100 Main Street, Suite 2, North Wales, PA 19454, USA" in text
    assert f"Unsubscribe: {VALUES['unsubscribe_url']}" in text
    assert f"Manage preferences: {VALUES['preferences_url']}" in text
    assert "Facebook: https://www.facebook.com/hanul.example" in text
    assert "\n\n\n" not in text and text.endswith(".\n")


def test_text_part_wraps_korean_by_display_width(sample: Release, settings: Settings) -> None:
    text = render.render_variant(sample, "ko", settings).text.fill(VALUES)
    body_lines = [
        x for x in text.splitlines() if x and not x.startswith(("http", "수신 거부", "구독 설정"))
    ]
    assert max(textpart.display_width(x) for x in body_lines) <= 72
    assert max(len(x) for x in body_lines) < 60  # Hangul is two columns wide
    assert "펜실베이니아주 노스웨일스 – 올해" in text
    assert "\n" + " " * 34 + "<끝>\n" in text


def test_wrap_keeps_long_words_and_indents() -> None:
    url = "https://example.org/" + "a" * 80
    assert textpart.wrap(f"see {url} now", 30) == ["see", url, "now"]
    assert textpart.wrap("one two three four", 9, "- ", "  ") == ["- one two", "  three", "  four"]
    assert textpart.display_width("한국어 abc") == 10


def test_text_part_markdown_features(tmp_path: Path, settings: Settings) -> None:
    body = (
        "## Section\n\nSee [the report](https://x.org/r) or <https://x.org/plain>, "
        "mail [us](mailto:a@b.org) or [a@b.org](mailto:a@b.org).\\\nNew line.\n\n"
        "- one\n- two\n  - nested\n\n```\ncode  kept\n```\n\n![Chart of turnout](https://x.org/c.png)\n\n"
        "| Wide column heading " + "x" * 40 + " | B |\n|---|---|\n| v | " + "y" * 40 + " |\n"
    )
    path = write_release(tmp_path, "m.md", "title: T", body)
    text = render.render_variant(load_release(path), "en", settings).text.source
    assert "Section\n-------\n" in text
    assert (
        "See the report <https://x.org/r> or https://x.org/plain, mail us\n"
        "<a@b.org> or a@b.org.\nNew line." in text
    )
    assert "- one\n- two\n  - nested\n" in text
    assert "    code  kept\n" in text
    assert "[Chart of turnout]" in text
    assert f"Wide column heading {'x' * 40}: v\nB: {'y' * 40}" in text


def test_preview_cli(tmp_path: Path) -> None:
    cli = offline_cli(tmp_path)
    path = str(sample_path())
    html = cli("release", "preview", path).output
    assert html.startswith("<!DOCTYPE html>") and '<html lang="en"' in html
    assert f"{BASE_URL}/u/SAMPLE-TOKEN" in html and "__MAILER" not in html
    text = cli("release", "preview", path, "--lang", "ko", "--text").output
    assert "즉시 보도 가능" in text and "수신 거부:" in text
    out = tmp_path / "out.html"
    result = cli("release", "preview", path, "--all-langs", "-o", str(out))
    assert "out.en.html" in result.output and "out.ko.html" in result.output
    assert '<html lang="ko"' in (tmp_path / "out.ko.html").read_text(encoding="utf-8")
    result = cli("release", "preview", path, "--lang", "fr", expect=1)
    assert "no 'fr' variant (it has en, ko)" in result.output
    result = cli("release", "preview", path, "--lang", "ko", "--all-langs", expect=2)
    assert "give --lang or --all-langs" in result.output
    broken = write_release(tmp_path, "b.md", "title: T\nsubtile: x")
    result = cli("release", "preview", str(broken), expect=1)
    assert f"Error: {broken}:3: unknown front matter key 'subtile'" in result.output
