"""mailer: press releases and newsletters by email, with a delivery ledger that survives crashes."""

from __future__ import annotations

__version__ = "0.1.0"
