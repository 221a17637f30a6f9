"""Segments for editors: the saved ones with their counts, and a builder (lists plus `--where`
expressions, one per line) with a preview per language that htmx refreshes as you type.

Counting and previewing are `segments.resolve` + `segments.preview`, exactly what
`mailer segments preview` runs; saving and deleting are `create_segment` / `remove_segment`,
changing is `segment_builder.update_segment` (the same checks), each logged with the user.
Without JavaScript the "Preview" button posts the form and the page comes back with the preview.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Response, abort, request

from mailer.contacts import segment_builder, segments
from mailer.contacts.filters import FilterError
from mailer.contacts.lists import all_lists
from mailer.errors import InvalidInputError, MailerError, NotFoundError
from mailer.store.models import Segment
from mailer.web.console import bp
from mailer.web.console.base import _, actor, notice_then, render
from mailer.web.pages import db, settings

SAMPLE = 20  # rows shown, as `mailer segments preview` (its --limit default)
MAX_NAME_FIELD = 200
MAX_WHERE_FIELD = 50_000


@dataclass
class Draft:
    """The builder's form as typed (shown back as it was, errors or not)."""

    name: str = ""
    description: str = ""
    lists: list[str] = field(default_factory=list)
    where: str = ""

    @property
    def expressions(self) -> list[str]:
        return segment_builder.expressions_of(self.where)

    @classmethod
    def from_form(cls) -> Draft:
        form = request.form
        return cls(
            name=form.get("name", "")[:MAX_NAME_FIELD],
            description=form.get("description", "")[: segment_builder.MAX_DESCRIPTION + 1],
            lists=list(dict.fromkeys(v[:64] for v in form.getlist("list")))[:100],
            where=form.get("where", "")[:MAX_WHERE_FIELD],
        )

    @classmethod
    def of(cls, seg: Segment) -> Draft:
        return cls(
            seg.name, seg.description, list(seg.lists), segment_builder.shown(seg.expressions)
        )


@dataclass
class Checked:
    """What the builder found: errors by field, expressions that do not parse, the preview."""

    errors: dict[str, str] = field(default_factory=dict)
    expression_errors: list[segment_builder.ExpressionError] = field(default_factory=list)
    preview: segments.Preview | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and not self.expression_errors


def _check(draft: Draft, *, with_preview: bool) -> Checked:
    found = Checked()
    expressions = draft.expressions
    found.expression_errors = segment_builder.expression_errors(expressions)
    if not draft.lists:
        found.errors["lists"] = _("Choose at least one list: a segment is always part of lists.")
    if found.expression_errors or not draft.lists:
        return found
    try:
        audience = segment_builder.audience(db(), draft.lists, expressions)
    except FilterError as err:  # compiling: `list = x` names a list that does not exist
        found.expression_errors = [segment_builder.line_of(err, expressions)]
        return found
    except (NotFoundError, InvalidInputError) as err:
        found.errors["lists"] = str(err)
        return found
    if with_preview:
        found.preview = segments.preview(db(), audience, settings().default_language, limit=SAMPLE)
    return found


def _check_to_save(draft: Draft, but: int | None) -> Checked:
    found = _check(draft, with_preview=False)
    try:
        name = segments.check_name(draft.name)
    except InvalidInputError as err:
        found.errors["name"] = str(err)
    else:
        if segment_builder.name_taken(db(), name, but=but):
            found.errors["name"] = _("A segment named %(name)s already exists.", name=name)
    try:
        segment_builder.check_description(draft.description)
    except InvalidInputError as err:
        found.errors["description"] = str(err)
    return found


def _page(draft: Draft, checked: Checked, seg: Segment | None, *, status: int = 200) -> Response:
    known = all_lists(db())
    slugs = {s.mailing_list.slug for s in known}
    return render(
        "segment_form.html",
        status=status,
        seg=seg,
        draft=draft,
        lists=known,
        # A saved segment may name a list deleted since: shown, ticked, to be unticked.
        missing=[slug for slug in draft.lists if slug not in slugs],
        checked=checked,
        sample=[_row(c) for c in checked.preview.rows] if checked.preview else [],
    )


def _row(contact: Any) -> dict[str, str]:
    """A sample row: the columns `mailer segments preview` prints."""
    attributes = contact.attributes or {}
    # The press fields may be columns of Contact (newer schema) or attributes (older one).
    beat = getattr(contact, "beat", None) or attributes.get("beat", "")
    return {
        "email": contact.email,
        "name": contact.name,
        "language": contact.language or "",
        "outlet": contact.organisation,
        "beat": str(beat),
    }


def _segment(segment_id: int) -> Segment:
    seg = db().get(Segment, segment_id)
    if seg is None:
        abort(404)
    return seg


# The endpoint is "segments" (the menu's link); the function may not shadow the module.
@bp.get("/segments", endpoint="segments")
def segments_list() -> Response:
    rows = []
    for seg in segments.all_segments(db()):
        try:
            n: int | None = segments.count(db(), segments.resolve(db(), seg.name, (), ()))
            problem = ""
        except MailerError as err:  # a list deleted since, or an expression no longer valid
            n, problem = None, str(err)
        rows.append({"seg": seg, "count": n, "problem": problem})
    return render("segments.html", rows=rows)


@bp.get("/segments/new")
def segment_new() -> Response:
    return _page(Draft(), Checked(), None)


@bp.post("/segments/new")
def segment_create() -> Response:
    draft = Draft.from_form()
    checked = _check_to_save(draft, None)
    if not checked.ok:
        return _page(draft, checked, None, status=422)
    seg = segments.create_segment(
        db(),
        draft.name,
        draft.lists,
        draft.expressions,
        description=draft.description,
        actor=actor(),
    )
    return notice_then(
        "console.segment_edit", _("Segment %(name)s saved.", name=seg.name), segment_id=seg.id
    )


@bp.post("/segments/preview")
def segment_preview() -> Response:
    draft = Draft.from_form()
    ident = request.form.get("segment_id", "")
    seg = _segment(int(ident)) if ident.isdigit() and len(ident) < 19 else None
    checked = _check(draft, with_preview=True)
    if request.headers.get("HX-Request") == "true":
        # htmx swaps only 2xx answers: errors come back as 200 and are shown in the preview.
        sample = [_row(c) for c in checked.preview.rows] if checked.preview else []
        return render("segment_preview.html", checked=checked, sample=sample)
    return _page(draft, checked, seg, status=200 if checked.ok else 422)


@bp.get("/segments/<int:segment_id>")
def segment_edit(segment_id: int) -> Response:
    seg = _segment(segment_id)
    draft = Draft.of(seg)
    return _page(draft, _check(draft, with_preview=True), seg)


@bp.post("/segments/<int:segment_id>")
def segment_update(segment_id: int) -> Response:
    seg = _segment(segment_id)
    draft = Draft.from_form()
    checked = _check_to_save(draft, seg.id)
    if not checked.ok:
        return _page(draft, checked, seg, status=422)
    segment_builder.update_segment(
        db(),
        seg,
        draft.name,
        draft.lists,
        draft.expressions,
        description=draft.description,
        actor=actor(),
    )
    return notice_then(
        "console.segment_edit", _("Segment %(name)s saved.", name=seg.name), segment_id=seg.id
    )


@bp.get("/segments/<int:segment_id>/delete")
def segment_delete_confirm(segment_id: int) -> Response:
    return render("segment_delete.html", seg=_segment(segment_id))


@bp.post("/segments/<int:segment_id>/delete")
def segment_delete(segment_id: int) -> Response:
    seg = _segment(segment_id)
    name = seg.name
    segments.remove_segment(db(), name, actor=actor())
    return notice_then("console.segments", _("Segment %(name)s deleted.", name=name))
