"""Import and export for admins: upload a CSV/XLSX file, check the columns, a dry run, the import
with its progress, the rejected rows; and the contacts as CSV.

The steps are mailer.imports.staged over `read_import` and `write_import`, the two halves of
`mailer contacts import`, so the console imports exactly as the command line does. The export
is `mailer contacts export`'s own function.

Over 400 lines on purpose: the steps of an import (upload, mapping, dry run, progress, report)
hand one staged file from page to page.
"""

from __future__ import annotations

import tempfile
from typing import Any

from flask import Response, abort, request, send_file, url_for

from mailer import clock
from mailer.contacts.lists import all_lists, get_list
from mailer.contacts.segments import all_segments
from mailer.errors import InvalidInputError, MailerError, NotFoundError
from mailer.imports import columns, staged
from mailer.imports.choices import ATTRIBUTE, SKIP
from mailer.imports.export import export_contacts
from mailer.store import audit
from mailer.web.console import bp
from mailer.web.console.base import _, actor, notice_then, render, user
from mailer.web.pages import db, settings

ENCODINGS = ("utf-8", "cp949", "utf-16", "cp1252")
STATUSES = ("subscribed", "pending", "unsubscribed")
MAX_EXPRESSIONS = 20
EXAMPLES_SHOWN = 5
ERRORS_SHOWN = 20


def _field_labels() -> dict[str, str]:
    """Each choice of the mapping form in the page's language (a field added later: its name)."""
    known = {
        "email": _("Email address"),
        "name": _("Name"),
        "first_name": _("First name"),
        "last_name": _("Last name"),
        "organisation": _("Organisation (outlet)"),
        "language": _("Language"),
        "tags": _("Tags"),
        "role": _("Role or title"),
        "beat": _("Beat"),
        "media_type": _("Media type"),
        "region": _("Region"),
        "phone": _("Phone"),
    }
    labels = {name: known.get(name, name) for name in columns.FIELDS}
    labels[ATTRIBUTE] = _("Keep as an attribute")
    labels[SKIP] = _("Leave out")
    return labels


def _count_labels() -> list[tuple[str, str]]:
    """The report's lines, as `mailer contacts import` prints them."""
    return [
        ("rows", _("Rows read")),
        ("contacts_added", _("Contacts added")),
        ("contacts_updated", _("Contacts updated")),
        ("subscribed", _("Newly subscribed")),
        ("pending_confirmed", _("of which were pending")),
        ("already_subscribed", _("Already subscribed")),
        ("kept_unsubscribed", _("Kept unsubscribed")),
        ("invalid", _("Invalid (rejected)")),
        ("duplicates", _("Duplicates in the file")),
    ]


def _example_labels() -> dict[str, str]:
    return {
        "contacts_added": _("Added"),
        "contacts_updated": _("Updated"),
        "subscribed": _("Known contacts newly subscribed"),
        "pending_confirmed": _("Pending, now subscribed"),
        "already_subscribed": _("Already subscribed"),
        "kept_unsubscribed": _("Kept unsubscribed"),
        "duplicates": _("Duplicates"),
    }


def _lists() -> list[Any]:
    return [summary.mailing_list for summary in all_lists(db())]


def _upload_page(
    *, status: int = 200, error: str = "", form: dict[str, Any] | None = None
) -> Response:
    values = {
        "list": "",
        "consent_source": "",
        "tags": "",
        "update_attributes": False,
        "encoding": "",
    }
    values.update(form or {})
    return render(
        "import.html",
        status=status,
        lists=_lists(),
        encodings=ENCODINGS,
        form=values,
        error=error,
        max_mb=max(1, settings().console_max_upload_bytes // 1_000_000),
    )


def _load(upload_id: str) -> staged.Staged:
    try:
        return staged.load(settings(), upload_id, user().id)
    except NotFoundError:
        abort(404)


def _options(form: Any, current: staged.Options | None = None) -> staged.Options:
    """The options of an upload or mapping form; InvalidInputError naming the field."""
    slug = form.get("list", "").strip()
    if not slug:
        raise InvalidInputError(_("Choose the list to import into."))
    try:
        get_list(db(), slug)
    except NotFoundError:
        raise InvalidInputError(_("There is no list %(slug)s.", slug=repr(slug[:100]))) from None
    consent = " ".join(form.get("consent_source", "").split())[:500]
    if not consent:
        raise InvalidInputError(
            _("Say how these people agreed to hear from you (the consent source).")
        )
    try:
        tags = staged.check_tags(form.get("tags", "")[:2000])
    except InvalidInputError as err:
        raise InvalidInputError(_("Tags: %(error)s", error=str(err))) from None
    encoding = form.get("encoding", "") or None
    if encoding is not None and encoding not in ENCODINGS:
        raise InvalidInputError(_("Unknown encoding %(value)s.", value=repr(encoding[:40])))
    sheet = form.get("sheet") or (current.sheet if current else None)
    return staged.Options(
        list_slug=slug,
        consent_source=consent,
        tags=tags,
        update_attributes=form.get("update_attributes") == "1",
        encoding=encoding,
        sheet=sheet[:200] if sheet else None,
        choices=current.choices if current else None,
    )


@bp.get("/import")
def imports() -> Response:
    staged.sweep(settings())
    return _upload_page()


@bp.post("/import")
def imports_upload() -> Response:
    form = {
        "list": request.form.get("list", ""),
        "consent_source": request.form.get("consent_source", ""),
        "tags": request.form.get("tags", ""),
        "update_attributes": request.form.get("update_attributes") == "1",
        "encoding": request.form.get("encoding", ""),
    }
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _upload_page(status=422, error=_("Choose a CSV or XLSX file to upload."), form=form)
    try:
        options = _options(request.form)
    except InvalidInputError as err:
        return _upload_page(status=422, error=str(err), form=form)
    item = staged.stage(settings(), user().id, upload.filename, upload.stream, options)
    try:
        item.preview()  # a file that cannot be read at all is refused here, with the reason
    except InvalidInputError as err:
        item.discard()
        return _upload_page(status=422, error=str(err), form=form)
    return notice_then(
        "console.imports_show", _("File uploaded. Check the columns below."), upload_id=item.id
    )


def _mapping_page(item: staged.Staged, *, status: int = 200, error: str = "") -> Response:
    preview = None
    try:
        preview = item.preview()
    except InvalidInputError as err:
        error = error or str(err)
    return render(
        "import_mapping.html",
        status=status,
        item=item,
        preview=preview,
        labels=_field_labels(),
        choices=staged_choices(),
        lists=_lists(),
        encodings=ENCODINGS,
        error=error,
    )


def staged_choices() -> list[str]:
    return [*columns.FIELDS, ATTRIBUTE, SKIP]


@bp.get("/import/<upload_id>")
def imports_show(upload_id: str) -> Response:
    item = _load(upload_id)
    state = staged.settle(db(), item)
    if state.status in staged.RUNNING:
        return render("import_progress.html", item=item, state=state)
    if state.status in (staged.CHECKED, staged.APPLIED) and not (
        state.status == staged.CHECKED and request.args.get("edit") == "1"
    ):
        return _report_page(item, state)
    error = state.error
    if state.status == staged.INTERRUPTED:
        error = _("The server stopped during this step; nothing was imported. Run it again.")
    return _mapping_page(item, error=error)


def _report_page(
    item: staged.Staged, state: staged.State, *, status: int = 200, error: str = ""
) -> Response:
    report = state.report or {}
    examples = [(outcome, rows[:EXAMPLES_SHOWN]) for outcome, rows in staged.iter_examples(report)]
    return render(
        "import_report.html",
        status=status,
        error=error,
        item=item,
        state=state,
        report=report,
        counts=report.get("counts", {}),
        count_labels=_count_labels(),
        example_labels=_example_labels(),
        examples=examples,
        errors=(report.get("errors") or [])[:ERRORS_SHOWN],
        warnings=(report.get("warnings") or [])[:ERRORS_SHOWN],
        labels=_field_labels(),
        has_rejected=item.rejected.is_file(),
        applied=state.status == staged.APPLIED,
    )


@bp.post("/import/<upload_id>/check")
def imports_check(upload_id: str) -> Response:
    item = _load(upload_id)
    try:
        options = _options(request.form, item.options)
    except InvalidInputError as err:
        return _mapping_page(item, status=422, error=str(err))
    reread = (options.sheet, options.encoding) != (item.options.sheet, item.options.encoding)
    if reread:
        # Another sheet or encoding: other columns, so they are guessed again and shown first.
        options.choices = None
        try:
            item.save_options(options)
        except InvalidInputError as err:
            return _mapping_page(item, status=409, error=str(err))
        return notice_then(
            "console.imports_show",
            _("The columns were read again. Check them below."),
            upload_id=item.id,
        )
    try:
        preview = item.preview()
    except InvalidInputError as err:
        return _mapping_page(item, status=422, error=str(err))
    choices: dict[int, str] = {}
    for column in preview.columns:
        value = request.form.get(f"col-{column.index}")
        if value is None:
            return _mapping_page(
                item,
                status=422,
                error=_("Choose what the column %(header)s holds.", header=column.header),
            )
        choices[column.index] = value
    try:
        item.check_choices(preview, choices)
    except InvalidInputError as err:
        options.choices = choices
        item.options = options  # shown again as chosen, not saved
        return _mapping_page(item, status=422, error=str(err))
    options.choices = choices
    try:
        item.save_options(options)
        staged.start_check(settings(), item)
    except InvalidInputError as err:
        return _mapping_page(item, status=409, error=str(err))
    return notice_then("console.imports_show", _("The dry run has started."), upload_id=item.id)


@bp.get("/import/<upload_id>/progress")
def imports_progress(upload_id: str) -> Response:
    item = _load(upload_id)
    state = item.state()
    if request.headers.get("HX-Request") != "true":
        return _to_show(item)
    if state.status in staged.RUNNING:
        return render("import_progress_part.html", item=item, state=state)
    response = Response("", status=200)
    response.headers["HX-Refresh"] = "true"  # the step is over: show the whole page again
    return response


def _to_show(item: staged.Staged) -> Response:
    response = Response("", status=303)
    response.headers["Location"] = url_for("console.imports_show", upload_id=item.id)
    return response


@bp.post("/import/<upload_id>/apply")
def imports_apply(upload_id: str) -> Response:
    item = _load(upload_id)
    if request.form.get("confirm") != "1":
        return _report_page_error(item, _("Tick the box to confirm the import."))
    try:
        staged.start_apply(settings(), item, actor=actor())
    except InvalidInputError as err:
        return _report_page_error(item, str(err))
    return notice_then("console.imports_show", _("The import has started."), upload_id=item.id)


def _report_page_error(item: staged.Staged, error: str) -> Response:
    state = item.state()
    if state.status not in (staged.CHECKED, staged.APPLIED):
        return _mapping_page(item, status=409, error=error)
    return _report_page(item, state, status=422, error=error)


@bp.get("/import/<upload_id>/rejected.csv")
def imports_rejected(upload_id: str) -> Response:
    item = _load(upload_id)
    if not item.rejected.is_file():
        abort(404)
    stem = item.filename.rsplit(".", 1)[0] or "import"
    response = send_file(
        item.rejected, mimetype="text/csv", as_attachment=True, download_name=f"{stem}-rejected.csv"
    )
    response.headers["Cache-Control"] = "no-store"  # addresses: never kept by a cache
    return response


@bp.post("/import/<upload_id>/discard")
def imports_discard(upload_id: str) -> Response:
    item = _load(upload_id)
    try:
        item.discard()
    except InvalidInputError as err:
        return _mapping_page(item, status=409, error=str(err))
    return notice_then("console.imports", _("The uploaded file was removed."))


# --- export ---------------------------------------------------------------------------------


def _export_page(
    *, status: int = 200, error: str = "", form: dict[str, Any] | None = None
) -> Response:
    values = {"list": "", "status": "", "segment": "", "where": ""}
    values.update(form or {})
    return render(
        "export.html",
        status=status,
        lists=_lists(),
        segments=all_segments(db()),
        statuses=STATUSES,
        form=values,
        error=error,
    )


@bp.get("/export")
def export() -> Response:
    return _export_page()


@bp.get("/export/contacts.csv")
def export_download() -> Response:
    form = {
        "list": request.args.get("list", "")[:200],
        "status": request.args.get("status", "")[:40],
        "segment": request.args.get("segment", "")[:200],
        "where": request.args.get("where", "")[:5000],
    }
    where = [line.strip() for line in form["where"].splitlines() if line.strip()]
    if len(where) > MAX_EXPRESSIONS:
        return _export_page(
            status=422, error=_("At most %(n)s conditions.", n=MAX_EXPRESSIONS), form=form
        )
    if form["status"] and form["status"] not in STATUSES:
        return _export_page(
            status=422, error=_("Unknown status %(value)s.", value=repr(form["status"])), form=form
        )
    out = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115  (sent, then closed by Flask)
    try:
        count = export_contacts(
            db(),
            out,
            form["list"] or None,
            form["status"] or None,
            where=where,
            segment=form["segment"] or None,
        )
    except MailerError as err:
        out.close()
        return _export_page(status=422, error=str(err), form=form)
    audit.record(
        db(),
        "contact.export",
        actor=actor(),
        count=count,
        list=form["list"] or None,
        status=form["status"] or None,
        segment=form["segment"] or None,
        where=where,
    )
    out.seek(0)
    name = f"contacts-{form['list'] or 'all'}-{clock.now().date().isoformat()}.csv"
    response = send_file(out, mimetype="text/csv", as_attachment=True, download_name=name)
    response.headers["Cache-Control"] = "no-store"  # addresses: never kept by a cache
    return response
