"""The Jinja environment of the web pages and the confirmation email.

Templates are looked up by name first in `templates/web/` beside the user's mailer.toml, then in
the shipped `mailer.templates/web/` (read through importlib.resources, so a wheel install works).

Their words are gettext messages in English (`{{ _("Hello %(name)s,", name=name) }}`),
translated from the catalogs in mailer.translations into the `lang` every render passes. In an
HTML template the translation is trusted markup and every value is escaped into it (Jinja's
newstyle gettext), so a list name or an address can never inject HTML; in the text email
nothing is escaped.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateRuntimeError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context

from mailer import translations
from mailer.config import Settings


class ShippedLoader(BaseLoader):
    """Templates inside the installed package (mailer.templates/web)."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        node = importlib.resources.files("mailer.templates") / "web"
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise TemplateNotFound(template)
            node = node / part
        if not node.is_file():
            raise TemplateNotFound(template)
        return node.read_text(encoding="utf-8"), None, lambda: True


def user_dir(settings: Settings) -> Path:
    """Where a user's overriding web templates live."""
    return settings.templates_dir / "web"


def loader(settings: Settings) -> ChoiceLoader:
    """The user's folder first, then the shipped templates."""
    return ChoiceLoader([FileSystemLoader(str(user_dir(settings))), ShippedLoader()])


def local_name(mailing_list: Any, language: str) -> str:
    """A list's name for readers of `language` (`{{ ml | local_name(lang) }}`): its name in
    that language, else its default name."""
    name: str = mailing_list.local_name().get(language)
    return name


@pass_context
def _old_key(context: Context, key: str, **_values: Any) -> str:
    # Templates written before the catalogs called t("key"); say what to write instead of
    # Jinja's bare "'t' is undefined".
    where = context.name or "a template"
    raise TemplateRuntimeError(
        f"{where}: t({key!r}) is no longer available: write the English text instead, "
        f'as {{{{ _("Subscribe") }}}} (see the shipped templates)'
    )


@lru_cache(maxsize=8)
def _environment(folder: str) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(folder), ShippedLoader()]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        newstyle=True, **translations.context_callables()
    )
    env.filters["local_name"] = local_name
    env.globals["t"] = _old_key
    return env


def environment(settings: Settings) -> Environment:
    """A Jinja environment for rendering outside a request (the confirmation email)."""
    return _environment(str(user_dir(settings)))


def read_asset(settings: Settings, name: str) -> str | None:
    """The text of a static asset (e.g. style.css), overridable like a template."""
    try:
        source, _, _ = loader(settings).get_source(environment(settings), name)
    except TemplateNotFound:
        return None
    return source
