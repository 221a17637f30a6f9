"""The console's first page."""

from __future__ import annotations

from flask import Response

from mailer.web.console import bp
from mailer.web.console.base import render


@bp.get("/")
def dashboard() -> Response:
    return render("dashboard.html")
