"""Contacts for editors: search as you type over every contact, filters and keyset pages; one
contact's page (consent evidence, tags, attributes, deliveries, bounces) and its actions.

The search is mailer.contacts.search (htmx asks for the results table as you type; without
JavaScript the same GET form answers with the whole page). The actions are the library calls
the `mailer contacts` commands make (edit_contact, tag_contact, untag_contact, unsubscribe,
erase; suppressions.add_suppression), so their rules are the command line's: an erasure keeps
the address suppressed, an opt-out is never undone. Each is logged with the user, and the ones
that take something away (untag, unsubscribe, suppress, erase) go through a confirmation page
that works without JavaScript: a GET shows it, and a POST without `confirm=yes` shows it again.

Over 400 lines on purpose: the list, the search fragment and one contact's page with its
confirmed actions share the filters and the page's context.
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, request, url_for
from sqlalchemy import select

from mailer.contacts import contact as contacts_lib
from mailer.contacts import record as records
from mailer.contacts import search as searching
from mailer.contacts.filters import FilterError
from mailer.contacts.press import PRESS_FIELDS
from mailer.contacts.segments import all_segments
from mailer.contacts.suppressions import add_suppression, get_suppression
from mailer.errors import InvalidInputError, NotFoundError
from mailer.store.models import Contact, MailingList, StaffRole, SubscriptionStatus
from mailer.web.console import bp
from mailer.web.console.base import _, actor, can, notice_then, render
from mailer.web.pages import db

MAX_WHERE = 2000  # the filter language's own limit (mailer.contacts.filters.parse)
NEW_ATTRIBUTE_ROWS = 3
# Attribute names that `contacts edit --set` reads as a press field (contact._press_name): the
# edit form shows such an attribute but cannot change it, as the command line cannot.
PRESS_NAMES = frozenset({*PRESS_FIELDS, "outlet", "organisation", "organization"})


def _arg(name: str, limit: int) -> str:
    return request.args.get(name, "")[:limit]


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 19 else None


def _htmx_fragment() -> bool:
    # A history restore (back button, no cached copy) needs the whole page, not the table.
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


# --- the list ---------------------------------------------------------------------------------


@bp.get("/contacts")
def contacts() -> Response:
    query = searching.Search(
        text=_arg("q", searching.MAX_TEXT),
        list_slug=_arg("list", 64),
        status=_arg("status", 20),
        tag=_arg("tag", 100),
        segment=_arg("segment", 100),
        where=_arg("where", MAX_WHERE + 1),
        after=_int(_arg("after", 19)),
    )
    error, error_field = "", ""
    found = searching.Page()
    try:
        found = searching.search(db(), query)
    except FilterError as err:
        error, error_field = str(err), "where"
    except (NotFoundError, InvalidInputError) as err:
        error = str(err)
        error_field = "segment" if query.segment and "segment" in error else ""
    filters = {
        "q": query.text,
        "list": query.list_slug,
        "status": query.status,
        "tag": query.tag,
        "segment": query.segment,
        "where": query.where,
    }
    keep: dict[str, Any] = {k: v for k, v in filters.items() if v}
    next_url = (
        url_for("console.contacts", **keep, after=found.next_after)
        if found.next_after is not None
        else None
    )
    context: dict[str, Any] = {
        "rows": found.rows,
        "status_words": _status_words(),
        # Each row's link is this and the id: one url_for per page, not fifty.
        "contact_prefix": url_for("console.contact", contact_id=0)[: -len("0")],
        "filters": filters,
        "next_url": next_url,
        "first_url": url_for("console.contacts", **keep) if query.after is not None else None,
        "error": error,
        "error_field": error_field,
    }
    if _htmx_fragment():
        # htmx swaps only 2xx answers: an error is shown in the table's place, status 200.
        response = render("contacts_results.html", **context)
    else:
        lists = db().scalars(select(MailingList).order_by(MailingList.slug))
        response = render(
            "contacts.html",
            status=422 if error else 200,
            lists=list(lists),
            statuses=searching.STATUSES,
            segments=[s.name for s in all_segments(db())],
            tags=searching.tag_names(db()),
            **context,
        )
    response.headers["Vary"] = "HX-Request"
    return response


def _status_words() -> dict[str, str]:
    # Once per page, not once per row: the table shows up to 150 statuses.
    return {
        "pending": _("waiting for confirmation"),
        "subscribed": _("subscribed"),
        "unsubscribed": _("unsubscribed"),
    }


# --- one contact ------------------------------------------------------------------------------


def _contact(contact_id: int) -> Contact:
    # Relationships load when used: an erasure deletes the tags in bulk, and tags the ORM had
    # loaded would then be deleted a second time (a warning, and a wasted statement).
    found = db().get(Contact, contact_id)
    if found is None:
        abort(404)
    return found


def _page(contact_id: int, *, status: int = 200, tag_error: str = "", tag: str = "") -> Response:
    try:
        rec = records.load(db(), contact_id)
    except NotFoundError:
        abort(404)
    return render(
        "contact.html",
        status=status,
        rec=rec,
        c=rec.contact,
        press=PRESS_FIELDS,
        tag_error=tag_error,
        tag_value=tag,
        may_erase=can(StaffRole.ADMIN),
        may_audit=can(StaffRole.ADMIN),
    )


@bp.get("/contacts/<int:contact_id>")
def contact(contact_id: int) -> Response:
    return _page(contact_id)


# --- edit -------------------------------------------------------------------------------------


def _form_of(c: Contact) -> dict[str, Any]:
    values = {
        "name": c.name,
        "language": c.language or "",
        "organisation": c.organisation,
        **{f: getattr(c, f) for f in PRESS_FIELDS},
    }
    rows = [
        {"key": k, "value": records.shown(v), "remove": False, "fixed": k in PRESS_NAMES}
        for k, v in (c.attributes or {}).items()
    ]
    new = [{"key": "", "value": ""} for _i in range(NEW_ATTRIBUTE_ROWS)]
    return {"values": values, "attributes": rows, "new": new}


def _edit_page(c: Contact, form: dict[str, Any], *, status: int = 200, error: str = "") -> Response:
    return render(
        "contact_edit.html", status=status, c=c, form=form, press=PRESS_FIELDS, error=error
    )


@bp.get("/contacts/<int:contact_id>/edit")
def contact_edit(contact_id: int) -> Response:
    c = _contact(contact_id)
    return _edit_page(c, _form_of(c))


@bp.post("/contacts/<int:contact_id>/edit")
def contact_edit_post(contact_id: int) -> Response:
    c = _contact(contact_id)
    form = request.form
    before = _form_of(c)
    values = {name: form.get(name, before["values"][name])[:5000] for name in before["values"]}
    rows, changes, removed = [], {}, []
    for i, row in enumerate(before["attributes"]):
        key = row["key"]
        value = form.get(f"attr_value_{i}", row["value"])
        remove = form.get(f"attr_remove_{i}") == "yes"
        rows.append({**row, "value": value, "remove": remove})
        if row["fixed"]:
            continue
        if remove:
            removed.append(key)
        elif value != row["value"]:
            changes[key] = value
    new = []
    for j in range(NEW_ATTRIBUTE_ROWS):
        key, value = form.get(f"new_key_{j}", "")[:200], form.get(f"new_value_{j}", "")
        new.append({"key": key, "value": value})
    shown = {"values": values, "attributes": rows, "new": new}
    try:
        for row in new:
            if not row["key"].strip() and not row["value"]:
                continue
            if not row["key"].strip():
                raise InvalidInputError(
                    _(
                        "A new attribute needs a name (its value is %(value)s).",
                        value=row["value"][:60],
                    )
                )
            if row["key"].strip().lower() in PRESS_NAMES:
                raise InvalidInputError(
                    _("%(name)s is a press field: fill in its own box above.", name=row["key"])
                )
            changes[row["key"].strip()] = row["value"]
        press = {f: values[f] for f in PRESS_FIELDS if values[f] != before["values"][f]}
        _contact_row, changed = contacts_lib.edit_contact(
            db(),
            c.email,
            name=values["name"],
            language=values["language"],
            organisation=values["organisation"],
            set_attributes={**press, **changes},
            unset_attributes=removed,
            actor=actor(),
        )
    except InvalidInputError as err:
        db().rollback()
        return _edit_page(_contact(contact_id), shown, status=422, error=str(err))
    if not changed:
        return notice_then("console.contact", _("Nothing was changed."), contact_id=contact_id)
    return notice_then(
        "console.contact",
        _("Saved. Changed: %(fields)s.", fields=", ".join(_field_name(f) for f in changed)),
        contact_id=contact_id,
    )


def _field_name(name: str) -> str:
    names = {
        "name": _("name"),
        "language": _("language"),
        "organisation": _("outlet"),
        "role": _("role"),
        "beat": _("beat"),
        "media_type": _("media type"),
        "region": _("region"),
        "phone": _("phone"),
        "attributes": _("attributes"),
    }
    return names.get(name, name)


# --- tags -------------------------------------------------------------------------------------


@bp.post("/contacts/<int:contact_id>/tags")
def contact_tag(contact_id: int) -> Response:
    c = _contact(contact_id)
    typed = request.form.get("tag", "")[:1000]
    tags = [t for t in contacts_lib.TAG_SPLIT.split(typed) if t.strip()]
    if not tags:
        return _page(contact_id, status=422, tag_error=_("Type a tag to add."), tag=typed)
    try:
        added = contacts_lib.tag_contact(db(), c.email, tags, actor=actor())
    except InvalidInputError as err:
        db().rollback()
        return _page(contact_id, status=422, tag_error=str(err), tag=typed)
    if not added:
        return notice_then("console.contact", _("It already has that tag."), contact_id=contact_id)
    return notice_then(
        "console.contact", _("Tagged: %(tags)s.", tags=", ".join(added)), contact_id=contact_id
    )


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _confirm_page(c: Contact, action: str, **context: Any) -> Response:
    return render("contact_confirm.html", c=c, action=action, **context)


def _tag_of(c: Contact, tag: str) -> str:
    if tag not in {t.tag for t in c.tags}:
        abort(404)
    return tag


@bp.get("/contacts/<int:contact_id>/untag")
def contact_untag_confirm(contact_id: int) -> Response:
    c = _contact(contact_id)
    return _confirm_page(c, "untag", tag=_tag_of(c, _arg("tag", 200)))


@bp.post("/contacts/<int:contact_id>/untag")
def contact_untag(contact_id: int) -> Response:
    c = _contact(contact_id)
    tag = _tag_of(c, request.form.get("tag", "")[:200])
    if not _confirmed():
        return _confirm_page(c, "untag", tag=tag)
    contacts_lib.untag_contact(db(), c.email, [tag], actor=actor())
    return notice_then("console.contact", _("Tag %(tag)s removed.", tag=tag), contact_id=contact_id)


# --- unsubscribe, suppress, erase -------------------------------------------------------------


def _subscription_list(c: Contact, slug: str) -> MailingList:
    for sub in c.subscriptions:
        if sub.mailing_list.slug == slug and sub.status != SubscriptionStatus.UNSUBSCRIBED:
            return sub.mailing_list
    abort(404)


@bp.get("/contacts/<int:contact_id>/unsubscribe")
def contact_unsubscribe_confirm(contact_id: int) -> Response:
    c = _contact(contact_id)
    return _confirm_page(c, "unsubscribe", ml=_subscription_list(c, _arg("list", 64)))


@bp.post("/contacts/<int:contact_id>/unsubscribe")
def contact_unsubscribe(contact_id: int) -> Response:
    c = _contact(contact_id)
    ml = _subscription_list(c, request.form.get("list", "")[:64])
    if not _confirmed():
        return _confirm_page(c, "unsubscribe", ml=ml)
    contacts_lib.unsubscribe(db(), c.email, ml.slug, via="console", actor=actor())
    return notice_then(
        "console.contact",
        _("Unsubscribed from %(list)s.", list=ml.slug),
        contact_id=contact_id,
    )


SUPPRESS_REASONS = ("unsubscribe-all", "manual")


@bp.get("/contacts/<int:contact_id>/suppress")
def contact_suppress_confirm(contact_id: int) -> Response:
    c = _contact(contact_id)
    return _confirm_page(
        c, "suppress", reason="unsubscribe-all", suppression=get_suppression(db(), c.email)
    )


@bp.post("/contacts/<int:contact_id>/suppress")
def contact_suppress(contact_id: int) -> Response:
    c = _contact(contact_id)
    reason = request.form.get("reason", "")
    existing = get_suppression(db(), c.email)
    if not _confirmed() or reason not in SUPPRESS_REASONS or existing is not None:
        return _confirm_page(
            c,
            "suppress",
            reason=reason if reason in SUPPRESS_REASONS else "unsubscribe-all",
            suppression=existing,
        )
    if reason == "unsubscribe-all":
        # The person asked to stop everything: what `mailer contacts unsubscribe EMAIL` does.
        contacts_lib.unsubscribe(db(), c.email, None, via="console", actor=actor())
    else:
        add_suppression(db(), c.email, "manual", source="console", actor=actor())
    return notice_then(
        "console.contact",
        _("%(email)s is suppressed: it will never be mailed again.", email=c.email),
        contact_id=contact_id,
    )


@bp.get("/contacts/<int:contact_id>/erase")
def contact_erase_confirm(contact_id: int) -> Response:
    return _confirm_page(_contact(contact_id), "erase")


@bp.post("/contacts/<int:contact_id>/erase")
def contact_erase(contact_id: int) -> Response:
    c = _contact(contact_id)
    if not _confirmed():
        return _confirm_page(c, "erase")
    email = c.email
    contacts_lib.erase(db(), email, actor=actor())
    return notice_then(
        "console.contacts",
        _(
            "%(email)s is erased. The address stays suppressed, so it is never mailed again.",
            email=email,
        ),
    )
