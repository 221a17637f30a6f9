"""The syntax of a list's slug, apart from the list code, so release files can check `lists:`
without loading the database layer (rendering and checking a release need no database)."""

from __future__ import annotations

import re

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
