"""Per-campaign message compilers: one CompiledVariant per (language, list), built on first use.

Whether a campaign's messages are marked as sent before the embargo is decided here, once, when
a run of the sender (or a dry run) sets up its compiler: before the lift every message carries
the EMBARGOED subject prefix and banner (mailer.releases.embargo); a run that starts after the
lift marks nothing, since a message that arrives after the lift is not embargoed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from mailer import clock
from mailer.config import Settings
from mailer.delivery.dkim import dkim_signer
from mailer.delivery.message import CompiledVariant, sender_for
from mailer.engagement.links import LinkRegistry
from mailer.localtext import in_language
from mailer.media import access as media_access
from mailer.media.store import stored_release
from mailer.newsroom import links as newsroom_links
from mailer.releases import embargo as embargo_words
from mailer.store.models import Campaign, MailingList


class Compiler:
    """CompiledVariant per (language, list), built on first use.

    A language missing from `rendered` is rendered (premailer once) by `render` the first time
    a recipient needs it: a campaign whose readers are all English never renders the Korean
    variant. A campaign marked as sent before its embargo (see CampaignRenderer) re-renders a
    variant given without the banner.
    """

    def __init__(
        self,
        settings: Settings,
        campaign_id: int,
        rendered: dict[str, Any],
        lists: dict[int, MailingList],
        subject_prefix: str = "",
        render: Callable[[str], Any] | None = None,
        links: LinkRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.campaign_id = campaign_id
        # The campaign's tracked links (mailer.engagement.links): lists with track_clicks get
        # their links through /l/; None (test sends, previews): nothing is wrapped.
        self.links = links
        self.rendered = dict(rendered)
        self.lists = lists
        self.subject_prefix = subject_prefix
        self.render = render
        self.marked_until = render.marked_until if isinstance(render, CampaignRenderer) else None
        self.view_urls = render.view_urls if isinstance(render, CampaignRenderer) else {}
        self.cache: dict[tuple[str, int | None], CompiledVariant] = {}
        self.lock = threading.Lock()

    def _variant(self, language: str) -> Any:
        have = self.rendered.get(language)
        # The release check renders without the banner; a marked campaign needs it.
        stale = have is not None and getattr(have, "marked_until", None) != self.marked_until
        # ... and without the campaign's "view in browser" link, which goes in without
        # inlining again where the variant kept its row (RenderedVariant.with_view).
        view = self.view_urls.get(language)
        if have is not None and not stale and getattr(have, "view_url", None) != view:
            if view and getattr(have, "viewable_html", ""):
                have = self.rendered[language] = have.with_view(view)
            else:
                stale = True
        if (have is None or stale) and self.render is not None:
            have = self.rendered[language] = self.render(language)
        return self.rendered[language]

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
                    prefix = self.subject_prefix
                    if self.marked_until is not None:
                        prefix += embargo_words.subject_prefix(
                            self.marked_until, self.settings, language
                        )
                    variant = self._variant(language)
                    if ml is not None and ml.track_clicks and ml.track_people:
                        # The footer says that this list records who follows which link
                        # (mailer.releases.render: RenderedVariant.with_tracking); a list whose
                        # links are not followed records nobody, whatever track_people says.
                        variant = variant.with_tracking()
                    tracking = None
                    if self.links is not None and ml is not None and ml.track_clicks:
                        variant, tracking = self.links.wrap(
                            variant, per_person=ml.track_people, opens=self.settings.track_opens
                        )
                    compiled = CompiledVariant(
                        variant,
                        sender,
                        self.settings,
                        subject_prefix=prefix,
                        campaign_id=self.campaign_id,
                        signer=dkim_signer(self.settings, from_address),
                        tracking=tracking,
                    )
                    self.cache[key] = compiled
        return compiled


class CampaignRenderer:
    """Renders one language of the campaign's stored release (premailer once per call).

    A campaign to one list names it in the footer ("you are on the Press list"); a campaign to
    several lists uses the organisation's wording, so each language is still inlined once.

    `marked_until` is decided when the renderer is made (the start of a run; `at`, the time a
    dry run's campaign would start): the release's embargo while it is still ahead, else None.
    Only press lists can get a campaign before the lift (planning.embargo_rule); whatever the
    road, a message made before the lift is never sent unmarked.
    """

    def __init__(
        self,
        settings: Settings,
        campaign: Campaign,
        list_names: dict[int, str] | None = None,
        *,
        at: datetime | None = None,
    ) -> None:
        stored = campaign.release
        self.settings = settings
        # With the press-kit files planned with it (mailer.media).
        self.release = stored_release(stored)
        list_ids = campaign.audience.get("list_ids", [])
        self.list_name = (list_names or {}).get(list_ids[0]) if len(list_ids) == 1 else None
        until = self.release.embargo or embargo_words.stored_embargo(stored.front_matter)
        self.marked_until: datetime | None = (
            until if embargo_words.is_ahead(until, at or clock.now()) else None
        )
        # Every message's "view in browser" link, per language: never per recipient.
        self.view_urls = newsroom_links.email_view_urls(
            settings, campaign, self.release.languages, early=self.marked_until is not None
        )
        # Its photos show in every message, before the embargo and off the newsroom too.
        self.release = media_access.granted(settings, self.release)

    def __call__(self, language: str) -> Any:
        # Lazy: releases.render loads premailer and lxml (~0.4 s); only unrendered variants
        # need it.
        from mailer.releases.render import render_variant  # noqa: PLC0415

        return render_variant(
            self.release,
            language,
            self.settings,
            list_name=self.list_name,
            marked_until=self.marked_until,
            view_url=self.view_urls.get(language),
        )


def campaign_renderer(
    settings: Settings,
    campaign: Campaign,
    list_names: dict[int, str] | None = None,
    *,
    at: datetime | None = None,
) -> CampaignRenderer:
    """The renderer of the campaign's stored release for one run (see CampaignRenderer)."""
    return CampaignRenderer(settings, campaign, list_names, at=at)
