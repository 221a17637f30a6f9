"""Per-campaign message compilers: one CompiledVariant per (language, list), built on first use."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mailer.config import Settings
from mailer.delivery.message import CompiledVariant, dkim_signer, sender_for
from mailer.localtext import in_language
from mailer.releases.source import release_from_sources
from mailer.store.models import Campaign, MailingList


class Compiler:
    """CompiledVariant per (language, list), built on first use.

    A language missing from `rendered` is rendered (premailer once) by `render` the first time
    a recipient needs it: a campaign whose readers are all English never renders the Korean
    variant.
    """

    def __init__(
        self,
        settings: Settings,
        campaign_id: int,
        rendered: dict[str, Any],
        lists: dict[int, MailingList],
        subject_prefix: str = "",
        render: Callable[[str], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.campaign_id = campaign_id
        self.rendered = dict(rendered)
        self.lists = lists
        self.subject_prefix = subject_prefix
        self.render = render
        self.cache: dict[tuple[str, int | None], CompiledVariant] = {}
        self.lock = threading.Lock()

    def get(self, language: str, list_id: int | None) -> CompiledVariant:
        key = (language, list_id)
        compiled = self.cache.get(key)
        if compiled is None:
            with self.lock:
                compiled = self.cache.get(key)
                if compiled is None:
                    ml = self.lists.get(list_id or 0)
                    from_address = (
                        ml.from_address if ml and ml.from_address else self.settings.from_address
                    )
                    sender = sender_for(
                        self.settings,
                        ml.name if ml else "",
                        ml.slug if ml else "mail",
                        from_address,
                    )
                    # From in the reader's language when from_name is given per language.
                    sender = replace(
                        sender,
                        from_name=in_language(
                            self.settings.from_name, language, self.settings.default_language
                        ),
                    )
                    if language not in self.rendered and self.render is not None:
                        self.rendered[language] = self.render(language)
                    compiled = CompiledVariant(
                        self.rendered[language],
                        sender,
                        self.settings,
                        subject_prefix=self.subject_prefix,
                        campaign_id=self.campaign_id,
                        signer=dkim_signer(self.settings, from_address),
                    )
                    self.cache[key] = compiled
        return compiled


def campaign_renderer(
    settings: Settings, campaign: Campaign, list_names: dict[int, str] | None = None
) -> Callable[[str], Any]:
    """Renders one language of the campaign's stored release (premailer once per call).

    A campaign to one list names it in the footer ("you are on the Press list"); a campaign to
    several lists uses the organisation's wording, so each language is still inlined once.
    """
    # Lazy: releases.render loads premailer and lxml (~0.4 s); only unrendered variants need it.
    from mailer.releases.render import render_variant  # noqa: PLC0415

    stored = campaign.release
    release = release_from_sources(
        stored.slug,
        {lang: v["source"] for lang, v in stored.variants.items()},
        stored.default_language,
    )
    list_ids = campaign.audience.get("list_ids", [])
    list_name = (list_names or {}).get(list_ids[0]) if len(list_ids) == 1 else None

    def render(language: str) -> Any:
        return render_variant(release, language, settings, list_name=list_name)

    return render
