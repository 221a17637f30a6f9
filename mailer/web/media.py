"""/media/SHA256/NAME: the press-kit files of releases (mailer.media.access decides who may).

A file's address names its content, so a public one is cached for a year and never asked for
again (`immutable`); one opened by a key (a preview, an early copy's grant) is kept by the
browser only. Images are shown in place; documents are downloaded, never opened by the
browser as a page of this site. Anything not servable is the subscriber pages' 404.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request, send_file

from mailer import clock
from mailer.media import access, store
from mailer.web.pages import db, settings

bp = Blueprint("media", __name__)

YEAR = 365 * 24 * 3600
PRIVATE_AGE = 3600


@bp.get("/media/<sha256>/<name>")
def media_file(sha256: str, name: str) -> Response:
    found = access.servable(
        db(),
        settings(),
        sha256,
        name,
        clock.now(),
        grant=request.args.get("k", ""),
        preview=request.args.get("preview", ""),
    )
    if found is None:
        abort(404)
    path = store.path_of(settings(), found.file.sha256)
    if not path.is_file():
        abort(404)
    row = found.file
    image = row.content_type.startswith("image/")
    response = send_file(
        path,
        mimetype=row.content_type,
        as_attachment=not image,
        download_name=row.name,
        conditional=True,
        etag=row.sha256,
        last_modified=row.created_at,
        max_age=YEAR if found.public else PRIVATE_AGE,
    )
    if found.public:
        response.cache_control.public = True
        response.cache_control.immutable = True
    else:
        response.cache_control.public = False
        response.cache_control.private = True
    return response
