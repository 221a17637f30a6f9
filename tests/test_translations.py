"""Every word of the console and the subscriber pages has Korean, with the same placeholders.

The messages are extracted the way `pybabel extract` would (Babel's extractors: Jinja's for the
templates, Babel's own for Python), from the templates and the code that show words to people,
then looked up in the merged Korean catalog (mailer.translations.catalog("ko")). A new
`_("...")` without a Korean msgstr fails here, naming the file and line where it is used.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract
from babel.messages.pofile import read_po
from jinja2 import TemplateRuntimeError

from mailer import translations
from mailer.config import Settings
from mailer.contacts.lists import create_list
from mailer.subscribers import templating
from mailer.web import create_app
from tests.support.web import Web, page_text

ROOT = Path(__file__).resolve().parent.parent
KOREAN = Path(translations.__file__).parent / "ko"

TEMPLATES = ("templates/console/*.html", "templates/web/*.html", "templates/web/*.txt")
PYTHON = ("mailer/web/**/*.py", "mailer/staff/*.py", "mailer/subscribers/*.py")

# In templates: Jinja's i18n extension (newstyle: `_("Hello %(name)s", name=x)`).
TEMPLATE_KEYWORDS: dict[str, Any] = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
    "npgettext": ((1, "c"), 2, 3),
}
# In Python: the console's `_(message)`, the staff emails' `t(message)`, `N_(message)` (marked
# where written, translated later), and mailer.translations' functions, whose first argument
# is the language.
PYTHON_KEYWORDS: dict[str, Any] = {
    "_": None,
    "t": None,
    "N_": None,
    "gettext": (2,),
    "markup": (2,),
    "ngettext": (2, 3),
    "pgettext": ((2, "c"), 3),
}
JINJA_OPTIONS = {"trim_blocks": "true", "lstrip_blocks": "true", "silent": "false"}

Key = tuple[str | None, str | tuple[str, ...]]  # (msgctxt, msgid or (singular, plural))

_PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")


def extract_messages(
    root: Path,
    templates: Iterable[str] = TEMPLATES,
    python: Iterable[str] = PYTHON,
    warnings: list[str] | None = None,
) -> dict[Key, list[str]]:
    """Every marked message under `root`, with the places (path:line) that use it.

    Babel's warnings (an f-string or an empty string in a translate call: words that can
    never be translated) are added to `warnings`."""
    found: dict[Key, list[str]] = {}
    jobs = [("jinja2.ext:babel_extract", p, TEMPLATE_KEYWORDS, JINJA_OPTIONS) for p in templates]
    jobs += [("python", p, PYTHON_KEYWORDS, {}) for p in python]
    said = io.StringIO()
    for method, pattern, keywords, options in jobs:
        for path in sorted(root.glob(pattern)):
            with path.open("rb") as fh, contextlib.redirect_stderr(said):
                for line, message, _comments, context in extract(
                    method, fh, keywords=keywords, options=options
                ):
                    key: Key = (context, tuple(message) if isinstance(message, tuple) else message)
                    where = f"{path.relative_to(root)}:{line}"
                    found.setdefault(key, []).append(where)
    if warnings is not None:
        prefix = str(root) + "/"
        warnings += [w.replace(prefix, "") for w in said.getvalue().splitlines() if w.strip()]
    return found


def _texts(value: object) -> tuple[str, ...]:
    """A msgid or msgstr as a tuple (Babel gives a plural message's as a tuple or a list)."""
    if isinstance(value, (tuple, list)):
        return tuple(str(v) for v in value)
    return (value,) if isinstance(value, str) else ()


def _key(context: str | None, msgid: object) -> Key:
    texts = _texts(msgid)
    return (context, texts if len(texts) > 1 else texts[0])


def _show(key: Key) -> str:
    context, msgid = key
    text = " | ".join(msgid) if isinstance(msgid, tuple) else msgid
    return f"[{context}] {text!r}" if context else repr(text)


def untranslated(messages: Mapping[Key, list[str]], catalog: Catalog) -> list[str]:
    """One line per message without a complete, non-fuzzy translation in `catalog`."""
    out = []
    for key, places in sorted(messages.items(), key=lambda kv: kv[1][0]):
        context, msgid = key
        entry = catalog.get(msgid, context=context)
        parts = _texts(entry.string) if entry is not None else ()
        if entry is None or entry.fuzzy or not parts or not all(p.strip() for p in parts):
            out.append(f"{places[0]}: {_show(key)} has no Korean")
    return out


def _names(text: str) -> list[str]:
    return sorted(set(_PLACEHOLDER.findall(text)))


def _formats(text: str, names: list[str]) -> bool:
    try:
        text % dict.fromkeys(names, "x")
    except (ValueError, KeyError, TypeError):
        return False
    return True


def placeholder_mismatches(catalog: Catalog, where: str = "ko") -> list[str]:
    """Translations whose %(name)s placeholders are not the msgid's, or that cannot be filled
    in (a stray %: Jinja's newstyle gettext always formats)."""
    out = []
    for message in catalog:
        if not message.id:
            continue
        ids = _texts(message.id)
        wanted = sorted({n for i in ids for n in _names(i)})
        for text in _texts(message.string):
            if not text:
                continue
            label = f"{where}: {_show(_key(message.context, message.id))} -> {text!r}"
            if _names(text) != wanted:
                out.append(f"{label}: placeholders {_names(text)}, the English has {wanted}")
            elif not _formats(text, wanted) and _formats(ids[0], wanted):
                out.append(f"{label}: a % that is not a placeholder (write %% for a percent)")
    return out


def conflicts(folder: Path) -> list[str]:
    """Messages that two .po files of `folder` translate differently."""
    seen: dict[Key, tuple[str, Any]] = {}
    out = []
    for path in sorted(folder.glob("*.po")):
        with path.open("rb") as fh:
            part = read_po(fh, locale=folder.name, abort_invalid=True)
        for message in part:
            if not message.id:
                continue
            key = _key(message.context, message.id)
            if key in seen and seen[key][1] != message.string:
                first, string = seen[key]
                out.append(
                    f"{_show(key)}: {first} says {string!r}, {path.name} says {message.string!r}"
                )
            seen.setdefault(key, (path.name, message.string))
    return out


# --- the real catalogs ------------------------------------------------------------------------


def test_every_message_has_korean() -> None:
    warnings: list[str] = []
    messages = extract_messages(ROOT, warnings=warnings)
    assert len(messages) > 200  # the extractors found the templates and the code
    missing = untranslated(messages, translations.catalog("ko"))
    assert not missing + warnings, "\n".join(missing + warnings)


def test_korean_keeps_the_placeholders_of_the_english() -> None:
    wrong = []
    for path in sorted(KOREAN.glob("*.po")):
        with path.open("rb") as fh:
            wrong += placeholder_mismatches(read_po(fh, locale="ko"), path.name)
    assert not wrong, "\n".join(wrong)


def test_no_two_files_translate_a_message_differently() -> None:
    found = conflicts(KOREAN)
    assert not found, "\n".join(found)


def test_the_subscriber_pages_keep_their_korean() -> None:
    # Subscribers have read these words since the first release: the catalog must give exactly
    # them (the hand-made dictionary's texts, moved word for word).
    ko = translations.catalog("ko")
    consent = ko.get(
        "I agree to receive the emails chosen above from %(org)s. I can unsubscribe at any "
        "time with the link at the bottom of every email."
    )
    assert consent is not None
    assert consent.string == (
        "위에서 고른 %(org)s의 이메일을 받는 데 동의합니다. 모든 이메일 하단의 링크로 언제든지 "
        "구독을 해지할 수 있습니다."
    )
    assert translations.gettext("ko", "Subscribe") == "구독 신청"
    assert translations.pgettext("ko", "button", "Subscribe") == "구독하기"
    assert translations.pgettext("ko", "preferences", "Lists") == "받을 소식"


# --- the checks fail when they should ---------------------------------------------------------


def test_an_untranslated_template_string_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "templates" / "console").mkdir(parents=True)
    (tmp_path / "templates" / "console" / "fake.html").write_text(
        '{% extends "base.html" %}{% block content %}\n'
        '<h1>{{ _("Sign in") }}</h1>\n'
        '<p>{{ _("A sentence nobody translated, %(who)s", who=me) }}</p>\n'
        '<p>{{ ngettext("%(num)d fake row", "%(num)d fake rows", n) }}</p>\n'
        "{% endblock %}\n",
        encoding="utf-8",
    )
    (tmp_path / "mailer" / "web").mkdir(parents=True)
    (tmp_path / "mailer" / "web" / "fake.py").write_text(
        "def page(name):\n"
        '    _("A notice nobody translated")\n'
        '    return _(f"Hello {name}")  # never in any catalog\n',
        encoding="utf-8",
    )
    warnings: list[str] = []
    messages = extract_messages(tmp_path, warnings=warnings)
    assert len(warnings) == 1 and warnings[0].startswith("mailer/web/fake.py:3: warning: ")
    missing = untranslated(messages, translations.catalog("ko"))
    assert missing == [
        "mailer/web/fake.py:2: 'A notice nobody translated' has no Korean",
        "templates/console/fake.html:3: 'A sentence nobody translated, %(who)s' has no Korean",
        "templates/console/fake.html:4: '%(num)d fake row | %(num)d fake rows' has no Korean",
    ]


def test_a_translation_with_other_placeholders_fails_the_check() -> None:
    catalog = Catalog(locale="ko")
    catalog.add("Hello %(name)s", "안녕하세요 %(nom)s")
    catalog.add("%(email)s is disabled.", "%(email)s 계정을 사용 중지했습니다.")
    catalog.add("Rate %(rate)s", "비율 %(rate)s 100%")
    found = placeholder_mismatches(catalog)
    assert len(found) == 2, found
    assert "placeholders ['nom'], the English has ['name']" in found[0]
    assert "a % that is not a placeholder" in found[1]


def test_two_files_that_disagree_fail_the_check(tmp_path: Path) -> None:
    folder = tmp_path / "ko"
    folder.mkdir()
    header = 'msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n'
    (folder / "a.po").write_text(header + 'msgid "Save"\nmsgstr "저장"\n', encoding="utf-8")
    (folder / "b.po").write_text(header + 'msgid "Save"\nmsgstr "저장하기"\n', encoding="utf-8")
    (folder / "c.po").write_text(header + 'msgid "Save"\nmsgstr "저장"\n', encoding="utf-8")
    assert conflicts(folder) == ["'Save': a.po says '저장', b.po says '저장하기'"]


# --- the subscriber pages through the catalogs ------------------------------------------------


@pytest.mark.db
@pytest.mark.parametrize("lang", ["en", "ko"])
def test_values_are_escaped_into_translated_words(
    settings: Settings, engine_name: str, lang: str
) -> None:
    hostile = replace(settings, organisation_name="<b>Ours</b> & co")
    web = Web(create_app(hostile), hostile)
    with web.db() as s:
        create_list(s, "news", "<script>alert(1)</script>", "<i>desc</i>", public=True)
    page = page_text(web.client().get(f"/subscribe?lang={lang}"))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>Ours" not in page and "&lt;b&gt;Ours&lt;/b&gt; &amp; co" in page
    intro = translations.gettext(
        lang, "News, events and press releases from %(org)s, straight to your inbox.", org="X"
    )
    assert intro.replace("X", "&lt;b&gt;Ours&lt;/b&gt; &amp; co") in page


def test_a_template_still_calling_t_gets_a_clear_error(settings: Settings) -> None:
    env = templating.environment(settings)
    template = env.from_string('<p>{{ t("subscribe_title") }}</p>')
    with pytest.raises(TemplateRuntimeError, match=r"t\('subscribe_title'\).*_\(\"Subscribe\"\)"):
        template.render(lang="en")
