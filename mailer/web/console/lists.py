"""Mailing lists: every list with its counts by status, one list's page, and (admins) create and
edit, through the functions `mailer lists create / edit` call, with their checks and errors."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, request

from mailer.contacts import lists as lists_lib
from mailer.errors import InvalidInputError, NotFoundError
from mailer.releases.languages import normalise
from mailer.store.models import MailingList
from mailer.web.console import bp
from mailer.web.console.base import _, actor, notice_then, render
from mailer.web.pages import db, settings

# The languages a list's name is asked for besides the default language's (`name`).
NAME_LANGUAGES = ("en", "ko")


def _other_languages() -> list[str]:
    default = normalise(settings().default_language)
    return [lang for lang in NAME_LANGUAGES if lang != default]


# The form's fields the library's edit_list takes as they are.
EDITABLE = (
    "name",
    "description",
    "public",
    "from_address",
    "press",
    "archive",
    "track_clicks",
    "track_people",
)


def _language_names() -> dict[str, str]:
    return {"en": _("English"), "ko": _("Korean")}


def _blank() -> dict[str, Any]:
    values: dict[str, Any] = {
        "slug": "",
        "name": "",
        "description": "",
        "public": False,
        "from_address": "",
        "press": False,
        "archive": True,
    }
    values.update({f"name_{lang}": "" for lang in _other_languages()})
    return values


def _of(ml: MailingList) -> dict[str, Any]:
    """The form's values for an existing list."""
    names = ml.names or {}
    values: dict[str, Any] = {
        "slug": ml.slug,
        "name": ml.name,
        "description": ml.description,
        "public": ml.public,
        "from_address": ml.from_address or "",
        "press": ml.press,
        "archive": ml.archive,
        "track_clicks": ml.track_clicks,
        "track_people": ml.track_people,
    }
    values.update({f"name_{lang}": names.get(lang, "") for lang in _other_languages()})
    return values


def _posted() -> dict[str, Any]:
    """The form as sent: nothing cut or fixed here, so the library's checks see what was typed."""
    form = request.form
    values: dict[str, Any] = {
        "slug": form.get("slug", "").strip(),
        "name": form.get("name", ""),
        "description": form.get("description", "").strip(),
        "public": form.get("public") == "1",
        "from_address": form.get("from_address", "").strip(),
        "press": form.get("press") == "1",
        "archive": form.get("archive") == "1",
        "track_clicks": form.get("track_clicks") == "1",
        "track_people": form.get("track_people") == "1",
    }
    values.update({f"name_{lang}": form.get(f"name_{lang}", "") for lang in _other_languages()})
    return values


def _form_context(values: dict[str, Any], error: str) -> dict[str, Any]:
    return {
        "form": values,
        "error": error,
        "other_languages": _other_languages(),
        "language_names": _language_names(),
        "default_language": normalise(settings().default_language),
    }


def _list_or_404(slug: str) -> MailingList:
    try:
        return lists_lib.get_list(db(), slug)
    except NotFoundError:
        abort(404)


@bp.get("/lists")
def lists() -> Response:
    return _index(_blank(), "")


def _index(values: dict[str, Any], error: str, status: int = 200) -> Response:
    return render(
        "lists.html",
        status=status,
        summaries=lists_lib.all_lists(db()),
        **_form_context(values, error),
    )


@bp.post("/lists")
def lists_create() -> Response:
    values = _posted()
    try:
        # A savepoint: a refused list leaves nothing behind in the request's unit of work.
        with db().begin_nested():
            ml = lists_lib.create_list(
                db(),
                values["slug"],
                values["name"],
                values["description"],
                public=values["public"],
                press=values["press"],
                archive=values["archive"],
                from_address=values["from_address"] or None,
                names={lang: values[f"name_{lang}"] for lang in _other_languages()},
                actor=actor(),
            )
    except InvalidInputError as err:
        return _index(values, _("The list was not created: %(error)s", error=str(err)), 422)
    return notice_then("console.list_show", _("List %(slug)s created.", slug=ml.slug), slug=ml.slug)


@bp.get("/lists/<slug>")
def list_show(slug: str) -> Response:
    ml = _list_or_404(slug)
    return render(
        "list_show.html",
        summary=lists_lib.summarise(db(), ml),
        other_languages=_other_languages(),
        language_names=_language_names(),
    )


@bp.get("/lists/<slug>/edit")
def list_edit(slug: str) -> Response:
    ml = _list_or_404(slug)
    return render("list_edit.html", slug=ml.slug, **_form_context(_of(ml), ""))


def _changes(ml: MailingList, values: dict[str, Any]) -> dict[str, Any]:
    """Only what differs from the list as stored, so the event log says what was changed."""
    current = _of(ml)
    changes: dict[str, Any] = {}
    for key in EDITABLE:
        typed, stored = values[key], current[key]
        if (typed.strip() if isinstance(typed, str) else typed) != stored:
            changes[key] = typed
    names = {
        lang: values[f"name_{lang}"]
        for lang in _other_languages()
        if values[f"name_{lang}"].strip() != current[f"name_{lang}"]
    }
    if names:
        changes["names"] = names
    return changes


@bp.post("/lists/<slug>/edit")
def list_edit_post(slug: str) -> Response:
    ml = _list_or_404(slug)
    values = {**_posted(), "slug": ml.slug}
    changes = _changes(ml, values)
    if not changes:
        return notice_then("console.list_show", _("Nothing was changed."), slug=ml.slug)
    try:
        with db().begin_nested():
            lists_lib.edit_list(db(), ml.slug, actor=actor(), **changes)
    except InvalidInputError as err:
        return render(
            "list_edit.html",
            status=422,
            slug=ml.slug,
            **_form_context(values, _("The list was not saved: %(error)s", error=str(err))),
        )
    return notice_then("console.list_show", _("List %(slug)s saved.", slug=ml.slug), slug=ml.slug)
