"""Subscribe and confirm pages, the health check and the stylesheet.

GET never changes anything (mail scanners fetch every link); every change is a POST.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, abort, jsonify, redirect, request, url_for
from sqlalchemy import text
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as BaseResponse

from mailer import tokens
from mailer.contacts.addresses import mask, normalise
from mailer.errors import InvalidInputError, NotFoundError, TokenError
from mailer.localtext import in_language
from mailer.store import ratelimit
from mailer.store.models import Contact, MailingList
from mailer.subscribers import optin as subscribe
from mailer.subscribers import templating
from mailer.tokens import TokenExpiredError
from mailer.translations import N_
from mailer.web.pages import (
    choose,
    client_ip,
    db,
    language,
    language_choices,
    limit,
    message,
    render,
    settings,
    user_agent,
)

bp = Blueprint("web", __name__)

HONEYPOT = "leave_empty"
_FORM_ID = re.compile(r"^(?:(?:subscribe|embed)(?:/[a-z0-9][a-z0-9_-]{0,63})?|snippet)$")


@bp.get("/")
def index() -> BaseResponse:
    return redirect(url_for("web.subscribe_form"))


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 and a tiny JSON when the database answers; 503 otherwise."""
    try:
        db().execute(text("SELECT 1"))
    except Exception:  # any failure of the database is "not healthy", never a traceback
        return jsonify(status="error", database="unreachable"), 503
    return jsonify(status="ok", database="ok"), 200


@bp.get("/static/style.css")
def stylesheet() -> Response:
    css = templating.read_asset(settings(), "style.css") or ""
    response = Response(css, mimetype="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


# --- subscribe ------------------------------------------------------------------------------


def _form_page(
    template: str,
    *,
    form_id: str,
    lists: list[MailingList],
    lang: str,
    status: int = 200,
    embeddable: bool = False,
    errors: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    values = values or {}
    chosen = set(values.get("lists", [])) or ({lists[0].slug} if len(lists) == 1 else set())
    return render(
        template,
        lang=lang,
        status=status,
        embeddable=embeddable,
        form_id=form_id,
        lists=lists,
        chosen=chosen,
        email=values.get("email", ""),
        errors={"email": False, "lists": False, **(errors or {})},
        name=values.get("name", ""),
        email_language=values.get("language", lang),
        email_languages=language_choices(),
        honeypot=HONEYPOT,
        action=url_for("web.subscribe_post"),
    )


def _lists_for(slug: str | None) -> list[MailingList]:
    if slug is None:
        return subscribe.public_lists(db())
    try:
        return [subscribe.public_list(db(), slug)]
    except NotFoundError:
        abort(404)


@bp.get("/subscribe")
@bp.get("/subscribe/<slug>")
def subscribe_form(slug: str | None = None) -> Response:
    lists = _lists_for(slug)
    form_id = "subscribe" + (f"/{slug}" if slug else "")
    return _form_page("subscribe.html", form_id=form_id, lists=lists, lang=language())


@bp.get("/embed")
@bp.get("/embed/<slug>")
def embed_form(slug: str | None = None) -> Response:
    """The compact form for an iframe on the organisation's website (may be framed)."""
    lists = _lists_for(slug)
    form_id = "embed" + (f"/{slug}" if slug else "")
    return _form_page("embed.html", form_id=form_id, lists=lists, lang=language(), embeddable=True)


@bp.get("/embed/snippet.html")
def snippet() -> Response:
    """The HTML to paste into the organisation's own page (shown as text to copy)."""
    s = settings()
    lang = language()
    html = (
        templating.environment(s)
        .get_template("snippet.html")
        .render(
            action=s.base_url.rstrip("/") + url_for("web.subscribe_post"),
            lists=subscribe.public_lists(db()),
            lang=lang,
            honeypot=HONEYPOT,
            email_languages=language_choices(),
            organisation=in_language(s.organisation_name, lang, s.default_language),
        )
    )
    return Response(html, mimetype="text/plain")


@bp.post("/subscribe")
def subscribe_post() -> Response:
    s = settings()
    form = request.form
    form_id = form.get("form", "")
    if not _FORM_ID.match(form_id):
        form_id = "subscribe"
    embeddable = form_id.startswith("embed")
    page_lang = choose(form.get("lang"), language())
    hit = ratelimit.hit(db(), f"subscribe-ip:{client_ip()}", limit("MAILER_IP_LIMIT"))
    ratelimit.purge(db())
    if not hit.allowed:
        return message(
            N_("Too many attempts"),
            N_("Please wait a little and try again later."),
            lang=page_lang,
            status=429,
            headers={"Retry-After": str(hit.retry_after)},
        )
    email = form.get("email", "").strip()
    if form.get(HONEYPOT):
        # A bot filled the hidden field: it gets the ordinary answer and nothing happens.
        return _check_inbox(email, page_lang, embeddable)
    email_lang = choose(form.get("language"), page_lang)
    slugs = form.getlist("list")
    name = form.get("name", "")
    values = {"email": email, "name": name, "language": email_lang, "lists": slugs}
    slug = form_id.partition("/")[2] or None
    evidence = subscribe.Evidence(
        ip=client_ip(),
        user_agent=user_agent(),
        form=f"web:{form_id}",
        text=subscribe.consent_text(page_lang, s.organisation_name),
    )
    errors: dict[str, Any] = {}
    if not any(slugs):
        errors["lists"] = True
    try:
        normalise(email)
    except InvalidInputError:
        errors["email"] = True
    if not errors:
        try:
            # Only queued: the address's state is looked at later, by the notice sender.
            subscribe.request_subscription(
                db(), s, email, slugs, name=name, language=email_lang, evidence=evidence
            )
        except (subscribe.NoListsError, NotFoundError):
            errors["lists"] = True
    if errors:
        template = "embed.html" if embeddable else "subscribe.html"
        try:
            lists = _lists_for(slug)
        except HTTPException:
            lists = subscribe.public_lists(db())
        # The corrected form is ours now, whatever page it came from.
        shown = "subscribe" if form_id == "snippet" else form_id
        return _form_page(
            template,
            form_id=shown,
            lists=lists,
            lang=page_lang,
            status=400,
            embeddable=embeddable,
            errors=errors,
            values=values,
        )
    return _check_inbox(email, page_lang, embeddable)


def _check_inbox(email: str, lang: str, embeddable: bool, *, resent: bool = False) -> Response:
    s = settings()
    days = max(1, s.confirm_max_age // 86400)
    return render(
        "check_inbox.html",
        lang=lang,
        embeddable=embeddable,
        email=email,
        sender=s.from_address,
        days=days,
        resent=resent,
    )


# --- confirm --------------------------------------------------------------------------------


def _contact_language(contact_id: int) -> str:
    contact = db().get(Contact, contact_id)
    return language(contact.language if contact else None)


def _expired_page(token: str, err: TokenExpiredError) -> Response:
    lang = _contact_language(err.token.contact_id)
    days = max(1, settings().confirm_max_age // 86400)
    return render(
        "confirm_expired.html",
        lang=lang,
        status=410,
        days=days,
        action=url_for("web.confirm_resend", token=token),
    )


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> Response:
    try:
        data = tokens.read_confirm(settings(), token)
    except TokenExpiredError as err:
        return _expired_page(token, err)
    except TokenError:
        abort(404)
    try:
        contact, lists = subscribe.describe_confirm(db(), data)
    except NotFoundError:
        abort(404)
    return render(
        "confirm.html",
        lang=language(contact.language),
        email=mask(contact.email),
        lists=lists,
        action=url_for("web.confirm_post", token=token),
    )


@bp.post("/confirm/<token>")
def confirm_post(token: str) -> Response:
    s = settings()
    try:
        data = tokens.read_confirm(s, token)
    except TokenExpiredError as err:
        return _expired_page(token, err)
    except TokenError:
        abort(404)
    try:
        outcome = subscribe.confirm(db(), data, ip=client_ip(), user_agent=user_agent())
    except NotFoundError:
        abort(404)
    contact = outcome.contact
    lang = language(contact.language)
    if outcome.blocked:
        return message(
            N_("We cannot add this address"),
            N_(
                "Our records say %(email)s must not receive our emails. If this is a mistake, "
                "please write to %(contact)s."
            ),
            lang=lang,
            status=200,
            email=mask(contact.email),
            contact=s.from_address,
        )
    prefs = url_for("web.preferences", token=tokens.make_preferences(s, contact.id))
    return render(
        "confirmed.html",
        lang=lang,
        email=mask(contact.email),
        lists=outcome.lists,
        preferences_url=prefs,
    )


@bp.post("/confirm/<token>/resend")
def confirm_resend(token: str) -> Response:
    try:
        tokens.read_confirm(settings(), token)
    except TokenExpiredError as err:
        expired = err.token
    except TokenError:
        abort(404)
    else:
        # Still valid: nothing to resend; show the page that confirms.
        return confirm_page(token)
    lang = _contact_language(expired.contact_id)
    hit = ratelimit.hit(db(), f"subscribe-ip:{client_ip()}", limit("MAILER_IP_LIMIT"))
    if not hit.allowed:
        return message(
            N_("Too many attempts"),
            N_("Please wait a little and try again later."),
            lang=lang,
            status=429,
            headers={"Retry-After": str(hit.retry_after)},
        )
    try:
        address = subscribe.resend(db(), expired, language=lang)
    except NotFoundError:
        abort(404)
    return _check_inbox(mask(address), lang, False, resent=True)
