"""The Jinja environment of the web pages and the confirmation email.

Templates are looked up by name first in `templates/web/` beside the user's mailer.toml, then in
the shipped `mailer.templates/web/` (read through importlib.resources, so a wheel install works).
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
    select_autoescape,
)

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


@lru_cache(maxsize=8)
def _environment(folder: str) -> Environment:
    env = Environment(
        loader=ChoiceLoader([FileSystemLoader(folder), ShippedLoader()]),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["local_name"] = local_name
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
