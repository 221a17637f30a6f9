"""Unsubscribe (including RFC 8058 one-click) and preferences pages.

`POST /u/TOKEN` with the body `List-Unsubscribe=One-Click` (urlencoded or multipart) comes from a
mail provider's server: no cookies, no CSRF value, no rate limit (one provider posts for millions
of people from a few addresses). It unsubscribes and answers 200 with a short page, never a
redirect. The button on the page posts to the same URL without that field.
"""

from __future__ import annotations

from flask import Response, abort, request, url_for

from mailer import tokens, translations
from mailer.contacts import contact as contacts
from mailer.contacts.addresses import mask
from mailer.contacts.suppressions import get_suppression
from mailer.errors import NotFoundError, TokenError
from mailer.store.models import Campaign, Contact, MailingList, SuppressionReason
from mailer.subscribers import optin as subscribe
from mailer.subscribers import preferences as prefs_lib
from mailer.web import security
from mailer.web.pages import (
    choose,
    client_ip,
    db,
    language,
    language_choices,
    message,
    render,
    settings,
    user_agent,
)
from mailer.web.views import bp

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def _read_unsubscribe(token: str) -> tokens.UnsubscribeToken:
    try:
        return tokens.read_unsubscribe(settings(), token)
    except TokenError:
        abort(404)


def _target(data: tokens.UnsubscribeToken) -> tuple[Contact | None, MailingList | None]:
    contact = db().get(Contact, data.contact_id)
    ml = db().get(MailingList, data.list_id) if data.list_id is not None else None
    return contact, ml


def _gone() -> Response:
    # Erased: nothing left to unsubscribe (the address stays suppressed).
    return message(
        translations.N_("You are unsubscribed"),
        translations.N_("This address is no longer on any of our lists."),
        lang=language(),
        status=200,
    )


@bp.get("/u/<token>")
def unsubscribe_page(token: str) -> Response:
    data = _read_unsubscribe(token)
    contact, ml = _target(data)
    if contact is None:
        return _gone()
    s = settings()
    return render(
        "unsubscribe.html",
        lang=language(contact.language),
        email=mask(contact.email),
        mailing_list=ml,
        action=url_for("web.unsubscribe_post", token=token),
        preferences_url=url_for("web.preferences", token=tokens.make_preferences(s, contact.id)),
    )


@bp.post("/u/<token>")
def unsubscribe_post(token: str) -> Response:
    data = _read_unsubscribe(token)
    one_click = request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    contact, ml = _target(data)
    if contact is None:
        return _gone()
    everything = ml is None or (not one_click and request.form.get("scope") == "all")
    via = "one-click" if one_click else "web"
    # The event names the campaign only if it still exists (the token may outlive it).
    campaign_id = data.campaign_id
    if campaign_id is not None and db().get(Campaign, campaign_id) is None:
        campaign_id = None
    if everything:
        sup = get_suppression(db(), contact.email)
        # Idempotent: a repeated POST (providers retry) records nothing twice.
        if sup is None or sup.reason != SuppressionReason.UNSUBSCRIBE_ALL:
            contacts.unsubscribe(db(), contact.email, None, via=via, campaign_id=campaign_id)
    else:
        assert ml is not None
        try:
            contacts.unsubscribe(db(), contact.email, ml.slug, via=via, campaign_id=campaign_id)
        except NotFoundError:
            pass  # never on that list: nothing to undo, and the answer is the same
    s = settings()
    return render(
        "unsubscribed.html",
        lang=language(contact.language),
        email=mask(contact.email),
        mailing_list=None if everything else ml,
        preferences_url=url_for("web.preferences", token=tokens.make_preferences(s, contact.id)),
    )


# --- preferences ----------------------------------------------------------------------------


def _contact_id(token: str) -> int:
    try:
        return tokens.read_preferences(settings(), token)
    except TokenError:
        abort(404)


def _preferences_page(
    token: str,
    prefs: prefs_lib.Preferences,
    *,
    lang: str,
    status: int = 200,
    notice: str | None = None,
    error: str | None = None,
) -> Response:
    s = settings()
    nonce = request.cookies.get(security.CSRF_COOKIE, "")
    if not (20 <= len(nonce) <= 64 and nonce.replace("-", "").replace("_", "").isalnum()):
        nonce = security.new_nonce()
    contact = prefs.contact
    response = render(
        "preferences.html",
        lang=lang,
        status=status,
        email=mask(contact.email),
        name=contact.name,
        email_language=contact.language or lang,
        email_languages=language_choices(),
        prefs=prefs,
        notice=notice,
        error=error,
        contact_address=s.from_address,
        csrf_field=security.CSRF_FIELD,
        csrf=security.make_csrf(s.secret_key, token, nonce),
        action=url_for("web.preferences_post", token=token),
    )
    response.set_cookie(
        security.CSRF_COOKIE,
        nonce,
        max_age=security.CSRF_MAX_AGE,
        httponly=True,
        samesite="Strict",
        path=request.script_root + "/preferences/",
        secure=s.base_url.startswith("https://"),
    )
    return response


@bp.get("/preferences/<token>")
def preferences(token: str) -> Response:
    try:
        prefs = prefs_lib.load(db(), _contact_id(token))
    except NotFoundError:
        abort(404)
    return _preferences_page(token, prefs, lang=language(prefs.contact.language))


@bp.post("/preferences/<token>")
def preferences_post(token: str) -> Response:
    s = settings()
    contact_id = _contact_id(token)
    try:
        prefs = prefs_lib.load(db(), contact_id)
    except NotFoundError:
        abort(404)
    form = request.form
    lang = choose(form.get("lang"), language())
    if not security.check_csrf(
        s.secret_key,
        token,
        form.get(security.CSRF_FIELD),
        request.cookies.get(security.CSRF_COOKIE),
    ):
        expired = translations.gettext(
            lang, "This form has expired. Please reload the page and try again."
        )
        return _preferences_page(token, prefs, lang=lang, status=400, error=expired)
    if form.get("action") == "unsubscribe_all":
        prefs = prefs_lib.unsubscribe_everything(db(), contact_id)
        return _preferences_page(token, prefs, lang=lang, notice=_saved(lang))
    email_lang = choose(form.get("language"), prefs.contact.language or lang)
    evidence = subscribe.Evidence(
        ip=client_ip(),
        user_agent=user_agent(),
        form="web:preferences",
        text=subscribe.consent_text(lang, s.organisation_name),
    )
    prefs = prefs_lib.save(
        db(),
        contact_id,
        name=form.get("name", ""),
        language=email_lang,
        wanted=set(form.getlist("list")),
        evidence=evidence,
        # The switch is a checkbox: absent means off, but only where the page showed it.
        tracking=form.get("tracking") == "on" if form.get("tracking_shown") == "1" else None,
    )
    # The page follows the language just chosen, unless ?lang= asks otherwise.
    shown = language(email_lang)
    return _preferences_page(token, prefs, lang=shown, notice=_saved(shown))


def _saved(lang: str) -> str:
    return translations.gettext(lang, "Your preferences have been saved.")
